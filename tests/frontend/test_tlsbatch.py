"""BatchingTLSProtocol: the same bytes as Twisted's TLS protocol, in fewer calls."""

from __future__ import annotations

from OpenSSL import SSL
from twisted.internet import ssl
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory

from h2proxy.devtools.devcert import make_certificate
from h2proxy.tlsbatch import TLS_WRITE_CHUNK, BatchingTLSProtocol


class Sink(Protocol):
    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)


def _connected(tmp_path):
    """A BatchingTLSProtocol server on a StringTransport and a pyOpenSSL client, handshaken."""
    cert, key = make_certificate(str(tmp_path))
    pem = open(cert).read() + open(key).read()
    factory = TLSMemoryBIOFactory(ssl.PrivateCertificate.loadPEM(pem).options(), False, Factory.forProtocol(Sink))
    factory.protocol = BatchingTLSProtocol
    server = factory.buildProtocol(None)
    transport = StringTransport()
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


def _decrypt(client: SSL.Connection, wire: bytes) -> bytes:
    client.bio_write(wire)
    out = []
    while True:
        try:
            out.append(client.recv(65536))
        except SSL.WantReadError:
            return b"".join(out)


def test_large_write_arrives_whole_in_few_transport_writes(tmp_path):
    """When the application writes several chunks' worth, the client decrypts exactly
    those bytes, and the transport got about one write per chunk, not one per record."""
    server, transport, client = _connected(tmp_path)
    writes = []
    transport.write = lambda data: (writes.append(data), StringTransport.write(transport, data))
    payload = bytes(range(256)) * (3 * TLS_WRITE_CHUNK // 256 + 7)
    server.write(payload)
    assert _decrypt(client, b"".join(writes)) == payload
    assert len(writes) <= len(payload) // TLS_WRITE_CHUNK + 1


def test_records_of_one_read_are_delivered_in_one_call(tmp_path):
    """When one read brings several records, the protocol gets their plaintext, in
    order, in one dataReceived."""
    server, transport, client = _connected(tmp_path)
    sent = [bytes([n]) * 16384 for n in range(4)]
    for part in sent:
        client.send(part)
    server.dataReceived(client.bio_read(1 << 20))
    assert server.wrappedProtocol.chunks == [b"".join(sent)]


def test_client_close_notify_delivers_data_then_closes(tmp_path):
    """When data and a close_notify arrive in one read, the data is delivered before
    the connection is lost."""
    server, transport, client = _connected(tmp_path)
    client.send(b"last words")
    try:
        client.shutdown()
    except SSL.Error:
        pass
    lost = []
    server.wrappedProtocol.connectionLost = lost.append
    server.dataReceived(client.bio_read(1 << 20))
    assert server.wrappedProtocol.chunks == [b"last words"]
    assert transport.disconnecting or lost
