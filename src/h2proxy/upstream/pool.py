# -*- test-case-name: tests.upstream.test_pool -*-
"""UpstreamPool: keep-alive HTTP/1.1 connections to the servers of one upstream.

L{UpstreamPool.request} returns an L{UpstreamExchange} at once; a L{ServerPool}
(one per configured server, picked by the balancer) attaches a connection to it:
the most recently used idle one (LIFO: warm, least likely to have been closed by the
backend), else a new one, else, at C{max_connections}, the exchange waits its turn
in a bounded FIFO. See docs/_upstream_section.md for the rules.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from twisted.internet import defer
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.base import DelayedCall
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.error import ConnectError
from twisted.internet.error import TimeoutError as ConnectTimeoutError
from twisted.internet.interfaces import IAddress, IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from h2proxy.config.model import ServerConfig, UpstreamConfig
from h2proxy.errors import BackendConnectTimeout, BackendRefused, NoHealthyBackend, UpstreamError
from h2proxy.message import UpstreamRequest
from h2proxy.upstream.balancer import make_balancer
from h2proxy.upstream.exchange import ExchangeState, UpstreamExchange
from h2proxy.upstream.http11 import (
    ClientState,
    HTTP11ClientProtocol,
    RequestRefused,
    serialize_request_head,
)
from h2proxy.upstream.interfaces import ResponseReceiver

log = Logger()

#: Most exchanges waiting per server for a free connection when C{max_connections}
#: is reached; over it, the request fails with 503 at once. (Issue 5 makes it a setting.)
MAX_QUEUED_PER_SERVER = 1024

EndpointFactory = Callable[[ServerConfig], IStreamClientEndpoint]


class UnsupportedScheme(UpstreamError):
    """The server's scheme cannot be used by this version (https comes with issue 5)."""

    status = 502
    reason = "proxy_configuration_error"


def default_endpoint_factory(reactor: object, connectTimeout: float) -> EndpointFactory:
    """Endpoints for servers: TCP4/TCP6 for IP literals, HostnameEndpoint (resolving,
    happy eyeballs) for names."""

    def endpoint(server: ServerConfig) -> IStreamClientEndpoint:
        host = server.host.strip("[]")
        timeout = connectTimeout if connectTimeout > 0 else 30
        if isIPAddress(host):
            return TCP4ClientEndpoint(reactor, host, server.port, timeout=timeout)
        if isIPv6Address(host):
            return TCP6ClientEndpoint(reactor, host, server.port, timeout=timeout)
        return HostnameEndpoint(reactor, host, server.port, timeout=timeout)

    return endpoint


class _OneConnectionFactory(Factory):
    """Builds the one protocol prepared for a connection attempt."""

    noisy = False

    def __init__(self, protocol: HTTP11ClientProtocol) -> None:
        self._protocol = protocol

    def buildProtocol(self, addr: IAddress) -> HTTP11ClientProtocol:
        return self._protocol


