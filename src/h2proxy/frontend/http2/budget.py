"""Budgets for client misbehaviour: one leaky bucket per kind, per connection.

A client that resets streams it just opened (rapid reset), or keeps sending frames
that cost the proxy work and serve no request (empty frames, tiny WINDOW_UPDATEs,
PRIORITY churn, stream errors: the "glitches" of HAProxy's vocabulary), is charged
one unit each time. The bucket leaks at C{capacity / window} units per second, so a
client may do such a thing C{capacity} times in a burst and C{capacity} times per
C{window} seconds for ever, which no normal client comes near; beyond that the
connection is closed with GOAWAY ENHANCE_YOUR_CALM by L{H2Connection}.

A charge is two float operations and one clock read: no timer, no allocation, so
the budget costs nothing on the paths that well-behaved clients use.
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime


class Budget:
    """A leaky bucket of C{capacity} units that drains in C{window} seconds.

    @ivar capacity: units a client may spend at once; 0 disables the budget.
    @ivar spent: units charged so far, over the connection's whole life (for logs).
    """

    __slots__ = ("capacity", "spent", "_rate", "_level", "_last", "_clock")

    def __init__(self, capacity: int, window: float, clock: IReactorTime) -> None:
        self.capacity = capacity
        self.spent = 0
        self._rate = capacity / window if window > 0 else 0.0
        self._level = 0.0
        self._last = clock.seconds()
        self._clock = clock

    def charge(self, units: int = 1) -> bool:
        """Spend C{units}; return whether the budget is now exceeded."""
        if not self.capacity:
            return False
        self.spent += units
        now = self._clock.seconds()
        level = self._level - (now - self._last) * self._rate
        self._level = (level if level > 0.0 else 0.0) + units
        self._last = now
        return self._level > self.capacity
