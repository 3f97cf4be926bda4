# -*- test-case-name: tests.upstream.test_request -*-
"""What goes to the backend: the request head (L{serialize_request_head}) and the
body writers (L{NoBody}, L{LengthBody}, L{ChunkedBody}), validated so that nothing
a backend could read two ways is ever written."""

from __future__ import annotations

from typing import Protocol as TypingProtocol

from h2proxy.errors import UpstreamError
from h2proxy.fields import TOKEN, UNSAFE_VALUE
from h2proxy.message import Headers, UpstreamRequest
from h2proxy.upstream.http11.grammar import BAD_TARGET, BODY_METHODS, CLIENT_OWNED, GOOD_METHODS, FieldNameCache


class RequestRefused(UpstreamError):
    """The request cannot be sent as given: a field that could be read two ways by the
    backend, or a body that does not match its declared length. Nothing ambiguous is
    ever written; the connection is closed if the request was under way."""

    status = 400
    reason = "http_request_error"


def serialize_request_head(request: UpstreamRequest, names: FieldNameCache | None = None) -> bytes:
    """The request line, the given fields and the one framing field, as bytes.

    Raises L{RequestRefused} for a method or field name that is not a token, a target
    or value containing CR, LF or NUL (or a target with spaces/controls), a field the
    client owns (framing, connection), or a negative body length: defence in depth
    behind the front end's own validation, since such bytes would let a backend read
    the stream differently from us (request smuggling). Names found valid are
    remembered in C{names} (a pool's L{FieldNameCache}; none kept without one).
    """
    if names is None:
        names = FieldNameCache()
    good = names.request
    method, target = request.method, request.target
    if method not in GOOD_METHODS and not TOKEN.fullmatch(method):
        raise RequestRefused(f"request method {method!r} is not a token")
    if not target or BAD_TARGET.search(target):
        raise RequestRefused(f"request target {target!r} is empty or contains spaces/controls")
    parts = [method, b" ", target, b" HTTP/1.1\r\n"]
    values = []
    for name, value in request.headers:
        if name not in good:
            _check_name(name, names)
        parts += (name, b": ", value, b"\r\n")
        values.append(value)
    if UNSAFE_VALUE.search(b"".join(values)):
        _refuse_value(request.headers)
    framing = _framing_field(request)
    if framing:
        parts += (framing, b"\r\n")
    if request.upgrade is not None:
        for line in _upgrade_fields(request):
            parts += (line, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def _check_name(name: bytes, names: FieldNameCache) -> None:
    """Refuse a field name that is not a token or that the client owns; remember a
    good one in C{names}."""
    if not TOKEN.fullmatch(name):
        raise RequestRefused(f"request field name {name!r} is not a token")
    if name.lower() in CLIENT_OWNED:
        raise RequestRefused(f"request field {name.decode('latin-1')} is set by the upstream client")
    names.rememberRequest(name)


def _refuse_value(headers: Headers) -> None:
    """Name the first field whose value holds CR, LF or NUL (all values were checked
    at once; this runs only when that check failed)."""
    for name, value in headers:
        if UNSAFE_VALUE.search(value):
            raise RequestRefused(f"request field {name.decode('latin-1')} contains CR, LF or NUL")


def _framing_field(request: UpstreamRequest) -> bytes:
    """``content-length`` or ``transfer-encoding`` as RFC 9112 6 asks, or nothing."""
    length = request.body_length
    if length is None:
        return b"transfer-encoding: chunked"
    if length < 0:
        raise RequestRefused(f"request body length {length} is negative")
    if length > 0 or request.method in BODY_METHODS:
        return b"content-length: %d" % length
    return b""


def _upgrade_fields(request: UpstreamRequest) -> list[bytes]:
    """``connection: upgrade`` and ``upgrade: <protocol>`` for an upgrade request,
    which carries no body: the bytes after the 101 belong to the new protocol."""
    protocol = request.upgrade
    assert protocol is not None
    if not TOKEN.fullmatch(protocol):
        raise RequestRefused(f"upgrade protocol {protocol!r} is not a token")
    if request.body_length != 0:
        raise RequestRefused("an upgrade request cannot carry a body")
    if any(name.lower() == b"upgrade" for name, _ in request.headers):
        raise RequestRefused("request field upgrade is set by the upstream client")
    return [b"connection: upgrade", b"upgrade: " + protocol]


def expects_continue(request: UpstreamRequest) -> bool:
    """Whether C{request} asks the backend for a 100 before its body (RFC 9110 10.1.1)."""
    return any(name == b"expect" and value.lower() == b"100-continue" for name, value in request.headers)


def _validate_trailers(trailers: Headers) -> None:
    for name, value in trailers:
        if not TOKEN.fullmatch(name) or UNSAFE_VALUE.search(value):
            raise RequestRefused(f"request trailer {name!r} is not a valid field")


class _Writer(TypingProtocol):
    def write(self, data: bytes) -> None: ...

    def writeSequence(self, data: list[bytes]) -> None: ...


class NoBody:
    """The body writer of a request without a body: any byte is refused."""

    def write(self, transport: _Writer, data: bytes) -> None:
        if data:
            raise RequestRefused("request body bytes given for a request declared without a body")

    def finish(self, transport: _Writer, trailers: Headers) -> None:
        """Nothing to write: the head already ended the request."""


class LengthBody:
    """Writes a Content-Length body, refusing a byte more or less than declared
    (a short body would leave the backend waiting for bytes that belong to nobody)."""

    def __init__(self, length: int) -> None:
        self.remaining = length

    def write(self, transport: _Writer, data: bytes) -> None:
        if len(data) > self.remaining:
            raise RequestRefused(
                f"request body is longer than its declared content-length "
                f"({len(data) - self.remaining} bytes over)"
            )
        self.remaining -= len(data)
        if data:
            transport.write(data)

    def finish(self, transport: _Writer, trailers: Headers) -> None:
        if self.remaining:
            raise RequestRefused(
                f"request body ended {self.remaining} bytes short of its declared content-length"
            )


class ChunkedBody:
    """Writes a chunked body: one chunk per write (empty writes skipped, since a
    zero-size chunk ends the body), then the last chunk and the trailers."""

    def write(self, transport: _Writer, data: bytes) -> None:
        if data:
            transport.writeSequence([b"%x\r\n" % len(data), data, b"\r\n"])

    def finish(self, transport: _Writer, trailers: Headers) -> None:
        _validate_trailers(trailers)
        fields = b"".join(name + b": " + value + b"\r\n" for name, value in trailers)
        transport.write(b"0\r\n" + fields + b"\r\n")


#: The one L{NoBody} (it keeps no state).
NO_BODY = NoBody()


def body_writer(request: UpstreamRequest) -> NoBody | LengthBody | ChunkedBody:
    """The body writer matching the framing L{serialize_request_head} announced."""
    if request.body_length is None:
        return ChunkedBody()
    if request.body_length == 0:
        return NO_BODY
    return LengthBody(request.body_length)
