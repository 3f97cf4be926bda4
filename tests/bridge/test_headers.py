"""Header translation: requests to backends (forwarding trust, Host, cookies, hop-by-hop,
Via, request ids, route edits) and responses to clients."""

import pytest

from h2proxy.bridge.headers import (
    ForwardingPolicy,
    HeaderEdits,
    RequestFacts,
    UnforwardableRequest,
    client_address,
    forwarded_element,
    incoming_request_id,
    request_body_length,
    to_client,
    to_upstream,
    trailers_to_client,
    trailers_to_upstream,
)
from h2proxy.config.model import ForwardingConfig, RequestHeadersConfig
from h2proxy.message import RequestHead, ResponseHead

FULL = ForwardingPolicy.fromConfig(ForwardingConfig(forwarded=True, trusted_proxies=("10.0.0.0/8", "2001:db8::/32")))


def head(**kw) -> RequestHead:
    base = dict(method=b"GET", scheme=b"https", authority=b"example.org", path=b"/p?q=1")
    base.update(kw)
    return RequestHead(**base)


def facts(peer: str = "192.0.2.7", policy: ForwardingPolicy = FULL, **kw) -> RequestFacts:
    base = dict(peer=peer, secure=True, protocol=b"2", trusted=policy.trusts(peer), requestId=b"0123456789abcdef")
    base.update(kw)
    return RequestFacts(**base)


def forward(request: RequestHead, policy: ForwardingPolicy = FULL, peer: str = "192.0.2.7", **kw):
    return to_upstream(request, target=request.path, facts=facts(peer, policy), policy=policy, body_length=0, **kw)


CLIENT_FIELDS = (
    (b"cookie", b"a=1"),
    (b"accept", b"*/*"),
    (b"cookie", b"b=2"),
    (b"te", b"trailers"),
    (b"x-forwarded-for", b"203.0.113.1"),
    (b"x-forwarded-proto", b"http"),
    (b"x-forwarded-host", b"public.example"),
    (b"forwarded", b"for=203.0.113.1"),
    (b"x-real-ip", b"203.0.113.1"),
    (b"x-request-id", b"lb-42"),
    (b"via", b"1.1 edge"),
    (b"proxy-authorization", b"Basic eA=="),
    (b"keep-alive", b"timeout=5"),
    (b"content-length", b"0"),
    (b"host", b"example.org"),
)


def test_untrusted_peer_gets_its_forwarding_fields_replaced():
    """When a client that is not a trusted proxy sends forwarding fields, the backend sees only ours."""
    request = forward(head(headers=CLIENT_FIELDS))
    assert request.headers == (
        (b"host", b"example.org"),
        (b"accept", b"*/*"),
        (b"cookie", b"a=1; b=2"),
        (b"x-forwarded-for", b"192.0.2.7"),
        (b"x-forwarded-proto", b"https"),
        (b"x-forwarded-host", b"example.org"),
        (b"forwarded", b"for=192.0.2.7;host=example.org;proto=https"),
        (b"x-request-id", b"0123456789abcdef"),
        (b"via", b"1.1 edge, 2 h2proxy"),
    )


def test_trusted_peer_gets_its_forwarding_fields_extended():
    """When a trusted proxy sends forwarding fields, they are kept and this hop is appended."""
    request = forward(head(headers=CLIENT_FIELDS), peer="10.1.2.3")
    assert request.headers == (
        (b"host", b"example.org"),
        (b"accept", b"*/*"),
        (b"x-real-ip", b"203.0.113.1"),
        (b"cookie", b"a=1; b=2"),
        (b"x-forwarded-for", b"203.0.113.1, 10.1.2.3"),
        (b"x-forwarded-proto", b"http"),
        (b"x-forwarded-host", b"public.example"),
        (b"forwarded", b"for=203.0.113.1, for=10.1.2.3;host=example.org;proto=https"),
        (b"x-request-id", b"0123456789abcdef"),
        (b"via", b"1.1 edge, 2 h2proxy"),
    )


def test_trusted_fields_pass_unchanged_when_we_set_none():
    """When forwarding fields are switched off, a trusted proxy's pass on unchanged and an untrusted client's are dropped."""
    quiet = ForwardingPolicy.fromConfig(
        ForwardingConfig(x_forwarded=False, via=False, request_id=False, trusted_proxies=("10.0.0.0/8",))
    )
    trusted = dict(forward(head(headers=CLIENT_FIELDS), policy=quiet, peer="10.0.0.1").headers)
    assert trusted[b"x-forwarded-for"] == b"203.0.113.1" and trusted[b"x-request-id"] == b"lb-42"
    assert trusted[b"forwarded"] == b"for=203.0.113.1" and trusted[b"via"] == b"1.1 edge"
    untrusted = dict(forward(head(headers=CLIENT_FIELDS), policy=quiet).headers)
    assert untrusted.keys() == {b"host", b"accept", b"cookie", b"via"}


def test_default_policy_sets_only_x_forwarded_for_and_proto():
    """When a bridge runs without a configured policy, only X-Forwarded-For and -Proto are added."""
    request = forward(head(headers=((b"accept", b"*/*"),)), policy=ForwardingPolicy())
    assert request.headers == (
        (b"host", b"example.org"),
        (b"accept", b"*/*"),
        (b"x-forwarded-for", b"192.0.2.7"),
        (b"x-forwarded-proto", b"https"),
    )


