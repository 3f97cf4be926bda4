"""The supervisor: binds the listeners once, runs generations of worker processes,
restarts the ones that die, and reloads and stops without dropping a request.

Modelled on Twisted's C{ProcessMonitor} (C{twisted.runner.procmon}): the reactor
is injected (tests drive it with a fake process reactor and clock), the tunables
are documented class attributes, a crash loop backs off by doubling up to a cap,
and a worker asked to stop gets C{SIGTERM}, then C{SIGKILL} after a grace period.

What a generation is: one validated config and the workers started for it. The
supervisor has at most one I{serving} generation, at most one I{starting}
generation (a reload in progress), and any number of I{draining} ones (old
generations finishing their streams). A reload goes:

    1. read and validate the file (invalid: log every problem, keep serving);
    2. bind the listeners the new config adds (the others keep their sockets);
    3. start the new generation, handing it the sockets and the config;
    4. when every new worker reports ready, tell the old generation to drain
       (C{SIGTERM}: stop accepting, graceful GOAWAY, finish streams within
       C{timeouts.drain}) and close the sockets the new config dropped.

If a new worker dies before it is ready, or the generation is not ready within
C{readyTimeout}, the reload fails: the new workers drain, the sockets bound for
them close, and the old generation never stopped serving.

The listening sockets stay open in this process for the daemon's whole life, so
no connection waiting in a kernel accept queue is lost while generations change
hands: the new workers accept from the same queue the old ones stop reading.

This module imports no HTTP code (a test enforces it): workers are a command line
(L{WORKER_COMMAND}) and a boot message (L{h2proxy.handover}).
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import os
import signal
import socket
import sys
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from twisted.internet import defer, error, protocol
from twisted.internet.interfaces import IDelayedCall, IProcessTransport
from twisted.logger import Logger, LogLevel, InvalidLogLevelError
from twisted.python.failure import Failure

from h2proxy.config.model import MAX_WORKERS, Config, ListenerConfig
from h2proxy.errors import ConfigError, H2ProxyError
from h2proxy.handover import (
    BOOT_FD,
    FIRST_LISTENER_FD,
    LOG_FD,
    MAX_REPORT_LINE,
    REPORT_FD,
    STDOUT_FD,
    InheritedListener,
    Report,
    WorkerBoot,
    encode_boot,
    parse_report,
)
from h2proxy.observability.metrics import Aggregate, SupervisorMetrics, WorkerMetrics, route_label, server_label
from h2proxy.supervisor.sdnotify import Notifier

log = Logger()

#: Connections the kernel queues per listener while no worker accepts.
LISTEN_BACKLOG = 1024
#: How a worker process is started (followed by its generation and slot).
WORKER_COMMAND = (sys.executable, "-m", "h2proxy.worker.process")
#: Environment variables meant for the supervisor alone (systemd's).
PRIVATE_ENVIRONMENT = ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")
#: The first descriptor systemd passes by socket activation (sd_listen_fds(3)).
SD_LISTEN_FDS_START = 3
#: Most sockets taken from systemd (a listener count, not a fd table).
MAX_ACTIVATED_SOCKETS = 64
#: Longest log line relayed from a worker; the rest of a longer line is cut.
MAX_LOG_LINE = 64 * 1024
#: Recent errors kept from workers that have exited (the status page's list).
MAX_RETIRED_ERRORS = 50


def worker_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The supervisor's environment without what systemd meant for the supervisor alone."""
    return {key: value for key, value in environ.items() if key not in PRIVATE_ENVIRONMENT}


def _changed_fields(old, new) -> list[str]:
    return [f.name for f in dataclasses.fields(old) if getattr(old, f.name) != getattr(new, f.name)]


def _keyed_changes(kind: str, old: Mapping, new: Mapping, detail: Callable[[object, object], str]) -> list[str]:
    """C{kind} entries added, removed and changed between two name -> entry maps."""
    lines = [f"{kind} {name} added" for name in new if name not in old]
    lines += [f"{kind} {name} removed" for name in old if name not in new]
    lines += [f"{kind} {name} changed ({detail(old[name], new[name])})"
              for name in new if name in old and old[name] != new[name]]
    return lines


