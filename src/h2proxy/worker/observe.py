# -*- test-case-name: tests.observability.test_observe -*-
"""One worker's observability: its metrics, its access log, and the snapshot it
reports to the supervisor. Wiring only, like L{h2proxy.worker.server}, which holds one.

Counts that change per request are kept by the L{RequestObserver} the bridges call.
Everything else is read when a snapshot is taken (once a second), from the
objects that already keep it: the front ends' live connections and streams, the
upstream pools' servers (load, idle connections, health) and queues, the TLS
handshake counts of L{CountingTLSFactory}, the access log's lost lines. Nothing
is pushed per frame or per connection state change.
"""

from __future__ import annotations

from collections.abc import Mapping

from OpenSSL import SSL
from twisted.internet import error
from twisted.internet.interfaces import IReactorTime
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure

from h2proxy.observability.accesslog import AccessLogFile, RequestObserver
from h2proxy.config.model import Config
from h2proxy.observability.metrics import WorkerMetrics, server_label
from h2proxy.tls.batching import BatchingTLSProtocol


#: What OpenSSL reports on the server side when a client's certificate is refused:
#: none sent where one is required, or one no configured CA signed (or expired).
_CLIENT_CERTIFICATE_REASONS = frozenset({
    "peer did not return a certificate",
    "certificate verify failed",
})


class TLSCounts:
    """TLS handshakes of one listener: completed, failed (an error), refused over
    the client's certificate (mutual TLS), and abandoned (the connection closed
    before the handshake ended: scanners, timeouts)."""

    def __init__(self) -> None:
        self.completed = 0
        self.failed = 0
        self.clientCertificate = 0
        self.abandoned = 0


def refused_client_certificate(problem: Failure) -> bool:
    """Whether a failed handshake failed over the client's certificate. (An alert
    the client sends about the server's certificate is not one of these.)"""
    if not problem.check(SSL.Error):
        return False
    details = problem.value.args[0] if problem.value.args else ()
    return isinstance(details, list) and any(
        isinstance(entry, tuple) and entry and entry[-1] in _CLIENT_CERTIFICATE_REASONS for entry in details
    )


class CountingTLSProtocol(BatchingTLSProtocol):
    """Twisted's TLS protocol (with batched record I/O), counting how its handshake
    ended; each connection counts once."""

    _counted = False

    def handshakeEnded(self) -> None:
        if not self._counted:
            self._counted = True
            self.factory.counts.completed += 1

    def connectionLost(self, reason: Failure) -> None:
        """Count a handshake that never completed: refused over the client's
        certificate, failed when TLS itself stopped it otherwise (an alert, a
        protocol error), abandoned when the connection just went."""
        if not self._counted:
            self._counted = True
            problem = self.tlsFailure
            if problem is not None and refused_client_certificate(problem):
                self.factory.counts.clientCertificate += 1
            elif problem is not None and not problem.check(error.ConnectionLost, error.ConnectionDone):
                self.factory.counts.failed += 1
            else:
                self.factory.counts.abandoned += 1
        super().connectionLost(reason)


class CountingTLSFactory(TLSMemoryBIOFactory):
    """A TLSMemoryBIOFactory whose connections count their handshakes in C{counts}."""

    protocol = CountingTLSProtocol

    def __init__(self, contextFactory, isClient: bool, wrappedFactory, counts: TLSCounts) -> None:
        super().__init__(contextFactory, isClient, wrappedFactory)
        self.counts = counts


def _health_state(server, now: float) -> str:
    health = server.health
    if not health.up:
        return "down"
    return "ejected" if health.ejected(now) else "up"


class WorkerObservability:
    """A worker's metrics, access log and request observer, and its snapshots.

    @ivar metrics: the families (L{WorkerMetrics}).
    @ivar accessLog: the access log writer, if C{logging.access_log} is set.
    @ivar observer: what the bridges report each request to.
    @ivar tls: listener name -> its TLS handshake counts.
    """

    def __init__(self, config: Config, reactor: IReactorTime) -> None:
        self.reactor = reactor
        self.metrics = WorkerMetrics()
        logging = config.logging
        self.accessLog = (AccessLogFile(logging.access_log, format=logging.format, clock=reactor)
                          if logging.access_log else None)
        self.observer = RequestObserver(metrics=self.metrics, accessLog=self.accessLog,
                                        clock=reactor.seconds)
        self.tls: dict[str, TLSCounts] = {}

    def tlsFactory(self, listener: str, contextFactory, wrappedFactory) -> CountingTLSFactory:
        """The TLS layer of listener C{listener}, counting its handshakes."""
        counts = self.tls.setdefault(listener, TLSCounts())
        return CountingTLSFactory(contextFactory, False, wrappedFactory, counts)

    def reopenLogs(self) -> None:
        if self.accessLog is not None:
            self.accessLog.reopen()

    def closeLogs(self) -> None:
        if self.accessLog is not None:
            self.accessLog.close()

    def snapshot(self, *, h2Factories: Mapping, http1Factories: Mapping, pools: Mapping,
                 inFlight: int, limiter=None) -> dict:
        """Set the gauges and read-at-snapshot counters, then the report to send:
        C{{"metrics": ..., "recent": [...]}}. C{limiter} is the worker's connection
        limiter, if C{limits.max_connections} is set."""
        m = self.metrics
        for gauge in (m.connections, m.streams, m.queueDepth, m.inFlight, m.idle, m.serverState):
            gauge.clear()
        for name, factory in h2Factories.items():
            m.connections.set((name, "h2"), len(factory.connections))
            m.streams.set((name,), sum(len(c.streams) for c in factory.connections))
        for name, factory in http1Factories.items():
            m.connections.set((name, "http/1.1"), len(factory.connections))
        m.inFlightRequests.set((), inFlight)
        self._readRejections(h2Factories, limiter)
        self._readUpstreams(pools)
        for name, counts in self.tls.items():
            m.tlsHandshakes.setTotal((name,), counts.completed)
            m.tlsFailures.setTotal((name, "error"), counts.failed)
            m.tlsFailures.setTotal((name, "client_certificate"), counts.clientCertificate)
            m.tlsFailures.setTotal((name, "closed"), counts.abandoned)
        if self.accessLog is not None:
            m.accessLogLost.setTotal((), self.accessLog.lost)
        return {"metrics": m.registry.snapshot(), "recent": list(self.observer.recent)}

    def _readRejections(self, h2Factories: Mapping, limiter) -> None:
        totals: dict[str, int] = {}
        for factory in h2Factories.values():
            for reason, count in factory.rejections.items():
                totals[reason] = totals.get(reason, 0) + count
        if limiter is not None:
            totals["connection_limit_refused"] = limiter.refused
            totals["connection_limit_dropped"] = limiter.dropped
            totals["connection_limit_evicted_idle"] = limiter.evicted
        for reason, count in totals.items():
            self.metrics.rejected.setTotal((reason,), count)

    def _readUpstreams(self, pools: Mapping) -> None:
        m = self.metrics
        now = self.reactor.seconds()
        for name, pool in pools.items():
            m.queueDepth.set((name,), pool.waitingCount)
            for server in pool.servers:
                label = (name, server_label(server.server))
                m.inFlight.set(label, server.activeCount)
                m.idle.set(label, server.idleCount)
                m.serverState.set((*label, _health_state(server, now)), 1)
