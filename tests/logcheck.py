"""Fail a test that logs an error it did not expect, as Twisted's trial does.

Unit tests: every event published through C{twisted.logger} while a test runs is
watched (tests/conftest.py installs L{LoggedErrors} around each test). An event
that carries a failure (C{log.failure}, C{log.err}) or is at error or critical
level fails the test at teardown unless the test took it with
L{LoggedErrors.flush}, the equivalent of trial's C{flushLoggedErrors}.

End-to-end tests: the daemon's combined output is read for the same things
(L{unexpected_lines}): tracebacks, "Unhandled Error", and lines at error or
critical level, whether the supervisor logged them or relayed them from a worker.
A test that provokes one on purpose says so with
L{tests.e2e.harness.Proxy.expect_log}.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from twisted.logger import LogLevel, formatEvent
from twisted.python.failure import Failure

#: What marks a daemon output line as an error: twistd's "[system#error]" and
#: "[system#critical]" tags (a worker's relayed lines keep their level), Python's
#: traceback header, and Twisted's unhandled-error banners.
ERROR_LINE = re.compile(
    r"#(?:error|critical)\]|Traceback \(most recent call last\)|Unhandled [Ee]rror"
)


def is_error_event(event: dict) -> bool:
    """Whether a Twisted log event reports an error: it carries a failure, is at
    error level or above, or is a legacy C{log.err} event."""
    if event.get("log_failure") is not None or event.get("isError"):
        return True
    level = event.get("log_level")
    return level is not None and level >= LogLevel.error


def describe(event: dict) -> str:
    """One event as an operator would read it: its text and its traceback."""
    text = formatEvent(event)
    failure = event.get("log_failure")
    if isinstance(failure, Failure):
        text = f"{text}\n{failure.getTraceback()}"
    return text


class LoggedErrors:
    """A log observer keeping the error events of one test (see the module)."""

    def __init__(self) -> None:
        self.events: list[dict] = []

    def __call__(self, event: dict) -> None:
        if is_error_event(event):
            self.events.append(event)

    def flush(self, *kinds: type[BaseException], matching: Callable[[dict], bool] | None = None) -> list[dict]:
        """Take the error events the test expected and return them: those whose
        failure is one of C{kinds}, or for which C{matching} is true; with neither,
        every error event so far."""
        taken = [event for event in self.events if _wanted(event, kinds, matching)]
        self.events = [event for event in self.events if not any(event is t for t in taken)]
        return taken

    def take(self, pattern: str) -> list[str]:
        """Take the error events whose text (with any traceback) matches the regular
        expression C{pattern}, and return their texts: for a test that provokes an
        error on purpose and checks what was logged."""
        regex = re.compile(pattern)
        return [describe(event) for event in self.flush(matching=lambda event: bool(regex.search(describe(event))))]

    def report(self) -> str:
        """The error events nobody flushed, for the failure message."""
        return "\n---\n".join(describe(event) for event in self.events)


def _wanted(event: dict, kinds: tuple[type[BaseException], ...], matching: Callable[[dict], bool] | None) -> bool:
    if not kinds and matching is None:
        return True
    failure = event.get("log_failure")
    if kinds and isinstance(failure, Failure) and failure.check(*kinds):
        return True
    return matching is not None and matching(event)


#: The part of a twistd log line that names who logged it at what level, and for a
#: line relayed from a worker, which worker: consecutive error lines with the same
#: source are one event (a worker's traceback arrives as one line per line).
SOURCE = re.compile(r"\[[^\]]*#\w+\] (?:worker [^:\s]+: )?")


def error_blocks(lines: Iterable[str]) -> list[list[str]]:
    """The daemon output's error events, each as its lines: an error line
    (L{ERROR_LINE}) with the lines that continue it (twistd's tab-indented
    continuation lines, and further lines from the same source)."""
    blocks: list[list[str]] = []
    current: list[str] | None = None
    source = None
    for line in lines:
        if current is not None and (line.startswith("\t") or (source is not None and _source(line) == source)):
            current.append(line)
            continue
        current = None
        if ERROR_LINE.search(line):
            current = [line]
            source = _source(line)
            blocks.append(current)
    return blocks


def _source(line: str) -> str | None:
    match = SOURCE.search(line)
    return match.group(0) if match else None


def unexpected_lines(lines: Iterable[str], expected: Iterable[str]) -> list[str]:
    """The error events of a daemon's output (L{error_blocks}), as text, none of
    whose lines matches one of the C{expected} patterns."""
    allowed = [re.compile(pattern) for pattern in expected]
    return [
        "\n".join(block)
        for block in error_blocks(lines)
        if not any(pattern.search(line) for pattern in allowed for line in block)
    ]
