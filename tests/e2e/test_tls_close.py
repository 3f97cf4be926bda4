"""Closing TLS connections as real clients see it: every close the proxy decides on
(end of a body of unknown length, ``Connection: close``, an idle timeout, a backend
dying mid-body, a GOAWAY) sends close_notify and ends at once, on HTTP/1.1 and
HTTP/2 alike, without waiting for the abort window. The abort window is set far
longer than any bound here, so a close that waited for it cannot pass. The daemon
logs no traceback for any of it."""

from __future__ import annotations

import socket
import ssl
import time

import pytest

from h2proxy_tools.audit import PREFACE
from h2proxy_tools.origin import pattern_bytes
from tests.e2e.conftest import base_config
from tests.e2e.harness import poll_until, run, start_proxy, write_config

#: The abort window of this module's daemon: a close that waits for it is a failure.
ABORT_SECONDS = 120
#: The idle timeout of this module's daemon.
IDLE_SECONDS = 1.0
#: How long any close here may take (the defect took the whole abort window).
PROMPT_SECONDS = 5.0
#: curl's own limit: past it curl gives up (exit 28), well before the abort window.
CURL_MAX_TIME = "20"
#: Log lines that mean an error escaped somewhere.
BAD_LOG_MARKERS = ("Traceback", "Unhandled Error", "CRITICAL")
#: An empty SETTINGS frame.
SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
#: A DATA frame on stream 0: a connection error (PROTOCOL_ERROR), so GOAWAY and close.
DATA_ON_STREAM_0 = b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, origin, certificate):
    workdir = tmp_path_factory.mktemp("tls-close")
    config = base_config(origin.port, certificate, timeouts={"abort": f"{ABORT_SECONDS}s", "idle": f"{IDLE_SECONDS}s"})
    proxy = start_proxy(write_config(workdir, config), ["tls", "h2c"])
    yield proxy
    proxy.stop()


def timed_curl(*args: str) -> tuple[object, float]:
    start = time.monotonic()
    result = run(["curl", "-sS", "-k", "--max-time", CURL_MAX_TIME, *args], timeout=60)
    return result, time.monotonic() - start


