"""StreamBridge with a fake stream and a fake upstream pool: both producer/consumer
pairs are wired, failures map to statuses or resets, and nothing is left behind."""

from __future__ import annotations

from h2.errors import ErrorCodes
from twisted.internet.address import IPv4Address
from twisted.python.failure import Failure

from h2proxy.bridge.bridge import BridgeContext
from h2proxy.bridge.routing import Router
from h2proxy.config.model import RouteConfig
from h2proxy.errors import BackendClosed, BackendRefused, BackendTimeout
from h2proxy.message import RequestHead, ResponseHead


class FakeStream:
    streamID = 1

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.producer = None
        self.paused = False

    def getPeer(self):
        return IPv4Address("TCP", "192.0.2.7", 40000)

    def isSecure(self) -> bool:
        return True

    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused = False

    def writeInformational(self, head):
        self.calls.append(("informational", head.status))

    def writeHeaders(self, head, endStream=False):
        self.calls.append(("headers", head.status, dict(head.headers)))

    def write(self, data):
        self.calls.append(("data", data))

    def writeTrailers(self, headers):
        self.calls.append(("trailers", headers))

    def finish(self):
        self.calls.append(("finish",))

    def reset(self, errorCode=ErrorCodes.INTERNAL_ERROR):
        self.calls.append(("reset", errorCode))

    def registerProducer(self, producer, streaming):
        self.producer = producer

    def unregisterProducer(self):
        self.producer = None


class FakeExchange:
    def __init__(self, request, receiver) -> None:
        self.request = request
        self.receiver = receiver
        self.written: list[bytes] = []
        self.producer = None
        self.finished = None
        self.cancelled = False

    def registerProducer(self, producer, streaming):
        self.producer = producer

    def unregisterProducer(self):
        self.producer = None

    def write(self, data):
        self.written.append(data)

    def finishRequest(self, trailers=()):
        self.finished = trailers

    def cancel(self):
        self.cancelled = True


class FakePool:
    def __init__(self) -> None:
        self.exchanges: list[FakeExchange] = []

    def request(self, request, receiver):
        exchange = FakeExchange(request, receiver)
        self.exchanges.append(exchange)
        return exchange


def setup(max_body: int = 0):
    pool = FakePool()
    context = BridgeContext(
        router=Router((RouteConfig(upstream="app", host="example.org", path="/"),)),
        pools={"app": pool},
        maxRequestBody=max_body,
    )
    stream = FakeStream()
    return context, context.handlerFactory(stream), stream, pool


def request(**kw) -> RequestHead:
    base = dict(method=b"POST", scheme=b"https", authority=b"example.org", path=b"/up")
    base.update(kw)
    return RequestHead(**base)


def test_streaming_request_and_response():
    """When a request with a body and its response flow, producers are registered both ways,
    bytes pass in order, trailers pass, and the bridge leaves the active table."""
    context, bridge, stream, pool = setup()
    bridge.requestReceived(request())
    exchange = pool.exchanges[0]
    assert exchange.request.body_length is None
    assert exchange.producer is stream
    bridge.requestDataReceived(b"abc")
    bridge.requestEnded(((b"x-sum", b"1"),))
    assert exchange.written == [b"abc"] and exchange.finished == ((b"x-sum", b"1"),)
    assert exchange.producer is None
    bridge.responseInformational(ResponseHead(103, ((b"link", b"</a>"),)))
    bridge.responseHeadReceived(ResponseHead(200, ((b"connection", b"x"), (b"x-a", b"1"))))
    assert stream.producer is exchange
    bridge.responseDataReceived(b"hello")
    bridge.responseEnded(((b"grpc-status", b"0"),))
    assert stream.calls == [
        ("informational", 103),
        ("headers", 200, {b"x-a": b"1"}),
        ("data", b"hello"),
        ("trailers", ((b"grpc-status", b"0"),)),
    ]
    assert stream.producer is None
    assert context.active == set()


def test_no_route_is_404_without_backend():
    """When no route matches, the client gets 404 and no backend request is made."""
    context, bridge, stream, pool = setup()
    bridge.requestReceived(request(authority=b"other.org", end_stream=True))
    bridge.requestEnded(())
    assert pool.exchanges == []
    assert stream.calls[0][:2] == ("headers", 404)
    assert b"no_route" in stream.calls[0][2][b"proxy-status"]
    assert stream.calls[-1] == ("finish",)
    assert context.active == set()


def test_declared_body_over_limit_is_413():
    """When content-length exceeds max_request_body, 413 answers and the backend sees nothing."""
    context, bridge, stream, pool = setup(max_body=10)
    bridge.requestReceived(request(content_length=11))
    assert pool.exchanges == [] and stream.calls[0][:2] == ("headers", 413)


def test_streamed_body_over_limit_cancels_exchange():
    """When a body without content-length grows past the limit, the exchange is cancelled and 413 sent."""
    context, bridge, stream, pool = setup(max_body=4)
    bridge.requestReceived(request())
    bridge.requestDataReceived(b"abc")
    bridge.requestDataReceived(b"de")
    assert pool.exchanges[0].cancelled and pool.exchanges[0].written == [b"abc"]
    assert stream.calls[0][:2] == ("headers", 413)
    assert context.active == set()


def test_failures_before_head_map_to_status():
    """When the backend fails before answering, the status follows the error type."""
    for error, status in ((BackendRefused(), 502), (BackendTimeout(), 504)):
        context, bridge, stream, pool = setup()
        bridge.requestReceived(request(end_stream=True, method=b"GET"))
        bridge.responseFailed(error)
        assert stream.calls[0][:2] == ("headers", status)
        assert context.active == set()


def test_failure_after_head_resets_stream():
    """When the backend dies mid-body, the stream is reset with INTERNAL_ERROR."""
    context, bridge, stream, pool = setup()
    bridge.requestReceived(request(end_stream=True, method=b"GET"))
    bridge.responseHeadReceived(ResponseHead(200))
    bridge.responseDataReceived(b"part")
    bridge.responseFailed(BackendClosed())
    assert stream.calls[-1] == ("reset", ErrorCodes.INTERNAL_ERROR)
    assert context.active == set()


def test_client_abort_cancels_exchange():
    """When the client resets the stream, the backend exchange is cancelled and later events ignored."""
    context, bridge, stream, pool = setup()
    bridge.requestReceived(request())
    bridge.streamAborted(Failure(ConnectionError("reset")))
    assert pool.exchanges[0].cancelled
    bridge.responseHeadReceived(ResponseHead(200))
    bridge.requestDataReceived(b"late")
    assert stream.calls == [] and pool.exchanges[0].written == []
    assert context.active == set()
