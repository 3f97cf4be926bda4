"""Redirects through the real daemon, with curl over h2c (prior knowledge) and
HTTP/1.1: a listener that sends everything to HTTPS (308, the host without its
port, path and query as sent), a route redirect (301), both in the access log and
neither reaching the origin; a SIGHUP reload that changes them; and ``--check`` on a
route that has both an upstream and a redirect."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

from tests.e2e.harness import poll_until, run, start_proxy, write_config

TWISTD = str(Path(sys.executable).with_name("twistd"))
#: A path and query with escapes that must come back byte for byte.
TRICKY = "/a%2Fb/caf%C3%A9?q=%20x&y=1"
PROTOCOLS = {"h2c": "--http2-prior-knowledge", "http/1.1": "--http1.1"}


def config(origin_port: int, access_log: Path, https_port: int = 443, location: str = "https://example.org/new") -> dict:
    return {
        "workers": 1,
        "listeners": [
            {"name": "web", "address": "127.0.0.1", "port": 0, "redirect_https": https_port},
            {"name": "web8443", "address": "127.0.0.1", "port": 0, "redirect_https": 8443},
            {"name": "h2c", "address": "127.0.0.1", "port": 0},
        ],
        "upstreams": {"app": {"servers": [{"address": f"127.0.0.1:{origin_port}"}]}},
        "routes": [
            {"path": "/", "upstream": "app"},
            {"path": "/old", "redirect": {"location": location}},
        ],
        "logging": {"access_log": str(access_log), "format": "json"},
    }


@pytest.fixture(scope="module")
def daemon(workdir, origin):
    access_log = workdir / "redirects-access.log"
    path = write_config(workdir, config(origin.port, access_log))
    proxy = start_proxy(path, ["web", "web8443", "h2c"])
    yield proxy, origin, access_log
    proxy.stop()


def curl(protocol: str, url: str, host: str | None = None) -> str:
    """``<status> <redirect_url>`` as curl reports them (it does not follow)."""
    headers = ["-H", f"Host: {host}"] if host else []
    result = run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
                  PROTOCOLS[protocol], *headers, url], timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout.decode()


def access_records(path: Path, count: int) -> list[dict]:
    def records():
        found = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        return found if len(found) >= count else None

    return poll_until(records, 20.0, f"{count} access log lines in {path}")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_redirecting_listener_sends_every_request_to_https(daemon, protocol):
    """When curl asks a redirect_https listener, it gets 308 to https with the host (port stripped), path and query as sent."""
    proxy, origin, _ = daemon
    before = len(origin.requests())
    port = proxy.ports["web"]
    assert curl(protocol, f"http://127.0.0.1:{port}{TRICKY}") == f"308 https://127.0.0.1{TRICKY}"
    assert curl(protocol, f"http://127.0.0.1:{port}/x?y", host=f"www.example.org:{port}") == (
        "308 https://www.example.org/x?y"
    )
    assert curl(protocol, f"http://127.0.0.1:{proxy.ports['web8443']}/p?q=1") == "308 https://127.0.0.1:8443/p?q=1"
    assert len(origin.requests()) == before


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_route_redirect_answers_301(daemon, protocol):
    """When curl asks for a path whose route redirects, it gets 301 and the configured Location; other paths still reach the origin."""
    proxy, origin, _ = daemon
    before = len(origin.requests())
    assert curl(protocol, proxy.url("h2c", "/old/page?x=1")) == "301 https://example.org/new"
    assert len(origin.requests()) == before
    assert curl(protocol, proxy.url("h2c", "/status/200")) == "200 "


def test_redirects_are_in_the_access_log(daemon):
    """When redirects are answered, each has its access log line with its status, route and no upstream."""
    proxy, _, access_log = daemon
    mark = len(access_records(access_log, 0))
    curl("h2c", f"http://127.0.0.1:{proxy.ports['web']}{TRICKY}")
    curl("http/1.1", proxy.url("h2c", "/old"))
    first, second = access_records(access_log, mark + 2)[mark:]
    assert (first["status"], first["path"], first["protocol"], first["upstream"]) == (308, TRICKY, "h2", None)
    assert (second["status"], second["path"], second["protocol"], second["route"]) == (301, "/old", "http/1.1", "*/old")
    assert first["error"] is None and second["upstream"] is None


def test_a_reload_changes_the_redirects(workdir, origin):
    """When the config is reloaded with another HTTPS port and location, the next requests get the new ones."""
    directory = workdir / "reload"
    directory.mkdir()
    access_log = directory / "access.log"
    path = write_config(directory, config(origin.port, access_log))
    proxy = start_proxy(path, ["web", "web8443", "h2c"])
    try:
        url = f"http://127.0.0.1:{proxy.ports['web']}/x"
        assert curl("h2c", url) == "308 https://127.0.0.1/x"
        write_config(directory, config(origin.port, access_log, https_port=9443, location="/elsewhere"))
        assert proxy.reload().group(1) is not None
        assert curl("h2c", url) == "308 https://127.0.0.1:9443/x"
        assert curl("http/1.1", proxy.url("h2c", "/old")) == f"301 http://127.0.0.1:{proxy.ports['h2c']}/elsewhere"
    finally:
        proxy.stop()


def test_check_reports_a_route_with_an_upstream_and_a_redirect(tmp_path):
    """When --check reads a route with both an upstream and a redirect, it exits 1 naming the file, line and key."""
    path = tmp_path / "both.yaml"
    path.write_text(
        "listeners:\n  - name: web\n    address: 127.0.0.1\n    port: 8080\n    redirect_https: 443\n"
        "upstreams:\n  app:\n    servers:\n      - address: 127.0.0.1:8000\n"
        "routes:\n  - upstream: app\n    redirect:\n      location: /new\n      status: 301\n"
    )
    result = run([TWISTD, "--pidfile=", "h2proxy", "-c", str(path), "--check"], timeout=60, cwd=tmp_path,
                 env=dict(os.environ))
    errors = result.stderr.decode()
    assert result.returncode == 1, errors
    assert re.search(re.escape(str(path)) + r":12:5: routes\[0\]\.redirect: a route has either an upstream or a redirect", errors), errors


def test_a_daemon_of_redirects_alone_needs_no_upstream(tmp_path):
    """When the config has only a listener redirecting to HTTPS and a listener whose one route redirects, with no upstream declared, the daemon starts and answers both (308 and 301) with curl."""
    path = write_config(tmp_path, {
        "workers": 1,
        "listeners": [
            {"name": "web", "address": "127.0.0.1", "port": 0, "redirect_https": 443},
            {"name": "h2c", "address": "127.0.0.1", "port": 0},
        ],
        "routes": [{"path": "/", "redirect": {"location": "https://example.org/moved", "status": 308}}],
    })
    proxy = start_proxy(path, ["web", "h2c"])
    try:
        assert curl("h2c", f"http://127.0.0.1:{proxy.ports['web']}/a?b=1") == "308 https://127.0.0.1/a?b=1"
        assert curl("http/1.1", proxy.url("h2c", "/anything")) == "308 https://example.org/moved"
    finally:
        proxy.stop()
