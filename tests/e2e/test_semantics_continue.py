"""Expect: 100-continue through the real daemon, decided by the backend: its 100 (marked
with a field only it sends) reaches HTTP/2, HTTP/1.1 and curl clients before they send
the body; a body sent eagerly is held until that 100; a backend that answers 417
without a 100 never gets the body; a listener with ``expect_continue: local`` answers
the 100 itself and the backend never sees Expect.

The backend here is a small judging origin in a thread (127.0.0.1 only) that records,
for each request, the Expect it saw and which body bytes reached it when."""

from __future__ import annotations

import json
import socket
import socketserver
import subprocess
import threading
import time

import pytest

from tests.e2e.conftest import base_config
from tests.e2e.h2client import H2Client
from tests.e2e.harness import poll_until, start_proxy, write_config
from tests.e2e.semantics_client import RawHTTP1, h2_response, h2_upload

#: How long the judge waits after a request head before answering 100: a proxy that
#: did not hold an eager client's body would have delivered it by then.
JUDGE_DELAY = 0.3
#: How long the judge keeps reading after refusing, looking for a body that should not come.
REFUSE_WATCH = 3.0
#: Field the judge puts on its 100, so a client can tell it came from the backend.
MARK = ("x-from", "backend")


class Judge(socketserver.ThreadingTCPServer):
    """An HTTP/1.1 origin: ``/judge`` answers 100 (marked) after L{JUDGE_DELAY}, then
    reads a Content-Length body and answers JSON; ``/refuse`` answers 417 at once and
    records any byte that still arrives."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), JudgeHandler)
        self.records: list[dict] = []
        self.lock = threading.Lock()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def last(self, path: str) -> dict:
        def finished():
            with self.lock:
                found = [r for r in self.records if r["path"] == path and r.get("done")]
            return found[-1] if found else None

        return poll_until(finished, 10, f"the judge to finish a request for {path}", interval=0.02)


class JudgeHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(10)
        buffer = b""
        while True:
            while b"\r\n\r\n" not in buffer:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                buffer += chunk
            head, buffer = buffer.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1]
            fields = {n.strip().lower(): v.strip() for n, _, v in (line.partition(":") for line in lines[1:])}
            record = {"path": path, "expect": fields.get("expect")}
            if path == "/refuse":
                self.refuse(sock, buffer, record)
                return
            buffer = self.judge(sock, buffer, record, int(fields.get("content-length", "0")))

    def refuse(self, sock: socket.socket, early: bytes, record: dict) -> None:
        sock.sendall(b"HTTP/1.1 417 Expectation Failed\r\ncontent-length: 7\r\n\r\nrefused")
        late = early
        sock.settimeout(REFUSE_WATCH)
        try:
            while chunk := sock.recv(65536):
                late += chunk
        except (TimeoutError, socket.timeout, ConnectionError):
            pass
        self.finish_record(record, received=len(late))

    def judge(self, sock: socket.socket, buffer: bytes, record: dict, length: int) -> bytes:
        time.sleep(JUDGE_DELAY)
        sock.setblocking(False)
        try:
            buffer += sock.recv(65536)
        except BlockingIOError:
            pass
        sock.setblocking(True)
        sock.settimeout(10)
        record["before_100"] = len(buffer)
        sock.sendall(b"HTTP/1.1 100 Continue\r\n%s: %s\r\n\r\n" % tuple(s.encode() for s in MARK))
        while len(buffer) < length:
            chunk = sock.recv(65536)
            if not chunk:
                return b""
            buffer += chunk
        body = json.dumps({"bytes": length, "expect": record["expect"]}).encode()
        sock.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
        self.finish_record(record, received=length)
        return buffer[length:]

    def finish_record(self, record: dict, received: int) -> None:
        record.update(done=True, received=received)
        with self.server.lock:
            self.server.records.append(record)


@pytest.fixture(scope="module")
def judge():
    server = Judge()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def daemon(workdir, judge, certificate):
    config = base_config(judge.port, certificate)
    config["listeners"].append(
        {"name": "local", "address": "127.0.0.1", "port": 0, "forwarding": {"expect_continue": "local"}}
    )
    proxy = start_proxy(write_config(workdir, config), ["tls", "h2c", "local"])
    yield proxy
    proxy.stop()


def test_http2_client_gets_the_backends_100_before_sending_its_body(daemon, judge):
    """When an HTTP/2 client expects 100-continue, the backend's own 100 reaches it before it sends anything, then its body goes through."""
    client = H2Client(daemon.ports["h2c"])
    try:
        stream = client.request(
            "POST", "/judge", headers=[("expect", "100-continue"), ("content-length", "5")], end_stream=False
        )
        client.run_until(lambda: any(getattr(e, "stream_id", None) == stream for e in client.events), timeout=10)
        first = next(e for e in client.events if getattr(e, "stream_id", None) == stream)
        fields = {n.decode(): v.decode() for n, v in first.headers}
        assert fields[":status"] == "100" and fields[MARK[0]] == MARK[1]
        h2_upload(client, stream, b"hello")
        response = h2_response(client, stream)
    finally:
        client.close()
    assert response.status == 200 and response.json() == {"bytes": 5, "expect": "100-continue"}


