"""https:// backends on 127.0.0.1 (a Twisted TLS origin on the test's private reactor):
a valid certificate works and its connection is reused; a wrong name, an expired or
an untrusted self-signed certificate, or a backend that does not speak TLS, each fail
with 502 and an error (logged as such) that says exactly what did not match."""

from __future__ import annotations

import pytest
from twisted.internet import ssl
from twisted.internet.protocol import Protocol
from twisted.logger import globalLogPublisher

from h2proxy.config.upstreams import ClientCertificateConfig, ServerConfig, UpstreamConfig, UpstreamTlsConfig
from h2proxy.errors import BackendCertificateError, BackendTLSError, ConfigError
from h2proxy.message import UpstreamRequest
from h2proxy.upstream.pool import UpstreamPool
from h2proxy.upstream.tlsclient import BackendTLS
from tests.config.certs import make_self_signed, server_options
from tests.upstream.origins import Origin, drive, loopback_reactor

GET = UpstreamRequest(b"GET", b"/", ((b"host", b"localhost"),))


@pytest.fixture
def logged():
    """Every log event's formatted text while the test runs."""
    from twisted.logger import formatEvent

    lines: list[str] = []

    def observer(event):
        lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observer)
    yield lines
    globalLogPublisher.removeObserver(observer)


@pytest.fixture
def certs(tmp_path):
    return {
        "good": make_self_signed(tmp_path, ["localhost", "127.0.0.1"], name="good"),
        "expired": make_self_signed(tmp_path, ["localhost", "127.0.0.1"], days=-1, name="expired"),
        "client": make_self_signed(tmp_path, ["h2proxy-client"], name="client"),
    }


class PlainHTTP(Protocol):
    """A plain HTTP server's answer to bytes it cannot parse (a TLS ClientHello)."""

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        self.transport.loseConnection()


def fetch(server_cert, tls: UpstreamTlsConfig, client_ca: str | None = None, plain: bool = False, count: int = 1):
    """Start a TLS origin (a plain HTTP one with C{plain}) with C{server_cert}; send
    C{count} GETs through an https pool; return (receivers, origin, pool)."""
    with loopback_reactor() as (reactor, pools, origins):
        origin = Origin(reactor)
        if plain:
            origin.protocol = PlainHTTP
        origin.listen(tls=None if plain else server_options(*server_cert, client_ca))
        origins.append(origin)
        config = UpstreamConfig(
            name="secure",
            servers=(ServerConfig(host="127.0.0.1", port=origin.portNumber, scheme="https"),),
            tls=tls,
            retries=0,
        )
        pool = UpstreamPool(reactor=reactor, config=config, connectTimeout=5, responseTimeout=5)
        pools.append(pool)
        receivers = drive(reactor, pool, [GET] * count, concurrency=1)
        return receivers, origin, pool


def test_a_valid_certificate_for_the_server_name_works_and_the_connection_is_reused(certs):
    """When the certificate carries tls.server_name and chains to ca_file, requests succeed over one connection."""
    tls = UpstreamTlsConfig(ca_file=certs["good"][0], server_name="localhost")
    receivers, origin, pool = fetch(certs["good"], tls, count=3)
    assert all(r.outcome == ("end", ()) and r.body == b"ok" for r in receivers)
    assert origin.accepted == 1 and pool.connectionsOpened == 1


def test_an_ip_address_is_checked_against_the_certificate_ip_names(certs):
    """When no server_name is set, the server's IP literal is verified against the certificate's IP names."""
    receivers, origin, pool = fetch(certs["good"], UpstreamTlsConfig(ca_file=certs["good"][0]))
    assert receivers[0].outcome == ("end", ())


def test_a_wrong_name_is_a_502_naming_both_names(certs, logged, logged_errors):
    """When the certificate does not carry the expected name, the request fails with 502 and the
    log names the expected name and the certificate's names."""
    tls = UpstreamTlsConfig(ca_file=certs["good"][0], server_name="wrong.example")
    [receiver], origin, pool = fetch(certs["good"], tls)
    error = receiver.error
    assert isinstance(error, BackendCertificateError) and error.status == 502
    assert "not valid for the name 'wrong.example'" in str(error)
    assert "it names DNS:localhost, IP:127.0.0.1" in str(error)
    assert any("wrong.example" in line and "DNS:localhost" in line for line in logged)
    assert origin.requests == 0
    assert logged_errors.take(r"certificate is not valid for the name 'wrong\.example'")


