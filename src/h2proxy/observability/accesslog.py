# -*- test-case-name: tests.observability.test_accesslog -*-
"""One line per request: the record the bridge fills, its two formats, and a writer
that never holds a request up.

- L{RequestRecord}: what happened to one request (stream), filled by the bridge as
  the request goes and handed to a L{RequestObserver} once, when it is over.
- L{format_combined}: the Apache/nginx C{combined} format, so existing tools parse
  it, followed by C{key=value} fields for what combined has no place for (timings,
  route, upstream server, retries, stream and request ids, the error's reason).
- L{format_json}: one JSON object per line with every field.
- L{AccessLogFile}: collects records and writes them once per reactor turn, in one
  write per batch. The descriptor is non-blocking where that matters (standard
  output shared with the supervisor may be a pipe to a stalled journal), a write
  that cannot finish keeps at most L{MAX_BACKLOG} bytes for later, and a write that
  fails (full disk, file removed, permission) drops its lines: every dropped line is
  counted (L{AccessLogFile.lost}, exported as a metric) and the failure is logged
  once per streak, never raised into the request path.
- L{RequestObserver}: what the bridge tells about each request: L{requestStarted}
  makes its record, L{responseStarted} and L{exchangeUsed} note the backend's part,
  and L{requestFinished}, once per request, feeds the metrics, the access log line
  and the recent-errors list of the status page. L{NO_OBSERVER} does the same
  bookkeeping and reports nowhere (a bridge without observability, in tests).
"""

from __future__ import annotations

import errno
import json
import os
import socket
import stat
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from h2proxy.observability.metrics import WorkerMetrics, refusal_reason, server_label, status_class

log = Logger()

#: Records waiting for the next flush; past this (a flood within one reactor turn),
#: records are dropped and counted.
MAX_PENDING = 10_000
#: Bytes kept when the output accepts no more for now (a full pipe); past this,
#: lines are dropped and counted.
MAX_BACKLOG = 1024 * 1024
#: Seconds before writing a backlog again, or opening a file that could not be opened.
RETRY_DELAY = 0.5
#: Largest write to a shared pipe or socket that the kernel keeps whole (PIPE_BUF),
#: so lines of several workers sharing standard output never interleave.
ATOMIC_WRITE = 4096
#: Proxy-generated errors each worker keeps for the status page.
RECENT_ERRORS = 20
#: Status logged for a request whose client went away before any response (nginx's).
CLIENT_CLOSED = 499

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(slots=True)
class RequestRecord:
    """What happened to one request; strings are as received (latin-1 decoded).

    @ivar start: when the request head arrived (Unix time, from the injected clock).
    @ivar client: the client's address (after PROXY protocol / trusted forwarding).
    @ivar protocol: C{h2} or C{http/1.1}.
    @ivar status: the status sent to the client; L{CLIENT_CLOSED} when the client
        went away first; 0 while unknown.
    @ivar duration: seconds from C{start} to the end (set when the request is over).
    @ivar firstByte: seconds from C{start} to the backend's response head, if any.
    @ivar route: the matched route's label; empty when none matched.
    @ivar upstream: the route's upstream name; empty when none.
    @ivar server: the backend server (C{host:port}) that answered, if any.
    @ivar retries: attempts on another server after the first.
    @ivar error: the first cause of an abnormal end (RFC 9209 error type where one
        fits): a proxy-generated error or the reason of a reset, e.g.
        C{connection_refused}, C{connection_terminated}, C{client_closed},
        C{drain_timeout}, C{http_request_error}; empty when none. Set once: a later
        cause (the reset a backend failure causes) does not replace it.
    @ivar reset: the stream ended by a reset (either side) rather than completing.
    @ivar clientCert: the RFC 4514 subject of the client's verified certificate
        (mutual TLS); empty when it presented none.
    @ivar coding: the content coding the proxy encoded the response in (C{gzip},
        C{br}, C{zstd}); empty when it sent the body as it came.
    @ivar codingIn: response body bytes given to that coding's encoder.
    @ivar codingOut: encoded bytes it gave back (sent to the client).
    """

    start: float
    client: str
    protocol: str
    method: str
    authority: str
    path: str
    streamID: int
    requestId: str = ""
    userAgent: str = ""
    referer: str = ""
    status: int = 0
    requestBytes: int = 0
    responseBytes: int = 0
    duration: float = 0.0
    firstByte: float | None = None
    route: str = ""
    upstream: str = ""
    server: str = ""
    retries: int = 0
    error: str = ""
    reset: bool = False
    clientCert: str = ""
    coding: str = ""
    codingIn: int = 0
    codingOut: int = 0


