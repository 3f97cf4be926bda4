"""Header semantics through the real daemon: the exact field set a backend receives from
a trusted and an untrusted peer (forwarding fields, split cookies, Via, request id),
hop-by-hop fields removed both ways, the same fields forwarded for curl over HTTP/2 and
over HTTP/1.1, a conflicting Host refused; trailers both ways;
1xx responses (100 Continue, 103 Early Hints) passing through."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import base_config
from tests.e2e.h2client import H2Client
from tests.e2e.harness import run, start_proxy, write_config
from tests.e2e.semantics_client import RawHTTP1, h2_response, h2_upload

CLIENT_FIELDS = [
    ("user-agent", "semantics-test"),
    ("cookie", "a=1"),
    ("x-forwarded-for", "6.6.6.6"),
    ("x-forwarded-proto", "https"),
    ("x-forwarded-host", "spoofed.example"),
    ("forwarded", "for=6.6.6.6"),
    ("x-real-ip", "6.6.6.6"),
    ("x-request-id", "lb-request-1"),
    ("cookie", "b=2"),
    ("via", "1.1 edge"),
]


@pytest.fixture(scope="module")
def daemon(workdir, origin, certificate):
    config = base_config(origin.port, certificate, forwarding={"forwarded": True})
    config["listeners"].append(
        {"name": "trusting", "address": "127.0.0.1", "port": 0, "forwarding": {"trusted_proxies": ["127.0.0.1"]}}
    )
    proxy = start_proxy(write_config(workdir, config), ["tls", "h2c", "trusting"])
    yield proxy
    proxy.stop()


def h2_headers(port: int, fields=CLIENT_FIELDS, path: str = "/headers"):
    """Send a GET with C{fields} over h2c; return (what the origin saw, the response)."""
    client = H2Client(port)
    try:
        response = h2_response(client, client.request("GET", path, headers=fields, authority="app.test"))
    finally:
        client.close()
    assert response.status == 200, response
    return response.json(), response


def test_untrusted_peer_forwarding_fields_are_replaced(daemon):
    """When a peer that is not a trusted proxy sends forwarding fields, the backend gets exactly ours."""
    seen, response = h2_headers(daemon.ports["h2c"])
    request_id = response.header(b"x-request-id").decode()
    assert len(request_id) == 16 and request_id != "lb-request-1"
    assert seen["headers"] == [
        ["host", "app.test"],
        ["user-agent", "semantics-test"],
        ["cookie", "a=1; b=2"],
        ["x-forwarded-for", "127.0.0.1"],
        ["x-forwarded-proto", "http"],
        ["x-forwarded-host", "app.test"],
        ["forwarded", "for=127.0.0.1;host=app.test;proto=http"],
        ["x-request-id", request_id],
        ["via", "1.1 edge, 2 h2proxy"],
    ]
    assert response.header(b"via") == b"1.1 h2proxy"


def test_trusted_peer_forwarding_fields_are_extended(daemon):
    """When a trusted proxy sends forwarding fields, the backend gets them extended with this hop."""
    seen, response = h2_headers(daemon.ports["trusting"])
    assert response.header(b"x-request-id") == b"lb-request-1"
    assert seen["headers"] == [
        ["host", "app.test"],
        ["user-agent", "semantics-test"],
        ["x-real-ip", "6.6.6.6"],
        ["cookie", "a=1; b=2"],
        ["x-forwarded-for", "6.6.6.6, 127.0.0.1"],
        ["x-forwarded-proto", "https"],
        ["x-forwarded-host", "spoofed.example"],
        ["forwarded", "for=6.6.6.6, for=127.0.0.1;host=app.test;proto=http"],
        ["x-request-id", "lb-request-1"],
        ["via", "1.1 edge, 2 h2proxy"],
    ]


def test_http11_hop_by_hop_fields_are_removed(daemon):
    """When an HTTP/1.1 client sends connection-specific fields (and fields its Connection names), the backend sees none."""
    client = RawHTTP1(daemon.ports["h2c"])
    try:
        client.send(
            b"GET /headers HTTP/1.1\r\nHost: app.test\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n"
            b"Keep-Alive: timeout=5\r\nTE: trailers\r\nCookie: a=1\r\nAccept: */*\r\nCookie: b=2\r\n\r\n"
        )
        response = client.read_response()
    finally:
        client.close()
    seen = response.json()
    names = [name for name, _ in seen["headers"]]
    assert names == ["host", "accept", "cookie", "x-forwarded-for", "x-forwarded-proto",
                     "x-forwarded-host", "forwarded", "x-request-id", "via"]
    assert dict(seen["headers"])["cookie"] == "a=1; b=2"
    assert dict(seen["headers"])["via"] == "1.1 h2proxy"


def test_response_hop_by_hop_fields_are_removed(daemon):
    """When a backend response carries connection-specific fields, the HTTP/2 client gets none, and lowercase names."""
    client = H2Client(daemon.ports["h2c"])
    try:
        response = h2_response(client, client.request("GET", "/hop-by-hop"))
    finally:
        client.close()
    names = [name for name, _ in response.headers]
    assert b"x-private" not in names and b"keep-alive" not in names and b"connection" not in names
    assert response.header(b"x-mixed-case") == b"Kept" and response.body == b"hop"


#: The same request fields for curl over HTTP/2 and over HTTP/1.1 (curl leaves out of
#: an HTTP/2 request the connection-specific ones itself): hop-by-hop fields, proxy
#: credentials, duplicates, an odd-case name, split cookies, Via.
CURL_FIELDS = [
    "Connection: keep-alive",
    "Keep-Alive: timeout=5",
    "Proxy-Connection: keep-alive",
    "TE: trailers",
    "Proxy-Authorization: Basic dXNlcjpwYXNz",
    "X-Dup: 1",
    "X-Dup: 2",
    "X-Odd-CASE: Mixed Value",
    "Cookie: a=1",
    "Cookie: b=2",
    "Via: 1.1 edge",
    "X-Forwarded-For: 6.6.6.6",
]


def curl_exchange(url: str, protocol: str, extra: list[str] = ()) -> tuple[list[list[str]], list[tuple[str, str]]]:
    """GET C{url} with curl over C{protocol} (``--http2`` or ``--http1.1``) and
    L{CURL_FIELDS}; return the origin's /headers view of the request, with the request
    id and this proxy's Via protocol made neutral, and the response's fields."""
    flags = [arg for field in [*CURL_FIELDS, *extra] for arg in ("-H", field)]
    result = run(["curl", "-sS", "-k", protocol, "-D", "-", *flags, url])
    assert result.returncode == 0, result.stderr
    head, _, body = result.stdout.decode().partition("\r\n\r\n")
    response = [(name.lower(), value) for name, _, value in (line.partition(": ") for line in head.split("\r\n")[1:])]
    if not body.startswith("{"):
        return [], response
    seen = json.loads(body)["headers"]
    return [[name, "ID" if name == "x-request-id" else value.replace("1.1 h2proxy", "2 h2proxy")]
            for name, value in seen], response


def test_curl_over_http2_and_http11_forwards_the_same_fields(daemon):
    """When curl sends the same fields over HTTP/2 and over HTTP/1.1, the backend sees the same forwarded fields (no hop-by-hop field, no Proxy-Authorization) and the client the same response fields."""
    url = daemon.url("tls", "/headers")
    viaH2, _ = curl_exchange(url, "--http2")
    viaH1, _ = curl_exchange(url, "--http1.1", ["Connection: X-Hop", "X-Hop: 1"])
    assert viaH2 == viaH1
    names = [name for name, _ in viaH2]
    assert names == ["host", "user-agent", "accept", "x-dup", "x-dup", "x-odd-case", "cookie",
                     "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded", "x-request-id", "via"]
    assert dict(viaH2)["cookie"] == "a=1; b=2" and dict(viaH2)["x-forwarded-for"] == "127.0.0.1"
    _, responseH2 = curl_exchange(daemon.url("tls", "/hop-by-hop"), "--http2")
    _, responseH1 = curl_exchange(daemon.url("tls", "/hop-by-hop"), "--http1.1")
    kept = {"x-private", "keep-alive", "connection", "x-mixed-case", "via"}
    assert [field for field in responseH2 if field[0] in kept] == [field for field in responseH1 if field[0] in kept]
    assert [field for field in responseH2 if field[0] in kept] == [("x-mixed-case", "Kept"), ("via", "1.1 h2proxy")]


def test_conflicting_host_is_refused(daemon, origin):
    """When an HTTP/2 request's host field differs from :authority, it is refused with 400 and never forwarded."""
    client = H2Client(daemon.ports["h2c"])
    client.conn.config.validate_outbound_headers = False  # h2 itself would refuse to send it
    try:
        stream = client.request("GET", "/headers?conflict=1", headers=[("host", "evil.test")], authority="app.test")
        response = h2_response(client, stream)
    finally:
        client.close()
    assert response.status == 400
    assert not any("conflict=1" in r["target"] for r in origin.requests())


