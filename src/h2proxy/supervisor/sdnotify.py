"""systemd's notify protocol (sd_notify(3)) in a few lines of standard library.

The supervisor tells systemd when it serves (C{READY=1}), when a reload starts
(C{RELOADING=1}, then C{READY=1} when it is over, whatever its outcome), when it
stops (C{STOPPING=1}), and what it is doing (C{STATUS=...}, shown by
C{systemctl status}). Without C{$NOTIFY_SOCKET} (not run by systemd with
C{Type=notify}) every call does nothing.

A notification that cannot be sent is dropped and reported through the return
value and C{lastError} (the caller logs it): systemd being away must never stop
the proxy. Standard library only.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

#: Longest STATUS text sent; systemd shows one line, so more is noise.
MAX_STATUS = 512


def _address(value: str) -> str | bytes:
    """The socket address of C{$NOTIFY_SOCKET}; C{@name} is Linux's abstract namespace."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    return value


class Notifier:
    """Sends datagrams to systemd's notify socket.

    @ivar address: the socket address, or C{None} when not run by systemd.
    @ivar lastError: why the last notification could not be sent, else C{None}.
    """

    def __init__(self, address: str | None) -> None:
        self.address = _address(address) if address else None
        self.lastError: OSError | None = None

    @classmethod
    def fromEnvironment(cls, environ: Mapping[str, str] = os.environ) -> "Notifier":
        """A notifier for C{$NOTIFY_SOCKET}, or a silent one without it."""
        return cls(environ.get("NOTIFY_SOCKET") or None)

    def notify(self, **fields: str) -> bool:
        """Send C{KEY=value} lines, e.g. C{notify(READY="1", STATUS="serving")}.

        @return: C{False} when the datagram could not be sent (see C{lastError}).
        """
        if self.address is None:
            return True
        message = "\n".join(f"{key}={value}" for key, value in fields.items()).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message, self.address)
        except OSError as error:
            self.lastError = error
            return False
        self.lastError = None
        return True

    def ready(self, status: str) -> bool:
        """The daemon serves (at start, and at the end of every reload)."""
        return self.notify(READY="1", STATUS=_status(status))

    def reloading(self, status: str) -> bool:
        """A reload started. C{MONOTONIC_USEC} is what C{Type=notify-reload} requires."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify(RELOADING="1", MONOTONIC_USEC=str(usec), STATUS=_status(status))

    def stopping(self, status: str) -> bool:
        """A graceful stop started."""
        return self.notify(STOPPING="1", STATUS=_status(status))

    def status(self, status: str) -> bool:
        """What the daemon is doing now, for C{systemctl status}."""
        return self.notify(STATUS=_status(status))


def _status(text: str) -> str:
    return text.replace("\n", " ")[:MAX_STATUS]
