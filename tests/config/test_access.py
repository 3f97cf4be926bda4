"""A route's allow and deny networks: valid forms, and every refusal with its
file:line:column and message."""

from __future__ import annotations

import pytest

from h2proxy.config.access import RequestRate
from h2proxy.config.model import RouteConfig
from tests.config.minimal import load, problems, route


def test_allow_and_deny_are_kept_normalised():
    """When a route lists networks, IPv4 and IPv6 CIDR and bare addresses are kept in their text form."""
    config = load(route("""\
        - path: /admin
          upstream: app
          allow: [10.0.0.0/8, "2001:DB8::/32", 192.0.2.7]
          deny: ["::1"]
        """))
    assert config.routes[1].allow == ("10.0.0.0/8", "2001:db8::/32", "192.0.2.7/32")
    assert config.routes[1].deny == ("::1/128",)
    assert config.warnings == ()


def test_a_route_without_networks_is_open():
    """When a route sets neither list, allow is unset and deny is empty."""
    assert (load(route("- {path: /x, upstream: app}\n")).routes[1].allow, RouteConfig(upstream="a").deny) == (None, ())


def test_networks_apply_to_a_redirecting_route_without_warning():
    """When a redirecting route limits its clients, no warning says it has no effect."""
    config = load(route("""\
        - path: /old
          redirect: {location: /new}
          allow: [10.0.0.0/8]
        """))
    assert config.routes[1].allow == ("10.0.0.0/8",) and config.warnings == ()


@pytest.mark.parametrize(
    "value, message",
    [
        ("[10.0.0.0/33]", "routes[1].allow[0]: expected an IP network like 10.0.0.0/8, 2001:db8::/32 or an address, got '10.0.0.0/33'"),
        ("[10.0.0.0/8, example.org]", "routes[1].allow[1]: expected an IP network like 10.0.0.0/8, 2001:db8::/32 or an address, got 'example.org'"),
        ("[10.0.0.1/8]", "routes[1].allow[0]: '10.0.0.1/8' has host bits set; did you mean 10.0.0.0/8?"),
    ],
)
def test_a_bad_network_is_named_at_its_line(value, message):
    """When an entry is not a network, the error names it and its line."""
    text = route(f"""\
        - path: /admin
          upstream: app
          allow: {value}
        """)
    (problem,) = problems(text)
    assert problem.startswith("/nonexistent/conf.yaml:13:") and problem.endswith(message)


def test_a_bad_deny_entry_on_its_own_line():
    """When deny is a block list, the bad entry's own line is named."""
    text = route("""\
        - path: /x
          upstream: app
          deny:
            - 203.0.113.0/24
            - nonsense
        """)
    (problem,) = problems(text)
    assert problem.startswith("/nonexistent/conf.yaml:15:9:") and "routes[1].deny[1]: expected an IP network" in problem


def test_an_empty_allow_list_is_refused():
    """When allow is an empty list (which could be read as "nobody" or "everybody"), it is an error."""
    (problem,) = problems(route("- {path: /x, upstream: app, allow: []}\n"))
    assert problem.startswith("/nonexistent/conf.yaml:11:") and problem.endswith("routes[1].allow: expected 1 to 1024 items, got 0")


def test_a_network_listed_twice_is_refused():
    """When the same network appears twice, it is an error."""
    (problem,) = problems(route("- {path: /x, upstream: app, deny: [10.0.0.0/8, 10.0.0.0/8]}\n"))
    assert "routes[1].deny" in problem


# -- rate_limit ------------------------------------------------------------------------------


def test_a_rate_limit_per_second_and_per_minute():
    """When a route sets rate_limit, the rate reads N/s or N/m and burst defaults to 1."""
    config = load(route("""\
        - path: /api
          upstream: app
          rate_limit: {rate: 5/s, burst: 10}
        - path: /slow
          upstream: app
          rate_limit:
            rate: 30/m
        """))
    api, slow = config.routes[1].rate_limit, config.routes[2].rate_limit
    assert (api.rate, api.rate.per_second, api.burst) == (RequestRate(5, 1), 5.0, 10)
    assert (str(slow.rate), slow.rate.per_second, slow.burst) == ("30/m", 0.5, 1)
    assert config.routes[0].rate_limit is None and config.warnings == ()


@pytest.mark.parametrize("rate", ["5/x", "0/s", "-1/s", "5", "1.5/s", "5/h", "/s", "1000001/s"])
def test_a_bad_rate_is_named_at_its_line(rate):
    """When the rate is not a positive whole number per s or m, the error names it at its line."""
    text = route(f"""\
        - path: /api
          upstream: app
          rate_limit:
            rate: "{rate}"
        """)
    assert problems(text) == [
        "/nonexistent/conf.yaml:14:13: routes[1].rate_limit.rate: expected a rate like 5/s or 100/m: "
        f"1 to 1,000,000 requests per second (/s) or minute (/m), got '{rate}'"
    ]


def test_a_rate_limit_needs_a_rate_and_a_positive_burst():
    """When the rate is missing or the burst is 0, each is an error at its place."""
    missing = problems(route("- {path: /a, upstream: app, rate_limit: {burst: 3}}\n"))
    assert len(missing) == 1 and "routes[1].rate_limit" in missing[0] and "rate" in missing[0]
    zero = problems(route("- {path: /a, upstream: app, rate_limit: {rate: 1/s, burst: 0}}\n"))
    assert len(zero) == 1 and "routes[1].rate_limit.burst: expected an integer from 1 to 1000000" in zero[0]
