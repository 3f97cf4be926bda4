"""What the test applications share: the bytes they stream and the gates that
hold server-sent events until the client asks for the next one."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

#: Seconds an application waits for a gate before giving up (a test that failed
#: must not leave a request hanging for ever).
GATE_TIMEOUT = 30.0

#: At most this many gates are kept; the oldest go first.
MAX_GATES = 1024


def chunk(index: int, size: int) -> bytes:
    """Chunk C{index} of a stream: C{size} bytes that differ from chunk to chunk."""
    seed = hashlib.sha256(str(index).encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def stream_digest(count: int, size: int) -> str:
    """The sha256 of the whole stream of C{count} chunks of C{size} bytes."""
    digest = hashlib.sha256()
    for index in range(count):
        digest.update(chunk(index, size))
    return digest.hexdigest()


class Gates:
    """Events keyed by (stream name, event index), made on first use by either side."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._gates: dict[tuple[str, int], Any] = {}

    def get(self, name: str, index: int) -> Any:
        key = (name, index)
        if key not in self._gates:
            if len(self._gates) >= MAX_GATES:
                del self._gates[next(iter(self._gates))]
            self._gates[key] = self._make()
        return self._gates[key]
