# -*- test-case-name: tests.upstream.test_http11 -*-
"""A lean HTTP/1.1 client for one backend connection: request writer, response parser,
and the connection protocol that ties them to a Twisted transport.

Why our own rather than C{twisted.web.client.Agent}: a proxy needs per-chunk push
backpressure in both directions (the client's HTTP/2 stream pauses the backend socket
and the backend socket pauses the stream), exact control of the bytes that go out
(no header the bridge did not ask for, refusal of anything that could be read two
ways), the early-response case, and a reuse decision it can explain. Agent's
C{IBodyProducer}/C{IResponse.deliverBody} pair gives none of that without wrapping
private classes. See docs/_upstream_section.md.

Three parts, each testable alone:

  - L{serialize_request_head} and the body writers (L{NoBody}, L{LengthBody},
    L{ChunkedBody}): what goes to the backend, validated.
  - L{ResponseParser}: a sans-I/O pull parser, C{feed(bytes)} then C{next_event()}
    until it answers C{None} (needs more bytes).
  - L{HTTP11ClientProtocol}: one connection, one exchange at a time, explicit states.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Protocol as TypingProtocol

from twisted.internet import defer
from twisted.internet.base import DelayedCall
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHandshakeListener, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from h2proxy.errors import BackendClosed, BackendProtocolError, BackendTimeout, UpstreamError
from h2proxy.message import Headers, ResponseHead, UpstreamRequest
from h2proxy.upstream.interfaces import ResponseReceiver
from h2proxy.upstream.transport import BACKEND_READ_SIZE, halfClose, tuneTransport

#: Largest response head (status line + fields), and largest trailer section, in bytes.
MAX_HEAD_SIZE = 64 * 1024

#: Largest chunk-size line (size, extensions, CRLF) of a chunked response body.
MAX_CHUNK_LINE = 4 * 1024
#: Most 1xx responses accepted before the final one.
MAX_INFORMATIONAL = 16
#: Most bytes held while the consumer has paused us (the transport is paused too, so
#: only what was already in flight arrives; more means the transport ignored the pause).
MAX_BUFFERED_WHILE_PAUSED = 1024 * 1024
#: Consumed bytes at the front of the parse buffer before it is compacted.
COMPACT_AFTER = 64 * 1024
#: Longest wait for a backend's C{100 Continue} to a request sent with
#: ``expect: 100-continue`` before its body is sent anyway (RFC 9110 10.1.1: a
#: client need not wait forever; curl waits 1 s too).
CONTINUE_TIMEOUT = 1.0
#: Most request-body bytes held while waiting for that 100: what the exchange kept
#: before the connection was ready (its MAX_EARLY_BODY, 1 MiB) plus what a producer
#: writes before its pause takes effect; more fails the exchange.
MAX_HELD_BODY = 2 * 1024 * 1024
#: Longest silence (no byte either way) of an upgraded connection (a WebSocket
#: tunnel) before it is closed, unless the pool says otherwise; 0 disables.
TUNNEL_IDLE_TIMEOUT = 3600.0
#: Longest silence of a tunnel whose request side we closed before the backend
#: closes too. A WebSocket backend answers the client's Close frame and closes at
#: once (RFC 6455 7.1.1); one that does not is cut off after this, so a half-closed
#: tunnel cannot linger for the whole tunnel idle timeout.
TUNNEL_CLOSE_TIMEOUT = 30.0

#: Connection-specific response fields, removed before the head is delivered (RFC 9110
#: 7.6.1); fields named in ``connection`` are removed too.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"te",
        b"trailer",
        b"upgrade",
    }
)
#: Response fields that decide the framing or the connection's reuse, or that are
#: never forwarded.
_FRAMING_AND_HOP = HOP_BY_HOP | {b"content-length"}
#: Methods whose requests carry a body by nature: they get ``content-length: 0`` when empty.
BODY_METHODS = frozenset({b"POST", b"PUT", b"PATCH"})
#: Request fields the client owns (framing and connection management): refused if given.
CLIENT_OWNED = frozenset({b"content-length", b"transfer-encoding", b"connection"})

#: Field names remembered as valid request field names (tokens the client does not own).
MAX_GOOD_NAMES = 1024
#: Methods that need no token check.
_GOOD_METHODS = frozenset({b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"TRACE"})

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(rb"[\x00\r\n]")
_BAD_TARGET = re.compile(rb"[\x00-\x20\x7f]")
_VERSION = re.compile(rb"HTTP/1\.[0-9]")
_STATUS = re.compile(rb"[0-9]{3}")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")
_MAX_LENGTH_DIGITS = 19
_CONTENT_LENGTH = re.compile(rb"[0-9]{1,%d}" % _MAX_LENGTH_DIGITS)
_NO_TOKENS: frozenset[bytes] = frozenset()
#: Request field names already found to be valid tokens the client does not own.
_good_names: set[bytes] = set()
#: Response field names already found to be tokens, as received -> lowercase
#: (at most L{MAX_GOOD_NAMES}): a backend sends the same few names over and over.
_response_names: dict[bytes, bytes] = {}
#: Status-line versions that need no pattern match.
_COMMON_VERSIONS = frozenset({b"HTTP/1.1", b"HTTP/1.0"})


class RequestRefused(UpstreamError):
    """The request cannot be sent as given: a field that could be read two ways by the
    backend, or a body that does not match its declared length. Nothing ambiguous is
    ever written; the connection is closed if the request was under way."""

    status = 400
    reason = "http_request_error"


# -- the request ---------------------------------------------------------------


def serialize_request_head(request: UpstreamRequest) -> bytes:
    """The request line, the given fields and the one framing field, as bytes.

    Raises L{RequestRefused} for a method or field name that is not a token, a target
    or value containing CR, LF or NUL (or a target with spaces/controls), a field the
    client owns (framing, connection), or a negative body length: defence in depth
    behind the front end's own validation, since such bytes would let a backend read
    the stream differently from us (request smuggling).
    """
    method, target = request.method, request.target
    if method not in _GOOD_METHODS and not _TOKEN.fullmatch(method):
        raise RequestRefused(f"request method {method!r} is not a token")
    if not target or _BAD_TARGET.search(target):
        raise RequestRefused(f"request target {target!r} is empty or contains spaces/controls")
    parts = [method, b" ", target, b" HTTP/1.1\r\n"]
    values = []
    for name, value in request.headers:
        if name not in _good_names:
            _check_name(name)
        parts += (name, b": ", value, b"\r\n")
        values.append(value)
    if _BAD_VALUE.search(b"".join(values)):
        _refuse_value(request.headers)
    framing = _framing_field(request)
    if framing:
        parts += (framing, b"\r\n")
    if request.upgrade is not None:
        for line in _upgrade_fields(request):
            parts += (line, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def _check_name(name: bytes) -> None:
    """Refuse a field name that is not a token or that the client owns; remember a
    good one (up to L{MAX_GOOD_NAMES}), since a proxy sees the same few names over
    and over and a set lookup is much cheaper than a regex."""
    if not _TOKEN.fullmatch(name):
        raise RequestRefused(f"request field name {name!r} is not a token")
    if name.lower() in CLIENT_OWNED:
        raise RequestRefused(f"request field {name.decode('latin-1')} is set by the upstream client")
    if len(_good_names) < MAX_GOOD_NAMES:
        _good_names.add(name)


def _refuse_value(headers: Headers) -> None:
    """Name the first field whose value holds CR, LF or NUL (all values were checked
    at once; this runs only when that check failed)."""
    for name, value in headers:
        if _BAD_VALUE.search(value):
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
    if not _TOKEN.fullmatch(protocol):
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
        if not _TOKEN.fullmatch(name) or _BAD_VALUE.search(value):
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


# -- the response --------------------------------------------------------------


class Informational:
    """A 1xx response other than 101 (e.g. 103 Early Hints); a 100 only answering a
    request that expected it."""

    __slots__ = ("head",)

    def __init__(self, head: ResponseHead) -> None:
        self.head = head


class FinalHead:
    """The final response head, hop-by-hop fields removed."""

    __slots__ = ("head",)

    def __init__(self, head: ResponseHead) -> None:
        self.head = head


class Body:
    """A piece of the (de-chunked) response body."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class Complete:
    """The response is complete; trailers of a chunked body, if any."""

    __slots__ = ("trailers",)

    def __init__(self, trailers: Headers) -> None:
        self.trailers = trailers


