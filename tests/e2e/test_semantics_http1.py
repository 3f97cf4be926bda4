"""HTTP/1.1 clients on the same listeners as HTTP/2: curl over TLS (ALPN http/1.1) and
cleartext, a pipelining client, and a 1 GiB chunked upload that streams with bounded
proxy memory. This module runs its own daemon so its peak RSS reflects its transfers."""

from __future__ import annotations

import hashlib
import json

import pytest

from h2proxy_tools.origin import pattern_bytes
from tests.e2e.conftest import base_config
from tests.e2e.harness import pattern_digest, run, start_proxy, upload_pattern, write_config
from tests.e2e.semantics_client import RawHTTP1

GIB = 1024**3
#: What the proxy may hold at its peak while moving 1 GiB (interpreter included).
PEAK_RSS_BOUND_KIB = 160 * 1024


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, origin, certificate):
    workdir = tmp_path_factory.mktemp("semantics-http1")
    proxy = start_proxy(write_config(workdir, base_config(origin.port, certificate)), ["tls", "h2c"])
    yield proxy
    proxy.stop()


@pytest.mark.parametrize("listener", ["tls", "h2c"])
def test_curl_http11_gets_correct_responses(daemon, listener):
    """When curl speaks HTTP/1.1 over TLS or cleartext, the body is exact and the backend sees the HTTP/1.1 hop in Via."""
    result = run(["curl", "-sS", "-k", "--http1.1", "-w", "%{http_version}", daemon.url(listener, "/bytes/100003")])
    assert result.returncode == 0, result.stderr
    assert result.stdout[:-3] == pattern_bytes(100003) and result.stdout[-3:] == b"1.1"
    result = run(["curl", "-sS", "-k", "--http1.1", daemon.url(listener, "/headers")])
    headers = dict(json.loads(result.stdout)["headers"])
    assert headers["via"] == "1.1 h2proxy"
    assert headers["x-forwarded-proto"] == ("https" if listener == "tls" else "http")


def test_pipelined_requests_are_answered_in_order(daemon):
    """When an HTTP/1.1 client sends several requests before reading, each response comes back in order and intact."""
    client = RawHTTP1(daemon.ports["h2c"])
    try:
        client.send(
            b"GET /bytes/10 HTTP/1.1\r\nHost: app.test\r\n\r\n"
            b"POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\n\r\nhello"
            b"GET /headers?third HTTP/1.1\r\nHost: app.test\r\n\r\n"
            b"GET /bytes/70000?chunked=1 HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n"
        )
        responses = [client.read_response() for _ in range(4)]
    finally:
        client.close()
    assert [r.status for r in responses] == [200, 200, 200, 200]
    assert responses[0].body == pattern_bytes(10)
    assert responses[1].json() == {"bytes": 5, "sha256": hashlib.sha256(b"hello").hexdigest()}
    assert responses[2].json()["target"] == "/headers?third"
    assert responses[3].body == pattern_bytes(70000)


def test_one_gib_chunked_upload_streams_with_bounded_memory(daemon):
    """When an HTTP/1.1 client uploads 1 GiB chunked, it arrives intact and the proxy's peak RSS stays bounded."""
    out = upload_pattern(
        ["curl", "-sS", "--http1.1", "-H", "Transfer-Encoding: chunked", "-T", "-", daemon.url("h2c", "/upload")], GIB
    )
    assert json.loads(out) == {"bytes": GIB, "sha256": pattern_digest(GIB)}
    peak = daemon.peak_rss_kib()
    print(f"\n1 GiB HTTP/1.1 chunked upload: proxy peak RSS {peak / 1024:.1f} MiB")
    assert peak < PEAK_RSS_BOUND_KIB
