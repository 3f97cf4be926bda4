"""A worker process's life on a fake reactor: adopt, report ready, drain, exit."""

from __future__ import annotations

import gc
import io
import os
import socket
import subprocess
import sys

import pytest

from twisted.internet import defer
from twisted.internet.protocol import ServerFactory
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import LogLevel
from twisted.python.failure import Failure

from h2proxy import __version__
from h2proxy.handover import EX_CONFIG, BootError, InheritedListener, Report, WorkerBoot, encode_boot
from h2proxy.worker.process import (
    read_boot_config,
    refusal_line,
    EXIT_GRACE,
    STREAMS_REPORT_INTERVAL,
    LineLogObserver,
    ReportChannel,
    FULL_COLLECTION_INTERVAL,
    YOUNG_COLLECTION_THRESHOLD,
    WorkerProcess,
    collect_periodically,
    open_streams,
    settle_heap,
)
from tests.supervisor.fakes import make_config, make_source


class FakePort:
    def __init__(self, fd: int, family: int, factory) -> None:
        self.fd, self.family, self.factory = fd, family, factory
        self.listening = True

    def stopListening(self):
        self.listening = False
        return defer.succeed(None)


class WorkerReactor(MemoryReactorClock):
    def __init__(self) -> None:
        super().__init__()
        self.ports: list[FakePort] = []
        self.stops = 0

    def adoptStreamPort(self, fd, family, factory):
        port = FakePort(fd, family, factory)
        self.ports.append(port)
        return port

    def stop(self) -> None:
        self.stops += 1


class FakeConnection:
    def __init__(self, streams: int) -> None:
        self.streams = {i: object() for i in range(streams)}


class FakeH2Factory:
    def __init__(self) -> None:
        self.connections: set[FakeConnection] = set()


class FakeServer:
    """Stands in for ProxyServer: one factory per listener, a drain the test fires."""

    def __init__(self, config, reactor) -> None:
        self.config = config
        self.h2Factories: dict[str, FakeH2Factory] = {}
        self.http1Factories: dict[str, FakeH2Factory] = {}
        self.drains: list[tuple[float, defer.Deferred]] = []
        self.reopened = 0

    def factoryFor(self, listener):
        self.h2Factories[listener.name] = FakeH2Factory()
        self.http1Factories[listener.name] = FakeH2Factory()
        return ServerFactory()

    def drain(self, timeout: float) -> defer.Deferred:
        done = defer.Deferred()
        self.drains.append((timeout, done))
        return done

    def reopenLogs(self) -> None:
        self.reopened += 1


class Worker:
    """A WorkerProcess on fakes, its report channel on a StringTransport."""

    def __init__(self, makeServer=FakeServer, drain: float = 10.0) -> None:
        self.reactor = WorkerReactor()
        self.closed: list[int] = []
        config = make_config("public", "internal", workers=1, drain=drain)
        boot = WorkerBoot(2, 0, make_source(), (InheritedListener("public", 4, socket.AF_INET),
                                                InheritedListener("internal", 5, socket.AF_INET6)))
        self.process = WorkerProcess(boot=boot, config=config, reactor=self.reactor,
                                     makeServer=makeServer, closeFD=self.closed.append)
        self.reports = StringTransport()
        self.process.channel.makeConnection(self.reports)

    def lines(self) -> list[str]:
        return self.reports.value().decode().splitlines()


def test_start_adopts_every_inherited_socket_and_reports_ready():
    """When a worker starts, it adopts each inherited descriptor with its family and its
    listener's factory, closes the inherited copy, and reports ready."""
    worker = Worker()
    worker.process.start()
    assert [(p.fd, p.family) for p in worker.reactor.ports] == [(4, socket.AF_INET), (5, socket.AF_INET6)]
    assert set(worker.process.server.h2Factories) == {"public", "internal"}
    assert worker.closed == [4, 5]
    assert worker.lines() == ["ready"]


def test_a_worker_that_cannot_start_exits_with_status_1(logged, logged_errors):
    """When building the server fails, the worker logs why and exits 1 without reporting ready."""
    def broken(config, reactor):
        raise ValueError("no certificate")

    worker = Worker(makeServer=broken)
    worker.process.start()
    assert worker.process.exitCode == 1
    assert worker.reactor.stops == 1
    assert worker.lines() == []
    assert logged.matching("worker 2.0 cannot start")
    assert logged_errors.take(r"worker 2\.0 cannot start")


