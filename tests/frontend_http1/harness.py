"""A fake handler and a socket-free connection harness for the HTTP/1.1 front end."""

from __future__ import annotations

from dataclasses import dataclass, field

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from h2proxy.frontend.http1.factory import HTTP1Factory
from h2proxy.frontend.http1.protocol import HTTP11ServerProtocol
from h2proxy.frontend.http1.stream import HTTP1Stream
from h2proxy.message import Headers, RequestHead, ResponseHead


class RecordingHandler:
    """A StreamHandler that records every call; tests script its answers.

    @ivar events: ("head", RequestHead) / ("data", bytes) / ("end", trailers) /
        ("aborted", Failure), in order.
    """

    def __init__(self, stream: HTTP1Stream, onHead=None, onData=None) -> None:
        self.stream = stream
        self.events: list[tuple] = []
        self._onHead = onHead
        self._onData = onData

    def requestReceived(self, head: RequestHead) -> None:
        self.events.append(("head", head))
        if self._onHead is not None:
            self._onHead(self)

    def requestDataReceived(self, data: bytes) -> None:
        self.events.append(("data", data))
        if self._onData is not None:
            self._onData(self, data)

    def requestEnded(self, trailers: Headers) -> None:
        self.events.append(("end", trailers))

    def requestRefused(self, head: RequestHead, status: int) -> None:
        self.events.append(("refused", head, status))

    def streamAborted(self, reason: Failure) -> None:
        self.events.append(("aborted", reason))

    # -- test conveniences -------------------------------------------------

    @property
    def head(self) -> RequestHead:
        return self.events[0][1]

    def body(self) -> bytes:
        return b"".join(e[1] for e in self.events if e[0] == "data")

    def kinds(self) -> list[str]:
        return [e[0] for e in self.events]

    def respond(self, status: int = 200, body: bytes = b"ok", headers: Headers | None = None) -> None:
        """Answer with a Content-Length body."""
        if headers is None:
            headers = ((b"content-length", str(len(body)).encode()),)
        self.stream.writeHeaders(ResponseHead(status=status, headers=headers))
        self.stream.write(body)
        self.stream.finish()


@dataclass
class Harness:
    """One HTTP/1.1 connection on a StringTransport, with its clock and handlers."""

    factory: HTTP1Factory
    protocol: HTTP11ServerProtocol
    transport: StringTransport
    clock: MemoryReactorClock
    handlers: list[RecordingHandler] = field(default_factory=list)

    def feed(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def output(self) -> bytes:
        value = self.transport.value()
        self.transport.clear()
        return value

    def lose(self) -> None:
        self.protocol.connectionLost(Failure(ConnectionDoneForTests()))

    @property
    def handler(self) -> RecordingHandler:
        return self.handlers[-1]


class ConnectionDoneForTests(Exception):
    """The reason a test gives when it closes the fake connection."""


class PausingProducer:
    """A response-body producer that records pause/resume calls."""

    def __init__(self) -> None:
        self.state = "producing"

    def pauseProducing(self) -> None:
        self.state = "paused"

    def resumeProducing(self) -> None:
        self.state = "producing"

    def stopProducing(self) -> None:
        self.state = "stopped"


def make_factory(
    *,
    onHead=None,
    onData=None,
    idleTimeout: float | None = 30.0,
    secure: bool = False,
    maxHeaderBytes: int = 64 * 1024,
    maxPipelined: int = 16,
    abortTimeout: float | None = 15.0,
) -> tuple[HTTP1Factory, list[RecordingHandler], MemoryReactorClock]:
    """A factory whose handlers are L{RecordingHandler}s, collected in the returned list."""
    clock = MemoryReactorClock()
    handlers: list[RecordingHandler] = []

    def handlerFactory(stream: HTTP1Stream) -> RecordingHandler:
        handler = RecordingHandler(stream, onHead=onHead, onData=onData)
        handlers.append(handler)
        return handler

    factory = HTTP1Factory(
        reactor=clock,
        handlerFactory=handlerFactory,
        idleTimeout=idleTimeout,
        secure=secure,
        maxHeaderBytes=maxHeaderBytes,
        maxPipelined=maxPipelined,
        abortTimeout=abortTimeout,
    )
    return factory, handlers, clock


def attach(factory: HTTP1Factory, handlers: list[RecordingHandler], clock: MemoryReactorClock) -> Harness:
    """One more connection built by C{factory}, on a fresh StringTransport."""
    addr = IPv4Address("TCP", "192.0.2.9", 50000)
    protocol = factory.buildProtocol(addr)
    transport = StringTransport(peerAddress=addr)
    protocol.makeConnection(transport)
    return Harness(factory=factory, protocol=protocol, transport=transport, clock=clock, handlers=handlers)


def connect(**options) -> Harness:
    """A connected protocol on its own factory (options as for L{make_factory})."""
    return attach(*make_factory(**options))


def respond_ok(handler: RecordingHandler) -> None:
    """onHead/onData hook: answer 200 "ok" at once."""
    handler.respond()


def split_responses(data: bytes) -> list[tuple[bytes, dict[bytes, bytes], bytes]]:
    """Split a stream of Content-Length (or body-less) responses into
    (status line, fields, body); enough to check order and framing in tests."""
    out = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert sep, f"incomplete response head: {data!r}"
        status, *lines = head.split(b"\r\n")
        fields = dict(line.split(b": ", 1) for line in lines)
        length = int(fields.get(b"content-length", b"0"))
        out.append((status, fields, rest[:length]))
        data = rest[length:]
    return out
