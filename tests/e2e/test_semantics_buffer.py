"""``request_body: buffer`` through the real daemon: a body sent without a length (HTTP/2
without content-length, HTTP/1.1 chunked) reaches the backend with a Content-Length;
a body over the route's buffer_limit gets 413 and the backend never sees the request."""

from __future__ import annotations

import hashlib

import pytest

from tests.e2e.conftest import base_config
from tests.e2e.h2client import H2Client
from tests.e2e.harness import start_proxy, write_config
from tests.e2e.semantics_client import RawHTTP1, h2_response, h2_upload

LIMIT = 1024 * 1024


@pytest.fixture(scope="module")
def daemon(workdir, origin, certificate):
    config = base_config(origin.port, certificate)
    config["routes"].append(
        {"path": "/wsgi", "upstream": "app", "strip_prefix": True, "request_body": "buffer", "buffer_limit": "1MiB"}
    )
    proxy = start_proxy(write_config(workdir, config), ["tls", "h2c"])
    yield proxy
    proxy.stop()


def test_http2_body_without_length_gets_a_content_length(daemon):
    """When an HTTP/2 client sends 600 KiB without content-length to a buffering route, the backend gets Content-Length."""
    body = bytes(range(256)) * 2400
    client = H2Client(daemon.ports["h2c"])
    try:
        stream = client.request("POST", "/wsgi/headers", end_stream=False)
        h2_upload(client, stream, body)
        response = h2_response(client, stream)
    finally:
        client.close()
    seen = response.json()
    headers = dict(seen["headers"])
    assert headers["content-length"] == str(len(body)) and "transfer-encoding" not in headers
    assert seen["target"] == "/headers" and seen["body_bytes"] == len(body)


def test_http11_chunked_body_gets_a_content_length(daemon):
    """When an HTTP/1.1 client sends a chunked body to a buffering route, the backend reads it by Content-Length, intact."""
    client = RawHTTP1(daemon.ports["tls"], tls=True)
    try:
        client.send(b"POST /wsgi/upload HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        response = client.read_response()
    finally:
        client.close()
    assert response.json() == {"bytes": 11, "sha256": hashlib.sha256(b"hello world").hexdigest()}


def test_body_over_the_buffer_limit_is_413_before_the_backend(daemon, origin):
    """When a buffered body passes buffer_limit, the client gets 413 and the backend never sees the request."""
    client = H2Client(daemon.ports["h2c"])
    try:
        stream = client.request("POST", "/wsgi/upload?too-big=1", end_stream=False)
        h2_upload(client, stream, b"z" * (LIMIT + 65536))
        response = h2_response(client, stream)
    finally:
        client.close()
    assert response.status == 413
    assert b"error=http_request_denied" in response.header(b"proxy-status")
    assert not any("too-big" in r["target"] for r in origin.requests())
