"""Smuggling on the HTTP/2 -> HTTP/1.1 downgrade, against the real daemon: every
vector of h2proxy_tools.audit is refused and never reaches the backend; a content-length
that disagrees with the DATA never makes the backend read more or fewer bytes than
announced; and a hypothesis fuzz of header names, values, paths and bodies, through
the daemon to a raw recording backend, shows the backend only ever receives
well-formed HTTP/1.1, one request per connection here (the recorder closes each)."""

from __future__ import annotations

import select
import socket
import threading

import pytest
from hyperframe.frame import DataFrame, HeadersFrame
from hypothesis import HealthCheck, event, given, settings, strategies as st

from h2proxy_tools import audit
from h2proxy_tools.audit import PROTOCOL_ERROR, RawConnection, connect
from tests.e2e.conftest import base_config
from tests.e2e.harness import start_proxy, write_config
from tests.hardening.daemon import Attacked, start_attacked
from tests.hardening.strict_http1 import read_request
from tests.hardening.test_smuggling import NAMES, PATHS, VALUES

#: Longest wait for one fuzzed exchange.
EXCHANGE_TIMEOUT = 5.0


@pytest.fixture(scope="module")
def daemon(workdir, origin, certificate):
    attacked = start_attacked(workdir / "smuggling", origin, certificate)
    yield attacked
    attacked.proxy.stop()


def test_every_vector_is_refused_and_never_reaches_the_backend(daemon: Attacked):
    """When a client sends each smuggling vector (CR/LF/NUL, bad names, connection-specific fields, bad content-length, bad pseudo-headers, userinfo, conflicting host), each is refused with RST_STREAM or 400 and the backend logs none of them."""
    mark = daemon.mark()
    outcome = audit.smuggling(daemon.target("tls", path="/attack/smuggling"))
    assert outcome.passed, outcome.details
    assert all(result.startswith(("RST_STREAM PROTOCOL_ERROR", "400")) for result in outcome.details.values()), outcome.details
    smuggled = [e for e in daemon.origin.requests()[mark:] if ["x-audit", "smuggling"] in e["headers"]]
    assert smuggled == []
    daemon.assertSurvived(mark)


def body_request(connection: RawConnection, path: str, length: int, frames: list[bytes]) -> int:
    streamID = connection.streamID()
    fields = connection.requestFields(path, "POST", [(b"content-length", b"%d" % length)])
    connection.send(connection.headers(streamID, fields, endStream=False))
    for index, chunk in enumerate(frames):
        flags = ["END_STREAM"] if index == len(frames) - 1 else []
        connection.send(DataFrame(streamID, data=chunk, flags=flags).serialize())
    connection.waitFor(lambda: connection.finished(streamID), 10)
    return streamID


@pytest.mark.parametrize(
    "name,length,frames",
    [
        ("more than announced", 10, [b"x" * 20]),
        ("more than announced, late", 10, [b"x" * 6, b"x" * 6]),
        ("fewer than announced", 10, [b"x" * 5]),
    ],
)
def test_a_content_length_that_disagrees_with_the_data_never_completes_at_the_backend(daemon: Attacked, name, length, frames):
    """When the DATA a client sends disagrees with its content-length, the stream is reset with PROTOCOL_ERROR and the backend never reads a complete request (it is told N bytes and never gets more; with fewer, its connection is closed)."""
    mark = daemon.mark()
    path = "/upload?case=" + name.replace(" ", "-").replace(",", "")
    connection = connect(daemon.target("h2c"))
    try:
        streamID = body_request(connection, path, length, frames)
        assert connection.resets.get(streamID) == PROTOCOL_ERROR, (connection.resets, connection.statuses)
    finally:
        connection.close()
    assert [e for e in daemon.origin.requests()[mark:] if e["target"] == path] == []
    daemon.assertSurvived(mark, {path}, listener="h2c")


# -- the fuzz: through the daemon to a raw recording backend ------------------------------------


class RecordingBackend(threading.Thread):
    """Accepts connections one at a time, reads one request per connection (as far
    as a strict reader can tell where it ends), answers 200 with Connection: close,
    and keeps every connection's raw bytes."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.records: list[bytes] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            readable, _, _ = select.select([self.listener], [], [], 0.2)
            if readable:
                client, _ = self.listener.accept()
                with client:
                    self._serve(client)
        self.listener.close()

    def _serve(self, client: socket.socket) -> None:
        client.settimeout(EXCHANGE_TIMEOUT)
        data = b""
        while not _complete(data):
            try:
                chunk = client.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
        self.records.append(data)  # before answering: the test looks once it has the answer
        try:
            client.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        except OSError:
            pass


def _complete(data: bytes) -> bool:
    if b"\r\n\r\n" not in data:
        return False
    try:
        request, _ = read_request(data)
    except AssertionError:
        return True  # malformed: the test will say so
    return request.complete


@pytest.fixture(scope="module")
def recorded(workdir, certificate):
    backend = RecordingBackend()
    backend.start()
    directory = workdir / "fuzz"
    directory.mkdir()
    proxy = start_proxy(write_config(directory, base_config(backend.port, certificate)), ["tls", "h2c"])
    yield proxy, backend
    proxy.stop()
    backend.stopping.set()
    backend.join(5)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    extra=st.lists(st.tuples(NAMES, VALUES), max_size=4),
    body=st.one_of(st.none(), st.binary(max_size=64)),
    length=st.one_of(st.just("none"), st.just("match"), st.integers(min_value=0, max_value=80)),
    path=PATHS,
)
def test_fuzzed_requests_reach_the_backend_only_as_well_formed_http11(recorded, extra, body, length, path):
    """When a client sends any header names, values, path, body and content-length through the daemon, the backend only ever receives well-formed HTTP/1.1 with no more body than announced and nothing after the request."""
    proxy, backend = recorded
    seen = len(backend.records)
    connection = connect(audit.Target.fromURL(proxy.url("h2c")))
    try:
        fields = list(extra)
        declared = None if length == "none" else len(body or b"") if length == "match" else length
        if declared is not None:
            fields.append((b"content-length", b"%d" % declared))
        streamID = connection.streamID()
        headers = HeadersFrame(streamID, flags=["END_HEADERS"] + (["END_STREAM"] if body is None else []))
        headers.data = connection.encoder.encode(
            [(b":method", b"POST" if body is not None else b"GET"), (b":scheme", b"http"),
             (b":authority", b"localhost"), (b":path", path), *fields]
        )
        connection.send(headers.serialize())
        if body is not None:
            connection.send(DataFrame(streamID, data=body, flags=["END_STREAM"]).serialize())
        connection.waitFor(lambda: connection.finished(streamID), EXCHANGE_TIMEOUT)
        assert connection.finished(streamID) or connection.closed, "no answer"
    finally:
        connection.close()
    event("reached the backend" if any(backend.records[seen:]) else "refused by the daemon")
    for raw in backend.records[seen:]:
        if not raw:
            continue
        request, rest = read_request(raw)
        assert rest == b"", f"bytes after the request: {rest[:80]!r}"
        if declared is not None:
            assert len(request.body) <= declared