def _upstream_detail(old, new) -> str:
    before = {server_label(s): s for s in old.servers}
    after = {server_label(s): s for s in new.servers}
    parts = [f"+{label}" for label in after if label not in before]
    parts += [f"-{label}" for label in before if label not in after]
    parts += [f"~{label}" for label in after if label in before and before[label] != after[label]]
    others = [name for name in _changed_fields(old, new) if name != "servers"]
    return ", ".join(([f"servers {' '.join(parts)}"] if parts else []) + others)


def describe_changes(old: Config, new: Config) -> list[str]:
    """What a reload changes, one line per listener, route and upstream added,
    removed or changed, then one per other section that differs; a single line
    when nothing did (certificates are read again all the same)."""
    lines = _keyed_changes("listener", {l.name: l for l in old.listeners},
                           {l.name: l for l in new.listeners},
                           lambda a, b: ", ".join(_changed_fields(a, b)))
    lines += _keyed_changes("route", {route_label(r): r for r in old.routes},
                            {route_label(r): r for r in new.routes},
                            lambda a, b: ", ".join(_changed_fields(a, b)))
    lines += _keyed_changes("upstream", old.upstreams, new.upstreams, _upstream_detail)
    sections = [name for name in _changed_fields(old, new)
                if name not in ("listeners", "routes", "upstreams", "source", "warnings")]
    lines += [f"{name} changed" for name in sections]
    return lines or ["no setting changed (certificates and keys were read again)"]


class ListenError(H2ProxyError):
    """A listener's address could not be bound (in use, not local, not permitted)."""


