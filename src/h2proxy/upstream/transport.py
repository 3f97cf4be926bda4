# -*- test-case-name: tests.upstream.test_transport,tests.upstream.test_transport_canary -*-
"""Backend TCP transports that write at once when nothing is queued, and the
tuning every backend connection gets.

Twisted's C{FileDescriptor.write} only queues: it registers for writability (an
``epoll_ctl``), the reactor's next turn calls C{doWrite}, which sends and, the
buffer empty, unregisters (another ``epoll_ctl``), each event wrapped in the
reactor's logging context. For a small request head on an idle keep-alive
connection that is three system calls and a reactor dispatch where one ``send``
does. L{ImmediateWriteClient} sends right away while nothing it handed to Twisted
is still unsent, and hands whatever the kernel did not take to the ordinary queued
path, so Twisted's semantics are kept:

  - order: the transport counts the bytes it queued and the bytes Twisted's
    C{doWrite} reports sent through C{writeSomeData}; while the difference is not
    zero every write is queued behind them (L{WritePath.QUEUED}). It never reads
    Twisted's buffers, so a buffer Twisted adds cannot reorder bytes;
  - partial writes and errors: what the kernel did not take (all of it when
    C{send} fails) is queued, and C{doWrite} writes it or reports the lost
    connection through C{connectionLost} as it always did; C{write} never raises;
  - producers (a request body being streamed): the producer is paused when the
    queue passes C{bufferSize} and resumed when it drains, exactly as before;
  - closing: once C{loseConnection}, C{loseWriteConnection} or C{abortConnection}
    was called (L{WritePath.CLOSED}), writes are dropped; what was queued before
    is still flushed by Twisted before the close.

The transport is made by L{ImmediateWriteConnector} when the connection is
attempted (no object changes class); the backend endpoints get it through
L{immediateWriteReactor}, a reactor whose C{connectTCP} uses that connector, so
Twisted's endpoints (C{HostnameEndpoint}'s happy eyeballs included) are used as
they are.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from typing import Any

from twisted.internet import tcp
from twisted.internet.interfaces import IConnector, IHalfCloseableDescriptor, ISSLTransport
from twisted.internet.posixbase import PosixReactorBase
from twisted.internet.protocol import ClientFactory
from twisted.python.failure import Failure
from zope.interface import directlyProvides, providedBy

#: Bytes asked of the backend socket per read (Twisted's default is 64 KiB). A bulk
#: response then arrives in a quarter of the reads, and each read makes one send
#: pass and one write to the client, so the per-read costs are paid a quarter as
#: often. Matches the front end's per-stream high-water mark.
BACKEND_READ_SIZE = 256 * 1024


class WritePath(Enum):
    """How L{ImmediateWriteClient.write} sends the next bytes."""

    #: Nothing handed to Twisted is unsent: try the socket at once.
    DIRECT = "direct"
    #: Twisted holds unsent bytes: queue behind them.
    QUEUED = "queued"
    #: The connection is closing or closed: drop.
    CLOSED = "closed"


class ImmediateWriteClient(tcp.Client):
    """A TCP client transport whose C{write} sends at once when nothing is queued
    (see the module docstring)."""

    def __init__(
        self,
        host: str,
        port: int,
        bindAddress: tuple[str, int] | None,
        connector: tcp.Connector,
        reactor: PosixReactorBase,
    ) -> None:
        self.writePath = WritePath.DIRECT
        #: Bytes handed to Twisted's queue and not yet reported sent.
        self._unsent = 0
        super().__init__(host, port, bindAddress, connector, reactor)

    def write(self, data: bytes) -> None:
        path = self.writePath
        if path is WritePath.CLOSED or not self.connected:
            return
        if path is WritePath.DIRECT and type(data) is bytes and data:
            try:
                sent = self.socket.send(data)
            except OSError:
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
        self._queue(data)

    def writeSequence(self, iovec: Iterable[bytes]) -> None:
        """Queued as Twisted does, counted like L{write}'s queued bytes."""
        if self.writePath is WritePath.CLOSED or not self.connected:
            return
        chunks = list(iovec)
        super().writeSequence(chunks)
        self._counted(sum(len(chunk) for chunk in chunks))

    def writeSomeData(self, data: bytes) -> int | BaseException:
        """Twisted's C{doWrite} sends the queue through here: count what went, and
        go back to the direct path once the queue is empty."""
        sent = super().writeSomeData(data)
        if isinstance(sent, int) and sent > 0:
            self._unsent -= sent
            if self._unsent <= 0 and self.writePath is WritePath.QUEUED:
                self._unsent = 0
                self.writePath = WritePath.DIRECT
        return sent

    def loseConnection(self) -> None:
        self.writePath = WritePath.CLOSED
        super().loseConnection()

    def loseWriteConnection(self) -> None:
        self.writePath = WritePath.CLOSED
        super().loseWriteConnection()

    def abortConnection(self) -> None:
        self.writePath = WritePath.CLOSED
        super().abortConnection()

    def connectionLost(self, reason: Failure) -> None:
        self.writePath = WritePath.CLOSED
        super().connectionLost(reason)

    def _queue(self, data: bytes) -> None:
        super().write(data)
        self._counted(len(data))

    def _counted(self, queued: int) -> None:
        if queued:
            self._unsent += queued
            self.writePath = WritePath.QUEUED


