# -*- test-case-name: tests.upstream.test_waitqueue -*-
"""The queue in front of an upstream's servers: exchanges waiting for a connection
slot, most urgent first (RFC 9218 urgency), then oldest. Bounded and timed by the
pool (L{h2proxy.upstream.pool.UpstreamPool}), which owns the limits."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator

from h2proxy.upstream.exchange import UpstreamExchange

#: Levels of urgency (RFC 9218: 0 most urgent to 7 least).
URGENCY_LEVELS = 8


class WaitQueue:
    """Exchanges waiting for a connection slot: the most urgent first, then the
    oldest. One FIFO per urgency level, so taking the next is cheap; a waiter that
    may not use the freed server is passed over, not dropped."""

    def __init__(self) -> None:
        self._levels: list[deque[UpstreamExchange]] = [deque() for _ in range(URGENCY_LEVELS)]
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[UpstreamExchange]:
        for level in self._levels:
            yield from level

    def push(self, exchange: UpstreamExchange) -> None:
        self._levels[self._level(exchange)].append(exchange)
        self._count += 1

    def remove(self, exchange: UpstreamExchange) -> bool:
        """Take C{exchange} out; whether it was here."""
        level = self._levels[self._level(exchange)]
        try:
            level.remove(exchange)
        except ValueError:
            return False
        self._count -= 1
        return True

    def takeFirst(self, accept: Callable[[UpstreamExchange], bool]) -> UpstreamExchange | None:
        """Remove and return the first waiter (in order) that C{accept}s, if any."""
        for level in self._levels:
            for exchange in level:
                if accept(exchange):
                    level.remove(exchange)
                    self._count -= 1
                    return exchange
        return None

    @staticmethod
    def _level(exchange: UpstreamExchange) -> int:
        return min(max(exchange.request.urgency, 0), URGENCY_LEVELS - 1)
