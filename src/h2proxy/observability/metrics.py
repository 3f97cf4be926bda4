# -*- test-case-name: tests.observability.test_metrics -*-
"""Counters, gauges and histograms, shipped between processes and rendered for
Prometheus. Pure: no Twisted, no I/O.

Each worker keeps plain numbers in a L{Registry}: an increment is one dict update
keyed by a tuple of label values, so the hot path stays cheap. Once a second (and
on exit) the worker sends L{Registry.snapshot} to the supervisor, which keeps the
last snapshot of every worker in an L{Aggregate}:

  - counters and histograms are summed over every worker that ever reported: a
    worker that exits (restart, reload, crash) leaves its last snapshot in the
    retired totals, so no counter goes backwards;
  - gauges are summed over the live workers only (a gauge of a dead process is
    meaningless); a gauge family with C{scope="serving"} counts only the workers
    of the serving generation (e.g. how many workers see an upstream server up).

L{render} writes the Prometheus text exposition format (version 0.0.4).

Label values come from the configuration (route, upstream, listener names) or from
small fixed sets (status classes, reasons); even so, each family is capped at
L{MAX_SERIES} label combinations, past which new ones are folded into one series
whose labels are all L{OVERFLOW_LABEL}, so a bug elsewhere cannot grow memory.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

#: Most label combinations one family keeps; later ones share the overflow series.
MAX_SERIES = 2000
#: The label value of every label of the overflow series.
OVERFLOW_LABEL = "other"
#: Default histogram buckets for latencies, in seconds (Prometheus client defaults
#: plus the long tail a proxy sees: slow uploads, long polls).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

Key = tuple[str, ...]
#: A histogram series: count per bucket (not cumulative; the last is +Inf), then the sum.
HistogramValue = list[float]


@dataclass(eq=False)
class Family:
    """One metric family: its name, help text, kind and label names, and its values.

    @ivar kind: C{counter}, C{gauge} or C{histogram}.
    @ivar scope: for gauges, C{all} (summed over live workers) or C{serving}
        (summed over the workers of the serving generation only).
    @ivar buckets: a histogram's upper bounds, ascending (+Inf is implied).
    @ivar values: label values -> number (counter, gauge) or L{HistogramValue}.
    """

    name: str
    help: str
    kind: str
    labels: tuple[str, ...] = ()
    scope: str = "all"
    buckets: tuple[float, ...] = ()
    values: dict = field(default_factory=dict)

    def _admit(self, key: Key) -> Key:
        """C{key}, or the overflow key when the family is full."""
        if len(self.values) < MAX_SERIES:
            return key
        return (OVERFLOW_LABEL,) * len(self.labels)


class Counter(Family):
    """A number that only goes up."""

    def inc(self, key: Key = (), amount: float = 1) -> None:
        values = self.values
        if key in values:
            values[key] += amount
        else:
            key = self._admit(key)
            values[key] = values.get(key, 0) + amount

    def setTotal(self, key: Key, total: float) -> None:
        """Copy a total kept elsewhere (a count another object keeps), read at snapshot time."""
        self.values[self._admit(key) if key not in self.values else key] = total


class Gauge(Family):
    """A number that goes up and down; set at snapshot time from live state."""

    def set(self, key: Key, value: float) -> None:
        self.values[self._admit(key) if key not in self.values else key] = value

    def clear(self) -> None:
        """Forget every series (before setting the current ones)."""
        self.values.clear()


class Histogram(Family):
    """Observations counted into fixed buckets, with their sum."""

    def observe(self, key: Key, value: float) -> None:
        series = self.values.get(key)
        if series is None:
            key = self._admit(key)
            series = self.values.setdefault(key, [0] * (len(self.buckets) + 2))
        series[bisect_left(self.buckets, value)] += 1
        series[-1] += value


class Registry:
    """The metric families of one process, by name."""

    def __init__(self) -> None:
        self.families: dict[str, Family] = {}

    def counter(self, name: str, help: str, labels: tuple[str, ...] = ()) -> Counter:
        return self._add(Counter(name, help, "counter", labels))

    def gauge(self, name: str, help: str, labels: tuple[str, ...] = (), scope: str = "all") -> Gauge:
        return self._add(Gauge(name, help, "gauge", labels, scope))

    def histogram(self, name: str, help: str, labels: tuple[str, ...] = (),
                  buckets: tuple[float, ...] = LATENCY_BUCKETS) -> Histogram:
        return self._add(Histogram(name, help, "histogram", labels, buckets=tuple(sorted(buckets))))

    def _add(self, family):
        if family.name in self.families:
            raise ValueError(f"metric {family.name} is defined twice")
        self.families[family.name] = family
        return family

    def snapshot(self) -> dict[str, list]:
        """Every family's values as plain JSON-able data: name -> [[labels, value], ...]."""
        return {
            name: [[list(key), list(value) if isinstance(value, list) else value]
                   for key, value in family.values.items()]
            for name, family in self.families.items()
        }

    def render(self) -> str:
        """This registry's own values in the Prometheus text format."""
        return render(self.families.values(), {name: f.values for name, f in self.families.items()})


