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

from twisted.internet import defer
from twisted.internet.base import DelayedCall
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from h2proxy.config.upstreams import ServerConfig, UpstreamConfig
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
from h2proxy.upstream.http11 import TUNNEL_IDLE_TIMEOUT, FieldNameCache, RequestRefused, serialize_request_head
from h2proxy.upstream.interfaces import ResponseReceiver
from h2proxy.upstream.probe import HealthProbe
from h2proxy.upstream.serverpool import ServerPool
from h2proxy.upstream.tlsclient import BackendTLS
from h2proxy.upstream.waitqueue import WaitQueue

# The connector's names are re-exported: whoever builds a pool passes them.
__all__ = ["EndpointFactory", "UpstreamPool", "default_endpoint_factory"]

log = Logger()

#: Retry-After (seconds) of a 503 for a full queue or an expired wait: slots free as
#: fast as the backends answer, so "soon".
QUEUE_RETRY_AFTER = 1

#: Failures that count against a server's passive health (and may be retried):
#: it refused, reset, timed out or failed the TLS handshake.
SERVER_FAILURES = (BackendRefused, BackendConnectTimeout, BackendClosed, BackendTimeout, BackendTLSError)


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
        self._names = FieldNameCache()
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
                names=self._names,
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
            head = serialize_request_head(req, self._names)
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
