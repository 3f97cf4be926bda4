"""A route's allow and deny through the real daemon, with curl from 127.0.0.1 over
h2c (prior knowledge) and HTTP/1.1: a route that allows only 10.0.0.0/8 answers
403 without reaching the origin, one that allows 127.0.0.0/8 forwards, and the
refusal is in the access log; a route with a rate limit answers a burst past it
with 429 and Retry-After."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.harness import poll_until, run, start_proxy, write_config

PROTOCOLS = {"h2c": "--http2-prior-knowledge", "http/1.1": "--http1.1"}


def config(origin_port: int, access_log: Path) -> dict:
    return {
        "workers": 1,
        "listeners": [{"name": "h2c", "address": "127.0.0.1", "port": 0}],
        "upstreams": {"app": {"servers": [{"address": f"127.0.0.1:{origin_port}"}]}},
        "routes": [
            {"path": "/", "upstream": "app"},
            {"path": "/private", "upstream": "app", "allow": ["10.0.0.0/8"]},
            {"path": "/local", "upstream": "app", "allow": ["127.0.0.0/8", "::1"]},
            {"path": "/blocked", "upstream": "app", "deny": ["127.0.0.1"]},
            {"path": "/limited", "upstream": "app", "rate_limit": {"rate": "1/m", "burst": 3}},
        ],
        "logging": {"access_log": str(access_log), "format": "json"},
    }


@pytest.fixture(scope="module")
def daemon(workdir, origin):
    access_log = workdir / "access-control.log"
    proxy = start_proxy(write_config(workdir, config(origin.port, access_log)), ["h2c"])
    yield proxy, origin, access_log
    proxy.stop()


def curl(protocol: str, url: str) -> tuple[str, str]:
    """The status and the Proxy-Status field curl got."""
    result = run(["curl", "-sS", "-o", "/dev/null", "-D", "-", "-w", "%{http_code}", PROTOCOLS[protocol], url], timeout=30)
    assert result.returncode == 0, result.stderr
    text = result.stdout.decode()
    fields = [line for line in text.splitlines() if line.lower().startswith("proxy-status:")]
    return text[-3:], fields[0].split(":", 1)[1].strip() if fields else ""


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_client_outside_allow_gets_403_and_the_origin_sees_nothing(daemon, protocol):
    """When curl from 127.0.0.1 asks a route that allows only 10.0.0.0/8 (or denies 127.0.0.1), it gets 403 with Proxy-Status, and the origin gets nothing."""
    proxy, origin, _ = daemon
    before = len(origin.requests())
    for path in ("/private/x", "/blocked"):
        status, proxy_status = curl(protocol, f"http://127.0.0.1:{proxy.ports['h2c']}{path}")
        assert status == "403"
        assert proxy_status.startswith("h2proxy; error=http_request_denied; details=\"request id ")
    assert len(origin.requests()) == before


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_client_inside_allow_is_forwarded(daemon, protocol):
    """When curl from 127.0.0.1 asks a route that allows 127.0.0.0/8, the origin answers 200."""
    proxy, origin, _ = daemon
    before = len(origin.requests())
    assert curl(protocol, f"http://127.0.0.1:{proxy.ports['h2c']}/local/y")[0] == "200"
    assert len(origin.requests()) == before + 1


def test_a_refusal_is_one_access_log_line(daemon):
    """When a client is refused, the access log has one line with 403, the route and the reason."""
    proxy, _, access_log = daemon
    curl("h2c", f"http://127.0.0.1:{proxy.ports['h2c']}/private/logged")

    def line():
        records = [json.loads(text) for text in access_log.read_text().splitlines()] if access_log.exists() else []
        matching = [r for r in records if "/private/logged" in json.dumps(r)]
        return matching or None

    (record,) = poll_until(line, 20.0, "the refused request in the access log")
    assert record["status"] == 403 and "http_request_denied" in json.dumps(record)


def test_a_burst_past_the_rate_limit_gets_429(daemon):
    """When curl sends eight requests on one HTTP/1.1 connection to a route allowing a burst of 3 at 1/m, three reach the origin and five get 429 with Retry-After."""
    proxy, origin, _ = daemon
    before = len(origin.requests())
    url = f"http://127.0.0.1:{proxy.ports['h2c']}/limited"
    result = run(["curl", "-sS", "--http1.1", "-o", "/dev/null", "-D", "-",
                  "-w", "status=%{http_code}\\n", *[url] * 8], timeout=30)
    assert result.returncode == 0, result.stderr
    text = result.stdout.decode()
    statuses = [line.split("=")[1] for line in text.splitlines() if line.startswith("status=")]
    assert statuses == ["200"] * 3 + ["429"] * 5
    waits = [int(line.split(":")[1]) for line in text.splitlines() if line.lower().startswith("retry-after:")]
    assert len(waits) == 5 and all(1 <= wait <= 60 for wait in waits)
    assert len(origin.requests()) == before + 3


def test_a_reload_changes_networks_and_limits(tmp_path, origin):
    """When the config is reloaded with /private opened to 127.0.0.0/8 and /limited given a burst of 1, the next requests get 200 on /private and a 429 after one request on /limited."""
    access_log = tmp_path / "access.log"
    first = config(origin.port, access_log)
    proxy = start_proxy(write_config(tmp_path, first), ["h2c"])
    try:
        base = f"http://127.0.0.1:{proxy.ports['h2c']}"
        assert curl("http/1.1", base + "/private")[0] == "403"
        second = config(origin.port, access_log)
        for route in second["routes"]:
            if route["path"] == "/private":
                route["allow"] = ["127.0.0.0/8"]
            if route["path"] == "/limited":
                route["rate_limit"] = {"rate": "1/m", "burst": 1}
        write_config(tmp_path, second)
        assert proxy.reload().group(1) is not None
        assert curl("http/1.1", base + "/private")[0] == "200"
        assert [curl("http/1.1", base + "/limited")[0] for _ in range(2)] == ["200", "429"]
    finally:
        proxy.stop()
