"""StreamBridge with a fake stream and a fake upstream pool: both producer/consumer
pairs are wired, failures map to statuses (with Proxy-Status and a request id) or
resets, buffered bodies get a Content-Length, and nothing is left behind."""

from __future__ import annotations

import io

import pytest
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.python.failure import Failure

from h2proxy.bridge.bridge import HTTP11, BridgeContext, RequestIds
from h2proxy.bridge.headers import ForwardingPolicy
from h2proxy.bridge.routing import Router
from h2proxy.config.model import ForwardingConfig, ResponseHeadersConfig, RouteConfig
from h2proxy.errors import BackendClosed, BackendConnectTimeout, BackendRefused, BackendTimeout, NoHealthyBackend
from h2proxy.frontend.handler import ResetReason
from h2proxy.httpdate import DateField
from h2proxy.message import RequestHead, ResponseHead

#: A fixed clock for the Date field: RFC 9110's own example date.
DATE_SECOND = 784111777
DATE = b"Sun, 06 Nov 1994 08:49:37 GMT"


class FakeStream:
    streamID = 1

    def __init__(self, peer=None, certificate=None) -> None:
        self.calls: list[tuple] = []
        self.producer = None
        self.paused = False
        self.peer = peer or IPv4Address("TCP", "192.0.2.7", 40000)
        self.certificate = certificate

    def getPeer(self):
        return self.peer

    def isSecure(self) -> bool:
        return True

    def clientCertificate(self):
        return self.certificate

    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused = False

    def writeInformational(self, head):
        self.calls.append(("informational", head.status))

    def writeHeaders(self, head, endStream=False):
        self.calls.append(("headers", head.status, dict(head.headers)) + (("end",) if endStream else ()))

    def write(self, data):
        self.calls.append(("data", data))

    def writeTrailers(self, headers):
        self.calls.append(("trailers", headers))

    def finish(self):
        self.calls.append(("finish",))

    def reset(self, reason=ResetReason.INTERNAL_ERROR):
        self.calls.append(("reset", reason))

    def registerProducer(self, producer, streaming):
        self.producer = producer

    def unregisterProducer(self):
        self.producer = None


class FakeExchange:
    """Records what the bridge does; with C{hold}, keeps a registered producer paused
    (no backend connection yet)."""

    def __init__(self, request, receiver, hold: bool = False) -> None:
        self.request = request
        self.receiver = receiver
        self.hold = hold
        self.written: list[bytes] = []
        self.producer = None
        self.finished = None
        self.cancelled = False

    def registerProducer(self, producer, streaming):
        self.producer = producer
        if self.hold:
            producer.pauseProducing()

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
        self.hold = False

    def request(self, request, receiver):
        exchange = FakeExchange(request, receiver, self.hold)
        self.exchanges.append(exchange)
        return exchange


class TrackedFile(io.BytesIO):
    opened: list["TrackedFile"] = []

    def __init__(self) -> None:
        super().__init__()
        TrackedFile.opened.append(self)


@pytest.fixture(autouse=True)
def fresh_files():
    TrackedFile.opened = []


ROUTES = (
    RouteConfig(upstream="app", host="example.org", path="/"),
    RouteConfig(
        upstream="app",
        host="example.org",
        path="/wsgi",
        strip_prefix=True,
        request_body="buffer",
        buffer_limit=4096,
        response_headers=ResponseHeadersConfig(set=(("x-route", "wsgi"),)),
    ),
)


def setup(max_body: int = 0, forwarding: ForwardingPolicy | None = None, peer=None):
    pool = FakePool()
    context = BridgeContext(
        router=Router(ROUTES),
        pools={"app": pool},
        maxRequestBody=max_body,
        forwarding=forwarding,
        requestIds=RequestIds(b"feedf00d"),
        openFile=TrackedFile,
        bufferInMemory=1024,
        dates=DateField(clock=lambda: DATE_SECOND),
    )
    stream = FakeStream(peer)
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
    bridge.requestEnded(((b"x-sum", b"1"), (b"content-length", b"3")))
    assert exchange.written == [b"abc"] and exchange.finished == ((b"x-sum", b"1"),)
    assert exchange.producer is None
    bridge.responseInformational(ResponseHead(103, ((b"link", b"</a>"),)))
    bridge.responseHeadReceived(ResponseHead(200, ((b"connection", b"x"), (b"x-a", b"1"))))
    assert stream.producer is exchange
    bridge.responseDataReceived(b"hello")
    bridge.responseEnded(((b"grpc-status", b"0"),))
    assert stream.calls == [
        ("informational", 103),
        ("headers", 200, {b"x-a": b"1", b"date": DATE}),
        ("data", b"hello"),
        ("trailers", ((b"grpc-status", b"0"),)),
    ]
    assert stream.producer is None
    assert context.active == set()


