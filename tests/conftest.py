"""Fixtures for every test: the logged-error check (see L{tests.logcheck}); and the
C{short_paths} marker, for the few tests that assert one of the HTTP/2 codec's
short paths itself (L{h2proxy.frontend.http2.codec.shortpaths}): with
H2PROXY_CODEC_SHORT_PATHS=off they are skipped."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from twisted.logger import globalLogPublisher

from h2proxy.frontend.http2.codec import shortpaths
from tests.logcheck import LoggedErrors


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "short_paths: asserts a short path of the HTTP/2 codec; skipped with H2PROXY_CODEC_SHORT_PATHS=off"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if shortpaths.ENABLED:
        return
    skip = pytest.mark.skip(reason=f"asserts a codec short path, and {shortpaths.VARIABLE}=off")
    for item in items:
        if item.get_closest_marker("short_paths") is not None:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def logged_errors() -> Iterator[LoggedErrors]:
    """Watches what the test logs through C{twisted.logger}; a test that logged an
    error it did not take with C{logged_errors.flush(...)} fails at teardown."""
    errors = LoggedErrors()
    globalLogPublisher.addObserver(errors)
    try:
        yield errors
    finally:
        globalLogPublisher.removeObserver(errors)
    if errors.events:
        pytest.fail(f"the test logged {len(errors.events)} unexpected error(s):\n{errors.report()}",
                    pytrace=False)