class ServerPool:
    """The connections to one server and the exchanges waiting for one.

    Every connection is in exactly one place: C{_connecting} (keyed by the exchange
    it is for), C{_busy} (carrying an exchange) or C{_idle} (LIFO, each with its
    expiry timer). C{max_connections} (0 = no cap) bounds all three together.

    Rules: an idle connection is reused before a new one is opened; a completed
    exchange's connection goes to the oldest waiting exchange first, else back to
    the idle list, which keeps at most C{keepalive} connections (the oldest is
    closed to make room) for at most C{keepalive_idle} seconds each; a slot freed by
    a closed connection or a failed connect starts the next waiting exchange. A
    waiting exchange gives up after C{connectTimeout} (503).

    @ivar server: the server configuration.
    @ivar connectionsOpened: successful connects so far.
    """

    def __init__(
        self,
        *,
        reactor: IReactorTime,
        server: ServerConfig,
        config: UpstreamConfig,
        endpoint: IStreamClientEndpoint,
        connectTimeout: float,
        responseTimeout: float,
    ) -> None:
        self.server = server
        self.connectionsOpened = 0
        self._reactor = reactor
        self._config = config
        self._endpoint = endpoint
        self._connectTimeout = connectTimeout
        self._responseTimeout = responseTimeout
        self._idle: list[HTTP11ClientProtocol] = []
        self._idleTimers: dict[HTTP11ClientProtocol, DelayedCall] = {}
        self._busy: set[HTTP11ClientProtocol] = set()
        self._connecting: dict[UpstreamExchange, defer.Deferred[HTTP11ClientProtocol]] = {}
        self._waiting: deque[UpstreamExchange] = deque()
        self._waitTimers: dict[UpstreamExchange, DelayedCall | None] = {}
        self._closing = False
        self._acquiring = False
        self._drained: list[defer.Deferred[None]] = []

    # -- introspection ---------------------------------------------------------

    @property
    def idleCount(self) -> int:
        return len(self._idle)

    @property
    def activeCount(self) -> int:
        """Connections carrying an exchange."""
        return len(self._busy)

    @property
    def connectingCount(self) -> int:
        return len(self._connecting)

    @property
    def waitingCount(self) -> int:
        return len(self._waiting)

    def _total(self) -> int:
        return len(self._idle) + len(self._busy) + len(self._connecting)

    def _full(self) -> bool:
        cap = self._config.max_connections
        return cap > 0 and self._total() >= cap

    # -- ConnectionSource: the exchanges' side ---------------------------------

    def acquire(self, exchange: UpstreamExchange, fresh: bool = False) -> None:
        """Attach a connection to C{exchange}: an idle one unless C{fresh} (a retry
        after a stale one), else a new one, else a place in the queue."""
        self._acquiring = True
        try:
            self._acquire(exchange, fresh)
        finally:
            self._acquiring = False

    def _acquire(self, exchange: UpstreamExchange, fresh: bool) -> None:
        if self._idle and not fresh:
            connection = self._takeIdle(-1)
            self._busy.add(connection)
            exchange.attach(connection, reused=True)
            return
        if self._full() and self._idle:
            self._takeIdle(0).close()
        if self._full():
            self._enqueue(exchange)
            return
        self._connect(exchange)

    def withdraw(self, exchange: UpstreamExchange) -> None:
        """A waiting exchange was cancelled: stop connecting for it or drop its place."""
        attempt = self._connecting.pop(exchange, None)
        if attempt is not None:
            attempt.cancel()
            self._slotFreed()
            return
        if exchange in self._waitTimers:
            self._waiting.remove(exchange)
            self._cancelWait(exchange)
            self._checkDrained()

    # -- ConnectionOwner: the connections' side --------------------------------

    def connectionIdle(self, connection: HTTP11ClientProtocol) -> None:
        """An exchange completed on a reusable connection: next waiter, idle, or close."""
        self._busy.discard(connection)
        if self._waiting:
            exchange = self._waiting.popleft()
            self._cancelWait(exchange)
            self._busy.add(connection)
            exchange.attach(connection, reused=True)
            return
        keep = self._config.keepalive
        if self._closing or keep <= 0 or self._config.keepalive_idle <= 0:
            connection.close()
            self._slotFreed()
            return
        if len(self._idle) >= keep:
            self._takeIdle(0).close()
        self._idle.append(connection)
        self._idleTimers[connection] = self._reactor.callLater(
            self._config.keepalive_idle, self._expire, connection
        )

    def connectionGone(self, connection: HTTP11ClientProtocol) -> None:
        """A connection closed: forget it and let a waiting exchange use the slot."""
        if connection in self._busy:
            self._busy.remove(connection)
        elif connection in self._idleTimers:
            self._idle.remove(connection)
            self._idleTimers.pop(connection).cancel()
        else:
            return
        self._slotFreed()

    # -- shutdown --------------------------------------------------------------

    def close(self) -> defer.Deferred[None]:
        """Close idle connections now and every other one as its exchange ends; fires
        once no exchange is in flight or waiting here."""
        self._closing = True
        while self._idle:
            self._takeIdle(-1).close()
        done: defer.Deferred[None] = defer.Deferred()
        self._drained.append(done)
        self._checkDrained()
        return done

    # -- internals -------------------------------------------------------------

    def _takeIdle(self, index: int) -> HTTP11ClientProtocol:
        connection = self._idle.pop(index)
        self._idleTimers.pop(connection).cancel()
        return connection

    def _expire(self, connection: HTTP11ClientProtocol) -> None:
        del self._idleTimers[connection]
        self._idle.remove(connection)
        connection.close()
        self._slotFreed()

    def _connect(self, exchange: UpstreamExchange) -> None:
        connection = HTTP11ClientProtocol(
            reactor=self._reactor, responseTimeout=self._responseTimeout, owner=self
        )
        attempt = defer.maybeDeferred(self._endpoint.connect, _OneConnectionFactory(connection))
        if self._connectTimeout > 0:
            attempt.addTimeout(self._connectTimeout, self._reactor)
        self._connecting[exchange] = attempt
        attempt.addCallbacks(
            self._connected, self._connectFailed, callbackArgs=(exchange,), errbackArgs=(exchange,)
        )

    def _connected(self, connection: HTTP11ClientProtocol, exchange: UpstreamExchange) -> None:
        if self._connecting.pop(exchange, None) is None:
            connection.close()
            return
        self.connectionsOpened += 1
        if connection.state is not ClientState.QUIESCENT:
            self._fail(exchange, BackendRefused(f"{self._name()} closed the connection as soon as it opened"))
            self._slotFreed()
            return
        self._busy.add(connection)
        exchange.attach(connection, reused=False)

    def _connectFailed(self, failure: Failure, exchange: UpstreamExchange) -> None:
        if self._connecting.pop(exchange, None) is None:
            return None
        self._fail(exchange, self._connectError(failure))
        self._slotFreed()
        return None

    def _fail(self, exchange: UpstreamExchange, error: UpstreamError) -> None:
        """Fail C{exchange}; on the next reactor turn if we are inside L{acquire}, so
        that a caller of C{UpstreamPool.request} never hears of a failure before it
        holds the exchange."""
        if self._acquiring:
            self._reactor.callLater(0, exchange.fail, error)
        else:
            exchange.fail(error)

    def _connectError(self, failure: Failure) -> UpstreamError:
        if failure.check(defer.TimeoutError, ConnectTimeoutError):
            return BackendConnectTimeout(
                f"connecting to {self._name()} took longer than {self._connectTimeout:g}s"
            )
        if failure.check(ConnectError):
            return BackendRefused(f"cannot connect to {self._name()}: {failure.getErrorMessage()}")
        return BackendRefused(
            f"cannot connect to {self._name()}: {failure.type.__name__}: {failure.getErrorMessage()}"
        )

    def _enqueue(self, exchange: UpstreamExchange) -> None:
        if len(self._waiting) >= MAX_QUEUED_PER_SERVER:
            log.warn(
                "{server}: {n} requests already wait for one of max_connections={cap}; refusing",
                server=self._name(),
                n=len(self._waiting),
                cap=self._config.max_connections,
            )
            self._fail(
                exchange, NoHealthyBackend(f"{self._name()}: {MAX_QUEUED_PER_SERVER} requests already waiting")
            )
            return
        self._waiting.append(exchange)
        self._waitTimers[exchange] = (
            self._reactor.callLater(self._connectTimeout, self._waitedTooLong, exchange)
            if self._connectTimeout > 0
            else None
        )

    def _waitedTooLong(self, exchange: UpstreamExchange) -> None:
        del self._waitTimers[exchange]
        self._waiting.remove(exchange)
        exchange.fail(
            NoHealthyBackend(
                f"{self._name()}: no connection free within {self._connectTimeout:g}s "
                f"(max_connections={self._config.max_connections})"
            )
        )
        self._checkDrained()

    def _cancelWait(self, exchange: UpstreamExchange) -> None:
        timer = self._waitTimers.pop(exchange)
        if timer is not None and timer.active():
            timer.cancel()

    def _slotFreed(self) -> None:
        """Start waiting exchanges while there is room, then check for shutdown."""
        while self._waiting and not self._full():
            exchange = self._waiting.popleft()
            self._cancelWait(exchange)
            if exchange.state is ExchangeState.WAITING:
                self._connect(exchange)
        self._checkDrained()

    def _checkDrained(self) -> None:
        if not self._closing or self._busy or self._connecting or self._waiting or self._idle:
            return
        drained, self._drained = self._drained, []
        for done in drained:
            done.callback(None)

    def _name(self) -> str:
        return f"{self._config.name} server {self.server.host}:{self.server.port}"


