"""Redirects the bridge answers itself, with a fake stream and a fake pool: a
listener's redirect to HTTPS and a route's redirect get their status and Location,
no backend is asked, and the request is recorded for the access log."""

from __future__ import annotations

import pytest

from h2proxy.bridge.bridge import HTTP2, BridgeContext, RequestIds
from h2proxy.bridge.headers import ForwardingPolicy
from h2proxy.bridge.redirects import https_location
from h2proxy.bridge.routing import Router
from h2proxy.config.model import RedirectConfig, RouteConfig
from h2proxy.httpdate import DateField
from h2proxy.message import RequestHead
from h2proxy.observability.accesslog import NullObserver, RequestRecord, format_combined
from tests.bridge.test_bridge import DATE, DATE_SECOND, FakePool, FakeStream

ROUTES = (
    RouteConfig(upstream="app", host="example.org", path="/"),
    RouteConfig(host="example.org", path="/old", redirect=RedirectConfig(location="https://example.net/new")),
    RouteConfig(host="example.org", path="/moved", exact=True, redirect=RedirectConfig(location="/here", status=307)),
)


class Recorder(NullObserver):
    """Keeps every finished request's record."""

    def __init__(self) -> None:
        super().__init__(clock=lambda: 1_700_000_000.0)
        self.finished: list[RequestRecord] = []

    def requestFinished(self, record: RequestRecord) -> None:
        super().requestFinished(record)
        self.finished.append(record)


def setup(redirectHttps: int | None = None):
    pool, observer = FakePool(), Recorder()
    context = BridgeContext(
        router=Router(ROUTES), pools={"app": pool}, requestIds=RequestIds(b"feedf00d"), observer=observer,
        dates=DateField(clock=lambda: DATE_SECOND),
    )
    stream = FakeStream()
    bridge = context.handlersFor(ForwardingPolicy(), HTTP2, redirectHttps).handlerFactory(stream)
    return context, bridge, stream, pool, observer


def request(**kw) -> RequestHead:
    base = dict(method=b"GET", scheme=b"http", authority=b"example.org", path=b"/", end_stream=True)
    base.update(kw)
    return RequestHead(**base)


# -- where a redirect to HTTPS points ----------------------------------------------------


@pytest.mark.parametrize(
    "authority, path, port, location",
    [
        (b"example.org", b"/", 443, b"https://example.org/"),
        (b"example.org:80", b"/a/b?q=1&r=2", 443, b"https://example.org/a/b?q=1&r=2"),
        (b"Example.ORG:8080", b"/x", 8443, b"https://Example.ORG:8443/x"),
        (b"example.org.", b"/x", 443, b"https://example.org./x"),
        (b"203.0.113.5:80", b"/", 443, b"https://203.0.113.5/"),
        (b"[2001:db8::1]:80", b"/v6?x", 443, b"https://[2001:db8::1]/v6?x"),
        (b"[2001:db8::1]", b"/v6", 8443, b"https://[2001:db8::1]:8443/v6"),
        (b"example.org", b"/caf%C3%A9/%2F?q=%20a+b&%zz", 443, b"https://example.org/caf%C3%A9/%2F?q=%20a+b&%zz"),
        (b"example.org", b"//double//slash?", 443, b"https://example.org//double//slash?"),
    ],
)
def test_https_location_keeps_host_path_and_query(authority, path, port, location):
    """When a request is redirected to HTTPS, the host loses its port, 443 is left out, and the path and query stay byte for byte."""
    assert https_location(authority, path, port) == location


@pytest.mark.parametrize(
    "authority, path",
    [
        (b"", b"/"),
        (b":80", b"/"),
        (b"user@example.org", b"/"),
        (b"exa%6dple.org", b"/"),
        (b"a,b", b"/"),
        (b"[not-v6]", b"/"),
        (b"example.org", b"*"),
        (b"example.org", b""),
    ],
)
def test_https_location_needs_a_usable_host_and_path(authority, path):
    """When the request names no host that can go in a URL, or has no origin-form path, there is no location."""
    assert https_location(authority, path, 443) is None


# -- a listener that redirects to HTTPS ----------------------------------------------------


