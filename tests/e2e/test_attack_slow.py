"""Slow and greedy clients against the real daemon, with short timeouts so that each
test takes seconds: a TLS handshake never finished, a silent connection, a header
block never finished (slowloris), a request body that stalls, windows open and a
socket never read, too many streams on one connection, and more connections than
limits.max_connections (idle ones closed first, then polite refusals)."""

from __future__ import annotations

import time

import pytest

from h2proxy_tools import audit
from h2proxy_tools.audit import RawConnection, connect
from tests.hardening.daemon import LARGE, Attacked, start_attacked

HANDSHAKE = 1.0
REQUEST_HEADER = 2.0
REQUEST_BODY = 2.0
SEND = 3.0
MAX_CONNECTIONS = 20
MAX_STREAMS = 20
REFUSED_STREAM = 0x7
NO_ERROR = 0x0
SLACK = 1.5  # seconds a timer may fire late on a loaded machine


@pytest.fixture(scope="module")
def daemon(workdir, origin, certificate):
    attacked = start_attacked(
        workdir / "slow",
        origin,
        certificate,
        timeouts={
            "handshake": f"{HANDSHAKE}s",
            "request_header": f"{REQUEST_HEADER}s",
            "request_body": f"{REQUEST_BODY}s",
            "send": f"{SEND}s",
        },
        limits={"max_connections": MAX_CONNECTIONS},
        http2={"max_streams_per_connection": MAX_STREAMS},
    )
    yield attacked
    attacked.proxy.stop()


def test_a_tls_handshake_never_finished_is_dropped(daemon: Attacked):
    """When a client connects to the TLS listener and sends nothing, it is dropped after timeouts.handshake."""
    mark = daemon.mark()
    outcome = audit.slowHandshake(daemon.target("tls", hold=10))
    assert outcome.closed and HANDSHAKE - 0.2 < outcome.elapsed < HANDSHAKE + SLACK, outcome
    daemon.assertSurvived(mark)


def test_a_silent_cleartext_connection_is_dropped(daemon: Attacked):
    """When a client connects to the cleartext listener and sends nothing, it is dropped after timeouts.handshake (the same first-byte limit as TLS), before timeouts.request_header."""
    mark = daemon.mark()
    outcome = audit.slowHandshake(daemon.target("h2c", hold=10))
    assert outcome.closed and HANDSHAKE - 0.2 < outcome.elapsed < HANDSHAKE + SLACK, outcome
    daemon.assertSurvived(mark, listener="h2c")


@pytest.mark.parametrize("listener", ["tls", "h2c"])
def test_a_header_block_never_finished_is_closed(daemon: Attacked, listener: str):
    """When a client sends its preface and a header block without END_HEADERS (slowloris), it gets GOAWAY NO_ERROR after timeouts.request_header."""
    mark = daemon.mark()
    outcome = audit.slowHeaders(daemon.target(listener, hold=10, path="/attack/slow-headers"))
    assert outcome.goaway == NO_ERROR and outcome.elapsed < REQUEST_HEADER + SLACK, outcome
    daemon.assertSurvived(mark, listener=listener)


def test_a_stalled_request_body_gets_408(daemon: Attacked):
    """When a client announces a body and stops sending it, the stream gets 408 after timeouts.request_body and the backend request is cancelled."""
    mark = daemon.mark()
    outcome = audit.slowBody(daemon.target("tls", hold=10, path="/attack/slow-body"))
    assert list(outcome.statuses.values()) == [408], outcome
    assert REQUEST_BODY - 0.2 < outcome.elapsed < REQUEST_BODY + SLACK, outcome
    daemon.assertSurvived(mark, {"/attack/slow-body"})


def test_windows_open_and_socket_unread_is_dropped_within_memory(daemon: Attacked):
    """When a client opens its windows wide, asks for large responses on many streams and never reads (CVE-2019-9517), the daemon buffers a bounded amount and drops it after timeouts.send."""
    mark = daemon.mark()
    outcome = audit.windowNoRead(daemon.target("tls", hold=15), streams=MAX_STREAMS - 1)
    assert outcome.closed and outcome.elapsed < SEND + 5 + SLACK, outcome
    daemon.assertSurvived(mark, {LARGE})


def test_streams_over_the_per_connection_cap_drain_the_connection(daemon: Attacked):
    """When a client has made max_streams_per_connection requests on one connection, it gets GOAWAY NO_ERROR naming the last one; those are answered and the connection then closes."""
    mark = daemon.mark()
    connection = connect(daemon.target("h2c"))
    try:
        ids = []
        for _ in range(MAX_STREAMS):
            streamID = connection.request("/attack/stream-cap")
            connection.waitFor(lambda: streamID in connection.ended, 10)
            ids.append(streamID)
        assert all(connection.statuses.get(i) == 200 for i in ids)
        assert connection.goaway is not None
        assert (connection.goaway.error_code, connection.goaway.last_stream_id) == (NO_ERROR, ids[-1])
        assert connection.waitFor(lambda: connection.closed, 10)
    finally:
        connection.close()
    daemon.assertSurvived(mark, {"/attack/stream-cap"}, listener="h2c")


def test_idle_connections_make_room_at_the_connection_cap(daemon: Attacked):
    """When more idle connections arrive than limits.max_connections, the oldest idle ones are closed with GOAWAY and new clients are served."""
    mark = daemon.mark()
    held = [connect(daemon.target("tls")) for _ in range(MAX_CONNECTIONS + 5)]
    try:
        for connection in held:
            connection.poll(0.05)
        assert audit.healthCheck(daemon.target("tls"))
        evicted = [c for c in held if c.waitFor(lambda c=c: c.goaway is not None or c.closed, 0.2)]
        assert len(evicted) >= 5
        assert all(c.goaway is None or c.goaway.error_code == NO_ERROR for c in evicted)
    finally:
        for connection in held:
            connection.close()
    daemon.assertSurvived(mark)


def test_busy_connections_at_the_cap_mean_polite_refusals(daemon: Attacked):
    """When every connection up to limits.max_connections has a request in progress, a new HTTP/2 client gets SETTINGS and GOAWAY REFUSED_STREAM naming no stream; once they finish, new clients are served again."""
    mark = daemon.mark()
    busy: list[RawConnection] = []
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            connection = connect(daemon.target("h2c"))
            connection.waitFor(lambda: connection.serverSettings or connection.goaway is not None, 5)
            if connection.goaway is not None:
                refused = connection
                break
            connection.request("/drip?chunks=400&interval=0.05")
            connection.waitFor(lambda: connection.statuses, 5)
            busy.append(connection)
        else:
            pytest.fail("no refusal at the connection cap")
        assert (refused.goaway.error_code, refused.goaway.last_stream_id) == (REFUSED_STREAM, 0)
        assert MAX_CONNECTIONS - 5 <= len(busy) <= MAX_CONNECTIONS
        refused.close()
    finally:
        for connection in busy:
            connection.close()
    deadline = time.monotonic() + 10
    while not audit.healthCheck(daemon.target("tls")):
        assert time.monotonic() < deadline, "clients not served again after the busy ones left"
    daemon.assertSurvived(mark, {"/drip?chunks=400&interval=0.05"})
