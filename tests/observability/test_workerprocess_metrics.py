"""A worker's metrics reports: periodic, on exit, and the report pipe flushed before it stops."""

from __future__ import annotations

import json

from twisted.internet.interfaces import IHalfCloseableDescriptor
from twisted.internet.testing import StringTransport
from zope.interface import implementer

from h2proxy.worker.process import EXIT_FLUSH_TIMEOUT, METRICS_REPORT_INTERVAL, ReportChannel
from tests.supervisor.test_workerprocess import FakeServer, Worker


class MeteredServer(FakeServer):
    """A fake server that counts its snapshots and log closes."""

    def __init__(self, config, reactor) -> None:
        super().__init__(config, reactor)
        self.snapshots = 0
        self.logsClosed = 0

    def metricsSnapshot(self) -> dict:
        self.snapshots += 1
        return {"metrics": {"n": self.snapshots}, "recent": []}

    def closeLogs(self) -> None:
        self.logsClosed += 1


def metrics_reports(worker: Worker) -> list[dict]:
    return [json.loads(line.split(" ", 1)[1]) for line in worker.lines() if line.startswith("metrics ")]


def test_metrics_are_reported_at_start_and_every_interval():
    """When a worker with a metrics-capable server serves, it reports at once and then every interval."""
    worker = Worker(makeServer=MeteredServer)
    worker.process.start()
    worker.reactor.advance(METRICS_REPORT_INTERVAL)
    worker.reactor.advance(METRICS_REPORT_INTERVAL)
    assert [report["metrics"]["n"] for report in metrics_reports(worker)] == [1, 2, 3]


def test_exit_reports_last_metrics_and_closes_logs():
    """When the worker exits after a drain, a final snapshot is sent and the server's logs closed."""
    worker = Worker(makeServer=MeteredServer)
    worker.process.start()
    worker.process.drain()
    worker.process.server.drains[0][1].callback(None)
    assert metrics_reports(worker)[-1]["metrics"]["n"] == 2
    assert worker.process.server.logsClosed == 1
    assert worker.reactor.stops == 1


def test_a_failing_snapshot_is_logged_and_does_not_stop_the_worker(logged, logged_errors):
    """When taking a snapshot raises, the failure is logged and the worker keeps running."""
    class Broken(MeteredServer):
        def metricsSnapshot(self) -> dict:
            raise RuntimeError("boom")

    worker = Worker(makeServer=Broken)
    worker.process.start()
    worker.reactor.advance(METRICS_REPORT_INTERVAL)
    assert worker.reactor.stops == 0
    assert logged.matching("cannot take a metrics snapshot")
    assert logged_errors.take(r"cannot take a metrics snapshot")


@implementer(IHalfCloseableDescriptor)
class HalfClosing(StringTransport):
    """A report pipe that can close its write side; the test says when it is flushed."""

    writeClosed = False

    def loseWriteConnection(self) -> None:
        self.writeClosed = True

    def readConnectionLost(self):
        pass


def test_exit_waits_for_the_report_pipe_to_flush():
    """When exiting on a real pipe, the reactor stops once the pipe's write side is closed."""
    worker = Worker(makeServer=MeteredServer)
    pipe = HalfClosing()
    worker.process.channel = ReportChannel(worker.process.parentGone)
    worker.process.channel.makeConnection(pipe)
    worker.process.start()
    worker.process.exit(0)
    assert pipe.writeClosed and worker.reactor.stops == 0
    worker.process.channel.writeConnectionLost()
    assert worker.reactor.stops == 1
    worker.reactor.advance(EXIT_FLUSH_TIMEOUT)
    assert worker.reactor.stops == 1


def test_exit_stops_after_a_deadline_if_the_pipe_never_flushes():
    """When the report pipe never finishes flushing, the reactor stops after EXIT_FLUSH_TIMEOUT."""
    worker = Worker(makeServer=MeteredServer)
    pipe = HalfClosing()
    worker.process.channel = ReportChannel(worker.process.parentGone)
    worker.process.channel.makeConnection(pipe)
    worker.process.start()
    worker.process.exit(0)
    worker.reactor.advance(EXIT_FLUSH_TIMEOUT)
    assert worker.reactor.stops == 1
