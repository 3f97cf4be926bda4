"""A listener's TLS layer (L{BatchingTLSProtocol}) around any protocol, on a fake TCP
transport that behaves like Twisted's C{tcp.Server} where closing is concerned, and a
pyOpenSSL client to talk to it: all in memory."""

from __future__ import annotations

import functools

from OpenSSL import SSL
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IProtocol
from twisted.internet.protocol import Factory
from twisted.internet.testing import StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure

from h2proxy_tools.devcert import make_certificate
from h2proxy.tls.batching import BatchingTLSProtocol
from tests.config.certs import server_options


class TCPServerLike(StringTransport):
    """A StringTransport that closes like C{tcp.Server}: C{loseConnection} once the
    write side is shut (C{loseWriteConnection}) loses the connection at once, inside
    the call; and a lost one no longer knows its local address (C{getHost} asks the
    socket, deleted before the protocol hears of the loss)."""

    def __init__(self) -> None:
        super().__init__(hostAddress=IPv4Address("TCP", "127.0.0.1", 443), peerAddress=IPv4Address("TCP", "127.0.0.1", 50000))
        self.writeClosed = False
        self.lost = False
        self.noDelay: bool | None = None

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.noDelay = enabled

    def loseWriteConnection(self) -> None:
        self.writeClosed = True

    def loseConnection(self) -> None:
        super().loseConnection()
        if self.writeClosed:
            self.connectionLost()

    def connectionLost(self, reason: Failure | None = None) -> None:
        """What the reactor does when the socket goes: the socket first, then the protocol."""
        if self.lost:
            return
        self.lost = True
        self.protocol.connectionLost(reason or Failure(ConnectionDone()))

    def getHost(self) -> IPv4Address:
        if self.lost:
            raise AttributeError("'Server' object has no attribute 'socket'")
        return super().getHost()


class _OneProtocol(Factory):
    """A factory that hands out one protocol built elsewhere (with its own factory)."""

    def __init__(self, protocol: IProtocol) -> None:
        self._protocol = protocol

    def buildProtocol(self, addr: object) -> IProtocol:
        return self._protocol


def listenerTLS(tmp_path, protocol: IProtocol) -> tuple[BatchingTLSProtocol, TCPServerLike, SSL.Connection]:
    """C{protocol} behind a listener's TLS layer on a L{TCPServerLike}, handshaken with
    a client that offered ALPN http/1.1 and h2."""
    factory = TLSMemoryBIOFactory(server_options(*_certificate(str(tmp_path))), False, _OneProtocol(protocol))
    factory.protocol = BatchingTLSProtocol
    server = factory.buildProtocol(None)
    transport = TCPServerLike()
    transport.protocol = server
    server.makeConnection(transport)
    client = SSL.Connection(SSL.Context(SSL.TLS_METHOD), None)
    client.set_connect_state()
    for _ in range(10):
        try:
            client.do_handshake()
        except SSL.WantReadError:
            pass
        try:
            server.dataReceived(client.bio_read(65536))
        except SSL.WantReadError:
            pass
        if transport.value():
            client.bio_write(transport.value())
            transport.clear()
    return server, transport, client


@functools.lru_cache(maxsize=None)
def _certificate(directory: str) -> tuple[str, str]:
    return make_certificate(directory)


def clientReceives(client: SSL.Connection, transport: StringTransport) -> tuple[bytes, bool]:
    """What the client decrypts of what the server wrote, and whether a close_notify
    followed it."""
    client.bio_write(transport.value())
    transport.clear()
    out = []
    while True:
        try:
            out.append(client.recv(65536))
        except SSL.WantReadError:
            return b"".join(out), False
        except SSL.ZeroReturnError:
            return b"".join(out), True
