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
    3. start the new generation, handing it the sockets and the config's text (the
       file is read before and after validation: an edit in between fails the reload);
    4. when every new worker reports ready, tell the old generation to drain
       (C{SIGTERM}: stop accepting, graceful GOAWAY, finish streams within
       C{timeouts.drain}) and close the sockets the new config dropped.

If a new worker dies before it is ready, or the generation is not ready within
C{readyTimeout}, the reload fails: the new workers drain, the sockets bound for
them close, and the old generation never stopped serving.

A worker that refuses its boot message (exit status C{EX_CONFIG}: another release's
format, or a text its own loader rejects) is not crash-looping: it is retried after
C{maxRestartDelay}, since it would refuse the same way at once.

The listening sockets stay open in this process for the daemon's whole life, so
no connection waiting in a kernel accept queue is lost while generations change
hands: the new workers accept from the same queue the old ones stop reading.

Its parts: L{h2proxy.supervisor.sockets} (the listening sockets),
L{h2proxy.supervisor.workers} (one worker child), L{h2proxy.supervisor.generations}
(a config's workers and their back-off), L{h2proxy.supervisor.changes} (what a
reload changes). None of them imports HTTP code (a test enforces it).
"""

from __future__ import annotations

import os
import signal
import socket
from collections import deque
from collections.abc import Callable, Mapping

from twisted.internet import defer, error
from twisted.logger import Logger
from twisted.python.failure import Failure

from h2proxy.config.model import MAX_WORKERS, Config
from h2proxy.errors import ConfigError
from h2proxy.handover import EX_CONFIG, ConfigSource, Report, WorkerBoot, encode_boot, parse_report
from h2proxy.observability.metrics import Aggregate, SupervisorMetrics, WorkerMetrics
from h2proxy.supervisor.changes import describe_changes, read_source, unchanged_since
from h2proxy.supervisor.generations import Backoff, Generation, GenerationState, Slot
from h2proxy.supervisor.sdnotify import Notifier
from h2proxy.supervisor.sockets import ListenError, ListenerSockets
from h2proxy.supervisor.workers import (
    WORKER_COMMAND,
    Worker,
    WorkerProtocol,
    WorkerState,
    child_descriptors,
    describe_exit,
    inherited_listeners,
    worker_environment,
)

log = Logger()

#: Recent errors kept from workers that have exited (the status page's list).
MAX_RETIRED_ERRORS = 50


def refused_boot(reason: Failure) -> bool:
    """Whether a worker ended by refusing its boot message (L{EX_CONFIG}), which an
    immediate restart would only repeat."""
    return getattr(reason.value, "exitCode", None) == EX_CONFIG


def default_worker_count() -> int:
    """C{workers: auto}: the CPUs this process may run on (cgroup and affinity aware)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


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
        readSource: Callable[[str], ConfigSource] = read_source,
    ) -> None:
        """
        @param reactor: provides process spawning, time and C{callFromThread}.
        @param loader: reads and validates a config file (raises L{ConfigError}).
        @param stopReactor: what the first SIGTERM/SIGINT does; the reactor's shutdown
            then calls L{stop}.
        @param reopenOwnLogs: reopens the supervisor's own log files on SIGUSR1.
        @param readSource: reads the config file's text for the workers (raises
            L{ConfigError}).
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
        self.readSource = readSource
        self._source: ConfigSource | None = None
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
        """Read the first config's text for the workers and bind its listeners (before
        privileges are dropped).

        @raise ConfigError: the config file cannot be read any more.
        @raise ListenError: one of them cannot be bound.
        """
        self._source = self.readSource(self.configPath)
        self._sockets = self.listeners.acquire(self.config.listeners)

    def start(self) -> None:
        """Spawn the first generation (once the reactor runs)."""
        if self._sockets is None:
            self.bindListeners()
        sockets, fresh = self._sockets
        source, self._sockets, self._source = self._source, None, None
        self._startGeneration(self.config, source, sockets, fresh)

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
        loaded = self._loadForReload()
        if loaded is None:
            self._reloadOutcome("invalid")
            self._settled()
            return
        config, source = loaded
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
        self._startGeneration(config, source, sockets, fresh)

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

    def _startGeneration(self, config: Config, source: ConfigSource,
                         sockets: dict[str, socket.socket], fresh: list) -> None:
        number = self.generations[-1].number + 1 if self.generations else 1
        count = config.workers or min(self.cpuCount(), MAX_WORKERS)
        generation = Generation(
            number=number,
            config=config,
            source=source,
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
        boot = WorkerBoot(
            generation=generation.number,
            slot=slot.index,
            source=generation.source,
            listeners=inherited_listeners(generation.sockets),
        )
        args = [*self.workerCommand, f"--generation={generation.number}", f"--slot={slot.index}"]
        slot.worker = worker
        try:
            self.reactor.spawnProcess(
                WorkerProtocol(self, worker, encode_boot(boot)),
                args[0],
                args,
                env=self.environ,
                childFDs=child_descriptors(generation.sockets),
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
            if worker.state is WorkerState.STARTING:
                worker.state = WorkerState.READY
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

    def _promote(self, generation: Generation) -> None:
        """The new generation serves: the old one drains, unused sockets close."""
        generation.cancelReadyCheck()
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
        generation.cancelReadyCheck()
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
        generation.cancelReadyCheck()
        generation.state = GenerationState.DRAINING
        for slot in generation.slots:
            slot.cancelRestart()
            if slot.worker is not None:
                self._drainWorker(slot.worker, generation.config.timeouts.drain)
        self._forgetIfDone(generation)

    def _drainWorker(self, worker: Worker, window: float) -> None:
        """SIGTERM now; SIGKILL if it is still there after its window and the grace period."""
        if worker.state is WorkerState.DRAINING:
            return
        worker.state = WorkerState.DRAINING
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
        if worker.state is WorkerState.DRAINING or generation.state is GenerationState.DRAINING:
            log.info("{worker} {why} after draining", worker=worker.describe(), why=why)
            self._forgetIfDone(generation)
        elif generation is self.starting and self.serving is not None:
            log.error("{worker} {why} before its generation was ready", worker=worker.describe(),
                      why=why)
            self._abandon(generation, f"lost {worker.describe()}, which {why}")
        else:
            self._restartLater(worker, reason, why)
        self._checkStopped()
        self._updateStatus()

    def _restartLater(self, worker: Worker, reason: Failure, why: str) -> None:
        """Schedule the slot's next worker: a refusal waits the longest, a crash loop
        backs off, a worker that ran long enough restarts now."""
        slot = worker.slot
        if refused_boot(reason):
            delay = slot.refused(self._backoff())
            log.error("{worker} refused its boot message ({why}: the worker's own line above "
                      "says why, often an h2proxy upgraded under a running daemon, which a "
                      "restart of the daemon settles); retrying in {delay:g}s",
                      worker=worker.describe(), why=why, delay=delay)
        else:
            delay = slot.nextDelay(self._backoff(), self.reactor.seconds() - worker.startedAt)
            log.error("{worker} died: {why}; restarting in {delay:g}s", worker=worker.describe(),
                      why=why, delay=delay)
        self.metrics.restarts.inc()
        slot.restartCall = self.reactor.callLater(delay, self._spawn, worker.generation, slot)

    def _retireMetrics(self, worker: Worker) -> None:
        """A worker is gone: its counters stay in the totals, its errors in the list."""
        self.workerMetrics.retire(worker)
        self.retiredErrors.extend({**entry, "worker": worker.name} for entry in worker.recent)
        worker.recent = []

    def _backoff(self) -> Backoff:
        """The restart rule from the tunables (class attributes, so tests can set them)."""
        return Backoff(self.threshold, self.minRestartDelay, self.maxRestartDelay)

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

    def _loadForReload(self) -> tuple[Config, ConfigSource] | None:
        """The new config and the text it was validated from, or None after logging why
        it cannot be used."""
        try:
            source = self.readSource(self.configPath)
            config = self.loader(self.configPath)
            source = unchanged_since(source, self.readSource(self.configPath))
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
        return config, source

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


