"""A route's ``compress``: true, false, a mapping, and each refusal with its message."""

from __future__ import annotations

import pytest

from h2proxy.config.compression import CODINGS, DEFAULT_TYPES, CompressionConfig
from tests.config.minimal import load, problems, route


def test_true_is_the_defaults_and_false_or_omitted_is_off():
    config = load(route("""\
        - {path: /a, upstream: app, compress: true}
        - {path: /b, upstream: app, compress: false}
        - {path: /c, upstream: app}
        """))
    on, off, omitted = config.routes[1:4]
    assert on.compress == CompressionConfig() and off.compress is None and omitted.compress is None
    assert on.compress.types == DEFAULT_TYPES and on.compress.codings == CODINGS
    assert (on.compress.min_length, on.compress.level) == (1024, 6)


def test_a_mapping_sets_the_options():
    config = load(route("""\
        - path: /x
          upstream: app
          compress:
            types: [Text/Event-Stream, application/json]
            min_length: 2KiB
            level: 9
            codings: [gzip, br]
        """))
    assert config.routes[1].compress == CompressionConfig(
        types=("text/event-stream", "application/json"), min_length=2048, level=9, codings=("gzip", "br"))


@pytest.mark.parametrize(
    "value, message",
    [
        ("yes please", "routes[1].compress: expected true, false or a mapping, got 'yes please'"),
        ("{level: 10}", "routes[1].compress.level: expected an integer from 1 to 9, got 10"),
        ("{codings: [gzip, deflate]}", "routes[1].compress.codings[1]: expected one of br, zstd, gzip, got 'deflate'"),
        ("{codings: [gzip, gzip]}", "routes[1].compress.codings[1]: 'gzip' is listed twice"),
        ("{types: [text/html; charset=utf-8]}", "routes[1].compress.types[0]: expected a media type like text/html, without parameters"),
        ("{min_length: 1KB}", "routes[1].compress.min_length: expected a size"),
        ("{gzip: true}", "routes[1].compress.gzip: unknown option"),
    ],
)
def test_refusals_name_the_option(value, message):
    found = problems(route(f"- {{path: /x, upstream: app, compress: {value}}}\n"))
    assert any(message in problem for problem in found), found