def test_no_route_is_404_with_proxy_status_and_request_id():
    """When no route matches, the client gets 404 naming the reason and the request id, and no backend request is made."""
    context, bridge, stream, pool = setup()
    bridge.requestReceived(request(authority=b"other.org", end_stream=True))
    bridge.requestEnded(())
    assert pool.exchanges == []
    status, fields = stream.calls[0][1:3]
    assert status == 404
    assert fields[b"proxy-status"] == b'h2proxy; error=destination_not_found; details="request id feedf00d00000001"'
    assert fields[b"x-request-id"] == b"feedf00d00000001"
    assert stream.calls[1] == ("data", b"404 not found (request id feedf00d00000001)\n")
    assert stream.calls[-1] == ("finish",)
    assert context.active == set()


def test_error_to_head_request_has_no_body():
    """When a HEAD request gets a proxy error, the head ends the stream and no body is written."""
    context, bridge, stream, pool = setup()
    bridge.requestReceived(request(method=b"HEAD", authority=b"other.org", end_stream=True))
    assert len(stream.calls) == 1 and stream.calls[0][-1] == "end"
    assert stream.calls[0][2][b"content-length"] != b"0"


def test_conflicting_host_is_400_without_backend():
    """When a host field disagrees with :authority, the client gets 400 and no backend sees it."""
    context, bridge, stream, pool = setup()
    bridge.requestReceived(request(end_stream=True, headers=((b"host", b"evil.example"),)))
    assert pool.exchanges == [] and stream.calls[0][1] == 400
    assert b"error=http_request_error" in stream.calls[0][2][b"proxy-status"]


def test_declared_body_over_limit_is_413():
    """When content-length exceeds max_request_body, 413 answers and the backend sees nothing."""
    context, bridge, stream, pool = setup(max_body=10)
    bridge.requestReceived(request(content_length=11))
    assert pool.exchanges == [] and stream.calls[0][:2] == ("headers", 413)
    assert b"error=http_request_denied" in stream.calls[0][2][b"proxy-status"]


def test_streamed_body_over_limit_cancels_exchange():
    """When a body without content-length grows past the limit, the exchange is cancelled and 413 sent."""
    context, bridge, stream, pool = setup(max_body=4)
    bridge.requestReceived(request())
    bridge.requestDataReceived(b"abc")
    bridge.requestDataReceived(b"de")
    assert pool.exchanges[0].cancelled and pool.exchanges[0].written == [b"abc"]
    assert stream.calls[0][:2] == ("headers", 413)
    assert context.active == set()


@pytest.mark.parametrize(
    "error, status, reason",
    [
        (BackendRefused(), 502, b"connection_refused"),
        (BackendConnectTimeout(), 504, b"connection_timeout"),
        (BackendTimeout(), 504, b"http_response_timeout"),
        (NoHealthyBackend(), 503, b"destination_unavailable"),
    ],
)
def test_failures_before_head_map_to_status(error, status, reason):
    """When the backend fails before answering, the status and Proxy-Status reason follow the error type."""
    context, bridge, stream, pool = setup()
    bridge.requestReceived(request(end_stream=True, method=b"GET"))
    bridge.responseFailed(error)
    assert stream.calls[0][:2] == ("headers", status)
    assert stream.calls[0][2][b"proxy-status"].startswith(b"h2proxy; error=" + reason + b";")
    assert context.active == set()


def test_failure_after_head_resets_stream():
    """When the backend dies mid-body, the stream is reset with INTERNAL_ERROR."""
    context, bridge, stream, pool = setup()
    bridge.requestReceived(request(end_stream=True, method=b"GET"))
    bridge.responseHeadReceived(ResponseHead(200))
    bridge.responseDataReceived(b"part")
    bridge.responseFailed(BackendClosed())
    assert stream.calls[-1] == ("reset", ResetReason.INTERNAL_ERROR)
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


