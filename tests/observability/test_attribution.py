"""Attribution in the access log: every request gets exactly one record, naming the
FIRST cause of its end: a backend failure is not turned into client_closed by the
reset it causes, a drain cut says drain_timeout (and is a warning), and requests the
front ends answer themselves before routing (400, 431, 408...) are recorded too.

The bridge is driven through the real front ends (H2Connection, HTTP11ServerProtocol
and their factories) on in-memory transports, so resets and cuts reach it the way
they do in the daemon."""

from __future__ import annotations

from h2.errors import ErrorCodes
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import LogLevel, capturedLogs
from twisted.python.failure import Failure

from h2proxy.bridge.bridge import HTTP11, BridgeContext, RequestIds
from h2proxy.bridge.headers import ForwardingPolicy
from h2proxy.bridge.routing import Router
from h2proxy.config.model import Http2Config
from h2proxy.errors import BackendClosed
from h2proxy.frontend.http2.factory import ConnectionOptions, H2Factory
from h2proxy.frontend.handler import DRAIN_TIMEOUT, REQUEST_ERROR
from h2proxy.frontend.http1.factory import HTTP1Factory
from h2proxy.message import ResponseHead
from tests.bridge.test_bridge import ROUTES, FakePool
from tests.frontend.frames import FrameFactory, requestHeaders
from tests.frontend.support import connected
from tests.observability.test_bridge_records import Recording

ADDR = IPv4Address("TCP", "192.0.2.9", 50000)


def context() -> tuple[BridgeContext, Recording, FakePool]:
    clock = Clock()
    clock.advance(1000)
    observer = Recording(clock)
    pool = FakePool()
    bridges = BridgeContext(router=Router(ROUTES), pools={"app": pool}, requestIds=RequestIds(b"feedf00d"),
                            observer=observer)
    return bridges, observer, pool


def summary(observer: Recording) -> list[tuple[int, str, bool]]:
    return [(r.status, r.error, r.reset) for r in observer.finished]


# -- the first cause wins --------------------------------------------------------------


def test_h2_a_backend_dying_mid_body_is_logged_with_the_backend_reason():
    """When the backend fails after the response head, the stream is reset and the one
    record says the backend's reason (connection_terminated), not client_closed."""
    bridges, observer, pool = context()
    server, client = connected(handlerClass=bridges.handlerFactory)
    streamID = client.request(b"/")
    bridge = server.handlers[streamID]
    bridge.responseHeadReceived(ResponseHead(status=200))
    bridge.responseDataReceived(b"x" * 10)
    bridge.responseFailed(BackendClosed("the backend closed the connection mid-body"))
    client.flush()
    assert client.response(streamID)["reset"] == ErrorCodes.INTERNAL_ERROR
    assert summary(observer) == [(200, BackendClosed.reason, True)]
    assert observer.metrics.resets.values == {(BackendClosed.reason,): 1}


def test_http1_a_backend_dying_mid_body_is_logged_with_the_backend_reason():
    """When the backend fails mid-body on the HTTP/1.1 front end, the connection closes
    and the one record says connection_terminated."""
    bridges, observer, pool = context()
    factory = HTTP1Factory(reactor=MemoryReactorClock(), idleTimeout=None, secure=False,
                           handlerFactory=bridges.handlersFor(ForwardingPolicy(), HTTP11).handlerFactory)
    protocol, transport = http1(factory)
    protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n")
    receiver = pool.exchanges[0].receiver
    receiver.responseHeadReceived(ResponseHead(status=200, headers=((b"content-length", b"100"),)))
    receiver.responseDataReceived(b"x" * 10)
    receiver.responseFailed(BackendClosed("the backend closed the connection mid-body"))
    assert transport.disconnecting
    assert summary(observer) == [(200, BackendClosed.reason, True)]


# -- drain cuts ----------------------------------------------------------------------------


def test_h2_a_stream_cut_by_the_drain_window_says_drain_timeout_at_warning_level():
    """When the drain window runs out with a response under way, the record says
    drain_timeout (status 200, reset), and the daemon log has a warning naming the request."""
    bridges, observer, pool = context()
    clock = MemoryReactorClock()
    factory = H2Factory(reactor=clock, handlerFactory=bridges.handlerFactory,
                        options=ConnectionOptions(settings=Http2Config(), idleTimeout=None, abortTimeout=None, secure=True))
    connection = factory.buildProtocol(ADDR)
    transport = StringTransport()
    connection.makeConnection(transport)
    frames = FrameFactory()
    connection.dataReceived(frames.preamble() + frames.headers(1, flags=["END_HEADERS", "END_STREAM"]).serialize())
    pool.exchanges[0].receiver.responseHeadReceived(ResponseHead(status=200))
    factory.drain(10)
    with capturedLogs() as events:
        clock.advance(10)
    assert transport.disconnected
    connection.connectionLost(Failure(ConnectionDone()))
    assert summary(observer) == [(200, DRAIN_TIMEOUT, True)]
    warnings = [e for e in events if e["log_level"] == LogLevel.warn]
    assert len(warnings) == 1 and "feedf00d00000001" in warnings[0]["log_format"].format(**warnings[0])