Event = Informational | FinalHead | Body | Complete


class ParserState(Enum):
    """Where L{ResponseParser} is in the response; see its docstring."""

    HEAD = "head"
    LENGTH = "length"
    CHUNK_SIZE = "chunk-size"
    CHUNK_DATA = "chunk-data"
    CHUNK_END = "chunk-end"
    TRAILERS = "trailers"
    UNTIL_CLOSE = "until-close"
    END = "end"
    DONE = "done"


class ResponseParser:
    """Parses one HTTP/1.x response (with any 1xx before it), RFC 9112, sans I/O.

    Bytes go in with L{feed}; L{next_event} returns the next L{Event}, or C{None} when
    more bytes are needed. Malformed input raises L{BackendProtocolError}; the end of
    the connection (L{close}) before the response is complete makes L{next_event}
    raise L{BackendClosed}.

    States:
      - C{HEAD}: waiting for a head (CRLF CRLF-terminated, at most L{MAX_HEAD_SIZE}).
        A 100 is swallowed (except the first one when C{expectContinue}: the
        request said ``expect: 100-continue``, and that 100 is the go-ahead for
        its body), other 1xx are reported and the state stays; 101 is an
        error unless the request asked for an upgrade (C{upgrade}), in which case it
        is the final head (L{FinalHead}, with L{upgraded} set) and every later byte
        is body until the close (C{UNTIL_CLOSE}). A final head picks the body
        framing (RFC 9112 6.3).
      - C{LENGTH}: a Content-Length body; C{_remaining} bytes to go.
      - C{CHUNK_SIZE}, C{CHUNK_DATA}, C{CHUNK_END}: a chunked body: size line
        (extensions ignored, at most L{MAX_CHUNK_LINE}), data, CRLF after the data.
      - C{TRAILERS}: after the last chunk, the trailer section up to an empty line.
      - C{UNTIL_CLOSE}: no framing given: the body runs until the backend closes.
      - C{END}: the response is complete; the next event is L{Complete}.
      - C{DONE}: L{Complete} was returned; nothing more.

    The buffer is a C{bytes} object while it is consumed whole (a body read is then
    delivered without copying) and a C{bytearray} while a partial line accumulates;
    consumed bytes are skipped with an offset and compacted rarely, and searches
    resume where the previous one stopped, so feeding one byte at a time is linear.

    @ivar keepAlive: after L{Complete}, whether the framing and the fields allow the
        connection to carry another request.
    @ivar status: the final status once known, else 0.
    @ivar upgraded: the final head was a 101 to an upgrade request (C{upgrade}, the
        protocol asked for, lowercase).
    """

    def __init__(self, method: bytes, upgrade: bytes | None = None, expectContinue: bool = False) -> None:
        self._method = method
        self._upgrade = upgrade
        self._expectContinue = expectContinue
        self.upgraded = False
        self._buf: bytes | bytearray = b""
        self._pos = 0
        self._scan = 0
        self._eof = False
        self._cleanEof = False
        self._remaining = 0
        self._informational = 0
        self._trailers: Headers = ()
        self.state = ParserState.HEAD
        self.keepAlive = False
        self.status = 0

    # -- input ---------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Add bytes read from the connection."""
        if self._pos >= len(self._buf):
            self._buf, self._pos, self._scan = data, 0, 0
            return
        if isinstance(self._buf, bytes):
            self._buf = bytearray(self._buf[self._pos :])
            self._scan -= self._pos
            self._pos = 0
        elif self._pos >= COMPACT_AFTER:
            del self._buf[: self._pos]
            self._scan -= self._pos
            self._pos = 0
        self._buf += data

    def close(self, clean: bool) -> None:
        """The connection ended: cleanly (FIN) or not (reset, abort)."""
        self._eof = True
        self._cleanEof = clean

    @property
    def upgrading(self) -> bool:
        """An upgrade was asked for and no final head has arrived yet."""
        return self._upgrade is not None and self.state is ParserState.HEAD

    @property
    def buffered(self) -> int:
        """Bytes received but not yet parsed."""
        return len(self._buf) - self._pos

    def wholeBodyBuffered(self) -> bool:
        """Right after a final head: whether its whole body is already here, a
        content-length one or none at all. Then the protocol takes it with
        L{takeWholeBody} and L{takeComplete} instead of two more events."""
        state = self.state
        return state is ParserState.END or (
            state is ParserState.LENGTH and len(self._buf) - self._pos >= self._remaining
        )

    def takeWholeBody(self) -> bytes:
        """The body L{wholeBodyBuffered} found (C{b""} for none), the same bytes
        L{Body} would carry; the next event is then L{Complete}."""
        count, self._remaining = self._remaining, 0
        self.state = ParserState.END
        return self._take(count) if count else b""

    def takeComplete(self) -> Headers:
        """The trailers L{Complete} would carry, once the state is C{END}."""
        self.state = ParserState.DONE
        return self._trailers

    # -- output --------------------------------------------------------------

    def next_event(self) -> Event | None:
        """The next event, or C{None} when more bytes are needed (or after L{Complete})."""
        state = self.state
        if state is ParserState.LENGTH or state is ParserState.CHUNK_DATA:
            return self._counted()
        if state is ParserState.HEAD:
            return self._head()
        if state is ParserState.CHUNK_SIZE:
            return self._chunkSize()
        if state is ParserState.CHUNK_END:
            return self._chunkEnd()
        if state is ParserState.TRAILERS:
            return self._trailerSection()
        if state is ParserState.UNTIL_CLOSE:
            return self._untilClose()
        if state is ParserState.END:
            self.state = ParserState.DONE
            return Complete(self._trailers)
        return None

    def _needMore(self, what: str) -> None:
        """Nothing to parse yet: fine unless the connection is gone."""
        if self._eof:
            if self.state is ParserState.HEAD and not self.status and not self.buffered:
                raise BackendClosed("backend closed the connection before sending a response")
            raise BackendClosed(f"backend closed the connection in the middle of the {what}")
        return None

    def _take(self, count: int) -> bytes:
        buf, pos = self._buf, self._pos
        self._pos = pos + count
        if isinstance(buf, bytes):
            return buf if pos == 0 and count == len(buf) else buf[pos : pos + count]
        with memoryview(buf) as view:
            return bytes(view[pos : pos + count])

    def _findTerminator(self, terminator: bytes, limit: int, what: str) -> int:
        """Index of C{terminator} after the offset, or -1; raises past C{limit} bytes."""
        buf, pos = self._buf, self._pos
        end = buf.find(terminator, max(pos, self._scan))
        if end < 0:
            if len(buf) - pos > limit:
                raise BackendProtocolError(f"backend {what} is longer than {limit} bytes")
            self._scan = max(pos, len(buf) - len(terminator) + 1)
            return -1
        if end - pos > limit:
            raise BackendProtocolError(f"backend {what} is longer than {limit} bytes")
        self._scan = 0
        return end

    def _head(self) -> Event | None:
        while True:
            end = self._findTerminator(b"\r\n\r\n", MAX_HEAD_SIZE, "response head")
            if end < 0:
                return self._needMore("response head")
            raw = self._take(end - self._pos)
            self._pos += 4
            event = self._parseHead(raw)
            if event is not None:
                return event

    def _parseHead(self, raw: bytes) -> Event | None:
        """One head: L{Informational}, L{FinalHead}, or C{None} for a swallowed 100."""
        lines = raw.split(b"\r\n")
        version, status = _status_line(lines[0])
        fields = _fields(lines[1:], "response header", _clean(raw))
        if status == 101 and self._upgrade is not None:
            return self._switched(fields)
        if status < 200:
            return self._informationalHead(status, fields)
        self.status = status
        http10 = version == b"HTTP/1.0"
        # Framing and connection fields are few: look at them alone, and hand the
        # fields on as they are when none of them has to go.
        special = []
        hop = False
        for item in fields:
            if item[0] in _FRAMING_AND_HOP:
                special.append(item)
                hop = hop or item[0] in HOP_BY_HOP
        tokens = _connection_tokens(special) if hop else _NO_TOKENS
        self._chooseFraming(status, special, http10)
        self.keepAlive = (
            self.state is not ParserState.UNTIL_CLOSE
            and b"close" not in tokens
            and (not http10 or b"keep-alive" in tokens)
        )
        if hop:
            fields = _end_to_end(fields, tokens)
        return FinalHead(ResponseHead(status=status, headers=fields))

    def _switched(self, fields: Headers) -> Event:
        """A 101 to our upgrade request: the rest of the connection is the new
        protocol's, delivered as body until the backend closes. It must name the
        protocol asked for (RFC 9110 7.8)."""
        protocol = self._upgrade
        assert protocol is not None
        offered = [token for name, value in fields if name == b"upgrade" for token in _list(value)]
        if protocol not in offered or b"upgrade" not in _connection_tokens(fields):
            raise BackendProtocolError(
                f"backend answered 101 without Upgrade: {protocol.decode('latin-1')} and Connection: upgrade"
            )
        self.status = 101
        self.upgraded = True
        self.state = ParserState.UNTIL_CLOSE
        return FinalHead(ResponseHead(status=101, headers=_end_to_end(fields, _connection_tokens(fields))))

    def _informationalHead(self, status: int, fields: Headers) -> Event | None:
        if status == 101:
            raise BackendProtocolError("backend answered 101 Switching Protocols; upgrades are not supported")
        self._informational += 1
        if self._informational > MAX_INFORMATIONAL:
            raise BackendProtocolError(f"backend sent more than {MAX_INFORMATIONAL} 1xx responses")
        if status == 100:
            if not self._expectContinue:
                return None
            self._expectContinue = False
        return Informational(ResponseHead(status=status, headers=_end_to_end(fields, _connection_tokens(fields))))

    def _chooseFraming(self, status: int, fields: Headers, http10: bool) -> None:
        """Set the body state from the message framing, RFC 9112 section 6.3."""
        if self._method == b"HEAD" or status in (204, 304):
            self.state = ParserState.END
            return
        codings: list[bytes] = []
        lengths: list[bytes] = []
        for name, value in fields:
            if name == b"content-length":
                # Digits alone (the usual value) are already the one list element.
                lengths += (value,) if value.isdigit() else _list(value)
            elif name == b"transfer-encoding":
                codings += _list(value)
        if codings:
            if http10 or lengths:
                raise BackendProtocolError(
                    "backend response has transfer-encoding together with "
                    + ("HTTP/1.0" if http10 else "content-length")
                )
            if codings != [b"chunked"]:
                raise BackendProtocolError(f"backend used unsupported transfer-coding {b', '.join(codings)!r}")
            self.state = ParserState.CHUNK_SIZE
            return
        if lengths:
            self._remaining = _content_length(lengths)
            self.state = ParserState.LENGTH if self._remaining else ParserState.END
            return
        self.state = ParserState.UNTIL_CLOSE

    def _counted(self) -> Event | None:
        available = len(self._buf) - self._pos
        if not available:
            return self._needMore("response body")
        count = min(available, self._remaining)
        self._remaining -= count
        data = self._take(count)
        if not self._remaining:
            self.state = ParserState.CHUNK_END if self.state is ParserState.CHUNK_DATA else ParserState.END
        return Body(data)

    def _chunkSize(self) -> Event | None:
        end = self._findTerminator(b"\r\n", MAX_CHUNK_LINE, "chunk-size line")
        if end < 0:
            return self._needMore("chunked body")
        line = self._take(end - self._pos)
        self._pos += 2
        size = line.split(b";", 1)[0].rstrip(b" \t")
        if not _CHUNK_SIZE.fullmatch(size):
            raise BackendProtocolError(f"backend sent an invalid chunk-size line {line[:40]!r}")
        self._remaining = int(size, 16)
        self.state = ParserState.CHUNK_DATA if self._remaining else ParserState.TRAILERS
        return self.next_event()

    def _chunkEnd(self) -> Event | None:
        if len(self._buf) - self._pos < 2:
            return self._needMore("chunked body")
        if self._buf[self._pos : self._pos + 2] != b"\r\n":
            raise BackendProtocolError("backend chunk data is not followed by CRLF")
        self._pos += 2
        self.state = ParserState.CHUNK_SIZE
        return self.next_event()

    def _trailerSection(self) -> Event | None:
        if len(self._buf) - self._pos >= 2 and self._buf[self._pos : self._pos + 2] == b"\r\n":
            self._pos += 2
        else:
            end = self._findTerminator(b"\r\n\r\n", MAX_HEAD_SIZE, "trailer section")
            if end < 0:
                return self._needMore("trailer section")
            raw = self._take(end - self._pos)
            self._pos += 4
            self._trailers = _fields(raw.split(b"\r\n"), "response trailer")
        self.state = ParserState.END
        return self.next_event()

    def _untilClose(self) -> Event | None:
        available = len(self._buf) - self._pos
        if available:
            return Body(self._take(available))
        if not self._eof:
            return None
        if not self._cleanEof:
            raise BackendClosed("backend connection was reset before the close-delimited body ended")
        self.state = ParserState.END
        return self.next_event()


