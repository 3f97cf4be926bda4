# -*- test-case-name: tests.upstream.test_parser -*-
"""What comes back from the backend: L{ResponseParser}, a sans-I/O pull parser of
one HTTP/1.x response (RFC 9112), C{feed(bytes)} then C{next_event()} until it
answers C{None}, and the events it returns."""

from __future__ import annotations

from enum import Enum

from h2proxy.errors import BackendClosed, BackendProtocolError
from h2proxy.fields import HOP_BY_HOP, TOKEN, UNSAFE_VALUE, list_items
from h2proxy.message import Headers, ResponseHead
from h2proxy.upstream.http11.grammar import (
    CHUNK_SIZE,
    COMMON_VERSIONS,
    CONTENT_LENGTH,
    FRAMING_AND_HOP,
    MAX_LENGTH_DIGITS,
    NO_TOKENS,
    VERSION,
    FieldNameCache,
)

#: Largest response head (status line + fields), and largest trailer section, in bytes.
MAX_HEAD_SIZE = 64 * 1024
#: Largest chunk-size line (size, extensions, CRLF) of a chunked response body.
MAX_CHUNK_LINE = 4 * 1024
#: Most 1xx responses accepted before the final one.
MAX_INFORMATIONAL = 16
#: Consumed bytes at the front of the parse buffer before it is compacted.
COMPACT_AFTER = 64 * 1024


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

    Field names found valid are remembered in C{names} (the pool's
    L{FieldNameCache}; this parser's own when not given).

    @ivar keepAlive: after L{Complete}, whether the framing and the fields allow the
        connection to carry another request.
    @ivar status: the final status once known, else 0.
    @ivar upgraded: the final head was a 101 to an upgrade request (C{upgrade}, the
        protocol asked for, lowercase).
    """

    def __init__(
        self,
        method: bytes,
        upgrade: bytes | None = None,
        expectContinue: bool = False,
        names: FieldNameCache | None = None,
    ) -> None:
        self._method = method
        self._upgrade = upgrade
        self._expectContinue = expectContinue
        self._names = FieldNameCache() if names is None else names
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
        fields = _fields(lines[1:], "response header", self._names, _clean(raw))
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
            if item[0] in FRAMING_AND_HOP:
                special.append(item)
                hop = hop or item[0] in HOP_BY_HOP
        tokens = _connection_tokens(special) if hop else NO_TOKENS
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
        offered = [token for name, value in fields if name == b"upgrade" for token in list_items(value)]
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
                lengths += (value,) if value.isdigit() else list_items(value)
            elif name == b"transfer-encoding":
                codings += list_items(value)
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
        if not CHUNK_SIZE.fullmatch(size):
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
            self._trailers = _fields(raw.split(b"\r\n"), "response trailer", self._names)
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
    if len(parts) < 2 or not (parts[0] in COMMON_VERSIONS or VERSION.fullmatch(parts[0])):
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


def _fields(lines: list[bytes], what: str, cache: FieldNameCache, clean: bool = False) -> Headers:
    """Field lines -> lowercase (name, value) pairs; obs-fold and junk are errors.
    C{clean}: the caller checked that no line holds CR, LF or NUL (L{_clean})."""
    fields = []
    names = cache.response
    for line in lines:
        name, colon, value = line.partition(b":")
        lowered = names.get(name) if colon else None
        if lowered is None:
            if not colon or not TOKEN.fullmatch(name):
                kind = "obsolete line folding" if line[:1] in (b" ", b"\t") else "an invalid field line"
                raise BackendProtocolError(f"backend {what} has {kind}: {line[:60]!r}")
            lowered = name.lower()
            cache.rememberResponse(name, lowered)
        value = value.strip(b" \t")
        if not clean and UNSAFE_VALUE.search(value):
            raise BackendProtocolError(f"backend {what} {name!r} contains CR, LF or NUL")
        fields.append((lowered, value))
    return tuple(fields)


def _connection_tokens(fields: Headers) -> frozenset[bytes]:
    return frozenset(token for name, value in fields if name == b"connection" for token in list_items(value))


def _end_to_end(fields: Headers, tokens: frozenset[bytes]) -> Headers:
    return tuple((n, v) for n, v in fields if n not in HOP_BY_HOP and n not in tokens)


def _content_length(values: list[bytes]) -> int:
    """The one length all ``content-length`` values agree on (RFC 9110 8.6)."""
    if len(values) == 1 and 0 < len(values[0]) <= MAX_LENGTH_DIGITS and values[0].isdigit():
        return int(values[0])
    if any(not CONTENT_LENGTH.fullmatch(v) for v in values) or len(set(values)) != 1:
        raise BackendProtocolError(f"backend sent an invalid or conflicting content-length {values!r}")
    return int(values[0])
