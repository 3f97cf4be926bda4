"""Loading valid configurations: defaults, conversions, inheritance, paths, warnings."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from h2proxy.config.load import load_config, load_config_text
from h2proxy.config.model import Config, Http2Config, LimitsConfig, LoggingConfig, TimeoutsConfig
from h2proxy.config.upstreams import ServerConfig, UpstreamConfig
from h2proxy.errors import ConfigError
from tests.config.certs import make_self_signed

MINIMAL = """\
listeners:
  - name: main
    address: 127.0.0.1
    port: 8443
upstreams:
  app:
    servers:
      - address: 127.0.0.1:8000
routes:
  - upstream: app
"""


def load(text: str, path: str = "/nonexistent/conf.yaml", **kwargs) -> Config:
    return load_config_text(textwrap.dedent(text), path, **kwargs)


def test_minimal_config_gets_every_default():
    """When only listeners, upstreams and routes are given, every other option has its model default."""
    config = load(MINIMAL)
    assert config.workers == 1
    assert config.timeouts == TimeoutsConfig()
    assert config.http2 == Http2Config()
    assert config.limits == LimitsConfig()
    assert config.logging == LoggingConfig()
    assert config.admin is None and config.user is None and config.group is None
    assert config.upstreams == {
        "app": UpstreamConfig(name="app", servers=(ServerConfig("127.0.0.1", 8000),))
    }
    assert config.source == "/nonexistent/conf.yaml"
    assert config.warnings == ()


def test_operator_units_become_seconds_and_bytes():
    """When durations and sizes are written with units, the model holds float seconds and int bytes."""
    config = load(
        MINIMAL
        + """\
timeouts:
  idle: 250ms
  drain: 2m
http2:
  initial_window_size: 256KiB
limits:
  max_request_body: 16MiB
"""
    )
    assert config.timeouts.idle == 0.25
    assert config.timeouts.drain == 120.0
    assert config.http2.initial_window_size == 256 * 1024
    assert config.limits.max_request_body == 16 * 1024 * 1024


def test_listener_http2_override_inherits_the_top_level_section():
    """When a listener overrides one http2 option, its other options come from the top-level http2, not the defaults."""
    config = load(
        """\
        listeners:
          - name: tuned
            address: 127.0.0.1
            port: 8443
            http2:
              max_concurrent_streams: 500
          - name: plain
            address: 127.0.0.1
            port: 8080
        upstreams:
          app:
            servers:
              - address: 127.0.0.1:8000
        routes:
          - upstream: app
        http2:
          initial_window_size: 2MiB
        """
    )
    tuned, plain = config.listeners
    assert config.http2_for(tuned) == Http2Config(max_concurrent_streams=500, initial_window_size=2 * 1024 * 1024)
    assert config.http2_for(plain) is config.http2
    assert plain.http2 is None


def test_top_level_http2_is_applied_even_when_written_after_listeners():
    """When the top-level http2 section comes after the listeners in the file, overrides still inherit from it."""
    config = load(
        """\
        listeners:
          - name: main
            address: 127.0.0.1
            port: 8443
            http2: {max_frame_size: 32KiB}
        upstreams: {app: {servers: [{address: "127.0.0.1:8000"}]}}
        routes: [{upstream: app}]
        http2: {max_header_list_size: 8KiB}
        """
    )
    assert config.http2_for(config.listeners[0]).max_header_list_size == 8 * 1024


@pytest.mark.parametrize(
    "address, server",
    [
        ("127.0.0.1:8000", ServerConfig("127.0.0.1", 8000, "http")),
        ("backend.internal:81", ServerConfig("backend.internal", 81, "http")),
        ('"[::1]:8000"', ServerConfig("::1", 8000, "http")),
        ("https://api.example.org", ServerConfig("api.example.org", 443, "https")),
        ("https://10.0.0.1:8443", ServerConfig("10.0.0.1", 8443, "https")),
        ("http://backend", ServerConfig("backend", 80, "http")),
        ('"https://[2001:db8::5]:9443"', ServerConfig("2001:db8::5", 9443, "https")),
    ],
)
def test_server_address_forms(address, server):
    """When a server is written host:port, [v6]:port or scheme://host[:port], it becomes host, port and scheme."""
    text = MINIMAL.replace("127.0.0.1:8000", address)
    assert load(text).upstreams["app"].servers == (server,)


