"""The logged-error check itself (tests/logcheck.py): what counts as an error,
what a test may take, and how a daemon's output is read."""

from __future__ import annotations

from twisted.logger import Logger, LogLevel, LogPublisher

from tests.logcheck import LoggedErrors, error_blocks, is_error_event, unexpected_lines


def publish(errors: LoggedErrors) -> Logger:
    publisher = LogPublisher(errors)
    return Logger(namespace="test", observer=publisher)


def test_failures_errors_and_critical_lines_are_kept_and_the_rest_is_not():
    """When a logger emits at every level and a failure, only error, critical and the failure are kept."""
    errors = LoggedErrors()
    log = publish(errors)
    log.info("fine")
    log.warn("careful")
    log.error("bad {thing}", thing="x")
    log.critical("worse")
    try:
        1 / 0
    except ZeroDivisionError:
        log.failure("divided")
    assert [event["log_format"] for event in errors.events] == ["bad {thing}", "worse", "divided"]
    assert is_error_event({"isError": 1, "message": ("legacy",)})


def test_take_removes_only_what_matches_and_the_report_shows_the_rest():
    """When a test takes the errors it provoked, the others remain for the teardown check, traceback included."""
    errors = LoggedErrors()
    log = publish(errors)
    log.error("expected problem")
    try:
        raise ValueError("surprise")
    except ValueError:
        log.failure("unexpected problem")
    assert errors.take(r"^expected problem") == ["expected problem"]
    assert errors.take(r"^expected problem") == []
    report = errors.report()
    assert "unexpected problem" in report and "ValueError: surprise" in report


def test_flush_by_exception_type():
    """When a test flushes by exception type, only failures of that type go."""
    errors = LoggedErrors()
    log = publish(errors)
    for exception in (KeyError("k"), OSError("o")):
        try:
            raise exception
        except Exception:
            log.failure("failed")
    assert len(errors.flush(KeyError)) == 1
    assert errors.events[0]["log_failure"].check(OSError)


SUPERVISOR_OUTPUT = [
    "2026-12-06T05:00:00+0000 [h2proxy.supervisor.service#info] generation 1 serving",
    "2026-12-06T05:00:01+0000 [h2proxy.supervisor.service#critical] worker 1.0[42]: Unhandled Error",
    "2026-12-06T05:00:01+0000 [h2proxy.supervisor.service#critical] worker 1.0[42]: Traceback (most recent call last):",
    "2026-12-06T05:00:01+0000 [h2proxy.supervisor.service#critical] worker 1.0[42]: builtins.AttributeError: no socket",
    "2026-12-06T05:00:02+0000 [h2proxy.supervisor.service#info] worker 1.0[42]: GET / 200",
    "2026-12-06T05:00:03+0000 [h2proxy.supervisor.service#error] reload failed: x.yaml is invalid",
    "2026-12-06T05:00:04+0000 [-#critical] Unhandled error in Deferred:",
    "\tTraceback (most recent call last):",
    "\tbuiltins.RuntimeError: boom",
    "2026-12-06T05:00:05+0000 [h2proxy.supervisor.service#warn] worker 1.0[42]: slow backend",
]


def test_a_relayed_traceback_is_one_event_and_info_lines_are_not_errors():
    """When a worker's traceback is relayed line by line, it is one error event; info and warn lines are none."""
    blocks = error_blocks(SUPERVISOR_OUTPUT)
    assert [len(block) for block in blocks] == [3, 1, 3]
    assert "no socket" in blocks[0][-1] and "RuntimeError" in blocks[2][-1]


def test_expected_patterns_excuse_whole_events_and_nothing_else():
    """When a test expects the reload failure, the worker's traceback and the Deferred error still count."""
    found = unexpected_lines(SUPERVISOR_OUTPUT, [r"reload failed"])
    assert len(found) == 2 and "Unhandled Error" in found[0] and "Unhandled error in Deferred" in found[1]
    assert unexpected_lines(SUPERVISOR_OUTPUT, [r"no socket", r"reload failed", r"RuntimeError"]) == []
    assert unexpected_lines(SUPERVISOR_OUTPUT[:1], []) == []


def test_levels_below_error_are_not_errors():
    """When an event is at warn level without a failure, it is not an error."""
    assert not is_error_event({"log_level": LogLevel.warn})
    assert is_error_event({"log_level": LogLevel.critical})
