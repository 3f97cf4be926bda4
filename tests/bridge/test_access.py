"""A route's allow and deny networks, with a fake stream and a fake pool: the address
judged (the peer, or behind a trusted proxy its X-Forwarded-For), IPv6 and
IPv4-mapped peers, and the 403 the bridge answers without asking a backend."""

from __future__ import annotations

import ipaddress

import pytest
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress

from h2proxy.bridge.access import AccessRule, client_of, parse_address
from h2proxy.bridge.bridge import HTTP2, BridgeContext, RequestIds
from h2proxy.bridge.headers import ForwardingPolicy
from h2proxy.bridge.routing import Router
from h2proxy.config.model import RedirectConfig, RouteConfig
from h2proxy.message import RequestHead
from h2proxy.observability.accesslog import format_combined
from tests.bridge.test_bridge import FakePool, FakeStream
from tests.bridge.test_redirects import Recorder

ROUTES = (
    RouteConfig(upstream="app", path="/"),
    RouteConfig(upstream="app", path="/admin", allow=("10.0.0.0/8", "2001:db8::/32")),
    RouteConfig(upstream="app", path="/x", deny=("203.0.113.0/24",)),
    RouteConfig(upstream="app", path="/both", allow=("10.0.0.0/8",), deny=("10.1.0.0/16",)),
    RouteConfig(path="/old", allow=("10.0.0.0/8",), redirect=RedirectConfig(location="/new")),
)

PROXY = ForwardingPolicy(trusted=(ipaddress.ip_network("192.0.2.0/24"),))


def rule(allow=None, deny=()) -> AccessRule:
    rule = AccessRule.fromConfig(RouteConfig(upstream="app", allow=allow, deny=deny))
    assert rule is not None
    return rule


def request(path: bytes, headers=()) -> RequestHead:
    return RequestHead(
        method=b"GET", scheme=b"http", authority=b"example.org", path=path, headers=tuple(headers), end_stream=True
    )


def send(path: bytes, peer, forwarding: ForwardingPolicy = ForwardingPolicy(), headers=()):
    pool, observer = FakePool(), Recorder()
    context = BridgeContext(
        router=Router(ROUTES), pools={"app": pool}, requestIds=RequestIds(b"feedf00d"), observer=observer
    )
    stream = FakeStream(peer)
    context.handlersFor(forwarding, HTTP2).handlerFactory(stream).requestReceived(request(path, headers))
    return context, stream, pool, observer


# -- the rule -------------------------------------------------------------------------------


def test_a_route_without_networks_has_no_rule():
    """When a route sets neither allow nor deny, it has no rule to check."""
    assert AccessRule.fromConfig(RouteConfig(upstream="app")) is None


@pytest.mark.parametrize(
    "client, permitted",
    [("10.2.3.4", True), ("10.1.2.3", False), ("192.0.2.1", False), ("2001:db8::5", False), ("unknown", False)],
)
def test_deny_wins_then_allow_must_match(client, permitted):
    """When both lists are given, an address in deny is refused even inside allow; outside allow it is refused too."""
    assert rule(allow=("10.0.0.0/8",), deny=("10.1.0.0/16",)).permits(client) is permitted


@pytest.mark.parametrize("client, permitted", [("203.0.113.9", False), ("198.51.100.1", True), ("::1", True)])
def test_deny_alone_refuses_only_its_networks(client, permitted):
    """When only deny is given, every other address (IPv6 included) is served."""
    assert rule(deny=("203.0.113.0/24",)).permits(client) is permitted


@pytest.mark.parametrize(
    "client, permitted",
    [("2001:db8::1", True), ("2001:db9::1", False), ("::ffff:10.0.0.1", True), ("::ffff:11.0.0.1", False)],
)
def test_ipv6_and_mapped_addresses(client, permitted):
    """When the client is IPv6 it is matched against IPv6 networks; an IPv4-mapped address is matched as IPv4."""
    assert rule(allow=("10.0.0.0/8", "2001:db8::/32")).permits(client) is permitted


def test_a_bare_address_is_a_single_host():
    """When a network is a bare address, only that address matches."""
    single = rule(allow=("192.0.2.7",))
    assert single.permits("192.0.2.7") and not single.permits("192.0.2.8")


def test_parse_address_refuses_what_is_not_an_address():
    """When a value carries a port or is not an address, it is not parsed."""
    assert parse_address("192.0.2.1:80") is None and parse_address("unknown") is None
    assert str(parse_address("::ffff:192.0.2.1")) == "192.0.2.1"


# -- the address judged ------------------------------------------------------------------------


def test_an_untrusted_peers_forwarded_for_is_ignored():
    """When the peer is not a trusted proxy, its X-Forwarded-For cannot choose the address judged."""
    assert client_of("198.51.100.1", ((b"x-forwarded-for", b"10.0.0.1"),), PROXY) == "198.51.100.1"


def test_a_trusted_peer_reports_the_client():
    """When the peer is a trusted proxy, the last X-Forwarded-For hop is the client."""
    headers = ((b"x-forwarded-for", b"10.9.9.9, 10.0.0.1"),)
    assert client_of("192.0.2.10", headers, PROXY) == "10.0.0.1"