def test_configured_policy_marks_requests_and_responses():
    """When a listener's policy asks for Via and request ids, the backend and the client both see them."""
    policy = ForwardingPolicy.fromConfig(ForwardingConfig())
    context, bridge, stream, pool = setup()
    bridge = context.handlersFor(policy, HTTP11).handlerFactory(stream)
    bridge.requestReceived(request(end_stream=True, method=b"GET"))
    sent = dict(pool.exchanges[0].request.headers)
    assert sent[b"via"] == b"1.1 h2proxy" and sent[b"x-request-id"] == bridge.requestId
    assert sent[b"x-forwarded-host"] == b"example.org"
    bridge.responseHeadReceived(ResponseHead(200))
    assert stream.calls[0][2] == {b"via": b"1.1 h2proxy", b"x-request-id": bridge.requestId, b"date": DATE}


def test_trusted_proxy_request_id_is_reused():
    """When a trusted proxy sends a valid X-Request-Id, that id is the request's id; from anyone else it is replaced."""
    policy = ForwardingPolicy.fromConfig(ForwardingConfig(trusted_proxies=("2001:db8::/32",)))
    sent = ((b"x-request-id", b"lb-7"),)
    context, bridge, stream, pool = setup(forwarding=policy, peer=IPv6Address("TCP", "2001:db8::9", 1))
    bridge.requestReceived(request(end_stream=True, headers=sent))
    assert bridge.requestId == b"lb-7" and dict(pool.exchanges[0].request.headers)[b"x-request-id"] == b"lb-7"
    context, bridge, stream, pool = setup(forwarding=policy)
    bridge.requestReceived(request(end_stream=True, headers=sent))
    assert bridge.requestId == b"feedf00d00000001"


def test_buffered_body_gets_a_content_length():
    """When a buffering route gets a body of unknown length, the backend is asked only once it is complete, with its length."""
    context, bridge, stream, pool = setup()
    bridge.requestReceived(request(path=b"/wsgi/upload?x=1"))
    bridge.requestDataReceived(b"a" * 1000)
    bridge.requestDataReceived(b"b" * 1000)
    assert pool.exchanges == [] and not stream.paused
    bridge.requestEnded(((b"x-sum", b"1"),))
    exchange = pool.exchanges[0]
    assert exchange.request.body_length == 2000 and exchange.request.target == b"/upload?x=1"
    assert b"".join(exchange.written) == b"a" * 1000 + b"b" * 1000 and exchange.finished == ()
    exchange.receiver.responseHeadReceived(ResponseHead(201))
    exchange.receiver.responseEnded(())
    assert stream.calls[0][:3] == ("headers", 201, {b"x-route": b"wsgi", b"date": DATE})
    assert context.active == set()


def test_large_buffered_body_spills_and_the_file_is_closed_on_completion():
    """When a buffered body outgrows memory it goes to a temporary file, closed once the body is sent."""
    context, bridge, stream, pool = setup()
    bridge.requestReceived(request(path=b"/wsgi"))
    for _ in range(4):
        bridge.requestDataReceived(b"z" * 1000)
    bridge.requestEnded(())
    assert pool.exchanges[0].request.body_length == 4000
    pool.exchanges[0].receiver.responseHeadReceived(ResponseHead(200))
    pool.exchanges[0].receiver.responseEnded(())
    assert len(TrackedFile.opened) == 1 and TrackedFile.opened[0].closed


def test_buffered_body_over_its_limit_is_413_and_the_backend_sees_nothing():
    """When a buffered body passes the route's buffer_limit, 413 answers and no backend request is made."""
    context, bridge, stream, pool = setup()
    bridge.requestReceived(request(path=b"/wsgi"))
    for _ in range(5):
        bridge.requestDataReceived(b"z" * 1000)
    bridge.requestEnded(())
    assert pool.exchanges == [] and stream.calls[0][:2] == ("headers", 413)
    assert all(f.closed for f in TrackedFile.opened)
    assert context.active == set()


def test_buffer_file_closed_when_the_client_aborts():
    """When the client goes away while its body is being buffered, the temporary file is closed."""
    context, bridge, stream, pool = setup()
    bridge.requestReceived(request(path=b"/wsgi"))
    bridge.requestDataReceived(b"z" * 3000)
    bridge.streamAborted(Failure(ConnectionError("reset")))
    assert TrackedFile.opened and all(f.closed for f in TrackedFile.opened) and pool.exchanges == []


