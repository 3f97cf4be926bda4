# -*- test-case-name: tests.upstream.test_health -*-
"""The health of one server as this worker sees it. Pure: no I/O; time is passed in.

Two sources, combined by L{ServerHealth.available}:

  - Passive (real requests): C{failures} consecutive failures (refused, reset, timed
    out, TLS rejected) eject the server for C{backoff} seconds. When that runs out the
    server is tried again, half-open: the first failure ejects it again at once, for
    twice as long (capped by C{max_backoff}); the first success (a response head)
    makes it whole. A failure seen while already ejected (a request that was under
    way) changes nothing. A failure that would eject the upstream's last available
    server is counted but ejects nothing (C{lastAvailable}): nginx never marks the
    only server of a group down, and ejecting it would turn a restarted application
    into 503s for the whole back-off.
  - Active (health checks, optional): C{unhealthy_threshold} failed checks in a row
    mark the server down, C{healthy_threshold} passed checks in a row mark it up. A
    passed check also ends a passive ejection: the server demonstrably answers.
"""

from __future__ import annotations

from h2proxy.config.upstreams import HealthCheckConfig, PassiveHealthConfig


class ServerHealth:
    """Passive ejection and active-check state of one server.

    @ivar up: the verdict of the active checks (always true without them).
    @ivar consecutiveFailures: failed requests since the last success or ejection.
    @ivar ejections: ejections since the last success (drives the back-off).
    @ivar ejectedUntil: the time the current ejection ends (0 when not ejected).
    """

    def __init__(self, passive: PassiveHealthConfig, active: HealthCheckConfig | None = None) -> None:
        self._passive = passive
        self._active = active
        self.up = True
        self.consecutiveFailures = 0
        self.ejections = 0
        self.ejectedUntil = 0.0
        self._passes = 0
        self._fails = 0

    def available(self, now: float) -> bool:
        """Whether new requests may go to the server now."""
        return self.up and now >= self.ejectedUntil

    def ejected(self, now: float) -> bool:
        return now < self.ejectedUntil

    def availableIn(self, now: float) -> float | None:
        """Seconds until the server may take requests again: 0 if it may now, None
        when only health checks can tell (it is marked down)."""
        if not self.up:
            return None
        return max(0.0, self.ejectedUntil - now)

    # -- passive --------------------------------------------------------------

    def requestFailed(self, now: float, *, lastAvailable: bool = False) -> float | None:
        """Count a failed request; returns the ejection's length in seconds when this
        failure ejects the server, else None. C{lastAvailable}: no other server of the
        upstream may take requests now, so the failure is counted and the server stays
        in rotation (the next request finds out at once whether it is back)."""
        threshold = self._passive.failures
        if threshold <= 0 or self.ejected(now):
            return None
        self.consecutiveFailures += 1
        if self.consecutiveFailures < (1 if self.ejections else threshold) or lastAvailable:
            return None
        length = min(self._passive.backoff * 2**self.ejections, self._passive.max_backoff)
        self.ejections += 1
        self.consecutiveFailures = 0
        self.ejectedUntil = now + length
        return length

    def requestSucceeded(self) -> bool:
        """Count a request the server answered; returns whether this ends a half-open
        trial (the server had been ejected before). An answer ends an ejection still
        running (a request sent to it as the upstream's last resort, or under way when
        it was ejected): the server demonstrably answers."""
        recovered = self.ejections > 0
        self.consecutiveFailures = 0
        self.ejections = 0
        self.ejectedUntil = 0.0
        return recovered

    # -- active ---------------------------------------------------------------

    def checkPassed(self, now: float) -> bool:
        """Count a passed check; returns whether the server became available through
        it (marked up, or a passive ejection ended early)."""
        self._fails = 0
        self._passes += 1
        cameBack = self.ejected(now)
        self.ejectedUntil = 0.0
        if not self.up:
            assert self._active is not None
            if self._passes < self._active.healthy_threshold:
                return False
            self.up = True
            return True
        return cameBack

    def checkFailed(self) -> bool:
        """Count a failed check; returns whether this marks the server down."""
        self._passes = 0
        self._fails += 1
        if not self.up or self._active is None or self._fails < self._active.unhealthy_threshold:
            return False
        self.up = False
        return True
