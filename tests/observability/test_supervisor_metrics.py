"""The supervisor's side of observability on fakes: worker metrics reports, totals that
never go backwards, reload outcomes and summaries, restarts, health and errors."""

from __future__ import annotations

import dataclasses
import pytest

from h2proxy.config.model import Config, RouteConfig
from h2proxy.config.upstreams import ServerConfig, UpstreamConfig
from h2proxy.errors import ConfigError, ConfigProblem
from h2proxy.handover import Report, format_metrics, parse_report
from h2proxy.observability.metrics import WorkerMetrics
from h2proxy.supervisor.changes import describe_changes
from tests.supervisor.fakes import Harness, make_config

REQUESTS = "h2proxy_requests_total"
KEY = ("r", "app", "2xx")


def metrics_line(requests: int, connections: int = 0, recent: list | None = None) -> str:
    metrics = WorkerMetrics()
    metrics.requests.inc(KEY, requests)
    metrics.connections.set(("main", "h2"), connections)
    payload = {"metrics": metrics.registry.snapshot(), "recent": recent or []}
    return format_metrics(payload).decode().rstrip("\n")


def total(harness: Harness, name: str = REQUESTS, key: tuple = KEY):
    supervisor = harness.supervisor
    return supervisor.workerMetrics.totals(supervisor._servingNumber()).get(name, {}).get(key, 0)


def test_metrics_reports_round_trip():
    """When a worker formats a metrics report, the supervisor parses the same object back."""
    kind, value = parse_report(metrics_line(3).rstrip())
    assert kind is Report.METRICS
    assert value["metrics"][REQUESTS] == [[list(KEY), 3]]
    with pytest.raises(ValueError):
        parse_report("metrics [1, 2]")


def test_worker_reports_are_summed():
    """When two workers report, the totals are the sum of their latest snapshots."""
    harness = Harness(make_config(workers=2))
    first, second = harness.startServing()
    first.report(metrics_line(4, connections=2))
    second.report(metrics_line(6, connections=1))
    second.report(metrics_line(7, connections=1))
    assert total(harness) == 11
    assert total(harness, "h2proxy_connections_open", ("main", "h2")) == 3


def test_counters_survive_a_worker_restart(logged_errors):
    """When a worker dies and is replaced, its counted requests stay in the totals."""
    harness = Harness(make_config(workers=1))
    (process,) = harness.startServing()
    process.report(metrics_line(5, connections=4))
    process.end(status=1)
    assert total(harness) == 5
    assert total(harness, "h2proxy_connections_open", ("main", "h2")) == 0
    assert harness.supervisor.metrics.restarts.values[()] == 1
    harness.reactor.advance(60)
    (replacement,) = harness.reactor.live()
    replacement.report("ready")
    replacement.report(metrics_line(2))
    assert total(harness) == 7
    assert logged_errors.take(r"worker 1\.0 \(pid \d+\) died")


def test_counters_survive_a_reload_and_the_summary_is_logged(logged):
    """When a reload replaces the generation, old workers' counts stay, the outcome is
    counted, and what changed is logged."""
    harness = Harness(make_config("main", workers=1))
    (old,) = harness.startServing()
    old.report(metrics_line(5))
    harness.nextConfig = make_config("main", "extra", workers=1)
    harness.supervisor.reload()
    new = harness.reactor.live()[-1]
    new.report("ready")
    new.report(metrics_line(1))
    old.report(metrics_line(6))
    old.end()
    assert total(harness) == 7
    assert harness.supervisor.metrics.reloads.values == {("ok",): 1}
    assert logged.matching("reload: listener extra added")


