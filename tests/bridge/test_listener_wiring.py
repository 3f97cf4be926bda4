"""ProxyServer.factoryFor wires each listener's semantics: the PROXY protocol header
gives the bridge the real client address, and a listener's forwarding override
applies to its requests only. Driven in memory with HTTP/1.1 requests."""

from __future__ import annotations

import socket
import struct

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport

from h2proxy.config.load import load_config_text
from h2proxy.worker.server import ProxyServer
from tests.bridge.test_bridge import FakePool

CONFIG = """
listeners:
  - name: behind-lb
    address: 127.0.0.1
    port: 0
    proxy_protocol: true
  - name: internal
    address: 127.0.0.1
    port: 0
    forwarding:
      trusted_proxies: [10.0.0.0/8]
upstreams:
  app:
    servers:
      - address: 127.0.0.1:9
routes:
  - upstream: app
"""

LOAD_BALANCER = IPv4Address("TCP", "10.0.0.5", 40000)
REQUEST = b"GET /headers HTTP/1.1\r\nHost: example.org\r\nX-Forwarded-For: 198.51.100.1\r\n\r\n"


def serve(listener_index: int):
    config = load_config_text(CONFIG, "/nonexistent/h2proxy.yaml")
    server = ProxyServer(config, MemoryReactorClock())
    pool = FakePool()
    server.context.pools["app"] = pool
    factory = server.factoryFor(config.listeners[listener_index])
    protocol = factory.buildProtocol(LOAD_BALANCER)
    transport = StringTransport(peerAddress=LOAD_BALANCER)
    protocol.makeConnection(transport)
    return protocol, transport, pool


def sent_headers(pool) -> dict[bytes, bytes]:
    return dict(pool.exchanges[0].request.headers)


def proxy_v2(source: str, port: int) -> bytes:
    """A PROXY protocol v2 header for a TCP over IPv4 connection from C{source}:C{port}."""
    addresses = socket.inet_aton(source) + socket.inet_aton("127.0.0.1") + struct.pack("!HH", port, 443)
    return b"\r\n\r\n\x00\r\nQUIT\n" + b"\x21\x11" + struct.pack("!H", len(addresses)) + addresses


def test_proxy_v1_header_gives_the_client_address():
    """When a load balancer sends a PROXY v1 header, X-Forwarded-For carries the client it names, not the balancer."""
    protocol, transport, pool = serve(0)
    protocol.dataReceived(b"PROXY TCP4 203.0.113.9 127.0.0.1 51000 443\r\n" + REQUEST)
    headers = sent_headers(pool)
    assert headers[b"x-forwarded-for"] == b"203.0.113.9"
    assert headers[b"via"] == b"1.1 h2proxy"


def test_proxy_v2_header_gives_the_client_address():
    """When a load balancer sends a PROXY v2 header, X-Forwarded-For carries the client it names."""
    protocol, transport, pool = serve(0)
    protocol.dataReceived(proxy_v2("203.0.113.10", 51001) + REQUEST)
    assert sent_headers(pool)[b"x-forwarded-for"] == b"203.0.113.10"


def test_missing_proxy_header_closes_the_connection():
    """When a client skips the PROXY header on a listener that expects one, the connection is closed unanswered."""
    protocol, transport, pool = serve(0)
    protocol.dataReceived(REQUEST)
    assert transport.disconnecting and pool.exchanges == [] and transport.value() == b""


def test_listener_forwarding_override_applies_to_that_listener():
    """When one listener trusts a network, its peers' X-Forwarded-For is extended; the other listener replaces it."""
    protocol, transport, pool = serve(1)
    protocol.dataReceived(REQUEST)
    assert sent_headers(pool)[b"x-forwarded-for"] == b"198.51.100.1, 10.0.0.5"
    protocol, transport, pool = serve(0)
    protocol.dataReceived(b"PROXY TCP4 10.0.0.77 127.0.0.1 51000 443\r\n" + REQUEST)
    assert sent_headers(pool)[b"x-forwarded-for"] == b"10.0.0.77"