def tls_client(port: int, alpn: str) -> ssl.SSLSocket:
    """A TLS client that tells a clean close (close_notify: C{recv} returns b"") from a
    truncation (C{SSLEOFError}) or a reset (C{ConnectionResetError})."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols([alpn])
    raw = socket.create_connection(("127.0.0.1", port), timeout=PROMPT_SECONDS + IDLE_SECONDS)
    return context.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False)


def read_to_clean_eof(sock: ssl.SSLSocket) -> bytes:
    """Everything until the server's close_notify; raises on a truncation, a reset or
    the socket timeout."""
    received = bytearray()
    while True:
        data = sock.recv(65536)
        if not data:
            return bytes(received)
        received += data


@pytest.mark.parametrize("listener", ["tls", "h2c"])
def test_http10_body_of_unknown_length_ends_promptly(daemon, listener):
    """When an HTTP/1.0 client gets a chunked backend response (delimited by the close), curl gets it all and exits 0 at once."""
    result, elapsed = timed_curl("--http1.0", daemon.url(listener, "/bytes/100000?chunked=1"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == pattern_bytes(100000)
    assert elapsed < PROMPT_SECONDS


@pytest.mark.parametrize("listener", ["tls", "h2c"])
def test_connection_close_ends_promptly(daemon, listener):
    """When an HTTP/1.1 client asks for Connection: close, curl gets the response and exits 0 at once."""
    result, elapsed = timed_curl("--http1.1", "-H", "Connection: close", daemon.url(listener, "/bytes/1000"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == pattern_bytes(1000)
    assert elapsed < PROMPT_SECONDS


def test_connection_close_ends_with_close_notify(daemon):
    """When an HTTP/1.1 TLS client asks for Connection: close, it reads the response and then a clean TLS close, at once."""
    with tls_client(daemon.ports["tls"], "http/1.1") as sock:
        sock.sendall(b"GET /bytes/1000 HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
        start = time.monotonic()
        received = read_to_clean_eof(sock)
        elapsed = time.monotonic() - start
    assert received.startswith(b"HTTP/1.1 200 ") and received.endswith(pattern_bytes(1000))
    assert elapsed < PROMPT_SECONDS


def test_backend_dying_mid_body_is_reported_promptly(daemon):
    """When the backend dies mid-body under an HTTP/1.1 TLS client, curl reports the truncation at once (not a timeout)."""
    result, elapsed = timed_curl("--http1.1", daemon.url("tls", "/truncate/50000"))
    assert result.returncode not in (0, 28), result.stderr
    assert elapsed < PROMPT_SECONDS


@pytest.mark.parametrize("alpn", ["http/1.1", "h2"])
def test_idle_connection_gets_close_notify_after_the_idle_timeout(daemon, alpn):
    """When a TLS keep-alive client stays idle after its exchange, the proxy closes it with close_notify (a clean EOF, no reset) right after the idle timeout."""
    with tls_client(daemon.ports["tls"], alpn) as sock:
        if alpn == "h2":
            sock.sendall(PREFACE + SETTINGS)
        else:
            sock.sendall(b"GET /bytes/10 HTTP/1.1\r\nHost: app.test\r\n\r\n")
        start = time.monotonic()
        received = read_to_clean_eof(sock)
        elapsed = time.monotonic() - start
    if alpn == "http/1.1":
        assert received.startswith(b"HTTP/1.1 200 ") and received.endswith(pattern_bytes(10))
    assert elapsed < IDLE_SECONDS + PROMPT_SECONDS


def test_h2_protocol_error_goaway_then_close_notify(daemon):
    """When an HTTP/2 client breaks the protocol over TLS, it gets GOAWAY and then a clean TLS close at once."""
    with tls_client(daemon.ports["tls"], "h2") as sock:
        sock.sendall(PREFACE + SETTINGS + DATA_ON_STREAM_0)
        start = time.monotonic()
        received = read_to_clean_eof(sock)
        elapsed = time.monotonic() - start
    assert b"\x07\x00\x00\x00\x00\x00" in received  # a GOAWAY frame header (type 7, no flags, stream 0)
    assert elapsed < PROMPT_SECONDS


def open_server_sockets(ports: set[int]) -> int:
    """Sockets on 127.0.0.1 whose local port is one of C{ports} and that a process still
    holds open (ESTABLISHED or CLOSE_WAIT): once none is left, the worker has run every
    connectionLost, and anything they logged is in the output."""
    count = 0
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            port = int(fields[1].split(":")[1], 16)
            if port in ports and fields[3] in ("01", "08"):
                count += 1
    return count


def end_by_goaway(port: int) -> None:
    """An HTTP/2 TLS connection the proxy ends with GOAWAY, read to its end however it ends."""
    with tls_client(port, "h2") as sock:
        sock.sendall(PREFACE + SETTINGS + DATA_ON_STREAM_0)
        try:
            read_to_clean_eof(sock)
        except (ssl.SSLError, OSError):
            pass


def test_the_log_stays_clean_after_many_closes(daemon):
    """When many HTTP/1.1 and HTTP/2 TLS connections end (by either side, or after GOAWAY), the daemon logs no traceback."""
    for _ in range(5):
        result, _ = timed_curl("--http1.1", daemon.url("tls", "/bytes/10"), daemon.url("tls", "/bytes/10"))
        assert result.returncode == 0, result.stderr
        result, _ = timed_curl("--http1.1", daemon.url("h2c", "/bytes/10"))
        assert result.returncode == 0, result.stderr
    for _ in range(3):
        end_by_goaway(daemon.ports["tls"])
    ports = {daemon.ports["tls"], daemon.ports["h2c"]}
    poll_until(lambda: open_server_sockets(ports) == 0, timeout=PROMPT_SECONDS, what="every client connection closed")
    bad = [line for line in daemon.output.lines if any(marker in line for marker in BAD_LOG_MARKERS)]
    assert not bad, "\n".join(daemon.output.lines[-80:])