def test_http11_client_gets_the_backends_100_before_sending_its_body(daemon, judge):
    """When an HTTP/1.1 client waits for 100 Continue, the backend's own 100 reaches it, then its body and the response go through."""
    raw = RawHTTP1(daemon.ports["tls"], tls=True)
    try:
        raw.send(b"POST /judge HTTP/1.1\r\nHost: app.test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        assert raw.read_head() == (100, [MARK])
        raw.send(b"hello")
        response = raw.read_response()
    finally:
        raw.close()
    assert response.status == 200 and response.json() == {"bytes": 5, "expect": "100-continue"}


@pytest.mark.parametrize("version", ["--http2", "--http1.1"])
def test_curl_gets_the_backends_100(daemon, judge, version, tmp_path):
    """When curl sends Expect: 100-continue (waiting up to 20 s), the backend's 100 reaches it at once and the upload completes."""
    body = tmp_path / "body"
    body.write_bytes(b"z" * 100_000)
    started = time.monotonic()
    result = subprocess.run(
        ["curl", "-sS", "-k", "-v", version, "--expect100-timeout", "20", "-H", "Expect: 100-continue",
         "--data-binary", f"@{body}", daemon.url("tls", "/judge")],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 10
    assert json.loads(result.stdout) == {"bytes": 100_000, "expect": "100-continue"}
    assert "< x-from: backend" in result.stderr.lower()


def test_eager_body_is_held_until_the_backends_100(daemon, judge):
    """When an HTTP/1.1 client sends its body without waiting, the proxy holds it until the backend's 100, then delivers it."""
    raw = RawHTTP1(daemon.ports["h2c"])
    try:
        raw.send(b"POST /judge HTTP/1.1\r\nHost: app.test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello")
        response = raw.read_response()
    finally:
        raw.close()
    assert response.informational == [(100, [MARK])] and response.json()["bytes"] == 5
    assert judge.last("/judge")["before_100"] == 0


def test_417_without_100_keeps_the_body_from_the_backend_over_http11(daemon, judge):
    """When the backend answers 417 without a 100, an HTTP/1.1 client that sent its body anyway gets the 417, the connection closes, and the backend gets no body byte."""
    raw = RawHTTP1(daemon.ports["h2c"])
    try:
        raw.send(b"PUT /refuse HTTP/1.1\r\nHost: app.test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello")
        response = raw.read_response()
        assert raw._fill() is False
    finally:
        raw.close()
    assert response.informational == [] and response.status == 417 and response.body == b"refused"
    assert response.header("connection") == "close"
    assert judge.last("/refuse")["received"] == 0


def test_417_without_100_keeps_the_body_from_the_backend_over_http2(daemon, judge):
    """When the backend answers 417 without a 100, an HTTP/2 client that sent its body anyway gets the 417 and the backend gets no body byte."""
    client = H2Client(daemon.ports["h2c"])
    try:
        stream = client.request(
            "PUT", "/refuse", headers=[("expect", "100-continue"), ("content-length", "5")], end_stream=False
        )
        h2_upload(client, stream, b"hello")
        response = h2_response(client, stream)
    finally:
        client.close()
    assert response.informational == [] and response.status == 417 and response.body == b"refused"
    assert judge.last("/refuse")["received"] == 0


def test_local_listener_answers_100_itself(daemon, judge):
    """When the listener says expect_continue: local, the client's 100 is the proxy's (unmarked) and the backend never sees Expect."""
    raw = RawHTTP1(daemon.ports["local"])
    try:
        raw.send(b"POST /judge HTTP/1.1\r\nHost: app.test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        assert raw.read_head() == (100, [])
        raw.send(b"hello")
        response = raw.read_response()
    finally:
        raw.close()
    assert response.informational == [] and response.json() == {"bytes": 5, "expect": None}
