"""The metrics registry, the supervisor's aggregate and the Prometheus text format."""

from __future__ import annotations

import json

import pytest
from prometheus_client.parser import text_string_to_metric_families

from h2proxy.observability.metrics import (
    MAX_SERIES,
    OVERFLOW_LABEL,
    Aggregate,
    Registry,
    SupervisorMetrics,
    WorkerMetrics,
    format_number,
    render,
    status_class,
)


def parse(text: str) -> dict[str, dict]:
    """Every sample as name -> {labels tuple: value}, through prometheus_client's parser."""
    samples: dict[str, dict] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def test_counter_increments_per_label_set():
    """When a counter is incremented under two label sets, each keeps its own total."""
    registry = Registry()
    counter = registry.counter("x_total", "X.", ("a",))
    counter.inc(("1",))
    counter.inc(("1",), 2)
    counter.inc(("2",))
    assert counter.values == {("1",): 3, ("2",): 1}


def test_histogram_counts_into_le_buckets():
    """When values are observed, each lands in the first bucket whose bound is >= it."""
    registry = Registry()
    hist = registry.histogram("h_seconds", "H.", (), buckets=(0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 3.0):
        hist.observe((), value)
    assert hist.values[()] == [2, 1, 1, pytest.approx(3.65)]


def test_family_is_capped_and_overflows_into_one_series():
    """When more label sets arrive than MAX_SERIES, the extra ones share the overflow series."""
    registry = Registry()
    counter = registry.counter("c_total", "C.", ("k",))
    for index in range(MAX_SERIES + 10):
        counter.inc((str(index),))
    assert len(counter.values) == MAX_SERIES + 1
    assert counter.values[(OVERFLOW_LABEL,)] == 10


def test_a_name_defined_twice_is_refused():
    """When two families share a name, the registry refuses the second."""
    registry = Registry()
    registry.counter("dup_total", "D.")
    with pytest.raises(ValueError, match="dup_total"):
        registry.gauge("dup_total", "D.")


def test_render_is_parsed_by_prometheus_client():
    """When a registry with every kind is rendered, prometheus_client's parser reads back the values."""
    registry = Registry()
    counter = registry.counter("req_total", "Requests.", ("route", "code"))
    gauge = registry.gauge("open", "Open things.", ("listener",))
    hist = registry.histogram("dur_seconds", "Durations.", ("route",), buckets=(0.5, 1.0))
    counter.inc(('we"ird\\ro\nute', "2xx"), 5)
    gauge.set(("public",), 3)
    hist.observe(("r",), 0.25)
    hist.observe(("r",), 2.0)
    samples = parse(registry.render())
    assert samples["req_total"][(("code", "2xx"), ("route", 'we"ird\\ro\nute'))] == 5
    assert samples["open"][(("listener", "public"),)] == 3
    buckets = samples["dur_seconds_bucket"]
    assert buckets[(("le", "0.5"), ("route", "r"))] == 1
    assert buckets[(("le", "1"), ("route", "r"))] == 1
    assert buckets[(("le", "+Inf"), ("route", "r"))] == 2
    assert samples["dur_seconds_count"][(("route", "r"),)] == 2
    assert samples["dur_seconds_sum"][(("route", "r"),)] == 2.25


def test_every_catalogue_family_renders_empty_and_parses():
    """When the worker and supervisor catalogues are rendered before any sample, the output parses."""
    text = WorkerMetrics().registry.render() + SupervisorMetrics().registry.render()
    names = {family.name for family in text_string_to_metric_families(text)}
    assert "h2proxy_requests" in names and "h2proxy_reloads" in names


def test_snapshot_is_json_and_reads_back():
    """When a snapshot goes through JSON and into an aggregate, the values come back unchanged."""
    metrics = WorkerMetrics()
    metrics.requests.inc(("r", "app", "2xx"), 4)
    metrics.duration.observe(("r",), 0.2)
    aggregate = Aggregate(WorkerMetrics().registry.families)
    aggregate.update("w1", 1, json.loads(json.dumps(metrics.registry.snapshot())))
    totals = aggregate.totals(serving=1)
    assert totals["h2proxy_requests_total"] == {("r", "app", "2xx"): 4}
    assert sum(totals["h2proxy_request_duration_seconds"][("r",)][:-1]) == 1


def _worker(requests: int, connections: int) -> dict:
    metrics = WorkerMetrics()
    metrics.requests.inc(("r", "app", "2xx"), requests)
    metrics.connections.set(("public", "h2"), connections)
    metrics.serverState.set(("app", "s1", "up"), 1)
    return metrics.registry.snapshot()


def test_counters_sum_over_workers_and_survive_their_exit():
    """When a worker exits, its counters stay in the totals while its gauges leave them."""
    aggregate = Aggregate(WorkerMetrics().registry.families)
    aggregate.update("a", 1, _worker(10, 2))
    aggregate.update("b", 1, _worker(5, 1))
    before = aggregate.totals(serving=1)
    assert before["h2proxy_requests_total"][("r", "app", "2xx")] == 15
    assert before["h2proxy_connections_open"][("public", "h2")] == 3
    aggregate.retire("a")
    after = aggregate.totals(serving=1)
    assert after["h2proxy_requests_total"][("r", "app", "2xx")] == 15
    assert after["h2proxy_connections_open"][("public", "h2")] == 1


def test_a_newer_snapshot_replaces_the_older_one():
    """When a worker reports twice, only its latest snapshot counts."""
    aggregate = Aggregate(WorkerMetrics().registry.families)
    aggregate.update("a", 1, _worker(3, 0))
    aggregate.update("a", 1, _worker(7, 0))
    assert aggregate.totals(serving=1)["h2proxy_requests_total"][("r", "app", "2xx")] == 7


def test_serving_scope_gauges_count_only_the_serving_generation():
    """When an old generation drains, its workers' server-state gauges are left out."""
    aggregate = Aggregate(WorkerMetrics().registry.families)
    aggregate.update("old", 1, _worker(1, 1))
    aggregate.update("new", 2, _worker(1, 1))
    totals = aggregate.totals(serving=2)
    assert totals["h2proxy_upstream_server_state"][("app", "s1", "up")] == 1
    assert totals["h2proxy_connections_open"][("public", "h2")] == 2


def test_unknown_families_and_wrong_label_counts_are_ignored():
    """When a snapshot names a family the schema lacks or has the wrong labels, those parts are skipped."""
    aggregate = Aggregate(WorkerMetrics().registry.families)
    aggregate.update("a", 1, {"nope_total": [[[], 1]], "h2proxy_requests_total": [[["only-one"], 1]]})
    assert aggregate.totals(serving=1)["h2proxy_requests_total"] == {}


def test_a_malformed_histogram_is_refused():
    """When a histogram series has the wrong number of buckets, update raises ValueError."""
    aggregate = Aggregate(WorkerMetrics().registry.families)
    with pytest.raises(ValueError):
        aggregate.update("a", 1, {"h2proxy_request_duration_seconds": [[["r"], [1, 2]]]})


def test_render_of_totals_parses():
    """When aggregated totals are rendered with the catalogue, the parser reads the summed counter."""
    schema = WorkerMetrics().registry.families
    aggregate = Aggregate(schema)
    aggregate.update("a", 1, _worker(2, 1))
    aggregate.update("b", 1, _worker(3, 1))
    samples = parse(render(schema.values(), aggregate.totals(serving=1)))
    key = (("route", "r"), ("status_class", "2xx"), ("upstream", "app"))
    assert samples["h2proxy_requests_total"][key] == 5


def test_numbers_and_status_classes():
    """When numbers and statuses are formatted, integers lose their fraction and classes are NXX."""
    assert format_number(3.0) == "3"
    assert format_number(0.25) == "0.25"
    assert format_number(float("inf")) == "+Inf"
    assert status_class(204) == "2xx"
    assert status_class(0) == "none"
    assert status_class(999) == "none"