def test_an_expired_certificate_is_a_502_with_its_dates(certs, logged, logged_errors):
    """When the certificate has expired, the request fails with 502 and the log says so with the validity dates."""
    tls = UpstreamTlsConfig(ca_file=certs["expired"][0], server_name="localhost")
    [receiver], origin, pool = fetch(certs["expired"], tls)
    message = str(receiver.error)
    assert isinstance(receiver.error, BackendCertificateError)
    assert "certificate has expired" in message and "valid from" in message and "CN=localhost" in message
    assert any("certificate has expired" in line for line in logged)
    assert logged_errors.take(r"certificate rejected: certificate has expired")


def test_a_self_signed_certificate_without_its_ca_configured_is_a_502(certs, logged_errors):
    """When ca_file is not set, a self-signed certificate is rejected against the system's trust store, and the message says so."""
    [receiver], origin, pool = fetch(certs["good"], UpstreamTlsConfig(server_name="localhost"))
    message = str(receiver.error)
    assert isinstance(receiver.error, BackendCertificateError)
    assert "self-signed certificate" in message and "system's trust store" in message
    assert logged_errors.take(r"certificate rejected: self-signed certificate")


def test_a_backend_that_does_not_speak_tls_is_a_502_tls_error(certs, logged_errors):
    """When an https:// server answers in plain HTTP, the handshake fails with a TLS protocol error."""
    [receiver], origin, pool = fetch(certs["good"], UpstreamTlsConfig(server_name="localhost"), plain=True)
    assert type(receiver.error) is BackendTLSError and "TLS handshake failed" in str(receiver.error)
    assert logged_errors.take(r"TLS handshake failed: wrong version number")


def test_verify_false_accepts_any_certificate(certs):
    """When tls.verify is false, an untrusted certificate with another name is accepted."""
    receivers, origin, pool = fetch(certs["good"], UpstreamTlsConfig(verify=False, server_name="other.example"))
    assert receivers[0].outcome == ("end", ())


def test_a_client_certificate_is_presented_to_a_backend_that_requires_one(certs):
    """When the backend requires a client certificate, the configured one is presented and the request succeeds."""
    client = ClientCertificateConfig(cert=certs["client"][0], key=certs["client"][1])
    tls = UpstreamTlsConfig(ca_file=certs["good"][0], server_name="localhost", client_certificate=client)
    receivers, origin, pool = fetch(certs["good"], tls, client_ca=certs["client"][0])
    assert receivers[0].outcome == ("end", ())


def test_without_the_client_certificate_such_a_backend_fails_the_request(certs):
    """When the backend requires a client certificate and none is configured, the request fails with 502."""
    tls = UpstreamTlsConfig(ca_file=certs["good"][0], server_name="localhost")
    [receiver], origin, pool = fetch(certs["good"], tls, client_ca=certs["client"][0])
    assert receiver.error is not None and receiver.error.status == 502


def test_an_unreadable_ca_file_is_a_config_error(tmp_path):
    """When ca_file is not a PEM bundle, building the TLS settings raises a ConfigError naming the option."""
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate")
    with pytest.raises(ConfigError, match="upstreams.secure.tls.ca_file: cannot read a PEM CA bundle"):
        BackendTLS(UpstreamTlsConfig(ca_file=str(bogus)), "secure")


def test_a_client_key_that_does_not_match_its_certificate_is_a_config_error(tmp_path):
    """When the client certificate's key belongs to another certificate, building the TLS
    settings raises a ConfigError naming the option, not a failure at the first handshake."""
    cert, _ = make_self_signed(tmp_path, name="client")
    _, other_key = make_self_signed(tmp_path, name="other")
    pair = ClientCertificateConfig(cert=cert, key=other_key)
    with pytest.raises(ConfigError, match="upstreams.secure.tls.client_certificate: the key does not "
                                          "match the certificate"):
        BackendTLS(UpstreamTlsConfig(client_certificate=pair), "secure")
