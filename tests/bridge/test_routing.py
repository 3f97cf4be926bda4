"""Router: host patterns by specificity, exact paths, longest prefix on segment
boundaries, fall-through to less specific hosts, prefix stripping."""

import pytest

from h2proxy.bridge.routing import Route, Router, host_without_port, path_matches
from h2proxy.config.model import RouteConfig

ROUTES = (
    RouteConfig(upstream="default", host="*", path="/"),
    RouteConfig(upstream="api", host="*", path="/api"),
    RouteConfig(upstream="api-login", host="*", path="/api/login", exact=True),
    RouteConfig(upstream="exact", host="example.org", path="/"),
    RouteConfig(upstream="exact-static", host="example.org", path="/static/"),
    RouteConfig(upstream="exact-health", host="example.org", path="/health", exact=True),
    RouteConfig(upstream="only-docs", host="docs.example.net", path="/docs"),
    RouteConfig(upstream="wild", host="*.example.org", path="/"),
    RouteConfig(upstream="deep-wild", host="*.eu.example.org", path="/"),
)

CASES = {
    (b"other.net", b"/"): "default",
    (b"other.net", b"/api"): "api",
    (b"other.net", b"/api/v1?x"): "api",
    (b"other.net", b"/apix"): "default",
    (b"other.net", b"/api/login"): "api-login",
    (b"other.net", b"/api/login?next=/"): "api-login",
    (b"other.net", b"/api/login/more"): "api",
    (b"example.org", b"/api"): "exact",
    (b"EXAMPLE.org:443", b"/static/a.css"): "exact-static",
    (b"example.org", b"/static"): "exact",
    (b"example.org", b"/health"): "exact-health",
    (b"example.org", b"/health/deep"): "exact",
    (b"example.org.", b"/static/x"): "exact-static",
    (b"www.example.org", b"/"): "wild",
    (b"a.eu.example.org", b"/x"): "deep-wild",
    (b"eu.example.org", b"/x"): "wild",
    (b"example.org.evil.net", b"/"): "default",
    (b"docs.example.net", b"/docs/intro"): "only-docs",
    (b"docs.example.net", b"/blog"): "default",
    (b"[::1]:8443", b"/api/"): "api",
}


@pytest.mark.parametrize("authority, path", list(CASES), ids=[f"{a.decode()}{p.decode()}" for a, p in CASES])
def test_routing_table(authority, path):
    """When requests vary by host and path, each gets the most specific route."""
    match = Router(ROUTES).match(authority, path)
    assert match is not None and match.upstream == CASES[(authority, path)]


def test_no_match_without_default():
    """When no route covers the host, match returns None (the bridge answers 404)."""
    router = Router((RouteConfig(upstream="a", host="example.org", path="/api"),))
    assert router.match(b"other.org", b"/") is None
    assert router.match(b"example.org", b"/") is None


def test_first_of_two_identical_exact_routes_wins():
    """When the same exact path is listed twice, the first one listed serves it."""
    router = Router((RouteConfig(upstream="a", path="/x", exact=True), RouteConfig(upstream="b", path="/x", exact=True)))
    assert router.match(b"h", b"/x").upstream == "a"


@pytest.mark.parametrize(
    "prefix, exact, path, target",
    [
        ("/api", False, b"/api/v1/items?q=1", b"/v1/items?q=1"),
        ("/api", False, b"/api", b"/"),
        ("/api", False, b"/api?q=1", b"/?q=1"),
        ("/static/", False, b"/static/app.css", b"/app.css"),
        ("/login", True, b"/login?next=/", b"/?next=/"),
        ("/", False, b"/anything", b"/anything"),
        ("/", False, b"*", b"*"),
    ],
)
def test_strip_prefix(prefix, exact, path, target):
    """When a route strips its prefix, the backend's target is the rest of the path, starting with /."""
    route = Route.fromConfig(RouteConfig(upstream="a", path=prefix, exact=exact, strip_prefix=True))
    assert route.target(path) == target


def test_target_unchanged_without_strip():
    """When a route does not strip, the backend gets the path exactly as sent."""
    route = Route.fromConfig(RouteConfig(upstream="a", path="/api"))
    assert route.target(b"/api/%2e%2e/x?y") == b"/api/%2e%2e/x?y"


def test_host_and_prefix_helpers():
    """When an authority has a port, brackets or a trailing dot, the host part is isolated and lowercased."""
    assert host_without_port(b"Example.ORG:8443") == "example.org"
    assert host_without_port(b"example.org.:443") == "example.org"
    assert host_without_port(b"[::1]:443") == "[::1]"
    assert path_matches("/a/", "/a/b") and not path_matches("/a", "/ab") and path_matches("/a", "/a/")


def test_one_router_answers_every_case_twice_the_same():
    """When one router matches every case twice (its host lookups remembered), each gets the same route both times."""
    router = Router(ROUTES)
    for _ in range(2):
        for (authority, path), upstream in CASES.items():
            match = router.match(authority, path)
            assert match is not None and match.upstream == upstream, (authority, path)


def test_authorities_past_the_cache_limit_still_route():
    """When more authorities arrive than the router remembers, later ones are still routed and the memory stays bounded."""
    router = Router(ROUTES, maxCachedAuthorities=3)
    for index in range(10):
        assert router.match(b"h%d.example.org" % index, b"/").upstream == "wild"
        assert router.match(b"h%d.other.net" % index, b"/api").upstream == "api"
    assert len(router._byAuthority) == 3