def test_workers_auto_means_none():
    """When workers is auto, the model holds None (the supervisor counts CPUs)."""
    assert load(MINIMAL + "workers: auto\n").workers is None


def test_ipv6_listen_address_is_normalised():
    """When an IPv6 address is written in a long form, the model holds its compressed form."""
    config = load(MINIMAL.replace("address: 127.0.0.1", 'address: "0:0:0:0:0:0:0:1"', 1))
    assert config.listeners[0].address == "::1"


def test_route_hosts_are_lower_case():
    """When a route host has capitals, it is stored lower case (hosts compare case-insensitively)."""
    config = load(MINIMAL.replace("  - upstream: app", "  - upstream: app\n    host: WWW.Example.ORG"))
    assert config.routes[0].host == "www.example.org"


def test_ephemeral_ports_may_repeat():
    """When two listeners use port 0 on one address (tests), that is not a conflict."""
    text = MINIMAL.replace("    port: 8443\n", "    port: 0\n  - name: other\n    address: 127.0.0.1\n    port: 0\n")
    assert [l.port for l in load(text).listeners] == [0, 0]


def test_yaml_anchors_and_aliases_work():
    """When a value is shared with a YAML anchor and alias, both places get it."""
    config = load(
        """\
        listeners:
          - name: main
            address: 127.0.0.1
            port: 8443
        upstreams:
          a:
            servers: &pool
              - address: 127.0.0.1:8000
          b:
            servers: *pool
        routes:
          - upstream: a
          - upstream: b
            path: /b
        """
    )
    assert config.upstreams["a"].servers == config.upstreams["b"].servers


def test_relative_paths_are_taken_from_the_config_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """When a certificate path is relative, it is resolved against the config file's directory, not the working directory."""
    make_self_signed(tmp_path / "etc" / "tls", ["example.org"])
    (tmp_path / "etc" / "logs").mkdir()
    (tmp_path / "etc" / "h2proxy.yaml").write_text(
        MINIMAL.replace(
            "    port: 8443\n",
            "    port: 8443\n    tls:\n      certificates:\n"
            "        - cert: tls/example.org.pem\n          key: tls/example.org.key\n",
        )
        + "logging:\n  access_log: logs/access.log\n"
    )
    monkeypatch.chdir(tmp_path)
    config = load_config("etc/h2proxy.yaml")
    certificate = config.listeners[0].tls.certificates[0]
    assert certificate.cert == str(tmp_path / "etc" / "tls" / "example.org.pem")
    assert certificate.key == str(tmp_path / "etc" / "tls" / "example.org.key")
    assert config.logging.access_log == str(tmp_path / "etc" / "logs" / "access.log")


def test_environment_variables_are_substituted(tmp_path: Path):
    """When a value holds ${NAME}, the variable's value is used, and a plain scalar is then read as YAML would."""
    make_self_signed(tmp_path / "secrets", ["example.org"])
    text = MINIMAL.replace("port: 8443", "port: ${PORT}").replace(
        "  - upstream: app", "  - upstream: app\n    path: \"/${PREFIX}\""
    ).replace(
        "    port: ${PORT}\n",
        "    port: ${PORT}\n    tls:\n      certificates:\n"
        "        - cert: ${TLS}/example.org.pem\n          key: ${TLS}/example.org.key\n",
    )
    env = {"PORT": "9443", "TLS": str(tmp_path / "secrets"), "PREFIX": "api"}
    config = load(text, env=env)
    assert config.listeners[0].port == 9443
    assert config.listeners[0].tls.certificates[0].cert == str(tmp_path / "secrets" / "example.org.pem")
    assert config.routes[0].path == "/api"


