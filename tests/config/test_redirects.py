"""Redirect options: a listener's redirect_https and a route's redirect, valid forms
and every refusal with its file:line:column and message."""

from __future__ import annotations

from pathlib import Path

import pytest

from h2proxy.config.model import RedirectConfig
from tests.config.certs import make_self_signed
from tests.config.minimal import HEAD, load, problems, route


def test_a_listener_that_redirects_to_https():
    """When a listener sets redirect_https, it holds the port; others default to null."""
    config = load(
        """\
        listeners:
          - name: web
            address: 0.0.0.0
            port: 80
            redirect_https: 443
          - name: other
            address: 127.0.0.1
            port: 81
            redirect_https: null
        upstreams:
          app:
            servers:
              - address: 127.0.0.1:8000
        routes:
          - upstream: app
        """
    )
    assert [listener.redirect_https for listener in config.listeners] == [443, None]
    assert config.warnings == ()


def test_a_quoted_redirect_port_is_read_as_the_number():
    """When the port is quoted (as a ${PORT} inside quotes would be), it is still an integer."""
    config = load(HEAD.replace("port: 8080", 'port: 8080\n    redirect_https: "8443"'))
    assert config.listeners[0].redirect_https == 8443


@pytest.mark.parametrize("port, line", [(0, "0"), (65536, "65536"), ("https", "'https'"), (True, "true")])
def test_redirect_https_takes_a_port(port, line):
    """When redirect_https is not a port from 1 to 65535, the error names the bounds at its line."""
    text = HEAD.replace("port: 8080", f"port: 8080\n    redirect_https: {str(port).lower()}")
    assert problems(text) == [
        f"/nonexistent/conf.yaml:5:21: listeners[0].redirect_https: expected an integer from 1 to 65535, got {line}"
    ]


def test_a_tls_listener_cannot_redirect_to_its_own_port(tmp_path: Path):
    """When a TLS listener redirects to its own port, every request would loop: an error at redirect_https."""
    cert, key = make_self_signed(tmp_path, ["example.org"])
    text = f"""\
listeners:
  - name: main
    address: 127.0.0.1
    port: 8443
    redirect_https: 8443
    tls:
      certificates:
        - cert: {cert}
          key: {key}
upstreams:
  app:
    servers:
      - address: 127.0.0.1:8000
routes:
  - upstream: app
"""
    assert problems(text) == [
        "/nonexistent/conf.yaml:5:21: listeners[0].redirect_https: "
        "redirects this TLS listener to its own port 8443: every request would loop"
    ]


def test_a_route_redirect_defaults_to_301():
    """When a route has a redirect without a status, it is 301 and the route has no upstream."""
    config = load(route("""\
        - path: /old
          redirect:
            location: https://example.org/new
        """))
    assert config.routes[1].redirect == RedirectConfig(location="https://example.org/new", status=301)
    assert config.routes[1].upstream is None
    assert config.warnings == ()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_every_redirect_status_is_accepted(status):
    """When the status is one of the redirect statuses, it is kept."""
    config = load(route(f"""\
        - path: /old
          redirect: {{location: /new, status: {status}}}
        """))
    assert config.routes[1].redirect == RedirectConfig(location="/new", status=status)


@pytest.mark.parametrize(
    "location",
    ["/new", "/", "/a%20b?x=1&y=%2F#top", "https://example.org", "http://[2001:db8::1]:8080/x?q", "https://example.org:8443/a"],
)
def test_locations_are_kept_as_written(location):
    """When the location is an absolute URL or path of visible ASCII, it is kept byte for byte."""
    config = load(route(f"""\
        - path: /old
          redirect: {{location: "{location}"}}
        """))
    assert config.routes[1].redirect.location == location


@pytest.mark.parametrize("status, got", [(300, "300"), (200, "200"), (399, "399"), ("permanent", "'permanent'")])
def test_a_status_that_is_not_a_redirect_is_refused(status, got):
    """When the status is not 301, 302, 303, 307 or 308, the error names the allowed values at its line."""
    assert problems(route(f"""\
        - path: /old
          redirect:
            location: /new
            status: {status}
        """)) == [
        f"/nonexistent/conf.yaml:14:15: routes[1].redirect.status: expected one of 301, 302, 303, 307, 308, got {got}"
    ]


NOT_VISIBLE = (
    "a redirect location cannot contain spaces, control characters (CR, LF, NUL) or non-ASCII "
    "characters; percent-encode them (a space is %20)"
)