def test_http1_a_request_cut_by_the_drain_window_says_drain_timeout():
    """When the HTTP/1.1 drain window runs out mid-response, the record says drain_timeout."""
    bridges, observer, pool = context()
    clock = MemoryReactorClock()
    factory = HTTP1Factory(reactor=clock, idleTimeout=None, secure=False,
                           handlerFactory=bridges.handlersFor(ForwardingPolicy(), HTTP11).handlerFactory)
    protocol, transport = http1(factory)
    protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n")
    pool.exchanges[0].receiver.responseHeadReceived(ResponseHead(status=200, headers=((b"content-length", b"9"),)))
    factory.drain(10)
    with capturedLogs() as events:
        clock.advance(10)
    assert transport.disconnected
    assert summary(observer) == [(200, DRAIN_TIMEOUT, True)]
    assert [e["log_level"] for e in events if e["log_level"] == LogLevel.warn] == [LogLevel.warn]


# -- requests answered before routing ------------------------------------------------------


def test_h2_a_polite_400_gets_one_record():
    """When the HTTP/2 front end answers an unusable request with 400 itself, one record
    says 400 http_request_error with the method and path received."""
    bridges, observer, pool = context()
    server, client = connected(handlerClass=bridges.handlerFactory)
    bad = client.conn.get_next_available_stream_id()
    client.conn.send_headers(bad, requestHeaders(b"nope"), end_stream=True)
    client.flush()
    assert client.response(bad)["status"] == 400
    assert summary(observer) == [(400, REQUEST_ERROR, False)]
    (record,) = observer.finished
    assert (record.method, record.path, record.authority) == ("GET", "nope", "example.org")
    assert pool.exchanges == [] and bridges.active == set()


def test_h2_a_header_list_over_the_limit_gets_431_and_one_record():
    """When a request's header list is over max_header_list_size (but under the hard
    limit), the client gets 431 and one record says so."""
    bridges, observer, pool = context()
    server, client = connected(handlerClass=bridges.handlerFactory,
                               settings=Http2Config(max_header_list_size=4096))
    streamID = client.request(b"/", extra=[(b"x-big", b"a" * 5000)])
    assert client.response(streamID)["status"] == 431
    assert summary(observer) == [(431, REQUEST_ERROR, False)]


def test_h2_a_request_body_timeout_is_one_408_record():
    """When the client stops sending its request body, it gets 408 from the front end and
    the one record says 408 http_request_error, not a client_closed 499."""
    bridges, observer, pool = context()
    server, client = connected(handlerClass=bridges.handlerFactory, requestBodyTimeout=5.0)
    streamID = client.request(b"/", method=b"POST", end=False)
    server.clock.advance(5)
    client.flush()
    assert client.response(streamID)["status"] == 408
    assert summary(observer) == [(408, REQUEST_ERROR, False)]


def test_http1_a_malformed_request_gets_400_and_one_record():
    """When the HTTP/1.1 front end refuses a malformed request line, the client gets 400
    and one record says 400 http_request_error."""
    bridges, observer, pool = context()
    factory = HTTP1Factory(reactor=MemoryReactorClock(), idleTimeout=None, secure=False,
                           handlerFactory=bridges.handlersFor(ForwardingPolicy(), HTTP11).handlerFactory)
    protocol, transport = http1(factory)
    protocol.dataReceived(b"GET /a b HTTP/1.1\r\nHost: example.org\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 400 ")
    assert summary(observer) == [(400, REQUEST_ERROR, False)]
    assert observer.finished[0].protocol == "http/1.1" and bridges.active == set()


def test_http1_a_head_over_the_limit_gets_431_and_one_record_with_the_request_line():
    """When an HTTP/1.1 head is over the limit, the client gets 431 and one record names
    the method and target of its request line."""
    bridges, observer, pool = context()
    factory = HTTP1Factory(reactor=MemoryReactorClock(), idleTimeout=None, secure=False, maxHeaderBytes=256,
                           handlerFactory=bridges.handlersFor(ForwardingPolicy(), HTTP11).handlerFactory)
    protocol, transport = http1(factory)
    protocol.dataReceived(b"GET /big HTTP/1.1\r\nHost: example.org\r\nX-Big: " + b"a" * 300)
    assert transport.value().startswith(b"HTTP/1.1 431 ")
    assert summary(observer) == [(431, REQUEST_ERROR, False)]
    assert (observer.finished[0].method, observer.finished[0].path) == ("GET", "/big")


def test_http1_bad_chunk_framing_is_one_400_record():
    """When a chunked request body breaks its framing before any response, the client
    gets 400 and the one record says 400 http_request_error, not a client_closed 499."""
    bridges, observer, pool = context()
    factory = HTTP1Factory(reactor=MemoryReactorClock(), idleTimeout=None, secure=False,
                           handlerFactory=bridges.handlersFor(ForwardingPolicy(), HTTP11).handlerFactory)
    protocol, transport = http1(factory)
    protocol.dataReceived(b"POST / HTTP/1.1\r\nHost: example.org\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
    assert transport.value().startswith(b"HTTP/1.1 400 ")
    assert summary(observer) == [(400, REQUEST_ERROR, False)]


def http1(factory: HTTP1Factory):
    protocol = factory.buildProtocol(ADDR)
    transport = StringTransport(peerAddress=ADDR)
    protocol.makeConnection(transport)
    return protocol, transport