def test_buffer_file_closed_when_the_backend_fails():
    """When the backend fails while the buffered body is sent, the temporary file is closed and the client gets 502."""
    context, bridge, stream, pool = setup()
    bridge.requestReceived(request(path=b"/wsgi"))
    bridge.requestDataReceived(b"z" * 3000)
    pool.hold = True
    bridge.requestEnded(())
    assert pool.exchanges[0].written == []
    pool.exchanges[0].receiver.responseFailed(BackendRefused())
    assert stream.calls[0][:2] == ("headers", 502)
    assert all(f.closed for f in TrackedFile.opened)


def test_declared_length_streams_even_on_a_buffering_route():
    """When the client declares its body's length, a buffering route streams it (the backend gets that length)."""
    context, bridge, stream, pool = setup()
    bridge.requestReceived(request(path=b"/wsgi", content_length=3))
    assert pool.exchanges[0].request.body_length == 3 and pool.exchanges[0].producer is stream


def test_buffer_write_error_is_500(logged_errors):
    """When the temporary file cannot be written, the client gets 500 and nothing reaches a backend."""

    class Full(TrackedFile):
        def write(self, data):
            raise OSError(28, "No space left on device")

    context, bridge, stream, pool = setup()
    context.openFile = Full
    bridge.requestReceived(request(path=b"/wsgi"))
    bridge.requestDataReceived(b"z" * 3000)
    assert stream.calls[0][:2] == ("headers", 500) and pool.exchanges == []
    assert all(f.closed for f in TrackedFile.opened)
    assert logged_errors.take(r"cannot buffer the request body")


def test_request_ids_are_unique_and_sixteen_hex_digits():
    """When ids are drawn, each is 16 hex digits and none repeats."""
    ids = RequestIds()
    drawn = {ids.next() for _ in range(1000)}
    assert len(drawn) == 1000 and all(len(i) == 16 and int(i, 16) >= 0 for i in drawn)


def test_unavailable_backend_503_carries_retry_after():
    """When the upstream says when a server may be back, the 503 carries Retry-After."""
    from h2proxy.errors import NoHealthyBackend

    context, bridge, stream, pool = setup()
    bridge.requestReceived(request(end_stream=True, method=b"GET"))
    bridge.responseFailed(NoHealthyBackend("all servers ejected", retry_after=7))
    assert stream.calls[0][:2] == ("headers", 503)
    assert stream.calls[0][2][b"retry-after"] == b"7"


def test_other_failures_carry_no_retry_after():
    """When the failure says nothing about when to retry, no Retry-After is sent."""
    context, bridge, stream, pool = setup()
    bridge.requestReceived(request(end_stream=True, method=b"GET"))
    bridge.responseFailed(BackendRefused())
    assert b"retry-after" not in stream.calls[0][2]


def test_priority_field_sets_the_upstream_urgency():
    """When the client sends an RFC 9218 priority field, its urgency orders the upstream queue."""
    context, bridge, stream, pool = setup()
    bridge.requestReceived(request(end_stream=True, method=b"GET", headers=((b"priority", b"u=1, i"),)))
    assert pool.exchanges[0].request.urgency == 1
    context, bridge, stream, pool = setup()
    bridge.requestReceived(request(end_stream=True, method=b"GET"))
    assert pool.exchanges[0].request.urgency == 3


def test_date_is_added_to_responses_without_one_and_a_backends_own_is_kept():
    """RFC 9110 6.6.1: a proxy forwarding a response without Date adds one, and is the
    origin (so sends Date) of the errors it makes itself; a backend's Date stays."""
    _, bridge, stream, pool = setup()
    bridge.requestReceived(request(method=b"GET", end_stream=True))
    pool.exchanges[0].receiver.responseHeadReceived(ResponseHead(200, ((b"date", b"Mon, 07 Nov 1994 00:00:00 GMT"),)))
    assert stream.calls[0][2][b"date"] == b"Mon, 07 Nov 1994 00:00:00 GMT"
    _, bridge, stream, _ = setup()
    bridge.requestReceived(request(authority=b"unrouted.example", end_stream=True))
    assert stream.calls[0][1] == 404 and stream.calls[0][2][b"date"] == DATE
