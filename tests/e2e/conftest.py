"""Fixtures for end-to-end tests: a real origin, a dev certificate, the real daemon."""

from __future__ import annotations

from pathlib import Path

import pytest

from h2proxy_tools.devcert import make_certificate
from tests.e2e.harness import start_origin, start_proxy, write_config

E2E_DIRECTORY = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under tests/e2e with C{e2e}, so that C{pytest -m "not e2e"}
    runs the socket-free suite alone."""
    for item in items:
        if E2E_DIRECTORY in Path(item.path).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="module")
def origin(workdir):
    server = start_origin(workdir)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def certificate(workdir) -> tuple[str, str]:
    return make_certificate(str(workdir / "certs"))


def base_config(origin_port: int, cert: tuple[str, str], **overrides) -> dict:
    """A config with a TLS listener ``tls`` and a cleartext one ``h2c`` on free ports."""
    config = {
        "workers": 1,
        "listeners": [
            {
                "name": "tls",
                "address": "127.0.0.1",
                "port": 0,
                "tls": {"certificates": [{"cert": cert[0], "key": cert[1]}]},
            },
            {"name": "h2c", "address": "127.0.0.1", "port": 0},
        ],
        "upstreams": {"app": {"servers": [{"address": f"127.0.0.1:{origin_port}"}]}},
        "routes": [{"host": "*", "path": "/", "upstream": "app"}],
    }
    config.update(overrides)
    return config


@pytest.fixture(scope="module")
def proxy(workdir, origin, certificate):
    path = write_config(workdir, base_config(origin.port, certificate))
    daemon = start_proxy(path, ["tls", "h2c"])
    yield daemon
    daemon.stop()