def test_drain_stops_accepting_reports_and_exits_when_the_server_has_drained():
    """When told to drain, the worker stops listening on every port, reports draining,
    drains the server with the config's window, and exits 0 once that is done."""
    worker = Worker(drain=7.0)
    worker.process.start()
    worker.process.drain()
    assert not any(port.listening for port in worker.reactor.ports)
    assert worker.lines()[1] == "draining"
    (window, done), = worker.process.server.drains
    assert window == 7.0
    assert worker.reactor.stops == 0
    done.callback(None)
    assert worker.reactor.stops == 1 and worker.process.exitCode == 0


def test_draining_reports_the_open_streams_every_interval():
    """While draining, the worker reports how many streams are still open, once per interval."""
    worker = Worker()
    worker.process.start()
    factory = worker.process.server.h2Factories["public"]
    factory.connections.update({FakeConnection(2), FakeConnection(3)})
    worker.process.drain()
    assert worker.lines()[-1] == "streams 5"
    factory.connections.pop()
    worker.reactor.advance(STREAMS_REPORT_INTERVAL)
    assert worker.lines()[-1] in ("streams 2", "streams 3")


def test_a_second_drain_request_changes_nothing():
    """When asked to drain again while draining (SIGTERM from the supervisor and from a
    signal to the process group), the worker keeps draining and starts no second drain."""
    worker = Worker()
    worker.process.start()
    worker.process.drain()
    worker.process.drain()
    assert worker.reactor.stops == 0
    assert len(worker.process.server.drains) == 1


def test_a_drain_that_never_finishes_ends_after_the_window(logged):
    """When the server's drain never fires, the worker exits on its own shortly after the
    drain window, before the supervisor would need SIGKILL."""
    worker = Worker(drain=5.0)
    worker.process.start()
    worker.process.drain()
    worker.reactor.advance(5.0 + EXIT_GRACE - 0.1)
    assert worker.reactor.stops == 0
    worker.reactor.advance(0.1)
    assert worker.reactor.stops == 1
    assert logged.matching("drain did not finish")


def test_the_supervisor_going_away_starts_a_drain(logged):
    """When the boot pipe reaches end of file (the supervisor died), the worker drains."""
    worker = Worker()
    worker.process.start()
    worker.process.channel.readConnectionLost()
    assert "draining" in worker.lines()
    assert len(worker.process.server.drains) == 1
    assert logged.matching("the supervisor is gone")


def test_reopen_logs_reaches_the_server():
    """When SIGUSR1 is handled, the server reopens its log files."""
    worker = Worker()
    worker.process.start()
    worker.process.reopenLogs()
    assert worker.process.server.reopened == 1


def test_open_streams_counts_across_listeners_and_protocols():
    """When several listeners have HTTP/2 and HTTP/1.1 connections, open_streams sums the
    HTTP/2 streams and counts one per HTTP/1.1 connection."""
    server = FakeServer(None, None)
    server.factoryFor(make_config("a").listeners[0])
    server.factoryFor(make_config("b").listeners[0])
    server.h2Factories["a"].connections.add(FakeConnection(1))
    server.h2Factories["b"].connections.add(FakeConnection(4))
    server.http1Factories["b"].connections.update({object(), object()})
    assert open_streams(server) == 7


def test_log_lines_carry_their_level_first():
    """When a worker logs, each line (tracebacks included) starts with the event's level."""
    stream = io.BytesIO()
    observer = LineLogObserver(stream)
    observer({"log_format": "hello {who}", "who": "there", "log_level": LogLevel.warn})
    try:
        raise KeyError("k")
    except KeyError:
        failure = Failure()
    observer({"log_format": "broke", "log_level": LogLevel.critical, "log_failure": failure})
    lines = stream.getvalue().decode().splitlines()
    assert lines[0] == "warn hello there"
    assert lines[1] == "critical broke"
    assert all(line.startswith("critical ") for line in lines[1:])
    assert any("KeyError" in line for line in lines)


def test_report_channel_before_its_pipes_exist():
    """When a report is sent before the pipes are connected, it is dropped, not an error."""
    channel = ReportChannel(parentGone=lambda: None)
    channel.send(Report.READY)
    assert channel.transport is None


