"""Fixtures of the front end tests."""

from __future__ import annotations

from typing import Iterator

import pytest
from twisted.logger import globalLogPublisher


@pytest.fixture
def capture_logs() -> Iterator[list[dict]]:
    """Every Twisted log event emitted during the test."""
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        yield events
    finally:
        globalLogPublisher.removeObserver(events.append)
