"""The worker's cap on client connections (``limits.max_connections``).

One L{ConnectionLimiter} counts the connections of every listener of a worker, from
accept to close. Below the cap every new connection is admitted. At the cap:

1. the longest-idle connection that would lose nothing by closing (an HTTP/2
   connection with no open stream, an HTTP/1.1 connection between requests, a
   connection still negotiating) is closed, and the new one is admitted;
2. if none is idle, the new connection is refused politely: it is served just
   long enough to say so (HTTP/2: SETTINGS and GOAWAY REFUSED_STREAM naming no
   stream, so the client may retry elsewhere; HTTP/1.1: 503 with Retry-After);
3. above the cap plus L{ConnectionLimiter.slack} (connections being refused or
   evicted and not yet gone), new connections are dropped at once, before any
   TLS work: descriptors and memory stay bounded whatever the accept rate.

The limiter knows connections only through two methods, C{isIdle()} and
C{closeIdle()} (L{Limited}); the protocol negotiation forwards them to the protocol
it chose.
"""

from __future__ import annotations

import enum
from typing import Protocol

from twisted.logger import Logger

log = Logger()

#: Connections looked at, at most, to find an idle one to close: the scan rotates
#: through the table, so a cap of thousands of busy connections costs this much per
#: new connection, not a pass over all of them.
IDLE_SCAN_LIMIT = 64

#: Least number of connections allowed above the cap while being refused or evicted.
MIN_SLACK = 16

#: The slack is this fraction of the cap (1/16), when that is more than L{MIN_SLACK}.
SLACK_DIVISOR = 16

#: Refusals and drops are logged once, then once every this many.
LOG_EVERY = 1000


class Admission(enum.Enum):
    """What happens to a new connection."""

    ADMIT = "admit"
    REFUSE = "refuse"
    DROP = "drop"


class Limited(Protocol):
    """What the limiter asks of a connection it tracks."""

    def isIdle(self) -> bool:
        """Closing the connection now would lose no request."""

    def closeIdle(self) -> None:
        """Close the connection politely, because it is idle and room is needed."""


class ConnectionLimiter:
    """Counts one worker's client connections and decides on each new one.

    @ivar maxConnections: the cap; 0 means no cap.
    @ivar slack: connections tolerated above the cap (refused or being evicted).
    @ivar refused: connections refused politely so far.
    @ivar dropped: connections dropped at once so far.
    @ivar evicted: idle connections closed to make room so far.
    """

    def __init__(self, maxConnections: int, slack: int | None = None) -> None:
        self.maxConnections = maxConnections
        self.slack = slack if slack is not None else max(MIN_SLACK, maxConnections // SLACK_DIVISOR)
        self.refused = 0
        self.dropped = 0
        self.evicted = 0
        self._live: dict[Limited, None] = {}

    def __len__(self) -> int:
        return len(self._live)

    def admit(self) -> Admission:
        """Decide on a connection just accepted (before it is tracked)."""
        cap = self.maxConnections
        count = len(self._live)
        if not cap or count < cap:
            return Admission.ADMIT
        if count >= cap + self.slack:
            self.dropped += 1
            self._report("dropping", self.dropped)
            return Admission.DROP
        if self._evictIdle():
            self.evicted += 1
            return Admission.ADMIT
        self.refused += 1
        self._report("refusing", self.refused)
        return Admission.REFUSE

    def track(self, connection: Limited) -> None:
        """Count C{connection} until L{release}."""
        self._live[connection] = None

    def release(self, connection: Limited) -> None:
        """C{connection} is gone."""
        self._live.pop(connection, None)

    def _evictIdle(self) -> bool:
        """Close the longest-tracked idle connection; C{False} when none is idle
        among the next L{IDLE_SCAN_LIMIT} (busy ones go to the back of the table)."""
        live = self._live
        for _ in range(min(IDLE_SCAN_LIMIT, len(live))):
            connection = next(iter(live))
            del live[connection]
            live[connection] = None
            if connection.isIdle():
                connection.closeIdle()
                return True
        return False

    def _report(self, what: str, count: int) -> None:
        if count % LOG_EVERY == 1:
            log.warn(
                "at limits.max_connections={cap} ({live} open): {what} new connections ({count} so far)",
                cap=self.maxConnections,
                live=len(self._live),
                what=what,
                count=count,
            )