def _latin1(raw: bytes) -> str:
    return raw.decode("latin-1")


def _header(head, name: bytes) -> str:
    for key, value in head.headers:
        if key == name:
            return value.decode("latin-1")
    return ""


class ArrivedRecord(RequestRecord):
    """A L{RequestRecord} made from a request head, whose request strings (method,
    authority, path, user agent, referer, request id) are decoded when first read,
    not when the request arrives: most records only feed counters and never become
    a line of text. Reads give the same strings as decoding up front would."""

    __slots__ = ("_head", "_rawRequestId")

    def __init__(self, *, start: float, client: str, protocol: str, head, streamID: int,
                 requestId: bytes) -> None:
        self._head, self._rawRequestId = head, requestId
        self.start, self.client, self.protocol, self.streamID = start, client, protocol, streamID
        self.status = self.requestBytes = self.responseBytes = self.retries = 0
        self.duration, self.firstByte, self.reset = 0.0, None, False
        self.route = self.upstream = self.server = self.error = self.clientCert = self.coding = ""
        self.codingIn = self.codingOut = 0

    method = property(lambda self: _latin1(self._head.method))  # type: ignore[assignment]
    authority = property(lambda self: _latin1(self._head.authority))  # type: ignore[assignment]
    path = property(lambda self: _latin1(self._head.path))  # type: ignore[assignment]
    requestId = property(lambda self: self._rawRequestId.decode("ascii", "replace"))  # type: ignore[assignment]
    userAgent = property(lambda self: _header(self._head, b"user-agent"))  # type: ignore[assignment]
    referer = property(lambda self: _header(self._head, b"referer"))  # type: ignore[assignment]


# -- formats ------------------------------------------------------------------------


def _escape(text: str) -> str:
    """nginx's escaping inside a quoted log field: quote, backslash and anything not
    printable ASCII become C{\\xHH}, so one request is always one parseable line."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return text
    out = []
    for char in text:
        code = ord(char)
        if 0x20 <= code < 0x7F and char not in '"\\':
            out.append(char)
        else:
            out.append("".join(f"\\x{byte:02X}" for byte in char.encode("utf-8")))
    return "".join(out)


def _token(text: str) -> str:
    """A C{key=value} value: C{-} when empty, escaped, spaces included."""
    return _escape(text).replace(" ", "\\x20") if text else "-"


class _ClockText:
    """The combined format's local time, C{10/Oct/2000:13:55:36 -0700}, formatted
    once per second rather than once per line."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def __call__(self, when: float) -> str:
        second = int(when)
        if second != self._second:
            t = time.localtime(second)
            offset = t.tm_gmtoff // 60
            sign = "+" if offset >= 0 else "-"
            self._text = (f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:"
                          f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} "
                          f"{sign}{abs(offset) // 60:02d}{abs(offset) % 60:02d}")
            self._second = second
        return self._text


