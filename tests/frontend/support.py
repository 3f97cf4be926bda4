"""A server connection on a fake transport and clock, a recording handler, and a real
h2 client to talk to it, all in memory."""

from __future__ import annotations

from typing import Any, Callable, Iterable

import h2.config
import h2.connection
import h2.events
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from h2proxy.config.model import Http2Config
from h2proxy.frontend.http2.connection import H2Connection
from h2proxy.frontend.http2.stream import H2Stream
from h2proxy.message import Headers, RequestHead, ResponseHead
from tests.frontend.frames import FrameFactory, framesFromBytes, requestHeaders


class RecordingHandler:
    """Records what the front end tells it; answers nothing by itself."""

    def __init__(self, stream: H2Stream) -> None:
        self.stream = stream
        self.head: RequestHead | None = None
        self.chunks: list[bytes] = []
        self.trailers: Headers | None = None
        self.aborted: list[Failure] = []
        self.calls: list[str] = []

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def requestReceived(self, head: RequestHead) -> None:
        self.calls.append("requestReceived")
        self.head = head

    def requestDataReceived(self, data: bytes) -> None:
        self.calls.append("requestDataReceived")
        self.chunks.append(data)

    def requestEnded(self, trailers: Headers) -> None:
        self.calls.append("requestEnded")
        self.trailers = trailers

    def requestRefused(self, head: RequestHead, status: int) -> None:
        self.calls.append("requestRefused")
        self.refused = (head, status)

    def streamAborted(self, reason: Failure) -> None:
        self.calls.append("streamAborted")
        self.aborted.append(reason)

    def respond(self, status: int = 200, body: bytes = b"", headers: Headers = ()) -> None:
        self.stream.writeHeaders(ResponseHead(status, headers))
        if body:
            self.stream.write(body)
        self.stream.finish()


class EchoHandler(RecordingHandler):
    """Answers 200 with the request body once the request has ended."""

    def requestEnded(self, trailers: Headers) -> None:
        super().requestEnded(trailers)
        self.respond(200, self.body)


class FakeProducer:
    """A push producer that records its state."""

    def __init__(self) -> None:
        self.state = "producing"
        self.resumes = 0

    def pauseProducing(self) -> None:
        self.state = "paused"

    def resumeProducing(self) -> None:
        self.state = "producing"
        self.resumes += 1

    def stopProducing(self) -> None:
        self.state = "stopped"


class TCPLikeTransport(StringTransport):
    """A StringTransport with TCP's no-delay switch (failing like a closed socket
    when C{failing})."""

    def __init__(self, failing: bool = False) -> None:
        super().__init__()
        self.noDelay: bool | None = None
        self.failing = failing

    def setTcpNoDelay(self, enabled: bool) -> None:
        if self.failing:
            raise OSError("socket already closed")
        self.noDelay = enabled


class Server:
    """An H2Connection on a StringTransport and a MemoryReactorClock."""

    def __init__(
        self,
        settings: Http2Config | None = None,
        handlerClass: Callable[[H2Stream], Any] = RecordingHandler,
        idleTimeout: float | None = None,
        abortTimeout: float | None = None,
        secure: bool = True,
        transport: StringTransport | None = None,
        **connectionKw: Any,
    ) -> None:
        self.clock = MemoryReactorClock()
        self.handlers: dict[int, Any] = {}
        self.handlerClass = handlerClass
        self.connection = H2Connection(
            reactor=self.clock,
            handlerFactory=self._makeHandler,
            settings=settings or Http2Config(),
            idleTimeout=idleTimeout,
            abortTimeout=abortTimeout,
            secure=secure,
            **connectionKw,
        )
        self.transport = transport if transport is not None else StringTransport()
        self.connection.makeConnection(self.transport)

    def _makeHandler(self, stream: H2Stream) -> Any:
        handler = self.handlerClass(stream)
        self.handlers[stream.streamID] = handler
        return handler

    def feed(self, data: bytes) -> None:
        self.connection.dataReceived(data)

    def output(self) -> bytes:
        data = self.transport.value()
        self.transport.clear()
        return data

    def frames(self) -> list:
        return framesFromBytes(self.output())

    def handshake(self, factory: FrameFactory) -> None:
        """Client preface and SETTINGS in, server preface out (and dropped)."""
        self.feed(factory.preamble())
        self.output()

    def assertNoLeftovers(self) -> None:
        """Every per-stream table is empty."""
        connection = self.connection
        assert connection.streams == {}
        assert set(connection.priority._streams) == {0}  # the root only
        assert connection._ready == set()
        assert connection._windowBlocked == {}