def test_conflicting_host_is_refused():
    """When a host field differs from :authority, the request is refused rather than forwarded."""
    with pytest.raises(UnforwardableRequest):
        forward(head(headers=((b"host", b"evil.example"),)))
    assert dict(forward(head(headers=((b"host", b"EXAMPLE.org"),))).headers)[b"host"] == b"example.org"


def test_ipv6_and_ports_in_forwarded():
    """When the client is IPv6 or the host has a port, the Forwarded element quotes them."""
    assert forwarded_element("2001:db8::1", b"example.org:8443", b"https") == (
        b'for="[2001:db8::1]";host="example.org:8443";proto=https'
    )
    assert forwarded_element("unknown", b"example.org", b"http") == b"for=unknown;host=example.org;proto=http"


def test_client_address_normalises_mapped_ipv4():
    """When a dual-stack listener reports an IPv4-mapped address, backends see plain IPv4."""
    assert client_address("::ffff:192.0.2.1") == "192.0.2.1"
    assert client_address("2001:db8::1") == "2001:db8::1"
    assert client_address(None) == "unknown"


def test_trust_checks_networks_of_both_families():
    """When a peer is inside a trusted network it is trusted; outside, or not an address, it is not."""
    assert FULL.trusts("10.200.0.1") and FULL.trusts("2001:db8:1::5")
    assert not FULL.trusts("11.0.0.1") and not FULL.trusts("unknown")
    assert not ForwardingPolicy().trusts("10.0.0.1")


def test_incoming_request_id_must_be_well_formed():
    """When an incoming request id has odd characters or is too long, it is not taken."""
    assert incoming_request_id(((b"x-request-id", b"0f5b-4c2e:A/b+="),)) == b"0f5b-4c2e:A/b+="
    assert incoming_request_id(((b"x-request-id", b'bad"id'),)) is None
    assert incoming_request_id(((b"x-request-id", b"x" * 129),)) is None
    assert incoming_request_id(()) is None


def test_route_edits_come_last():
    """When a route removes, sets and adds fields, they apply after the proxy's own fields."""
    edits = HeaderEdits.fromConfig(
        RequestHeadersConfig(
            remove=("accept", "x-forwarded-host"),
            set=(("x-env", "prod"), ("user-agent", "h2proxy")),
            add=(("x-extra", "1"), ("x-env", "also")),
        )
    )
    request = forward(head(headers=((b"accept", b"*/*"), (b"user-agent", b"curl"), (b"x-env", b"dev"))), edits=edits)
    names = [name for name, _ in request.headers]
    assert b"accept" not in names and b"x-forwarded-host" not in names and b"user-agent" in names
    assert request.headers[-4:] == (
        (b"x-env", b"prod"),
        (b"user-agent", b"h2proxy"),
        (b"x-extra", b"1"),
        (b"x-env", b"also"),
    )


def test_body_length_choice():
    """When the request has no body, a declared length, or neither, the framing follows."""
    assert request_body_length(head(end_stream=True)) == 0
    assert request_body_length(head(content_length=12)) == 12
    assert request_body_length(head()) is None


def test_response_cleaned_and_marked():
    """When a backend response arrives, connection fields go, names are lowercased, and Via and the request id are added."""
    response = ResponseHead(200, ((b"Connection", b"close"), (b"X-A", b"1"), (b"keep-alive", b"5")))
    out = to_client(response, policy=FULL, requestId=b"rid")
    assert out.headers == ((b"x-a", b"1"), (b"via", b"1.1 h2proxy"), (b"x-request-id", b"rid"))


def test_response_keeps_backend_request_id_and_applies_edits():
    """When the backend sets its own request id, it is not duplicated; route edits apply to the response."""
    edits = HeaderEdits.fromConfig(RequestHeadersConfig(remove=("server",), set=(("cache-control", "no-store"),)))
    response = ResponseHead(200, ((b"server", b"gunicorn"), (b"x-request-id", b"backend"), (b"cache-control", b"max-age=9")))
    out = to_client(response, policy=FULL, edits=edits, requestId=b"rid")
    assert out.headers == ((b"x-request-id", b"backend"), (b"cache-control", b"no-store"), (b"via", b"1.1 h2proxy"))


def test_clean_response_is_returned_as_is():
    """When nothing needs changing (an informational head), the same object comes back."""
    early = ResponseHead(103, ((b"link", b"</style.css>; rel=preload"),))
    assert to_client(early) is early


def test_trailers_both_ways():
    """When trailers pass, framing, routing and connection fields are dropped and names lowercased."""
    assert trailers_to_upstream(((b"x-sum", b"1"), (b"host", b"x"), (b"content-length", b"3"), (b"te", b"x"))) == (
        (b"x-sum", b"1"),
    )
    assert trailers_to_client(((b"Grpc-Status", b"0"), (b"Connection", b"x"), (b":status", b"200"))) == (
        (b"grpc-status", b"0"),
    )


def test_urgency_of_priority_values():
    """When a priority field is read, only a valid u=0..7 counts; anything else is the default 3."""
    from h2proxy.bridge.headers import urgency_of

    assert urgency_of(b"u=0") == 0
    assert urgency_of(b"i, u=6") == 6
    assert urgency_of(b"u=9") == 3
    assert urgency_of(b"u=") == 3
    assert urgency_of(b"garbage") == 3
