"""BatchingTLSProtocol: the same bytes as Twisted's TLS protocol, in fewer calls."""

from __future__ import annotations

import pytest
from OpenSSL import SSL
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory

from h2proxy.tls import batching
from h2proxy_tools.devcert import make_certificate
from h2proxy.tls.batching import TLS_WRITE_CHUNK, BatchingTLSProtocol
from tests.config.certs import server_options


class Sink(Protocol):
    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)


def _connected(tmp_path):
    """A BatchingTLSProtocol server on a StringTransport and a pyOpenSSL client, handshaken."""
    options = server_options(*make_certificate(str(tmp_path)))
    factory = TLSMemoryBIOFactory(options, False, Factory.forProtocol(Sink))
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


@pytest.fixture(params=["shared buffer", "public recv"])
def readPath(request, monkeypatch):
    """Each receive test runs on both paths: records decrypted into the shared
    buffer, and pyOpenSSL's public recv (used when its internals are missing)."""
    if request.param == "public recv":
        monkeypatch.setattr(batching._PLAINTEXT, "available", False)
    return request.param


def test_shared_buffer_is_used_with_this_pyopenssl():
    """When pyOpenSSL has the internals the shared buffer needs, it is used."""
    assert batching._PLAINTEXT.available


def test_read_larger_than_delivery_limit_arrives_in_order_in_bounded_calls(tmp_path, readPath):
    """When one read brings more plaintext than TLS_DELIVER_LIMIT, the protocol gets
    all of it in order, in calls of at most TLS_DELIVER_LIMIT bytes (plus one record
    on the public path)."""
    server, transport, client = _connected(tmp_path)
    payload = bytes(range(256)) * (3 * batching.TLS_DELIVER_LIMIT // 256 + 100)
    for start in range(0, len(payload), 16384):
        client.send(payload[start : start + 16384])
    server.dataReceived(client.bio_read(len(payload) * 2))
    chunks = server.wrappedProtocol.chunks
    assert b"".join(chunks) == payload
    assert len(chunks) == 4
    assert max(len(chunk) for chunk in chunks) <= batching.TLS_DELIVER_LIMIT + 16384


def test_records_split_across_reads_are_delivered_once_complete(tmp_path, readPath):
    """When a record arrives in two reads, nothing is delivered for the first part
    and the whole record's plaintext comes with the second."""
    server, transport, client = _connected(tmp_path)
    client.send(b"x" * 10000)
    wire = client.bio_read(65536)
    server.dataReceived(wire[:5000])
    assert server.wrappedProtocol.chunks == []
    server.dataReceived(wire[5000:])
    assert server.wrappedProtocol.chunks == [b"x" * 10000]


def test_corrupt_record_delivers_earlier_data_then_fails_the_connection(tmp_path, readPath):
    """When a read holds a good record then a corrupted one, the good record's
    plaintext is delivered, then the connection is closed with a TLS error."""
    server, transport, client = _connected(tmp_path)
    client.send(b"good")
    good = client.bio_read(65536)
    client.send(b"bad!" * 100)
    bad = bytearray(client.bio_read(65536))
    bad[-1] ^= 0xFF
    lost = []
    server.wrappedProtocol.connectionLost = lost.append
    server.dataReceived(good + bytes(bad))
    assert server.wrappedProtocol.chunks == [b"good"]
    assert transport.disconnecting
    assert server._reason is not None and server._reason.check(SSL.Error)


def test_close_notify_on_both_paths_delivers_then_closes(tmp_path, readPath):
    """When data and a close_notify arrive in one read, on either receive path, the
    data is delivered and the TLS connection is over."""
    server, transport, client = _connected(tmp_path)
    client.send(b"bye")
    try:
        client.shutdown()
    except SSL.Error:
        pass
    server.dataReceived(client.bio_read(1 << 20))
    assert server.wrappedProtocol.chunks == [b"bye"]
    assert server._lostTLSConnection
