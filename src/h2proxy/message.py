"""The neutral vocabulary that the HTTP/2 front end and the HTTP/1.1 upstream both speak.

Plain frozen data, no behaviour and no imports from Twisted, h2 or the rest of
h2proxy, so that the front end and the upstream side can share it without knowing
each other. The bridge translates between the two.

Header names are lowercase ``bytes``; values are ``bytes``. Headers are kept as an
ordered tuple of pairs because HTTP allows repeated fields and their order matters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Headers = tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True, slots=True)
class RequestHead:
    """A validated request as the front end received it.

    @ivar method: ``:method``, e.g. ``b"GET"``.
    @ivar scheme: ``:scheme`` (``b"https"``/``b"http"``); empty for CONNECT.
    @ivar authority: ``:authority`` (or the ``host`` header when ``:authority`` is absent).
    @ivar path: ``:path``; empty for CONNECT.
    @ivar headers: the regular (non-pseudo) header fields, lowercase names, in order;
        connection-specific fields have already been rejected.
    @ivar protocol: ``:protocol`` of an RFC 8441 extended CONNECT, else ``None``.
    @ivar content_length: the declared ``content-length``, or ``None`` if absent.
    @ivar end_stream: ``True`` when the request has no body at all (END_STREAM on HEADERS).
    """

    method: bytes
    scheme: bytes
    authority: bytes
    path: bytes
    headers: Headers = ()
    protocol: bytes | None = None
    content_length: int | None = None
    end_stream: bool = False


@dataclass(frozen=True, slots=True)
class ResponseHead:
    """A response head (final or informational) as it travels back to the client.

    @ivar status: the status code, e.g. 200 or 103.
    @ivar headers: header fields with lowercase names; hop-by-hop fields are removed
        by the bridge before the front end sees them.
    """

    status: int
    headers: Headers = ()


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """One HTTP/1.1 request as the bridge asks the upstream side to send it.

    The upstream side serialises exactly these fields; raw client bytes never reach a
    backend.

    @ivar method: request method.
    @ivar target: the request-target (origin-form path and query).
    @ivar headers: every header to send, ``host`` included, in order, lowercase names.
        The upstream adds only the framing headers (``content-length`` or
        ``transfer-encoding: chunked``) and ``connection`` itself.
    @ivar body_length: ``0`` for no body, a byte count for a Content-Length body, or
        ``None`` for a body of unknown length (sent chunked).
    @ivar urgency: how urgent the client said the request is (RFC 9218: 0 most urgent
        to 7 least, 3 by default); a request waiting for a backend connection leaves
        the queue before every less urgent one.
    @ivar upgrade: the protocol to switch to (``b"websocket"``), or ``None``. The
        upstream side then sends ``Connection: upgrade`` and ``Upgrade: <protocol>``
        itself, and after a ``101`` the connection is a raw byte pipe both ways
        (never returned to the pool). ``body_length`` must be ``0``.
    """

    method: bytes
    target: bytes
    headers: Headers = ()
    body_length: int | None = 0
    urgency: int = 3
    upgrade: bytes | None = None


@dataclass(frozen=True, slots=True)
class Trailers:
    """Trailer fields of a request or response body."""

    headers: Headers = field(default=())
