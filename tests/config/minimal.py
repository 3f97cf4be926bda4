"""A minimal valid config and loaders around it, for the tests of one option
section: HEAD declares one listener, one upstream and one route, so a test adds
only the lines it is about (a route of its own starts at line 11)."""

from __future__ import annotations

import textwrap

import pytest

from h2proxy.config.load import load_config_text
from h2proxy.config.model import Config
from h2proxy.errors import ConfigError

HEAD = """\
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
"""


def load(text: str, base: str = "/nonexistent") -> Config:
    """C{text} loaded as if read from C{base}/conf.yaml (relative paths resolve there)."""
    return load_config_text(textwrap.dedent(text), f"{base}/conf.yaml", env={})


def problems(text: str, base: str = "/nonexistent") -> list[str]:
    """The problems C{text} is refused with, rendered as the daemon prints them."""
    with pytest.raises(ConfigError) as raised:
        load(text, base)
    return [str(p) for p in raised.value.problems]


def route(body: str) -> str:
    """HEAD plus one more route (line 11 onwards) written as C{body}."""
    return HEAD + textwrap.indent(textwrap.dedent(body), "  ")
