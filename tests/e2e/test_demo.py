"""scripts/demo and its origin as an operator meets them: --help, a busy port, and curl
lines printed only once the proxy serves."""

from __future__ import annotations

import gzip
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.h2client import H2Client
from tests.e2e.harness import ProcessOutput, poll_until

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "scripts" / "demo"
#: The fixed ports of conf/h2proxy.yaml and of the demo origin.
DEMO_PORTS = (8000, 8080, 8443)


def session_pids(sid: int) -> list[int]:
    """The processes of session C{sid} (the demo runs in its own)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:
            pids.append(int(entry.name))
    return pids


def start_demo(*args: str) -> subprocess.Popen:
    """scripts/demo in a session of its own, so every process it starts can be found
    and stopped whatever the test sees."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.Popen([str(DEMO), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            cwd=ROOT, env=env, start_new_session=True)


def stop_demo(process: subprocess.Popen) -> None:
    """SIGTERM the demo's session, then check that nothing of it is left."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        process.wait(30)
    finally:
        poll_until(lambda: not session_pids(process.pid), timeout=30, what="the demo's processes to exit")


def port_free(port: int) -> bool:
    """Whether a server could listen on C{port} (SO_REUSEADDR, as the origin and twistd
    bind, so connections in TIME_WAIT do not count)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_demo_help_prints_usage_and_starts_nothing():
    """When `scripts/demo --help` runs, it prints its usage (naming where the origin's
    endpoints are documented) and exits 0 without starting an origin or a proxy."""
    process = start_demo("--help")
    try:
        output, _ = process.communicate(timeout=30)
    finally:
        stop_demo(process)
    text = output.decode()
    assert process.returncode == 0, text
    assert text.startswith("Usage: scripts/demo"), text
    assert "docs/operations.md" in text
    assert "origin listening" not in text and "twistd" not in text


def test_the_origin_on_a_busy_port_says_so_in_one_line():
    """When the demo origin's port is taken, it prints one line naming the address and
    port and exits 1, with no traceback."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "h2proxy_tools.origin", "--port", str(port)],
                                capture_output=True, timeout=30, text=True)
    assert result.returncode == 1
    assert result.stderr == f"origin: cannot listen on 127.0.0.1 port {port}: Address already in use\n"


def test_origin_help_lists_the_endpoints():
    """When the origin is asked for --help, it lists its endpoints."""
    result = subprocess.run([sys.executable, "-m", "h2proxy_tools.origin", "--help"],
                            capture_output=True, timeout=30, text=True)
    assert result.returncode == 0
    for endpoint in ("/bytes/N", "/drip", "/status/N", "/upload", "/headers"):
        assert endpoint in result.stdout


def test_demo_prints_its_curl_lines_once_the_proxy_serves():
    """When the demo starts, it prints the curl lines only after the proxy logged that
    generation 1 serves, and a request right then is answered, as is a file of the
    shipped static route, compressed; SIGTERM stops all of it."""
    busy = [port for port in DEMO_PORTS if not port_free(port)]
    if busy:
        pytest.skip(f"the demo's fixed ports are in use: {busy}")
    process = start_demo()
    output = ProcessOutput(process)
    try:
        output.wait_for(r"^Try:$", timeout=60)
        lines = output.lines
        serving = next(i for i, line in enumerate(lines) if "generation 1 serving" in line)
        assert serving < lines.index("Try:"), output.text()
        client = H2Client(8080)
        try:
            assert client.response(client.request("GET", "/status/204"))[0] == 204
            status, headers, body = client.response(
                client.request("GET", "/static/style.css", headers=[("accept-encoding", "gzip")]))[:3]
            assert (status, dict(headers).get(b"content-encoding")) == (200, b"gzip")
            assert gzip.decompress(bytes(body)) == (ROOT / "conf" / "static" / "style.css").read_bytes()
        finally:
            client.close()
    finally:
        stop_demo(process)