def _status_line(line: bytes) -> tuple[bytes, int]:
    parts = line.split(b" ", 2)
    if len(parts) < 2 or not (parts[0] in _COMMON_VERSIONS or _VERSION.fullmatch(parts[0])):
        raise BackendProtocolError(f"backend sent an invalid status line {line[:60]!r}")
    code = parts[1]
    if not (len(code) == 3 and code.isdigit()):
        raise BackendProtocolError(f"backend sent an invalid status line {line[:60]!r}")
    status = int(code)
    if not 100 <= status <= 599:
        raise BackendProtocolError(f"backend sent status {status}, outside 100-599")
    return parts[0], status


def _clean(raw: bytes) -> bool:
    """Whether a head has no NUL and no CR or LF outside its CRLF line ends: then no
    field value can hold one, and L{_fields} skips its per-value search."""
    crlf = raw.count(b"\r\n")
    return b"\x00" not in raw and raw.count(b"\r") == crlf and raw.count(b"\n") == crlf


def _fields(lines: list[bytes], what: str, clean: bool = False) -> Headers:
    """Field lines -> lowercase (name, value) pairs; obs-fold and junk are errors.
    C{clean}: the caller checked that no line holds CR, LF or NUL (L{_clean})."""
    fields = []
    names = _response_names
    for line in lines:
        name, colon, value = line.partition(b":")
        lowered = names.get(name) if colon else None
        if lowered is None:
            if not colon or not _TOKEN.fullmatch(name):
                kind = "obsolete line folding" if line[:1] in (b" ", b"\t") else "an invalid field line"
                raise BackendProtocolError(f"backend {what} has {kind}: {line[:60]!r}")
            lowered = name.lower()
            if len(names) < MAX_GOOD_NAMES:
                names[name] = lowered
        value = value.strip(b" \t")
        if not clean and _BAD_VALUE.search(value):
            raise BackendProtocolError(f"backend {what} {name!r} contains CR, LF or NUL")
        fields.append((lowered, value))
    return tuple(fields)


