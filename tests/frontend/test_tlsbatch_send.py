"""BatchingTLSProtocol's way out on a real TCP transport: records sent from the
shared ciphertext buffer while Twisted holds nothing unsent, queued behind what it
holds otherwise, and the same bytes in the same order either way."""

from __future__ import annotations

import socket

import pytest
from OpenSSL import SSL
from twisted.internet import tcp
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor
from twisted.protocols.tls import TLSMemoryBIOFactory

from h2proxy.tls import batching
from h2proxy.tls.batching import BatchingTLSProtocol
from h2proxy_tools.devcert import make_certificate
from tests.config.certs import server_options


class _Peer:
    """The client end: a socket read without blocking, and a pyOpenSSL client."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        sock.setblocking(False)
        self.tls = SSL.Connection(SSL.Context(SSL.TLS_METHOD), None)
        self.tls.set_connect_state()

    def wire(self) -> bytes:
        """Every byte the server's socket sent so far."""
        chunks = []
        while True:
            try:
                chunk = self.sock.recv(1 << 20)
            except BlockingIOError:
                return b"".join(chunks)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)

    def decrypt(self, wire: bytes) -> bytes:
        self.tls.bio_write(wire)
        out = []
        while True:
            try:
                out.append(self.tls.recv(1 << 20))
            except SSL.WantReadError:
                return b"".join(out)


@pytest.fixture(params=["shared buffer", "bio_read"])
def writePath(request, monkeypatch):
    """Each test runs on both ways out: the shared ciphertext buffer, and
    pyOpenSSL's public bio_read (used when its internals are missing)."""
    if request.param == "bio_read":
        monkeypatch.setattr(batching._CIPHERTEXT, "available", False)
    return request.param


@pytest.fixture
def connected(tmp_path, writePath):
    """A BatchingTLSProtocol on a tcp.Connection over a socket pair (on a memory
    reactor, so Twisted's queued writes go out only when a test calls doWrite),
    handshaken with the client at the other end."""
    options = server_options(*make_certificate(str(tmp_path)))
    factory = TLSMemoryBIOFactory(options, False, Factory.forProtocol(Protocol))
    factory.protocol = BatchingTLSProtocol
    server = factory.buildProtocol(None)
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    reactor = MemoryReactor()
    transport = tcp.Connection(ours, server, reactor)
    transport.connected = True
    server.makeConnection(transport)
    peer = _Peer(theirs)
    for _ in range(10):
        try:
            peer.tls.do_handshake()
        except SSL.WantReadError:
            pass
        try:
            server.dataReceived(peer.tls.bio_read(65536))
        except SSL.WantReadError:
            pass
        transport.doWrite()
        wire = peer.wire()
        if wire:
            peer.tls.bio_write(wire)
    yield server, transport, peer, reactor
    ours.close()
    theirs.close()


def test_ciphertext_buffer_is_used_with_this_pyopenssl():
    """When pyOpenSSL has the internals the shared ciphertext buffer needs, it is used."""
    assert batching._CIPHERTEXT.available


def test_write_the_socket_takes_arrives_whole(connected, writePath):
    """When the socket has room, a large write reaches the client whole; on the
    shared buffer path it went out at once, with nothing left for Twisted to send."""
    server, transport, peer, reactor = connected
    payload = bytes(range(256)) * 256  # 64 KiB: four records, room to spare in the socket
    server.write(payload)
    if writePath == "shared buffer":
        assert transport not in reactor.getWriters()
    else:
        transport.doWrite()
    assert peer.decrypt(peer.wire()) == payload


def test_write_behind_unsent_bytes_is_queued_in_order(connected, writePath):
    """When Twisted still holds bytes for the socket and the socket has room again
    (the client read, the reactor has not written yet), a new write is queued
    behind those bytes, so the client reads both writes in order."""
    server, transport, peer, reactor = connected
    transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    first = bytes(range(256)) * (2 * batching.TLS_BIO_READ // 256)
    server.write(first)
    assert transport in reactor.getWriters()
    wire = [peer.wire()]
    server.write(b"second")
    assert peer.wire() == b""
    _drain(transport, peer, reactor, wire)
    assert peer.decrypt(b"".join(wire)) == first + b"second"


def _drain(transport: tcp.Connection, peer: _Peer, reactor: MemoryReactor, wire: list[bytes]) -> None:
    """Run Twisted's queued writes, the client reading on, until nothing is queued."""
    for _ in range(10000):
        wire.append(peer.wire())
        if transport not in reactor.getWriters():
            break
        transport.doWrite()
    wire.append(peer.wire())


def test_write_larger_than_the_socket_takes_arrives_in_order(connected, writePath):
    """When the socket takes only part of a write (its buffer full while the client
    does not read), the rest is queued and the client, reading on, gets every byte
    in order."""
    server, transport, peer, reactor = connected
    transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    payload = bytes(range(256)) * (4 * batching.TLS_BIO_READ // 256)
    server.write(payload)
    assert transport in reactor.getWriters()
    wire: list[bytes] = []
    _drain(transport, peer, reactor, wire)
    assert peer.decrypt(b"".join(wire)) == payload


def test_client_socket_is_read_in_large_reads(connected):
    """When a TLS connection starts on a TCP transport, the transport reads
    CLIENT_READ_SIZE bytes at a time (Twisted's default is half of it)."""
    server, transport, peer, reactor = connected
    assert transport.bufferSize == batching.CLIENT_READ_SIZE > 64 * 1024
