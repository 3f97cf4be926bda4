# -*- test-case-name: tests.upstream.test_pool -*-
"""L{ServerPool}: the connections to one server of an upstream (connecting, busy,
idle), how they are reused, expired and capped, and how a freed slot goes to the
upstream's next waiter. The choice between servers and the queue are the
upstream's (L{h2proxy.upstream.pool})."""

from __future__ import annotations

from typing import Protocol

from twisted.internet import defer
from twisted.internet.base import DelayedCall
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from h2proxy.config.upstreams import ServerConfig, UpstreamConfig
from h2proxy.errors import BackendRefused, BackendTLSError, UpstreamError
from h2proxy.upstream.connector import Connector
from h2proxy.upstream.exchange import UpstreamExchange
from h2proxy.upstream.health import ServerHealth
from h2proxy.upstream.http11 import TUNNEL_IDLE_TIMEOUT, ClientState, FieldNameCache, HTTP11ClientProtocol

# Logged under the pool's namespace: to an operator a server's connections are
# part of its upstream pool.
log = Logger(namespace="h2proxy.upstream.pool")

#: Seconds of float error tolerated when the idle sweep compares a deadline with the
#: clock (it was scheduled for that very deadline).
_CLOCK_SLACK = 1e-6


class Upstream(Protocol):
    """What a server pool asks of its upstream."""

    def takeWaiter(self, server: "ServerPool") -> UpstreamExchange | None:
        """The next queued exchange that may use C{server}, removed from the queue."""

    def serverQuiet(self) -> None:
        """The server has no connection left (for shutdown)."""


