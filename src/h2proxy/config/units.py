"""Durations and sizes as operators write them (``30s``, ``250ms``, ``64KiB``), both ways.

Parsing is strict on purpose: ``64KB`` or ``10 mins`` is refused with a hint rather
than guessed at, because a guessed unit is exactly the silent misreading an operator
finds at 3 a.m. Formatting gives the shortest exact spelling, so documentation and
error messages show values the way the operator would write them.
"""

from __future__ import annotations

import math
import re

#: Seconds in an hour and a day, bytes in a GiB: the schema's bounds are written with them.
HOUR = 3600.0
DAY = 24 * HOUR
GiB = 1024**3

#: Duration units, largest first (formatting picks the largest that divides exactly).
DURATION_UNITS: tuple[tuple[str, float], ...] = (
    ("h", 3600.0),
    ("m", 60.0),
    ("s", 1.0),
    ("ms", 0.001),
)

#: Size units, largest first (binary multiples only: KiB is never ambiguous).
SIZE_UNITS: tuple[tuple[str, int], ...] = (
    ("GiB", 1024**3),
    ("MiB", 1024**2),
    ("KiB", 1024),
    ("B", 1),
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|)\s*$")
_SIZE = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|GiB|)\s*$")
#: Spellings that are not accepted but have an obvious binary meaning, for the hint.
_SIZE_NEAR_MISS = re.compile(r"^\s*(\d+)\s*([kKmMgG])(?:i?[bB])?\s*$")


def parse_duration(value: object) -> float:
    """Seconds from ``250ms``/``30s``/``5m``/``1h`` or a bare number of seconds
    (also as text, as a quoted value or ``${VAR}`` gives it).

    @raise ValueError: with a short reason when C{value} is not a duration.
    """
    if isinstance(value, bool):
        raise ValueError("not a duration")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value < 0:
            raise ValueError("not a duration")
        return float(value)
    if not isinstance(value, str):
        raise ValueError("not a duration")
    match = _DURATION.match(value)
    if match is None:
        raise ValueError("not a duration")
    number, unit = match.groups()
    return float(number) * dict(DURATION_UNITS)[unit or "s"]


def parse_size(value: object) -> int:
    """Bytes from ``512B``/``64KiB``/``16MiB``/``1GiB`` or a bare integer of bytes
    (also as text).

    @raise ValueError: with a hint when C{value} looks like a decimal or
        abbreviated unit (``64KB``, ``64k``), else a short reason.
    """
    if isinstance(value, bool):
        raise ValueError("not a size")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("not a size")
        return value
    if not isinstance(value, str):
        raise ValueError("not a size")
    match = _SIZE.match(value)
    if match is not None:
        number, unit = match.groups()
        return int(number) * dict(SIZE_UNITS)[unit or "B"]
    near = _SIZE_NEAR_MISS.match(value)
    if near is not None:
        number, letter = near.groups()
        raise ValueError(f"did you mean {number}{letter.upper()}iB? (sizes are binary: B, KiB, MiB, GiB)")
    raise ValueError("not a size")


def format_duration(seconds: float) -> str:
    """The shortest exact spelling of C{seconds}: 60.0 -> ``1m``, 0.25 -> ``250ms``."""
    if seconds == 0:
        return "0s"
    for unit, scale in DURATION_UNITS:
        count = seconds / scale
        if count >= 1 and abs(count - round(count)) < 1e-9:
            return f"{round(count)}{unit}"
    return f"{seconds:g}s"


def format_size(size: int) -> str:
    """The shortest exact spelling of C{size}: 1048576 -> ``1MiB``, 1000 -> ``1000B``."""
    if size == 0:
        return "0"
    for unit, scale in SIZE_UNITS[:-1]:
        if size % scale == 0:
            return f"{size // scale}{unit}"
    return f"{size}B"
