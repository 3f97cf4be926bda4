"""A worker process: ``python -m h2proxy.worker.process``, started by the supervisor.

It reads its boot message (L{h2proxy.handover}) and parses the config text in it
with its own loader; a message it cannot read, or a text that is not valid for this
release, makes it exit with C{EX_CONFIG} after one line naming both h2proxy
versions. Then it adopts the listening sockets it inherited, serves them with a
L{ProxyServer}, and reports C{ready} on its report pipe. Its daemon messages go
to its stderr, one line per event with the level first, where the supervisor
relays them under the worker's name; its stdout is the supervisor's own (for an
access log on C{-}). Once serving, it reports its metrics snapshot every
L{METRICS_REPORT_INTERVAL} seconds, and once more as it exits (the report pipe is
flushed before the process ends), so the supervisor's totals lose nothing a
worker counted before a graceful exit.

Signals (installed once the reactor runs, so they override Twisted's own):
  - C{SIGTERM}: drain. Stop accepting (the shared socket stays open: an adopted
    port closes only its own duplicate of it), graceful GOAWAY on every
    connection, streams get C{timeouts.drain} seconds, then exit 0. More
    C{SIGTERM}s change nothing: they may come from several places at once (the
    supervisor, a signal to the whole process group), and forcing is the
    supervisor's job (C{SIGKILL}).
  - C{SIGUSR1}: reopen log files (the server's, if it has any).
  - C{SIGHUP}, C{SIGINT}: ignored; the supervisor decides and tells us. (A Ctrl-C
    in a terminal reaches the whole process group; the supervisor relays it.)
The end of file on the boot pipe means the supervisor is gone: the worker drains
as on C{SIGTERM}, so a killed supervisor leaves no orphan serving forever.
"""

from __future__ import annotations

import ctypes
import gc
import os
import signal
import sys
from collections.abc import Callable
from typing import BinaryIO

from twisted.internet import defer, protocol, task
from twisted.internet.interfaces import (
    IDelayedCall,
    IHalfCloseableDescriptor,
    IHalfCloseableProtocol,
    IListeningPort,
    IReactorTime,
)
from twisted.logger import LogLevel, formatEvent, globalLogBeginner, Logger
from zope.interface import implementer

from h2proxy import __version__
from h2proxy.config.load import load_config_text
from h2proxy.config.model import Config
from h2proxy.errors import ConfigError
from h2proxy.handover import (
    BOOT_FD,
    EX_CONFIG,
    LOG_FD,
    REPORT_FD,
    BootError,
    Report,
    WorkerBoot,
    format_metrics,
    format_report,
    read_boot,
)

log = Logger()

#: Seconds between two C{streams N} reports while draining.
STREAMS_REPORT_INTERVAL = 1.0
#: Seconds past the drain window after which the worker exits even if the server's
#: drain has not finished (the supervisor's SIGKILL comes later still).
EXIT_GRACE = 2.0
#: Seconds between two metrics reports.
METRICS_REPORT_INTERVAL = 1.0
#: Seconds an exiting worker waits for its last reports to reach the supervisor.
EXIT_FLUSH_TIMEOUT = 1.0
#: Seconds between two looks at the connection count by the L{HeapTrimmer}: often
#: enough to see the peak of a short burst (a look is a few C{len()} calls).
TRIM_CHECK_INTERVAL = 1.0
#: Connections closed since the peak that make a heap trim worth its cost (about
#: 3 MiB of OpenSSL state for TLS connections).
TRIM_MIN_DROP = 100


def open_streams(server) -> int:
    """Requests still in flight in C{server}: the open streams of every HTTP/2
    connection, plus one per HTTP/1.1 connection (it carries one request at a time,
    and the idle ones close as soon as a drain starts)."""
    h2 = sum(
        len(connection.streams)
        for factory in server.h2Factories.values()
        for connection in factory.connections
    )
    return h2 + sum(len(factory.connections) for factory in server.http1Factories.values())


def open_connections(server) -> int:
    """Client connections of C{server}, HTTP/2 and HTTP/1.1 (from the accept, once
    the protocol is chosen, to the close)."""
    factories = [*server.h2Factories.values(), *server.http1Factories.values()]
    return sum(len(factory.connections) for factory in factories)


def glibc_malloc_trim() -> Callable[[], object] | None:
    """glibc's C{malloc_trim(0)}, or C{None} where the C library has none (musl,
    macOS): there, freed memory stays with the process, as before."""
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


