"""Both front ends forward the same fields: the same request sent by an HTTP/2 client
(frames from a real h2 client) and by an HTTP/1.1 client (raw bytes) reaches the
backend as the same bytes, through the real front ends, the real bridge and the real
upstream pool; and the same backend response reaches both clients with the same
fields.

HTTP/2 forbids the connection-specific fields outright (RFC 9113 8.2.2: Connection,
Keep-Alive, Proxy-Connection, Transfer-Encoding, Upgrade), so those, and the fields a
Connection header names, are sent by the HTTP/1.1 client only: it must drop them and
end up where the HTTP/2 client starts.
"""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock, StringTransport

from h2proxy.bridge.bridge import BridgeContext
from h2proxy.bridge.routing import Router
from h2proxy.config.model import RouteConfig
from h2proxy.config.upstreams import ServerConfig, UpstreamConfig
from h2proxy.frontend.http1.factory import HTTP1Factory
from h2proxy.httpdate import DateField
from h2proxy.upstream.pool import UpstreamPool
from tests.frontend.support import Client, Server
from tests.integration.test_proxy_inmemory import BackendEndpoint

#: Fields both clients send: ordinary, duplicated, hop-by-hop fields HTTP/2 allows,
#: proxy credentials, forwarding fields from an untrusted client, Via.
COMMON_FIELDS = [
    (b"accept", b"*/*"),
    (b"user-agent", b"field-test/1"),
    (b"x-dup", b"1"),
    (b"x-dup", b"2"),
    (b"cookie", b"a=1"),
    (b"cookie", b"b=2"),
    (b"te", b"trailers"),
    (b"trailer", b"x-sum"),
    (b"proxy-authorization", b"Basic dXNlcjpwYXNz"),
    (b"proxy-authenticate", b"Basic"),
    (b"http2-settings", b"AAMAAABkAAQAAP__"),
    (b"via", b"1.1 edge"),
    (b"forwarded", b"for=203.0.113.9"),
    (b"x-forwarded-for", b"203.0.113.9"),
    (b"x-real-ip", b"203.0.113.9"),
    (b"x-odd-case", b"Mixed Value"),
]

#: What only the HTTP/1.1 client can send: connection-specific fields, a field its
#: Connection header names, and a name in odd case.
HTTP1_ONLY_LINES = (
    b"Connection: keep-alive, X-Hop\r\n"
    b"X-Hop: secret\r\n"
    b"Keep-Alive: timeout=5\r\n"
    b"Proxy-Connection: keep-alive\r\n"
    b"Upgrade: h2c\r\n"
)

#: The backend's response: hop-by-hop fields, a field its Connection header names,
#: proxy credentials, duplicates and an odd-case name.
BACKEND_RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Length: 2\r\n"
    b"Connection: X-Resp-Hop\r\n"
    b"X-Resp-Hop: 1\r\n"
    b"Keep-Alive: timeout=5\r\n"
    b"Proxy-Authenticate: Basic realm=x\r\n"
    b"Proxy-Connection: keep-alive\r\n"
    b"Upgrade: foo\r\n"
    b"Set-Cookie: a=1\r\n"
    b"Set-Cookie: b=2\r\n"
    b"X-Odd-CASE: v\r\n"
    b"Via: 1.1 origin\r\n"
    b"\r\n"
    b"ok"
)


def _context(clock: MemoryReactorClock, endpoint: BackendEndpoint) -> BridgeContext:
    """The real bridge in front of the real pool, whose backend is C{endpoint}."""
    pool = UpstreamPool(
        reactor=clock,
        config=UpstreamConfig(name="app", servers=(ServerConfig(host="127.0.0.1", port=9),)),
        connectTimeout=5.0,
        responseTimeout=30.0,
        endpointFactory=lambda server: endpoint,
    )
    return BridgeContext(router=Router((RouteConfig(upstream="app"),)), pools={"app": pool},
                         dates=DateField(clock=lambda: 784111777))


