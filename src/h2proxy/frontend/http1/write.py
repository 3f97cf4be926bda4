# -*- test-case-name: tests.frontend_http1.test_write -*-
"""Sans-I/O serialisation of HTTP/1.1 responses (RFC 9112), with their framing.

The handler speaks the neutral vocabulary (L{ResponseHead}, lowercase names, no
framing of its own); this module decides how the body is delimited on an HTTP/1.1
connection and writes the bytes. A field that could split the response (a name that
is not a token, CR/LF/NUL in a value) is never written: it is dropped and reported,
so the caller can log it.
"""

from __future__ import annotations

import email.utils
import enum
import re
from dataclasses import dataclass
from http import HTTPStatus

from h2proxy.fields import HOP_BY_HOP, TOKEN
from h2proxy.message import Headers, ResponseHead

_CTL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_LENGTH = re.compile(rb"[0-9]{1,18}")

#: Response fields never written from the handler's head: the connection-specific
#: ones (framing and persistence are ours to write) and Content-Length (written from
#: the framing chosen).
_NOT_WRITTEN = HOP_BY_HOP | {b"content-length"}

#: Fields never sent in a trailer section (RFC 9110 6.5.1: framing and routing).
_TRAILER_DROPPED = HOP_BY_HOP | {b"content-length", b"host"}

_REASONS = {status.value: status.phrase.encode("ascii") for status in HTTPStatus}

LAST_CHUNK = b"0\r\n\r\n"


class Framing(enum.Enum):
    """How a response body is delimited on the wire."""

    #: No body can follow (HEAD, 1xx, 204, 304); body writes are dropped.
    NONE = "none"
    #: ``Content-Length`` bytes follow.
    LENGTH = "length"
    #: ``Transfer-Encoding: chunked`` (HTTP/1.1 clients, length unknown).
    CHUNKED = "chunked"
    #: The body ends when the connection closes (HTTP/1.0 clients, length unknown).
    CLOSE = "close"


@dataclass(frozen=True, slots=True)
class ResponseStart:
    """A serialised response head and what it promised.

    @ivar data: the status line and fields, ending with the blank line.
    @ivar framing: how the body that follows is delimited.
    @ivar length: the body length for L{Framing.LENGTH}, else C{None}.
    @ivar close: the head says ``Connection: close``; the connection ends after it.
    @ivar dropped: names of fields that were not written because they were invalid.
    """

    data: bytes
    framing: Framing
    length: int | None
    close: bool
    dropped: tuple[bytes, ...]


def _status_line(status: int) -> bytes:
    if not 100 <= status <= 999:
        raise ValueError(f"status {status} is not a three-digit HTTP status code")
    return b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b""))


def _valid_fields(headers: Headers, dropped: list[bytes], excluded: frozenset[bytes]) -> list[bytes]:
    """``name: value\\r\\n`` lines of the fields that are safe to write."""
    lines = []
    for name, value in headers:
        if name in excluded:
            continue
        if not TOKEN.fullmatch(name) or _CTL.search(value):
            dropped.append(name)
            continue
        lines.append(b"%s: %s\r\n" % (name, value))
    return lines


def _declared_length(headers: Headers) -> int | None:
    """The handler's Content-Length if every value agrees and is valid, else C{None}."""
    values = {value.strip() for name, value in headers if name == b"content-length"}
    if len(values) != 1:
        return None
    (value,) = values
    return int(value) if _LENGTH.fullmatch(value) else None


def start_response(
    head: ResponseHead, *, method: bytes, http10: bool, close: bool, endStream: bool
) -> ResponseStart:
    """Serialise a final response head, choosing its framing.

    Framing, in order: no body for HEAD, 204, 304 (their Content-Length, if any, is
    kept for HEAD and 304, where it describes the representation); the handler's
    Content-Length; ``Content-Length: 0`` when the handler says there is no body;
    chunked for HTTP/1.1 clients; otherwise the body runs to the connection's close.

    @param method: the request's method (HEAD responses carry no body).
    @param http10: the client speaks HTTP/1.0.
    @param close: the connection ends after this response.
    @param endStream: the handler will write no body.
    """
    if head.status < 200:
        raise ValueError(f"status {head.status} is informational: use writeInformational")
    dropped: list[bytes] = []
    lines = [_status_line(head.status)]
    lines += _valid_fields(head.headers, dropped, _NOT_WRITTEN)
    length = _declared_length(head.headers)
    if head.status == 204:
        framing, length = Framing.NONE, None
    elif method == b"HEAD" or head.status == 304:
        framing = Framing.NONE
    elif length is not None:
        framing = Framing.LENGTH
    elif endStream:
        framing, length = Framing.LENGTH, 0
    elif not http10:
        framing = Framing.CHUNKED
    else:
        framing, close = Framing.CLOSE, True
    if length is not None:
        lines.append(b"content-length: %d\r\n" % length)
    if framing is Framing.CHUNKED:
        lines.append(b"transfer-encoding: chunked\r\n")
    if close:
        lines.append(b"connection: close\r\n")
    elif http10:
        lines.append(b"connection: keep-alive\r\n")
    lines.append(b"\r\n")
    return ResponseStart(
        data=b"".join(lines),
        framing=framing,
        length=length if framing is Framing.LENGTH else None,
        close=close,
        dropped=tuple(dropped),
    )


def informational(head: ResponseHead) -> bytes:
    """A 1xx interim response (e.g. 103 Early Hints); invalid fields are left out."""
    if not 100 <= head.status < 200:
        raise ValueError(f"status {head.status} is not informational")
    lines = [_status_line(head.status)]
    lines += _valid_fields(head.headers, [], _NOT_WRITTEN)
    lines.append(b"\r\n")
    return b"".join(lines)


def switching_protocols(head: ResponseHead, protocol: bytes) -> ResponseStart:
    """A ``101 Switching Protocols`` to C{protocol}: the handler's fields (hop-by-hop
    ones excepted) plus ``Connection: upgrade`` and ``Upgrade``; what follows is
    the new protocol's, written as it is, until the connection closes."""
    if head.status != 101:
        raise ValueError(f"status {head.status} does not switch protocols")
    dropped: list[bytes] = []
    lines = [_status_line(101)]
    lines += _valid_fields(head.headers, dropped, _NOT_WRITTEN)
    lines += [b"connection: upgrade\r\n", b"upgrade: %s\r\n" % protocol, b"\r\n"]
    return ResponseStart(
        data=b"".join(lines), framing=Framing.CLOSE, length=None, close=True, dropped=tuple(dropped)
    )


def chunk_header(size: int) -> bytes:
    """The size line that precedes C{size} bytes of chunk data."""
    return b"%x\r\n" % size


def last_chunk(trailers: Headers) -> tuple[bytes, tuple[bytes, ...]]:
    """The zero-size chunk with a trailer section; returns it and the dropped names."""
    dropped: list[bytes] = []
    lines = [b"0\r\n", *_valid_fields(trailers, dropped, _TRAILER_DROPPED), b"\r\n"]
    return b"".join(lines), tuple(dropped)


def error_response(status: int, message: str, now: float | None = None) -> bytes:
    """A response the front end makes itself: short text body, Date (the proxy is
    this response's origin: RFC 9110 6.6.1; C{now} in seconds, the current time by
    default), then the connection closes."""
    body = f"{status} {message}\n".encode("utf-8", "replace")
    return b"".join(
        [
            _status_line(status),
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: %d\r\n" % len(body),
            b"date: " + email.utils.formatdate(now, usegmt=True).encode("ascii") + b"\r\n",
            b"connection: close\r\n\r\n",
            body,
        ]
    )