def _list(value: bytes) -> list[bytes]:
    """The elements of a comma-separated field value, lowercased, empties dropped."""
    return [item.strip(b" \t").lower() for item in value.split(b",") if item.strip(b" \t")]


def _connection_tokens(fields: Headers) -> frozenset[bytes]:
    return frozenset(token for name, value in fields if name == b"connection" for token in _list(value))


def _end_to_end(fields: Headers, tokens: frozenset[bytes]) -> Headers:
    return tuple((n, v) for n, v in fields if n not in HOP_BY_HOP and n not in tokens)


def _content_length(values: list[bytes]) -> int:
    """The one length all ``content-length`` values agree on (RFC 9110 8.6)."""
    if len(values) == 1 and 0 < len(values[0]) <= _MAX_LENGTH_DIGITS and values[0].isdigit():
        return int(values[0])
    if any(not _CONTENT_LENGTH.fullmatch(v) for v in values) or len(set(values)) != 1:
        raise BackendProtocolError(f"backend sent an invalid or conflicting content-length {values!r}")
    return int(values[0])


# -- the connection ------------------------------------------------------------


class ConnectionOwner(TypingProtocol):
    """Who keeps a connection between exchanges (the pool)."""

    def connectionIdle(self, connection: "HTTP11ClientProtocol") -> None:
        """The exchange completed and the connection may carry another request."""

    def connectionGone(self, connection: "HTTP11ClientProtocol") -> None:
        """The connection is closed or unusable; called once, before any failure is
        delivered to the exchange it carried."""


