"""h2proxy-audit run by an operator against the real daemon: every attack passes, the
table names the option of each, and the exit status says so."""

from __future__ import annotations

import sys

import pytest

from h2proxy_tools.audit import ATTACKS
from tests.e2e.harness import run
from tests.hardening.daemon import LARGE, Attacked, start_attacked

MAX_CONNECTIONS = 30


@pytest.fixture(scope="module")
def daemon(workdir, origin, certificate):
    attacked = start_attacked(
        workdir / "audit",
        origin,
        certificate,
        timeouts={"handshake": "1s", "request_header": "2s", "request_body": "2s", "send": "3s"},
        limits={"max_connections": MAX_CONNECTIONS},
    )
    yield attacked
    attacked.proxy.stop()


def test_the_audit_passes_every_attack_and_says_so(daemon: Attacked):
    """When the audit runs all its attacks (and a connection flood past limits.max_connections) against the daemon, every row says PASS with its option, and it exits 0."""
    result = run(
        [sys.executable, "-m", "h2proxy_tools.audit", daemon.proxy.url("tls"), "--large-path", LARGE, "--hold", "10",
         "--connections", str(MAX_CONNECTIONS + 10)],
        timeout=240,
    )
    output = result.stdout.decode()
    rows = {line.split()[0]: line for line in output.splitlines()[2:-1]}
    assert set(rows) == {attack.name for attack in ATTACKS} | {"connection-flood"}, output
    failed = [row for row in rows.values() if row.split()[1] != "PASS"]
    assert failed == [], output
    assert "http2.reset_budget" in rows["rapid-reset"] and "timeouts.send" in rows["window-no-read"]
    assert result.returncode == 0, output + result.stderr.decode()