class Client:
    """A real h2 client connection wired to a L{Server} in memory."""

    def __init__(self, server: Server, autoAck: bool = True, settings: dict[int, int] | None = None) -> None:
        self.server = server
        self.autoAck = autoAck
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.events: list[h2.events.Event] = []
        self.flush()

    def flush(self) -> list[h2.events.Event]:
        """Exchange bytes both ways (running due send passes) until both are quiet."""
        new: list[h2.events.Event] = []
        while True:
            data = self.conn.data_to_send()
            if data:
                self.server.feed(data)
            self.server.clock.advance(0)
            out = self.server.output()
            if not data and not out:
                return new
            if out:
                events = self.conn.receive_data(out)
                for event in events:
                    if self.autoAck and isinstance(event, h2.events.DataReceived):
                        self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                new.extend(events)
                self.events.extend(events)

    def request(
        self,
        path: bytes = b"/",
        method: bytes = b"GET",
        body: bytes | None = None,
        extra: Iterable[tuple[bytes, bytes]] = (),
        end: bool = True,
        flush: bool = True,
    ) -> int:
        streamID = self.conn.get_next_available_stream_id()
        self.conn.send_headers(streamID, requestHeaders(path, method, extra), end_stream=end and body is None)
        if body is not None:
            self.sendBody(streamID, body, end)
        if flush:
            self.flush()
        return streamID

    def sendBody(self, streamID: int, body: bytes, end: bool = True) -> None:
        """Send a body in frames as the windows allow, exchanging as needed."""
        view = memoryview(body)
        while True:
            room = min(self.conn.max_outbound_frame_size, self.conn.local_flow_control_window(streamID))
            if room <= 0:
                self.flush()
                room = min(self.conn.max_outbound_frame_size, self.conn.local_flow_control_window(streamID))
                assert room > 0, "the server keeps the window closed"
            chunk, view = view[:room], view[room:]
            self.conn.send_data(streamID, chunk.tobytes(), end_stream=end and not view)
            if not view:
                return

    def response(self, streamID: int) -> dict[str, Any]:
        """What the client received on a stream so far."""
        result: dict[str, Any] = {"status": None, "headers": [], "informational": [], "body": b"", "trailers": None, "reset": None, "ended": False}
        for event in self.events:
            if getattr(event, "stream_id", None) != streamID:
                continue
            if isinstance(event, h2.events.InformationalResponseReceived):
                result["informational"].append(dict(event.headers)[b":status"])
            elif isinstance(event, h2.events.ResponseReceived):
                fields = dict(event.headers)
                result["status"] = int(fields[b":status"])
                result["headers"] = event.headers
            elif isinstance(event, h2.events.DataReceived):
                result["body"] += event.data
            elif isinstance(event, h2.events.TrailersReceived):
                result["trailers"] = event.headers
            elif isinstance(event, h2.events.StreamEnded):
                result["ended"] = True
            elif isinstance(event, h2.events.StreamReset):
                result["reset"] = event.error_code
        return result


def connected(**kw: Any) -> tuple[Server, Client]:
    """A server and a client that finished the connection preface exchange."""
    clientKw = {k: kw.pop(k) for k in ("autoAck",) if k in kw}
    server = Server(**kw)
    return server, Client(server, **clientKw)
