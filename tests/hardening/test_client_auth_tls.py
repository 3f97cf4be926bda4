"""Mutual TLS on a listener: which client certificates a handshake accepts."""

from __future__ import annotations

import dataclasses

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from OpenSSL import SSL

from h2proxy.config.model import CertificateConfig, TlsConfig
from h2proxy.config.tlsclientauth import ClientAuthConfig
from h2proxy.tls.server import ServerTLS
from tests.config.cacerts import make_ca, make_signed
from tests.config.certs import make_self_signed
from tests.hardening.test_tls_policy import handshake, pump, reused

CLIENT = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "billing")])


@pytest.fixture
def files(tmp_path):
    ca = make_ca(tmp_path / "ca")
    return {
        "ca": ca[0],
        "server": make_self_signed(tmp_path / "server", ["example.org"]),
        "other": make_self_signed(tmp_path / "server", ["other.example"]),
        "client": make_signed(tmp_path / "clients", ca, CLIENT, "billing"),
        "stranger": make_self_signed(tmp_path / "clients", ["stranger"]),
    }


def serverTLS(files, required: bool = True) -> ServerTLS:
    certificates = tuple(CertificateConfig(cert=c, key=k) for c, k in (files["server"], files["other"]))
    return ServerTLS(TlsConfig(certificates=certificates, client_auth=ClientAuthConfig(files["ca"], required)))


def clientContext(pair: tuple[str, str] | None = None) -> SSL.Context:
    context = SSL.Context(SSL.TLS_METHOD)
    if pair is not None:
        context.use_certificate_chain_file(pair[0])
        context.use_privatekey_file(pair[1])
    return context


def subject_of(server: SSL.Connection) -> str:
    return server.get_peer_certificate(as_cryptography=True).subject.rfc4514_string()


def test_a_certificate_signed_by_the_ca_is_accepted(files):
    """When the client presents a certificate the CA signed, the server sees its subject."""
    server, _ = handshake(serverTLS(files), clientContext(files["client"]))
    assert subject_of(server) == "CN=billing,O=Example"


def test_no_certificate_fails_the_handshake_when_required(files):
    """When a certificate is required and the client has none, the handshake fails."""
    with pytest.raises(SSL.Error):
        handshake(serverTLS(files), clientContext())


def test_no_certificate_is_accepted_when_not_required(files):
    """When required is false, a client without a certificate connects, anonymous."""
    server, _ = handshake(serverTLS(files, required=False), clientContext())
    assert server.get_peer_certificate() is None


@pytest.mark.parametrize("required", [True, False])
def test_a_certificate_of_another_issuer_fails_the_handshake(files, required):
    """When the certificate is not signed by the CA (self-signed), the handshake fails,
    even when certificates are optional: a bad one is not the same as none."""
    with pytest.raises(SSL.Error):
        handshake(serverTLS(files, required), clientContext(files["stranger"]))


def test_the_ca_is_sent_as_the_acceptable_issuer(files):
    """When the server asks for a certificate, it names the CA, so a client can pick one."""
    _, client = handshake(serverTLS(files), clientContext(files["client"]))
    names = [name.CN for name in client.get_client_ca_list()]
    assert names == ["Test Client CA"]


def test_every_sni_context_verifies_clients(files):
    """When SNI selects the second certificate, a client without one is still refused."""
    server = SSL.Connection(serverTLS(files).currentContext(), None)
    server.set_accept_state()
    client = SSL.Connection(clientContext(), None)
    client.set_connect_state()
    client.set_tlsext_host_name(b"other.example")
    with pytest.raises(SSL.Error):
        for _ in range(10):
            for connection in (client, server):
                try:
                    connection.do_handshake()
                except SSL.WantReadError:
                    pass
            pump(client, server)
    assert server.get_context() is not serverTLS(files).currentContext()
    assert server.get_context().get_verify_mode() == SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT


def test_a_session_resumes_with_its_client_certificate(files):
    """When a client resumes with a ticket, the session keeps the verified certificate."""
    tls = serverTLS(files)
    context = clientContext(files["client"])
    _, first = handshake(tls, context)
    server, second = handshake(tls, context, first.get_session())
    assert reused(second) and subject_of(server) == "CN=billing,O=Example"
