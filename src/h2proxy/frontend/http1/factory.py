"""HTTP1Factory: builds the HTTP/1.x connections of one listener, knows which are
alive, and drains them (in-flight responses close their connections, idle ones
close now, the rest are aborted when the drain window runs out)."""

from __future__ import annotations

from typing import Callable

from twisted.internet import defer
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from h2proxy.frontend.handler import StreamHandler
from h2proxy.frontend.http1.protocol import HTTP11ServerProtocol
from h2proxy.frontend.http1.stream import HTTP1Stream

log = Logger()


class HTTP1Factory(Factory):
    """Builds an L{HTTP11ServerProtocol} per HTTP/1.x client connection.

    @ivar reactor: the clock for idle and abort timers.
    @ivar handlerFactory: C{handlerFactory(stream) -> StreamHandler}, as for HTTP/2.
    @ivar idleTimeout: seconds a connection may wait on its client (between
        requests, for a head, for body bytes, for it to read); C{None}: forever.
    @ivar secure: connections arrive over TLS (scheme ``https``).
    @ivar maxHeaderBytes: cap on a request head and on a trailer section (431).
    @ivar maxPipelined: requests answered in a row from bytes that were already
        waiting when the previous response ended; the last of them says
        ``Connection: close``. Bounds the work one burst can queue.
    @ivar abortTimeout: seconds a closing connection may take to flush before it
        is aborted; C{None}: wait forever.
    @ivar localContinue: answer ``Expect: 100-continue`` with a 100 when the handler
        first reads the body, and keep Expect from the handler; by default the handler
        gets it and relays the backend's 100.
    @ivar connections: the live connections.
    @ivar draining: a drain started; every response now closes its connection.
    """

    def __init__(
        self,
        *,
        reactor: IReactorTime,
        handlerFactory: Callable[[HTTP1Stream], StreamHandler],
        idleTimeout: float | None,
        secure: bool,
        maxHeaderBytes: int = 64 * 1024,
        maxPipelined: int = 16,
        abortTimeout: float | None = 15.0,
        localContinue: bool = False,
    ) -> None:
        self.reactor = reactor
        self.handlerFactory = handlerFactory
        self.idleTimeout = idleTimeout
        self.secure = secure
        self.maxHeaderBytes = maxHeaderBytes
        self.maxPipelined = maxPipelined
        self.abortTimeout = abortTimeout
        self.localContinue = localContinue
        self.connections: set[HTTP11ServerProtocol] = set()
        self.draining = False
        self._drainWaiters: list[defer.Deferred] = []
        self._drainTimer: IDelayedCall | None = None

    def buildProtocol(self, addr: IAddress) -> HTTP11ServerProtocol:
        return HTTP11ServerProtocol(self)

    def drain(self, timeout: float) -> defer.Deferred:
        """Finish in-flight requests (their responses close the connection), close
        idle connections now, and abort whatever is left after C{timeout} seconds.
        The Deferred fires once every connection is gone."""
        self.draining = True
        waiter: defer.Deferred = defer.Deferred()
        self._drainWaiters.append(waiter)
        for connection in list(self.connections):
            connection.drain()
        if self.connections and self._drainTimer is None:
            self._drainTimer = self.reactor.callLater(timeout, self._abortLeftovers)
        self._checkDrained()
        return waiter

    def _abortLeftovers(self) -> None:
        self._drainTimer = None
        log.info("drain window over: aborting {n} HTTP/1.1 connection(s)", n=len(self.connections))
        for connection in list(self.connections):
            connection.abort()

    def _connectionLost(self, connection: HTTP11ServerProtocol) -> None:
        self.connections.discard(connection)
        self._checkDrained()

    def _checkDrained(self) -> None:
        if not self.draining or self.connections:
            return
        if self._drainTimer is not None and self._drainTimer.active():
            self._drainTimer.cancel()
        self._drainTimer = None
        waiters, self._drainWaiters = self._drainWaiters, []
        for waiter in waiters:
            waiter.callback(None)
