"""A route's rate limit: a token bucket per client address. Pure, no I/O; time
comes from an injected clock (the worker's C{reactor.seconds}).

Each client starts with a full bucket of C{burst} tokens, refilled continuously at
C{rate} per second up to C{burst}; a request takes one token, and a request that
finds less than one is refused with the seconds until one is there. The table of
clients is bounded (L{MAX_CLIENTS}, least recently seen evicted first), so a flood
of addresses cannot grow it: an evicted client comes back with a full bucket, which
only matters to clients that go unseen while that many others arrive.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable

from h2proxy.config.access import RateLimitConfig

#: Client addresses one route's limiter remembers per worker. Enough for the busy
#: clients of a route; a flood of spoofed or many addresses evicts the least recently
#: seen rather than growing memory (each entry is an address and two floats).
MAX_CLIENTS = 10_000


class _Bucket:
    """One client's tokens, as of C{updated} (clock seconds)."""

    __slots__ = ("tokens", "updated")

    def __init__(self, tokens: float, updated: float) -> None:
        self.tokens = tokens
        self.updated = updated


class RateLimiter:
    """The buckets of one route's clients.

    @ivar rate: tokens added per second.
    @ivar burst: the most tokens a bucket holds.
    """

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float], maxClients: int = MAX_CLIENTS
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.maxClients = maxClients
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    @classmethod
    def fromConfig(cls, config: RateLimitConfig, clock: Callable[[], float]) -> "RateLimiter":
        return cls(rate=config.rate.per_second, burst=config.burst, clock=clock)

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, client: str) -> int:
        """Spend one of C{client}'s tokens: 0 when the request may go, else the
        whole seconds (at least 1) until a token is there, for ``Retry-After``."""
        now = self._clock()
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = self._buckets[client] = _Bucket(float(self.burst), now)
            if len(self._buckets) > self.maxClients:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(client)
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0
        return max(1, math.ceil((1.0 - bucket.tokens) / self.rate))
