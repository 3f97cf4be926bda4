"""A generation: one validated config and the workers started for it, in slots that
outlive the processes filling them (a slot keeps its crash loop's back-off)."""

from __future__ import annotations

import enum
import socket
from dataclasses import dataclass

from twisted.internet.interfaces import IDelayedCall

from h2proxy.config.model import Config
from h2proxy.handover import ConfigSource
from h2proxy.supervisor.workers import Worker


class GenerationState(enum.Enum):
    """Where a generation is in its life.

    - C{STARTING}: workers spawned, not all ready; the previous generation serves.
    - C{SERVING}: the generation that accepts connections; dead workers restart.
    - C{DRAINING}: told to stop (superseded, failed to start, or the daemon stops);
      its workers finish their streams and exit; nothing restarts.
    """

    STARTING = "starting"
    SERVING = "serving"
    DRAINING = "draining"


@dataclass(frozen=True, slots=True)
class Backoff:
    """ProcessMonitor's rule for restarting a dead worker.

    @ivar threshold: a worker that dies sooner than this many seconds after it was
        spawned is crash-looping: its restart waits, and the wait doubles.
    @ivar minimum: the first wait of a crash loop, in seconds.
    @ivar maximum: the cap of the doubling wait, in seconds.
    """

    threshold: float
    minimum: float
    maximum: float


@dataclass(eq=False)
class Slot:
    """A place for one worker in a generation, which outlives the processes filling it.

    @ivar delay: the delay before the next restart if the worker dies young.
    @ivar worker: the live process, if any.
    @ivar restartCall: the pending restart, if any.
    """

    index: int
    delay: float
    worker: Worker | None = None
    restartCall: IDelayedCall | None = None

    def nextDelay(self, backoff: Backoff, lived: float) -> float:
        """Young deaths wait, doubling to a cap; a worker that lived past the threshold
        restarts now and resets the wait."""
        if lived < backoff.threshold:
            delay = self.delay
            self.delay = min(self.delay * 2, backoff.maximum)
            return delay
        self.delay = backoff.minimum
        return 0.0

    def refused(self, backoff: Backoff) -> float:
        """A worker refused its boot message: the next one would too until the daemon
        or the config changes, so wait the longest."""
        self.delay = backoff.maximum
        return self.delay

    def cancelRestart(self) -> None:
        if self.restartCall is not None and self.restartCall.active():
            self.restartCall.cancel()
        self.restartCall = None


@dataclass(eq=False)
class Generation:
    """One config and the workers started for it.

    @ivar source: the text the config was validated from, as handed to its workers.
    @ivar sockets: listener name -> the supervisor's listening socket.
    @ivar fresh: keys of the sockets bound for this generation (closed if it fails).
    @ivar readyCall: the pending "not ready in time" check of a reload.
    """

    number: int
    config: Config
    source: ConfigSource
    sockets: dict[str, socket.socket]
    fresh: list
    slots: list[Slot]
    state: GenerationState = GenerationState.STARTING
    readyCall: IDelayedCall | None = None

    def live(self) -> list[Worker]:
        return [slot.worker for slot in self.slots if slot.worker is not None]

    def allReady(self) -> bool:
        return all(slot.worker is not None and slot.worker.ready for slot in self.slots)

    def cancelReadyCheck(self) -> None:
        if self.readyCall is not None and self.readyCall.active():
            self.readyCall.cancel()
        self.readyCall = None
