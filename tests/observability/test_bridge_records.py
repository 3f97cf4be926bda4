"""The records the bridge hands its observer: one per request, with what happened."""

from __future__ import annotations

from h2proxy.frontend.handler import ResetReason
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from h2proxy.observability.accesslog import RequestObserver
from h2proxy.bridge.bridge import BridgeContext, RequestIds
from h2proxy.bridge.routing import Router
from h2proxy.config.upstreams import ServerConfig
from h2proxy.errors import BackendClosed, BackendRefused
from h2proxy.message import ResponseHead
from h2proxy.observability.metrics import WorkerMetrics
from tests.bridge.test_bridge import ROUTES, FakePool, FakeStream, request


class Recording(RequestObserver):
    def __init__(self, clock: Clock) -> None:
        super().__init__(metrics=WorkerMetrics(), accessLog=None, clock=clock.seconds)
        self.finished = []

    def requestFinished(self, record) -> None:
        super().requestFinished(record)
        self.finished.append(record)


class ServerPool:
    server = ServerConfig(host="127.0.0.1", port=8000)


def setup():
    clock = Clock()
    clock.advance(1000)
    observer = Recording(clock)
    pool = FakePool()
    context = BridgeContext(router=Router(ROUTES), pools={"app": pool}, requestIds=RequestIds(b"feedf00d"),
                            observer=observer)
    stream = FakeStream()
    return clock, observer, context.handlerFactory(stream), stream, pool


def test_a_completed_request_is_recorded_once_with_its_timings_and_sizes():
    """When a request streams both ways and ends, one record carries status, bytes,
    first-byte time, duration, route, upstream, server, retries and ids."""
    clock, observer, bridge, stream, pool = setup()
    bridge.requestReceived(request(headers=((b"user-agent", b"curl/8"),)))
    bridge.requestDataReceived(b"12345")
    bridge.requestEnded(())
    exchange = pool.exchanges[0]
    exchange.server, exchange.tries = ServerPool(), 1
    clock.advance(0.25)
    bridge.responseHeadReceived(ResponseHead(status=201))
    bridge.responseDataReceived(b"abc")
    clock.advance(0.5)
    bridge.responseEnded(())
    bridge.streamAborted(Failure(Exception("late reset")))
    (record,) = observer.finished
    assert (record.status, record.requestBytes, record.responseBytes) == (201, 5, 3)
    assert (record.firstByte, record.duration) == (0.25, 0.75)
    assert (record.route, record.upstream, record.server, record.retries) == ("example.org/", "app", "127.0.0.1:8000", 1)
    assert (record.protocol, record.method, record.path, record.userAgent) == ("h2", "POST", "/up", "curl/8")
    assert record.requestId == "feedf00d00000001" and record.client == "192.0.2.7"
    assert (record.error, record.reset) == ("", False)
    assert observer.metrics.requests.values == {("example.org/", "app", "2xx"): 1}


def test_a_proxy_error_is_recorded_with_its_status_and_reason():
    """When the backend refuses before any response, the record says 502 and the reason."""
    clock, observer, bridge, stream, pool = setup()
    bridge.requestReceived(request(end_stream=True))
    pool.exchanges[0].server = ServerPool()
    bridge.responseFailed(BackendRefused("refused"))
    (record,) = observer.finished
    assert (record.status, record.error, record.reset) == (502, BackendRefused.reason, False)
    assert record.server == "127.0.0.1:8000"
    assert observer.metrics.proxyErrors.values == {("502", BackendRefused.reason): 1}


def test_no_route_is_recorded_as_404_without_route():
    """When no route matches, the record is a 404 with destination_not_found and no upstream."""
    clock, observer, bridge, stream, pool = setup()
    bridge.requestReceived(request(authority=b"other.example"))
    (record,) = observer.finished
    assert (record.status, record.error, record.route, record.upstream) == (404, "destination_not_found", "", "")


def test_a_client_reset_before_the_response_is_recorded_as_client_closed():
    """When the client resets before any response, the record is a reset with no status."""
    clock, observer, bridge, stream, pool = setup()
    bridge.requestReceived(request())
    bridge.streamAborted(Failure(Exception("RST_STREAM")))
    (record,) = observer.finished
    assert (record.status, record.error, record.reset) == (0, "client_closed", True)
    assert observer.metrics.resets.values == {("client_closed",): 1}


def test_a_backend_failure_after_the_head_is_recorded_as_a_reset():
    """When the backend fails mid-body, the record keeps the status sent and says reset, with the reason."""
    clock, observer, bridge, stream, pool = setup()
    bridge.requestReceived(request(end_stream=True))
    bridge.responseHeadReceived(ResponseHead(status=200))
    bridge.responseDataReceived(b"x" * 10)
    bridge.responseFailed(BackendClosed("closed"))
    (record,) = observer.finished
    assert (record.status, record.responseBytes, record.reset) == (200, 10, True)
    assert record.error == BackendClosed.reason
    assert ("reset", ResetReason.INTERNAL_ERROR) in stream.calls
