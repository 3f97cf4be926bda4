"""One worker child as the supervisor sees it: its state, the pipes to it (boot
message in, log lines and reports out), and how its end is put in words.

A worker is a command line (L{WORKER_COMMAND}) and a boot message
(L{h2proxy.handover}); nothing here imports HTTP code.
"""

from __future__ import annotations

import enum
import signal
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from twisted.internet import protocol
from twisted.internet.interfaces import IDelayedCall, IProcessTransport
from twisted.logger import InvalidLogLevelError, Logger, LogLevel
from twisted.python.failure import Failure

from h2proxy.handover import (
    BOOT_FD,
    FIRST_LISTENER_FD,
    LOG_FD,
    MAX_REPORT_LINE,
    REPORT_FD,
    STDOUT_FD,
    InheritedListener,
)

if TYPE_CHECKING:
    from h2proxy.supervisor.generations import Generation, Slot

log = Logger()

#: How a worker process is started (followed by its generation and slot).
WORKER_COMMAND = (sys.executable, "-m", "h2proxy.worker.process")
#: Environment variables meant for the supervisor alone (systemd's).
PRIVATE_ENVIRONMENT = ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")
#: Longest log line relayed from a worker; the rest of a longer line is cut.
MAX_LOG_LINE = 64 * 1024


def worker_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The supervisor's environment without what systemd meant for the supervisor alone."""
    return {key: value for key, value in environ.items() if key not in PRIVATE_ENVIRONMENT}


def inherited_listeners(sockets: Mapping[str, socket.socket]) -> tuple[InheritedListener, ...]:
    """Where each listening socket sits in a worker: from C{FIRST_LISTENER_FD} on, in order."""
    return tuple(InheritedListener(name, FIRST_LISTENER_FD + i, sock.family)
                 for i, (name, sock) in enumerate(sockets.items()))


def child_descriptors(sockets: Mapping[str, socket.socket]) -> dict[int, int | str]:
    """A worker's descriptor table for C{spawnProcess}: the pipes, then the sockets in
    the order of L{inherited_listeners}."""
    fds: dict[int, int | str] = {BOOT_FD: "w", STDOUT_FD: STDOUT_FD, LOG_FD: "r", REPORT_FD: "r"}
    for i, sock in enumerate(sockets.values()):
        fds[FIRST_LISTENER_FD + i] = sock.fileno()
    return fds


class LineBuffer:
    """Splits a child's output into lines, keeping the first C{limit} bytes of a longer
    line (emitted as soon as it overflows) and dropping the rest of it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._partial = b""
        self._discarding = False

    def feed(self, data: bytes) -> list[str]:
        """The lines completed (or cut) by C{data}, without their line ends."""
        lines: list[bytes] = []
        for index, piece in enumerate(data.split(b"\n")):
            if index:
                if not self._discarding:
                    lines.append(self._partial)
                self._partial = b""
                self._discarding = False
            if self._discarding:
                continue
            room = self.limit - len(self._partial)
            if len(piece) > room:
                lines.append(self._partial + piece[:room])
                self._partial = b""
                self._discarding = True
            else:
                self._partial += piece
        return [line.decode("utf-8", "replace").rstrip("\r") for line in lines]


class WorkerState(enum.Enum):
    """Where one worker process is in its life.

    - C{STARTING}: spawned; it has not reported ready yet.
    - C{READY}: it reported that it accepts connections.
    - C{DRAINING}: it was told to drain (SIGTERM sent); it finishes its streams and exits.
    """

    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"


@dataclass(eq=False)
class Worker:
    """One worker process.

    @ivar startedAt: when it was spawned, on the supervisor's clock (for back-off).
    @ivar pid: its process id, kept after it exits (for the log lines about it).
    @ivar state: where it is in its life (L{WorkerState}).
    @ivar streams: the streams it still had open at its last report while draining.
    @ivar killCall: the pending SIGKILL after its drain window and grace period.
    @ivar recent: the recent errors of its last metrics report (plain dicts).
    """

    generation: "Generation"
    slot: "Slot"
    startedAt: float
    process: IProcessTransport | None = None
    pid: int | None = None
    state: WorkerState = WorkerState.STARTING
    streams: int | None = None
    killCall: IDelayedCall | None = None
    recent: list = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.generation.number}.{self.slot.index}"

    @property
    def ready(self) -> bool:
        """It reported ready and was not told to drain since."""
        return self.state is WorkerState.READY

    @property
    def draining(self) -> bool:
        """It was told to drain (the status page's badge)."""
        return self.state is WorkerState.DRAINING

    def describe(self) -> str:
        return f"worker {self.name} (pid {self.pid})"


def describe_exit(reason: Failure) -> str:
    """Why a process ended, in words: an exit status or the signal that killed it."""
    value = reason.value
    number = getattr(value, "signal", None)
    if number:
        try:
            return f"killed by signal {number} ({signal.Signals(number).name})"
        except ValueError:
            return f"killed by signal {number}"
    return f"exited with status {getattr(value, 'exitCode', None) or 0}"


class WorkerEvents(Protocol):
    """What a worker's pipes tell the supervisor."""

    def workerReported(self, worker: Worker, line: str) -> None: ...

    def workerEnded(self, worker: Worker, reason: Failure) -> None: ...


class WorkerProtocol(protocol.ProcessProtocol):
    """The supervisor's end of one worker's pipes: boot message in, logs and reports out."""

    def __init__(self, supervisor: WorkerEvents, worker: Worker, boot: bytes) -> None:
        self.supervisor = supervisor
        self.worker = worker
        self.boot = boot
        self._lines = {LOG_FD: LineBuffer(MAX_LOG_LINE), REPORT_FD: LineBuffer(MAX_REPORT_LINE)}

    def connectionMade(self) -> None:
        """Send the boot message; the pipe stays open so the worker sees us die.

        This runs inside C{spawnProcess}, before the child can be reaped, so the
        worker knows its process even if it dies at once.
        """
        self.worker.process = self.transport
        self.worker.pid = self.transport.pid
        log.info("spawned {worker}", worker=self.worker.describe())
        self.transport.writeToChild(BOOT_FD, self.boot)

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        buffer = self._lines.get(childFD)
        if buffer is None:
            return
        for line in buffer.feed(data):
            if childFD == REPORT_FD:
                self.supervisor.workerReported(self.worker, line)
            else:
                self._relay(line)

    def _relay(self, line: str) -> None:
        """Log a worker's line under its name, at the level the worker gave it (a line
        without one, like a traceback printed before logging started, is a warning)."""
        word, _, rest = line.partition(" ")
        try:
            level = LogLevel.levelWithName(word)
            text = rest
        except InvalidLogLevelError:
            level = LogLevel.warn
            text = line
        log.emit(level, "worker {worker}[{pid}]: {text}", worker=self.worker.name,
                 pid=self.worker.pid, text=text)

    def processEnded(self, reason: Failure) -> None:
        self.supervisor.workerEnded(self.worker, reason)
