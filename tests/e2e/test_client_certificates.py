"""Mutual TLS through the real daemon, with curl and the tests' own CA: a client
certificate the CA signed gets through and the origin sees its subject in
x-forwarded-client-cert; no certificate (when required) or a self-signed one fails
the handshake; an optional listener serves clients without one; and a forged
x-forwarded-client-cert from a client never reaches the origin."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from tests.config.cacerts import make_ca, make_signed
from tests.config.certs import make_self_signed
from tests.e2e.harness import run, start_proxy, write_config
from tests.e2e.test_observability_metrics import scrape_until

pytestmark = pytest.mark.e2e

CLIENT_SUBJECT = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, 'Example "Billing"'),
                            x509.NameAttribute(NameOID.COMMON_NAME, "billing")])
#: How the origin sees it: RFC 4514 (the quotes escaped by it), then escaped again in the field.
FORWARDED_SUBJECT = 'Subject="CN=billing,O=Example \\\\\\"Billing\\\\\\""'


@pytest.fixture(scope="module")
def pki(workdir: Path) -> dict:
    directory = workdir / "mtls"
    server_ca = make_ca(directory / "server-ca", "Test Server CA")
    client_ca = make_ca(directory / "client-ca", "Test Client CA")
    return {
        "server_ca": server_ca[0],
        "client_ca": client_ca[0],
        "server": make_signed(directory, server_ca, x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]),
                              "server", dns_names=("localhost",)),
        "client": make_signed(directory, client_ca, CLIENT_SUBJECT, "client"),
        "stranger": make_self_signed(directory, ["stranger"]),
    }


@pytest.fixture(scope="module")
def daemon(workdir, origin, pki):
    cert, key = pki["server"]
    listeners = [
        {"name": f"tls-{name}", "address": "127.0.0.1", "port": 0,
         "tls": {"certificates": [{"cert": cert, "key": key}],
                 "client_auth": {"ca_file": pki["client_ca"], "required": required}}}
        for name, required in (("required", True), ("optional", False), ("counted", True))
    ]
    listeners.append({"name": "h2c", "address": "127.0.0.1", "port": 0})
    config = {
        "workers": 1,
        "listeners": listeners,
        "upstreams": {"app": {"servers": [{"address": f"127.0.0.1:{origin.port}"}]}},
        "routes": [{"path": "/", "upstream": "app"}],
        "admin": {"address": "127.0.0.1", "port": 0},
    }
    proxy = start_proxy(write_config(workdir / "mtls", config), ["tls-required", "tls-optional", "tls-counted", "h2c"])
    proxy.admin_port = int(proxy.wait_for(r"admin listener on [^ ]*:(\d+) ").group(1))
    yield proxy
    proxy.stop()


def curl(proxy, pki: dict, listener: str, client: str | None = None, protocol: str = "--http2"):
    """curl /headers on C{listener} (https://localhost, trusting the server CA)."""
    args = ["curl", "-sS", protocol, "--cacert", pki["server_ca"], "-H", "x-forwarded-client-cert: forged",
            f"https://localhost:{proxy.ports[listener]}/headers"]
    if client is not None:
        args[1:1] = ["--cert", pki[client][0], "--key", pki[client][1]]
    return run(args, timeout=30)


def forwarded(result) -> list[str]:
    assert result.returncode == 0, result.stderr
    return [value for name, value in json.loads(result.stdout)["headers"] if name == "x-forwarded-client-cert"]


def refused(result) -> bool:
    """curl failed at the TLS or connection level (35, 55, 56... by curl and OpenSSL
    version) and got no response."""
    return result.returncode != 0 and result.stdout == b""


@pytest.mark.parametrize("protocol", ["--http2", "--http1.1"])
def test_a_client_certificate_signed_by_the_ca_reaches_the_origin(daemon, pki, protocol):
    """When curl presents a certificate the CA signed (over HTTP/2 or HTTP/1.1), the
    origin gets its hash and subject, not the forged field."""
    values = forwarded(curl(daemon, pki, "tls-required", "client", protocol))
    assert len(values) == 1
    assert values[0].startswith("Hash=") and values[0].endswith(FORWARDED_SUBJECT)
    assert len(values[0].split(";")[0]) == len("Hash=") + 64


def test_no_certificate_fails_the_handshake_when_required(daemon, pki):
    """When curl has no certificate and the listener requires one, the handshake fails."""
    assert refused(curl(daemon, pki, "tls-required"))


def test_a_self_signed_certificate_fails_the_handshake(daemon, pki):
    """When curl presents a certificate no trusted CA signed, the handshake fails, even where one is optional."""
    for listener in ("tls-required", "tls-optional"):
        assert refused(curl(daemon, pki, listener, "stranger"))


def test_an_optional_listener_serves_clients_without_a_certificate(daemon, pki):
    """When the listener does not require a certificate, curl without one gets 200 and no forwarded field."""
    assert forwarded(curl(daemon, pki, "tls-optional")) == []
    assert len(forwarded(curl(daemon, pki, "tls-optional", "client"))) == 1


def test_a_forged_field_is_dropped_on_a_cleartext_listener(daemon):
    """When a client on a listener without mutual TLS sends x-forwarded-client-cert, the origin does not get it."""
    result = run(["curl", "-sS", "--http2-prior-knowledge", "-H", "x-forwarded-client-cert: forged",
                  f"http://127.0.0.1:{daemon.ports['h2c']}/headers"], timeout=30)
    assert forwarded(result) == []


def test_refused_client_certificates_are_counted_per_listener(daemon, pki):
    """When handshakes on a listener fail for want of a good client certificate (none, then a self-signed one), its h2proxy_tls_handshake_failures_total{reason="client_certificate"} counts each one and its other failures stay at zero."""
    def failures(samples, reason: str) -> float:
        key = ("h2proxy_tls_handshake_failures_total", (("listener", "tls-counted"), ("reason", reason)))
        return samples.get(key, 0)

    assert refused(curl(daemon, pki, "tls-counted"))
    assert refused(curl(daemon, pki, "tls-counted", "stranger"))
    samples = scrape_until(daemon.admin_port, lambda s: failures(s, "client_certificate") >= 2)
    assert (failures(samples, "client_certificate"), failures(samples, "error")) == (2, 0)
