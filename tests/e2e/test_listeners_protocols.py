"""Cleartext listeners against the real daemon: the first-byte limit
(``timeouts.handshake``) and the protocols a listener speaks (``listeners[].protocols``),
seen by curl and by a raw socket."""

from __future__ import annotations

import socket
import time

import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import GoAwayFrame

from h2proxy.frontend.negotiation import PREFACE
from tests.e2e.conftest import base_config
from tests.e2e.harness import run, start_proxy, write_config
from tests.frontend.frames import framesFromBytes

FIRST_BYTE = 1.0
#: Far below the 30 s a silent cleartext connection was held before.
CLOSE_BOUND = 10.0
GARBAGE = b"INVALID CONNECTION PREFACE\r\n\r\n"
BROKEN_PREFACE = b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n"
LOG_FAULTS = ("Traceback", "Unhandled Error", "CRITICAL", "#critical", "#error")


@pytest.fixture(scope="module")
def proxy(workdir, origin, certificate):
    config = base_config(origin.port, certificate, timeouts={"handshake": f"{FIRST_BYTE}s"})
    config["listeners"] += [
        {"name": "h2c-only", "address": "127.0.0.1", "port": 0, "protocols": ["h2c"]},
        {"name": "h1-only", "address": "127.0.0.1", "port": 0, "protocols": ["http/1.1"]},
    ]
    daemon = start_proxy(write_config(workdir, config), ["tls", "h2c", "h2c-only", "h1-only"])
    yield daemon
    daemon.stop()


def curl(*args: str):
    return run(["curl", "-sS", "--max-time", "10", *args], timeout=30)


def exchange(port: int, data: bytes) -> tuple[bytes, float]:
    """Send C{data} (maybe nothing) on a new connection and read until the server
    closes it; the bytes read and the seconds until the close. A socket timeout
    (not a sleep) bounds the wait."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=CLOSE_BOUND) as sock:
        if data:
            sock.sendall(data)
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
    return received, time.monotonic() - started


def goaways(data: bytes) -> list[int]:
    return [f.error_code for f in framesFromBytes(data) if isinstance(f, GoAwayFrame)]


def assertCleanLog(proxy, mark: int) -> None:
    faults = [line for line in proxy.output.lines[mark:] if any(fault in line for fault in LOG_FAULTS)]
    assert faults == []


def test_a_silent_cleartext_connection_is_closed_at_the_first_byte_limit(proxy):
    """When a client connects to a cleartext listener and sends nothing, the proxy closes it after timeouts.handshake (1 s here), well within 10 s, not after the 30 s request deadline; it logs one info line."""
    mark = proxy.mark()
    received, elapsed = exchange(proxy.ports["h2c"], b"")
    assert received == b"" and FIRST_BYTE - 0.2 < elapsed < CLOSE_BOUND
    proxy.wait_for(r"dropping connection from 127\.0\.0\.1:\d+: nothing received in time", start=mark)
    assertCleanLog(proxy, mark)


def test_curl_h2c_prior_knowledge_is_served_on_an_h2c_only_listener(proxy):
    """When curl speaks h2c with prior knowledge to an h2c-only listener, it gets the origin's answer over HTTP/2."""
    result = curl("--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code} %{http_version}", proxy.url("h2c-only", "/bytes/10"))
    assert (result.returncode, result.stdout) == (0, b"200 2"), result.stderr


def test_curl_http1_fails_cleanly_on_an_h2c_only_listener(proxy):
    """When curl speaks HTTP/1.1 to an h2c-only listener, it gets HTTP/2 frames, not an HTTP/1.1 answer: curl reports a non-HTTP/1.1 reply and fails, and the proxy logs no error."""
    mark = proxy.mark()
    result = curl("--http1.1", "-o", "/dev/null", "-w", "%{http_code}", proxy.url("h2c-only", "/bytes/10"))
    assert result.returncode == 1 and result.stdout == b"000", (result.returncode, result.stderr)
    assert b"HTTP/0.9" in result.stderr, result.stderr
    proxy.wait_for(r"HTTP/2 connection error from 127\.0\.0\.1:\d+", start=mark)
    assertCleanLog(proxy, mark)


def test_garbage_on_an_h2c_only_listener_gets_goaway_protocol_error(proxy):
    """When a raw client sends bytes that are not the HTTP/2 preface to an h2c-only listener (h2spec 3.5/2), it reads GOAWAY PROTOCOL_ERROR, then the connection closes."""
    received, elapsed = exchange(proxy.ports["h2c-only"], GARBAGE)
    assert goaways(received) == [ErrorCodes.PROTOCOL_ERROR] and elapsed < CLOSE_BOUND


def test_a_broken_preface_gets_goaway_protocol_error_on_a_listener_with_both(proxy):
    """When a raw client sends PRI * HTTP/2.0 with a wrong rest of the preface to the default cleartext listener, it reads GOAWAY PROTOCOL_ERROR (not an HTTP/1.1 505), then the close."""
    received, _ = exchange(proxy.ports["h2c"], BROKEN_PREFACE)
    assert not received.startswith(b"HTTP/")
    assert goaways(received) == [ErrorCodes.PROTOCOL_ERROR]


def test_garbage_on_a_listener_with_both_still_gets_http1_400(proxy):
    """When the default cleartext listener gets garbage, the HTTP/1.1 front end answers 400 (it speaks HTTP/1.1 too)."""
    received, _ = exchange(proxy.ports["h2c"], GARBAGE)
    assert received.startswith(b"HTTP/1.1 400 ")


def test_the_preface_on_an_http1_only_listener_gets_505(proxy):
    """When a raw client sends the HTTP/2 preface to an HTTP/1.1-only listener, it reads an HTTP/1.1 505 and the close."""
    received, _ = exchange(proxy.ports["h1-only"], PREFACE)
    assert received.startswith(b"HTTP/1.1 505 HTTP Version Not Supported\r\n")


def test_curl_on_an_http1_only_listener(proxy):
    """When curl speaks HTTP/1.1 to an HTTP/1.1-only listener it is served; with h2c prior knowledge it fails (the 505 is not HTTP/2)."""
    served = curl("--http1.1", "-o", "/dev/null", "-w", "%{http_code}", proxy.url("h1-only", "/bytes/10"))
    assert (served.returncode, served.stdout) == (0, b"200"), served.stderr
    refused = curl("--http2-prior-knowledge", "-o", "/dev/null", proxy.url("h1-only", "/bytes/10"))
    assert refused.returncode != 0, refused.stderr