@pytest.mark.parametrize(
    "written, message",
    [
        ('"/a b"', NOT_VISIBLE),
        ('"/a\\r\\nSet-Cookie: x=1"', NOT_VISIBLE),
        ('"/a\\0b"', NOT_VISIBLE),
        ('"/a\\tb"', NOT_VISIBLE),
        ('"/caf\u00e9"', NOT_VISIBLE),
        ('"//evil.example/x"', "a location starting with // names another host without a scheme; write https://host/..."),
        (
            "example.org/new",
            "expected an absolute URL like https://example.org/new or a path starting with /, got 'example.org/new'",
        ),
        ("https://", "expected an absolute URL like https://example.org/new or a path starting with /, got 'https://'"),
        ('""', "expected an absolute URL like https://example.org/new or a path starting with /, got ''"),
        ("301", "expected an absolute URL like https://example.org/new or a path starting with /, got 301"),
    ],
)
def test_a_location_that_is_not_a_url_or_path_is_refused(written, message):
    """When the location has a space, CR, LF, NUL or non-ASCII character, or is neither an absolute URL nor a path, the error says which at its line."""
    assert problems(route(f"""\
        - path: /old
          redirect:
            location: {written}
        """)) == [f"/nonexistent/conf.yaml:13:17: routes[1].redirect.location: {message}"]


def test_a_redirect_needs_a_location():
    """When the redirect has no location, the location is reported missing at the redirect."""
    assert problems(route("""\
        - path: /old
          redirect:
            status: 302
        """)) == ["/nonexistent/conf.yaml:13:7: routes[1].redirect.location: required option is missing"]


def test_a_route_with_both_an_upstream_and_a_redirect_is_refused():
    """When a route has both, the error at its redirect says to keep one."""
    assert problems(route("""\
        - path: /old
          upstream: app
          redirect:
            location: /new
        """)) == [
        "/nonexistent/conf.yaml:13:5: routes[1].redirect: "
        "a route has either an upstream or a redirect, not both; remove one of them"
    ]


def test_a_route_with_neither_an_upstream_nor_a_redirect_is_refused():
    """When a route has neither, the error at the route says it needs one."""
    assert problems(route("""\
        - path: /nowhere
        """)) == [
        "/nonexistent/conf.yaml:11:5: routes[1]: a route needs an upstream (to forward to), a redirect (to answer with) or static (files to serve)"
    ]


def test_forwarding_options_on_a_redirect_route_are_warned_about():
    """When a redirecting route sets options that only matter when forwarding, each gets a warning."""
    config = load(route("""\
        - path: /old
          strip_prefix: true
          request_body: buffer
          redirect:
            location: /new
        """))
    assert config.warnings == (
        "/nonexistent/conf.yaml:12:19: warning: routes[1].strip_prefix: has no effect on a route that redirects",
        "/nonexistent/conf.yaml:13:19: warning: routes[1].request_body: has no effect on a route that redirects",
    )


def test_compress_on_a_redirect_route_is_warned_about():
    """When a redirecting route sets compress, it gets a warning: a redirect has no body."""
    config = load(route("""\
        - path: /old
          compress: true
          redirect:
            location: /new
        """))
    assert config.warnings == (
        "/nonexistent/conf.yaml:12:15: warning: routes[1].compress: has no effect on a route that redirects "
        "(a redirect has no body)",
    )


def test_redirect_routes_beside_forwarding_ones_raise_no_upstream_warning():
    """When redirect routes sit beside forwarding ones, no upstream is reported unused or missing."""
    config = load(route("""\
        - path: /old
          redirect: {location: /new}
        """))
    assert config.warnings == ()


def test_a_config_of_redirecting_listeners_needs_no_upstream_or_route():
    config = load(
        """\
        listeners:
          - {name: web, address: 127.0.0.1, port: 8080, redirect_https: 443}
        """
    )
    assert (config.upstreams, config.routes) == ({}, ())


def test_route_redirects_alone_need_no_upstream():
    config = load(
        """\
        listeners:
          - {name: web, address: 127.0.0.1, port: 8080}
        routes:
          - {path: /, redirect: {location: "https://example.org/"}}
        """
    )
    assert config.upstreams == {}
    assert config.routes[0].redirect == RedirectConfig(location="https://example.org/", status=301)


def test_a_serving_listener_without_routes_is_refused_by_name():
    found = problems(
        """\
        listeners:
          - {name: web, address: 127.0.0.1, port: 8080, redirect_https: 443}
          - {name: plain, address: 127.0.0.1, port: 8081}
        """
    )
    assert found == [
        "/nonexistent/conf.yaml: routes: listener 'plain' serves requests but no route is declared; add a route "
        "(host, path and an upstream, redirect or static root)"
    ]
