"""Real application servers behind the proxy, as operators run them: gunicorn +
Flask and uvicorn + Starlette, with real clients (curl, httpx over HTTP/2).

Each test checks what the client reports (exit code, the HTTP version, an error
raised, how long a failure took to be reported) as well as the bytes. The
daemon's abort window is long (ABORT), so a close that waited for it instead of
ending promptly is unmistakable.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import threading
import time
import uuid

import httpx
import pytest

from tests.e2e.appservers import AppServer, start_app_server
from tests.e2e.apps.common import chunk, stream_digest
from tests.e2e.conftest import base_config
from tests.e2e.harness import poll_until, run, start_proxy, write_config

#: The daemon's abort window in these tests, in seconds.
ABORT = 30

#: A failure or a close must reach the client well inside the abort window.
PROMPT = 5.0

KINDS = ["gunicorn", "uvicorn"]


@pytest.fixture(scope="module", params=KINDS)
def app(request) -> AppServer:
    server = start_app_server(request.param)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def app_proxy(app, tmp_path_factory, certificate):
    workdir = tmp_path_factory.mktemp(f"apps-{app.kind}")
    config = base_config(0, certificate)
    config["upstreams"] = {"app": {"servers": [{"address": app.address}]}}
    config["timeouts"] = {"abort": f"{ABORT}s"}
    config["logging"] = {"access_log": str(workdir / "access.log"), "format": "json"}
    daemon = start_proxy(write_config(workdir, config), ["tls", "h2c"])
    daemon.access_log = workdir / "access.log"
    yield daemon
    daemon.stop()


def h2_client(**kwargs) -> httpx.Client:
    return httpx.Client(http2=True, http1=False, verify=False, timeout=httpx.Timeout(10.0), **kwargs)


def access_records(proxy, path: str) -> list[dict]:
    """The access log's records for requests to C{path} (the log is written within
    an event-loop turn of the request's end)."""
    if not proxy.access_log.exists():
        return []
    records = [json.loads(line) for line in proxy.access_log.read_text().splitlines() if line]
    return [record for record in records if record["path"] == path]


def test_streamed_download_over_h2_and_h2c_with_curl(app, app_proxy):
    """When the application streams 64 chunks, curl over TLS h2 and over h2c gets them all and exits 0."""
    for url, flags in ((app_proxy.url("tls", "/stream?count=64&size=16384"), ["-k", "--http2"]),
                       (app_proxy.url("h2c", "/stream?count=64&size=16384"), ["--http2-prior-knowledge"])):
        result = run(["curl", "-sS", *flags, "-w", "%{http_version}", url], timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stdout.endswith(b"2")
        assert hashlib.sha256(result.stdout[:-1]).hexdigest() == stream_digest(64, 16384)


def test_streamed_download_with_httpx_over_http2(app, app_proxy):
    """When httpx (http2) streams a download, it speaks HTTP/2 and gets every byte."""
    with h2_client() as client:
        with client.stream("GET", app_proxy.url("tls", "/stream?count=32&size=65536")) as response:
            digest = hashlib.sha256()
            for data in response.iter_bytes():
                digest.update(data)
            assert response.http_version == "HTTP/2" and response.status_code == 200
    assert digest.hexdigest() == stream_digest(32, 65536)


def test_chunked_upload_reaches_the_application_intact(app, app_proxy):
    """When curl uploads a body of unknown length over h2, the application reads every byte of it."""
    body = b"".join(chunk(index, 50_000) for index in range(40))
    result = run(["curl", "-sS", "-k", "--http2", "-T", "-", "-X", "POST", app_proxy.url("tls", "/upload")],
                 input=body, timeout=60)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["length"] == len(body) and seen["sha256"] == hashlib.sha256(body).hexdigest()


def test_streamed_upload_with_httpx(app, app_proxy):
    """When httpx streams a request body from a generator over h2, the application gets it all."""
    pieces = [chunk(index, 30_000) for index in range(20)]
    with h2_client() as client:
        response = client.post(app_proxy.url("tls", "/upload"), content=iter(pieces))
    assert response.http_version == "HTTP/2" and response.status_code == 200
    body = b"".join(pieces)
    assert response.json()["length"] == len(body)
    assert response.json()["sha256"] == hashlib.sha256(body).hexdigest()


def test_server_sent_events_arrive_one_by_one(app, app_proxy):
    """When the application sends an event and waits, the client gets that event before releasing the next."""
    name = uuid.uuid4().hex
    received = []
    with h2_client() as client:
        with client.stream("GET", app_proxy.url("tls", f"/events/{name}?count=3")) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = response.iter_lines()
            for index in range(3):
                event = next(line for line in lines if line.startswith("data: "))
                received.append(event)
                if index < 2:
                    release = client.post(app_proxy.url("tls", f"/release/{name}/{index + 1}"))
                    assert release.status_code == 200
    assert received == ["data: event 0", "data: event 1", "data: event 2"]


class FirstChunkReader:
    """Runs a client command whose standard output is a response body and tells when
    its first C{size} bytes have arrived; the rest is drained on a thread."""

    def __init__(self, command: list[str], size: int) -> None:
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.first = self.process.stdout.read(size)
        self._drain = threading.Thread(target=self.process.stdout.read, daemon=True)
        self._drain.start()

    def finish(self, timeout: float) -> tuple[int, float, bytes]:
        """Exit code, seconds until exit, and standard error."""
        started = time.monotonic()
        code = self.process.wait(timeout)
        elapsed = time.monotonic() - started
        return code, elapsed, self.process.stderr.read()


@pytest.mark.parametrize("client", ["h2", "http/1.1"])
def test_an_application_killed_mid_body_is_reported_to_the_client_promptly(tmp_path, certificate, client):
    """When the application dies after the first chunk, curl fails at once (a stream reset on h2,
    a truncated body on HTTP/1.1), and the access log blames the backend, not the client."""
    for kind in KINDS:
        app = start_app_server(kind)
        config = base_config(0, certificate)
        config["upstreams"] = {"app": {"servers": [{"address": app.address}]}}
        config["timeouts"] = {"abort": f"{ABORT}s"}
        config["logging"] = {"access_log": str(tmp_path / f"{kind}.log"), "format": "json"}
        proxy = start_proxy(write_config(tmp_path, config), ["tls", "h2c"])
        proxy.access_log = tmp_path / f"{kind}.log"
        try:
            flag = "--http2" if client == "h2" else "--http1.1"
            reader = FirstChunkReader(["curl", "-sS", "-N", "-k", flag, "-o", "-",
                                       proxy.url("tls", "/hang-after-first")], 65536)
            assert reader.first == chunk(0, 65536)
            app.kill_serving()
            code, elapsed, stderr = reader.finish(timeout=ABORT + 10)
            # curl: 92 = HTTP/2 stream not closed cleanly; 18 = transfer closed with data outstanding
            assert code == (92 if client == "h2" else 18), stderr
            assert elapsed < PROMPT, f"{kind}: the failure took {elapsed:.1f}s to reach curl"
            [record] = poll_until(lambda: access_records(proxy, "/hang-after-first"), 10, "the access log line")
            assert record["status"] == 200 and record["error"] not in (None, "-", "client_closed"), record
        finally:
            proxy.stop()
            app.stop()
