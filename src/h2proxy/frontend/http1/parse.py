# -*- test-case-name: tests.frontend_http1.test_parse -*-
"""Sans-I/O parsing of HTTP/1.1 requests (RFC 9112), strict on purpose.

A proxy that reads a request one way while the backend reads it another is the
root of request smuggling, so anything ambiguous is refused rather than repaired:
bare LF line endings, obs-fold, whitespace before a colon, control characters,
Content-Length beside Transfer-Encoding, transfer codings other than a lone
``chunked``, differing Content-Length values, malformed chunk sizes. The request
that reaches the handler is rebuilt from validated fields only.

No Twisted here: L{parse_request} turns one complete head into a
L{ParsedRequest}, and the body decoders (L{LengthDecoder}, L{ChunkedDecoder})
consume a C{bytearray} from its front and return one event at a time, so the
protocol decides when (and whether) to read on. Everything works with
C{bytes.find}, slicing and compiled regular expressions: no per-byte Python loops.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from h2proxy.errors import H2ProxyError
from h2proxy.fields import HOP_BY_HOP, TOKEN, list_items
from h2proxy.message import RequestHead, Trailers

#: Control characters other than HTAB, which may not appear in a field value.
_CTL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
#: request-line = method SP request-target SP HTTP-version, single spaces only.
_REQUEST_LINE = re.compile(rb"(" + TOKEN.pattern + rb") ([\x21-\x7e]+) HTTP/([0-9])\.([0-9])")
#: absolute-form target: scheme "://" authority path-abempty [ "?" query ].
_ABSOLUTE = re.compile(rb"([A-Za-z][A-Za-z0-9+\-.]*)://([^/?]*)(.*)", re.DOTALL)
#: uri-host [ ":" port ]; no userinfo (a proxy never forwards credentials in Host).
_AUTHORITY = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+,;=]*)(?::[0-9]{0,5})?")
#: Content-Length digits, capped so that no absurd integer is ever built.
_LENGTH = re.compile(rb"[0-9]{1,18}")
#: A chunk-size: hex digits, capped (16 hex digits already exceed any real body).
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")
#: A line feed not preceded by a carriage return.
_BARE_LF = re.compile(rb"(?<!\r)\n")
#: Leading empty lines before a request line (RFC 9112 2.2 says to ignore some).
_EMPTY_LINES = re.compile(rb"(?:\r\n)+")
#: One valid field line: token, colon, OWS, then only HTAB, SP, VCHAR or obs-text.
#: Deterministic (no backtracking), so a whole block is checked in one linear pass.
_FIELD = rb"(" + TOKEN.pattern + rb"):[ \t]*([\t\x20-\x7e\x80-\xff]*)\r\n"
_FIELD_LINE = re.compile(_FIELD)
_FIELD_BLOCK = re.compile(rb"(?:" + _FIELD + rb")*")

#: Longest chunk-size line, extensions included; extensions are ignored but capped.
MAX_CHUNK_LINE = 4096

#: The one protocol an HTTP/1.1 client may upgrade to through the proxy.
WEBSOCKET = b"websocket"

#: Fields a Connection header may not name: removing them at this hop would change
#: how the message is framed or routed further on.
_UNREMOVABLE = frozenset({b"content-length", b"host", b"transfer-encoding"})

#: Trailer fields dropped on the way in: framing and routing fields must not arrive late.
_TRAILER_DROPPED = HOP_BY_HOP | {b"content-length", b"host", b"expect"}

#: Fields the front end reads itself; everything else is only passed on.
_CONTROL = frozenset({b"connection", b"transfer-encoding", b"content-length", b"host", b"expect"})

#: Fields never handed to the handler: the hop-by-hop set the whole proxy shares
#: (L{h2proxy.fields.HOP_BY_HOP}, so both front ends forward the same fields), Host
#: (it becomes the authority) and Expect (handed on rebuilt, only when the client
#: waits for a 100: see L{parse_request}).
_NOT_FORWARDED = HOP_BY_HOP | {b"host", b"expect"}

#: The Expect field handed on when the backend is to decide about a 100-continue.
EXPECT_CONTINUE = (b"expect", b"100-continue")


class RequestRejected(H2ProxyError):
    """A request the front end refuses before (or while) handing it on.

    @ivar status: the status answered when no response has started (400, 417, 431,
        501 or 505).
    @ivar message: what was wrong, for the log and the short response body.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    """A validated HTTP/1.x request head and how its connection goes on.

    @ivar head: the neutral request head handed to the handler.
    @ivar http10: the client spoke HTTP/1.0 (no chunked responses, no 1xx).
    @ivar keepAlive: the client allows another request on this connection.
    @ivar chunked: the body is chunked (C{head.content_length} is then C{None}).
    @ivar expectContinue: the client waits for C{100 Continue} before its body.
    """

    head: RequestHead
    http10: bool
    keepAlive: bool
    chunked: bool
    expectContinue: bool


