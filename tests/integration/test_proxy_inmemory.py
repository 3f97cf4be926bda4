"""The whole proxy path in memory: a real h2 client, our H2Connection, the bridge and
the upstream pool, with the backend played on a StringTransport. No sockets, no time
but the fake clock. These tests assert that finished, reset and failed exchanges leave
nothing behind in the connection's, the bridge's or the pool's tables."""

from __future__ import annotations

import h2.errors
from twisted.internet import defer
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.internet.error import ConnectionLost

from h2proxy.bridge.bridge import BridgeContext
from h2proxy.bridge.routing import Router
from h2proxy.config.model import RouteConfig
from h2proxy.config.upstreams import ServerConfig, UpstreamConfig
from h2proxy.upstream.pool import UpstreamPool
from tests.frontend.support import Client, Server


class BackendEndpoint:
    """Connects the pool's protocols to StringTransports the test reads and answers."""

    def __init__(self) -> None:
        self.connections: list[tuple[object, StringTransport]] = []

    def connect(self, factory):
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.connections.append((protocol, transport))
        return defer.succeed(protocol)


class Proxy:
    def __init__(self) -> None:
        self.endpoint = BackendEndpoint()
        self.server = Server(handlerClass=self._handler)
        upstream = UpstreamConfig(name="app", servers=(ServerConfig(host="127.0.0.1", port=9),))
        self.pool = UpstreamPool(
            reactor=self.server.clock,
            config=upstream,
            connectTimeout=5.0,
            responseTimeout=30.0,
            endpointFactory=lambda server: self.endpoint,
        )
        self.context = BridgeContext(
            router=Router((RouteConfig(upstream="app"),)), pools={"app": self.pool}
        )
        self.client = Client(self.server)

    def _handler(self, stream):
        return self.context.handlerFactory(stream)

    def backend(self, index: int = 0):
        return self.endpoint.connections[index]

    def assertNoLeftovers(self) -> None:
        self.server.assertNoLeftovers()
        assert self.context.active == set()
        assert self.pool.activeCount == 0


def test_exchange_completes_and_connection_is_pooled():
    """When a request is answered in full, the client gets it, the backend connection goes
    back to the pool, and no table keeps the stream."""
    proxy = Proxy()
    stream = proxy.client.request(b"/hello")
    protocol, transport = proxy.backend()
    assert transport.value() == (
        b"GET /hello HTTP/1.1\r\nhost: example.org\r\nx-forwarded-for: 192.168.1.1\r\n"
        b"x-forwarded-proto: https\r\n\r\n"
    )
    protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello")
    proxy.client.flush()
    response = proxy.client.response(stream)
    assert response["status"] == 200 and response["body"] == b"hello" and response["ended"]
    assert (b"x-a", b"1") in response["headers"]
    assert not transport.disconnecting
    assert proxy.pool.idleCount == 1
    proxy.assertNoLeftovers()


def test_client_reset_closes_backend_connection_and_clears_state():
    """When the client resets a stream mid-response, the backend connection is closed and
    every table forgets the stream."""
    proxy = Proxy()
    stream = proxy.client.request(b"/big")
    protocol, transport = proxy.backend()
    protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 1000)
    proxy.client.flush()
    proxy.client.conn.reset_stream(stream, h2.errors.ErrorCodes.CANCEL)
    proxy.client.flush()
    assert transport.disconnecting
    protocol.connectionLost(Failure(ConnectionLost()))
    proxy.server.clock.advance(0)
    assert proxy.pool.idleCount == 0
    proxy.assertNoLeftovers()


def test_backend_dying_mid_body_resets_stream_and_clears_state():
    """When the backend connection is lost mid-body, the client's stream is reset with
    INTERNAL_ERROR and nothing is left behind."""
    proxy = Proxy()
    stream = proxy.client.request(b"/big")
    protocol, transport = proxy.backend()
    protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
    proxy.client.flush()
    protocol.connectionLost(Failure(ConnectionLost()))
    proxy.server.clock.advance(0)
    proxy.client.flush()
    response = proxy.client.response(stream)
    assert response["status"] == 200 and response["body"] == b"partial"
    assert response["reset"] == h2.errors.ErrorCodes.INTERNAL_ERROR
    proxy.assertNoLeftovers()


def test_request_body_credit_follows_backend_transport():
    """When the backend transport pauses the request body, the client gets no window credit
    for what it sends meanwhile; when it resumes, the held body flows and credit returns."""
    proxy = Proxy()
    stream = proxy.client.request(b"/up", method=b"POST", body=b"a" * 10, end=False)
    protocol, transport = proxy.backend()
    assert b"transfer-encoding: chunked" in transport.value()
    transport.producer.pauseProducing()
    held = 600_000
    window = proxy.client.conn.local_flow_control_window(stream)
    proxy.client.sendBody(stream, b"b" * held, end=False)
    proxy.client.flush()
    assert proxy.client.conn.local_flow_control_window(stream) == window - held
    assert transport.value().count(b"b") == 0
    transport.producer.resumeProducing()
    proxy.client.flush()
    assert transport.value().count(b"b") == held
    assert proxy.client.conn.local_flow_control_window(stream) > window - held