def test_failed_and_invalid_reloads_are_counted(logged_errors):
    """When a reload's config is invalid, or its new worker dies before ready, each outcome is counted."""
    harness = Harness(make_config(workers=1))
    harness.startServing()
    harness.nextConfig = ConfigError([ConfigProblem("/x.yaml", 1, 1, "workers", "bad")])
    harness.supervisor.reload()
    harness.nextConfig = make_config(workers=1)
    harness.supervisor.reload()
    harness.reactor.live()[-1].end(status=1)
    assert harness.supervisor.metrics.reloads.values == {("invalid",): 1, ("failed",): 1}
    assert logged_errors.take(r"workers: bad|reload failed|before its generation was ready")


def test_a_malformed_metrics_report_is_logged_and_ignored(logged):
    """When a worker sends a metrics report of the wrong shape, it is logged and the previous one kept."""
    harness = Harness(make_config(workers=1))
    (process,) = harness.startServing()
    process.report(metrics_line(3))
    process.report('metrics {"metrics": {"h2proxy_request_duration_seconds": [[["r"], [1]]]}}')
    assert total(harness) == 3
    assert logged.matching("malformed metrics")


def test_gauges_describe_workers_and_generation():
    """When the gauges are updated, they count live workers by state and name the serving generation."""
    harness = Harness(make_config(workers=2))
    harness.startServing()
    supervisor = harness.supervisor
    supervisor.updateGauges()
    assert supervisor.metrics.workers.values == {("serving",): 2}
    assert supervisor.metrics.generation.values[()] == 1


def test_serves_is_true_only_while_a_ready_generation_serves():
    """When workers are starting, serving, then stopping, serves() is false, true, then false."""
    harness = Harness(make_config(workers=1))
    processes = harness.start()
    assert not harness.supervisor.serves()
    harness.ready(processes)
    assert harness.supervisor.serves()
    harness.supervisor.stop()
    assert not harness.supervisor.serves()


def test_recent_errors_merge_live_and_exited_workers_newest_first(logged_errors):
    """When workers report errors and one exits, the list keeps both, newest first, with worker names."""
    harness = Harness(make_config(workers=2))
    first, second = harness.startServing()
    first.report(metrics_line(1, recent=[{"time": 10, "error": "connection_refused"}]))
    second.report(metrics_line(1, recent=[{"time": 20, "error": "connection_timeout"}]))
    first.end(status=1)
    errors = harness.supervisor.recentErrors()
    assert [(e["error"], e["worker"]) for e in errors] == [("connection_timeout", "1.1"),
                                                          ("connection_refused", "1.0")]
    assert logged_errors.take(r"worker 1\.0 \(pid \d+\) died")


def _app(*addresses: str) -> UpstreamConfig:
    servers = tuple(ServerConfig(host=a.split(":")[0], port=int(a.split(":")[1])) for a in addresses)
    return UpstreamConfig(name="app", servers=servers)


def test_describe_changes_lists_listeners_routes_upstreams_and_sections():
    """When two configs differ, each added, removed or changed part gets one line."""
    old = dataclasses.replace(
        make_config("a", "b"), upstreams={"app": _app("127.0.0.1:1", "127.0.0.1:2"), "gone": _app("127.0.0.1:9")},
        routes=(RouteConfig(upstream="app", host="*", path="/"),))
    new = dataclasses.replace(
        make_config("a", "c", drain=99), upstreams={"app": _app("127.0.0.1:2", "127.0.0.1:3"), "new": _app("127.0.0.1:9")},
        routes=(RouteConfig(upstream="new", host="*", path="/"), RouteConfig(upstream="app", host="*", path="/api")))
    lines = describe_changes(old, new)
    assert "listener c added" in lines and "listener b removed" in lines
    assert "route */api added" in lines
    assert "route */ changed (upstream)" in lines
    assert "upstream new added" in lines and "upstream gone removed" in lines
    assert "upstream app changed (servers +127.0.0.1:3 -127.0.0.1:1)" in lines
    assert "timeouts changed" in lines


def test_describe_changes_of_an_identical_config_says_so():
    """When nothing changed, the summary is one line saying so."""
    config = make_config("a")
    assert describe_changes(config, config) == ["no setting changed (certificates and keys were read again)"]