def test_a_chain_of_trusted_proxies_is_walked_from_the_right():
    """When several hops are trusted proxies, the walk goes on to the first untrusted one, across fields."""
    headers = ((b"x-forwarded-for", b"1.1.1.1, 10.0.0.1"), (b"x-forwarded-for", b"192.0.2.20 , ::ffff:192.0.2.30"))
    assert client_of("192.0.2.10", headers, PROXY) == "10.0.0.1"


@pytest.mark.parametrize("value", [b"", b"garbage", b"10.0.0.1:5000"])
def test_an_unreadable_hop_stops_at_the_last_believable_address(value):
    """When the hop is missing or not an address, the trusted peer itself is judged."""
    assert client_of("192.0.2.10", ((b"x-forwarded-for", value),), PROXY) == "192.0.2.10"


# -- the bridge ----------------------------------------------------------------------------------


def test_an_allowed_client_is_forwarded():
    """When the client is inside allow, the request goes to the backend."""
    _, stream, pool, _ = send(b"/admin/x", IPv4Address("TCP", "10.1.2.3", 5000))
    assert len(pool.exchanges) == 1 and stream.calls == []


def test_a_refused_client_gets_403_without_a_backend():
    """When the client is outside allow, it gets 403 with Proxy-Status and the request id, nothing is forwarded, and the access log says why."""
    context, stream, pool, observer = send(b"/admin", IPv4Address("TCP", "192.0.2.7", 5000))
    status, fields = stream.calls[0][1:3]
    assert status == 403
    assert fields[b"proxy-status"] == b'h2proxy; error=http_request_denied; details="request id feedf00d00000001"'
    assert fields[b"x-request-id"] == b"feedf00d00000001"
    assert stream.calls[1:] == [("data", b"403 forbidden (request id feedf00d00000001)\n"), ("finish",)]
    assert pool.exchanges == [] and context.active == set()
    (record,) = observer.finished
    line = format_combined(record)
    assert '"GET /admin HTTP/2.0" 403 ' in line and " route=*/admin " in line and "error=http_request_denied" in line


def test_a_denied_network_gets_403_and_others_pass():
    """When a route denies a network, its clients get 403 and the rest are forwarded."""
    assert send(b"/x", IPv4Address("TCP", "203.0.113.5", 5000))[1].calls[0][1] == 403
    assert len(send(b"/x", IPv4Address("TCP", "198.51.100.5", 5000))[2].exchanges) == 1


def test_deny_wins_in_the_bridge():
    """When a client is in both allow and deny, it is refused."""
    assert send(b"/both", IPv4Address("TCP", "10.1.0.1", 5000))[1].calls[0][1] == 403
    assert len(send(b"/both", IPv4Address("TCP", "10.2.0.1", 5000))[2].exchanges) == 1


def test_ipv6_and_mapped_peers_in_the_bridge():
    """When the peer is IPv6 or IPv4-mapped (a dual-stack listener), it is judged by its address."""
    assert len(send(b"/admin", IPv6Address("TCP", "2001:db8::7", 5000))[2].exchanges) == 1
    assert len(send(b"/admin", IPv6Address("TCP", "::ffff:10.0.0.7", 5000))[2].exchanges) == 1
    assert send(b"/admin", IPv6Address("TCP", "::ffff:11.0.0.7", 5000))[1].calls[0][1] == 403


def test_a_unix_socket_peer_is_refused_by_a_rule():
    """When the peer has no address, a route with a rule refuses it; an open route serves it."""
    assert send(b"/x", UNIXAddress(None))[1].calls[0][1] == 403
    assert len(send(b"/other", UNIXAddress(None))[2].exchanges) == 1


def test_behind_a_trusted_proxy_the_forwarded_client_is_judged():
    """When the peer is a trusted proxy, the client it reports is judged, both ways."""
    peer = IPv4Address("TCP", "192.0.2.10", 5000)
    allowed = send(b"/admin", peer, PROXY, [(b"x-forwarded-for", b"10.0.0.1")])
    refused = send(b"/admin", peer, PROXY, [(b"x-forwarded-for", b"198.51.100.1")])
    assert len(allowed[2].exchanges) == 1 and refused[1].calls[0][1] == 403


def test_an_untrusted_peer_cannot_forge_its_way_in():
    """When an untrusted peer sends X-Forwarded-For naming an allowed address, it is still refused."""
    _, stream, pool, _ = send(b"/admin", IPv4Address("TCP", "198.51.100.1", 5000), PROXY, [(b"x-forwarded-for", b"10.0.0.1")])
    assert stream.calls[0][1] == 403 and pool.exchanges == []


def test_a_refused_client_does_not_learn_a_redirect():
    """When a redirecting route refuses the client, it gets 403, not the Location."""
    refused = send(b"/old", IPv4Address("TCP", "192.0.2.7", 5000))[1]
    allowed = send(b"/old", IPv4Address("TCP", "10.0.0.7", 5000))[1]
    assert refused.calls[0][1] == 403 and allowed.calls[0][1] == 301
