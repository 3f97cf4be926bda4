"""A corpus of broken configuration files and the exact messages each one gets.

Every case is a whole file, so the expected ``line:column`` can be checked by eye.
Each must raise ConfigError (never another exception) whose lines are exactly the
expected ones: file, line, column, key path and wording. ``{dir}`` stands for the
directory of the file.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from h2proxy.config import load
from h2proxy.config.load import load_config
from h2proxy.errors import ConfigError
from tests.config.certs import make_self_signed

CASES: dict[str, tuple[str, list[str]]] = {}


def case(name: str, text: str, *expected: str) -> None:
    CASES[name] = (textwrap.dedent(text), list(expected))


# -- the file as a whole --------------------------------------------------------

case("empty file", "", "conf.yaml:1:1: the file is empty; expected a mapping with listeners, upstreams and routes")
case(
    "only comments",
    """\
    # listeners: to do
    """,
    "conf.yaml:1:1: the file is empty; expected a mapping with listeners, upstreams and routes",
)
case(
    "top level is a list",
    """\
    - listeners
    - upstreams
    """,
    "conf.yaml:1:1: expected a mapping of options at the top level, got a list",
)
case(
    "top level is a scalar",
    """\
    h2proxy
    """,
    "conf.yaml:1:1: expected a mapping of options at the top level, got a scalar",
)

# -- YAML syntax ---------------------------------------------------------------

case(
    "tab indentation",
    "listeners:\n\t- name: main\n",
    "conf.yaml:2:1: YAML syntax error: while scanning for the next token: "
    "found character '\\t' that cannot start any token; indent with spaces, not tabs",
)
case(
    "unclosed flow list",
    """\
    listeners: [
      name: main
    """,
    "conf.yaml:3:1: YAML syntax error: while parsing a flow sequence (from line 1, column 12): "
    "expected ',' or ']', but got '<stream end>'",
)
case(
    "unclosed quote",
    """\
    workers: "2
    """,
    "conf.yaml:2:1: YAML syntax error: while scanning a quoted scalar (from line 1, column 10): "
    "found unexpected end of stream",
)
case(
    "two documents",
    """\
    workers: 1
    ---
    workers: 2
    """,
    "conf.yaml:2:1: YAML syntax error: expected a single document in the stream, but found another document",
)
case(
    "bad indentation",
    """\
    listeners:
      - name: main
       address: 127.0.0.1
    """,
    "conf.yaml:3:4: YAML syntax error: while parsing a block collection (from line 2, column 3): "
    "expected <block end>, but found '<block mapping start>'",
)
case(
    "unknown YAML tag",
    """\
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
    workers: !cpus 4
    """,
    "conf.yaml:11:10: workers: cannot read this value: could not determine a constructor for the tag '!cpus'",
)

# -- keys ------------------------------------------------------------------------

case(
    "unknown top-level key with a close match",
    """\
    listener:
      - name: main
        address: 127.0.0.1
        port: 8443
    upstreams:
      app:
        servers:
          - address: 127.0.0.1:8000
    routes:
      - upstream: app
    """,
    "conf.yaml:1:1: listener: unknown option; did you mean 'listeners'?",
    "conf.yaml:1:1: listeners: required option is missing",
)
case(
    "unknown nested key",
    """\
    listeners:
      - name: main
        address: 127.0.0.1
        prot: 8443
    upstreams:
      app:
        servers:
          - address: 127.0.0.1:8000
    routes:
      - upstream: app
    """,
    "conf.yaml:2:5: listeners[0].port: required option is missing",
    "conf.yaml:4:5: listeners[0].prot: unknown option; did you mean 'port'?",
)
case(
    "unknown key without a close match",
    """\
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
    timeouts:
      quux: 3s
    """,
    "conf.yaml:12:3: timeouts.quux: unknown option; expected one of: idle, abort, handshake, "
    "request_header, request_body, send, backend_connect, backend_response, backend_idle, tunnel_idle, drain",
)
case(
    "duplicate key",
    """\
    listeners:
      - name: main
        address: 127.0.0.1
        port: 8443
        port: 8444
    upstreams:
      app:
        servers:
          - address: 127.0.0.1:8000
    routes:
      - upstream: app
    """,
    "conf.yaml:5:5: listeners[0].port: duplicate key (first at line 4)",
)
case(
    "YAML merge key",
    """\
    listeners:
      - <<: {port: 8443}
        name: main
        address: 127.0.0.1
    upstreams:
      app:
        servers:
          - address: 127.0.0.1:8000
    routes:
      - upstream: app
    """,
    "conf.yaml:2:5: listeners[0]: YAML merge keys (<<) are not supported; write the options out",
    "conf.yaml:2:5: listeners[0].port: required option is missing",
)
case(
    "required sections missing",
    """\
    workers: 2
    """,
    "conf.yaml:1:1: listeners: required option is missing",
)

# -- wrong types and bounds ---------------------------------------------------

case(
    "port is a word",
    """\
    listeners:
      - name: main
        address: 127.0.0.1
        port: http
    upstreams:
      app:
        servers:
          - address: 127.0.0.1:8000
    routes:
      - upstream: app
    """,
    "conf.yaml:4:11: listeners[0].port: expected an integer from 0 to 65535, got 'http'",
)
case(
    "port out of range",
    """\
    listeners:
      - name: main
        address: 127.0.0.1
        port: 70000
    upstreams:
      app:
        servers:
          - address: 127.0.0.1:8000
    routes:
      - upstream: app
    """,
    "conf.yaml:4:11: listeners[0].port: expected an integer from 0 to 65535, got 70000",
)
case(
    "port is a list",
    """\
    listeners:
      - name: main
        address: 127.0.0.1
        port: [80, 443]
    upstreams:
      app:
        servers:
          - address: 127.0.0.1:8000
    routes:
      - upstream: app
    """,
    "conf.yaml:4:11: listeners[0].port: expected an integer from 0 to 65535, got a list",
)
case(
    "listen address is a host name",
    """\
    listeners:
      - name: main
        address: localhost
        port: 8443
    upstreams:
      app:
        servers:
          - address: 127.0.0.1:8000
    routes:
      - upstream: app
    """,
    "conf.yaml:3:14: listeners[0].address: expected an IPv4 or IPv6 address like 127.0.0.1 or ::, "
    "got 'localhost'; names are not resolved: use 127.0.0.1 or ::1",
)
case(
    "listen address in brackets",
    """\
    listeners:
      - name: main
        address: "[::1]"
        port: 8443
    upstreams:
      app:
        servers:
          - address: 127.0.0.1:8000
    routes:
      - upstream: app
    """,
    "conf.yaml:3:14: listeners[0].address: expected an IPv6 address without brackets, got '[::1]'; write ::1",
)
case(
    "workers is a word",
    """\
    workers: many
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
    """,
    "conf.yaml:1:10: workers: expected auto or an integer from 1 to 256, got 'many'",
)
case(
    "duration without unit word",
    """\
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
    timeouts:
      idle: 30 seconds
      drain: 2h
    """,
    "conf.yaml:12:9: timeouts.idle: expected a duration from 0s to 24h (like 250ms, 30s, 5m, 1h), got '30 seconds'",
    "conf.yaml:13:10: timeouts.drain: expected a duration from 0s to 1h, got '2h'",
)
case(
    "size with a decimal unit",
    """\
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
    http2:
      initial_window_size: 64KB
    """,
    "conf.yaml:12:24: http2.initial_window_size: expected a size from 1KiB to 1GiB (like 64KiB, 16MiB), "
    "got '64KB'; did you mean 64KiB? (sizes are binary: B, KiB, MiB, GiB)",
)
case(
    "size below its bound",
    """\
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
    http2:
      max_frame_size: 8KiB
    """,
    "conf.yaml:12:19: http2.max_frame_size: expected a size from 16KiB to 16777215B, got '8KiB'",
)
case(
    "boolean is a word",
    """\
    listeners:
      - name: main
        address: 127.0.0.1
        port: 8443
        proxy_protocol: maybe
    upstreams:
      app:
        servers:
          - address: 127.0.0.1:8000
    routes:
      - upstream: app
    """,
    "conf.yaml:5:21: listeners[0].proxy_protocol: expected true or false, got 'maybe'",
)
case(
    "misspelt choice",
    """\
    listeners:
      - name: main
        address: 127.0.0.1
        port: 8443
    upstreams:
      app:
        policy: least_connections
        servers:
          - address: 127.0.0.1:8000
    routes:
      - upstream: app
    """,
    "conf.yaml:7:13: upstreams.app.policy: expected one of round_robin, least_conn, random_two, "
    "got 'least_connections'; did you mean 'least_conn'?",
)
case(
    "TLS version too old",
    """\
    listeners:
      - name: main
        address: 127.0.0.1
        port: 8443
        tls:
          min_version: 1.1
          certificates:
            - cert: tls/example.org.pem
              key: tls/example.org.key
    upstreams:
      app:
        servers:
          - address: 127.0.0.1:8000
    routes:
      - upstream: app
    """,
    "conf.yaml:6:20: listeners[0].tls.min_version: expected one of 1.2, 1.3, got 1.1",
)
case(
    "unknown ALPN protocol and a repeated one",
    """\
    listeners:
      - name: main
        address: 127.0.0.1
        port: 8443
        tls:
          alpn: [h3]
          certificates:
            - cert: tls/example.org.pem
              key: tls/example.org.key
      - name: other
        address: 127.0.0.1
        port: 8444
        tls:
          alpn: [h2, h2]
          certificates:
            - cert: tls/example.org.pem
              key: tls/example.org.key
    upstreams:
      app:
        servers:
          - address: 127.0.0.1:8000
    routes:
      - upstream: app
    """,
    "conf.yaml:6:14: listeners[0].tls.alpn[0]: expected one of h2, http/1.1, got 'h3'",
    "conf.yaml:14:18: listeners[1].tls.alpn[1]: 'h2' is listed twice",
)
case(
    "listener protocols: unknown, repeated, empty",
    """\
    listeners:
      - name: a
        address: 127.0.0.1
        port: 8080
        protocols: [h2, http/1.1]
      - name: b
        address: 127.0.0.1
        port: 8081
        protocols: [h2c, h2c]
      - name: c
        address: 127.0.0.1
        port: 8082
        protocols: []
    upstreams:
      app:
        servers:
          - address: 127.0.0.1:8000
    routes:
      - upstream: app
    """,
    "conf.yaml:5:17: listeners[0].protocols[0]: expected one of h2c, http/1.1, got 'h2'; did you mean 'h2c'?",
    "conf.yaml:9:22: listeners[1].protocols[1]: 'h2c' is listed twice",
    "conf.yaml:13:16: listeners[2].protocols: expected 1 to 2 items, got 0",
)
case(
    "listener protocols on a TLS listener",
    """\
    listeners:
      - name: main
        address: 127.0.0.1
        port: 8443
        protocols: [h2c]
        tls:
          certificates:
            - cert: tls/example.org.pem
              key: tls/example.org.key
    upstreams:
      app:
        servers:
          - address: 127.0.0.1:8000
    routes:
      - upstream: app
    """,
    "conf.yaml:5:16: listeners[0].protocols: applies to cleartext listeners only; on a TLS listener, "
    "list what it offers in tls.alpn (h2, http/1.1)",
)
case(
    "handshake timeout set under its new and its former name",
    """\
    listeners:
      - name: main
        address: 127.0.0.1
        port: 8080
    upstreams:
      app:
        servers:
          - address: 127.0.0.1:8000
    routes:
      - upstream: app
    timeouts:
      handshake: 2s
      tls_handshake: 5s
    """,
    "conf.yaml:13:3: timeouts.tls_handshake: set twice, as handshake and by its former name; keep only handshake",
)
case(
    "listeners is empty",
    """\
    listeners: []
    upstreams:
      app:
        servers:
          - address: 127.0.0.1:8000
    routes:
      - upstream: app
    """,
    "conf.yaml:1:12: listeners: expected 1 to 64 items, got 0",
)
case(
    "listeners is a mapping",
    """\
    listeners:
      name: main
      address: 127.0.0.1
      port: 8443
    upstreams:
      app:
        servers:
          - address: 127.0.0.1:8000
    routes:
      - upstream: app
    """,
    "conf.yaml:1:1: listeners: expected a list (one '- ' line per item), got a mapping",
)
case(
    "empty tls section",
    """\
    listeners:
      - name: main
        address: 127.0.0.1
        port: 8443
        tls:
    upstreams:
      app:
        servers:
          - address: 127.0.0.1:8000
    routes:
      - upstream: app
    """,
    "conf.yaml:5:9: listeners[0].tls: expected a mapping, got nothing",
)
case(
    "upstreams is empty",
    """\
    listeners:
      - name: main
        address: 127.0.0.1
        port: 8443
    upstreams: {}
    routes:
      - upstream: app
    """,
    "conf.yaml:7:15: routes[0].upstream: no upstream named 'app'",
)
case(
    "upstream name with a space",
    """\
    listeners:
      - name: main
        address: 127.0.0.1
        port: 8443
    upstreams:
      my app:
        servers:
          - address: 127.0.0.1:8000
    routes:
      - upstream: app
    """,
    "conf.yaml:6:3: upstreams.my app: expected a name of letters, digits, '_', '.', '-' (at most 64), got 'my app'",
    "conf.yaml:10:15: routes[0].upstream: no upstream named 'app'; did you mean 'my app'?",
)
case(
    "server addresses: no port, wrong scheme, bare IPv6",
    """\
    listeners:
      - name: main
        address: 127.0.0.1
        port: 8443
    upstreams:
      app:
        servers:
          - address: backend
          - address: ftp://backend:21
          - address: ::1:8000
    routes:
      - upstream: app
    """,
    "conf.yaml:8:18: upstreams.app.servers[0].address: missing port; expected host:port, [v6]:port or "
    "https://host:port, got 'backend'",
    "conf.yaml:9:18: upstreams.app.servers[1].address: expected the scheme http:// or https://, got 'ftp://backend:21'",
    "conf.yaml:10:18: upstreams.app.servers[2].address: expected host:port, [v6]:port or https://host:port, "
    "got '::1:8000'; write [::1]:8000",
)
case(
    "route host and path malformed",
    """\
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
        host: exa mple.org
        path: api
    """,
    "conf.yaml:11:11: routes[0].host: expected an exact host, *.example.org or *, got 'exa mple.org'",
    "conf.yaml:12:11: routes[0].path: expected a path prefix starting with / (no spaces, ? or #), got 'api'",
)
case(
    "environment variable not set",
    """\
    listeners:
      - name: main
        address: 127.0.0.1
        port: ${H2PROXY_TEST_UNSET_PORT}
    upstreams:
      app:
        servers:
          - address: 127.0.0.1:8000
    routes:
      - upstream: app
    """,
    "conf.yaml:4:11: listeners[0].port: environment variable H2PROXY_TEST_UNSET_PORT is not set",
)
case(
    "no such user",
    """\
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
    user: no-such-user-h2proxy
    """,
    "conf.yaml:11:7: user: no such user on this system: no-such-user-h2proxy",
)
case(
    "log directory missing",
    """\
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
    logging:
      access_log: logs/access.log
    """,
    "conf.yaml:12:15: logging.access_log: directory does not exist: {dir}/logs",
)

# -- files ---------------------------------------------------------------------------

case(
    "certificate file missing",
    """\
    listeners:
      - name: main
        address: 127.0.0.1
        port: 8443
        tls:
          certificates:
            - cert: tls/missing.pem
              key: tls/example.org.key
    upstreams:
      app:
        servers:
          - address: 127.0.0.1:8000
    routes:
      - upstream: app
    """,
    "conf.yaml:7:17: listeners[0].tls.certificates[0].cert: file not found: {dir}/tls/missing.pem",
)
case(
    "certificate is a directory",
    """\
    listeners:
      - name: main
        address: 127.0.0.1
        port: 8443
        tls:
          certificates:
            - cert: tls
              key: tls/example.org.key
    upstreams:
      app:
        servers:
          - address: 127.0.0.1:8000
    routes:
      - upstream: app
    """,
    "conf.yaml:7:17: listeners[0].tls.certificates[0].cert: not a regular file: {dir}/tls",
)
case(
    "certificate and key do not match",
    """\
    listeners:
      - name: main
        address: 127.0.0.1
        port: 8443
        tls:
          certificates:
            - cert: tls/example.org.pem
              key: tls/other.example.key
    upstreams:
      app:
        servers:
          - address: 127.0.0.1:8000
    routes:
      - upstream: app
    """,
    "conf.yaml:8:16: listeners[0].tls.certificates[0].key: does not match the certificate "
    "{dir}/tls/example.org.pem (different public key)",
)
case(
    "certificate and key are not PEM",
    """\
    listeners:
      - name: main
        address: 127.0.0.1
        port: 8443
        tls:
          certificates:
            - cert: tls/garbage.txt
              key: tls/garbage.txt
    upstreams:
      app:
        servers:
          - address: 127.0.0.1:8000
    routes:
      - upstream: app
    """,
    "conf.yaml:7:17: listeners[0].tls.certificates[0].cert: not a PEM certificate: {dir}/tls/garbage.txt",
    "conf.yaml:8:16: listeners[0].tls.certificates[0].key: not a PEM private key: {dir}/tls/garbage.txt",
)
case(
    "encrypted key",
    """\
    listeners:
      - name: main
        address: 127.0.0.1
        port: 8443
        tls:
          certificates:
            - cert: tls/example.org.pem
              key: tls/encrypted.key
    upstreams:
      app:
        servers:
          - address: 127.0.0.1:8000
    routes:
      - upstream: app
    """,
    "conf.yaml:8:16: listeners[0].tls.certificates[0].key: the key is encrypted; h2proxy needs it "
    "unencrypted (mode 0600): {dir}/tls/encrypted.key",
)
case(
    "cipher string OpenSSL rejects",
    """\
    listeners:
      - name: main
        address: 127.0.0.1
        port: 8443
        tls:
          ciphers: NOT-A-CIPHER
          certificates:
            - cert: tls/example.org.pem
              key: tls/example.org.key
    upstreams:
      app:
        servers:
          - address: 127.0.0.1:8000
    routes:
      - upstream: app
    """,
    "conf.yaml:6:16: listeners[0].tls.ciphers: OpenSSL selects no cipher from 'NOT-A-CIPHER' "
    "(see `openssl ciphers -v 'NOT-A-CIPHER'`)",
)

# -- across sections -------------------------------------------------------------

case(
    "two listeners on one address",
    """\
    listeners:
      - name: main
        address: 127.0.0.1
        port: 8443
      - name: second
        address: 127.0.0.1
        port: 8443
    upstreams:
      app:
        servers:
          - address: 127.0.0.1:8000
    routes:
      - upstream: app
    """,
    "conf.yaml:7:11: listeners[1].port: 127.0.0.1:8443 conflicts with listeners[0] (127.0.0.1:8443)",
)
case(
    "IPv6 wildcard covers the IPv4 one",
    """\
    listeners:
      - name: v6
        address: "::"
        port: 443
      - name: v4
        address: 0.0.0.0
        port: 443
    upstreams:
      app:
        servers:
          - address: 127.0.0.1:8000
    routes:
      - upstream: app
    """,
    "conf.yaml:7:11: listeners[1].port: 0.0.0.0:443 conflicts with listeners[0] ([::]:443) "
    "(:: also accepts IPv4 connections)",
)
case(
    "admin listener on a proxy port",
    """\
    listeners:
      - name: main
        address: 0.0.0.0
        port: 8443
    upstreams:
      app:
        servers:
          - address: 127.0.0.1:8000
    routes:
      - upstream: app
    admin:
      port: 8443
    """,
    "conf.yaml:12:9: admin.port: 127.0.0.1:8443 conflicts with listeners[0] (0.0.0.0:8443)",
)
case(
    "two listeners with one name",
    """\
    listeners:
      - name: main
        address: 127.0.0.1
        port: 8443
      - name: main
        address: 127.0.0.1
        port: 8080
    upstreams:
      app:
        servers:
          - address: 127.0.0.1:8000
    routes:
      - upstream: app
    """,
    "conf.yaml:5:11: listeners[1].name: 'main' is already the name of listeners[0]",
)
case(
    "route to a missing upstream",
    """\
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
      - upstream: ap
        path: /api
    """,
    "conf.yaml:11:15: routes[1].upstream: no upstream named 'ap'; did you mean 'app'?",
)
case(
    "route to an upstream with an error is not also called missing",
    """\
    listeners:
      - name: main
        address: 127.0.0.1
        port: 8443
    upstreams:
      app:
        servers:
          - address: 127.0.0.1:notaport
    routes:
      - upstream: app
    """,
    "conf.yaml:8:18: upstreams.app.servers[0].address: expected a port from 1 to 65535 in host:port, "
    "[v6]:port or https://host:port, got '127.0.0.1:notaport'",
)
case(
    "the same route twice",
    """\
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
      - upstream: app
        host: "*"
        path: /
    """,
    "conf.yaml:13:11: routes[1].path: host '*' and path '/' are already routed by routes[0]; this route is never used",
)
case(
    "the same server twice",
    """\
    listeners:
      - name: main
        address: 127.0.0.1
        port: 8443
    upstreams:
      app:
        servers:
          - address: 127.0.0.1:8000
          - address: 127.0.0.1:8000
    routes:
      - upstream: app
    """,
    "conf.yaml:9:18: upstreams.app.servers[1].address: same server as servers[0]; "
    "use weight to give a server a larger share",
)
case(
    "body limit smaller than the stream window",
    """\
    listeners:
      - name: main
        address: 127.0.0.1
        port: 8443
        http2:
          initial_window_size: 256KiB
    upstreams:
      app:
        servers:
          - address: 127.0.0.1:8000
    routes:
      - upstream: app
    http2:
      initial_window_size: 64KiB
    limits:
      max_request_body: 128KiB
    """,
    "conf.yaml:16:21: limits.max_request_body: 128KiB is smaller than listeners[0].http2.initial_window_size "
    "(256KiB); lower that window to 128KiB or less, or raise this limit",
)
case(
    "health check timeout not shorter than its interval",
    """\
    listeners:
      - name: main
        address: 127.0.0.1
        port: 8443
    upstreams:
      app:
        servers:
          - address: 127.0.0.1:8000
        health_check:
          interval: 2s
          timeout: 2s
    routes:
      - upstream: app
    """,
    "conf.yaml:11:16: upstreams.app.health_check.timeout: must be shorter than interval (2s), or checks overlap",
)
case(
    "many problems in one file are all reported",
    """\
    workers: 0
    listeners:
      - name: main
        address: 127.0.0.l
        port: 8443
    upstreams:
      app:
        servers:
          - address: 127.0.0.1:8000
            weight: heavy
    routes:
      - upstream: api
    timeouts:
      idel: 5s
    """,
    "conf.yaml:1:10: workers: expected auto or an integer from 1 to 256, got 0",
    "conf.yaml:4:14: listeners[0].address: expected an IPv4 or IPv6 address like 127.0.0.1 or ::, got '127.0.0.l'",
    "conf.yaml:10:17: upstreams.app.servers[0].weight: expected an integer from 1 to 1000, got 'heavy'",
    "conf.yaml:12:15: routes[0].upstream: no upstream named 'api'; did you mean 'app'?",
    "conf.yaml:14:3: timeouts.idel: unknown option; did you mean 'idle'?",
)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory holding ``tls/`` test files; the current directory during the test."""
    tls = tmp_path / "tls"
    make_self_signed(tls, ["example.org"])
    make_self_signed(tls, ["other.example"])
    garbage = tls / "garbage.txt"
    garbage.write_text("not a certificate\n")
    garbage.chmod(0o600)
    _write_encrypted_key(tls / "example.org.key", tls / "encrypted.key")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _write_encrypted_key(source: Path, target: Path) -> None:
    key = serialization.load_pem_private_key(source.read_bytes(), password=None)
    target.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    target.chmod(0o600)


def problems_of(text: str, directory: Path) -> list[str]:
    """The lines of the ConfigError that loading C{text} as conf.yaml raises."""
    (directory / "conf.yaml").write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_config("conf.yaml", env={})
    return [str(p).replace(str(directory), "{dir}") for p in raised.value.problems]


def test_the_corpus_is_large_enough():
    """When the corpus shrinks below 30 broken files, this fails (acceptance 1)."""
    assert len(CASES) >= 30


@pytest.mark.parametrize("name", list(CASES))
def test_broken_config_gets_exact_messages(name: str, workdir: Path):
    """When a broken config is loaded, ConfigError lists exactly the expected file:line:col: key: message lines."""
    text, expected = CASES[name]
    assert problems_of(text, workdir) == expected


def test_a_directory_instead_of_a_file(tmp_path: Path):
    """When the path names a directory, the error says so and names the path."""
    with pytest.raises(ConfigError) as raised:
        load_config(str(tmp_path))
    assert str(raised.value) == f"{tmp_path}: is a directory; expected a YAML configuration file"


def test_a_missing_file(tmp_path: Path):
    """When the file does not exist, the error says file not found."""
    with pytest.raises(ConfigError) as raised:
        load_config(str(tmp_path / "nope.yaml"))
    assert str(raised.value) == f"{tmp_path}/nope.yaml: file not found"


def test_an_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """When the file cannot be read, the error gives the system's reason."""
    path = tmp_path / "secret.yaml"
    path.write_text("workers: 1\n")

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(load, "open", refuse, raising=False)  # works even as root
    with pytest.raises(ConfigError) as raised:
        load_config(str(path))
    assert str(raised.value) == f"{path}: cannot read: Permission denied"


def test_a_file_that_is_not_utf8(tmp_path: Path):
    """When the file has bytes that are not UTF-8, the error points at the first one."""
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"workers: 1\n# caf\xe9\n")
    with pytest.raises(ConfigError) as raised:
        load_config(str(path))
    assert str(raised.value) == f"{path}:2:6: not UTF-8 text; save the file as UTF-8"


def test_a_file_too_large_to_be_a_config(tmp_path: Path):
    """When the file is over the size cap, it is refused before YAML parsing."""
    path = tmp_path / "huge.yaml"
    path.write_bytes(b"#" * (1024 * 1024 + 1))
    with pytest.raises(ConfigError) as raised:
        load_config(str(path))
    assert str(raised.value) == f"{path}: larger than 1024KiB; is this the configuration file?"


def test_binary_garbage_is_a_config_error(tmp_path: Path):
    """When the file holds control characters YAML refuses, a ConfigError (not a traceback) says so."""
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"workers: \x00\x01\x02\n")
    with pytest.raises(ConfigError) as raised:
        load_config(str(path))
    assert str(raised.value).startswith(f"{path}:1:1: YAML error: ")


def test_deep_nesting_is_a_config_error(tmp_path: Path):
    """When YAML nesting is deep enough to exhaust recursion, a ConfigError says so."""
    path = tmp_path / "deep.yaml"
    path.write_text("workers: " + "[" * 50_000 + "]" * 50_000 + "\n")
    with pytest.raises(ConfigError) as raised:
        load_config(str(path))
    assert str(raised.value) == f"{path}:1:1: YAML nesting too deep"
