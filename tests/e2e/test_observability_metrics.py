"""/metrics and /healthz on the real daemon with 2 workers: counters match a known
workload, and keep counting across a reload (scraped and read with prometheus_client's
strict parser)."""

from __future__ import annotations

import subprocess
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import base_config
from tests.e2e.h2client import H2Client
from tests.e2e.harness import poll_until, start_proxy, write_config

ROUTE = (("route", "*/"), ("status_class", "2xx"), ("upstream", "app"))


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def scrape(port: int) -> dict[tuple, float]:
    """Every sample of /metrics as (name, sorted labels) -> value."""
    status, text = fetch(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def scrape_until(port: int, predicate, timeout: float = 20.0) -> dict[tuple, float]:
    """Scrape until C{predicate(samples)} holds (workers report once a second); the last
    scrape is returned either way, so the caller's assertion shows what was seen."""
    last: list[dict[tuple, float]] = []

    def holds():
        last[:] = [scrape(port)]
        return predicate(last[0])

    try:
        poll_until(holds, timeout, "the scraped metrics", interval=0.2)
    except AssertionError:
        pass
    return last[0]


def requests_done(samples) -> float:
    return samples.get(("h2proxy_requests_total", ROUTE), 0)


def workload(proxy, count: int) -> None:
    """C{count} requests of 100 bytes, one after the other: half h2c on one connection,
    half HTTP/2 over TLS on another."""
    for tls, number in ((False, count // 2), (True, count - count // 2)):
        client = H2Client(proxy.ports["tls" if tls else "h2c"], tls=tls)
        try:
            for _ in range(number):
                status, _, body, reset = client.response(client.request("GET", "/bytes/100"))
                assert (status, len(body), reset) == (200, 100, None)
        finally:
            client.close()


def test_counters_follow_a_workload_across_a_reload(tmp_path, origin, certificate):
    """When 2 workers serve 20 requests, the daemon reloads, and they serve 10 more, /metrics
    counts 20 then 30 requests (never fewer in between), the body bytes, the TLS handshakes and
    one successful reload, whose summary is logged; /healthz says ok throughout."""
    config = base_config(origin.port, certificate, workers=2, admin={"address": "127.0.0.1", "port": 0})
    path = write_config(tmp_path, config)
    proxy = start_proxy(path, ["tls", "h2c"])
    try:
        port = int(proxy.wait_for(r"admin listener on [^ ]*:(\d+) ").group(1))
        assert fetch(f"http://127.0.0.1:{port}/healthz") == (200, "ok\n")
        before = scrape(port)
        assert requests_done(before) == 0
        assert before[("h2proxy_workers", (("state", "serving"),))] == 2

        workload(proxy, 20)
        first = scrape_until(port, lambda s: requests_done(s) >= 20)
        assert requests_done(first) == 20
        assert first[("h2proxy_response_body_bytes_total", (("route", "*/"),))] == 2000
        assert first[("h2proxy_tls_handshakes_total", (("listener", "tls"),))] == 1
        assert first[("h2proxy_request_duration_seconds_count", (("route", "*/"),))] == 20
        assert first[("h2proxy_upstream_first_byte_seconds_count", (("upstream", "app"),))] == 20

        mark = proxy.mark()
        assert proxy.reload().group(1) == "2"
        proxy.wait_for(r"reload: no setting changed", start=mark)
        # Both old workers have stopped accepting: the next connections reach the new
        # generation (one an old worker took in its last moment would get GOAWAY).
        first_drain = proxy.wait_for(r"draining: stop accepting", start=mark)
        proxy.wait_for(r"draining: stop accepting", start=proxy.output.lines.index(first_drain.string) + 1)
        during = scrape(port)
        assert requests_done(during) >= 20
        assert fetch(f"http://127.0.0.1:{port}/healthz") == (200, "ok\n")

        workload(proxy, 10)
        last = scrape_until(port, lambda s: requests_done(s) >= 30
                            and s.get(("h2proxy_workers", (("state", "draining"),)), 0) == 0)
        assert requests_done(last) == 30
        assert last[("h2proxy_reloads_total", (("outcome", "ok"),))] == 1
        assert last[("h2proxy_generation", ())] == 2
        assert last[("h2proxy_response_body_bytes_total", (("route", "*/"),))] == 3000
        assert last[("h2proxy_tls_handshakes_total", (("listener", "tls"),))] == 2
        assert last.get(("h2proxy_worker_restarts_total", ()), 0) == 0
    finally:
        proxy.stop()


def test_healthz_says_draining_while_the_daemon_stops(tmp_path, origin, certificate):
    """When the daemon is told to stop while a slow response is in flight, /healthz answers 503 draining."""
    config = base_config(origin.port, certificate, workers=1, admin={"address": "127.0.0.1", "port": 0})
    proxy = start_proxy(write_config(tmp_path, config), ["tls", "h2c"])
    slow = None
    try:
        port = int(proxy.wait_for(r"admin listener on [^ ]*:(\d+) ").group(1))
        slow = subprocess.Popen(["curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null",
                                 proxy.url("h2c", "/drip?chunks=30&interval=0.1")])
        poll_until(lambda: any(r.get("target", "").startswith("/drip") for r in origin.requests()), what="the /drip request at the origin")
        start = proxy.mark()
        proxy.process.terminate()
        proxy.wait_for(r"stopping: draining", start=start)
        assert fetch(f"http://127.0.0.1:{port}/healthz") == (503, "draining\n")
    finally:
        if slow is not None:
            slow.wait(timeout=30)
        proxy.stop()
