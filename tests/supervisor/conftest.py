"""Fixtures for the supervisor's tests."""

from __future__ import annotations

import pytest
from twisted.logger import formatEvent, globalLogPublisher


class LogCapture:
    """The log events emitted during a test, with helpers to read them as text."""

    def __init__(self) -> None:
        self.events: list[dict] = []

    def __call__(self, event: dict) -> None:
        self.events.append(event)

    def texts(self) -> list[str]:
        return [formatEvent(event) for event in self.events]

    def matching(self, needle: str) -> list[str]:
        return [text for text in self.texts() if needle in text]


@pytest.fixture
def logged():
    capture = LogCapture()
    globalLogPublisher.addObserver(capture)
    yield capture
    globalLogPublisher.removeObserver(capture)
