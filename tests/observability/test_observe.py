"""A worker's observability: TLS handshake counts over in-memory TLS, and snapshots read
from the front ends and pools."""

from __future__ import annotations

from pathlib import Path

from twisted.internet import ssl
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.test.iosim import connectedServerAndClient

from h2proxy.config.model import Config, ListenerConfig, LoggingConfig
from h2proxy.config.upstreams import ServerConfig
from h2proxy_tools.devcert import make_certificate
from h2proxy.observability.metrics import Aggregate, WorkerMetrics
from h2proxy.worker.observe import TLSCounts, WorkerObservability
from tests.config.certs import server_options as certificate_options


def server_options(tmp_path: Path):
    return certificate_options(*make_certificate(str(tmp_path)))


def tls_pair(observability: WorkerObservability, tmp_path: Path, client=None):
    """A client and a TLS server (counting) connected in memory, and their pump."""
    server = observability.tlsFactory("public", server_options(tmp_path), Factory.forProtocol(Protocol))
    if client is None:
        client = TLSMemoryBIOFactory(ssl.CertificateOptions(verify=False), True, Factory.forProtocol(Protocol))
    return connectedServerAndClient(lambda: server.buildProtocol(None), lambda: client.buildProtocol(None))


def observability(**logging) -> WorkerObservability:
    config = Config(listeners=(ListenerConfig(name="public", address="127.0.0.1", port=0),),
                    upstreams={}, routes=(), logging=LoggingConfig(**logging))
    return WorkerObservability(config, Clock())


def counts(obs: WorkerObservability) -> tuple[int, int, int]:
    c: TLSCounts = obs.tls["public"]
    return c.completed, c.failed, c.abandoned


def test_a_completed_handshake_is_counted_once(tmp_path):
    """When a client completes a TLS handshake and exchanges data, one completed handshake is counted."""
    obs = observability()
    client, server, pump = tls_pair(obs, tmp_path)
    pump.flush()
    client.transport.write(b"hello")
    pump.flush()
    client.transport.loseConnection()
    pump.flush()
    assert counts(obs) == (1, 0, 0)


def test_a_client_speaking_plaintext_is_a_failed_handshake(tmp_path):
    """When a client sends HTTP to the TLS port, the handshake counts as failed."""
    obs = observability()
    plain = Factory.forProtocol(Protocol)
    client, server, pump = tls_pair(obs, tmp_path, client=plain)
    client.transport.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    pump.flush()
    pump.flush()
    assert counts(obs) == (0, 1, 0)


def test_a_client_that_leaves_before_the_handshake_is_abandoned(tmp_path):
    """When a client connects and closes without a handshake, it counts as abandoned."""
    obs = observability()
    client, server, pump = tls_pair(obs, tmp_path, client=Factory.forProtocol(Protocol))
    client.transport.loseConnection()
    pump.flush()
    assert counts(obs) == (0, 0, 1)


class Health:
    def __init__(self, up=True, ejected=False) -> None:
        self.up, self._ejected = up, ejected

    def ejected(self, now: float) -> bool:
        return self._ejected


class Server:
    def __init__(self, port: int, health: Health, active: int, idle: int) -> None:
        self.server = ServerConfig(host="127.0.0.1", port=port)
        self.health, self.activeCount, self.idleCount = health, active, idle


class Pool:
    waitingCount = 3
    servers = (Server(1, Health(), 2, 1), Server(2, Health(ejected=True), 0, 0), Server(3, Health(up=False), 0, 0))


class Connection:
    def __init__(self, streams: int) -> None:
        self.streams = dict.fromkeys(range(streams))


class FrontFactory:
    def __init__(self, *streams: int, rejections=None) -> None:
        self.connections = {Connection(n) for n in streams}
        self.rejections = rejections or {}


class Limiter:
    refused, dropped, evicted = 2, 1, 5


def test_snapshot_reads_front_ends_pools_and_counts():
    """When a snapshot is taken, it holds connections, streams, in-flight requests, queues,
    server load and health, TLS counts and rejections, and goes through the supervisor's reader."""
    obs = observability()
    obs.tls["public"] = TLSCounts()
    obs.tls["public"].completed = 4
    report = obs.snapshot(h2Factories={"public": FrontFactory(2, 3, rejections={"reset_budget": 1}),
                                       "other": FrontFactory(rejections={"reset_budget": 2})},
                          http1Factories={"public": FrontFactory(0)},
                          pools={"app": Pool()}, inFlight=6, limiter=Limiter())
    aggregate = Aggregate(WorkerMetrics().registry.families)
    aggregate.update("w", 1, report["metrics"])
    totals = aggregate.totals(serving=1)
    assert totals["h2proxy_connections_open"] == {("public", "h2"): 2, ("other", "h2"): 0, ("public", "http/1.1"): 1}
    assert totals["h2proxy_streams_open"] == {("public",): 5, ("other",): 0}
    assert totals["h2proxy_requests_in_flight"] == {(): 6}
    assert totals["h2proxy_upstream_queue_depth"] == {("app",): 3}
    assert totals["h2proxy_upstream_in_flight"][("app", "127.0.0.1:1")] == 2
    assert totals["h2proxy_upstream_server_state"] == {
        ("app", "127.0.0.1:1", "up"): 1, ("app", "127.0.0.1:2", "ejected"): 1, ("app", "127.0.0.1:3", "down"): 1}
    assert totals["h2proxy_tls_handshakes_total"] == {("public",): 4}
    assert totals["h2proxy_streams_rejected_total"] == {
        ("reset_budget",): 3, ("connection_limit_refused",): 2, ("connection_limit_dropped",): 1,
        ("connection_limit_evicted_idle",): 5}
    assert report["recent"] == []


def test_access_log_lost_lines_are_reported(tmp_path):
    """When the access log lost lines, the snapshot's counter says how many."""
    obs = observability(access_log=str(tmp_path / "access.log"))
    obs.accessLog.lost = 7
    report = obs.snapshot(h2Factories={}, http1Factories={}, pools={}, inFlight=0)
    assert report["metrics"]["h2proxy_access_log_lost_lines_total"] == [[[], 7]]
    obs.closeLogs()