_combinedTime = _ClockText()


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def format_combined(record: RequestRecord) -> str:
    """The record as an Apache/nginx C{combined} line plus C{key=value} fields."""
    version = "HTTP/2.0" if record.protocol == "h2" else "HTTP/1.1"
    return (
        f'{record.client or "-"} - - [{_combinedTime(record.start)}] '
        f'"{_escape(record.method)} {_escape(record.path)} {version}" {record.status or CLIENT_CLOSED} '
        f'{record.responseBytes} "{_escape(record.referer) or "-"}" "{_escape(record.userAgent) or "-"}"'
        f" rt={record.duration:.3f} uht={_seconds(record.firstByte)} rx={record.requestBytes}"
        f" host={_token(record.authority)} route={_token(record.route)}"
        f" upstream={_token(record.upstream)} server={_token(record.server)}"
        f" retries={record.retries} stream={record.streamID} id={_token(record.requestId)}"
        f" coding={_token(record.coding)} client_cert={_token(record.clientCert)} error={_token(record.error)}"
    )


def format_json(record: RequestRecord) -> str:
    """The record as one JSON object (no newline inside)."""
    return json.dumps(
        {
            "time": datetime.fromtimestamp(record.start, timezone.utc).isoformat(timespec="milliseconds"),
            "client": record.client,
            "protocol": record.protocol,
            "method": record.method,
            "authority": record.authority,
            "path": record.path,
            "status": record.status or CLIENT_CLOSED,
            "request_bytes": record.requestBytes,
            "response_bytes": record.responseBytes,
            "duration": round(record.duration, 6),
            "upstream_first_byte": None if record.firstByte is None else round(record.firstByte, 6),
            "route": record.route or None,
            "upstream": record.upstream or None,
            "server": record.server or None,
            "retries": record.retries,
            "stream_id": record.streamID,
            "request_id": record.requestId or None,
            "user_agent": record.userAgent or None,
            "referer": record.referer or None,
            "error": record.error or None,
            "reset": record.reset,
            "client_cert": record.clientCert or None,
            "coding": record.coding or None,
        },
        separators=(",", ":"),
    )


FORMATS: dict[str, Callable[[RequestRecord], str]] = {"combined": format_combined, "json": format_json}


# -- output ---------------------------------------------------------------------------


class Output:
    """A descriptor the access log writes to, opened so that a write never blocks
    for long: regular files are appended to, a pipe or terminal is reopened
    non-blocking (its own open file description, so the flag does not leak to the
    other processes sharing it), a socket is written with C{MSG_DONTWAIT}.

    @ivar chunk: largest single write (L{ATOMIC_WRITE} on shared streams), or None.
    """

    def __init__(self, fd: int, chunk: int | None, sock: socket.socket | None = None) -> None:
        self.fd = fd
        self.chunk = chunk
        self._sock = sock

    @classmethod
    def open(cls, path: str) -> "Output":
        """Open C{path} (C{-}: this process's standard output).

        @raise OSError: it cannot be opened.
        """
        if path != "-":
            return cls(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640), None)
        mode = os.fstat(1).st_mode
        if stat.S_ISREG(mode):
            return cls(os.dup(1), None)
        if stat.S_ISSOCK(mode):
            sock = socket.socket(fileno=os.dup(1))
            return cls(sock.fileno(), ATOMIC_WRITE, sock)
        try:
            fd = os.open("/proc/self/fd/1", os.O_WRONLY | os.O_NONBLOCK | os.O_APPEND | os.O_CLOEXEC)
        except OSError:
            fd = os.dup(1)
        return cls(fd, ATOMIC_WRITE)

    def write(self, data: bytes) -> int:
        """Write as much of C{data} as the output takes now, in whole chunks ending on
        a line end where possible; returns the bytes written.

        @raise OSError: the output failed (not merely full).
        """
        view = memoryview(data)
        written = 0
        while written < len(data):
            end = len(data) if self.chunk is None else _chunk_end(data, written, self.chunk)
            try:
                written += self._write1(view[written:end])
            except BlockingIOError:
                break
            if written < end:
                break
        return written

    def _write1(self, data: memoryview) -> int:
        if self._sock is not None:
            return self._sock.send(data, socket.MSG_DONTWAIT)
        return os.write(self.fd, data)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        else:
            os.close(self.fd)