def test_request_trailers_reach_the_backend_as_chunked_trailers(daemon):
    """When an HTTP/2 client sends a body and trailers, the backend reads a chunked body with those trailers."""
    client = H2Client(daemon.ports["h2c"])
    try:
        stream = client.request("POST", "/headers", end_stream=False)
        h2_upload(client, stream, b"x" * 100_000, trailers=[("x-checksum", "42"), ("grpc-timeout", "1S")])
        seen = h2_response(client, stream).json()
    finally:
        client.close()
    assert seen["body_bytes"] == 100_000
    assert dict(seen["headers"])["transfer-encoding"] == "chunked"
    assert seen["trailers"] == [["x-checksum", "42"], ["grpc-timeout", "1S"]]


def test_response_trailers_reach_both_kinds_of_client(daemon):
    """When the backend sends chunked trailers, an HTTP/2 client gets them as trailers, an HTTP/1.1 client as chunked trailers."""
    client = H2Client(daemon.ports["h2c"])
    try:
        response = h2_response(client, client.request("GET", "/trailers"))
    finally:
        client.close()
    assert response.body == b"hello" and response.trailers == [(b"x-checksum", b"abc123")]
    raw = RawHTTP1(daemon.ports["h2c"])
    try:
        raw.send(b"GET /trailers HTTP/1.1\r\nHost: app.test\r\nTE: trailers\r\n\r\n")
        response = raw.read_response()
    finally:
        raw.close()
    assert response.body == b"hello" and response.trailers == [("x-checksum", "abc123")]