def test_a_redirecting_listener_answers_308_without_asking_a_backend():
    """When a request arrives on a redirect_https listener, it gets 308 to https with its host, path and query, and no route or backend is used."""
    context, bridge, stream, pool, observer = setup(redirectHttps=443)
    bridge.requestReceived(request(authority=b"example.org:80", path=b"/a%2Fb?q=%20x"))
    assert stream.calls == [
        ("headers", 308, {b"location": b"https://example.org/a%2Fb?q=%20x", b"x-request-id": b"feedf00d00000001", b"date": DATE}, "end"),
    ]
    assert pool.exchanges == []
    assert context.active == set()
    (record,) = observer.finished
    assert (record.status, record.route, record.upstream, record.error) == (308, "", "", "")


def test_a_redirecting_listener_keeps_a_port_other_than_443():
    """When the HTTPS port is not 443, the Location names it."""
    _, bridge, stream, _, _ = setup(redirectHttps=8443)
    bridge.requestReceived(request(authority=b"example.org:8080", path=b"/x"))
    assert stream.calls[0][2][b"location"] == b"https://example.org:8443/x"


def test_a_redirecting_listener_answers_even_where_no_route_matches():
    """When the host has no route at all, the listener still redirects (routing is not consulted)."""
    _, bridge, stream, pool, _ = setup(redirectHttps=443)
    bridge.requestReceived(request(authority=b"unrouted.example", path=b"/"))
    assert stream.calls[0][1] == 308 and pool.exchanges == []


def test_a_request_body_sent_to_a_redirecting_listener_goes_nowhere():
    """When a POST with a body is redirected, the body that follows is dropped and nothing reaches a backend."""
    context, bridge, stream, pool, observer = setup(redirectHttps=443)
    bridge.requestReceived(request(method=b"POST", path=b"/form", end_stream=False, content_length=3))
    bridge.requestDataReceived(b"abc")
    bridge.requestEnded(())
    assert [call[:2] for call in stream.calls] == [("headers", 308)]
    assert pool.exchanges == [] and context.active == set() and len(observer.finished) == 1


def test_a_request_without_a_usable_host_gets_400():
    """When the request names no host to redirect to, the answer is 400 naming the reason, and it is logged as such."""
    _, bridge, stream, pool, observer = setup(redirectHttps=443)
    bridge.requestReceived(request(authority=b""))
    status, fields = stream.calls[0][1:3]
    assert status == 400
    assert fields[b"proxy-status"].startswith(b"h2proxy; error=http_request_error")
    assert pool.exchanges == []
    (record,) = observer.finished
    assert (record.status, record.error) == (400, "http_request_error")


# -- a route that redirects ------------------------------------------------------------------


def test_a_redirect_route_answers_with_its_status_and_location():
    """When a redirecting route matches, the client gets its status (301 by default) and its Location, and no backend is asked."""
    context, bridge, stream, pool, observer = setup()
    bridge.requestReceived(request(path=b"/old/page?x=1"))
    assert stream.calls == [
        ("headers", 301, {b"location": b"https://example.net/new", b"x-request-id": b"feedf00d00000001", b"date": DATE}, "end"),
    ]
    assert pool.exchanges == [] and context.active == set()
    (record,) = observer.finished
    assert (record.status, record.route, record.upstream, record.error) == (301, "example.org/old", "", "")


def test_a_redirect_route_with_its_own_status():
    """When the route says 307, the answer is 307, to a HEAD as to a GET."""
    _, bridge, stream, _, _ = setup()
    bridge.requestReceived(request(method=b"HEAD", path=b"/moved"))
    assert stream.calls == [("headers", 307, {b"location": b"/here", b"x-request-id": b"feedf00d00000001", b"date": DATE}, "end")]


def test_routes_beside_a_redirect_still_forward():
    """When a request matches a forwarding route next to a redirecting one, it goes to the backend as before."""
    _, bridge, stream, pool, _ = setup()
    bridge.requestReceived(request(path=b"/older"))
    assert len(pool.exchanges) == 1 and stream.calls == []


def test_the_access_line_of_a_redirect():
    """When a redirect is answered, its access log line has the request, the status, no bytes and the route."""
    _, bridge, _, _, observer = setup()
    bridge.requestReceived(request(path=b"/old?q=%20"))
    line = format_combined(observer.finished[0])
    assert '"GET /old?q=%20 HTTP/2.0" 301 0 ' in line
    assert " route=example.org/old upstream=- server=- " in line and line.endswith(" error=-")
