"""H2Factory: builds connections, tracks the live ones, and drains them gracefully."""

from __future__ import annotations

from hyperframe.frame import GoAwayFrame
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from h2proxy.config.model import Http2Config
from h2proxy.frontend.http2.connection import H2Connection
from h2proxy.frontend.http2.lifecycle import GRACEFUL_GOAWAY_DELAY
from h2proxy.frontend.http2.factory import ConnectionOptions, H2Factory
from tests.frontend.frames import FrameFactory, framesFromBytes
from tests.frontend.support import RecordingHandler

ADDR = IPv4Address("TCP", "192.0.2.1", 4000)


class Harness:
    def __init__(self) -> None:
        self.clock = MemoryReactorClock()
        self.handlers: list[RecordingHandler] = []
        self.factory = H2Factory(
            reactor=self.clock,
            handlerFactory=self._handler,
            options=ConnectionOptions(settings=Http2Config(), idleTimeout=None, abortTimeout=None, secure=True),
        )

    def _handler(self, stream):
        handler = RecordingHandler(stream)
        self.handlers.append(handler)
        return handler

    def connect(self, streams: int = 0) -> tuple[H2Connection, StringTransport]:
        connection = self.factory.buildProtocol(ADDR)
        transport = StringTransport()
        connection.makeConnection(transport)
        frames = FrameFactory()
        data = frames.preamble()
        for i in range(streams):
            data += frames.headers(2 * i + 1, flags=["END_HEADERS", "END_STREAM"]).serialize()
        connection.dataReceived(data)
        transport.clear()
        return connection, transport

    def closeIfAsked(self, connection: H2Connection, transport: StringTransport) -> None:
        """What a real transport does after loseConnection/abortConnection."""
        if transport.disconnecting:
            connection.connectionLost(Failure(ConnectionDone()))


def goaways(transport: StringTransport) -> list[tuple[int, int]]:
    frames = framesFromBytes(transport.value())
    transport.clear()
    return [(f.last_stream_id, f.error_code) for f in frames if isinstance(f, GoAwayFrame)]


def test_builds_configured_connections_and_tracks_them():
    """When connections are built, made and lost, they are configured from the factory and the connections set follows their life."""
    harness = Harness()
    connection, transport = harness.connect()
    assert isinstance(connection, H2Connection) and connection.factory is harness.factory
    assert connection.secure is True and connection.abortTimeout is None
    assert harness.factory.connections == {connection}
    connection.connectionLost(Failure(ConnectionDone()))
    assert harness.factory.connections == set()


def test_drain_without_connections_fires_at_once():
    """When nothing is connected, drain fires at once and leaves no timer."""
    harness = Harness()
    fired = []
    harness.factory.drain(30).addCallback(fired.append)
    assert fired == [None]
    assert harness.clock.getDelayedCalls() == []


def test_drain_two_step_goaway_then_close_when_streams_finish():
    """When draining, each connection gets GOAWAY(2^31-1) at once and GOAWAY(last stream) 1 s later; an idle one closes then, a busy one when its last stream finishes, and drain fires when none is left."""
    harness = Harness()
    idle, idleTransport = harness.connect()
    busy, busyTransport = harness.connect(streams=2)
    fired = []
    harness.factory.drain(30).addCallback(fired.append)
    assert goaways(idleTransport) == [(2**31 - 1, 0)]
    assert goaways(busyTransport) == [(2**31 - 1, 0)]
    harness.clock.advance(GRACEFUL_GOAWAY_DELAY)
    assert goaways(idleTransport) == [(0, 0)]
    assert goaways(busyTransport) == [(3, 0)]
    harness.closeIfAsked(idle, idleTransport)
    harness.closeIfAsked(busy, busyTransport)
    assert harness.factory.connections == {busy} and fired == []
    for handler in harness.handlers:
        handler.respond(200, b"ok")
    harness.clock.advance(0)
    harness.closeIfAsked(busy, busyTransport)
    assert fired == [None]
    assert harness.clock.getDelayedCalls() == []
    assert all(h.aborted == [] for h in harness.handlers)


def test_drain_timeout_aborts_what_is_left():
    """When the drain window runs out, the connections still open are aborted and drain fires once they are gone."""
    harness = Harness()
    busy, transport = harness.connect(streams=1)
    fired = []
    harness.factory.drain(10).addCallback(fired.append)
    harness.clock.advance(9)
    assert not transport.disconnected
    harness.clock.advance(1)
    assert transport.disconnected and fired == []
    busy.connectionLost(Failure(ConnectionDone()))
    assert fired == [None]
    assert len(harness.handlers[0].aborted) == 1


def test_connection_arriving_while_draining_goes_away_at_once():
    """When a connection arrives during a drain, it gets the first GOAWAY as soon as it is up."""
    harness = Harness()
    first, _ = harness.connect(streams=1)
    harness.factory.drain(30)
    connection = harness.factory.buildProtocol(ADDR)
    transport = StringTransport()
    connection.makeConnection(transport)
    assert goaways(transport) == [(2**31 - 1, 0)]
    assert connection in harness.factory.connections


def test_every_drain_caller_is_told():
    """When drain is called twice, both Deferreds fire when the connections are gone."""
    harness = Harness()
    connection, transport = harness.connect()
    fired = []
    harness.factory.drain(30).addCallback(lambda _: fired.append(1))
    harness.factory.drain(30).addCallback(lambda _: fired.append(2))
    harness.clock.advance(GRACEFUL_GOAWAY_DELAY)
    harness.closeIfAsked(connection, transport)
    assert fired == [1, 2]
