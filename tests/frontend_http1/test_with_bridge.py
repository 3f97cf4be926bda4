"""The HTTP/1.1 front end driving the real StreamBridge, with a fake upstream pool:
the stream surface the bridge relies on behaves like an H2Stream's."""

from __future__ import annotations

from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from h2proxy.bridge.bridge import BridgeContext
from h2proxy.bridge.routing import Router
from h2proxy.config.model import RouteConfig
from h2proxy.errors import BackendClosed
from h2proxy.frontend.http1.factory import HTTP1Factory
from h2proxy.httpdate import DateField
from h2proxy.message import ResponseHead


class FakeExchange:
    """Keeps the request producer paused until C{connect()}, like the upstream side does."""

    def __init__(self, request, receiver) -> None:
        self.request = request
        self.receiver = receiver
        self.producer = None
        self.connected = False
        self.written: list[bytes] = []
        self.finished = None
        self.cancelled = False

    def registerProducer(self, producer, streaming):
        self.producer = producer
        if not self.connected:
            producer.pauseProducing()

    def unregisterProducer(self):
        self.producer = None

    def connect(self):
        self.connected = True
        if self.producer is not None:
            self.producer.resumeProducing()

    def write(self, data):
        self.written.append(data)

    def finishRequest(self, trailers=()):
        self.finished = trailers

    def pauseProducing(self):
        pass

    def resumeProducing(self):
        pass

    def stopProducing(self):
        self.cancel()

    def cancel(self):
        self.cancelled = True


class FakePool:
    def __init__(self) -> None:
        self.exchanges: list[FakeExchange] = []

    def request(self, request, receiver):
        exchange = FakeExchange(request, receiver)
        self.exchanges.append(exchange)
        return exchange


def setup():
    pool = FakePool()
    context = BridgeContext(
        router=Router((RouteConfig(upstream="app", host="example.org", path="/"),)), pools={"app": pool},
        dates=DateField(clock=lambda: 784111777),
    )
    factory = HTTP1Factory(reactor=MemoryReactorClock(), handlerFactory=context.handlerFactory, idleTimeout=30, secure=True)
    protocol = factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return context, pool, protocol, transport


def test_streaming_upload_with_expect_continue_through_the_bridge():
    """When a chunked upload waits for 100 Continue, Expect goes to the backend, whose 100 reaches the client, and the body, trailers and response flow through."""
    context, pool, protocol, transport = setup()
    protocol.dataReceived(
        b"POST /up HTTP/1.1\r\nHost: example.org\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    exchange = pool.exchanges[0]
    assert exchange.request.body_length is None
    assert dict(exchange.request.headers)[b"host"] == b"example.org"
    assert dict(exchange.request.headers)[b"x-forwarded-proto"] == b"https"
    assert dict(exchange.request.headers)[b"expect"] == b"100-continue"
    assert transport.value() == b"" and transport.producerState == "paused"
    exchange.connect()
    assert transport.value() == b""
    exchange.receiver.responseInformational(ResponseHead(100))
    assert transport.value() == b"HTTP/1.1 100 Continue\r\n\r\n"
    transport.clear()
    protocol.dataReceived(b"5\r\nhello\r\n0\r\nX-Sum: 9\r\n\r\n")
    assert exchange.written == [b"hello"] and exchange.finished == ((b"x-sum", b"9"),)
    exchange.receiver.responseHeadReceived(ResponseHead(200, ((b"content-type", b"text/plain"),)))
    assert exchange.producer is None
    exchange.receiver.responseDataReceived(b"done")
    exchange.receiver.responseEnded(((b"x-t", b"1"),))
    assert transport.value() == (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ndate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
        b"transfer-encoding: chunked\r\n\r\n"
        b"4\r\ndone\r\n0\r\nx-t: 1\r\n\r\n"
    )
    assert context.active == set() and not transport.disconnecting


def test_no_route_answers_404_and_the_connection_goes_on():
    """When the bridge finds no route, its 404 goes out, the unread body is discarded, and the next request is served."""
    context, pool, protocol, transport = setup()
    protocol.dataReceived(b"POST / HTTP/1.1\r\nHost: other.org\r\nContent-Length: 3\r\n\r\nabc")
    assert transport.value().startswith(b"HTTP/1.1 404 Not Found\r\n")
    transport.clear()
    protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n")
    assert len(pool.exchanges) == 1 and pool.exchanges[0].request.body_length == 0


def test_backend_failure_after_the_head_truncates_and_closes():
    """When the backend fails after the response head went out, the client connection is closed mid-body."""
    context, pool, protocol, transport = setup()
    protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n")
    exchange = pool.exchanges[0]
    exchange.receiver.responseHeadReceived(ResponseHead(200, ((b"content-length", b"10"),)))
    exchange.receiver.responseDataReceived(b"abc")
    exchange.receiver.responseFailed(BackendClosed("backend went away"))
    assert transport.disconnecting and transport.value().endswith(b"abc")
    assert context.active == set()


def test_client_leaving_cancels_the_backend_exchange():
    """When the client disconnects mid-exchange, the bridge cancels the upstream exchange."""
    context, pool, protocol, transport = setup()
    protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n")
    protocol.connectionLost(Failure(ConnectionDone()))
    assert pool.exchanges[0].cancelled and context.active == set()
