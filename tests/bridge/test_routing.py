"""Router: host patterns by specificity, longest path prefix on segment boundaries."""

from h2proxy.bridge.routing import Router, host_without_port, path_matches
from h2proxy.config.model import RouteConfig

ROUTES = (
    RouteConfig(upstream="default", host="*", path="/"),
    RouteConfig(upstream="api", host="*", path="/api"),
    RouteConfig(upstream="exact", host="example.org", path="/"),
    RouteConfig(upstream="exact-static", host="example.org", path="/static/"),
    RouteConfig(upstream="wild", host="*.example.org", path="/"),
    RouteConfig(upstream="deep-wild", host="*.eu.example.org", path="/"),
)


def route_of(authority: bytes, path: bytes) -> str | None:
    match = Router(ROUTES).match(authority, path)
    return match.upstream if match else None


def test_routing_table():
    """When requests vary by host and path, each gets the most specific route."""
    cases = {
        (b"other.net", b"/"): "default",
        (b"other.net", b"/api"): "api",
        (b"other.net", b"/api/v1?x"): "api",
        (b"other.net", b"/apix"): "default",
        (b"example.org", b"/api"): "exact",
        (b"EXAMPLE.org:443", b"/static/a.css"): "exact-static",
        (b"example.org", b"/static"): "exact",
        (b"www.example.org", b"/"): "wild",
        (b"a.eu.example.org", b"/x"): "deep-wild",
        (b"eu.example.org", b"/x"): "wild",
        (b"[::1]:8443", b"/api/"): "api",
    }
    for (authority, path), expected in cases.items():
        assert route_of(authority, path) == expected, (authority, path)


def test_no_match_without_default():
    """When no route covers the host, match returns None (the bridge answers 404)."""
    router = Router((RouteConfig(upstream="a", host="example.org", path="/"),))
    assert router.match(b"other.org", b"/") is None


def test_host_and_prefix_helpers():
    """When an authority has a port or brackets, the host part is isolated and lowercased."""
    assert host_without_port(b"Example.ORG:8443") == "example.org"
    assert host_without_port(b"[::1]:443") == "[::1]"
    assert path_matches("/a/", "/a/b") and not path_matches("/a", "/ab")