class ExchangeListener(ResponseReceiver, TypingProtocol):
    """What a connection reports to the exchange it carries: the response, and the
    backend socket's backpressure on the request body."""

    def pauseRequestBody(self) -> None:
        """The backend socket is full: stop feeding the request body."""

    def resumeRequestBody(self) -> None:
        """The backend socket drained."""


class _BodyProducerProxy:
    """Registered with the backend transport while a request body is written, so a
    full socket pauses the exchange's own producer. Detached when the body ends, so
    a later transport call reaches nobody; C{stopProducing} (the transport going
    away) is ignored, since the loss is reported through C{connectionLost}."""

    def __init__(self, listener: ExchangeListener) -> None:
        self._listener: ExchangeListener | None = listener

    def pauseProducing(self) -> None:
        if self._listener is not None:
            self._listener.pauseRequestBody()

    def resumeProducing(self) -> None:
        if self._listener is not None:
            self._listener.resumeRequestBody()

    def stopProducing(self) -> None:
        """Ignored: see the class docstring."""

    def detach(self) -> None:
        self._listener = None


class ClientState(Enum):
    """The states of L{HTTP11ClientProtocol}; see its docstring."""

    CONNECTING = "connecting"
    QUIESCENT = "quiescent"
    TRANSMITTING = "transmitting"
    WAITING = "waiting"
    TUNNEL = "tunnel"
    TUNNEL_CLOSING = "tunnel closing"
    CLOSED = "closed"


