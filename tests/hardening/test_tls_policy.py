"""The TLS policy of listeners (h2proxy.tls.server), with handshakes in memory: versions,
compression and renegotiation off, session tickets on (or off) with keys rotated."""

from __future__ import annotations

import dataclasses

import pytest
from OpenSSL import SSL
from twisted.internet.task import Clock

from h2proxy.config.model import CertificateConfig, TlsConfig
from h2proxy.tls.server import ServerTLS
from tests.config.certs import make_self_signed


@pytest.fixture
def tlsConfig(tmp_path) -> TlsConfig:
    cert, key = make_self_signed(tmp_path, ["example.org"])
    return TlsConfig(certificates=(CertificateConfig(cert=cert, key=key),))


def clientContext(maxVersion: int | None = None) -> SSL.Context:
    context = SSL.Context(SSL.TLS_METHOD)
    if maxVersion is not None:
        context.set_max_proto_version(maxVersion)
        context.set_min_proto_version(SSL.TLS1_VERSION)
        context.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
    context.set_alpn_protos([b"h2"])
    return context


def reused(connection: SSL.Connection) -> bool:
    """Whether the handshake resumed a session (pyOpenSSL has no public call for it)."""
    from OpenSSL._util import lib

    return bool(lib.SSL_session_reused(connection._ssl))


def pump(a: SSL.Connection, b: SSL.Connection) -> None:
    moved = True
    while moved:
        moved = False
        for source, sink in ((a, b), (b, a)):
            try:
                data = source.bio_read(65536)
            except SSL.WantReadError:
                continue
            if data:
                sink.bio_write(data)
                moved = True


def handshake(tls: ServerTLS, client: SSL.Context, session: SSL.Session | None = None) -> tuple[SSL.Connection, SSL.Connection]:
    """A full exchange in memory, tickets included; raises SSL.Error on failure."""
    server = SSL.Connection(tls.currentContext(), None)
    server.set_accept_state()
    peer = SSL.Connection(client, None)
    peer.set_connect_state()
    peer.set_tlsext_host_name(b"example.org")
    if session is not None:
        peer.set_session(session)
    for _ in range(10):
        for connection in (peer, server):
            try:
                connection.do_handshake()
            except SSL.WantReadError:
                pass
        pump(peer, server)
    server.send(b"x")
    pump(peer, server)
    assert peer.recv(1) == b"x"  # also reads the tickets sent after a TLS 1.3 handshake
    return server, peer


def test_tls13_is_negotiated_with_a_modern_client(tlsConfig):
    """When the client speaks TLS 1.3, TLS 1.3 is used, with h2 by ALPN."""
    server, _ = handshake(ServerTLS(tlsConfig), clientContext())
    assert server.get_protocol_version_name() == "TLSv1.3"
    assert server.get_alpn_proto_negotiated() == b"h2"


def test_tls12_is_the_oldest_accepted_by_default(tlsConfig):
    """When a client offers TLS 1.1 at most, the handshake fails; TLS 1.2 works."""
    with pytest.raises(SSL.Error):
        handshake(ServerTLS(tlsConfig), clientContext(SSL.TLS1_1_VERSION))
    server, _ = handshake(ServerTLS(tlsConfig), clientContext(SSL.TLS1_2_VERSION))
    assert server.get_protocol_version_name() == "TLSv1.2"
    assert server.get_cipher_name().startswith("ECDHE-")


def test_min_version_13_refuses_tls12(tlsConfig):
    """When tls.min_version is 1.3, a TLS 1.2 client is refused."""
    config = dataclasses.replace(tlsConfig, min_version="1.3")
    with pytest.raises(SSL.Error):
        handshake(ServerTLS(config), clientContext(SSL.TLS1_2_VERSION))


def test_compression_and_renegotiation_are_off(tlsConfig):
    """When contexts are built, TLS compression and renegotiation are disabled."""
    context = ServerTLS(tlsConfig).currentContext()
    options = context.set_options(0)  # returns the options in force
    assert options & SSL.OP_NO_COMPRESSION and options & SSL.OP_NO_RENEGOTIATION
    assert context.get_session_cache_mode() == SSL.SESS_CACHE_OFF


@pytest.mark.parametrize("version", [SSL.TLS1_2_VERSION, None])
def test_a_session_ticket_resumes_the_session(tlsConfig, version):
    """When a client returns with the ticket it was given, the handshake resumes without a full exchange (TLS 1.2 and 1.3)."""
    tls = ServerTLS(tlsConfig)
    client = clientContext(version)
    _, first = handshake(tls, client)
    server, second = handshake(tls, client, first.get_session())
    assert reused(second) and reused(server)


def test_without_tickets_nothing_resumes(tlsConfig):
    """When tls.session_tickets is false, a returning client does a full handshake."""
    tls = ServerTLS(dataclasses.replace(tlsConfig, session_tickets=False))
    client = clientContext(SSL.TLS1_2_VERSION)
    _, first = handshake(tls, client)
    _, second = handshake(tls, client, first.get_session())
    assert not reused(second)


def test_the_ticket_key_is_rotated(tlsConfig):
    """When ticket_key_rotation has passed, new contexts (with a new ticket key) serve new connections, and tickets of the old key no longer resume."""
    clock = Clock()
    tls = ServerTLS(dataclasses.replace(tlsConfig, ticket_key_rotation=3600.0), clock=clock)
    client = clientContext(SSL.TLS1_2_VERSION)
    _, first = handshake(tls, client)
    clock.advance(3599)
    _, again = handshake(tls, client, first.get_session())
    assert reused(again) and tls.generation == 1
    clock.advance(1)
    _, late = handshake(tls, client, first.get_session())
    assert not reused(late) and tls.generation == 2


def test_contexts_are_rebuilt_from_memory(tlsConfig, tmp_path):
    """When the certificate files are gone (a worker that dropped privileges cannot read them), rotation still works."""
    import os

    clock = Clock()
    tls = ServerTLS(dataclasses.replace(tlsConfig, ticket_key_rotation=60.0), clock=clock)
    os.remove(tlsConfig.certificates[0].key)
    clock.advance(60)
    handshake(tls, clientContext())
    assert tls.generation == 2


def test_contexts_release_idle_record_buffers(tlsConfig):
    """When a listener's context is built (and rebuilt), it sets SSL_MODE_RELEASE_BUFFERS,
    so an idle connection holds no OpenSSL read or write record buffer. C{set_mode(0)}
    adds nothing and returns the context's mode."""
    clock = Clock()
    tls = ServerTLS(tlsConfig, clock)
    assert tls.default.set_mode(0) & SSL.MODE_RELEASE_BUFFERS
    clock.advance(tlsConfig.ticket_key_rotation)
    assert tls.currentContext().set_mode(0) & SSL.MODE_RELEASE_BUFFERS


def test_one_send_writes_every_record_of_a_large_write(tlsConfig):
    """A listener's connection takes a large write in one C{send} (partial writes
    off: pyOpenSSL turns them on, and each call would then stop after one 16 KiB
    record), and the client reads back exactly those bytes."""
    server, peer = handshake(ServerTLS(tlsConfig), clientContext())
    payload = bytes(range(256)) * 1024  # 16 records
    assert server.send(payload) == len(payload)
    pump(server, peer)
    received = b""
    while len(received) < len(payload):
        received += peer.recv(65536)
    assert received == payload
