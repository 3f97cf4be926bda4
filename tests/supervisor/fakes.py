"""Fakes for the supervisor's tests: a process reactor with a clock (as in Twisted's
test_procmon), processes the test ends by hand, sockets that are only numbers, and
a notifier that remembers what it would have told systemd."""

from __future__ import annotations

import datetime
import signal
import socket

from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor
from twisted.python.failure import Failure

from h2proxy.config.model import Config, ListenerConfig, TimeoutsConfig
from h2proxy.handover import ConfigSource
from h2proxy.supervisor.service import Supervisor
from h2proxy.supervisor.sockets import ListenError, ListenerSockets


class DummyProcess:
    """A spawned process that only ends when the test (or a SIGKILL) says so.

    @ivar signals: every signal name it was sent, in order.
    @ivar written: child fd -> bytes the supervisor wrote to it.
    """

    def __init__(self, reactor, proto, args, env, childFDs, pid):
        self.reactor = reactor
        self.proto = proto
        self.args = args
        self.env = env
        self.childFDs = childFDs
        self.pid = pid
        self.signals: list[str] = []
        self.written: dict[int, bytes] = {}

    def writeToChild(self, fd: int, data: bytes) -> None:
        self.written[fd] = self.written.get(fd, b"") + data

    def signalProcess(self, signum: int) -> None:
        """Record the signal by name (C{"TERM"}); the real transport gets a number."""
        if self.pid is None:
            raise ProcessExitedAlready()
        assert isinstance(signum, int), "Twisted maps only some names: send numbers"
        name = signal.Signals(signum).name.removeprefix("SIG")
        self.signals.append(name)
        if name == "KILL":
            self.end(signal=9)

    def report(self, line: str) -> None:
        """The worker writes C{line} on its report pipe."""
        self.proto.childDataReceived(3, line.encode() + b"\n")

    def end(self, status: int = 0, signal: int | None = None) -> None:
        """The process exits with C{status}, or dies of C{signal}."""
        self.pid = None
        if signal is None and status == 0:
            reason = ProcessDone(0)
        else:
            reason = ProcessTerminated(exitCode=None if signal else status, signal=signal)
        self.proto.processEnded(Failure(reason))

    @property
    def alive(self) -> bool:
        return self.pid is not None


class DummyProcessReactor(MemoryReactor, Clock):
    """A reactor whose spawnProcess makes L{DummyProcess}es, with a fake clock."""

    def __init__(self) -> None:
        MemoryReactor.__init__(self)
        Clock.__init__(self)
        self.spawned: list[DummyProcess] = []
        self.spawnError: Exception | None = None
        self._nextPid = 1000

    def spawnProcess(self, proto, executable, args, env=None, path=None, uid=None, gid=None,
                     usePTY=False, childFDs=None):
        if self.spawnError is not None:
            raise self.spawnError
        self._nextPid += 1
        process = DummyProcess(self, proto, args, env, childFDs, self._nextPid)
        self.spawned.append(process)
        proto.makeConnection(process)
        return process

    def callFromThread(self, f, *args, **kwargs) -> None:
        self.callLater(0, f, *args, **kwargs)

    def live(self) -> list[DummyProcess]:
        return [p for p in self.spawned if p.alive]


class FakeSocket:
    """A listening socket reduced to what the supervisor uses."""

    def __init__(self, fd: int, listener: ListenerConfig) -> None:
        self.fd = fd
        self.family = socket.AF_INET6 if ":" in listener.address else socket.AF_INET
        self.address = (listener.address, listener.port or 40000 + fd)
        self.closed = False

    def fileno(self) -> int:
        return self.fd

    def getsockname(self):
        return self.address

    def close(self) -> None:
        self.closed = True


class FakeBinder:
    """Binds L{FakeSocket}s; the listeners named in C{refuse} fail as if in use."""

    def __init__(self) -> None:
        self.sockets: dict[str, FakeSocket] = {}
        self.refuse: set[str] = set()
        self._fd = 10

    def __call__(self, listener: ListenerConfig) -> FakeSocket:
        if listener.name in self.refuse:
            raise ListenError(f"cannot listen for {listener.name}: Address already in use")
        self._fd += 1
        sock = FakeSocket(self._fd, listener)
        self.sockets[listener.name] = sock
        return sock


class FakeNotifier:
    """Records notifications as (kind, status) pairs."""

    lastError = None

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def _record(self, kind: str, status: str) -> bool:
        self.sent.append((kind, status))
        return True

    def ready(self, status: str) -> bool:
        return self._record("READY", status)

    def reloading(self, status: str) -> bool:
        return self._record("RELOADING", status)

    def stopping(self, status: str) -> bool:
        return self._record("STOPPING", status)

    def status(self, status: str) -> bool:
        return self._record("STATUS", status)

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.sent if kind != "STATUS"]


def make_config(*names: str, workers: int | None = 2, drain: float = 10.0, port: int = 0) -> Config:
    """A config with one cleartext listener per name (port 0 unless given)."""
    listeners = tuple(
        ListenerConfig(name=name, address="127.0.0.1", port=port + i if port else 0)
        for i, name in enumerate(names or ("main",))
    )
    return Config(listeners=listeners, upstreams={}, routes=(), workers=workers,
                  timeouts=TimeoutsConfig(drain=drain))


#: When the fake config files are read.
READ_AT = datetime.datetime(2026, 12, 6, 5, 0, tzinfo=datetime.timezone.utc)


def make_source(text: str = "workers: 2\n", path: str = "/etc/h2proxy/h2proxy.yaml") -> ConfigSource:
    """A config text as the supervisor reads it for its workers."""
    return ConfigSource(text, path, READ_AT)


class Harness:
    """A supervisor on fakes, with the config file replaced by C{nextConfig} (validated)
    and C{sourceText} (what the workers are handed; C{texts} when successive reads of
    the file differ)."""

    def __init__(self, config: Config, environ=None) -> None:
        self.reactor = DummyProcessReactor()
        self.binder = FakeBinder()
        self.notifier = FakeNotifier()
        self.nextConfig: Config | Exception = config
        self.sourceText = "generation text 1\n"
        self.texts: list[str] = []
        self.reactorStops = 0
        self.ownLogReopens = 0
        self.supervisor = Supervisor(
            reactor=self.reactor,
            config=config,
            configPath="/etc/h2proxy/h2proxy.yaml",
            loader=self._load,
            notifier=self.notifier,
            listeners=ListenerSockets(bind=self.binder),
            stopReactor=self._stopReactor,
            reopenOwnLogs=self._reopenOwnLogs,
            environ=environ or {"PATH": "/usr/bin"},
            cpuCount=lambda: 3,
            readSource=self._readSource,
        )

    def _readSource(self, path: str) -> ConfigSource:
        return make_source(self.texts.pop(0) if self.texts else self.sourceText, path)

    def _load(self, path: str) -> Config:
        if isinstance(self.nextConfig, Exception):
            raise self.nextConfig
        return self.nextConfig

    def _stopReactor(self) -> None:
        self.reactorStops += 1

    def _reopenOwnLogs(self) -> None:
        self.ownLogReopens += 1

    def start(self) -> list[DummyProcess]:
        self.supervisor.start()
        return self.reactor.live()

    def ready(self, processes) -> None:
        for process in processes:
            process.report("ready")

    def startServing(self) -> list[DummyProcess]:
        processes = self.start()
        self.ready(processes)
        return processes
