"""x-forwarded-client-cert: made only from the client's verified certificate, never
taken from the client; and the certificate's subject in the access log."""

from __future__ import annotations

import hashlib

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from OpenSSL import crypto
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.testing import StringTransport
from zope.interface import implementer

from h2proxy.bridge.headers import client_cert_field, to_upstream
from h2proxy.frontend.clientcert import ClientCertificate, client_certificate
from h2proxy.observability.accesslog import RequestRecord, format_combined, format_json
from tests.bridge.test_bridge import request, setup
from tests.bridge.test_headers import FULL, facts, head
from tests.config.cacerts import make_ca, make_signed

HASH = "ab" * 32
FORGED = (b"x-forwarded-client-cert", b"Hash=forged")


def test_the_field_is_envoys_hash_and_subject():
    """When a certificate is forwarded, the value is Hash=<hex>;Subject="<RFC 4514>"."""
    assert client_cert_field(HASH, "CN=billing,O=Example") == f'Hash={HASH};Subject="CN=billing,O=Example"'.encode()


def test_quotes_backslashes_and_controls_in_the_subject_are_escaped():
    """When the subject holds a quote, a backslash or a control character, none can end
    the quoted string or the field."""
    value = client_cert_field(HASH, 'CN=a\\"b\\,c\r\nX: y')
    assert value == f'Hash={HASH};Subject="CN=a\\\\\\"b\\\\,c\\x0D\\x0AX: y"'.encode()


def test_a_clients_field_is_dropped_without_a_certificate():
    """When a client on a listener without mutual TLS sends the field, the backend does not get it."""
    upstream = to_upstream(head(headers=(FORGED, (b"accept", b"*/*"))), target=b"/", facts=facts(),
                           policy=FULL, body_length=0)
    assert [name for name, _ in upstream.headers if name == b"x-forwarded-client-cert"] == []


def test_a_trusted_proxys_field_is_dropped_too():
    """When even a trusted proxy sends the field, it is dropped: only this proxy's TLS vouches for a certificate."""
    upstream = to_upstream(head(headers=(FORGED,)), target=b"/", facts=facts("10.0.0.1"), policy=FULL, body_length=0)
    assert not any(name == b"x-forwarded-client-cert" for name, _ in upstream.headers)


def test_the_verified_certificate_replaces_a_forged_field():
    """When the client has a verified certificate and also sends the field, only the proxy's value goes."""
    value = client_cert_field(HASH, "CN=billing")
    upstream = to_upstream(head(headers=(FORGED,)), target=b"/", facts=facts(clientCert=value),
                           policy=FULL, body_length=0)
    assert [v for name, v in upstream.headers if name == b"x-forwarded-client-cert"] == [value]


def test_the_bridge_forwards_the_streams_certificate_and_logs_its_subject():
    """When the stream's connection has a client certificate, the backend request carries
    it and the access log record names its subject."""
    context, bridge, stream, pool = setup()
    stream.certificate = ClientCertificate(sha256=HASH, subject="CN=billing,O=Example")
    bridge.requestReceived(request(headers=(FORGED,)))
    fields = [v for name, v in pool.exchanges[0].request.headers if name == b"x-forwarded-client-cert"]
    assert fields == [client_cert_field(HASH, "CN=billing,O=Example")]
    assert bridge.record.clientCert == "CN=billing,O=Example"


def test_the_access_log_shows_the_subject_or_a_dash():
    """When a record has a client certificate, both formats show its subject; otherwise - and null."""
    record = RequestRecord(start=0.0, client="192.0.2.7", protocol="h2", method="GET", authority="a",
                           path="/", streamID=1, clientCert="CN=billing,O=Example")
    assert format_combined(record).endswith(" client_cert=CN=billing,O=Example error=-")
    assert '"client_cert":"CN=billing,O=Example"' in format_json(record)
    record.clientCert = ""
    assert format_combined(record).endswith(" client_cert=- error=-")
    assert '"client_cert":null' in format_json(record)


@implementer(ISSLTransport)
class TLSTransport(StringTransport):
    """A TLS transport as the front end sees one after the handshake."""

    def __init__(self, peer: crypto.X509 | None) -> None:
        super().__init__()
        self.peer = peer

    def getPeerCertificate(self):
        return self.peer


def test_the_connections_certificate_is_read_from_a_tls_transport(tmp_path):
    """When the TLS transport has a peer certificate, its DER hash and RFC 4514 subject are the facts."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "billing")])
    cert_path, _ = make_signed(tmp_path, make_ca(tmp_path), subject, "billing")
    with open(cert_path, "rb") as handle:
        leaf = x509.load_pem_x509_certificate(handle.read())
    found = client_certificate(TLSTransport(crypto.X509.from_cryptography(leaf)))
    assert found == ClientCertificate(hashlib.sha256(leaf.public_bytes(Encoding.DER)).hexdigest(), "CN=billing")


def test_no_certificate_on_cleartext_or_without_one():
    """When the transport is cleartext, or TLS without a client certificate, there is none."""
    assert client_certificate(StringTransport()) is None
    assert client_certificate(TLSTransport(None)) is None
