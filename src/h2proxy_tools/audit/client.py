"""A raw HTTP/2 client on a blocking socket: frames written as given, whatever a
well-behaved client library would refuse, and everything the server answers kept
for the verdict (GOAWAY, resets, statuses, the close)."""

from __future__ import annotations

import ipaddress
import select
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence
from urllib.parse import urlsplit

from hpack import Decoder, Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
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


def connect(target: Target, settings: dict[int, int] | None = None, **kw) -> RawConnection:
    connection = RawConnection(target, **kw)
    connection.start(settings)
    return connection


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


def repeated(piece: bytes) -> Iterable[bytes]:
    while True:
        yield piece