def test_early_hints_reach_both_kinds_of_client(daemon):
    """When the backend sends 103 Early Hints, HTTP/2 and HTTP/1.1 clients get it before the final response."""
    client = H2Client(daemon.ports["h2c"])
    try:
        response = h2_response(client, client.request("GET", "/early-hints"))
    finally:
        client.close()
    assert [status for status, _ in response.informational] == [103]
    assert (b"link", b"</style.css>; rel=preload; as=style") in response.informational[0][1]
    assert response.status == 200 and response.body == b"hinted\n"
    raw = RawHTTP1(daemon.ports["h2c"])
    try:
        raw.send(b"GET /early-hints HTTP/1.1\r\nHost: app.test\r\n\r\n")
        response = raw.read_response()
    finally:
        raw.close()
    assert response.informational == [(103, [("link", "</style.css>; rel=preload; as=style")])]
    assert response.status == 200 and response.body == b"hinted\n"


def test_expect_continue_over_http2(daemon):
    """When an HTTP/2 client sends Expect: 100-continue, it gets 100 before sending its body, then the response."""
    client = H2Client(daemon.ports["h2c"])
    try:
        stream = client.request("POST", "/continue", headers=[("expect", "100-continue")], end_stream=False)
        client.run_until(lambda: any(getattr(e, "stream_id", None) == stream for e in client.events))
        first = next(e for e in client.events if getattr(e, "stream_id", None) == stream)
        assert dict(first.headers)[b":status"] == b"100"
        h2_upload(client, stream, b"y" * 5000)
        response = h2_response(client, stream)
    finally:
        client.close()
    assert response.status == 200 and response.json()["bytes"] == 5000


def test_expect_continue_over_http11(daemon):
    """When an HTTP/1.1 client waits for 100 Continue, it gets it, sends its body, and gets the response."""
    raw = RawHTTP1(daemon.ports["tls"], tls=True)
    try:
        raw.send(b"POST /continue HTTP/1.1\r\nHost: app.test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        assert raw.read_head() == (100, [])
        raw.send(b"hello")
        response = raw.read_response()
    finally:
        raw.close()
    assert response.status == 200 and response.json()["bytes"] == 5