def default_worker_count() -> int:
    """C{workers: auto}: the CPUs this process may run on (cgroup and affinity aware)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _kind(listener: ListenerConfig) -> str:
    return "tls" if listener.tls is not None else "cleartext"


def socket_key(listener: ListenerConfig) -> tuple:
    """What identifies a listener's socket across reloads.

    A fixed port is its address and port (renaming a listener keeps its socket); a
    port 0 listener (an ephemeral port, in tests) is known by its name instead.
    """
    if listener.port:
        return (listener.address, listener.port)
    return (listener.address, 0, listener.name)


def bind_listener(listener: ListenerConfig, backlog: int = LISTEN_BACKLOG) -> socket.socket:
    """A non-blocking listening TCP socket for C{listener}.

    @raise ListenError: the address cannot be bound, with the reason from the kernel.
    """
    family = socket.AF_INET6 if ":" in listener.address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((listener.address, listener.port))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as problem:
        sock.close()
        raise ListenError(
            f"cannot listen for {listener.name} on {listener.address} port {listener.port}: "
            f"{problem.strerror or problem}"
        ) from problem
    return sock


def describe_address(sock: socket.socket) -> str:
    """C{host:port}, with brackets around an IPv6 host."""
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _address_key(host: str, port: int) -> tuple[str, int]:
    """An address as the kernel reports it, so C{::0} and C{::} compare equal."""
    return (str(ipaddress.ip_address(host.split("%", 1)[0])), port)


def activated_sockets(environ: Mapping[str, str], pid: int,
                      start: int = SD_LISTEN_FDS_START) -> dict[tuple[str, int], socket.socket]:
    """The listening TCP sockets systemd passed by socket activation, by (address, port).

    sd_listen_fds(3): C{$LISTEN_FDS} descriptors from fd 3 on, meant for us only if
    C{$LISTEN_PID} is our pid. Descriptors that are not TCP listening sockets are
    left alone.
    """
    if environ.get("LISTEN_PID") != str(pid):
        return {}
    try:
        count = min(int(environ.get("LISTEN_FDS", "0")), MAX_ACTIVATED_SOCKETS)
    except ValueError:
        return {}
    found: dict[tuple[str, int], socket.socket] = {}
    for fd in range(start, start + count):
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            continue
        if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM:
            sock.detach()
            continue
        sock.setblocking(False)
        found[_address_key(*sock.getsockname()[:2])] = sock
    return found


class ListenerSockets:
    """The listening sockets, bound once and kept open for as long as a config uses them.

    @ivar bind: makes one listening socket (injected so tests need no sockets).
    @ivar activated: sockets systemd passed (socket activation), by (address, port);
        a listener with that address and port uses one instead of binding, and it
        returns here rather than being closed when no config uses it any more.
    """

    def __init__(self, bind: Callable[[ListenerConfig], socket.socket] = bind_listener,
                 activated: Mapping[tuple[str, int], socket.socket] | None = None) -> None:
        self.bind = bind
        self.activated = dict(activated or {})
        self._open: dict[tuple, socket.socket] = {}
        self._fromSystemd: dict[tuple, tuple[str, int]] = {}

    def acquire(self, listeners: Iterable[ListenerConfig]) -> tuple[dict[str, socket.socket], list]:
        """The socket of every listener, binding the ones not open yet.

        @return: (listener name -> socket, keys of the sockets bound by this call).
        @raise ListenError: one could not be bound; those bound by this call are closed.
        """
        sockets: dict[str, socket.socket] = {}
        fresh: list = []
        try:
            for listener in listeners:
                key = socket_key(listener)
                if key not in self._open:
                    self._open[key] = self._activatedFor(listener, key) or self.bind(listener)
                    fresh.append(key)
                sockets[listener.name] = self._open[key]
                log.info(
                    "listener {name} on {address} ({kind})",
                    name=listener.name,
                    address=describe_address(sockets[listener.name]),
                    kind=_kind(listener),
                )
        except ListenError:
            self.release(fresh)
            raise
        return sockets, fresh

    def _activatedFor(self, listener: ListenerConfig, key: tuple) -> socket.socket | None:
        address = _address_key(listener.address, listener.port)
        sock = self.activated.pop(address, None)
        if sock is not None:
            self._fromSystemd[key] = address
            log.info("listener {name} uses the socket systemd passed", name=listener.name)
        return sock

    def release(self, keys: Iterable) -> None:
        """Close the sockets of C{keys} (systemd's go back to C{activated} instead)."""
        for key in keys:
            sock = self._open.pop(key, None)
            if sock is None:
                continue
            address = self._fromSystemd.pop(key, None)
            if address is not None:
                self.activated[address] = sock
            else:
                sock.close()

    def retainOnly(self, listeners: Iterable[ListenerConfig]) -> None:
        """Close every socket C{listeners} no longer use (workers keep their own copies)."""
        wanted = {socket_key(listener) for listener in listeners}
        self.release([key for key in self._open if key not in wanted])

    def closeAll(self) -> None:
        self.release(list(self._open))
        for sock in self.activated.values():
            sock.close()
        self.activated.clear()


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


@dataclass(eq=False)
class Worker:
    """One worker process.

    @ivar startedAt: when it was spawned, on the supervisor's clock (for back-off).
    @ivar pid: its process id, kept after it exits (for the log lines about it).
    @ivar ready: it reported that it accepts connections.
    @ivar draining: it was told to drain (SIGTERM sent).
    @ivar streams: the streams it still had open at its last report while draining.
    @ivar killCall: the pending SIGKILL after its drain window and grace period.
    @ivar recent: the recent errors of its last metrics report (plain dicts).
    @ivar reportedAt: when its last metrics report arrived (supervisor's clock).
    """

    generation: "Generation"
    slot: "Slot"
    startedAt: float
    process: IProcessTransport | None = None
    pid: int | None = None
    ready: bool = False
    draining: bool = False
    streams: int | None = None
    killCall: IDelayedCall | None = None
    recent: list = field(default_factory=list)
    reportedAt: float | None = None

    @property
    def name(self) -> str:
        return f"{self.generation.number}.{self.slot.index}"

    def describe(self) -> str:
        return f"worker {self.name} (pid {self.pid})"


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


@dataclass(eq=False)
class Generation:
    """One config and the workers started for it.

    @ivar sockets: listener name -> the supervisor's listening socket.
    @ivar fresh: keys of the sockets bound for this generation (closed if it fails).
    @ivar readyCall: the pending "not ready in time" check of a reload.
    """

    number: int
    config: Config
    sockets: dict[str, socket.socket]
    fresh: list
    slots: list[Slot]
    state: GenerationState = GenerationState.STARTING
    readyCall: IDelayedCall | None = None

    def live(self) -> list[Worker]:
        return [slot.worker for slot in self.slots if slot.worker is not None]

    def allReady(self) -> bool:
        return all(slot.worker is not None and slot.worker.ready for slot in self.slots)


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


class WorkerProtocol(protocol.ProcessProtocol):
    """The supervisor's end of one worker's pipes: boot message in, logs and reports out."""

    def __init__(self, supervisor: "Supervisor", worker: Worker, boot: bytes) -> None:
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


class Supervisor:
    """Binds, spawns, watches, reloads and stops the worker processes.

    @cvar threshold: a worker that dies sooner than this many seconds after it was
        spawned is crash-looping: its restart waits, and the wait doubles.
    @cvar minRestartDelay: the first wait of a crash loop, in seconds. A worker that
        ran longer than C{threshold} restarts at once and resets its wait to this.
    @cvar maxRestartDelay: the cap of the doubling wait, in seconds.
    @cvar killGrace: seconds after a worker's drain window before it gets SIGKILL
        (the worker aborts what is left at the window itself; this is the backstop).
    @cvar readyTimeout: seconds a reload's new generation has to report ready before
        the reload is abandoned and the old generation keeps serving.
    @cvar maxGenerations: generations alive at once (serving, starting and draining).
        A reload that would exceed it is refused rather than cutting a drain short:
        reloading faster than long streams drain would otherwise pile up processes.

    @ivar generations: every generation with live workers (or about to have them).
    @ivar serving: the generation accepting connections, if any yet.
    @ivar starting: the generation of a reload in progress, if any.
    @ivar metrics: the supervisor's own metrics (reloads, restarts, workers).
    @ivar workerMetrics: every worker's last metrics snapshot, aggregated.
    @ivar retiredErrors: recent errors reported by workers that have exited.
    @ivar startedAt: when the supervisor was made (supervisor's clock).
    @ivar configObservers: called with the config of each generation that starts
        serving (the admin listener follows its section across reloads).
    """

    threshold = 5.0
    minRestartDelay = 1.0
    maxRestartDelay = 60.0
    killGrace = 5.0
    readyTimeout = 60.0
    maxGenerations = 16

    def __init__(
        self,
        *,
        reactor,
        config: Config,
        configPath: str,
        loader: Callable[[str], Config],
        notifier: Notifier,
        listeners: ListenerSockets,
        stopReactor: Callable[[], object],
        reopenOwnLogs: Callable[[], object] = lambda: None,
        workerCommand: tuple[str, ...] = WORKER_COMMAND,
        environ: Mapping[str, str] = os.environ,
        cpuCount: Callable[[], int] = default_worker_count,
    ) -> None:
        """
        @param reactor: provides process spawning, time and C{callFromThread}.
        @param loader: reads and validates a config file (raises L{ConfigError}).
        @param stopReactor: what the first SIGTERM/SIGINT does; the reactor's shutdown
            then calls L{stop}.
        @param reopenOwnLogs: reopens the supervisor's own log files on SIGUSR1.
        """
        self.reactor = reactor
        self.config = config
        self.configPath = configPath
        self.loader = loader
        self.notifier = notifier
        self.listeners = listeners
        self.stopReactor = stopReactor
        self.reopenOwnLogs = reopenOwnLogs
        self.workerCommand = workerCommand
        self.environ = worker_environment(environ)
        self.cpuCount = cpuCount
        self.generations: list[Generation] = []
        self.serving: Generation | None = None
        self.starting: Generation | None = None
        self._sockets: tuple[dict[str, socket.socket], list] | None = None
        self._reloadQueued = False
        self._stopping: defer.Deferred | None = None
        self._lastStatus = ""
        self.metrics = SupervisorMetrics()
        self.workerMetrics = Aggregate(WorkerMetrics().registry.families)
        self.retiredErrors: deque[dict] = deque(maxlen=MAX_RETIRED_ERRORS)
        self.startedAt = reactor.seconds()
        self.configObservers: list[Callable[[Config], object]] = []

    # Life cycle

    def bindListeners(self) -> None:
        """Bind the first config's listeners (before privileges are dropped).

        @raise ListenError: one of them cannot be bound.
        """
        self._sockets = self.listeners.acquire(self.config.listeners)

    def start(self) -> None:
        """Spawn the first generation (once the reactor runs)."""
        if self._sockets is None:
            self.bindListeners()
        sockets, fresh = self._sockets
        self._sockets = None
        self._startGeneration(self.config, sockets, fresh)

    def reload(self) -> None:
        """SIGHUP: re-read the config and, if it is valid, hand over to a new generation."""
        if self._stopping is not None:
            log.info("reload ignored: the daemon is stopping")
            return
        if self.starting is not None:
            log.info("reload requested while generation {n} starts; it will follow",
                     n=self.starting.number)
            self._reloadQueued = True
            return
        if len(self.generations) >= self.maxGenerations:
            log.error(
                "reload refused: {n} generations are still alive (at most {max}); wait for the "
                "old ones to finish draining, or lower timeouts.drain",
                n=len(self.generations), max=self.maxGenerations,
            )
            self._reloadOutcome("refused")
            return
        log.info("reloading {path}", path=self.configPath)
        self._notify(self.notifier.reloading, f"reloading {self.configPath}")
        config = self._loadForReload()
        if config is None:
            self._reloadOutcome("invalid")
            self._settled()
            return
        try:
            sockets, fresh = self.listeners.acquire(config.listeners)
        except ListenError as problem:
            log.error("reload failed: {problem}; generation {n} keeps serving", problem=problem,
                      n=self._servingNumber())
            self._reloadOutcome("failed")
            self._settled()
            return
        for line in describe_changes(self.config, config):
            log.info("reload: {change}", change=line)
        self.config = config
        self._startGeneration(config, sockets, fresh)

    def stop(self) -> defer.Deferred:
        """Graceful stop: every worker drains; fires when the last one has exited.

        Called again (a second SIGTERM), it forces: every worker gets SIGKILL now.
        """
        if self._stopping is not None:
            self.forceStop()
            return self._stopping
        self._stopping = defer.Deferred()
        self._reloadQueued = False
        live = self.liveWorkers()
        log.info("stopping: draining {n} worker(s)", n=len(live))
        self._notify(self.notifier.stopping, f"stopping: draining {len(live)} worker(s)")
        for generation in list(self.generations):
            self._drainGeneration(generation)
        self._checkStopped()
        return self._stopping

    def forceStop(self) -> None:
        """Kill every worker at once (a second stop signal)."""
        live = self.liveWorkers()
        log.warn("forced stop: killing {n} worker(s)", n=len(live))
        for worker in live:
            self._kill(worker)

    def reopenLogs(self) -> None:
        """SIGUSR1: reopen the supervisor's log files and tell every worker to reopen its own."""
        self.reopenOwnLogs()
        live = self.liveWorkers()
        log.info("reopened log files; telling {n} worker(s) to reopen theirs", n=len(live))
        for worker in live:
            self._signal(worker, signal.SIGUSR1)

    def liveWorkers(self) -> list[Worker]:
        return [worker for generation in self.generations for worker in generation.live()]

    # Signals

    def handleSignal(self, signum: int, frame: object) -> None:
        """A signal handler: it only hands the signal to the reactor thread."""
        self.reactor.callFromThread(self.signalReceived, signum)

    def signalReceived(self, signum: int) -> None:
        """Act on a signal, in the reactor thread (see L{handleSignal})."""
        if signum == signal.SIGHUP:
            self.reload()
        elif signum == signal.SIGUSR1:
            self.reopenLogs()
        elif signum in (signal.SIGTERM, signal.SIGINT):
            log.info("received {name}", name=signal.Signals(signum).name)
            if self._stopping is None:
                self.stopReactor()
            else:
                self.forceStop()

    # Generations

    def _startGeneration(self, config: Config, sockets: dict[str, socket.socket], fresh: list) -> None:
        number = self.generations[-1].number + 1 if self.generations else 1
        count = config.workers or min(self.cpuCount(), MAX_WORKERS)
        generation = Generation(
            number=number,
            config=config,
            sockets=sockets,
            fresh=fresh,
            slots=[Slot(index=i, delay=self.minRestartDelay) for i in range(count)],
        )
        self.generations.append(generation)
        self.starting = generation
        if self.serving is not None:
            generation.readyCall = self.reactor.callLater(
                self.readyTimeout, self._readyTimedOut, generation
            )
        log.info("starting generation {n} with {count} worker(s)", n=number, count=count)
        for slot in generation.slots:
            self._spawn(generation, slot)
        self._updateStatus()

    def _spawn(self, generation: Generation, slot: Slot) -> None:
        slot.restartCall = None
        if generation.state is GenerationState.DRAINING:
            return
        worker = Worker(generation=generation, slot=slot, startedAt=self.reactor.seconds())
        names = list(generation.sockets)
        boot = WorkerBoot(
            generation=generation.number,
            slot=slot.index,
            config=generation.config,
            listeners=tuple(
                InheritedListener(name, FIRST_LISTENER_FD + i, generation.sockets[name].family)
                for i, name in enumerate(names)
            ),
        )
        childFDs: dict[int, int | str] = {BOOT_FD: "w", STDOUT_FD: STDOUT_FD, LOG_FD: "r",
                                          REPORT_FD: "r"}
        for i, name in enumerate(names):
            childFDs[FIRST_LISTENER_FD + i] = generation.sockets[name].fileno()
        args = [*self.workerCommand, f"--generation={generation.number}", f"--slot={slot.index}"]
        slot.worker = worker
        try:
            self.reactor.spawnProcess(
                WorkerProtocol(self, worker, encode_boot(boot)),
                args[0],
                args,
                env=self.environ,
                childFDs=childFDs,
            )
        except OSError as problem:
            log.error("cannot spawn worker {name}: {problem}", name=worker.name, problem=problem)
            self.workerEnded(worker, Failure(error.ProcessTerminated(exitCode=127)))

    def workerReported(self, worker: Worker, line: str) -> None:
        """A line from a worker's report pipe (see L{Report})."""
        try:
            kind, value = parse_report(line)
        except ValueError:
            log.warn("{worker} sent an unknown report: {line!r}", worker=worker.describe(),
                     line=line[:200])
            return
        if kind is Report.METRICS:
            self._workerMetrics(worker, value)
            return
        if kind is Report.READY:
            worker.ready = True
            log.info("{worker} is ready", worker=worker.describe())
            if worker.generation is self.starting and worker.generation.allReady():
                self._promote(worker.generation)
        elif kind is Report.DRAINING:
            log.info("{worker} is draining", worker=worker.describe())
        elif kind is Report.STREAMS:
            worker.streams = value
        self._updateStatus()

    def _workerMetrics(self, worker: Worker, payload: dict) -> None:
        """Keep a worker's metrics snapshot (a malformed one is logged and dropped)."""
        try:
            self.workerMetrics.update(worker, worker.generation.number, payload.get("metrics", {}))
        except (ValueError, TypeError, AttributeError) as problem:
            log.warn("{worker} sent malformed metrics: {problem}", worker=worker.describe(),
                     problem=problem)
            return
        recent = payload.get("recent")
        worker.recent = recent if isinstance(recent, list) else []
        worker.reportedAt = self.reactor.seconds()

    def _promote(self, generation: Generation) -> None:
        """The new generation serves: the old one drains, unused sockets close."""
        if generation.readyCall is not None and generation.readyCall.active():
            generation.readyCall.cancel()
        generation.readyCall = None
        previous = self.serving
        self.serving = generation
        self.starting = None
        generation.state = GenerationState.SERVING
        self.listeners.retainOnly(generation.config.listeners)
        log.info(
            "generation {n} serving with {count} worker(s): pids {pids}",
            n=generation.number,
            count=len(generation.slots),
            pids=" ".join(str(w.pid) for w in generation.live()),
        )
        if previous is not None:
            log.info("generation {n} drains (up to {window}s)", n=previous.number,
                     window=previous.config.timeouts.drain)
            self._drainGeneration(previous)
            self._reloadOutcome("ok")
        for observer in self.configObservers:
            observer(generation.config)
        self._settled()

    def _readyTimedOut(self, generation: Generation) -> None:
        generation.readyCall = None
        self._abandon(generation, f"not ready within {self.readyTimeout:g}s")

    def _abandon(self, generation: Generation, why: str) -> None:
        """A reload's generation failed to start: it drains; the serving one carries on."""
        log.error("reload failed: generation {n} {why}; generation {m} keeps serving",
                  n=generation.number, why=why, m=self._servingNumber())
        if generation.readyCall is not None and generation.readyCall.active():
            generation.readyCall.cancel()
        generation.readyCall = None
        self.starting = None
        self.listeners.release(generation.fresh)
        self._drainGeneration(generation)
        self._reloadOutcome("failed")
        self._settled()

    def _settled(self) -> None:
        """A start or reload is over, whatever its outcome: READY=1 for systemd, then run
        a reload that was requested meanwhile."""
        self._lastStatus = self.statusText()
        self._notify(self.notifier.ready, self._lastStatus)
        if self._reloadQueued:
            self._reloadQueued = False
            self.reload()

    def _drainGeneration(self, generation: Generation) -> None:
        if generation is self.serving:
            self.serving = None
        if generation is self.starting:
            self.starting = None
        if generation.readyCall is not None and generation.readyCall.active():
            generation.readyCall.cancel()
        generation.readyCall = None
        generation.state = GenerationState.DRAINING
        for slot in generation.slots:
            if slot.restartCall is not None and slot.restartCall.active():
                slot.restartCall.cancel()
            slot.restartCall = None
            if slot.worker is not None:
                self._drainWorker(slot.worker, generation.config.timeouts.drain)
        self._forgetIfDone(generation)

    def _drainWorker(self, worker: Worker, window: float) -> None:
        """SIGTERM now; SIGKILL if it is still there after its window and the grace period."""
        if worker.draining:
            return
        worker.draining = True
        self._signal(worker, signal.SIGTERM)
        worker.killCall = self.reactor.callLater(window + self.killGrace, self._killLate, worker)

    def _killLate(self, worker: Worker) -> None:
        worker.killCall = None
        log.warn("{worker} still running after its drain window; killing it",
                 worker=worker.describe())
        self._kill(worker)

    def _kill(self, worker: Worker) -> None:
        self._signal(worker, signal.SIGKILL)

    def _signal(self, worker: Worker, signum: signal.Signals) -> None:
        """Send C{signum} by number (Twisted maps only a few names, USR1 not among them)."""
        if worker.process is None:
            return
        try:
            worker.process.signalProcess(int(signum))
        except (error.ProcessExitedAlready, OSError):
            pass

    # Deaths and restarts

    def workerEnded(self, worker: Worker, reason: Failure) -> None:
        """A worker process is gone: account for it, and restart it if it should serve."""
        generation, slot = worker.generation, worker.slot
        if slot.worker is worker:
            slot.worker = None
        if worker.killCall is not None and worker.killCall.active():
            worker.killCall.cancel()
        worker.killCall = None
        self._retireMetrics(worker)
        why = describe_exit(reason)
        if worker.draining or generation.state is GenerationState.DRAINING:
            log.info("{worker} {why} after draining", worker=worker.describe(), why=why)
            self._forgetIfDone(generation)
        elif generation is self.starting and self.serving is not None:
            log.error("{worker} {why} before its generation was ready", worker=worker.describe(),
                      why=why)
            self._abandon(generation, f"lost {worker.describe()}, which {why}")
        else:
            delay = self._nextDelay(worker)
            log.error("{worker} died: {why}; restarting in {delay:g}s", worker=worker.describe(),
                      why=why, delay=delay)
            self.metrics.restarts.inc()
            slot.restartCall = self.reactor.callLater(delay, self._spawn, generation, slot)
        self._checkStopped()
        self._updateStatus()

    def _retireMetrics(self, worker: Worker) -> None:
        """A worker is gone: its counters stay in the totals, its errors in the list."""
        self.workerMetrics.retire(worker)
        self.retiredErrors.extend({**entry, "worker": worker.name} for entry in worker.recent)
        worker.recent = []

    def _nextDelay(self, worker: Worker) -> float:
        """ProcessMonitor's rule: young deaths wait, doubling to a cap; old ones restart now."""
        slot = worker.slot
        if self.reactor.seconds() - worker.startedAt < self.threshold:
            delay = slot.delay
            slot.delay = min(slot.delay * 2, self.maxRestartDelay)
            return delay
        slot.delay = self.minRestartDelay
        return 0.0

    def _forgetIfDone(self, generation: Generation) -> None:
        if generation.state is GenerationState.DRAINING and not generation.live():
            if generation in self.generations:
                self.generations.remove(generation)
                log.info("generation {n} has exited", n=generation.number)

    def _checkStopped(self) -> None:
        if self._stopping is None or self.liveWorkers() or self._stopping.called:
            return
        self.listeners.closeAll()
        log.info("every worker has exited")
        self._stopping.callback(None)

    # Reporting

    def _loadForReload(self) -> Config | None:
        """The new config, or None after logging why it cannot be used."""
        try:
            config = self.loader(self.configPath)
        except ConfigError as problems:
            for problem in problems.problems:
                log.error("{problem}", problem=problem)
            log.error("reload failed: {path} is invalid; generation {n} keeps serving",
                      path=self.configPath, n=self._servingNumber())
            return None
        except Exception:
            log.failure("reload failed: cannot load {path}; generation {n} keeps serving",
                        path=self.configPath, n=self._servingNumber())
            return None
        for warning in getattr(config, "warnings", ()):
            log.warn("{warning}", warning=warning)
        return config

    def _servingNumber(self) -> int | None:
        return self.serving.number if self.serving is not None else None

    def _reloadOutcome(self, outcome: str) -> None:
        self.metrics.reloads.inc((outcome,))
        self.metrics.lastReload.set((outcome,), self.reactor.seconds())

    def updateGauges(self) -> None:
        """Set the supervisor's gauges from its state (before rendering them)."""
        metrics = self.metrics
        metrics.workers.clear()
        for generation in self.generations:
            state = generation.state.value
            metrics.workers.set((state,), metrics.workers.values.get((state,), 0) + len(generation.live()))
        metrics.generation.set((), self._servingNumber() or 0)
        metrics.drainingStreams.set((), sum(
            w.streams or 0 for g in self.generations if g.state is GenerationState.DRAINING for w in g.live()))

    def recentErrors(self) -> list[dict]:
        """The workers' recent errors, newest first, each with its worker's name."""
        entries = list(self.retiredErrors)
        for worker in self.liveWorkers():
            entries.extend({**entry, "worker": worker.name} for entry in worker.recent)
        return sorted(entries, key=lambda entry: entry.get("time", 0), reverse=True)

    def serves(self) -> bool:
        """Whether the daemon takes traffic: a serving generation with a ready worker,
        and not stopping (the load balancer's C{/healthz})."""
        if self._stopping is not None or self.serving is None:
            return False
        return any(worker.ready for worker in self.serving.live())

    @property
    def stopping(self) -> bool:
        return self._stopping is not None

    def statusText(self) -> str:
        """One line for C{systemctl status}: generations, workers, draining streams."""
        parts = []
        if self._stopping is not None:
            parts.append("stopping")
        if self.serving is not None:
            ready = sum(1 for w in self.serving.live() if w.ready)
            parts.append(f"generation {self.serving.number}: {ready}/{len(self.serving.slots)} "
                         "workers serving")
        if self.starting is not None:
            ready = sum(1 for w in self.starting.live() if w.ready)
            parts.append(f"starting generation {self.starting.number}: {ready}/"
                         f"{len(self.starting.slots)} ready")
        draining = [w for g in self.generations if g.state is GenerationState.DRAINING
                    for w in g.live()]
        if draining:
            streams = sum(w.streams or 0 for w in draining)
            parts.append(f"draining {len(draining)} worker(s), {streams} stream(s) open")
        return "; ".join(parts) or "no workers"

    def _updateStatus(self) -> None:
        text = self.statusText()
        if text != self._lastStatus:
            self._lastStatus = text
            self._notify(self.notifier.status, text)

    def _notify(self, send: Callable[[str], bool], text: str) -> None:
        if not send(text):
            log.warn("cannot notify systemd: {problem}", problem=self.notifier.lastError)


