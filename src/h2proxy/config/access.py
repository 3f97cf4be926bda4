"""A route's rate limit: the ``rate_limit`` section and its ``rate`` kind (``5/s``,
``100/m``).

Kept apart from model.py, which holds the rest of the route, to keep that module
within its size; plain data and pure functions like the rest of the config package.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from h2proxy.config.spec import Context, Integer, Kind, OptionError, option

#: Most requests a rate may allow per second or minute, and the largest burst.
MAX_RATE = 1_000_000
MAX_BURST = 1_000_000

#: Seconds per unit of a rate.
_PERIODS = {"s": 1, "m": 60}
_RATE = re.compile(r"\s*(\d+)\s*/\s*([sm])\s*")


@dataclass(frozen=True, slots=True)
class RequestRate:
    """Requests allowed per period: C{count} per C{period} seconds (1 or 60)."""

    count: int
    period: int

    @property
    def per_second(self) -> float:
        return self.count / self.period

    def __str__(self) -> str:
        return f"{self.count}/{'s' if self.period == 1 else 'm'}"


@dataclass(frozen=True, slots=True)
class Rate(Kind):
    """A request rate written ``N/s`` or ``N/m``, N a whole number from 1."""

    what = "rate"

    def convert(self, value: object, context: Context) -> RequestRate:
        match = _RATE.fullmatch(value) if isinstance(value, str) else None
        if match is None or not 1 <= int(match.group(1)) <= MAX_RATE:
            raise OptionError(f"expected a rate like 5/s or 100/m: {self.bounds()}")
        return RequestRate(count=int(match.group(1)), period=_PERIODS[match.group(2)])

    def bounds(self) -> str:
        return f"1 to {MAX_RATE:,} requests per second (/s) or minute (/m)"


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    """How often one client may use a route: a token bucket per client address,
    refilled at ``rate`` and holding at most ``burst`` requests. Counted in each
    worker on its own: with W workers a client may get up to W times the rate."""

    rate: RequestRate = option(Rate(), "Requests a client may make, on average: N/s or N/m.")
    burst: int = option(
        Integer(1, MAX_BURST),
        "Requests a client may make at once before the rate applies (the bucket's size).",
        default=1,
    )