class HeapTrimmer:
    """Gives the C heap that closed connections freed back to the system.

    Each TLS connection holds some 30 KiB of OpenSSL state, allocated with
    C{malloc}. When a burst of connections closes, glibc keeps what they freed
    (only free memory at the very top of the heap is returned by itself), so the
    worker's RSS stayed at its peak: 54 MiB before 1,000 idle TLS connections, 89
    MiB with them, 89 MiB after. C{malloc_trim(0)} returns every free page.

    It walks the heap (a few milliseconds for a hundred MiB), so it runs only when
    the count of open connections has fallen by at least C{minDrop} below its peak
    since the previous trim, looked at every C{interval} seconds on the given clock.

    @ivar trims: how many times the heap was trimmed.
    """

    def __init__(
        self,
        clock: IReactorTime,
        connections: Callable[[], int],
        trim: Callable[[], object],
        interval: float = TRIM_CHECK_INTERVAL,
        minDrop: int = TRIM_MIN_DROP,
    ) -> None:
        self._connections = connections
        self._trim = trim
        self._minDrop = minDrop
        self._peak = 0
        self.trims = 0
        self._loop = task.LoopingCall(self.check)
        self._loop.clock = clock
        self._interval = interval

    def start(self) -> None:
        self._loop.start(self._interval, now=True)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def check(self) -> None:
        """Trim if the connection count fell far enough below its peak since the last trim."""
        count = self._connections()
        if count >= self._peak:
            self._peak = count
        elif self._peak - count >= self._minDrop:
            self._trim()
            self.trims += 1
            self._peak = count


@implementer(IHalfCloseableProtocol)
class ReportChannel(protocol.Protocol):
    """Reads the boot pipe (only its end matters) and writes the report pipe."""

    def __init__(self, parentGone: Callable[[], object]) -> None:
        self.parentGone = parentGone
        self._flushed: list[Callable[[], object]] = []

    def send(self, kind: Report, number: int | None = None) -> None:
        """Write one report; before the pipes are connected (or after StandardIO lost
        its writer) this is a no-op."""
        if self.transport is not None:
            self.transport.write(format_report(kind, number))

    def sendMetrics(self, payload: dict) -> None:
        """Write one metrics report (see L{send})."""
        if self.transport is not None:
            self.transport.write(format_metrics(payload))

    def close(self, then: Callable[[], object]) -> None:
        """Close the report pipe once what was written has gone out, then call
        C{then}; at once on a transport that cannot half-close (tests)."""
        if self.transport is None or not IHalfCloseableDescriptor.providedBy(self.transport):
            then()
            return
        self._flushed.append(then)
        self.transport.loseWriteConnection()

    def readConnectionLost(self) -> None:
        """End of file on stdin: the supervisor died or closed our pipe."""
        self.parentGone()

    def writeConnectionLost(self) -> None:
        """The report pipe is closed (by L{close}, or because the supervisor is gone:
        stdin's end will follow)."""
        flushed, self._flushed = self._flushed, []
        for then in flushed:
            then()

    def connectionLost(self, reason=None) -> None:
        self.parentGone()