#: Longest method or target kept from a refused request line for the access log.
REFUSED_FIELD_LIMIT = 1024


def refused_head(data: bytes) -> RequestHead:
    """What the access log can say of a request refused before it was parsed: the
    method and target of its first line when that line has the shape
    C{METHOD TARGET VERSION} (each cut at L{REFUSED_FIELD_LIMIT} bytes), else
    empty fields."""
    line = data.lstrip(b"\r\n").split(b"\r\n", 1)[0].split(b"\n", 1)[0]
    parts = line[: 2 * REFUSED_FIELD_LIMIT + 16].split(b" ")
    if len(parts) != 3:
        return RequestHead(method=b"", scheme=b"", authority=b"", path=b"")
    return RequestHead(
        method=parts[0][:REFUSED_FIELD_LIMIT], scheme=b"", authority=b"", path=parts[1][:REFUSED_FIELD_LIMIT]
    )


def find_head_end(buf: bytearray, start: int) -> int:
    """Index just past the blank line ending a head, or -1 if it has not arrived.

    C{start} lets the caller resume where the previous search stopped (minus the
    three bytes a split CRLFCRLF may straddle), so a head that trickles in is not
    rescanned from its start every time. A bare LF anywhere in the head is refused
    at once rather than left to wait for a CRLFCRLF that may never come.
    """
    end = buf.find(b"\r\n\r\n", start)
    limit = len(buf) if end < 0 else end + 4
    if _BARE_LF.search(buf, start, limit):
        raise RequestRejected(400, "bare LF line ending (lines must end with CRLF)")
    return end if end < 0 else end + 4


def skip_empty_lines(buf: bytearray) -> int:
    """Remove the empty lines some clients send before a request line; return how many."""
    match = _EMPTY_LINES.match(buf)
    if match is None:
        return 0
    del buf[: match.end()]
    return match.end() // 2


def parse_request(raw: bytes, *, secure: bool, localContinue: bool = False) -> ParsedRequest:
    """Parse and validate one complete request head (ending in CRLFCRLF).

    When the client waits for C{100 Continue} (HTTP/1.1, a body follows), the head
    carries ``expect: 100-continue`` so the backend decides, unless C{localContinue}
    (the front end answers the 100 itself).

    @raise RequestRejected: on anything RFC 9112 does not allow or that could be read
        two ways, with the status to answer.
    """
    line_end = raw.find(b"\r\n")
    method, target, http10 = _request_line(raw[:line_end])
    fields = _field_block(raw[line_end + 2 : -2])
    control: dict[bytes, list[bytes]] = {}
    for name, value in fields:
        if name in _CONTROL:
            control.setdefault(name, []).append(value)
    named = _connection_options(control.get(b"connection", []))
    chunked, length = _framing(control, http10)
    authority, path = _target(method, target, control.get(b"host", []), http10)
    expect = _expects_continue(control.get(b"expect", []), http10)
    has_body = chunked or bool(length)
    dropped = _NOT_FORWARDED | named if named else _NOT_FORWARDED
    protocol = _websocket_upgrade(method, fields, named, http10, has_body)
    kept = [field for field in fields if field[0] not in dropped]
    expect = expect and has_body
    if expect and not localContinue:
        kept.append(EXPECT_CONTINUE)
    head = RequestHead(
        method=method,
        scheme=b"https" if secure else b"http",
        authority=authority,
        path=path,
        headers=tuple(kept),
        protocol=protocol,
        content_length=length,
        end_stream=not has_body,
    )
    keep_alive = (b"keep-alive" in named if http10 else True) and b"close" not in named
    return ParsedRequest(
        head=head,
        http10=http10,
        keepAlive=keep_alive,
        chunked=chunked,
        expectContinue=expect,
    )


