"""Durations and sizes as operators write them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from h2proxy.config.units import format_duration, format_size, parse_duration, parse_size


@pytest.mark.parametrize(
    "text, seconds",
    [("250ms", 0.25), ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), ("1.5s", 1.5), (" 2s ", 2.0), (0, 0.0), (45, 45.0), (2.5, 2.5), ("45", 45.0)],
)
def test_durations_parse_to_seconds(text, seconds):
    """When a duration has a unit (or is a bare number), it becomes float seconds."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["30 seconds", "5min", "1d", "-1s", "s", "", True, None, [1], float("inf"), -3])
def test_bad_durations_are_refused(text):
    """When a duration has no known unit, is negative or not a number, ValueError is raised."""
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    "text, size",
    [("512B", 512), ("64KiB", 65536), ("16MiB", 16 * 1024**2), ("1GiB", 1024**3), (0, 0), (1000, 1000), ("0", 0)],
)
def test_sizes_parse_to_bytes(text, size):
    """When a size has a binary unit (or is a bare integer), it becomes int bytes."""
    assert parse_size(text) == size


@pytest.mark.parametrize("text, hint", [("64KB", "64KiB"), ("64k", "64KiB"), ("16M", "16MiB"), ("1gb", "1GiB")])
def test_decimal_or_short_units_get_a_binary_suggestion(text, hint):
    """When a size uses KB/k/M-style units, the error suggests the binary spelling instead of guessing."""
    with pytest.raises(ValueError, match=f"did you mean {hint}"):
        parse_size(text)


@pytest.mark.parametrize("text", ["1.5MiB", "-1", "MiB", "", True, None, -1, 2.0])
def test_bad_sizes_are_refused(text):
    """When a size is fractional, negative or not a size, ValueError is raised."""
    with pytest.raises(ValueError):
        parse_size(text)


@pytest.mark.parametrize(
    "seconds, text", [(0, "0s"), (0.25, "250ms"), (1.0, "1s"), (90.0, "90s"), (60.0, "1m"), (7200.0, "2h"), (1.5, "1500ms")]
)
def test_durations_format_in_the_largest_exact_unit(seconds, text):
    """When a duration is formatted, the largest unit that divides it exactly is used."""
    assert format_duration(seconds) == text


@pytest.mark.parametrize("size, text", [(0, "0"), (1000, "1000B"), (1024, "1KiB"), (1536, "1536B"), (16 * 1024**2, "16MiB")])
def test_sizes_format_in_the_largest_exact_unit(size, text):
    """When a size is formatted, the largest binary unit that divides it exactly is used."""
    assert format_size(size) == text


@given(st.integers(min_value=0, max_value=10**7))
def test_durations_round_trip(milliseconds):
    """When any whole number of milliseconds is formatted and parsed again, it is unchanged."""
    seconds = milliseconds / 1000
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


@given(st.integers(min_value=0, max_value=2**40))
def test_sizes_round_trip(size):
    """When any size is formatted and parsed again, it is unchanged."""
    assert parse_size(format_size(size)) == size
