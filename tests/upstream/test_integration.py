"""The pool against a real HTTP/1.1 origin on 127.0.0.1: keep-alive reuse over many
requests, and TCP backpressure with a paused consumer.

Both ends run on a private reactor instance (never the global one), driven by
C{iterate()} until a condition holds or a wall-clock bound runs out; every socket is
closed at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.selectreactor import SelectReactor

from h2proxy.config.upstreams import ServerConfig, UpstreamConfig
from h2proxy.upstream.pool import UpstreamPool
from tests.upstream.helpers import Receiver, get

CHUNK = b"x" * 65536


class OriginProtocol(Protocol):
    """A tiny keep-alive origin: GET /small answers 2 bytes, GET /big/N streams N bytes
    as a pull producer, so it writes only when its socket has room."""

    def connectionMade(self) -> None:
        self.factory.accepted += 1
        self._buffer = b""
        self._toSend = 0

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        while b"\r\n\r\n" in self._buffer:
            head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
            target = head.split(b" ")[1]
            self.factory.requests += 1
            if target.startswith(b"/big/"):
                self._toSend = int(target[5:])
                self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % self._toSend)
                self.transport.registerProducer(self, False)
            else:
                self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")

    def resumeProducing(self) -> None:
        piece = CHUNK[: min(len(CHUNK), self._toSend)]
        self._toSend -= len(piece)
        self.factory.bodySent += len(piece)
        self.transport.write(piece)
        if not self._toSend:
            self.transport.unregisterProducer()

    def stopProducing(self) -> None:
        self._toSend = 0


class OriginFactory(Factory):
    protocol = OriginProtocol
    noisy = False

    def __init__(self) -> None:
        self.accepted = 0
        self.requests = 0
        self.bodySent = 0


def run_until(reactor: SelectReactor, condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Iterate the reactor until C{condition()} holds; fail after C{timeout} seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the condition"
        reactor.iterate(0.01)


@pytest.fixture
def origin() -> Iterator[tuple[SelectReactor, OriginFactory, UpstreamPool]]:
    reactor = SelectReactor()
    factory = OriginFactory()
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    config = UpstreamConfig(
        name="origin", servers=(ServerConfig(host="127.0.0.1", port=port.getHost().port),)
    )
    pool = UpstreamPool(reactor=reactor, config=config, connectTimeout=5, responseTimeout=5)
    try:
        yield reactor, factory, pool
    finally:
        closed: list[object] = []
        pool.close().addBoth(closed.append)
        port.stopListening()
        for connection in reactor.getReaders() + reactor.getWriters():
            if hasattr(connection, "abortConnection"):
                connection.abortConnection()
        run_until(
            reactor,
            lambda: bool(closed) and reactor.getReaders() == [reactor.waker] and not reactor.getDelayedCalls(),
            5,
        )
        reactor.waker.connectionLost(None)


def test_thousand_sequential_requests_use_one_connection(origin):
    """When 1000 requests are made one after the other, the origin accepts a single
    connection, which the 1000th request retires (max_requests: 1000 by default)."""
    reactor, factory, pool = origin
    for index in range(1000):
        receiver = Receiver()
        pool.request(get(b"/small"), receiver)
        run_until(reactor, lambda: receiver.outcome is not None)
        assert receiver.outcome == ("end", ()) and receiver.body == b"ok", index
        assert pool.idleCount == (1 if index < 999 else 0), index
    assert factory.accepted == 1 and factory.requests == 1000
    assert pool.connectionsOpened == 1


def test_paused_consumer_keeps_a_large_body_blocked_at_the_backend(origin):
    """When the consumer pauses on the first body bytes of a 64 MiB response, the origin is
    held back by TCP after a bounded amount, and the whole body arrives after resuming."""
    reactor, factory, pool = origin
    size = 64 * 1024 * 1024
    received = [0]
    receiver = Receiver()
    exchange = pool.request(get(b"/big/%d" % size), receiver)

    def onData(data: bytes) -> None:
        received[0] += len(data)
        receiver.events.pop()  # keep memory flat: count, do not store
        if received[0] < size:
            exchange.pauseProducing()

    receiver.onData = onData
    run_until(reactor, lambda: received[0] > 0)
    stalled_since, last = time.monotonic(), factory.bodySent
    while time.monotonic() - stalled_since < 0.3:
        reactor.iterate(0.01)
        if factory.bodySent != last:
            stalled_since, last = time.monotonic(), factory.bodySent
    held = factory.bodySent
    assert held < 24 * 1024 * 1024, f"origin sent {held} bytes to a paused consumer"
    assert received[0] <= 128 * 1024
    receiver.onData = lambda data: (received.__setitem__(0, received[0] + len(data)), receiver.events.pop())
    exchange.resumeProducing()
    run_until(reactor, lambda: receiver.outcome is not None, timeout=30)
    assert receiver.outcome == ("end", ()) and received[0] == size
