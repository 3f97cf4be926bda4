"""Routing through the real daemon: a table of hosts, wildcards, exact paths, prefixes,
prefix stripping, a default and no match, each request checked at the backend that
served it (two real origins)."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import base_config
from tests.e2e.h2client import H2Client
from tests.e2e.harness import start_origin, start_proxy, write_config
from tests.e2e.semantics_client import h2_response


def route(name: str, upstream: str, host: str, path: str, **extra) -> dict:
    """A route that marks the requests it serves with ``x-route: name``."""
    return {"host": host, "path": path, "upstream": upstream,
            "request_headers": {"set": [f"x-route: {name}"]}, **extra}


ROUTES = [
    route("app", "a", "app.example", "/app"),
    route("app-api", "b", "app.example", "/api", strip_prefix=True),
    route("app-health", "a", "app.example", "/health", exact=True),
    route("wild", "b", "*.example", "/"),
    route("eu-wild", "a", "*.eu.example", "/"),
    route("default", "a", "*", "/shared"),
    route("default-static", "b", "*", "/shared/static/"),
]

#: (authority, path) -> (route, origin, target the backend gets); None: 404.
TABLE = {
    ("app.example", "/app/page"): ("app", "a", "/app/page"),
    ("APP.example:8443", "/app"): ("app", "a", "/app"),
    ("app.example", "/api/users?x=1"): ("app-api", "b", "/users?x=1"),
    ("app.example", "/api"): ("app-api", "b", "/"),
    ("app.example", "/apix"): ("wild", "b", "/apix"),
    ("app.example", "/health"): ("app-health", "a", "/health"),
    ("app.example", "/health/deep"): ("wild", "b", "/health/deep"),
    ("shop.example", "/cart"): ("wild", "b", "/cart"),
    ("fr.eu.example", "/"): ("eu-wild", "a", "/"),
    ("other.test", "/shared/x?y=2"): ("default", "a", "/shared/x?y=2"),
    ("other.test", "/shared/static/a.css"): ("default-static", "b", "/shared/static/a.css"),
    ("other.test", "/"): None,
    ("example", "/cart"): None,
}


@pytest.fixture(scope="module")
def setup(workdir, certificate):
    origins = {}
    for name in ("a", "b"):
        (workdir / name).mkdir()
        origins[name] = start_origin(workdir / name)
    config = base_config(0, certificate)
    config["upstreams"] = {name: {"servers": [{"address": f"127.0.0.1:{o.port}"}]} for name, o in origins.items()}
    config["routes"] = ROUTES
    daemon = start_proxy(write_config(workdir, config), ["tls", "h2c"])
    yield daemon, origins
    daemon.stop()
    for origin in origins.values():
        origin.stop()


def test_routing_table_picks_the_right_backend(setup):
    """When requests vary by host, wildcard, exact path and prefix, each reaches the route's backend
    with the expected target, and requests no route covers get 404 without reaching any backend."""
    daemon, origins = setup
    client = H2Client(daemon.ports["h2c"])
    seen: dict[str, list[tuple[str, str]]] = {"a": [], "b": []}
    try:
        for (authority, path), expected in TABLE.items():
            stream = client.request("GET", path, authority=authority)
            response = h2_response(client, stream)
            if expected is None:
                assert response.status == 404, (authority, path)
                assert b"error=destination_not_found" in response.header(b"proxy-status")
                continue
            name, upstream, target = expected
            assert response.status == 200, (authority, path, response.body)
            seen[upstream].append((name, target))
    finally:
        client.close()
    for upstream, origin in origins.items():
        logged = [(dict(r["headers"])["x-route"], r["target"]) for r in origin.requests()]
        assert logged == seen[upstream]
    assert sum(len(v) for v in seen.values()) == sum(1 for v in TABLE.values() if v)


def test_no_route_error_names_the_request(setup):
    """When no route matches, the 404 carries the request id in Proxy-Status, X-Request-Id and its body."""
    daemon, _ = setup
    client = H2Client(daemon.ports["h2c"])
    try:
        response = h2_response(client, client.request("GET", "/", authority="nowhere.test"))
    finally:
        client.close()
    request_id = response.header(b"x-request-id")
    assert response.status == 404 and request_id and len(request_id) == 16
    assert response.header(b"proxy-status") == (
        b'h2proxy; error=destination_not_found; details="request id ' + request_id + b'"'
    )
    assert request_id in response.body
