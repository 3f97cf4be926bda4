"""Rapid reset at scale (CVE-2023-44487, acceptance 2): 100,000 HEADERS+RST_STREAM
pairs on one TLS connection, with the reset and glitch budgets switched off so that
the whole flood is processed. The backend must see fewer than 1% of the reset
requests (a request reaches a handler only if its stream is still open at the end of
the read that completed it), and another client must be served throughout."""

from __future__ import annotations

import threading
import time

import pytest

from h2proxy_tools import audit
from h2proxy_tools.audit import Target, connect
from tests.hardening.daemon import Attacked, start_attacked

PAIRS = 100_000
PATH = "/attack/rapid-reset-100k"

#: The longest a request of the other client may take while the flood is processed.
MAX_LATENCY = 2.0


@pytest.fixture(scope="module")
def daemon(workdir, origin, certificate):
    attacked = start_attacked(
        workdir / "rapid-reset", origin, certificate, http2={"reset_budget": 0, "glitch_budget": 0}
    )
    yield attacked
    attacked.proxy.stop()


class Bystander(threading.Thread):
    """Another client: one request after the other on its own connection, timed."""

    def __init__(self, target: Target) -> None:
        super().__init__(daemon=True)
        self.target = target
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        connection = connect(self.target)
        try:
            while not self.stopping.is_set():
                started = time.monotonic()
                streamID = connection.request("/bystander")
                connection.waitFor(lambda: connection.finished(streamID), 10.0)
                if connection.statuses.get(streamID) != 200 or streamID not in connection.ended:
                    self.failures.append(f"stream {streamID}: {connection.statuses.get(streamID)}")
                    return
                self.latencies.append(time.monotonic() - started)
        finally:
            connection.close()


def test_a_hundred_thousand_resets_reach_the_backend_less_than_one_percent(daemon: Attacked):
    """When one connection sends 100,000 HEADERS+RST_STREAM pairs, the backend sees fewer than 1,000 of them, and another client is served throughout, each request within MAX_LATENCY."""
    mark = daemon.mark()
    bystander = Bystander(daemon.target("tls"))
    bystander.start()
    started = time.monotonic()
    outcome = audit.rapidReset(daemon.target("tls", path=PATH), pairs=PAIRS)
    flood = time.monotonic() - started
    during = len(bystander.latencies)
    bystander.stopping.set()
    bystander.join(15)
    assert outcome.sent == PAIRS and outcome.goaway is None and not outcome.closed, outcome
    leaked = daemon.requestsSince(mark).count(PATH)
    assert leaked < PAIRS // 100, f"{leaked} reset requests reached the backend"
    assert bystander.failures == [] and during > 0, (bystander.failures, during, flood)
    assert max(bystander.latencies) < MAX_LATENCY, max(bystander.latencies)
    daemon.assertSurvived(mark, {PATH, "/bystander"})