class UpstreamPool:
    """The keep-alive pools of one upstream's servers, and the balancer between them.

    @ivar config: the upstream's configuration.
    @ivar servers: one L{ServerPool} per configured server, in order.
    """

    def __init__(
        self,
        *,
        reactor: IReactorTime,
        config: UpstreamConfig,
        connectTimeout: float,
        responseTimeout: float,
        endpointFactory: EndpointFactory | None = None,
    ) -> None:
        self.config = config
        self._reactor = reactor
        self._closing = False
        factory = endpointFactory or default_endpoint_factory(reactor, connectTimeout)
        self.servers = tuple(
            ServerPool(
                reactor=reactor,
                server=server,
                config=config,
                endpoint=factory(server),
                connectTimeout=connectTimeout,
                responseTimeout=responseTimeout,
            )
            for server in config.servers
        )
        self._balancer = make_balancer(config.policy, self.servers, config.name)

    @property
    def idleCount(self) -> int:
        return sum(server.idleCount for server in self.servers)

    @property
    def activeCount(self) -> int:
        """Connections carrying an exchange, over all servers."""
        return sum(server.activeCount for server in self.servers)

    @property
    def connectionsOpened(self) -> int:
        return sum(server.connectionsOpened for server in self.servers)

    def request(self, req: UpstreamRequest, receiver: ResponseReceiver) -> UpstreamExchange:
        """Start sending C{req}; the outcome goes to C{receiver}. Returns at once; a
        refusal (invalid request, shutting down, https, no server) is delivered on
        the next reactor turn, so the caller holds the exchange first."""
        try:
            head = serialize_request_head(req)
        except RequestRefused as error:
            return self._refused(req, receiver, error)
        if self._closing:
            return self._refused(req, receiver, NoHealthyBackend(f"upstream {self.config.name} is shutting down"))
        server = self._balancer.pick()
        if server is None:
            return self._refused(req, receiver, NoHealthyBackend(f"upstream {self.config.name} has no servers"))
        if server.server.scheme != "http":
            return self._refused(
                req,
                receiver,
                UnsupportedScheme(
                    f"upstream {self.config.name}: scheme {server.server.scheme!r} of "
                    f"{server.server.host}:{server.server.port} is not supported yet; use http"
                ),
            )
        exchange = UpstreamExchange(request=req, head=head, receiver=receiver, source=server)
        server.acquire(exchange)
        return exchange

    def close(self) -> defer.Deferred[None]:
        """Refuse new requests and close idle connections; fires once every exchange
        in flight has ended."""
        self._closing = True
        closing = [server.close() for server in self.servers]
        done = defer.gatherResults(closing)
        done.addCallback(lambda _: None)
        return done

    def _refused(
        self, req: UpstreamRequest, receiver: ResponseReceiver, error: UpstreamError
    ) -> UpstreamExchange:
        exchange = UpstreamExchange(request=req, head=b"", receiver=receiver, source=None)
        self._reactor.callLater(0, exchange.fail, error)
        return exchange
