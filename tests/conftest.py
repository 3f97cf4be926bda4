"""Fixtures for every test: the logged-error check (see L{tests.logcheck})."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from twisted.logger import globalLogPublisher

from tests.logcheck import LoggedErrors


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