@implementer(IHandshakeListener)
class HTTP11ClientProtocol(Protocol):
    """One HTTP/1.1 connection to a backend, carrying one exchange at a time.

    States (L{ClientState}):
      - C{CONNECTING}: built, the transport not yet connected.
      - C{QUIESCENT}: connected and idle (in the pool). A byte from the backend now is
        a protocol violation: the connection is closed. A close just removes it.
      - C{TRANSMITTING}: L{sendRequest} wrote the head; the request body is still
        being written (L{writeBody}/L{finishBody}). The response may already be
        arriving: a backend may answer early (e.g. 413) or stream full duplex. A
        response that completes in this state is delivered and the connection is
        closed, never reused, since the body was cut short. A request with
        ``expect: 100-continue`` first holds its body (at most L{MAX_HELD_BODY}
        bytes, the exchange's producer paused) until the backend's 100 (reported
        to the listener), or C{continueTimeout} seconds, then sends it; a final
        head before either means the backend does not want it: the body is
        dropped, and the connection closed after the response.
      - C{WAITING}: the request is completely written; the response is awaited and
        read. On completion the connection goes back to C{QUIESCENT} when the
        parser allows keep-alive and nothing extra arrived, else it is closed.
      - C{TUNNEL}: a 101 answered an upgrade request (L{UpstreamRequest.upgrade}):
        the connection is a raw byte pipe. L{writeBody} writes bytes as they are,
        every byte read is response body, L{finishBody} closes our side, and the
        backend's close ends the response (L{ResponseReceiver.responseEnded} for a
        clean close, C{responseFailed} for a reset). Never reused. The idle timer is
        C{tunnelIdleTimeout}, restarted by bytes either way.
      - C{TUNNEL_CLOSING}: the request side of the tunnel ended (the client's
        END_STREAM or FIN): our side is closed for writing only (a TCP half-close;
        on TLS, nothing is sent, see L{halfClose}), and the backend's bytes are still read and
        delivered, its Close frame included, until it closes; then the response
        ends as in C{TUNNEL}. The timer is at most L{TUNNEL_CLOSE_TIMEOUT}.
      - C{CLOSED}: closed or unusable; terminal. If the backend closed while we were
        paused, bytes already received are still delivered (on resume) before the
        end or the failure.

    Timers (on the injected reactor): from the moment the request is completely sent
    until the final head arrives, C{responseTimeout}; after the head, C{idleTimeout}
    (C{responseTimeout} when not given) as the longest silence between two reads while
    not paused. Either fails the exchange with L{BackendTimeout}. 0 disables them.

    TLS: over a TLS transport the connection is usable only once the handshake is
    done (and the certificate verified); L{whenSecured} fires then, or fails with the
    reason the connection was lost, while the transport can still be asked about the
    peer's certificates. The pool waits for it before sending anything.

    @ivar state: the current L{ClientState}.
    @ivar responseBytes: bytes received for the current exchange (0 means the backend
        said nothing: the pool's stale-connection retry depends on it).
    @ivar requestsSent: exchanges started on this connection.
    """

    def __init__(
        self,
        *,
        reactor: IReactorTime,
        responseTimeout: float,
        owner: ConnectionOwner | None = None,
        idleTimeout: float | None = None,
        tunnelIdleTimeout: float = TUNNEL_IDLE_TIMEOUT,
        continueTimeout: float = CONTINUE_TIMEOUT,
    ) -> None:
        self._reactor = reactor
        self._continueTimeout = continueTimeout
        self._timeout = responseTimeout
        self._idleTimeout = responseTimeout if idleTimeout is None else idleTimeout
        self._tunnelIdleTimeout = tunnelIdleTimeout
        self._closeWhenSwitched = False
        self.owner = owner
        self.state = ClientState.CONNECTING
        self.responseBytes = 0
        self.requestsSent = 0
        self._listener: ExchangeListener | None = None
        self._parser: ResponseParser | None = None
        self._body: NoBody | LengthBody | ChunkedBody = NO_BODY
        self._proxy: _BodyProducerProxy | None = None
        self._timer: DelayedCall | None = None
        # Waiting for a 100 Continue: the body held back, its end (trailers) if
        # given, and the timer that sends it anyway; _bodyRefused after a final
        # head came first.
        self._held: list[bytes] | None = None
        self._heldSize = 0
        self._heldEnd: Headers | None = None
        self._continueTimer: DelayedCall | None = None
        self._bodyRefused = False
        self._headReceived = False
        self._paused = False
        self._lost = False
        self._gone = False
        self._processing = False
        self._secured = False
        self._securing: defer.Deferred[HTTP11ClientProtocol] | None = None

    # -- Twisted protocol ------------------------------------------------------

    def connectionMade(self) -> None:
        self.state = ClientState.QUIESCENT
        tuneTransport(self.transport)

    def dataReceived(self, data: bytes) -> None:
        """Feed the parser and deliver what it finds (unless paused)."""
        if self.state is ClientState.QUIESCENT:
            self._shutdown(abort=True)
            return
        if self._parser is None or self._listener is None:
            return
        self.responseBytes += len(data)
        if self._headReceived and self._timer is not None:
            self._timer.reset(self._idleTimeout)
        self._parser.feed(data)
        if self._paused and self._parser.buffered > MAX_BUFFERED_WHILE_PAUSED:
            self._fail(
                UpstreamError(
                    f"backend sent over {MAX_BUFFERED_WHILE_PAUSED} bytes while reading was paused"
                )
            )
            return
        self._process()

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        """The backend closed (or reset) the connection. An exchange under way still
        gets what was received; the parser decides if that is a complete response."""
        self._lost = True
        self._stopTimer()
        self._stopProxying()
        self._dropHeld()
        securing, self._securing = self._securing, None
        if securing is not None:
            securing.errback(reason)
        if self._parser is not None and self._listener is not None:
            self._parser.close(clean=reason.check(ConnectionDone) is not None)
            self._notifyGone()
            self._process()
        else:
            self.state = ClientState.CLOSED
            self._notifyGone()

    # -- TLS -------------------------------------------------------------------

    def handshakeCompleted(self) -> None:
        """IHandshakeListener: the TLS handshake succeeded and the peer was verified."""
        self._secured = True
        securing, self._securing = self._securing, None
        if securing is not None:
            securing.callback(self)

    def whenSecured(self) -> defer.Deferred["HTTP11ClientProtocol"]:
        """Fires with this protocol once the TLS handshake is done; fails with the
        reason the connection was lost before that. Cancelling it aborts the connection.
        The failure is delivered synchronously from C{connectionLost}, while the TLS
        transport still holds the peer's certificate chain."""
        if self._secured:
            return defer.succeed(self)
        if self._lost or self._securing is not None:
            return defer.fail(BackendClosed("backend connection closed before the TLS handshake completed"))
        self._securing = defer.Deferred(lambda _: self._abortHandshake())
        return self._securing

    def _abortHandshake(self) -> None:
        self._securing = None
        self._shutdown(abort=True)

    # -- the exchange's side ---------------------------------------------------

    def sendRequest(self, request: UpstreamRequest, head: bytes, listener: ExchangeListener) -> None:
        """Start an exchange: write C{head} (from L{serialize_request_head}) and get
        ready for the body and the response. The connection must be C{QUIESCENT};
        if it was lost meanwhile, the listener gets L{BackendClosed} at once."""
        if self.state is not ClientState.QUIESCENT:
            listener.responseFailed(BackendClosed("backend connection closed before the request was sent"))
            return
        self.requestsSent += 1
        self.responseBytes = 0
        self._listener = listener
        self._body = body = body_writer(request)
        expectContinue = body is not NO_BODY and expects_continue(request)
        self._parser = ResponseParser(request.method, request.upgrade, expectContinue)
        self._headReceived = False
        self._paused = False
        self._bodyRefused = False
        self.transport.write(head)
        if body is NO_BODY:
            self._requestSent()
            return
        self.state = ClientState.TRANSMITTING
        if expectContinue:
            self._holdBody(listener)
            return
        self._proxy = _BodyProducerProxy(listener)
        self.transport.registerProducer(self._proxy, True)

    def writeBody(self, data: bytes) -> None:
        """Write request body bytes (tunnel bytes once switched); dropped unless the
        body is being sent."""
        if self.state is ClientState.TUNNEL and not self._lost:
            self.transport.write(data)
            if self._timer is not None:
                self._timer.reset(self._idleTimeout)
            return
        if self.state is not ClientState.TRANSMITTING or self._lost or self._bodyRefused:
            return
        if self._held is not None:
            self._keep(data)
            return
        try:
            self._body.write(self.transport, data)
        except RequestRefused as error:
            self._fail(error)

    def finishBody(self, trailers: Headers = ()) -> None:
        """End the request body (trailers go out only on a chunked body). On a tunnel,
        close our side: the backend's close then ends the response; before the 101
        of an upgrade request, do that as soon as it is switched."""
        if self.state is ClientState.TUNNEL:
            self._closeTunnel()
            return
        if self.state is ClientState.TUNNEL_CLOSING:
            return
        if self.state is ClientState.WAITING and self._parser is not None and self._parser.upgrading:
            self._closeWhenSwitched = True
            return
        if self.state is not ClientState.TRANSMITTING or self._lost or self._bodyRefused:
            return
        if self._held is not None:
            self._heldEnd = trailers
            return
        try:
            self._body.finish(self.transport, trailers)
        except RequestRefused as error:
            self._fail(error)
            return
        self._stopProxying()
        self._requestSent()

    def pauseResponse(self) -> None:
        """Stop reading from the backend and delivering body bytes."""
        if self._paused:
            return
        self._paused = True
        if self._headReceived:
            self._stopTimer()
        if self._transportUsable():
            self.transport.pauseProducing()

    def resumeResponse(self) -> None:
        """Deliver what was held back, then read from the backend again."""
        if not self._paused:
            return
        self._paused = False
        if self._transportUsable():
            self.transport.resumeProducing()
            if self._headReceived and self._listener is not None:
                self._startTimer()
        self._process()

    def abandon(self) -> None:
        """Cancel the exchange: deliver nothing more and close the connection."""
        self._listener = None
        self._shutdown(abort=True)

    def close(self) -> None:
        """Close an idle connection (pool expiry, pool shutdown)."""
        self._shutdown(abort=False)

    # -- internals -------------------------------------------------------------

    def _requestSent(self) -> None:
        self.state = ClientState.WAITING
        if not self._headReceived:
            self._startTimer()

    def _transportUsable(self) -> bool:
        return not self._lost and self.state is not ClientState.CLOSED

    def _process(self) -> None:
        """Hand parser events to the listener until it needs bytes, we are paused
        (after the head), the exchange ends, or it is cancelled."""
        if self._processing:
            return
        self._processing = True
        try:
            while self._listener is not None and self._parser is not None:
                if self._paused and self._headReceived:
                    break
                event = self._parser.next_event()
                if event is None:
                    break
                self._dispatch(event)
        except UpstreamError as error:
            self._fail(error)
        finally:
            self._processing = False

    def _dispatch(self, event: Event) -> None:
        listener = self._listener
        assert listener is not None
        if isinstance(event, Body):
            listener.responseDataReceived(event.data)
        elif isinstance(event, FinalHead):
            self._finalHead(listener, event.head)
        elif isinstance(event, Informational):
            listener.responseInformational(event.head)
            if event.head.status == 100 and self._held is not None and self._listener is listener:
                self._sendHeld()
        elif isinstance(event, Complete):
            self._complete(event.trailers)
        else:
            raise AssertionError(f"Unexpected event: {event!r}")

    def _finalHead(self, listener: ExchangeListener, head: ResponseHead) -> None:
        """Deliver the final head; when its whole body is already buffered (the
        common small response), deliver the body and the end right after it, without
        the parser's two further events and without moving the timer to the body
        phase: it is stopped at the end anyway, and a pause or an abandon from a
        callback stops it as it would have. Anything else goes back to the event loop."""
        parser = self._parser
        assert parser is not None
        self._headReceived = True
        if self._held is not None:
            self._bodyRefused = True
            self._dropHeld()
        if parser.upgraded:
            self._switched(listener)
        whole = not self._paused and parser.wholeBodyBuffered()
        if self._paused:
            self._stopTimer()
        elif not whole:
            self._startTimer()
        listener.responseHeadReceived(head)
        if not whole or self._listener is not listener or self._paused:
            return
        data = parser.takeWholeBody()
        if data:
            listener.responseDataReceived(data)
            if self._listener is not listener or self._paused:
                return
        self._complete(parser.takeComplete())

    def _complete(self, trailers: Headers) -> None:
        """The response is whole: pool or close the connection, then deliver the end.
        The owner hears first, so a request made from inside C{responseEnded} (or a
        waiting one) can already have this connection."""
        listener, parser = self._listener, self._parser
        assert listener is not None and parser is not None
        self._listener = self._parser = None
        self._stopTimer()
        reusable = (
            parser.keepAlive
            and self.state is ClientState.WAITING
            and not parser.buffered
            and not self._lost
        )
        if reusable:
            self.state = ClientState.QUIESCENT
            if self._paused:
                self._paused = False
                self.transport.resumeProducing()
        else:
            self._shutdown(abort=False)
        if reusable and self.owner is not None:
            self.owner.connectionIdle(self)
        listener.responseEnded(trailers)

    def _switched(self, listener: ExchangeListener) -> None:
        """The backend accepted the upgrade: from now on a raw pipe (C{TUNNEL})."""
        self.state = ClientState.TUNNEL
        self._idleTimeout = self._tunnelIdleTimeout
        if not self._lost:
            self._proxy = _BodyProducerProxy(listener)
            self.transport.registerProducer(self._proxy, True)
        if self._closeWhenSwitched:
            self._closeTunnel()

    def _closeTunnel(self) -> None:
        """Our side of the tunnel is done: close it for writing once the written
        bytes are flushed, and go on reading; the backend's close completes the
        response (C{TUNNEL_CLOSING}). A full close here would drop what the backend
        still sends, its answering Close frame first, and the client would see the
        WebSocket end uncleanly (close code 1006)."""
        self.state = ClientState.TUNNEL_CLOSING
        self._stopProxying()
        if self._lost or self.transport is None:
            return
        halfClose(self.transport)
        if self._idleTimeout <= 0 or self._idleTimeout > TUNNEL_CLOSE_TIMEOUT:
            self._idleTimeout = TUNNEL_CLOSE_TIMEOUT
        if not self._paused:
            self._startTimer()

    def _fail(self, error: UpstreamError) -> None:
        """Close the connection, then report C{error} once to the exchange."""
        listener = self._listener
        self._listener = None
        self._shutdown(abort=True)
        if listener is not None:
            listener.responseFailed(error)

    def _shutdown(self, abort: bool) -> None:
        """Make the connection unusable: timers off, transport closed, owner told."""
        if self.state is ClientState.CLOSED and self._gone:
            return
        self.state = ClientState.CLOSED
        self._stopTimer()
        self._stopProxying()
        self._dropHeld()
        if not self._lost and self.transport is not None:
            if abort:
                self.transport.abortConnection()
            else:
                self.transport.loseConnection()
        self._notifyGone()

    def _notifyGone(self) -> None:
        if self._gone:
            return
        self._gone = True
        if self.owner is not None:
            self.owner.connectionGone(self)

    def _stopProxying(self) -> None:
        proxy, self._proxy = self._proxy, None
        if proxy is None:
            return
        proxy.detach()
        if not self._lost:
            self.transport.unregisterProducer()

    def _holdBody(self, listener: ExchangeListener) -> None:
        """Wait for the backend's 100 (or its final answer) before sending the body:
        pause the producer and start the timer that sends the body anyway."""
        self._held, self._heldSize, self._heldEnd = [], 0, None
        listener.pauseRequestBody()
        self._continueTimer = self._reactor.callLater(self._continueTimeout, self._continueTimedOut)

    def _keep(self, data: bytes) -> None:
        assert self._held is not None
        self._heldSize += len(data)
        if self._heldSize > MAX_HELD_BODY:
            self._fail(
                UpstreamError(f"request body producer wrote over {MAX_HELD_BODY} bytes while waiting for 100 Continue")
            )
            return
        self._held.append(data)

    def _continueTimedOut(self) -> None:
        self._continueTimer = None
        self._sendHeld()

    def _sendHeld(self) -> None:
        """The backend said 100 (or kept silent too long): write what was held,
        then let the producer go on under the transport's backpressure."""
        held, end, listener = self._held, self._heldEnd, self._listener
        self._dropHeld()
        if held is None or listener is None or self._lost:
            return
        for data in held:
            self.writeBody(data)
            if self.state is not ClientState.TRANSMITTING:
                return
        if end is not None:
            self.finishBody(end)
        else:
            self._proxy = _BodyProducerProxy(listener)
            self.transport.registerProducer(self._proxy, True)
        listener.resumeRequestBody()

    def _dropHeld(self) -> None:
        """Stop waiting for a 100: forget the held body and its timer."""
        self._held, self._heldSize, self._heldEnd = None, 0, None
        timer, self._continueTimer = self._continueTimer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _startTimer(self) -> None:
        """(Re)start the timer for the current phase; a running one is reset rather
        than cancelled and replaced (one C{callLater} per exchange, not one per phase)."""
        timeout = self._idleTimeout if self._headReceived else self._timeout
        if timeout <= 0 or self._lost:
            self._stopTimer()
            return
        timer = self._timer
        if timer is not None and timer.active():
            timer.reset(timeout)
        else:
            self._timer = self._reactor.callLater(timeout, self._timedOut)

    def _stopTimer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _timedOut(self) -> None:
        self._timer = None
        if self.state is ClientState.TUNNEL:
            message = f"upgraded connection (WebSocket) idle for {self._idleTimeout:g}s both ways"
        elif self.state is ClientState.TUNNEL_CLOSING:
            message = (
                f"backend did not close the upgraded connection (WebSocket) within "
                f"{self._idleTimeout:g}s of silence after the client closed its side"
            )
        elif self._headReceived:
            message = f"backend sent nothing for {self._idleTimeout:g}s in the middle of the response body"
        else:
            message = f"backend sent no response head within {self._timeout:g}s of the request"
        self._fail(BackendTimeout(message))