class ImmediateWriteConnector(tcp.Connector):
    """A C{tcp.Connector} whose connection attempts use L{ImmediateWriteClient}."""

    # The one private Twisted name the upstream side relies on: tcp.Connector builds
    # its transport in _makeTransport (BaseConnector.connect calls it). Its name and
    # signature are checked by tests/upstream/test_transport_canary.py.
    def _makeTransport(self) -> ImmediateWriteClient:
        return ImmediateWriteClient(self.host, self.port, self.bindAddress, self, self.reactor)


class _ImmediateWriteReactor:
    """The reactor as the backend endpoints see it: everything is the real
    reactor's (its interfaces too) except C{connectTCP}, which connects through
    L{ImmediateWriteConnector}."""

    def __init__(self, reactor: PosixReactorBase) -> None:
        self._reactor = reactor
        directlyProvides(self, providedBy(reactor))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reactor, name)

    def connectTCP(
        self,
        host: str,
        port: int,
        factory: ClientFactory,
        timeout: float = 30.0,
        bindAddress: tuple[str, int] | None = None,
    ) -> IConnector:
        connector = ImmediateWriteConnector(host, port, factory, timeout, bindAddress, self._reactor)
        connector.connect()
        return connector


def immediateWriteReactor(reactor: object) -> object:
    """C{reactor} with its TCP connections made as L{ImmediateWriteClient}; a reactor
    that does not build C{tcp.Connector}s (a test's memory reactor) is returned as is."""
    if isinstance(reactor, PosixReactorBase):
        return _ImmediateWriteReactor(reactor)
    return reactor


def tuneTransport(transport: object) -> None:
    """On the TCP transport (under a TLS one, if any): read L{BACKEND_READ_SIZE} per
    socket read and turn Nagle's algorithm off. With Nagle, the last small segment
    of a request (the end of a body, a chunk trailer) waited for the backend's
    delayed ACK of the one before (up to 40 ms) whenever data was still
    unacknowledged: uploads spent that long idle at every request boundary. Other
    transports, such as test transports, have no read size and are left alone."""
    for candidate in (transport, getattr(transport, "transport", None)):
        if hasattr(candidate, "bufferSize"):
            candidate.bufferSize = BACKEND_READ_SIZE  # type: ignore[union-attr]
            _noDelay(candidate)
            return


def _noDelay(transport: object) -> None:
    try:
        transport.setTcpNoDelay(True)  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return  # not a TCP socket, or already gone (connectionLost follows)


def halfClose(transport: object) -> None:
    """Stop writing to the backend, reading on. A TCP transport does a half-close
    (C{loseWriteConnection}: the backend reads EOF; the protocol is not an
    C{IHalfCloseableProtocol}, so the backend's own EOF is a plain
    C{connectionLost}); a transport without one is closed.

    Over TLS nothing is sent. A close_notify is no half-close to most servers
    (TLS 1.2 says to answer it and close at once, pending writes dropped), so the
    backend's answering Close frame would be lost; and Twisted's TLS transport
    copies the interfaces of the TCP transport under it, whose
    C{loseWriteConnection} would cut the socket under the TLS layer. The backend's
    own close (a WebSocket server closes after answering a Close frame) or the
    tunnel's close timeout ends the tunnel."""
    if ISSLTransport.providedBy(transport):
        return
    if IHalfCloseableDescriptor.providedBy(transport):
        transport.loseWriteConnection()  # type: ignore[attr-defined]
    else:
        transport.loseConnection()  # type: ignore[attr-defined]