class ViaHTTP2:
    """The request from a real h2 client through H2Connection."""

    def __init__(self) -> None:
        self.endpoint = BackendEndpoint()
        self.server = Server(handlerClass=lambda stream: self.context.handlerFactory(stream))
        self.context = _context(self.server.clock, self.endpoint)
        self.client = Client(self.server)
        self.stream = self.client.request(b"/fields?q=1", extra=COMMON_FIELDS)

    def backendRequest(self) -> bytes:
        return self.endpoint.connections[0][1].value()

    def respond(self, data: bytes) -> list[tuple[bytes, bytes]]:
        self.endpoint.connections[0][0].dataReceived(data)
        self.client.flush()
        response = self.client.response(self.stream)
        assert response["status"] == 200 and response["body"] == b"ok"
        return [field for field in response["headers"] if not field[0].startswith(b":")]


class ViaHTTP1:
    """The request as raw bytes through the HTTP/1.1 front end."""

    def __init__(self) -> None:
        self.endpoint = BackendEndpoint()
        clock = MemoryReactorClock()
        context = _context(clock, self.endpoint)
        factory = HTTP1Factory(reactor=clock, handlerFactory=context.handlerFactory, idleTimeout=30, secure=True)
        self.protocol = factory.buildProtocol(None)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)
        lines = b"".join(b"%s: %s\r\n" % (_odd_case(name), value) for name, value in COMMON_FIELDS)
        self.protocol.dataReceived(
            b"GET /fields?q=1 HTTP/1.1\r\nHost: example.org\r\n" + lines + HTTP1_ONLY_LINES + b"\r\n"
        )

    def backendRequest(self) -> bytes:
        return self.endpoint.connections[0][1].value()

    def respond(self, data: bytes) -> list[tuple[bytes, bytes]]:
        self.endpoint.connections[0][0].dataReceived(data)
        head, _, body = self.transport.value().partition(b"\r\n\r\n")
        status, *lines = head.split(b"\r\n")
        assert status == b"HTTP/1.1 200 OK" and body == b"ok"
        return [(name.lower(), value) for name, _, value in (line.partition(b": ") for line in lines)]


def _odd_case(name: bytes) -> bytes:
    """C{name} as a sloppy HTTP/1.1 client might write it: ``X-oDD-cASE``."""
    return bytes(c ^ 0x20 if c in b"aeiouxyz" else c for c in name.title())


def test_both_front_ends_send_the_backend_the_same_request_bytes():
    """When an HTTP/2 and an HTTP/1.1 client send the same request fields, the backend receives byte-identical requests, without hop-by-hop fields, Connection-named fields or proxy credentials."""
    viaH2, viaH1 = ViaHTTP2(), ViaHTTP1()
    forwarded = viaH2.backendRequest()
    assert forwarded == viaH1.backendRequest()
    assert forwarded == (
        b"GET /fields?q=1 HTTP/1.1\r\n"
        b"host: example.org\r\n"
        b"accept: */*\r\n"
        b"user-agent: field-test/1\r\n"
        b"x-dup: 1\r\n"
        b"x-dup: 2\r\n"
        b"x-odd-case: Mixed Value\r\n"
        b"cookie: a=1; b=2\r\n"
        b"x-forwarded-for: 192.168.1.1\r\n"
        b"x-forwarded-proto: https\r\n"
        b"via: 1.1 edge\r\n"
        b"\r\n"
    )


def test_both_front_ends_give_the_client_the_same_response_fields():
    """When the backend answers with hop-by-hop, Connection-named and proxy fields, both clients get the same fields without them (the HTTP/1.1 writer puts content-length last, as it frames the body itself)."""
    viaH2, viaH1 = ViaHTTP2(), ViaHTTP1()
    fieldsH2, fieldsH1 = viaH2.respond(BACKEND_RESPONSE), viaH1.respond(BACKEND_RESPONSE)
    expected = [
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
        (b"x-odd-case", b"v"),
        (b"via", b"1.1 origin"),
        (b"date", b"Sun, 06 Nov 1994 08:49:37 GMT"),
    ]
    assert [field for field in fieldsH2 if field[0] != b"content-length"] == expected
    assert [field for field in fieldsH1 if field[0] != b"content-length"] == expected
    assert (b"content-length", b"2") in fieldsH2 and fieldsH1[-1] == (b"content-length", b"2")