def read_snapshot(snapshot: Mapping[str, list], schema: Mapping[str, Family]) -> dict[str, dict]:
    """A snapshot back as name -> {labels: value}, keeping only families C{schema}
    knows with the right number of labels (a worker of another version may differ).

    @raise ValueError: the snapshot is not shaped like L{Registry.snapshot}'s.
    """
    values: dict[str, dict] = {}
    for name, series in snapshot.items():
        family = schema.get(name)
        if family is None:
            continue
        width = len(family.buckets) + 2 if family.kind == "histogram" else None
        kept: dict = {}
        for labels, value in series:
            if len(labels) != len(family.labels):
                continue
            if width is not None and (not isinstance(value, list) or len(value) != width):
                raise ValueError(f"{name}: histogram series of the wrong size")
            kept[tuple(str(label) for label in labels)] = value
        values[name] = kept
    return values


def _add_into(total: dict, values: Mapping) -> None:
    for key, value in values.items():
        if isinstance(value, list):
            current = total.get(key)
            total[key] = value[:] if current is None else [a + b for a, b in zip(current, value)]
        else:
            total[key] = total.get(key, 0) + value


@dataclass
class _Reporter:
    generation: int
    values: dict[str, dict]


class Aggregate:
    """The supervisor's view of every worker's metrics (see the module docstring).

    @ivar schema: the families workers report, by name (from a worker registry).
    """

    def __init__(self, schema: Mapping[str, Family]) -> None:
        self.schema = dict(schema)
        self._live: dict[object, _Reporter] = {}
        self._retired: dict[str, dict] = {}

    def update(self, worker: object, generation: int, snapshot: Mapping[str, list]) -> None:
        """Keep C{snapshot} as C{worker}'s latest.

        @raise ValueError: a malformed snapshot (the previous one is kept).
        """
        self._live[worker] = _Reporter(generation, read_snapshot(snapshot, self.schema))

    def retire(self, worker: object) -> None:
        """C{worker} exited: its counters and histograms stay in the totals for good."""
        reporter = self._live.pop(worker, None)
        if reporter is None:
            return
        for name, values in reporter.values.items():
            if self.schema[name].kind != "gauge":
                _add_into(self._retired.setdefault(name, {}), values)

    def totals(self, serving: int | None) -> dict[str, dict]:
        """name -> {labels: value} over the workers, as the module docstring says;
        C{serving} is the serving generation's number (for C{scope="serving"} gauges)."""
        totals: dict[str, dict] = {name: {} for name in self.schema}
        for name, values in self._retired.items():
            _add_into(totals[name], values)
        for reporter in self._live.values():
            for name, values in reporter.values.items():
                family = self.schema[name]
                if family.kind == "gauge" and family.scope == "serving" and reporter.generation != serving:
                    continue
                _add_into(totals[name], values)
        return totals

    def workerValues(self, worker: object) -> dict[str, dict]:
        """The last values C{worker} reported (empty before its first report)."""
        reporter = self._live.get(worker)
        return reporter.values if reporter is not None else {}


# -- Prometheus text format ------------------------------------------------------------


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_number(value: float) -> str:
    """A sample value as the text format writes it (integers without a fraction)."""
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 2**53):
        return str(int(value))
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(float(value))


