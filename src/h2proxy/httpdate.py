"""The value of the Date field (RFC 9110 section 6.6.1), formatted once a second.

A proxy that answers a request itself (an error, a redirect, a file) is the origin
server of that response and must send Date; one that forwards a response without
Date must add it. Formatting an IMF-fixdate costs a few microseconds, so the text is
kept for the second it names. Plain code: the standard library only.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable


class DateField:
    """The current Date value, from C{clock} (seconds since the epoch)."""

    __slots__ = ("_clock", "_second", "_value")

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._second = -1
        self._value = b""

    def value(self) -> bytes:
        """``Sun, 06 Nov 1994 08:49:37 GMT`` for the clock's current second."""
        second = int(self._clock())
        if second != self._second:
            self._second = second
            self._value = email.utils.formatdate(second, usegmt=True).encode("ascii")
        return self._value
