"""Fakes for the upstream tests: a recording receiver, a request-body producer, a
controllable endpoint, and a connected protocol on a StringTransport."""

from __future__ import annotations

import random

from twisted.internet import defer
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from h2proxy.config.upstreams import ServerConfig, UpstreamConfig
from h2proxy.errors import UpstreamError
from h2proxy.message import Headers, ResponseHead, UpstreamRequest
from h2proxy.upstream.http11 import HTTP11ClientProtocol, serialize_request_head
from h2proxy.upstream.pool import UpstreamPool


class Receiver:
    """Records what a ResponseReceiver is told, in order."""

    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.onData = None

    def responseInformational(self, head: ResponseHead) -> None:
        self.events.append(("info", head.status, head.headers))

    def responseHeadReceived(self, head: ResponseHead) -> None:
        self.events.append(("head", head.status, head.headers))

    def responseDataReceived(self, data: bytes) -> None:
        self.events.append(("data", data))
        if self.onData is not None:
            self.onData(data)

    def responseEnded(self, trailers: Headers) -> None:
        self.events.append(("end", trailers))

    def responseFailed(self, error: UpstreamError) -> None:
        self.events.append(("failed", error))

    @property
    def body(self) -> bytes:
        return b"".join(e[1] for e in self.events if e[0] == "data")

    @property
    def head(self) -> tuple | None:
        return next((e for e in self.events if e[0] == "head"), None)

    @property
    def outcome(self) -> tuple | None:
        ends = [e for e in self.events if e[0] in ("end", "failed")]
        assert len(ends) <= 1, f"more than one outcome: {ends}"
        return ends[0] if ends else None

    @property
    def error(self) -> UpstreamError | None:
        outcome = self.outcome
        return outcome[1] if outcome and outcome[0] == "failed" else None


class Listener(Receiver):
    """A Receiver that also records request-body backpressure (ExchangeListener)."""

    def __init__(self) -> None:
        super().__init__()
        self.bodyPaused = False

    def pauseRequestBody(self) -> None:
        self.bodyPaused = True

    def resumeRequestBody(self) -> None:
        self.bodyPaused = False


class Producer:
    """A request-body push producer that records pauses and resumes."""

    def __init__(self) -> None:
        self.paused = False
        self.pauses = 0
        self.resumes = 0
        self.stopped = False

    def pauseProducing(self) -> None:
        assert not self.paused, "paused twice"
        self.paused = True
        self.pauses += 1

    def resumeProducing(self) -> None:
        assert self.paused, "resumed while not paused"
        self.paused = False
        self.resumes += 1

    def stopProducing(self) -> None:
        self.stopped = True


class Owner:
    """A ConnectionOwner that records what connections report."""

    def __init__(self) -> None:
        self.idle: list[HTTP11ClientProtocol] = []
        self.gone: list[HTTP11ClientProtocol] = []

    def connectionIdle(self, connection: HTTP11ClientProtocol) -> None:
        self.idle.append(connection)

    def connectionGone(self, connection: HTTP11ClientProtocol) -> None:
        self.gone.append(connection)


def get(target: bytes = b"/", method: bytes = b"GET", **kw) -> UpstreamRequest:
    headers = kw.pop("headers", ((b"host", b"backend.test"),))
    return UpstreamRequest(method=method, target=target, headers=headers, **kw)


def connected(timeout: float = 10.0) -> tuple[HTTP11ClientProtocol, StringTransport, MemoryReactorClock, Owner]:
    """A protocol connected to a StringTransport, with a fake clock and owner."""
    clock = MemoryReactorClock()
    owner = Owner()
    protocol = HTTP11ClientProtocol(reactor=clock, responseTimeout=timeout, owner=owner)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport, clock, owner


def send(protocol: HTTP11ClientProtocol, request: UpstreamRequest) -> Listener:
    listener = Listener()
    protocol.sendRequest(request, serialize_request_head(request), listener)
    return listener


def closed_cleanly() -> Failure:
    return Failure(ConnectionDone("backend closed"))


def reset() -> Failure:
    return Failure(ConnectionLost("backend reset"))


class FakeEndpoint:
    """An IStreamClientEndpoint whose connection attempts the test completes."""

    def __init__(self, server: ServerConfig) -> None:
        self.server = server
        self.attempts: list[tuple[object, defer.Deferred]] = []
        self.cancelled = 0
        self.transports: list[StringTransport] = []

    def connect(self, factory):
        attempt: defer.Deferred = defer.Deferred(lambda d: self._cancel())
        self.attempts.append((factory, attempt))
        return attempt

    def _cancel(self) -> None:
        self.cancelled += 1

    @property
    def pending(self) -> int:
        return sum(1 for _, d in self.attempts if not d.called)

    def succeed(self, index: int = -1) -> tuple[HTTP11ClientProtocol, StringTransport]:
        """Complete attempt C{index}: build the protocol, connect it, fire."""
        factory, attempt = self._pendingAttempt(index)
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        self.transports.append(transport)
        protocol.makeConnection(transport)
        attempt.callback(protocol)
        return protocol, transport

    def fail(self, error: Exception, index: int = -1) -> None:
        _, attempt = self._pendingAttempt(index)
        attempt.errback(Failure(error))

    def _pendingAttempt(self, index: int):
        pending = [a for a in self.attempts if not a[1].called]
        return pending[index]


def make_pool(
    *,
    servers: int = 1,
    weights: tuple[int, ...] | None = None,
    scheme: str = "http",
    connectTimeout: float = 5.0,
    responseTimeout: float = 30.0,
    idleTimeout: float | None = None,
    rng: random.Random | None = None,
    **config,
) -> tuple[UpstreamPool, MemoryReactorClock, list[FakeEndpoint]]:
    """A pool over C{servers} fake servers (ports 8000, 8001, ...) on a fake clock."""
    clock = MemoryReactorClock()
    endpoints: list[FakeEndpoint] = []

    def factory(server: ServerConfig) -> FakeEndpoint:
        endpoint = FakeEndpoint(server)
        endpoints.append(endpoint)
        return endpoint

    weights = weights or (1,) * servers
    upstream = UpstreamConfig(
        name="app",
        servers=tuple(
            ServerConfig(host="127.0.0.1", port=8000 + i, scheme=scheme, weight=w) for i, w in enumerate(weights)
        ),
        **config,
    )
    pool = UpstreamPool(
        reactor=clock,
        config=upstream,
        connectTimeout=connectTimeout,
        responseTimeout=responseTimeout,
        idleTimeout=idleTimeout,
        endpointFactory=factory,
        rng=rng,
    )
    return pool, clock, endpoints


OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
