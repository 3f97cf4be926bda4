"""Handshakes refused over the client's certificate (mutual TLS) are counted apart
from other TLS failures, in memory: no certificate where one is required, and a
certificate no configured CA signed; a client refusing the server's certificate
stays an ordinary failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from twisted.internet import ssl
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.test.iosim import connectedServerAndClient

from h2proxy.worker.observe import refused_client_certificate
from tests.config.cacerts import make_ca, make_signed
from tests.config.certs import make_self_signed, server_options
from tests.observability.test_observe import observability


def client_options(cert: tuple[str, str] | None) -> ssl.CertificateOptions:
    """A client that trusts any server and presents C{cert} (PEM paths), if given."""
    if cert is None:
        return ssl.CertificateOptions(verify=False)
    certificate = x509.load_pem_x509_certificate(Path(cert[0]).read_bytes())
    key = serialization.load_pem_private_key(Path(cert[1]).read_bytes(), password=None)
    return ssl.CertificateOptions(privateKey=key, certificate=certificate, verify=False)


@pytest.fixture
def ca(tmp_path: Path) -> tuple[str, str]:
    return make_ca(tmp_path / "ca")


def handshake(tmp_path: Path, ca: tuple[str, str], client_cert: tuple[str, str] | None) -> tuple[int, int, int, int]:
    """A client (with C{client_cert}, if any) against a listener requiring a
    certificate signed by C{ca}; the listener's counts afterwards."""
    server_cert = make_self_signed(tmp_path / "server", ["localhost"])
    obs = observability()
    server = obs.tlsFactory("public", server_options(*server_cert, client_ca=ca[0]), Factory.forProtocol(Protocol))
    client = TLSMemoryBIOFactory(client_options(client_cert), True, Factory.forProtocol(Protocol))
    _, _, pump = connectedServerAndClient(lambda: server.buildProtocol(None), lambda: client.buildProtocol(None))
    for _ in range(10):
        pump.flush()
    counts = obs.tls["public"]
    return counts.completed, counts.failed, counts.clientCertificate, counts.abandoned


def test_no_certificate_where_one_is_required_is_counted_as_a_client_certificate_refusal(tmp_path, ca):
    """When a client sends no certificate to a listener that requires one, the handshake counts as refused over the client certificate, not as another failure."""
    assert handshake(tmp_path, ca, None) == (0, 0, 1, 0)


def test_a_certificate_no_ca_signed_is_counted_as_a_client_certificate_refusal(tmp_path, ca):
    """When a client presents a self-signed certificate, the handshake counts as refused over the client certificate."""
    assert handshake(tmp_path, ca, make_self_signed(tmp_path / "stranger", ["stranger"])) == (0, 0, 1, 0)


def test_a_certificate_the_ca_signed_completes(tmp_path, ca):
    """When a client presents a certificate the CA signed, the handshake completes and nothing is refused."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "billing")])
    assert handshake(tmp_path, ca, make_signed(tmp_path / "client", ca, subject, "client")) == (1, 0, 0, 0)


def test_other_ssl_errors_are_not_client_certificate_refusals():
    """When OpenSSL reports another reason (a client's alert about the server's certificate, no shared cipher), it is not a client certificate refusal."""
    for reason in ("sslv3 alert bad certificate", "tlsv1 alert unknown ca", "no shared cipher"):
        assert not refused_client_certificate(Failure(SSL.Error([("SSL routines", "", reason)])))
    assert refused_client_certificate(Failure(SSL.Error([("SSL routines", "", "certificate verify failed")])))
    assert not refused_client_certificate(Failure(ConnectionError("gone")))
