"""The ``static`` section of a route: its defaults, the root checked at load with a
file:line error, exactly one of upstream, redirect and static per route, and
warnings for forwarding options that do nothing on a static route."""

from __future__ import annotations

import textwrap

import pytest

from h2proxy.config.static import StaticConfig
from h2proxy.errors import ConfigError
from tests.config.minimal import load, problems, route


def test_a_static_route_with_defaults_and_a_relative_root(tmp_path):
    (tmp_path / "public").mkdir()
    config = load(route("""\
        - path: /static
          static:
            root: public
            max_age: 1h
        """), str(tmp_path))
    assert config.routes[1].static == StaticConfig(root=str(tmp_path / "public"), max_age=3600.0)
    assert (config.routes[1].static.index, config.routes[1].static.follow_symlinks) == ("index.html", False)
    assert config.routes[1].static.precompressed and config.warnings == ()


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "directory not found"),
    (lambda p: p.write_text("x"), "not a directory"),
])
def test_a_missing_root_is_an_error_at_its_line(tmp_path, make, message):
    make(tmp_path / "public")
    [problem] = problems(route("""\
        - path: /static
          static:
            root: public
        """), str(tmp_path))
    assert problem.startswith(f"{tmp_path}/conf.yaml:13:13: routes[1].static.root: {message}: {tmp_path}/public")


@pytest.mark.parametrize("index", ["a/index.html", "..", "x\\\\y"])
def test_the_index_is_a_plain_file_name(tmp_path, index):
    [problem] = problems(route(f"""\
        - path: /static
          static:
            root: .
            index: "{index}"
        """), str(tmp_path))
    assert "routes[1].static.index: expected a plain file name" in problem


def test_a_route_has_exactly_one_target(tmp_path):
    [problem] = problems(route("""\
        - path: /static
          upstream: app
          static:
            root: .
        """), str(tmp_path))
    assert problem == (
        f"{tmp_path}/conf.yaml:13:5: routes[1].static: a route has exactly one of upstream, redirect or static, "
        "not upstream and static; remove all but one"
    )


def test_forwarding_options_on_a_static_route_are_warned_about(tmp_path):
    config = load(route("""\
        - path: /static
          strip_prefix: true
          static:
            root: .
        """), str(tmp_path))
    assert config.warnings == (
        f"{tmp_path}/conf.yaml:12:19: warning: routes[1].strip_prefix: has no effect on a route that serves static files",
    )


def test_compress_on_a_static_route_is_accepted_without_warning(tmp_path):
    config = load(route("""\
        - path: /static
          compress: {}
          static:
            root: .
        """), str(tmp_path))
    assert config.warnings == ()
    assert config.routes[1].compress is not None


def test_a_config_of_static_routes_needs_no_upstream(tmp_path):
    config = load(textwrap.dedent("""\
        listeners:
          - {name: web, address: 127.0.0.1, port: 8080}
        routes:
          - {path: /, static: {root: .}}
        """), str(tmp_path))
    assert config.upstreams == {} and config.routes[0].static.root == str(tmp_path)


def test_exact_on_a_static_route_is_refused_at_its_line(tmp_path):
    with pytest.raises(ConfigError) as raised:
        load(route("""\
            - path: /static
              exact: true
              static:
                root: .
            """), str(tmp_path))
    assert [str(p) for p in raised.value.problems] == [
        f"{tmp_path}/conf.yaml:12:12: routes[1].exact: a static route serves the files under its path, and exact: "
        "true matches the path alone (the root directory itself); remove exact, or give the route the path of the "
        "directory that holds the file"
    ]