def _websocket_upgrade(
    method: bytes, fields: list[tuple[bytes, bytes]], named: frozenset[bytes], http10: bool, has_body: bool
) -> bytes | None:
    """``b"websocket"`` for an RFC 6455 opening handshake (a bodiless HTTP/1.1 GET
    with ``Connection: upgrade`` and ``Upgrade: websocket``), else C{None}: any
    other Upgrade (h2c...) is dropped as a hop-by-hop field, as before."""
    if method != b"GET" or http10 or has_body or b"upgrade" not in named:
        return None
    offered = _list_items([value for name, value in fields if name == b"upgrade"])
    return WEBSOCKET if WEBSOCKET in offered else None


def _request_line(line: bytes) -> tuple[bytes, bytes, bool]:
    """Split and check the request line; return method, target and "is HTTP/1.0"."""
    match = _REQUEST_LINE.fullmatch(line)
    if match is None:
        raise RequestRejected(400, "malformed request line")
    method, target, major, minor = match.groups()
    if major != b"1":
        raise RequestRejected(505, f"HTTP version {major.decode()}.{minor.decode()} not supported")
    return method, target, minor == b"0"


def _field_block(block: bytes) -> list[tuple[bytes, bytes]]:
    """Parse the field lines of a head (each ending in CRLF) as (lowercase name, value).

    The common case is two C-level regex passes (validate, then extract); only a
    block that fails validation is walked line by line, to say what is wrong.
    """
    if _FIELD_BLOCK.fullmatch(block) is None:
        for line in block[:-2].split(b"\r\n"):
            parse_field_line(line)
        raise AssertionError("a field block failed validation but every line passed")
    return [(name.lower(), value.rstrip(b" \t")) for name, value in _FIELD_LINE.findall(block)]


def parse_field_line(line: bytes) -> tuple[bytes, bytes]:
    """One ``name: value`` line (header or trailer) as (lowercase name, value)."""
    if line[:1] in (b" ", b"\t"):
        raise RequestRejected(400, "obsolete line folding (obs-fold) is not accepted")
    colon = line.find(b":")
    if colon < 0:
        raise RequestRejected(400, "header line without a colon")
    name = line[:colon]
    if not TOKEN.fullmatch(name):
        raise RequestRejected(400, "invalid header name (or whitespace before the colon)")
    value = line[colon + 1 :].strip(b" \t")
    if _CTL.search(value):
        raise RequestRejected(400, f"control character in the value of {name.decode()!r}")
    return name.lower(), value


def _list_items(values: list[bytes]) -> list[bytes]:
    """The elements of every value of a comma-separated list field (L{list_items})."""
    return [item for value in values for item in list_items(value)]


def _connection_options(values: list[bytes]) -> frozenset[bytes]:
    """The Connection options: ``close``/``keep-alive`` and the fields to drop."""
    options = frozenset(_list_items(values))
    for option in options:
        if not TOKEN.fullmatch(option):
            raise RequestRejected(400, "invalid Connection option")
        if option in _UNREMOVABLE:
            raise RequestRejected(400, f"Connection may not name {option.decode()!r}")
    return options