class ServerPool:
    """The connections to one server.

    Every connection is in exactly one place: C{_connecting} (keyed by the exchange
    it is for), C{_busy} (carrying an exchange) or C{_idle} (LIFO, each with its
    expiry timer). C{max_connections} (0 = no cap) bounds all three together.

    Rules: an idle connection is reused before a new one is opened; a completed
    exchange's connection goes to the upstream's next waiter that may use this
    server, else back to the idle list, which keeps at most C{keepalive} connections
    (the oldest is closed to make room) for at most C{keepalive_idle} seconds each; a
    connection that carried C{max_requests} requests is closed instead; a slot freed
    by a closed connection or a failed connect starts the next waiter.

    @ivar server: the server configuration.
    @ivar health: its L{ServerHealth}.
    @ivar connectionsOpened: successful connects so far.
    """

    def __init__(
        self,
        *,
        reactor: IReactorTime,
        server: ServerConfig,
        config: UpstreamConfig,
        connector: Connector,
        upstream: Upstream,
        connectTimeout: float,
        responseTimeout: float,
        idleTimeout: float,
        tunnelIdleTimeout: float = TUNNEL_IDLE_TIMEOUT,
        names: FieldNameCache | None = None,
    ) -> None:
        self.server = server
        self.health = ServerHealth(config.passive_health, config.health_check)
        self.connectionsOpened = 0
        self._reactor = reactor
        self._config = config
        self._connector = connector
        self._upstream = upstream
        self._connectTimeout = connectTimeout
        self._responseTimeout = responseTimeout
        self._idleTimeout = idleTimeout
        self._tunnelIdleTimeout = tunnelIdleTimeout
        self._names = FieldNameCache() if names is None else names
        self._idle: list[HTTP11ClientProtocol] = []
        self._idleSince: dict[HTTP11ClientProtocol, float] = {}
        self._sweepCall: DelayedCall | None = None
        self._busy: set[HTTP11ClientProtocol] = set()
        self._connecting: dict[UpstreamExchange, defer.Deferred[HTTP11ClientProtocol]] = {}
        self._closing = False
        self._acquiring = False

    # -- introspection ---------------------------------------------------------

    @property
    def name(self) -> str:
        return self._connector.name

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
    def load(self) -> int:
        """Requests in flight here (carried or connecting): what least_conn compares."""
        return len(self._busy) + len(self._connecting)

    @property
    def quiet(self) -> bool:
        return not (self._busy or self._connecting or self._idle)

    def available(self) -> bool:
        """Whether new requests may be sent here now (health only)."""
        return self.health.available(self._reactor.seconds())

    def hasCapacity(self) -> bool:
        """Whether a request can have a connection now: an idle one, or room for one."""
        return bool(self._idle) or not self._full()

    @property
    def maxConnections(self) -> int:
        """This server's connection cap (0 = none): its own, else the upstream's."""
        own = self.server.max_connections
        return self._config.max_connections if own is None else own

    def _full(self) -> bool:
        cap = self.maxConnections
        return cap > 0 and len(self._idle) + len(self._busy) + len(self._connecting) >= cap

    # -- the upstream's side ---------------------------------------------------

    def acquire(self, exchange: UpstreamExchange, fresh: bool = False) -> None:
        """Attach a connection to C{exchange}: an idle one unless C{fresh} (after a
        stale one), else a new one. The caller checked L{hasCapacity}."""
        self._acquiring = True
        try:
            self._acquire(exchange, fresh)
        finally:
            self._acquiring = False

    def _acquire(self, exchange: UpstreamExchange, fresh: bool) -> None:
        exchange.server = self
        if self._idle and not fresh:
            self._attach(exchange, self._takeIdle(-1), reused=True)
            return
        if self._full() and self._idle:
            self._takeIdle(0).close()
        self._connect(exchange)

    def withdraw(self, exchange: UpstreamExchange) -> None:
        """A connecting exchange was cancelled: stop connecting for it."""
        attempt = self._connecting.pop(exchange, None)
        if attempt is not None:
            attempt.cancel()
            self._slotFreed()

    def serveWaiters(self) -> None:
        """Give free slots to the upstream's waiters while there are both."""
        while self.hasCapacity() and self.available():
            exchange = self._upstream.takeWaiter(self)
            if exchange is None:
                return
            self.acquire(exchange, fresh=exchange.wantsFresh)

    def closeIdle(self) -> None:
        """Close every idle connection (the server was marked down)."""
        while self._idle:
            self._takeIdle(-1).close()

    def close(self) -> None:
        """Close idle connections now and every other one as its exchange ends."""
        self._closing = True
        self.closeIdle()
        self._checkQuiet()

    # -- ConnectionOwner: the connections' side --------------------------------

    def connectionIdle(self, connection: HTTP11ClientProtocol) -> None:
        """An exchange completed on a reusable connection: next waiter, idle, or close."""
        self._busy.discard(connection)
        limit = self._config.max_requests
        if limit and connection.requestsSent >= limit:
            connection.close()
            self._slotFreed()
            return
        waiter = self._upstream.takeWaiter(self) if self.available() else None
        if waiter is not None:
            waiter.server = self
            self._attach(waiter, connection, reused=True)
            return
        if self._closing or self._config.keepalive <= 0 or self._config.keepalive_idle <= 0:
            connection.close()
            self._slotFreed()
            return
        if len(self._idle) >= self._config.keepalive:
            self._takeIdle(0).close()
        self._idle.append(connection)
        self._idleSince[connection] = self._reactor.seconds()
        if self._sweepCall is None:
            self._sweepCall = self._reactor.callLater(self._config.keepalive_idle, self._sweep)

    def connectionGone(self, connection: HTTP11ClientProtocol) -> None:
        """A connection closed: forget it and let a waiter use the slot."""
        if connection in self._busy:
            self._busy.remove(connection)
        elif connection in self._idleSince:
            self._idle.remove(connection)
            del self._idleSince[connection]
            self._idleShrank()
        else:
            return
        self._slotFreed()

    # -- internals -------------------------------------------------------------

    def _attach(self, exchange: UpstreamExchange, connection: HTTP11ClientProtocol, reused: bool) -> None:
        self._busy.add(connection)
        exchange.attach(connection, reused=reused)

    def _takeIdle(self, index: int) -> HTTP11ClientProtocol:
        connection = self._idle.pop(index)
        del self._idleSince[connection]
        self._idleShrank()
        return connection

    def _idleShrank(self) -> None:
        """No idle connection left: no sweep needed (the next idle one starts it)."""
        if not self._idle and self._sweepCall is not None:
            self._sweepCall.cancel()
            self._sweepCall = None

    def _sweep(self) -> None:
        """Close the connections idle for C{keepalive_idle}, oldest first (C{_idle} is
        in the order they became idle), and come back when the next one is due. One
        timer per server instead of one per idle connection: a request that reuses
        a connection costs no timer."""
        self._sweepCall = None
        limit = self._config.keepalive_idle
        now = self._reactor.seconds() + _CLOCK_SLACK
        while self._idle and self._idleSince[self._idle[0]] + limit <= now:
            connection = self._idle.pop(0)
            del self._idleSince[connection]
            connection.close()
            self._slotFreed()
        if self._idle and self._sweepCall is None:
            due = self._idleSince[self._idle[0]] + limit
            self._sweepCall = self._reactor.callLater(max(0.0, due - self._reactor.seconds()), self._sweep)

    def _connect(self, exchange: UpstreamExchange) -> None:
        connection = HTTP11ClientProtocol(
            reactor=self._reactor,
            responseTimeout=self._responseTimeout,
            idleTimeout=self._idleTimeout,
            tunnelIdleTimeout=self._tunnelIdleTimeout,
            owner=self,
            names=self._names,
        )
        attempt = self._connector.connect(connection, self._connectTimeout)
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
            self._fail(exchange, BackendRefused(f"{self.name} closed the connection as soon as it opened"))
            self._slotFreed()
            return
        self._attach(exchange, connection, reused=False)

    def _connectFailed(self, failure: Failure, exchange: UpstreamExchange) -> None:
        if self._connecting.pop(exchange, None) is None:
            return None
        error = failure.value if isinstance(failure.value, UpstreamError) else BackendRefused(str(failure.value))
        if isinstance(error, BackendTLSError):
            log.error("{error}", error=str(error))
        self._fail(exchange, error)
        self._slotFreed()
        return None

    def _fail(self, exchange: UpstreamExchange, error: UpstreamError) -> None:
        """Report a failed connect to C{exchange}; on the next reactor turn if we are
        inside L{acquire}, so that a caller of C{UpstreamPool.request} never hears of
        a failure before it holds the exchange."""
        if self._acquiring:
            self._reactor.callLater(0, exchange.connectFailed, error)
        else:
            exchange.connectFailed(error)

    def _slotFreed(self) -> None:
        self.serveWaiters()
        self._checkQuiet()

    def _checkQuiet(self) -> None:
        if self._closing and self.quiet:
            self._upstream.serverQuiet()
