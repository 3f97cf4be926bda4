"""WebSocket handshakes across the bridge: RFC 8441 (HTTP/2) and RFC 6455 (HTTP/1.1).

Both front ends mark a WebSocket opening handshake with ``RequestHead.protocol ==
b"websocket"``: the HTTP/2 one as an extended CONNECT (``method CONNECT``), the
HTTP/1.1 one as a ``GET`` with ``Upgrade: websocket``. Backends always get the
HTTP/1.1 form (``UpstreamRequest.upgrade``), so:

  - HTTP/2 client: the CONNECT becomes ``GET <path>`` with a fresh
    ``Sec-WebSocket-Key`` (base64 of 16 random bytes) and ``Sec-WebSocket-Version:
    13``; the backend's ``101`` is checked against that key (RFC 6455 4.2.2) and
    becomes a ``200`` without ``Sec-WebSocket-Accept``. A 101 with a wrong accept
    is a bad gateway.
  - HTTP/1.1 client: the client's own key and version go through, and the 101
    comes back as it is (the front end writes the Upgrade fields).

``Sec-WebSocket-Protocol`` and ``-Extensions`` go through both ways untouched.
Pure functions (and the tunnel's state names): no Twisted, no I/O.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import hashlib
import os
from collections.abc import Callable

from h2proxy.message import RequestHead, ResponseHead, UpstreamRequest

WEBSOCKET = b"websocket"

#: RFC 6455 1.3: the GUID appended to the key before hashing.
WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

#: RFC 6455 4.1: the only version this handshake speaks.
WEBSOCKET_VERSION = b"13"

#: Bytes of randomness in a Sec-WebSocket-Key (RFC 6455 4.1).
KEY_BYTES = 16

#: Fields an RFC 8441 client has no business sending: the proxy owns the HTTP/1.1
#: handshake with the backend.
_HANDSHAKE_FIELDS = frozenset({b"sec-websocket-key", b"sec-websocket-accept", b"sec-websocket-version"})


class TunnelState(enum.Enum):
    """A bridge's WebSocket tunnel: none (an ordinary request), a handshake sent to
    the backend and not yet answered, or open (the backend switched: the body both
    ways is the tunnel, and its end is a CANCEL rather than an error)."""

    NONE = "none"
    HANDSHAKE = "handshake"
    OPEN = "open"


class BadHandshake(Exception):
    """The backend's 101 does not complete the handshake the proxy started."""


def new_key(randomBytes: Callable[[int], bytes] = os.urandom) -> bytes:
    """A fresh Sec-WebSocket-Key."""
    return base64.b64encode(randomBytes(KEY_BYTES))


def accept_for(key: bytes) -> bytes:
    """The Sec-WebSocket-Accept a server must answer to C{key} (RFC 6455 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key + WEBSOCKET_GUID).digest())


def is_websocket(head: RequestHead) -> bool:
    """Whether C{head} opens a WebSocket (either front end)."""
    return head.protocol == WEBSOCKET


def is_extended_connect(head: RequestHead) -> bool:
    """Whether C{head} is an RFC 8441 extended CONNECT (an HTTP/2 client)."""
    return head.method == b"CONNECT" and head.protocol is not None


def backend_head(head: RequestHead) -> RequestHead:
    """The request as the HTTP/1.1 handshake sees it: a bodiless GET; from an
    HTTP/2 client, without handshake fields (the proxy sets its own)."""
    headers = head.headers
    if is_extended_connect(head):
        headers = tuple(item for item in headers if item[0] not in _HANDSHAKE_FIELDS)
    return dataclasses.replace(
        head, method=b"GET", headers=headers, protocol=None, content_length=None, end_stream=True
    )


def upgrade_request(request: UpstreamRequest, key: bytes | None) -> UpstreamRequest:
    """C{request} asking the backend to switch to WebSocket; with C{key} (an HTTP/2
    client) the proxy's own key and version are added."""
    headers = request.headers
    if key is not None:
        headers = headers + ((b"sec-websocket-key", key), (b"sec-websocket-version", WEBSOCKET_VERSION))
    return dataclasses.replace(request, headers=headers, body_length=0, upgrade=WEBSOCKET)


def accepted_for_http2(head: ResponseHead, key: bytes) -> ResponseHead:
    """The 200 an HTTP/2 client gets for the backend's 101 (RFC 8441 5).

    @raise BadHandshake: the 101 carries no Sec-WebSocket-Accept, or a wrong one.
    """
    accepts = [value.strip() for name, value in head.headers if name.lower() == b"sec-websocket-accept"]
    if accepts != [accept_for(key)]:
        raise BadHandshake(f"backend's Sec-WebSocket-Accept {accepts!r} does not match the key sent")
    kept = tuple(item for item in head.headers if item[0].lower() != b"sec-websocket-accept")
    return ResponseHead(status=200, headers=kept)