class WorkerProcess:
    """One worker's life: adopt, serve, drain, exit.

    @ivar ports: the adopted listening ports.
    @ivar exitCode: what the process exits with (1 if it could not start).
    """

    def __init__(
        self,
        *,
        boot: WorkerBoot,
        config: Config,
        reactor,
        makeServer: Callable,
        channel: ReportChannel | None = None,
        closeFD: Callable[[int], None] = os.close,
    ) -> None:
        """
        @param config: the configuration parsed from the boot message's text.
        @param reactor: provides C{adoptStreamPort}, time and C{stop}.
        @param makeServer: C{(config, reactor) -> ProxyServer}.
        @param channel: the report channel; one is made (unconnected) if not given.
        @param closeFD: closes an inherited descriptor once adopted (adoption dups it).
        """
        self.boot = boot
        self.config = config
        self.reactor = reactor
        self.makeServer = makeServer
        self.channel = channel or ReportChannel(self.parentGone)
        self.closeFD = closeFD
        self.server = None
        self.ports: list[IListeningPort] = []
        self.exitCode = 0
        self._draining = False
        self._progress: task.LoopingCall | None = None
        self._metrics: task.LoopingCall | None = None
        self._exitDeadline: IDelayedCall | None = None
        self._stopped = False

    def start(self) -> None:
        """Build the server, adopt every inherited listener, report ready."""
        try:
            self.server = self.makeServer(self.config, self.reactor)
            byName = {listener.name: listener for listener in self.config.listeners}
            for inherited in self.boot.listeners:
                factory = self.server.factoryFor(byName[inherited.name])
                self.ports.append(
                    self.reactor.adoptStreamPort(inherited.fd, inherited.family, factory)
                )
                self.closeFD(inherited.fd)
        except Exception:
            log.failure("worker {name} cannot start", name=self.boot.name)
            self.exit(1)
            return
        log.info("worker {name} serving {n} listener(s)", name=self.boot.name, n=len(self.ports))
        self.channel.send(Report.READY)
        if hasattr(self.server, "metricsSnapshot"):
            self._metrics = task.LoopingCall(self._reportMetrics)
            self._metrics.clock = self.reactor
            self._metrics.start(METRICS_REPORT_INTERVAL, now=True)

    def drain(self) -> None:
        """Stop accepting, let the streams finish within the drain window, exit.

        Asked again while draining, it carries on as it was.
        """
        if self._draining:
            return
        self._draining = True
        window = self.config.timeouts.drain
        log.info("draining: stop accepting, up to {window}s for open streams", window=window)
        for port in self.ports:
            port.stopListening()
        self.channel.send(Report.DRAINING)
        if self.server is None:
            self.exit(0)
            return
        self._progress = task.LoopingCall(self._reportStreams)
        self._progress.clock = self.reactor
        self._progress.start(STREAMS_REPORT_INTERVAL, now=True)
        self.reactor.callLater(window + EXIT_GRACE, self._drainOverdue)
        done = defer.maybeDeferred(self.server.drain, window)
        done.addErrback(lambda failure: log.failure("drain failed", failure))
        done.addBoth(lambda _: self.exit(0))

    def parentGone(self) -> None:
        """The supervisor is gone: nobody will tell us to stop, so drain now."""
        if not (self._draining or self._stopped):
            log.warn("the supervisor is gone: draining")
            self.drain()

    def reopenLogs(self) -> None:
        """SIGUSR1: reopen the server's log files, if it keeps any."""
        log.info("reopening log files")
        reopen = getattr(self.server, "reopenLogs", None)
        if reopen is not None:
            reopen()

    def exit(self, code: int) -> None:
        """Report the last metrics, close the logs, and stop the reactor once the
        reports are out (or after L{EXIT_FLUSH_TIMEOUT}); the process exits with C{code}."""
        if self._stopped:
            return
        self._stopped = True
        self.exitCode = code
        for loop in (self._progress, self._metrics):
            if loop is not None and loop.running:
                loop.stop()
        if self._metrics is not None:
            self._reportMetrics()
        closeLogs = getattr(self.server, "closeLogs", None)
        if closeLogs is not None:
            closeLogs()
        self._exitDeadline = self.reactor.callLater(EXIT_FLUSH_TIMEOUT, self._stopReactor)
        self.channel.close(self._stopReactor)

    def _stopReactor(self) -> None:
        """Stop the reactor, once: when the report pipe is flushed or at the deadline."""
        deadline, self._exitDeadline = self._exitDeadline, None
        if deadline is None:
            return
        if deadline.active():
            deadline.cancel()
        self.reactor.stop()

    def _reportStreams(self) -> None:
        self.channel.send(Report.STREAMS, open_streams(self.server))

    def _reportMetrics(self) -> None:
        """Send the server's metrics snapshot; a failure to take one is logged, and
        never stops the worker."""
        try:
            payload = self.server.metricsSnapshot()
        except Exception:
            log.failure("cannot take a metrics snapshot")
            return
        self.channel.sendMetrics(payload)

    def _drainOverdue(self) -> None:
        if not self._stopped:
            log.warn("drain did not finish within its window: exiting")
            self.exit(0)

    def installSignalHandlers(self) -> None:
        """Replace Twisted's handlers (see the module docstring); each hands off at once."""
        signal.signal(signal.SIGTERM, lambda *_: self.reactor.callFromThread(self.drain))
        signal.signal(signal.SIGUSR1, lambda *_: self.reactor.callFromThread(self.reopenLogs))
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)


class LineLogObserver:
    """Writes each log event at C{level} or above as lines C{"<level> <text>"}, for
    the supervisor to relay."""

    def __init__(self, stream: BinaryIO, level: LogLevel = LogLevel.info) -> None:
        self.stream = stream
        self.level = level

    def __call__(self, event: dict) -> None:
        if event.get("log_level", LogLevel.info) < self.level:
            return
        text = formatEvent(event)
        failure = event.get("log_failure")
        if failure is not None:
            text = f"{text}\n{failure.getTraceback()}"
        level = event.get("log_level", LogLevel.info).name
        lines = text.rstrip("\n").split("\n")
        self.stream.write("".join(f"{level} {line}\n" for line in lines).encode("utf-8", "replace"))
        self.stream.flush()


#: Net allocations of container objects between two young-generation collections
#: (CPython's default is 700). See L{settle_heap}.
YOUNG_COLLECTION_THRESHOLD = 20_000