def _labels(names: Iterable[str], values: Iterable[str], extra: str = "") -> str:
    pairs = [f'{name}="{_escape_label(value)}"' for name, value in zip(names, values)]
    if extra:
        pairs.append(extra)
    return "{" + ",".join(pairs) + "}" if pairs else ""


def _render_histogram(family: Family, key: Key, series: list, out: list[str]) -> None:
    cumulative = 0
    for bound, count in zip((*family.buckets, math.inf), series[:-1]):
        cumulative += count
        le = f'le="{format_number(bound)}"'
        out.append(f"{family.name}_bucket{_labels(family.labels, key, le)} {format_number(cumulative)}")
    out.append(f"{family.name}_sum{_labels(family.labels, key)} {format_number(series[-1])}")
    out.append(f"{family.name}_count{_labels(family.labels, key)} {format_number(cumulative)}")


def render(families: Iterable[Family], values: Mapping[str, Mapping]) -> str:
    """C{families} with C{values} (name -> {labels: value}) in the Prometheus text
    format, families and series in a stable order."""
    out: list[str] = []
    for family in families:
        out.append(f"# HELP {family.name} {_escape_help(family.help)}")
        out.append(f"# TYPE {family.name} {family.kind}")
        for key, value in sorted(values.get(family.name, {}).items()):
            if family.kind == "histogram":
                _render_histogram(family, key, value, out)
            else:
                out.append(f"{family.name}{_labels(family.labels, key)} {format_number(value)}")
    return "\n".join(out) + "\n"


def route_label(route) -> str:
    """How logs and metrics name a route (a C{RouteConfig}): its host pattern and path,
    e.g. C{*.example.org/api}, with C{=} before the path of an exact-path route."""
    return f"{route.host}{'=' if getattr(route, 'exact', False) else ''}{route.path}"


def server_label(server) -> str:
    """How logs and metrics name a backend server (a C{ServerConfig}): C{host:port},
    C{[v6]:port}."""
    host = f"[{server.host}]" if ":" in server.host else server.host
    return f"{host}:{server.port}"


#: The RFC 9209 error type of a request a route refused itself (its allow/deny or its
#: rate limit), before any backend was asked.
REFUSED_ERROR = "http_request_denied"
#: The reason label of such a refusal, by the status it was answered with.
REFUSAL_REASONS = {403: "access_denied", 429: "rate_limited"}


def refusal_reason(status: int, error: str, server: str) -> str | None:
    """The C{h2proxy_requests_refused_total} reason of a request that ended with
    C{status} and C{error} after C{server} (empty: none) was asked, or None when it
    was not a route's refusal. The 403 and 429 a backend sends carry no error, and a
    413 for an oversized body shares the error type but is no refusal of the route's."""
    if error != REFUSED_ERROR or server:
        return None
    return REFUSAL_REASONS.get(status)


def status_class(status: int | None) -> str:
    """C{2xx} for 200..299 and so on; C{none} when no response was sent."""
    if not status or not 100 <= status <= 599:
        return "none"
    return f"{status // 100}xx"


# -- The catalogue ------------------------------------------------------------------------


