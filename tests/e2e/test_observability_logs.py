"""The access log on the real daemon: one line per request in both formats, for HTTP/2
and HTTP/1.1, with a proxy-generated 502 and its reason; reopened on SIGUSR1."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import base_config
from tests.e2e.harness import poll_until, start_proxy, write_config

#: The usual combined-format regex, as log tools use it.
COMBINED = re.compile(
    r'^(?P<host>\S+) (?P<ident>\S+) (?P<user>\S+) \[(?P<time>[^\]]+)\] '
    r'"(?P<method>[A-Z]+) (?P<path>\S+) (?P<proto>HTTP/[0-9.]+)" (?P<status>\d{3}) (?P<bytes>\d+|-) '
    r'"(?P<referer>[^"]*)" "(?P<agent>[^"]*)"'
)


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def curl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", *args],
                          capture_output=True, timeout=30, check=True, text=True)


def read_lines(path: Path, count: int, timeout: float = 20.0) -> list[str]:
    """The first C{count} lines of C{path}, polling until they are all there."""
    def lines():
        found = path.read_text().splitlines() if path.exists() else []
        return found if len(found) >= count else None

    return poll_until(lines, timeout, f"{count} lines in {path}")


@pytest.fixture(scope="module", params=["combined", "json"])
def logged_proxy(request, tmp_path_factory, origin, certificate):
    """A daemon logging in one format, after three requests: h2 over TLS, HTTP/1.1
    in cleartext, and one to a dead backend (502)."""
    tmp = tmp_path_factory.mktemp(f"log-{request.param}")
    log_path = tmp / "access.log"
    config = base_config(
        origin.port, certificate,
        logging={"access_log": str(log_path), "format": request.param},
        upstreams={"app": {"servers": [{"address": f"127.0.0.1:{origin.port}"}]},
                   "dead": {"servers": [{"address": f"127.0.0.1:{closed_port()}"}], "retries": 0}},
        routes=[{"host": "*", "path": "/dead", "upstream": "dead"},
                {"host": "*", "path": "/", "upstream": "app"}],
    )
    proxy = start_proxy(write_config(tmp, config), ["tls", "h2c"])
    try:
        assert curl("-k", "--http2", "-A", "agent/h2", proxy.url("tls", "/bytes/1234")).stdout == "200"
        assert curl("--http1.1", "-A", "agent/h1", "-e", "http://ref.example/",
                    proxy.url("h2c", "/bytes/10")).stdout == "200"
        assert curl("--http2-prior-knowledge", proxy.url("h2c", "/dead/x")).stdout == "502"
        yield request.param, read_lines(log_path, 3), proxy, log_path
    finally:
        proxy.stop()


def parse(fmt: str, line: str) -> dict:
    """A line as a dict of the fields both formats have."""
    if fmt == "json":
        data = json.loads(line)
        return {"client": data["client"], "method": data["method"], "path": data["path"],
                "protocol": data["protocol"], "status": data["status"], "bytes": data["response_bytes"],
                "agent": data["user_agent"], "referer": data["referer"], "error": data["error"],
                "request_id": data["request_id"], "upstream": data["upstream"], "server": data["server"],
                "duration": data["duration"]}
    match = COMBINED.match(line)
    assert match is not None, line
    extra = dict(pair.split("=", 1) for pair in line[match.end():].split())
    protocol = {"HTTP/2.0": "h2", "HTTP/1.1": "http/1.1"}[match["proto"]]
    none = lambda value: None if value == "-" else value  # noqa: E731
    return {"client": match["host"], "method": match["method"], "path": match["path"],
            "protocol": protocol, "status": int(match["status"]), "bytes": int(match["bytes"]),
            "agent": none(match["agent"]), "referer": none(match["referer"]), "error": none(extra["error"]),
            "request_id": none(extra["id"]), "upstream": none(extra["upstream"]), "server": none(extra["server"]),
            "duration": float(extra["rt"])}


def by_path(fmt: str, lines: list[str]) -> dict[str, dict]:
    return {entry["path"]: entry for entry in (parse(fmt, line) for line in lines)}


def test_an_http2_request_is_one_parseable_line(logged_proxy):
    """When curl fetches over h2, its line parses and says h2, 200, the bytes, the agent and the backend."""
    fmt, lines, proxy, _ = logged_proxy
    entry = by_path(fmt, lines)["/bytes/1234"]
    assert (entry["client"], entry["method"], entry["protocol"]) == ("127.0.0.1", "GET", "h2")
    assert (entry["status"], entry["bytes"], entry["agent"]) == (200, 1234, "agent/h2")
    assert entry["upstream"] == "app"
    assert entry["server"] == f"127.0.0.1:{proxy_origin_port(proxy)}"
    assert re.fullmatch(r"[0-9a-f]{16}", entry["request_id"])
    assert entry["error"] is None and entry["duration"] >= 0


def test_an_http1_request_is_one_parseable_line(logged_proxy):
    """When curl fetches over HTTP/1.1, its line parses and says http/1.1, with the referer."""
    fmt, lines, _, _ = logged_proxy
    entry = by_path(fmt, lines)["/bytes/10"]
    assert (entry["protocol"], entry["status"], entry["bytes"]) == ("http/1.1", 200, 10)
    assert entry["referer"] == "http://ref.example/"


def test_a_proxy_generated_502_carries_its_reason(logged_proxy):
    """When the backend refuses, the line says 502 and the reason connection_refused."""
    fmt, lines, _, _ = logged_proxy
    entry = by_path(fmt, lines)["/dead/x"]
    assert (entry["status"], entry["error"], entry["upstream"]) == (502, "connection_refused", "dead")


def test_sigusr1_reopens_the_access_log(logged_proxy):
    """When the access log is moved away and the daemon gets SIGUSR1, later lines go to a new file."""
    fmt, _, proxy, log_path = logged_proxy
    moved = log_path.with_name("access.log.1")
    log_path.rename(moved)
    start = proxy.mark()
    proxy.process.send_signal(signal.SIGUSR1)
    # The worker reopens in the same reactor turn as it logs this, before any request.
    proxy.wait_for(r"worker 1\.0\[\d+\]: reopening log files", start=start)
    assert curl("--http2-prior-knowledge", proxy.url("h2c", "/bytes/7")).stdout == "200"
    (line,) = read_lines(log_path, 1)
    assert parse(fmt, line)["path"] == "/bytes/7"
    assert len(moved.read_text().splitlines()) == 3


def proxy_origin_port(proxy) -> int:
    config = proxy.config_path.read_text()
    return int(re.search(r"address: 127\.0\.0\.1:(\d+)", config).group(1))
