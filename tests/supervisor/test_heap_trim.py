"""The worker gives the C heap back after a burst of connections closes
(h2proxy.worker.process.HeapTrimmer), on an injected clock with a fake trim."""

from __future__ import annotations

from types import SimpleNamespace

from twisted.internet.task import Clock

from h2proxy.worker.process import TRIM_CHECK_INTERVAL, HeapTrimmer, glibc_malloc_trim, open_connections


class Counter:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


def _trimmer(count: list[int], minDrop: int = 100) -> tuple[HeapTrimmer, Counter, Clock]:
    clock = Clock()
    trim = Counter()
    trimmer = HeapTrimmer(clock, lambda: count[0], trim, interval=TRIM_CHECK_INTERVAL, minDrop=minDrop)
    trimmer.start()
    return trimmer, trim, clock


def test_trims_once_after_connections_drop_from_their_peak():
    """When 1,000 connections open and then close, the heap is trimmed at the next
    check after the drop, once, and not again while the count stays low."""
    count = [0]
    trimmer, trim, clock = _trimmer(count)
    count[0] = 1000
    clock.advance(TRIM_CHECK_INTERVAL)
    assert trim.calls == 0
    count[0] = 3
    clock.advance(TRIM_CHECK_INTERVAL)
    assert trim.calls == 1
    clock.advance(10 * TRIM_CHECK_INTERVAL)
    assert trim.calls == 1 and trimmer.trims == 1


def test_small_drops_and_growth_do_not_trim():
    """When the count only grows, or falls by fewer than minDrop, nothing is trimmed."""
    count = [0]
    trimmer, trim, clock = _trimmer(count)
    for value in (50, 120, 500, 450, 420):
        count[0] = value
        clock.advance(TRIM_CHECK_INTERVAL)
    assert trim.calls == 0
    count[0] = 400
    clock.advance(TRIM_CHECK_INTERVAL)
    assert trim.calls == 1


def test_a_second_burst_is_trimmed_again():
    """When a second burst follows a trim, its drop is trimmed too."""
    count = [0]
    trimmer, trim, clock = _trimmer(count)
    for value in (300, 0, 300, 0):
        count[0] = value
        clock.advance(TRIM_CHECK_INTERVAL)
    assert trim.calls == 2


def test_stop_ends_the_checks():
    """When stopped, the trimmer schedules nothing more."""
    count = [0]
    trimmer, trim, clock = _trimmer(count)
    trimmer.stop()
    assert clock.getDelayedCalls() == []


def test_open_connections_counts_both_front_ends():
    """The count is every HTTP/2 and HTTP/1.1 connection of the server's factories."""
    server = SimpleNamespace(
        h2Factories={"a": SimpleNamespace(connections={1, 2}), "b": SimpleNamespace(connections={3})},
        http1Factories={"a": SimpleNamespace(connections={4, 5, 6})},
    )
    assert open_connections(server) == 6


def test_glibc_trim_is_found_and_callable_here():
    """On this (glibc) system, malloc_trim is found and can be called."""
    trim = glibc_malloc_trim()
    assert trim is not None
    trim()