class WorkerMetrics:
    """The families every worker keeps (the supervisor builds one too, as the schema).

    Counted as requests complete (by the L{h2proxy.observability.accesslog.RequestObserver}):
    requests, durations, first bytes, body bytes, proxy errors, route refusals, resets,
    retries.
    Set at snapshot time from live objects (by the worker): connections, streams,
    upstream queues, servers' state and load, TLS handshakes, lost log lines.
    """

    def __init__(self) -> None:
        registry = self.registry = Registry()
        self.requests = registry.counter(
            "h2proxy_requests_total", "Requests completed, by route, upstream and status class "
            "(none: no response was sent).", ("route", "upstream", "status_class"))
        self.duration = registry.histogram(
            "h2proxy_request_duration_seconds", "Time from the request head to the end of the "
            "response, by route.", ("route",))
        self.firstByte = registry.histogram(
            "h2proxy_upstream_first_byte_seconds", "Time from the request head to the backend's "
            "response head, by upstream.", ("upstream",))
        self.requestBytes = registry.counter(
            "h2proxy_request_body_bytes_total", "Request body bytes received from clients, by route.",
            ("route",))
        self.responseBytes = registry.counter(
            "h2proxy_response_body_bytes_total", "Response body bytes sent to clients, by route.",
            ("route",))
        self.proxyErrors = registry.counter(
            "h2proxy_proxy_errors_total", "Error responses the proxy generated itself, by status "
            "and reason (RFC 9209 error type).", ("status", "reason"))
        self.refused = registry.counter(
            "h2proxy_requests_refused_total", "Requests a route refused before any backend was "
            "asked, by route and reason (access_denied: 403 by allow/deny; rate_limited: 429).",
            ("route", "reason"))
        self.resets = registry.counter(
            "h2proxy_streams_reset_total", "Streams ended by a reset, by reason.", ("reason",))
        self.rejected = registry.counter(
            "h2proxy_streams_rejected_total", "Streams or connections refused by a hardening "
            "budget or limit, by reason.", ("reason",))
        self.retries = registry.counter(
            "h2proxy_upstream_retries_total", "Requests sent again to another server, by upstream.",
            ("upstream",))
        self.connections = registry.gauge(
            "h2proxy_connections_open", "Client connections open, by listener and protocol.",
            ("listener", "protocol"))
        self.streams = registry.gauge(
            "h2proxy_streams_open", "HTTP/2 streams open, by listener.", ("listener",))
        self.inFlightRequests = registry.gauge(
            "h2proxy_requests_in_flight", "Requests being proxied (HTTP/2 and HTTP/1.1).")
        self.queueDepth = registry.gauge(
            "h2proxy_upstream_queue_depth", "Requests waiting for a backend connection, by "
            "upstream.", ("upstream",))
        self.inFlight = registry.gauge(
            "h2proxy_upstream_in_flight", "Backend connections carrying a request, by server.",
            ("upstream", "server"))
        self.idle = registry.gauge(
            "h2proxy_upstream_idle_connections", "Idle keep-alive backend connections, by server.",
            ("upstream", "server"))
        self.serverState = registry.gauge(
            "h2proxy_upstream_server_state", "Workers of the serving generation that see a "
            "server in each state (up, ejected by passive health, down by health checks).",
            ("upstream", "server", "state"), scope="serving")
        self.tlsHandshakes = registry.counter(
            "h2proxy_tls_handshakes_total", "TLS handshakes completed, by listener.", ("listener",))
        self.tlsFailures = registry.counter(
            "h2proxy_tls_handshake_failures_total", "TLS handshakes that failed over the client's "
            "certificate (client_certificate), for another TLS error (error), or were given up (closed), "
            "by listener.", ("listener", "reason"))
        self.accessLogLost = registry.counter(
            "h2proxy_access_log_lost_lines_total", "Access log lines that could not be written "
            "(full disk, unwritable file, output blocked).")
        self.compressionBytes = registry.counter(
            "h2proxy_compression_bytes_total", "Response body bytes through the proxy's compression, "
            "by coding: into the encoder (side=in) and out of it to clients (side=out).",
            ("coding", "side"))


class SupervisorMetrics:
    """The supervisor's own families: reloads, restarts, workers, generations."""

    def __init__(self) -> None:
        registry = self.registry = Registry()
        self.reloads = registry.counter(
            "h2proxy_reloads_total", "Reloads by outcome: ok, invalid (config refused), failed "
            "(bind or start failure), refused (too many generations).", ("outcome",))
        self.restarts = registry.counter(
            "h2proxy_worker_restarts_total", "Workers restarted after dying unexpectedly.")
        self.workers = registry.gauge(
            "h2proxy_workers", "Live worker processes, by generation state.", ("state",))
        self.generation = registry.gauge(
            "h2proxy_generation", "Number of the serving generation (0 before the first).")
        self.drainingStreams = registry.gauge(
            "h2proxy_draining_streams", "Streams still open in draining workers.")
        self.lastReload = registry.gauge(
            "h2proxy_last_reload_timestamp_seconds", "When the last reload finished, by outcome "
            "(Unix time).", ("outcome",))