def test_parent_gone_after_exit_does_nothing():
    """When the pipes close because the worker is already exiting, no drain starts."""
    worker = Worker()
    worker.process.start()
    worker.process.exit(0)
    worker.process.parentGone()
    assert worker.process.server.drains == []


def test_log_lines_below_the_level_are_not_written():
    """When an event is below the configured level, the worker does not send it."""
    stream = io.BytesIO()
    observer = LineLogObserver(stream, LogLevel.warn)
    observer({"log_format": "chatter", "log_level": LogLevel.info})
    observer({"log_format": "trouble", "log_level": LogLevel.error})
    assert stream.getvalue() == b"error trouble\n"


def test_settle_heap_freezes_start_up_objects_and_raises_the_young_threshold():
    """When the worker settles its heap, what start-up built is frozen out of the
    collector's sight and young collections wait for YOUNG_COLLECTION_THRESHOLD
    net allocations; the older generations keep their thresholds."""
    before = gc.get_threshold()
    try:
        settle_heap()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (YOUNG_COLLECTION_THRESHOLD, before[1], before[2])
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_full_collections_run_on_the_clock(monkeypatch):
    """When the worker collects periodically, a full collection runs every
    FULL_COLLECTION_INTERVAL seconds and not before."""
    calls = []
    monkeypatch.setattr(gc, "collect", lambda *a: calls.append(a) or 0)
    clock = MemoryReactorClock()
    collector = collect_periodically(clock)
    clock.advance(FULL_COLLECTION_INTERVAL - 1)
    assert calls == []
    clock.advance(1)
    clock.advance(FULL_COLLECTION_INTERVAL)
    assert len(calls) == 2
    collector.stop()


# The boot message, read and parsed again by the worker

WORKER_CONFIG = """
listeners:
  - name: public
    address: 127.0.0.1
    port: 0
upstreams:
  app:
    servers:
      - address: 127.0.0.1:9
routes:
  - upstream: app
"""


def boot_pipe(data: bytes) -> int:
    """The read end of a pipe holding C{data} (closed when the test ends by the caller)."""
    read, write = os.pipe()
    os.write(write, data)
    os.close(write)
    return read


def test_the_worker_parses_the_text_it_was_handed():
    """When the boot message carries a config text, the worker's config is that text
    parsed by its own loader, with the path it came from."""
    boot = WorkerBoot(1, 0, make_source(WORKER_CONFIG, "/etc/h2proxy/h2proxy.yaml"), ())
    fd = boot_pipe(encode_boot(boot))
    try:
        read, config = read_boot_config(fd)
    finally:
        os.close(fd)
    assert read == boot
    assert [listener.name for listener in config.listeners] == ["public"]
    assert config.source == "/etc/h2proxy/h2proxy.yaml"


def test_a_text_invalid_for_this_worker_is_refused():
    """When the handed text does not validate with this worker's code (another release's
    keys), reading the boot raises BootError with the problems and the sender's version."""
    source = make_source(WORKER_CONFIG + "future_section: 1\n")
    fd = boot_pipe(encode_boot(WorkerBoot(1, 0, source, (), senderVersion="9.0.0")))
    try:
        with pytest.raises(BootError, match="not valid for this worker: .*future_section") as refused:
            read_boot_config(fd)
    finally:
        os.close(fd)
    assert refused.value.senderVersion == "9.0.0"


def test_the_refusal_line_names_both_versions_on_one_line():
    """When a worker refuses, its one line is critical and names its version and the
    sender's (or says the sender's is unknown)."""
    line = refusal_line(BootError("format 7; this worker reads format 1\nsecond line", "9.0.0"))
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert line.startswith(b"critical worker refuses its boot message: format 7")
    assert f"(worker h2proxy {__version__}, supervisor h2proxy 9.0.0)".encode() in line
    assert b"supervisor h2proxy unknown" in refusal_line(BootError("not a boot message"))


def test_a_worker_handed_an_old_pickled_boot_exits_78():
    """When a real worker process reads a boot message it cannot read (here a pickle, as
    older supervisors sent), it writes its refusal on stderr and exits with EX_CONFIG."""
    result = subprocess.run([sys.executable, "-m", "h2proxy.worker.process"],
                            input=b"\x00" * 8 + b"\x80\x05garbage", capture_output=True,
                            timeout=60)
    assert result.returncode == EX_CONFIG == 78
    assert result.stderr.startswith(b"critical worker refuses its boot message: not a boot message")
