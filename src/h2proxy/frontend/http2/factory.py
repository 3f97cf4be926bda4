"""H2Factory: builds H2Connections for one listener, knows which are alive, drains them.

Draining is how a worker leaves without losing a request (a reload or a stop): every
connection does the two-step graceful GOAWAY (L{H2Connection.gracefulShutdown}) and
closes once its last stream completes; connections that arrive while draining get
the same treatment as soon as they are up; when the drain window runs out, the
connections still there are aborted. L{H2Factory.drain} fires when none is left.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.internet.protocol import ServerFactory
from twisted.logger import Logger

from h2proxy.config.model import Http2Config
from h2proxy.frontend.http2.connection import ConnectionTracker, H2Connection
from h2proxy.frontend.handler import DRAIN_TIMEOUT, StreamCut

if TYPE_CHECKING:
    from h2proxy.frontend.handler import HandlerFactory

log = Logger()


@dataclasses.dataclass(frozen=True)
class ConnectionOptions:
    """What every L{H2Connection} of a listener is built with, besides the reactor
    and the handler factory (see L{H2Connection} for each)."""

    settings: Http2Config
    idleTimeout: float | None
    abortTimeout: float | None
    secure: bool
    requestHeaderTimeout: float | None = None
    requestBodyTimeout: float | None = None
    sendTimeout: float | None = None
    localContinue: bool = False


class H2Factory(ServerFactory, ConnectionTracker):
    """Builds one L{H2Connection} per accepted connection.

    @ivar connections: the live connections (between C{connectionMade} and
        C{connectionLost}).
    @ivar draining: whether L{drain} was called; new connections then go away at once.
    @ivar rejections: reason -> streams refused or connections closed by a limit or
        budget (read by the worker's metrics snapshot).
    @ivar options: the L{ConnectionOptions} every connection it builds gets.
    """

    def __init__(self, *, reactor: IReactorTime, handlerFactory: "HandlerFactory", options: ConnectionOptions) -> None:
        self.reactor = reactor
        self.handlerFactory = handlerFactory
        self.options = options
        self.connections: set[H2Connection] = set()
        self.draining = False
        self.rejections: dict[str, int] = {}
        self._drainTimer: IDelayedCall | None = None
        self._waiting: list[Deferred[None]] = []

    def buildProtocol(self, addr: IAddress) -> H2Connection:
        options = self.options
        connection = H2Connection(
            reactor=self.reactor,
            handlerFactory=self.handlerFactory,
            settings=options.settings,
            idleTimeout=options.idleTimeout,
            abortTimeout=options.abortTimeout,
            secure=options.secure,
            requestHeaderTimeout=options.requestHeaderTimeout,
            requestBodyTimeout=options.requestBodyTimeout,
            sendTimeout=options.sendTimeout,
            localContinue=options.localContinue,
        )
        connection.factory = self
        connection.tracker = self
        return connection

    def drain(self, timeout: float) -> Deferred[None]:
        """Graceful shutdown of every connection, now and to come; after C{timeout}
        seconds the remaining ones are aborted. Fires when no connection is left."""
        done: Deferred[None] = Deferred()
        self._waiting.append(done)
        if not self.draining:
            self.draining = True
            log.info("draining {count} HTTP/2 connection(s), up to {timeout}s", count=len(self.connections), timeout=timeout)
            for connection in list(self.connections):
                connection.gracefulShutdown()
            self._drainTimer = self.reactor.callLater(timeout, self._drainExpired)
        self._fireIfEmpty()
        return done

    # -- ConnectionTracker -----------------------------------------------------------

    def connectionOpened(self, connection: H2Connection) -> None:
        self.connections.add(connection)
        if self.draining:
            connection.gracefulShutdown()

    def connectionClosed(self, connection: H2Connection) -> None:
        self.connections.discard(connection)
        self._fireIfEmpty()

    def rejected(self, reason: str) -> None:
        self.rejections[reason] = self.rejections.get(reason, 0) + 1

    # -- internals -----------------------------------------------------------------------

    def _drainExpired(self) -> None:
        self._drainTimer = None
        if self.connections:
            log.info("drain window over: aborting {count} HTTP/2 connection(s)", count=len(self.connections))
        for connection in list(self.connections):
            connection.cutStreams(StreamCut(DRAIN_TIMEOUT, "the drain window ran out"))

    def _fireIfEmpty(self) -> None:
        if not self.draining or self.connections:
            return
        if self._drainTimer is not None and self._drainTimer.active():
            self._drainTimer.cancel()
        self._drainTimer = None
        waiting, self._waiting = self._waiting, []
        for done in waiting:
            done.callback(None)
