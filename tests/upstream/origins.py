"""Real HTTP/1.1 origins on 127.0.0.1 for the loopback tests, run on a private
reactor in the test's own process, and the helpers to drive that reactor.

An L{Origin} counts what it sees (connections accepted, requests, requests in flight
and their peak) and serves:

  - ``GET /slow?ms=N``: answers after N milliseconds (on the reactor's clock);
    every request is answered that way after C{delay} seconds when C{delay} is set;
  - ``POST /reset-after/N``: reads N body bytes, then resets the connection;
  - ``GET /health``: 200, or 503 while C{healthy} is false;
  - anything else: 200 ``ok`` after reading a Content-Length body.

Every test bounds its waits in wall-clock time and closes every socket it opened.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import parse_qs, urlsplit

from twisted.internet import ssl
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.selectreactor import SelectReactor
from twisted.protocols.tls import TLSMemoryBIOFactory

from h2proxy.message import UpstreamRequest
from h2proxy.upstream.pool import UpstreamPool
from tests.upstream.helpers import Receiver


class OriginProtocol(Protocol):
    def connectionMade(self) -> None:
        self.factory.accepted += 1
        self._buffer = b""
        self._bodyLeft = 0
        self._target = b""
        self._resetAfter: int | None = None
        self._inHead = True

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        while True:
            if self._inHead:
                if b"\r\n\r\n" not in self._buffer:
                    return
                head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
                self._startRequest(head)
            taken = min(self._bodyLeft, len(self._buffer))
            self._buffer = self._buffer[taken:]
            self._bodyLeft -= taken
            if self._resetAfter is not None:
                self._resetAfter -= taken
                if self._resetAfter <= 0:
                    self.factory.resets += 1
                    self.transport.abortConnection()
                    return
            if self._bodyLeft:
                return
            self._inHead = True
            self._respond()
            if not self._buffer:
                return

    def _startRequest(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        method, target, _ = lines[0].split(b" ", 2)
        fields = dict(line.lower().split(b": ", 1) for line in lines[1:])
        self.factory.requests += 1
        self.factory.log.append((method, target))
        self._target = target
        self._bodyLeft = int(fields.get(b"content-length", b"0"))
        self._resetAfter = int(target[len(b"/reset-after/"):]) if target.startswith(b"/reset-after/") else None
        self._inHead = False

    def _respond(self) -> None:
        url = urlsplit(self._target.decode())
        factory = self.factory
        if url.path == "/slow" or factory.delay:
            delay = int(parse_qs(url.query).get("ms", ["100"])[0]) / 1000 if url.path == "/slow" else factory.delay
            factory.inFlight += 1
            factory.peak = max(factory.peak, factory.inFlight)
            factory.reactor.callLater(delay, self._answerSlow)
        elif url.path == "/health":
            status = b"200 OK" if factory.healthy else b"503 Busy"
            self.transport.write(b"HTTP/1.1 %s\r\ncontent-length: 0\r\n\r\n" % status)
        else:
            self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")

    def _answerSlow(self) -> None:
        self.factory.inFlight -= 1
        if self.transport.connected:
            self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nslow")


class Origin(Factory):
    """One origin's counters and settings.

    @ivar accepted: connections accepted.
    @ivar requests: requests read.
    @ivar inFlight: /slow requests not answered yet; C{peak} the most at once.
    @ivar log: (method, target) of every request, in order.
    @ivar delay: when set, every request is answered after this many seconds.
    """

    protocol = OriginProtocol
    noisy = False

    def __init__(self, reactor: SelectReactor) -> None:
        self.reactor = reactor
        self.accepted = 0
        self.requests = 0
        self.inFlight = 0
        self.peak = 0
        self.resets = 0
        self.healthy = True
        self.delay = 0.0
        self.log: list[tuple[bytes, bytes]] = []
        self.port: IListeningPort | None = None

    @property
    def portNumber(self) -> int:
        assert self.port is not None
        return self.port.getHost().port

    def listen(self, port: int = 0, tls: ssl.CertificateOptions | None = None) -> "Origin":
        factory: Factory = self if tls is None else TLSMemoryBIOFactory(tls, False, self, clock=self.reactor)
        self.port = self.reactor.listenTCP(port, factory, interface="127.0.0.1")
        return self

    def stop(self) -> None:
        """Stop listening (a down backend: connections are refused)."""
        if self.port is not None:
            self.port.stopListening()
            self.port = None


def run_until(reactor: SelectReactor, condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Iterate the reactor until C{condition()} holds; fail after C{timeout} seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the condition"
        reactor.iterate(0.005)


def run_for(reactor: SelectReactor, seconds: float) -> None:
    """Iterate the reactor for C{seconds} of wall-clock time."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        reactor.iterate(0.005)


@contextmanager
def loopback_reactor() -> Iterator[tuple[SelectReactor, list[UpstreamPool], list[Origin]]]:
    """A private reactor; on exit every pool registered in the second list is closed,
    every origin in the third stops listening, and every socket is gone."""
    reactor = SelectReactor()
    pools: list[UpstreamPool] = []
    origins: list[Origin] = []
    try:
        yield reactor, pools, origins
    finally:
        closed: list[object] = []
        for pool in pools:
            pool.close().addBoth(closed.append)
        for origin in origins:
            origin.stop()
        for connection in reactor.getReaders() + reactor.getWriters():
            if hasattr(connection, "abortConnection"):
                connection.abortConnection()
        run_until(
            reactor,
            lambda: len(closed) == len(pools)
            and reactor.getReaders() == [reactor.waker]
            and not reactor.getWriters()
            and not [c for c in reactor.getDelayedCalls() if c.func.__name__ != "_answerSlow"],
            5,
        )
        for call in reactor.getDelayedCalls():
            call.cancel()  # origins' answers to connections the test abandoned
        reactor.waker.connectionLost(None)


def drive(
    reactor: SelectReactor,
    pool: UpstreamPool,
    requests: list[UpstreamRequest],
    concurrency: int,
    timeout: float = 20.0,
) -> list[Receiver]:
    """Send C{requests} through C{pool}, at most C{concurrency} in flight, until all
    have an outcome; return their receivers in order."""
    receivers: list[Receiver] = []
    outstanding: list[Receiver] = []
    deadline = time.monotonic() + timeout
    while len(receivers) < len(requests) or outstanding:
        while len(outstanding) < concurrency and len(receivers) < len(requests):
            receiver = Receiver()
            pool.request(requests[len(receivers)], receiver)
            receivers.append(receiver)
            outstanding.append(receiver)
        assert time.monotonic() < deadline, f"{len(outstanding)} requests still in flight"
        reactor.iterate(0.002)
        outstanding = [r for r in outstanding if r.outcome is None]
    return receivers