def _chunk_end(data: bytes, start: int, limit: int) -> int:
    """The end of the next chunk: the last line end within C{limit} bytes, else the
    end of one (long) line."""
    if len(data) - start <= limit:
        return len(data)
    cut = data.rfind(b"\n", start, start + limit)
    if cut >= 0:
        return cut + 1
    cut = data.find(b"\n", start)
    return len(data) if cut < 0 else cut + 1


class AccessLogFile:
    """Batches records and writes them without ever blocking or raising into the
    request path (see the module docstring).

    @ivar lost: lines dropped so far (never reset).
    """

    def __init__(
        self,
        path: str,
        *,
        format: str,
        clock: IReactorTime,
        opener: Callable[[str], Output] = Output.open,
    ) -> None:
        self.path = path
        self.format = FORMATS[format]
        self.clock = clock
        self.opener = opener
        self.lost = 0
        self._pending: list[RequestRecord] = []
        self._backlog = b""
        self._call: IDelayedCall | None = None
        self._failing: str | None = None
        self._output: Output | None = None
        self._retryAt = 0.0
        self._open()

    def log(self, record: RequestRecord) -> None:
        """Queue C{record}; it is written at the end of this reactor turn."""
        if len(self._pending) >= MAX_PENDING:
            self.lost += 1
            return
        self._pending.append(record)
        if self._call is None:
            self._call = self.clock.callLater(0, self.flush)

    def flush(self) -> None:
        """Format what is pending and write it with the backlog; keep what the output
        did not take (up to L{MAX_BACKLOG}) for a retry."""
        self._call = None
        records, self._pending = self._pending, []
        format = self.format
        data = self._backlog + "".join([format(r) + "\n" for r in records]).encode("utf-8", "replace")
        self._backlog = b""
        if not data:
            return
        if self._output is None and (self.clock.seconds() < self._retryAt or not self._open()):
            self._drop(data)
            return
        try:
            written = self._output.write(data)
        except OSError as problem:
            self._failed(problem)
            self._drop(data)
            return
        self._recovered()
        self._keep(data[written:], partial=written > 0 and data[written - 1:written] != b"\n")

    def reopen(self) -> None:
        """SIGUSR1: write what is pending to the old file, then open the path again
        (logrotate moved the old file away)."""
        self.flush()
        self._closeOutput()
        self._open()
        self.flush()

    def close(self) -> None:
        """Write what is pending (as far as the output takes it) and close."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self.flush()
        self._closeOutput()

    # -- internals ------------------------------------------------------------

    def _open(self) -> bool:
        try:
            self._output = self.opener(self.path)
        except OSError as problem:
            self._failed(problem)
            self._retryAt = self.clock.seconds() + RETRY_DELAY
            return False
        return True

    def _closeOutput(self) -> None:
        output, self._output = self._output, None
        if output is not None:
            try:
                output.close()
            except OSError:
                pass

    def _keep(self, rest: bytes, partial: bool) -> None:
        """Keep C{rest} for later; over the cap, drop its whole lines (but finish a
        line already half written, so the next line starts on its own)."""
        if not rest:
            return
        if len(rest) > MAX_BACKLOG:
            end = rest.find(b"\n") + 1 if partial else 0
            self._drop(rest[end:])
            rest = rest[:end]
        self._backlog = rest
        if rest and self._call is None:
            self._call = self.clock.callLater(RETRY_DELAY, self.flush)

    def _drop(self, data: bytes) -> None:
        self.lost += data.count(b"\n")
        if self._output is None and self._call is None and (self._pending or self._backlog):
            self._call = self.clock.callLater(RETRY_DELAY, self.flush)

    def _failed(self, problem: OSError) -> None:
        text = f"{problem.strerror or problem}"
        if problem.errno == errno.ENOSPC:
            text = "no space left on the device"
        if self._failing != text:
            self._failing = text
            log.error("access log {path}: {problem}; request lines are dropped (and counted) until "
                      "it can be written", path=self.path, problem=text)

    def _recovered(self) -> None:
        if self._failing is not None:
            self._failing = None
            log.info("access log {path} is written again; {lost} line(s) lost so far",
                     path=self.path, lost=self.lost)


# -- the observer ------------------------------------------------------------------------

#: Protocol names by the version the bridge gives (the one Via uses).
_PROTOCOLS = {b"2": "h2", b"1.1": "http/1.1"}


class NullObserver:
    """Keeps a request's record up to date and reports it nowhere."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.now = clock

    def requestStarted(self, *, head, client: str, protocol: bytes, streamID: int,
                       requestId: bytes) -> RequestRecord:
        """The record of a request whose head (a C{RequestHead}) just arrived."""
        return ArrivedRecord(
            start=self.now(),
            client=client,
            protocol=_PROTOCOLS.get(protocol) or protocol.decode("ascii", "replace"),
            head=head,
            streamID=streamID,
            requestId=requestId,
        )

    def responseStarted(self, record: RequestRecord, status: int) -> None:
        """The backend's response head arrived with C{status}."""
        record.status = status
        record.firstByte = self.now() - record.start

    def exchangeUsed(self, record: RequestRecord, exchange: object) -> None:
        """Note which server the exchange reached and how often it was retried (read
        from the upstream side's exchange, when it says)."""
        pool = getattr(exchange, "server", None)
        server = getattr(pool, "server", None)
        if server is not None:
            record.server = server_label(server)
        record.retries = getattr(exchange, "tries", 0) or 0

    def requestFinished(self, record: RequestRecord) -> None:
        """The request is over (once per request): stamp its duration."""
        record.duration = self.now() - record.start


