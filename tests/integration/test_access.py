"""A route's allow and deny through the real front ends, wired by
ProxyServer.factoryFor as the daemon wires them: an HTTP/1.1 client (raw bytes) and
an HTTP/2 client (a real h2 client, prior knowledge), directly and behind a trusted
proxy's X-Forwarded-For. In memory: no sockets."""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport

from h2proxy.config.load import load_config_text
from h2proxy.observability.accesslog import format_combined
from h2proxy.worker.server import ProxyServer
from tests.bridge.test_bridge import FakePool
from tests.integration import test_redirects

CONFIG = """
listeners:
  - name: main
    address: 127.0.0.1
    port: 8080
  - name: behind-lb
    address: 127.0.0.1
    port: 8081
    forwarding:
      trusted_proxies: [192.0.2.0/24]
upstreams:
  app:
    servers:
      - address: 127.0.0.1:9
routes:
  - upstream: app
  - path: /admin
    upstream: app
    allow: [10.0.0.0/8]
  - path: /x
    upstream: app
    deny: [192.0.2.0/24]
"""

CLIENT = IPv4Address("TCP", "192.0.2.7", 40000)


class Proxy(test_redirects.Proxy):
    """One listener of a ProxyServer built from this module's CONFIG, its backend pool faked."""

    def __init__(self, listener: int) -> None:
        config = load_config_text(CONFIG, "/nonexistent/h2proxy.yaml")
        self.clock = MemoryReactorClock()
        server = ProxyServer(config, self.clock)
        self.pool = FakePool()
        server.context.pools["app"] = self.pool
        self.observer = server.context.observer = test_redirects.Recorder()
        self.protocol = server.factoryFor(config.listeners[listener]).buildProtocol(CLIENT)
        self.transport = StringTransport(peerAddress=CLIENT)
        self.protocol.makeConnection(self.transport)


def test_a_client_outside_allow_gets_403_on_http1():
    """When an HTTP/1.1 client outside allow asks, it gets 403 with Proxy-Status and nothing is forwarded."""
    proxy = Proxy(0)
    status, lines, body = proxy.http1(b"GET /admin HTTP/1.1\r\nHost: example.org\r\n\r\n")
    assert status == b"HTTP/1.1 403 Forbidden"
    assert any(line.startswith(b"proxy-status: h2proxy; error=http_request_denied") for line in lines)
    assert body.startswith(b"403 forbidden (request id ")
    assert proxy.pool.exchanges == []
    (record,) = proxy.observer.finished
    assert " 403 " in format_combined(record) and "error=http_request_denied" in format_combined(record)


def test_a_denied_client_gets_403_on_http2():
    """When an HTTP/2 client in deny asks, it gets 403; the open route still forwards."""
    proxy = Proxy(0)
    answer = proxy.http2(b"/x/y", b"example.org")
    assert dict(answer["headers"])[b":status"] == b"403" and answer["ended"]
    assert b"403 forbidden" in answer["body"] and proxy.pool.exchanges == []
    open_route = Proxy(0)
    open_route.http1(b"GET /open HTTP/1.1\r\nHost: example.org\r\n\r\n")
    assert len(open_route.pool.exchanges) == 1


def test_behind_a_trusted_proxy_the_forwarded_client_is_judged():
    """When the peer is a trusted proxy, the client its X-Forwarded-For names is judged: allowed in, and not denied."""
    allowed = Proxy(1)
    allowed.http1(b"GET /admin HTTP/1.1\r\nHost: example.org\r\nX-Forwarded-For: 10.1.1.1\r\n\r\n")
    assert len(allowed.pool.exchanges) == 1
    undenied = Proxy(1)
    undenied.http1(b"GET /x HTTP/1.1\r\nHost: example.org\r\nX-Forwarded-For: 198.51.100.1\r\n\r\n")
    assert len(undenied.pool.exchanges) == 1


def test_on_an_untrusting_listener_forwarded_for_is_ignored():
    """When the listener trusts nobody, X-Forwarded-For naming an allowed address does not let the client in."""
    proxy = Proxy(0)
    status, _, _ = proxy.http1(b"GET /admin HTTP/1.1\r\nHost: example.org\r\nX-Forwarded-For: 10.1.1.1\r\n\r\n")
    assert status == b"HTTP/1.1 403 Forbidden" and proxy.pool.exchanges == []