def test_a_malformed_variable_reference_is_an_error():
    """When ${...} does not hold a variable name, the error says so."""
    with pytest.raises(ConfigError) as raised:
        load(MINIMAL.replace("port: 8443", "port: ${not a name}"), env={})
    assert [str(p) for p in raised.value.problems] == [
        "/nonexistent/conf.yaml:4:11: listeners[0].port: '${not a name}' is not a valid environment variable reference"
    ]


def test_nullable_options_accept_null():
    """When an option documented as 'or null' is null, the model holds None; '-' means standard output."""
    config = load(MINIMAL + "logging:\n  error_log: null\n  access_log: '-'\nuser: ~\n")
    assert config.logging.error_log is None
    assert config.logging.access_log == "-"
    assert config.user is None


def test_warnings_are_returned_not_raised():
    """When an upstream is unused, a queue has no cap, a tls section has no https server or the
    connection window is small, the config loads and carries each as a 'warning:' line with its place."""
    config = load(
        """\
        listeners:
          - name: main
            address: 127.0.0.1
            port: 8443
        upstreams:
          app:
            servers:
              - address: 127.0.0.1:8000
          spare:
            servers:
              - address: 127.0.0.1:9000
            queue:
              size: 10
            tls:
              verify: false
        routes:
          - upstream: app
        http2:
          initial_window_size: 32MiB
          connection_window_size: 16MiB
        """
    )
    assert config.warnings == (
        "/nonexistent/conf.yaml:9:3: warning: upstreams.spare: no route uses this upstream",
        "/nonexistent/conf.yaml:13:13: warning: upstreams.spare.queue.size: has no effect unless max_connections is set",
        "/nonexistent/conf.yaml:14:5: warning: upstreams.spare.tls: no server of this upstream uses https://, "
        "so this section has no effect",
        "/nonexistent/conf.yaml:20:27: warning: http2.connection_window_size: 16MiB is smaller than "
        "initial_window_size (32MiB): one stream can never use its whole window",
    )


def test_errors_come_with_the_warnings_found_so_far():
    """When a file has errors, the ConfigError also lists its warnings, so nothing is hidden."""
    text = MINIMAL + "http2:\n  initial_window_size: 32MiB\n  connection_window_size: 16MiB\nworkers: 0\n"
    with pytest.raises(ConfigError) as raised:
        load(text)
    assert [str(p) for p in raised.value.problems] == [
        "/nonexistent/conf.yaml:13:27: warning: http2.connection_window_size: 16MiB is smaller than "
        "initial_window_size (32MiB): one stream can never use its whole window",
        "/nonexistent/conf.yaml:14:10: workers: expected auto or an integer from 1 to 256, got 0",
    ]


def test_listener_protocols_default_to_both_and_take_one():
    """When a cleartext listener omits protocols it speaks h2c and HTTP/1.1; when it lists one, only that one."""
    config = load(MINIMAL)
    assert config.listeners[0].protocols == ("h2c", "http/1.1")
    text = MINIMAL.replace("    port: 8443\n", "    port: 8443\n    protocols: [h2c]\n")
    assert load(text).listeners[0].protocols == ("h2c",)
    text = MINIMAL.replace("    port: 8443\n", "    port: 8443\n    protocols: [http/1.1]\n")
    assert load(text).listeners[0].protocols == ("http/1.1",)


def test_the_former_name_of_the_handshake_timeout_still_works_with_a_warning():
    """When a file sets timeouts.tls_handshake (the former name), it sets timeouts.handshake and a warning names the new key."""
    config = load(MINIMAL + "timeouts:\n  tls_handshake: 3s\n")
    assert config.timeouts.handshake == 3.0
    assert config.warnings == (
        "/nonexistent/conf.yaml:12:3: warning: timeouts.tls_handshake: renamed to handshake; write handshake instead",
    )


def test_the_handshake_timeout_under_its_own_name_gets_no_warning():
    """When a file sets timeouts.handshake, it loads without warnings."""
    config = load(MINIMAL + "timeouts:\n  handshake: 1s\n")
    assert config.timeouts.handshake == 1.0 and config.warnings == ()