def _framing(control: dict[bytes, list[bytes]], http10: bool) -> tuple[bool, int | None]:
    """How the body is delimited: (chunked, content length). RFC 9112 6.1-6.3."""
    codings = _list_items(control.get(b"transfer-encoding", []))
    lengths = control.get(b"content-length", [])
    if codings:
        if http10:
            raise RequestRejected(400, "Transfer-Encoding in an HTTP/1.0 request")
        if lengths:
            raise RequestRejected(400, "both Content-Length and Transfer-Encoding present")
        if codings[-1] != b"chunked" or codings.count(b"chunked") != 1:
            raise RequestRejected(400, "Transfer-Encoding must end with a single chunked")
        if len(codings) > 1:
            raise RequestRejected(501, "transfer codings other than chunked are not supported")
        return True, None
    if not lengths:
        return False, None
    return False, _content_length(lengths)


def _content_length(values: list[bytes]) -> int:
    """The one length that every Content-Length value (and list element) agrees on."""
    items = [item.strip(b" \t") for value in values for item in value.split(b",")]
    if any(not _LENGTH.fullmatch(item) for item in items):
        raise RequestRejected(400, "invalid Content-Length")
    lengths = {int(item) for item in items}
    if len(lengths) != 1:
        raise RequestRejected(400, "differing Content-Length values")
    return lengths.pop()


def _target(method: bytes, target: bytes, hosts: list[bytes], http10: bool) -> tuple[bytes, bytes]:
    """Authority and origin-form path of the request (RFC 9112 3.2-3.3)."""
    if len(hosts) > 1:
        raise RequestRejected(400, "more than one Host header")
    if not hosts and not http10:
        raise RequestRejected(400, "HTTP/1.1 request without a Host header")
    host = hosts[0] if hosts else b""
    if method == b"CONNECT":
        raise RequestRejected(501, "CONNECT is not supported")
    if b"#" in target:
        raise RequestRejected(400, "fragment in the request target")
    if target.startswith(b"/"):
        return _authority(host), target
    if target == b"*":
        if method != b"OPTIONS":
            raise RequestRejected(400, "asterisk-form target is only valid for OPTIONS")
        return _authority(host), target
    match = _ABSOLUTE.fullmatch(target)
    if match is None or match.group(1).lower() not in (b"http", b"https"):
        raise RequestRejected(400, "request target is neither origin-form nor an http(s) URI")
    authority, path = match.group(2), match.group(3)
    if not authority:
        raise RequestRejected(400, "absolute URI without a host")
    if not path.startswith(b"/"):
        path = b"/" + path
    return _authority(authority), path


def _authority(value: bytes) -> bytes:
    if not _AUTHORITY.fullmatch(value):
        raise RequestRejected(400, "invalid Host")
    return value


def _expects_continue(values: list[bytes], http10: bool) -> bool:
    """Whether the client waits for 100 Continue; other expectations get 417.

    HTTP/1.0 clients cannot be sent a 1xx, so their Expect is ignored (RFC 9110 10.1.1).
    """
    expectations = _list_items(values)
    if http10 or not expectations:
        return False
    if any(item != b"100-continue" for item in expectations):
        raise RequestRejected(417, "only the 100-continue expectation is supported")
    return True


def _take(buf: bytearray, n: int) -> bytes:
    """Remove and return the first C{n} bytes of C{buf}, copying them once."""
    if n >= len(buf):
        data = bytes(buf)
        buf.clear()
        return data
    with memoryview(buf) as view:
        data = bytes(view[:n])
    del buf[:n]
    return data


class LengthDecoder:
    """A Content-Length body: hands out whatever has arrived, up to the length.

    @ivar remaining: body bytes still expected.
    """

    def __init__(self, length: int) -> None:
        self.remaining = length

    def step(self, buf: bytearray) -> bytes | Trailers | None:
        """The next event: body bytes, the end (L{Trailers}, always empty here), or
        C{None} when more input is needed."""
        if not self.remaining:
            return Trailers()
        if not buf:
            return None
        data = _take(buf, self.remaining)
        self.remaining -= len(data)
        return data


