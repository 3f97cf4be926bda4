# -*- test-case-name: tests.upstream.test_pool -*-
"""UpstreamPool: the servers of one upstream, their keep-alive connections, the
balancer between them, the queue in front of them, and their health.

L{UpstreamPool.request} returns an L{UpstreamExchange} at once. The balancer picks a
server among those that are available (not ejected, not marked down, not already
failed for this request) and have a free slot; that L{ServerPool} attaches a
connection: the most recently used idle one (LIFO: warm, least likely to have been
closed by the backend), else a new one. When every available server is at
C{max_connections}, the exchange waits in the upstream's bounded queue, most urgent
first, and takes the first slot that frees on a server it may use; a full queue or
an expired wait answers 503 with C{Retry-After}. With no available server at all,
the request goes to the ejected server whose back-off ends first; only when there is
none either (every server marked down by its checks) is it a 503. A failed attempt
comes back here (L{attemptFailed}), which counts it against the server's health
(never ejecting the last available server) and sends the request to another server
when that is safe. See docs/_upstream_section.md for the rules.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable, Iterator
from typing import Protocol

from twisted.internet import defer
from twisted.internet.base import DelayedCall
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from h2proxy.config.model import ServerConfig, UpstreamConfig
from h2proxy.errors import (
    BackendClosed,
    BackendConnectTimeout,
    BackendRefused,
    BackendTimeout,
    BackendTLSError,
    NoHealthyBackend,
    QueueFull,
    UpstreamError,
)
from h2proxy.message import UpstreamRequest
from h2proxy.upstream.balancer import make_balancer
from h2proxy.upstream.connector import (
    Connector,
    EndpointFactory,
    default_endpoint_factory,
)
from h2proxy.upstream.exchange import AttemptFailure, UpstreamExchange, replayable
from h2proxy.upstream.health import ServerHealth
from h2proxy.upstream.http11 import (
    TUNNEL_IDLE_TIMEOUT,
    ClientState,
    HTTP11ClientProtocol,
    RequestRefused,
    serialize_request_head,
)
from h2proxy.upstream.interfaces import ResponseReceiver
from h2proxy.upstream.probe import HealthProbe
from h2proxy.upstream.tlsclient import BackendTLS

__all__ = ["EndpointFactory", "ServerPool", "UpstreamPool", "WaitQueue", "default_endpoint_factory"]

log = Logger()

#: Retry-After (seconds) of a 503 for a full queue or an expired wait: slots free as
#: fast as the backends answer, so "soon".
QUEUE_RETRY_AFTER = 1

#: Seconds of float error tolerated when the idle sweep compares a deadline with the
#: clock (it was scheduled for that very deadline).
_CLOCK_SLACK = 1e-6

#: Levels of urgency (RFC 9218: 0 most urgent to 7 least).
URGENCY_LEVELS = 8

#: Failures that count against a server's passive health (and may be retried):
#: it refused, reset, timed out or failed the TLS handshake.
SERVER_FAILURES = (BackendRefused, BackendConnectTimeout, BackendClosed, BackendTimeout, BackendTLSError)


class WaitQueue:
    """Exchanges waiting for a connection slot: the most urgent first, then the
    oldest. One FIFO per urgency level, so taking the next is cheap; a waiter that
    may not use the freed server is passed over, not dropped."""

    def __init__(self) -> None:
        self._levels: list[deque[UpstreamExchange]] = [deque() for _ in range(URGENCY_LEVELS)]
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[UpstreamExchange]:
        for level in self._levels:
            yield from level

    def push(self, exchange: UpstreamExchange) -> None:
        self._levels[self._level(exchange)].append(exchange)
        self._count += 1

    def remove(self, exchange: UpstreamExchange) -> bool:
        """Take C{exchange} out; whether it was here."""
        level = self._levels[self._level(exchange)]
        try:
            level.remove(exchange)
        except ValueError:
            return False
        self._count -= 1
        return True

    def takeFirst(self, accept: Callable[[UpstreamExchange], bool]) -> UpstreamExchange | None:
        """Remove and return the first waiter (in order) that C{accept}s, if any."""
        for level in self._levels:
            for exchange in level:
                if accept(exchange):
                    level.remove(exchange)
                    self._count -= 1
                    return exchange
        return None

    @staticmethod
    def _level(exchange: UpstreamExchange) -> int:
        return min(max(exchange.request.urgency, 0), URGENCY_LEVELS - 1)


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


class UpstreamPool:
    """The servers of one upstream, the balancer between them and the queue in front.

    @ivar config: the upstream's configuration.
    @ivar servers: one L{ServerPool} per configured server, in order.
    @ivar probes: one L{HealthProbe} per server when active checks are configured.
    """

    def __init__(
        self,
        *,
        reactor: IReactorTime,
        config: UpstreamConfig,
        connectTimeout: float,
        responseTimeout: float,
        idleTimeout: float | None = None,
        tunnelIdleTimeout: float = TUNNEL_IDLE_TIMEOUT,
        endpointFactory: EndpointFactory | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self._reactor = reactor
        self._closing = False
        self._requesting = False
        self._inFlight = 0
        self._queue = WaitQueue()
        self._waitTimers: dict[UpstreamExchange, DelayedCall] = {}
        self._drained: list[defer.Deferred[None]] = []
        timeouts = config.timeouts
        connectTimeout = _choose(timeouts.connect, connectTimeout)
        responseTimeout = _choose(timeouts.response, responseTimeout)
        idleTimeout = _choose(timeouts.idle, responseTimeout if idleTimeout is None else idleTimeout)
        tls = BackendTLS(config.tls, config.name) if any(s.scheme == "https" for s in config.servers) else None
        factory = endpointFactory or default_endpoint_factory(reactor, connectTimeout, tls)
        connectors = [
            Connector(
                reactor=reactor,
                server=server,
                endpoint=factory(server),
                name=f"upstream {config.name} server {server.host}:{server.port}",
                tls=tls,
            )
            for server in config.servers
        ]
        self.servers = tuple(
            ServerPool(
                reactor=reactor,
                server=connector.server,
                config=config,
                connector=connector,
                upstream=self,
                connectTimeout=connectTimeout,
                responseTimeout=responseTimeout,
                idleTimeout=idleTimeout,
                tunnelIdleTimeout=tunnelIdleTimeout,
            )
            for connector in connectors
        )
        self._balancer = make_balancer(
            config.policy, self.servers, weight=lambda s: s.server.weight, load=lambda s: s.load, rng=rng
        )
        self._only = self.servers[0] if len(self.servers) == 1 else None
        self.probes = self._startProbes(connectors, tls)

    # -- introspection ---------------------------------------------------------

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

    @property
    def waitingCount(self) -> int:
        """Requests in the queue."""
        return len(self._queue)

    # -- the bridge's side -----------------------------------------------------

    def request(self, req: UpstreamRequest, receiver: ResponseReceiver) -> UpstreamExchange:
        """Start sending C{req}; the outcome goes to C{receiver}. Returns at once; a
        refusal (invalid request, shutting down, no available server, full queue) is
        delivered on the next reactor turn, so the caller holds the exchange first."""
        try:
            head = serialize_request_head(req)
        except RequestRefused as error:
            return self._refused(req, receiver, error)
        if self._closing:
            return self._refused(req, receiver, NoHealthyBackend(f"upstream {self.config.name} is shutting down"))
        exchange = UpstreamExchange(
            request=req, head=head, receiver=receiver, dispatcher=self, startedAt=self._reactor.seconds()
        )
        self._inFlight += 1
        self._requesting = True
        try:
            self._dispatch(exchange)
        finally:
            self._requesting = False
        return exchange

    def close(self) -> defer.Deferred[None]:
        """Refuse new requests, stop health checks and close idle connections; fires
        once every exchange in flight (queued ones included) has ended and every
        connection is closed."""
        self._closing = True
        for probe in self.probes:
            probe.stop()
        for server in self.servers:
            server.close()
        done: defer.Deferred[None] = defer.Deferred()
        self._drained.append(done)
        self.serverQuiet()
        return done

    # -- Dispatcher: the exchanges' side ---------------------------------------

    def withdraw(self, exchange: UpstreamExchange) -> None:
        if self._queue.remove(exchange):
            self._cancelWait(exchange)
        elif exchange.server is not None:
            exchange.server.withdraw(exchange)

    def attemptFailed(self, exchange: UpstreamExchange, failure: AttemptFailure) -> bool:
        """Judge a failed attempt: a stale pooled connection is retried once on a fresh
        one; a server failure counts against the server's health; the request goes to
        another server if L{_mayRetry} says so."""
        if self._stale(exchange, failure):
            exchange.retried = True
            exchange.rewind(fresh=True, resend=False)
            self._dispatch(exchange)
            return True
        if self._countsAgainstServer(failure):
            assert failure.server is not None
            self._serverFailed(failure.server, failure.error)
        if not self._mayRetry(exchange, failure):
            return False
        if failure.server is not None:
            exchange.excluded.add(failure.server)
        if not any(self._usable(server, exchange) for server in self.servers):
            return False
        exchange.tries += 1
        log.info(
            "upstream {upstream}: {method} {target} failed before any response ({error}); "
            "trying another server ({tries} of {retries})",
            upstream=self.config.name,
            method=exchange.request.method.decode("latin-1"),
            target=exchange.request.target.decode("latin-1"),
            error=str(failure.error) or type(failure.error).__name__,
            tries=exchange.tries,
            retries=self.config.retries,
        )
        exchange.rewind(fresh=False, resend=failure.sent)
        self._dispatch(exchange)
        return True

    def attemptAnswered(self, exchange: UpstreamExchange) -> None:
        server = exchange.server
        if server is not None and server.health.requestSucceeded():
            log.info("{server} answers again; back in rotation", server=server.name)

    def exchangeDone(self, exchange: UpstreamExchange) -> None:
        self._inFlight -= 1
        self.serverQuiet()

    # -- Upstream: the server pools' side --------------------------------------

    def takeWaiter(self, server: ServerPool) -> UpstreamExchange | None:
        exchange = self._queue.takeFirst(lambda e: server not in e.excluded)
        if exchange is not None:
            self._cancelWait(exchange)
        return exchange

    def serverQuiet(self) -> None:
        """Fire the close() Deferreds once nothing is in flight or open."""
        if not self._closing or self._inFlight or not all(server.quiet for server in self.servers):
            return
        drained, self._drained = self._drained, []
        for done in drained:
            done.callback(None)

    # -- dispatching -----------------------------------------------------------

    def _dispatch(self, exchange: UpstreamExchange) -> None:
        """Send C{exchange} to a server with a free slot, else queue it, else fail it.
        With one server the balancer has no choice to make (every policy returns the
        one eligible server and keeps no state for it), so it is not asked."""
        if self._only is not None:
            only = self._only
            server = only if self._usable(only, exchange) and only.hasCapacity() else None
        else:
            server = self._balancer.pick(lambda s: self._usable(s, exchange) and s.hasCapacity())
        if server is not None:
            server.acquire(exchange, fresh=exchange.wantsFresh)
            return
        if not any(self._usable(s, exchange) for s in self.servers):
            self._dispatchLastResort(exchange)
            return
        self._enqueue(exchange)

    def _dispatchLastResort(self, exchange: UpstreamExchange) -> None:
        """No server is available: rather than answer 503 for a whole back-off, send
        the request to the server whose ejection ends first (one this request has not
        failed on, not marked down, with a free slot); its answer re-admits it. Only
        when there is none is the request failed."""
        server = self._lastResort(exchange)
        if server is None:
            self._failExchange(exchange, self._noServer())
            return
        server.acquire(exchange, fresh=exchange.wantsFresh)

    def _lastResort(self, exchange: UpstreamExchange) -> ServerPool | None:
        now = self._reactor.seconds()
        ejected = [
            s for s in self.servers
            if s not in exchange.excluded and s.health.up and s.health.ejected(now) and s.hasCapacity()
        ]
        return min(ejected, key=lambda s: s.health.ejectedUntil, default=None)

    def _usable(self, server: ServerPool, exchange: UpstreamExchange) -> bool:
        return server not in exchange.excluded and server.available()

    def _stale(self, exchange: UpstreamExchange, failure: AttemptFailure) -> bool:
        """A pooled connection the backend had closed just as we used it: the request
        never reached the application, and a bodiless idempotent one goes again."""
        return (
            not exchange.retried
            and failure.reused
            and not failure.answered
            and isinstance(failure.error, BackendClosed)
            and replayable(exchange.request)
        )

    def _countsAgainstServer(self, failure: AttemptFailure) -> bool:
        """A server failure, except a reset of a pooled connection before any answer:
        that is the keep-alive race (the backend closed an idle connection as we used
        it), not a sign of a sick server."""
        if failure.server is None or not isinstance(failure.error, SERVER_FAILURES):
            return False
        return not (failure.reused and not failure.answered and isinstance(failure.error, BackendClosed))

    def _mayRetry(self, exchange: UpstreamExchange, failure: AttemptFailure) -> bool:
        """Only before any response byte, for a server failure, within the tries and
        the deadline, and only if the server cannot have acted on the request (it was
        not written) or acting twice is harmless (idempotent, body kept whole)."""
        if failure.answered or not isinstance(failure.error, SERVER_FAILURES):
            return False
        if exchange.tries >= self.config.retries:
            return False
        deadline = self.config.retry_timeout
        if deadline > 0 and self._reactor.seconds() - exchange.startedAt >= deadline:
            return False
        return not failure.sent or exchange.bodyReplayable

    def _enqueue(self, exchange: UpstreamExchange) -> None:
        size = self.config.queue.size
        if len(self._queue) >= size:
            self._failExchange(
                exchange,
                QueueFull(
                    f"upstream {self.config.name}: every available server is at its max_connections and "
                    + (f"{size} requests already wait (queue.size)" if size else "queue.size is 0"),
                    retry_after=QUEUE_RETRY_AFTER,
                ),
            )
            return
        self._queue.push(exchange)
        timeout = self.config.queue.timeout
        if timeout > 0:
            self._waitTimers[exchange] = self._reactor.callLater(timeout, self._waitedTooLong, exchange)

    def _waitedTooLong(self, exchange: UpstreamExchange) -> None:
        del self._waitTimers[exchange]
        self._queue.remove(exchange)
        exchange.fail(
            QueueFull(
                f"upstream {self.config.name}: no connection free within {self.config.queue.timeout:g}s "
                "(every available server at its max_connections)",
                retry_after=QUEUE_RETRY_AFTER,
            )
        )

    def _cancelWait(self, exchange: UpstreamExchange) -> None:
        timer = self._waitTimers.pop(exchange, None)
        if timer is not None and timer.active():
            timer.cancel()

    def _failExchange(self, exchange: UpstreamExchange, error: UpstreamError) -> None:
        """Fail C{exchange}; on the next turn while inside L{request}."""
        if self._requesting:
            self._reactor.callLater(0, exchange.fail, error)
        else:
            exchange.fail(error)

    def _refused(self, req: UpstreamRequest, receiver: ResponseReceiver, error: UpstreamError) -> UpstreamExchange:
        exchange = UpstreamExchange(request=req, head=b"", receiver=receiver, dispatcher=None)
        self._reactor.callLater(0, exchange.fail, error)
        return exchange

    # -- health ----------------------------------------------------------------

    def _noServer(self) -> NoHealthyBackend:
        if not self.servers:
            return NoHealthyBackend(f"upstream {self.config.name} has no servers")
        now = self._reactor.seconds()
        ejected = sum(1 for s in self.servers if s.health.ejected(now))
        down = sum(1 for s in self.servers if not s.health.up)
        return NoHealthyBackend(
            f"upstream {self.config.name}: no server can take the request "
            f"({ejected} ejected after failures, {down} marked down by health checks, "
            f"the others already failed this request)",
            retry_after=self._retryAfter(now),
        )

    def _retryAfter(self, now: float) -> int:
        """Seconds until a server should be available again, for Retry-After."""
        waits = [w for w in (s.health.availableIn(now) for s in self.servers) if w is not None]
        if waits:
            return max(1, math.ceil(min(waits)))
        check = self.config.health_check
        if check is not None:
            return max(1, math.ceil(check.interval * check.healthy_threshold))
        return QUEUE_RETRY_AFTER

    def _serverFailed(self, server: ServerPool, error: UpstreamError) -> None:
        """Count a failure against C{server}; eject it unless it is the upstream's last
        available server (then it stays in rotation, so a restarted application is
        served by the next request, not after the back-off)."""
        lastAvailable = not any(s is not server and s.available() for s in self.servers)
        length = server.health.requestFailed(self._reactor.seconds(), lastAvailable=lastAvailable)
        if length is None:
            return
        log.warn(
            "{server} ejected for {length:g}s after {how}; last error: {error}",
            server=server.name,
            length=length,
            how="failing again on trial" if server.health.ejections > 1 else
            f"{self.config.passive_health.failures} consecutive failures",
            error=str(error) or type(error).__name__,
        )
        self._failStranded()

    def _checked(self, server: ServerPool, passed: bool, detail: str) -> None:
        """A health check's verdict."""
        now = self._reactor.seconds()
        if passed:
            if server.health.checkPassed(now):
                log.info("{server} passes its health checks ({detail}); in rotation", server=server.name, detail=detail)
                server.serveWaiters()
            return
        if server.health.checkFailed():
            log.warn("{server} marked down by its health checks: {detail}", server=server.name, detail=detail)
            server.closeIdle()
            self._failStranded()

    def _failStranded(self) -> None:
        """Queued requests that no available server may take any more fail now (503)
        rather than at their deadline."""
        stranded = [e for e in self._queue if not any(self._usable(s, e) for s in self.servers)]
        for exchange in stranded:
            self._queue.remove(exchange)
            self._cancelWait(exchange)
            exchange.fail(self._noServer())

    def _startProbes(self, connectors: list[Connector], tls: BackendTLS | None) -> list[HealthProbe]:
        check = self.config.health_check
        if check is None:
            return []
        probes = []
        for server, connector in zip(self.servers, connectors):
            host = tls.expectedName(server.server) if tls is not None and server.server.scheme == "https" else None
            probe = HealthProbe(
                reactor=self._reactor,
                connector=connector,
                check=check,
                host=(host or _authority(server.server)).encode("idna"),
                report=lambda passed, detail, server=server: self._checked(server, passed, detail),
            )
            probe.start()
            probes.append(probe)
        return probes


def _choose(override: float | None, default: float) -> float:
    return default if override is None else override


def _authority(server: ServerConfig) -> str:
    host = server.host if ":" not in server.host or server.host.startswith("[") else f"[{server.host}]"
    return f"{host}:{server.port}"
