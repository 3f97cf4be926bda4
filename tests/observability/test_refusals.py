"""h2proxy_requests_refused_total: the requests a route refused itself (its allow/deny,
its rate limit) before any backend was asked, counted by route and reason."""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock

from h2proxy.bridge.bridge import HTTP2, BridgeContext, RequestIds
from h2proxy.bridge.headers import ForwardingPolicy
from h2proxy.bridge.routing import Router
from h2proxy.message import RequestHead
from h2proxy.observability.accesslog import RequestObserver
from h2proxy.observability.metrics import WorkerMetrics, refusal_reason, route_label
from tests.bridge.test_bridge import FakePool, FakeStream
from tests.bridge.test_ratelimit import ROUTES
from tests.observability.test_accesslog import record
from tests.observability.test_metrics import parse

API, ADMIN = route_label(ROUTES[1]), route_label(ROUTES[2])


def observer() -> RequestObserver:
    return RequestObserver(metrics=WorkerMetrics(), accessLog=None, clock=lambda: 1_700_000_000.0)


def test_a_429_and_a_403_the_proxy_made_are_counted_by_route_and_reason():
    """When the proxy answers 429 and 403 with http_request_denied and no server, each counts under its route and reason."""
    watcher = observer()
    for _ in range(2):
        watcher.requestFinished(record(status=429, error="http_request_denied", route=API, server=""))
    watcher.requestFinished(record(status=403, error="http_request_denied", route=ADMIN, server=""))
    assert watcher.metrics.refused.values == {(API, "rate_limited"): 2, (ADMIN, "access_denied"): 1}


def test_answers_that_are_no_refusal_of_the_route_are_not_counted():
    """When a backend sends 429 or 403 itself, or the proxy refuses an oversized body (413), the refused counter stays empty."""
    watcher = observer()
    watcher.requestFinished(record(status=429, error=""))
    watcher.requestFinished(record(status=403, error="", server="127.0.0.1:8000"))
    watcher.requestFinished(record(status=413, error="http_request_denied", server=""))
    assert watcher.metrics.refused.values == {}
    assert watcher.metrics.proxyErrors.values == {("413", "http_request_denied"): 1}


def test_a_reason_needs_the_denied_error_and_no_server():
    """When a 429 names a server that was asked, or another error, it is no refusal."""
    assert refusal_reason(429, "http_request_denied", "") == "rate_limited"
    assert refusal_reason(403, "http_request_denied", "") == "access_denied"
    assert refusal_reason(429, "http_request_denied", "127.0.0.1:8000") is None
    assert refusal_reason(403, "destination_not_found", "") is None


def test_the_bridge_refusals_reach_the_counter_and_the_exposition():
    """When clients run over a route's rate limit or are refused by its allow list, the counter says how many, per route and reason, in the Prometheus text."""
    clock, pool, watcher = Clock(), FakePool(), observer()
    context = BridgeContext(router=Router(ROUTES, clock=clock.seconds), pools={"app": pool},
                            requestIds=RequestIds(b"feedf00d"), observer=watcher)
    handlers = context.handlersFor(ForwardingPolicy(), HTTP2)

    def send(path: bytes, host: str = "192.0.2.7") -> int | None:
        stream = FakeStream(IPv4Address("TCP", host, 5000))
        handlers.handlerFactory(stream).requestReceived(
            RequestHead(method=b"GET", scheme=b"http", authority=b"example.org", path=path, end_stream=True))
        return stream.calls[0][1] if stream.calls else None

    statuses = [send(b"/api") for _ in range(5)] + [send(b"/admin") for _ in range(2)]
    assert statuses == [None, None, 429, 429, 429, 403, 403]
    assert len(pool.exchanges) == 2
    samples = parse(watcher.metrics.registry.render())["h2proxy_requests_refused_total"]
    assert samples == {
        (("reason", "rate_limited"), ("route", API)): 3,
        (("reason", "access_denied"), ("route", ADMIN)): 2,
    }
