"""A route's rate limit under a burst, through the real daemon: h2load sends 200 requests
as fast as one h2c connection with 10 streams allows; the bucket (burst 10, 5 per second)
lets through the burst and what refilled while the run lasted, refuses the rest with 429,
and /metrics counts every refusal under the route in h2proxy_requests_refused_total."""

from __future__ import annotations

import re
import time

from tests.e2e.conftest import base_config
from tests.e2e.harness import run, start_proxy, write_config
from tests.e2e.test_observability_metrics import scrape_until

REQUESTS = 200
RATE, BURST = 5, 10
ROUTE = "*/limited"
STATUS_CODES = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")


def refused(samples: dict[tuple, float]) -> float:
    return samples.get(("h2proxy_requests_refused_total", (("reason", "rate_limited"), ("route", ROUTE))), 0)


def test_a_burst_past_the_limit_is_refused_and_every_refusal_counted(tmp_path, origin, certificate):
    """When h2load sends 200 requests at once to a route limited to 5/s with a burst of 10,
    at least the burst and at most what refilled during the run are answered 2xx, all the
    others 4xx, and the refused counter equals the 4xx count."""
    config = base_config(origin.port, certificate, workers=1, admin={"address": "127.0.0.1", "port": 0})
    config["routes"] = [
        {"host": "*", "path": "/limited", "upstream": "app", "rate_limit": {"rate": f"{RATE}/s", "burst": BURST}},
        *config["routes"],
    ]
    proxy = start_proxy(write_config(tmp_path, config), ["tls", "h2c"])
    try:
        admin = int(proxy.wait_for(r"admin listener on [^ ]*:(\d+) ").group(1))
        started = time.monotonic()
        result = run(["h2load", "-n", str(REQUESTS), "-c", "1", "-m", "10", proxy.url("h2c", "/limited/x")],
                     timeout=120)
        elapsed = time.monotonic() - started
        output = result.stdout.decode()
        assert result.returncode == 0, output + result.stderr.decode()
        ok, redirected, client_errors, server_errors = map(int, STATUS_CODES.search(output).groups())
        # Token arithmetic only: the full bucket, plus what refilled while the run lasted.
        assert BURST <= ok <= BURST + elapsed * RATE + 1, (ok, elapsed)
        assert (redirected, server_errors) == (0, 0)
        assert client_errors == REQUESTS - ok
        samples = scrape_until(admin, lambda s: refused(s) == client_errors)
        assert refused(samples) == client_errors
    finally:
        proxy.stop()
