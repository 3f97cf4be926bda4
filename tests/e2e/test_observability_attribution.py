"""Who ended a request, as the access log of the real daemon tells it, with curl as the
client: a backend dying mid-body is logged with the backend's reason (not as the
client leaving), a download cut by the drain window says drain_timeout, and requests
the front ends answer themselves before routing (an oversized header: 431; a
malformed HTTP/1.1 request: 400) get exactly one line."""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import base_config
from tests.e2e.harness import poll_until, start_proxy, write_config
from tests.e2e.test_daemon_stop import MIB, SlowDownload

#: http2.max_header_list_size for the daemon (also the HTTP/1.1 head limit).
HEADER_LIMIT = 4096
#: A header over that limit, well below the hard limit (4 times it).
BIG_HEADER = "X-Big: " + "a" * 2 * HEADER_LIMIT


def curl(*args: str) -> subprocess.CompletedProcess:
    """curl's status code on stdout; its exit status is not checked (a cut body fails it)."""
    return subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", *args],
                          capture_output=True, timeout=30, text=True)


def lines_with(path: Path, needle: str, count: int = 1) -> list[str]:
    """The access log lines containing C{needle}, once there are C{count} of them."""
    def found():
        lines = [line for line in path.read_text().splitlines() if needle in line] if path.exists() else []
        return lines if len(lines) >= count else None

    return poll_until(found, 20.0, f"{count} access log line(s) with {needle!r}")


@pytest.fixture(scope="module")
def logged(tmp_path_factory, origin, certificate):
    tmp = tmp_path_factory.mktemp("attribution")
    log_path = tmp / "access.log"
    config = base_config(origin.port, certificate, logging={"access_log": str(log_path), "format": "combined"},
                         http2={"max_header_list_size": HEADER_LIMIT})
    proxy = start_proxy(write_config(tmp, config), ["tls", "h2c"])
    yield proxy, log_path
    proxy.stop()


def test_a_backend_dying_mid_body_is_logged_with_the_backend_reason(logged):
    """When the backend closes its connection halfway through a body, curl sees the
    stream fail, and the one access log line says 200 with error=connection_terminated,
    not client_closed."""
    proxy, log_path = logged
    result = curl("--http2-prior-knowledge", proxy.url("h2c", "/truncate/100000"))
    assert result.returncode != 0 and result.stdout == "200"
    [line] = lines_with(log_path, "/truncate/100000")
    assert '" 200 ' in line and line.endswith("error=connection_terminated"), line


def test_an_oversized_header_gets_431_and_one_line(logged):
    """When curl sends a header list over the limit, it gets 431 from the HTTP/2 front
    end, and the access log has exactly one line for it."""
    proxy, log_path = logged
    assert curl("--http2-prior-knowledge", "-H", BIG_HEADER, proxy.url("h2c", "/oversized-h2")).stdout == "431"
    assert curl("--http2-prior-knowledge", proxy.url("h2c", "/after-h2")).stdout == "200"
    lines_with(log_path, "/after-h2")
    [line] = lines_with(log_path, "/oversized-h2")
    assert '"GET /oversized-h2 HTTP/2.0" 431 ' in line and line.endswith("error=http_request_error"), line


def test_an_oversized_http1_head_gets_431_and_one_line(logged):
    """When curl sends an HTTP/1.1 head over the limit, it gets 431 and one access log line."""
    proxy, log_path = logged
    assert curl("--http1.1", "-H", BIG_HEADER, proxy.url("h2c", "/oversized-h1")).stdout == "431"
    [line] = lines_with(log_path, "/oversized-h1")
    assert '"GET /oversized-h1 HTTP/1.1" 431 ' in line and line.endswith("error=http_request_error"), line


def test_a_malformed_http1_request_gets_400_and_one_line(logged):
    """When a client sends a malformed HTTP/1.1 request (a space in the target), it gets
    400 and the access log has exactly one line for it."""
    proxy, log_path = logged
    with socket.create_connection(("127.0.0.1", proxy.ports["h2c"]), timeout=10) as sock:
        sock.sendall(b"GET /mal formed HTTP/1.1\r\nHost: example.org\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert curl("--http1.1", proxy.url("h2c", "/after-h1")).stdout == "200"
    lines_with(log_path, "/after-h1")
    lines = [line for line in log_path.read_text().splitlines() if " 400 " in line and "HTTP/1.1" in line]
    assert len(lines) == 1 and lines[0].endswith("error=http_request_error"), lines


def test_a_download_cut_by_the_drain_window_says_drain_timeout(tmp_path_factory, origin, certificate):
    """When SIGTERM's drain window runs out during a download, curl sees it cut, the
    access log line says 200 with error=drain_timeout (not client_closed), and the
    daemon log has a warning naming the request."""
    tmp = tmp_path_factory.mktemp("attribution-drain")
    log_path = tmp / "access.log"
    config = base_config(origin.port, certificate, timeouts={"drain": "1s"},
                         logging={"access_log": str(log_path), "format": "combined"})
    proxy = start_proxy(write_config(tmp, config), ["tls", "h2c"])
    try:
        download = SlowDownload(proxy.url("h2c", f"/bytes/{256 * MIB}"), "4M")
        download.started()
        proxy.process.send_signal(signal.SIGTERM)
        assert proxy.process.wait(20) == 0
        code, received, _ = download.finish()
        assert code != 0 and received < 256 * MIB
        [line] = lines_with(log_path, f"/bytes/{256 * MIB}")
        assert '" 200 ' in line and line.endswith("error=drain_timeout"), line
        proxy.wait_for(r"#warn\].*cut by the proxy: the drain window ran out")
    finally:
        proxy.stop()
