"""The routing and forwarding options in the config: what they load to, and the exact
messages a mistake in them gets."""

from __future__ import annotations

import textwrap

import pytest

from h2proxy.config.load import load_config_text
from h2proxy.errors import ConfigError

HEAD = """\
listeners:
  - name: main
    address: 127.0.0.1
    port: 8080
upstreams:
  app:
    servers:
      - address: 127.0.0.1:9000
"""


def load(text: str):
    return load_config_text(HEAD + textwrap.dedent(text), "conf.yaml")


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        load(text)
    return [str(p) for p in raised.value.problems]


def test_route_options_load():
    """When a route sets every new option, they load as written (header names lowercased)."""
    config = load(
        """\
        routes:
          - path: /api
            upstream: app
            exact: true
            strip_prefix: true
            request_body: buffer
            buffer_limit: 8MiB
            request_headers:
              remove: [X-Debug]
              set: ["X-Env: prod"]
              add: ["x-tag:  a b "]
            response_headers:
              set: ["Cache-Control: no-store"]
        """
    )
    route = config.routes[0]
    assert route.exact and route.strip_prefix and route.request_body == "buffer"
    assert route.buffer_limit == 8 * 1024 * 1024
    assert route.request_headers.remove == ("x-debug",)
    assert route.request_headers.set == (("x-env", "prod"),)
    assert route.request_headers.add == (("x-tag", "a b"),)
    assert route.response_headers.set == (("cache-control", "no-store"),)


def test_listener_forwarding_inherits_the_top_level():
    """When a listener overrides one forwarding option, the others keep the top-level values."""
    text = HEAD.replace("    port: 8080\n", "    port: 8080\n    forwarding:\n      via: false\n") + textwrap.dedent(
        """\
        routes:
          - upstream: app
        forwarding:
          forwarded: true
          trusted_proxies: [10.0.0.0/8, "2001:db8::1"]
        """
    )
    config = load_config_text(text, "conf.yaml")
    listener = config.forwarding_for(config.listeners[0])
    assert not listener.via and listener.forwarded
    assert listener.trusted_proxies == ("10.0.0.0/8", "2001:db8::1/128")
    assert config.forwarding.via


def test_header_edit_mistakes_get_exact_messages():
    """When a header edit is unquoted, names a proxy-owned field or has a bad value, the message says so."""
    assert problems(
        """\
        routes:
          - upstream: app
            request_headers:
              set:
                - X-Env: prod
                - "Host: other"
                - "X-Bad: "
              remove: [content-length, "bad name"]
        """
    ) == [
        'conf.yaml:13:11: routes[0].request_headers.set[0]: expected a header field written "name: value" in quotes '
        "(unquoted, YAML reads name: value as a mapping), got a mapping",
        "conf.yaml:14:11: routes[0].request_headers.set[1]: 'host' cannot be changed by a route: Host comes from :authority",
        "conf.yaml:15:11: routes[0].request_headers.set[2]: expected a non-empty value of visible ASCII characters "
        "after the colon, got 'X-Bad: '",
        "conf.yaml:16:16: routes[0].request_headers.remove[0]: 'content-length' cannot be changed by a route: "
        "message framing is the proxy's",
        "conf.yaml:16:32: routes[0].request_headers.remove[1]: expected a header field name "
        "(letters, digits and !#$%&'*+-.^_`|~), got 'bad name'",
    ]


def test_network_mistakes_get_exact_messages():
    """When a trusted network has host bits set or is not a network, the message says so and suggests a fix."""
    assert problems(
        """\
        routes:
          - upstream: app
        forwarding:
          trusted_proxies: [10.0.0.1/8, lb.internal]
        """
    ) == [
        "conf.yaml:12:21: forwarding.trusted_proxies[0]: '10.0.0.1/8' has host bits set; did you mean 10.0.0.0/8?",
        "conf.yaml:12:33: forwarding.trusted_proxies[1]: expected an IP network like 10.0.0.0/8, 2001:db8::/32 "
        "or an address, got 'lb.internal'",
    ]


def test_route_warnings():
    """When a route strips /, sets a buffer limit it never uses, or everyone is trusted, warnings say so."""
    config = load(
        """\
        routes:
          - upstream: app
            strip_prefix: true
            buffer_limit: 1MiB
        forwarding:
          trusted_proxies: ["0.0.0.0/0"]
        """
    )
    assert [w.split(": ", 2)[1:] for w in config.warnings] == [
        ["warning", "routes[0].strip_prefix: stripping the path / changes nothing"],
        ["warning", "routes[0].buffer_limit: has no effect unless request_body is buffer"],
        ["warning", "forwarding.trusted_proxies[0]: 0.0.0.0/0 trusts every client: anyone can forge "
                    "X-Forwarded-For and the other forwarding fields"],
    ]


def test_exact_and_prefix_routes_on_one_path_may_coexist():
    """When one path has an exact route and a prefix route they are not duplicates; two exact ones are."""
    load(
        """\
        routes:
          - {path: /x, upstream: app}
          - {path: /x, upstream: app, exact: true}
        """
    )
    assert problems(
        """\
        routes:
          - {path: /x, upstream: app, exact: true}
          - {path: /x, upstream: app, exact: true}
        """
    ) == ["conf.yaml:11:12: routes[1].path: host '*' and path '/x' (exact) are already routed by routes[0]; "
          "this route is never used"]
