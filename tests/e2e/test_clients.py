"""Real HTTP/2 clients through the real daemon to a real HTTP/1.1 origin."""

from __future__ import annotations

import hashlib
import json
import re

from h2proxy_tools.origin import pattern_bytes
from tests.e2e.harness import run


def curl(*args: str, timeout: float = 60.0, **kwargs):
    return run(["curl", "-sS", "--fail-with-body", *args], timeout=timeout, **kwargs)


def test_curl_tls_http2_gets_origin_bytes_exactly(proxy):
    """When curl fetches over TLS with --http2, it negotiates h2 and gets the origin's bytes."""
    result = curl("-k", "--http2", "-w", "%{http_version}", "-o", "-", proxy.url("tls", "/bytes/1000003"))
    assert result.returncode == 0, result.stderr
    body, version = result.stdout[:-1], result.stdout[-1:]
    assert version == b"2"
    assert hashlib.sha256(body).digest() == hashlib.sha256(pattern_bytes(1000003)).digest()


def test_curl_h2c_prior_knowledge_gets_origin_bytes_exactly(proxy):
    """When curl speaks h2c with prior knowledge to the cleartext listener, bytes arrive intact."""
    result = curl("--http2-prior-knowledge", proxy.url("h2c", "/bytes/65537?chunked=1"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == pattern_bytes(65537)


def test_forwarded_request_headers(proxy, origin):
    """When a request passes, the origin sees Host from :authority and X-Forwarded-* set by us."""
    result = curl(
        "--http2-prior-knowledge",
        "-H", "X-Forwarded-For: 6.6.6.6",
        "-H", "Cookie: a=1",
        proxy.url("h2c", "/headers?x=1"),
    )
    seen = json.loads(result.stdout)
    headers = dict(seen["headers"])
    assert seen["method"] == "GET" and seen["target"] == "/headers?x=1"
    assert seen["version"] == "HTTP/1.1"
    assert headers["host"] == f"127.0.0.1:{proxy.ports['h2c']}"
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["cookie"] == "a=1"


def test_http11_clients_on_both_listeners(proxy):
    """When curl speaks HTTP/1.1 (ALPN http/1.1 on TLS, plain on cleartext), it is served."""
    for url in (proxy.url("tls", "/bytes/70000"), proxy.url("h2c", "/bytes/70000?chunked=1")):
        result = curl("-k", "--http1.1", "-w", "%{http_version}", url)
        assert result.returncode == 0, result.stderr
        assert result.stdout[:-3] == pattern_bytes(70000) and result.stdout[-3:] == b"1.1"


def test_upload_with_curl_reaches_origin(proxy):
    """When curl posts a body over HTTP/2, the origin receives exactly those bytes."""
    body = pattern_bytes(300001)
    result = curl("-k", "--http2", "--data-binary", "@-", proxy.url("tls", "/upload"), input=body)
    seen = json.loads(result.stdout)
    assert seen == {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}


def test_h2load_20000_requests_without_failure(proxy):
    """When h2load sends 20000 requests on 10 connections x 10 streams, none fails or errors."""
    result = run(["h2load", "-n", "20000", "-c", "10", "-m", "10", proxy.url("h2c", "/")], timeout=240)
    out = result.stdout.decode()
    match = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
    assert match, out
    total, started, done, succeeded, failed, errored = map(int, match.groups())
    assert (done, succeeded, failed, errored) == (20000, 20000, 0, 0), out
    assert "status codes: 20000 2xx" in out, out


def test_nghttp_tls_with_priorities(proxy):
    """When nghttp fetches several resources over TLS at once, each arrives complete."""
    paths = [proxy.url("tls", f"/bytes/{n}") for n in (1, 70000, 200000)]
    result = run(["nghttp", "-ns", *paths], timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(b"/bytes/") >= 3