NO_OBSERVER = NullObserver()


class RequestObserver(NullObserver):
    """The worker's observer: each finished request is counted, logged and, if it
    failed, remembered.

    @ivar recent: the last L{RECENT_ERRORS} proxy-generated errors and resets, as
        plain dicts (the status page's "recent errors").
    """

    def __init__(self, *, metrics: WorkerMetrics, accessLog: AccessLogFile | None,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock)
        self.metrics = metrics
        self.accessLog = accessLog
        self.recent: deque[dict] = deque(maxlen=RECENT_ERRORS)

    def requestFinished(self, record: RequestRecord) -> None:
        """Count C{record} in the metrics, log it, and remember it if it failed."""
        super().requestFinished(record)
        m = self.metrics
        status = record.status or CLIENT_CLOSED
        route = (record.route,)
        m.requests.inc((record.route, record.upstream, status_class(status)))
        m.duration.observe(route, record.duration)
        if record.firstByte is not None:
            m.firstByte.observe((record.upstream,), record.firstByte)
        if record.requestBytes:
            m.requestBytes.inc(route, record.requestBytes)
        if record.responseBytes:
            m.responseBytes.inc(route, record.responseBytes)
        if record.retries:
            m.retries.inc((record.upstream,), record.retries)
        if record.codingIn:
            m.compressionBytes.inc((record.coding, "in"), record.codingIn)
            m.compressionBytes.inc((record.coding, "out"), record.codingOut)
        if self.accessLog is not None:
            self.accessLog.log(record)
        if record.error:
            self._failed(record, status)

    def _failed(self, record: RequestRecord, status: int) -> None:
        if record.reset:
            self.metrics.resets.inc((record.error,))
        else:
            self.metrics.proxyErrors.inc((str(status), record.error))
            refusal = refusal_reason(status, record.error, record.server)
            if refusal is not None:
                self.metrics.refused.inc((record.route, refusal))
        self.recent.append({
            "time": record.start, "status": status, "error": record.error,
            "method": record.method, "authority": record.authority, "path": record.path[:200],
            "upstream": record.upstream, "server": record.server, "request_id": record.requestId,
        })