#: Seconds between two full collections (L{collect_periodically}).
FULL_COLLECTION_INTERVAL = 60.0


def collect_periodically(clock: IReactorTime) -> task.LoopingCall:
    """A full collection every L{FULL_COLLECTION_INTERVAL} seconds, started now.

    With the young threshold of L{settle_heap}, the collector's oldest generation
    is examined only after millions of net allocations, and a steady proxy
    allocates little net. Garbage that only the cyclic collector can free and
    that was promoted while alive (objects of a long-lived connection caught in a
    reference cycle when it closes) would then wait without bound; the clock
    bounds it to a minute's worth. Client connections leave no such cycle behind
    (tests/frontend/test_connection_release.py, tests/frontend_http1/test_nodelay.py),
    so a pass mostly finds little (a closed backend connection's few objects); it
    costs a walk of the live objects once a minute."""
    collector = task.LoopingCall(gc.collect)
    collector.clock = clock
    collector.start(FULL_COLLECTION_INTERVAL, now=False)
    return collector


def settle_heap() -> None:
    """Tune the cyclic collector for a worker.

    Everything start-up built (modules, config, TLS contexts, factories) is moved
    out of the collector's sight: those objects live as long as the worker, yet
    every full collection walked them all again (about 8 % of the time per request
    in the in-memory request loop).

    The young generation is collected after L{YOUNG_COLLECTION_THRESHOLD} net
    allocations instead of 700. Requests in flight are live container objects
    (hundreds of requests of a few dozen objects each); with 700, the collector
    walked that live set about once per 35 requests and the middle generation once
    per 350, some 20 us per request under W1 (0.64 s of CPU for 32,000 requests,
    measured with gc.callbacks in a pinned worker), while freeing almost nothing:
    request state is freed by reference counting (the stream, bridge and exchange
    let go of each other at completion). Cyclic garbage still triggers collections
    by allocation count, so what it can hold up is bounded by the threshold (a
    few MiB at most), not by time."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, middle, old)


def read_boot_config(fd: int = BOOT_FD) -> tuple[WorkerBoot, Config]:
    """The boot message and the config parsed again, by this worker's code, from the
    text the supervisor validated (certificates checked at the same instant).

    @raise BootError: the message cannot be read, or its config is not valid here.
    """
    boot = read_boot(fd)
    source = boot.source
    try:
        config = load_config_text(source.text, source.path, now=source.validatedAt)
    except ConfigError as problems:
        found = "; ".join(str(problem) for problem in problems.problems)
        raise BootError(f"its config is not valid for this worker: {found}",
                        boot.senderVersion) from None
    return boot, config


def refusal_line(problem: BootError) -> bytes:
    """The one line a refusing worker leaves for the supervisor to relay: the reason,
    and both h2proxy versions (a worker started from an upgraded package is the usual
    cause)."""
    sender = problem.senderVersion or "unknown"
    text = (f"critical worker refuses its boot message: {problem} (worker h2proxy "
            f"{__version__}, supervisor h2proxy {sender})")
    return " ".join(text.splitlines()).encode("utf-8", "replace") + b"\n"


def main() -> int:
    """The worker's entry point; returns its exit status."""
    # Until our handlers are in place, a terminal's SIGHUP/SIGINT must not kill us.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    messages = os.fdopen(LOG_FD, "wb", buffering=0, closefd=False)
    try:
        boot, config = read_boot_config(BOOT_FD)
    except BootError as problem:
        messages.write(refusal_line(problem))
        return EX_CONFIG
    level = LogLevel.levelWithName(config.logging.level)
    globalLogBeginner.beginLoggingTo([LineLogObserver(messages, level)], redirectStandardIO=False)
    if boot.senderVersion != __version__:
        log.warn("worker runs h2proxy {own} under a supervisor of h2proxy {sender}; restart "
                 "the daemon to run one release", own=__version__, sender=boot.senderVersion)

    from twisted.internet import reactor, stdio

    from h2proxy.worker.server import ProxyServer

    worker = WorkerProcess(boot=boot, config=config, reactor=reactor, makeServer=ProxyServer)

    def run() -> None:
        worker.installSignalHandlers()
        stdio.StandardIO(worker.channel, stdin=BOOT_FD, stdout=REPORT_FD, reactor=reactor)
        worker.start()
        settle_heap()
        collect_periodically(reactor)
        trim = glibc_malloc_trim()
        if worker.server is not None and trim is not None:
            HeapTrimmer(reactor, lambda: open_connections(worker.server), trim).start()

    reactor.callWhenRunning(run)
    reactor.run()
    return worker.exitCode


if __name__ == "__main__":
    sys.exit(main())