class ChunkedDecoder:
    """A chunked body (RFC 9112 7.1): decoded data is handed out as it arrives,
    without waiting for a chunk to be complete.

    States: C{_SIZE} waits for a chunk-size line; C{_DATA} hands out the chunk's
    remaining bytes; C{_CRLF} expects the CRLF that ends a chunk; C{_TRAILERS}
    collects trailer lines up to the blank line; C{_DONE} after the end was handed out.

    @ivar maxTrailerBytes: cap on the trailer section (431 beyond it).
    """

    _SIZE, _DATA, _CRLF, _TRAILERS, _DONE = range(5)

    def __init__(self, maxTrailerBytes: int) -> None:
        self.maxTrailerBytes = maxTrailerBytes
        self._state = self._SIZE
        self._remaining = 0
        self._trailers: list[tuple[bytes, bytes]] = []
        self._trailerBytes = 0

    def step(self, buf: bytearray) -> bytes | Trailers | None:
        """The next event: body bytes, the end (L{Trailers}), or C{None} when more
        input is needed.

        @raise RequestRejected: on bad framing.
        """
        while True:
            if self._state == self._DATA:
                if not buf:
                    return None
                data = _take(buf, self._remaining)
                self._remaining -= len(data)
                if not self._remaining:
                    self._state = self._CRLF
                return data
            if self._state == self._SIZE:
                if not self._sizeLine(buf):
                    return None
            elif self._state == self._CRLF:
                if len(buf) < 2:
                    return None
                if buf[:2] != b"\r\n":
                    raise RequestRejected(400, "chunk data not followed by CRLF")
                del buf[:2]
                self._state = self._SIZE
            elif self._state == self._TRAILERS:
                if not self._trailerLine(buf):
                    return None
                if self._state == self._DONE:
                    return Trailers(tuple(self._trailers))
            else:
                raise AssertionError("step() called after the body ended")

    def _line(self, buf: bytearray, limit: int, what: str) -> bytes | None:
        end = buf.find(b"\r\n", 0, limit + 2)
        if end < 0:
            if len(buf) > limit + 1:
                raise RequestRejected(431 if what == "trailer" else 400, f"{what} line too long")
            return None
        line = bytes(buf[:end])
        del buf[: end + 2]
        return line

    def _sizeLine(self, buf: bytearray) -> bool:
        line = self._line(buf, MAX_CHUNK_LINE, "chunk size")
        if line is None:
            return False
        size, _, extensions = line.partition(b";")
        size = size.rstrip(b" \t")
        if not _CHUNK_SIZE.fullmatch(size) or _CTL.search(extensions):
            raise RequestRejected(400, "invalid chunk size line")
        self._remaining = int(size, 16)
        self._state = self._DATA if self._remaining else self._TRAILERS
        return True

    def _trailerLine(self, buf: bytearray) -> bool:
        line = self._line(buf, max(self.maxTrailerBytes - self._trailerBytes, 0), "trailer")
        if line is None:
            return False
        self._trailerBytes += len(line) + 2
        if not line:
            self._state = self._DONE
            return True
        name, value = parse_field_line(line)
        if name not in _TRAILER_DROPPED:
            self._trailers.append((name, value))
        return True


class TunnelDecoder:
    """After a 101, the client's bytes are the new protocol's: every byte buffered
    is handed on as it is, and the "body" ends only with the connection."""

    def step(self, buf: bytearray) -> bytes | None:
        if not buf:
            return None
        data = bytes(buf)
        del buf[:]
        return data


BodyDecoder = LengthDecoder | ChunkedDecoder | TunnelDecoder


def body_decoder(request: ParsedRequest, maxTrailerBytes: int) -> BodyDecoder | None:
    """The decoder for C{request}'s body, or C{None} when it has none."""
    if request.chunked:
        return ChunkedDecoder(maxTrailerBytes)
    if request.head.content_length:
        return LengthDecoder(request.head.content_length)
    return None

