"""Redirects through the real front ends, wired by ProxyServer.factoryFor as the
daemon wires them: an HTTP/2 client (frames from a real h2 client, prior knowledge)
and an HTTP/1.1 client (raw bytes) on a listener with redirect_https, and on a
listener whose routes include a redirect. In memory: no sockets."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport

from h2proxy.config.load import load_config_text
from h2proxy.observability.accesslog import NullObserver, RequestRecord, format_combined
from h2proxy.worker.server import ProxyServer
from tests.bridge.test_bridge import FakePool

CONFIG = """
listeners:
  - name: web
    address: 127.0.0.1
    port: 8080
    redirect_https: 443
  - name: web-other-port
    address: 127.0.0.1
    port: 8081
    redirect_https: 8443
  - name: main
    address: 127.0.0.1
    port: 8082
upstreams:
  app:
    servers:
      - address: 127.0.0.1:9
routes:
  - upstream: app
  - path: /old
    redirect:
      location: https://example.org/new?from=old
"""

CLIENT = IPv4Address("TCP", "192.0.2.7", 40000)


class Recorder(NullObserver):
    """Keeps every finished request's record."""

    def __init__(self) -> None:
        super().__init__()
        self.finished: list[RequestRecord] = []

    def requestFinished(self, record: RequestRecord) -> None:
        super().requestFinished(record)
        self.finished.append(record)


class Proxy:
    """One listener of a ProxyServer built from CONFIG, its backend pool faked."""

    def __init__(self, listener: int) -> None:
        config = load_config_text(CONFIG, "/nonexistent/h2proxy.yaml")
        self.clock = MemoryReactorClock()
        server = ProxyServer(config, self.clock)
        self.pool = FakePool()
        server.context.pools["app"] = self.pool
        self.observer = server.context.observer = Recorder()
        self.protocol = server.factoryFor(config.listeners[listener]).buildProtocol(CLIENT)
        self.transport = StringTransport(peerAddress=CLIENT)
        self.protocol.makeConnection(self.transport)

    def http1(self, request: bytes) -> tuple[bytes, list[bytes], bytes]:
        """Send raw HTTP/1.1 bytes; the status line, field lines and body back."""
        self.protocol.dataReceived(request)
        head, _, body = self.transport.value().partition(b"\r\n\r\n")
        status, *lines = head.split(b"\r\n")
        return status, lines, body

    def http2(self, path: bytes, authority: bytes, method: bytes = b"GET", body: bytes | None = None) -> dict:
        """Send one request from a real h2 client (prior knowledge); what came back."""
        client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        client.initiate_connection()
        client.send_headers(
            1,
            [(b":method", method), (b":scheme", b"http"), (b":authority", authority), (b":path", path)],
            end_stream=body is None,
        )
        if body is not None:
            client.send_data(1, body, end_stream=True)
        self.protocol.dataReceived(client.data_to_send())
        self.clock.advance(0)
        answer: dict = {"body": b"", "ended": False}
        for event in client.receive_data(self.transport.value()):
            if isinstance(event, h2.events.ResponseReceived):
                answer["headers"] = event.headers
            elif isinstance(event, h2.events.DataReceived):
                answer["body"] += event.data
            elif isinstance(event, h2.events.StreamEnded):
                answer["ended"] = True
        return answer


def test_http1_request_on_a_redirecting_listener_gets_308_to_https():
    """When an HTTP/1.1 request arrives on a redirect_https listener, it gets 308 with the https Location (port stripped, query and escapes kept), an empty body, and no backend is asked."""
    proxy = Proxy(0)
    status, lines, body = proxy.http1(b"GET /a%2Fb/caf%C3%A9?q=%20x&y HTTP/1.1\r\nHost: example.org:8080\r\n\r\n")
    assert status == b"HTTP/1.1 308 Permanent Redirect"
    assert b"location: https://example.org/a%2Fb/caf%C3%A9?q=%20x&y" in lines
    assert b"content-length: 0" in lines and body == b""
    assert proxy.pool.exchanges == []
    line = format_combined(proxy.observer.finished[0])
    assert '"GET /a%2Fb/caf%C3%A9?q=%20x&y HTTP/1.1" 308 0 ' in line and " host=example.org:8080 " in line


def test_http2_request_on_a_redirecting_listener_gets_308_to_https():
    """When an HTTP/2 (h2c) request arrives on a redirect_https listener, it gets the same 308 and Location, the stream ends, and no backend is asked."""
    proxy = Proxy(0)
    answer = proxy.http2(b"/a%2Fb/caf%C3%A9?q=%20x&y", b"example.org:8080")
    fields = dict(answer["headers"])
    assert fields[b":status"] == b"308"
    assert fields[b"location"] == b"https://example.org/a%2Fb/caf%C3%A9?q=%20x&y"
    assert answer["ended"] and answer["body"] == b""
    assert proxy.pool.exchanges == []
    assert '"GET /a%2Fb/caf%C3%A9?q=%20x&y HTTP/2.0" 308 0 ' in format_combined(proxy.observer.finished[0])


def test_a_post_with_a_body_is_redirected_on_both_front_ends():
    """When a POST with a body is redirected, both clients get 308 (which keeps the method) and the body reaches no backend."""
    proxy = Proxy(1)
    status, lines, _ = proxy.http1(b"POST /form HTTP/1.1\r\nHost: example.org\r\nContent-Length: 3\r\n\r\nabc")
    assert status == b"HTTP/1.1 308 Permanent Redirect" and b"location: https://example.org:8443/form" in lines
    other = Proxy(1)
    answer = other.http2(b"/form", b"example.org", method=b"POST", body=b"abc")
    assert dict(answer["headers"])[b"location"] == b"https://example.org:8443/form"
    assert proxy.pool.exchanges == [] and other.pool.exchanges == []


def test_http10_request_without_a_host_gets_400():
    """When an HTTP/1.0 request names no host, there is nothing to redirect to: 400."""
    proxy = Proxy(0)
    status, _, body = proxy.http1(b"GET / HTTP/1.0\r\n\r\n")
    assert status == b"HTTP/1.1 400 Bad Request" and b"400 bad request" in body
    assert proxy.observer.finished[0].status == 400


def test_a_redirect_route_on_both_front_ends():
    """When a request matches a redirecting route on an ordinary listener, both clients get 301 and its Location; other paths still reach the backend."""
    proxy = Proxy(2)
    status, lines, body = proxy.http1(b"GET /old/x HTTP/1.1\r\nHost: example.org\r\n\r\n")
    assert status == b"HTTP/1.1 301 Moved Permanently"
    assert b"location: https://example.org/new?from=old" in lines and body == b""
    answer = Proxy(2).http2(b"/old", b"example.org")
    assert dict(answer["headers"])[b":status"] == b"301"
    assert dict(answer["headers"])[b"location"] == b"https://example.org/new?from=old"
    assert proxy.pool.exchanges == []
    assert " route=*/old upstream=- " in format_combined(proxy.observer.finished[0])
    proxy.http1(b"GET /other HTTP/1.1\r\nHost: example.org\r\n\r\n")
    assert len(proxy.pool.exchanges) == 1
