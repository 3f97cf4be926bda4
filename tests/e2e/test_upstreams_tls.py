"""https:// backends through the real daemon: a real origin serving HTTPS
(h2proxy_tools.origin --tls-cert/--tls-key) behind four upstreams that differ only
in how they verify it. The valid one answers 200; a wrong name, an expired certificate
and a self-signed one without its CA configured each answer 502, and the daemon's log
says exactly what did not match."""

from __future__ import annotations

import pytest

from tests.config.certs import make_self_signed
from tests.e2e.conftest import base_config
from tests.e2e.h2client import H2Client
from tests.e2e.harness import start_proxy, write_config
from tests.e2e.test_upstreams_pooling import get_all, start_named_origin


@pytest.fixture(scope="module")
def tls_setup(workdir, certificate):
    certs = workdir / "backend-certs"
    good = make_self_signed(certs, ["localhost", "127.0.0.1"], name="good")
    expired = make_self_signed(certs, ["localhost", "127.0.0.1"], days=-1, name="expired")
    secure = start_named_origin(workdir, "secure", tls=good)
    stale = start_named_origin(workdir, "stale", tls=expired)

    def upstream(origin, **tls):
        return {"servers": [{"address": f"https://127.0.0.1:{origin.port}"}], "retries": 0,
                "passive_health": {"failures": 0}, "tls": tls}

    upstreams = {
        "good": upstream(secure, ca_file=good[0], server_name="localhost"),
        "wrongname": upstream(secure, ca_file=good[0], server_name="wrong.example"),
        "untrusted": upstream(secure, server_name="localhost"),
        "expired": upstream(stale, ca_file=expired[0], server_name="localhost"),
    }
    routes = [{"host": "*", "path": f"/{name}", "upstream": name} for name in upstreams]
    config = base_config(secure.port, certificate, upstreams=upstreams, routes=routes)
    daemon = start_proxy(write_config(workdir, config), ["tls", "h2c"])
    client = H2Client(daemon.ports["h2c"])
    yield daemon, client, secure
    client.close()
    daemon.stop()
    secure.stop()
    stale.stop()


def test_a_valid_certificate_works(tls_setup):
    """When the backend's certificate is valid for tls.server_name and issued by ca_file, the client gets 200."""
    daemon, client, secure = tls_setup
    [(status, _)] = get_all(client, ["/good"])
    assert status == 200 and [r["target"] for r in secure.requests()][-1:] == ["/good"]


@pytest.mark.parametrize(
    "path, logged",
    [
        ("/wrongname", r"upstream wrongname server .*certificate is not valid for the name 'wrong\.example': "
                       r"it names DNS:localhost, IP:127\.0\.0\.1"),
        ("/untrusted", r"upstream untrusted server .*certificate rejected: self-signed certificate .*"
                       r"checked against the system's trust store"),
        ("/expired", r"upstream expired server .*certificate rejected: certificate has expired .*"
                     r"valid from .* to "),
    ],
)
def test_a_failed_verification_is_a_502_with_a_precise_log_line(tls_setup, path, logged):
    """When verification fails, the client gets 502 (tls_certificate_error) and the log says what did not match."""
    daemon, client, secure = tls_setup
    daemon.expect_log(logged)
    mark = daemon.mark()
    [(status, headers)] = get_all(client, [path])
    assert status == 502 and b"tls_certificate_error" in headers.get(b"proxy-status", b"")
    daemon.wait_for(logged, timeout=5, start=mark)
