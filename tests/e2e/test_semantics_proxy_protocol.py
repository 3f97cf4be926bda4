"""Listeners behind an L4 load balancer (``proxy_protocol: true``): the client address
from a PROXY v1 or v2 header reaches the backend in X-Forwarded-For, over cleartext
and TLS, with HTTP/1.1 and HTTP/2; a connection without the header is dropped."""

from __future__ import annotations

import json
import socket

import h2.config
import h2.connection
import h2.events
import pytest

from tests.e2e.conftest import base_config
from tests.e2e.harness import start_proxy, write_config
from tests.e2e.semantics_client import RawHTTP1, proxy_v1, proxy_v2, tls_context


@pytest.fixture(scope="module")
def daemon(workdir, origin, certificate):
    config = base_config(origin.port, certificate)
    for listener in config["listeners"]:
        listener["proxy_protocol"] = True
    proxy = start_proxy(write_config(workdir, config), ["tls", "h2c"])
    yield proxy
    proxy.stop()


def forwarded_for(response_body: bytes) -> str:
    return dict(json.loads(response_body)["headers"])["x-forwarded-for"]


def http11_get(port: int, prefix: bytes, tls: bool) -> bytes:
    client = RawHTTP1(port, tls=tls, prefix=prefix)
    try:
        client.send(b"GET /headers HTTP/1.1\r\nHost: app.test\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n")
        response = client.read_response()
    finally:
        client.close()
    assert response.status == 200
    return response.body


def h2_get_over_tls(port: int, prefix: bytes) -> bytes:
    """One HTTP/2 GET over TLS (ALPN h2) on a connection that starts with C{prefix}."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    raw.sendall(prefix)
    sock = tls_context(["h2"]).wrap_socket(raw, server_hostname="localhost")
    assert sock.selected_alpn_protocol() == "h2"
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "GET"), (":scheme", "https"), (":authority", "app.test"), (":path", "/headers")],
                      end_stream=True)
    sock.sendall(conn.data_to_send())
    body = b""
    try:
        while True:
            data = sock.recv(65536)
            assert data, "connection closed before the response ended"
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.DataReceived):
                    body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    return body
            sock.sendall(conn.data_to_send())
    finally:
        sock.close()


def test_proxy_v1_cleartext_http11(daemon):
    """When a PROXY v1 header precedes a cleartext HTTP/1.1 request, X-Forwarded-For is the client it names."""
    body = http11_get(daemon.ports["h2c"], proxy_v1("203.0.113.21", 40001, daemon.ports["h2c"]), tls=False)
    assert forwarded_for(body) == "203.0.113.21"


def test_proxy_v2_tls_http11(daemon):
    """When a PROXY v2 header precedes a TLS HTTP/1.1 request, X-Forwarded-For is the client it names."""
    body = http11_get(daemon.ports["tls"], proxy_v2("203.0.113.22", 40002, daemon.ports["tls"]), tls=True)
    assert forwarded_for(body) == "203.0.113.22"


def test_proxy_v1_and_v2_tls_http2(daemon):
    """When a PROXY header (v1 or v2) precedes a TLS HTTP/2 connection, X-Forwarded-For is the client it names."""
    port = daemon.ports["tls"]
    assert forwarded_for(h2_get_over_tls(port, proxy_v1("198.51.100.31", 40003, port))) == "198.51.100.31"
    assert forwarded_for(h2_get_over_tls(port, proxy_v2("198.51.100.32", 40004, port))) == "198.51.100.32"


def test_connection_without_proxy_header_is_dropped(daemon):
    """When a client connects without a PROXY header, the connection is closed without an answer."""
    client = RawHTTP1(daemon.ports["h2c"])
    try:
        client.send(b"GET /headers HTTP/1.1\r\nHost: app.test\r\n\r\n")
        assert client.sock.recv(100) == b""
    finally:
        client.close()
