# -*- test-case-name: tests.observability.test_admin -*-
"""The admin listener, served by the supervisor: C{/metrics}, C{/healthz} and the
status page (C{/}).

Cleartext HTTP/1.1 on C{admin.address} (loopback by default), on twisted.web: a
handful of requests a minute from Prometheus, a load balancer and the odd
browser, so a plain web server is right here, and the supervisor parses no proxy
traffic. Everything it shows comes from the L{Supervisor}: its own state, and
the metrics snapshots the workers report once a second.

  - C{/metrics}: Prometheus text format, totals over every worker (counters never
    go backwards; see L{h2proxy.observability.metrics}) and the supervisor's own families.
  - C{/healthz}: C{200 ok} while a generation serves; C{503 starting} before,
    C{503 draining} once the daemon is stopping, so a load balancer takes the
    host out before its connections close.
  - C{/}: an HTML page for an incident: workers and generations (draining ones
    with their open streams), connections and streams, the request rate, upstream
    servers with their health and load, and the recent errors. It refreshes
    itself every L{REFRESH_SECONDS} and needs nothing from outside (inline style,
    no script), since the admin port may sit on an isolated network.

Admin requests are not access-logged.
"""

from __future__ import annotations

import enum
import html
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from twisted.internet import defer, task
from twisted.internet.interfaces import IListeningPort
from twisted.logger import ILogObserver, LogLevel, Logger, formatEvent
from twisted.web.pages import notFound
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from zope.interface import implementer

from h2proxy.config.model import AdminConfig, Config
from h2proxy.observability.metrics import render, server_label

log = Logger()

#: Seconds between two refreshes of the status page in a browser.
REFRESH_SECONDS = 5
#: Seconds between two samples of the request total (for the request rate).
RATE_SAMPLE_INTERVAL = 1.0
#: Samples kept; the rate is taken over this many intervals at most.
RATE_WINDOW = 10
#: Daemon warnings and errors kept for the status page (a multi-line one counts once).
RECENT_LOG = 30
#: Lines kept of one multi-line daemon message (a traceback), and characters per line.
MAX_ENTRY_LINES = 120
MAX_LINE_CHARS = 500
#: Seconds within which a worker's next line may continue its previous message: the
#: lines of one message reach the supervisor in the same read.
CONTINUATION_WINDOW = 1.0
#: Groups of identical proxy errors shown on the status page.
SHOWN_ERRORS = 30
#: Worker names listed for one group of errors.
SHOWN_WORKERS = 4
#: The Prometheus text format's content type.
METRICS_CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"

REQUESTS = "h2proxy_requests_total"


#: First lines of the parts of a Python or Twisted traceback.
_TRACEBACK_MARKERS = (
    "Traceback (most recent call last):",
    "--- <exception caught here> ---",
    "During handling of the above exception",
    "The above exception was the direct cause",
)


@dataclass
class LogEntry:
    """One daemon message on the status page; a worker's multi-line message (its
    lines are relayed one event each) is gathered back into one entry, in order.

    @ivar source: the worker (name, pid) whose relayed lines these are, else None.
    """

    when: float
    level: str
    lines: list[str]
    source: tuple[object, object] | None = None

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def continuedBy(self, source: tuple[object, object] | None, level: str, when: float, line: str) -> bool:
        """Whether C{line}, relayed from C{source}, is the next line of this message: same
        worker and level, the same read, and a traceback's shape (a traceback header or
        an indented frame line, the exception line after the frames, or a blank line
        inside a chained traceback)."""
        if source is None or source != self.source or level != self.level:
            return False
        if when - self.when > CONTINUATION_WINDOW:
            return False
        last = self.lines[-1]
        if line[:1].isspace() or line.startswith(_TRACEBACK_MARKERS):
            return True
        if last[:1].isspace() or last.startswith(_TRACEBACK_MARKERS[1]):
            return True
        return line == "" and any(l.startswith(_TRACEBACK_MARKERS[0]) for l in self.lines)

    def add(self, line: str) -> None:
        if len(self.lines) < MAX_ENTRY_LINES:
            self.lines.append(line[:MAX_LINE_CHARS])
        elif len(self.lines) == MAX_ENTRY_LINES:
            self.lines.append("[more lines not kept]")


@implementer(ILogObserver)
class RecentLog:
    """Keeps the last L{RECENT_LOG} daemon messages at warning level or above, a
    traceback (the daemon's own, or a worker's relayed line by line) as one entry."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.entries: deque[LogEntry] = deque(maxlen=RECENT_LOG)
        self.clock = clock

    def __call__(self, event: dict) -> None:
        level = event.get("log_level", LogLevel.info)
        if level < LogLevel.warn:
            return
        when = event.get("log_time") or self.clock()
        source = _relayed_from(event)
        if source is not None and self.entries:
            last = self.entries[-1]
            line = str(event.get("text", ""))
            if last.continuedBy(source, level.name, when, line):
                last.add(line)
                return
        entry = LogEntry(when, level.name, [], source)
        for line in _event_text(event).split("\n"):
            entry.add(line)
        self.entries.append(entry)


def _relayed_from(event: dict) -> tuple[object, object] | None:
    """The (worker, pid) of a worker's line relayed by the supervisor, else None."""
    if "worker" in event and "pid" in event and "text" in event:
        return (event["worker"], event["pid"])
    return None


def _event_text(event: dict) -> str:
    """An event's message, followed by its traceback when it carries a failure."""
    text = formatEvent(event)
    failure = event.get("log_failure")
    if failure is not None:
        text = f"{text}\n{failure.getTraceback()}".rstrip("\n")
    return text


class RateMeter:
    """The request rate over the last few seconds, from periodic samples of the
    request total (a counter, so a difference of samples is a count)."""

    def __init__(self) -> None:
        self.samples: deque[tuple[float, float]] = deque(maxlen=RATE_WINDOW + 1)

    def sample(self, when: float, total: float) -> None:
        self.samples.append((when, total))

    def rate(self) -> float | None:
        """Requests per second, or None before two samples."""
        if len(self.samples) < 2:
            return None
        (t0, n0), (t1, n1) = self.samples[0], self.samples[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else None


def _sum(values: dict | None) -> float:
    return sum(values.values()) if values else 0


class AdminState:
    """What the pages read, from the supervisor (and the rate meter and log)."""

    def __init__(self, supervisor, rate: RateMeter, recentLog: RecentLog) -> None:
        self.supervisor = supervisor
        self.rate = rate
        self.recentLog = recentLog
        self.servingSince: dict[int, float] = {}

    def generationServes(self, config: Config) -> None:
        """A generation starts serving: remember when (its uptime on the page)."""
        number = self.servingNumber()
        if number is not None:
            self.servingSince = {number: self.supervisor.reactor.seconds()}

    def servingNumber(self) -> int | None:
        serving = self.supervisor.serving
        return serving.number if serving is not None else None

    def totals(self) -> dict[str, dict]:
        return self.supervisor.workerMetrics.totals(self.servingNumber())

    def metricsText(self) -> str:
        supervisor = self.supervisor
        supervisor.updateGauges()
        aggregate = supervisor.workerMetrics
        return supervisor.metrics.registry.render() + render(aggregate.schema.values(), self.totals())

    def health(self) -> tuple[int, str]:
        if self.supervisor.stopping:
            return 503, "draining"
        if self.supervisor.serves():
            return 200, "ok"
        return 503, "starting"


# -- pages ------------------------------------------------------------------------------


class _Page(Resource):
    isLeaf = True

    def __init__(self, state: AdminState) -> None:
        super().__init__()
        self.state = state

    def render_HEAD(self, request: Request) -> bytes:
        return self.render_GET(request)


class MetricsPage(_Page):
    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", METRICS_CONTENT_TYPE)
        request.setHeader(b"cache-control", b"no-store")
        return self.state.metricsText().encode("utf-8")


class HealthPage(_Page):
    def render_GET(self, request: Request) -> bytes:
        code, text = self.state.health()
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        return f"{text}\n".encode("ascii")


class StatusPage(_Page):
    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        return status_html(self.state).encode("utf-8")


class AdminRoot(Resource):
    """C{/} is the status page; C{/metrics} and C{/healthz} beside it; the rest 404."""

    def __init__(self, state: AdminState) -> None:
        super().__init__()
        self.status = StatusPage(state)
        self.putChild(b"metrics", MetricsPage(state))
        self.putChild(b"healthz", HealthPage(state))

    def getChild(self, path: bytes, request: Request) -> Resource:
        if path == b"" and not request.postpath:
            return self.status
        return notFound("No such page", "The admin listener serves /, /metrics and /healthz.")


class QuietSite(Site):
    """A Site that writes no access log line per admin request (scrapes would flood the
    daemon's log) and no start/stop messages."""

    noisy = False

    def log(self, request: Request) -> None:
        pass


# -- the status page -----------------------------------------------------------------


_STYLE = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,"Liberation Sans",sans-serif;margin:0;
background:#f4f6f8;color:#1d2733}
header{background:#1d2733;color:#fff;padding:12px 24px;display:flex;gap:16px;align-items:baseline}
header h1{font-size:20px;margin:0}main{padding:8px 24px 24px}
.badge{padding:2px 10px;border-radius:10px;font-weight:600;font-size:13px}
.ok{background:#d5f5df;color:#14532d}.warn{background:#fdf0c4;color:#713f12}.bad{background:#fde2e1;color:#7f1d1d}
.muted{color:#8a96a3}.cards{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0}
.card{background:#fff;border-radius:8px;padding:10px 16px;min-width:130px;box-shadow:0 1px 2px #0001}
.card b{display:block;font-size:22px}
h2{font-size:16px;margin:22px 0 8px}
table{border-collapse:collapse;background:#fff;width:100%;box-shadow:0 1px 2px #0001;border-radius:8px}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid #e6eaee;white-space:nowrap}
th{background:#eef1f4;font-weight:600}td.num,th.num{text-align:right}
td.wrap,span.wrap{white-space:normal;overflow-wrap:anywhere}
pre.msg{margin:0;white-space:pre-wrap;overflow-wrap:anywhere;font:12px/1.35 ui-monospace,"DejaVu Sans Mono",monospace}
#log td:last-child{white-space:normal;width:100%}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {seconds}s" if minutes else f"{seconds}s"


def _number(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,.2f}"


def _table(ident: str, headers: list[str], rows: list[list[str]], numeric: set[int], empty: str) -> str:
    """A table; cells are already-escaped HTML."""
    head = "".join(f'<th{" class=num" if i in numeric else ""}>{_e(h)}</th>' for i, h in enumerate(headers))
    if not rows:
        body = f'<tr><td colspan="{len(headers)}" class="muted">{_e(empty)}</td></tr>'
    else:
        body = "".join(
            "<tr>" + "".join(f'<td{" class=num" if i in numeric else ""}>{cell}</td>' for i, cell in enumerate(row))
            + "</tr>" for row in rows)
    return f'<table id="{ident}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _workers_table(state: AdminState, now: float) -> str:
    supervisor = state.supervisor
    rows = []
    for generation in supervisor.generations:
        for slot in generation.slots:
            worker = slot.worker
            if worker is None:
                rows.append([_e(generation.number), _e(f"{generation.number}.{slot.index}"), "-",
                             '<span class="badge bad">restarting</span>', "-", "-", "-", "-", "-"])
                continue
            values = supervisor.workerMetrics.workerValues(worker)
            stateText, badge = _worker_state(generation.state.value, worker)
            streams = worker.streams if worker.draining and worker.streams is not None else "-"
            rows.append([
                _e(generation.number), _e(worker.name), _e(worker.pid),
                f'<span class="badge {badge}">{_e(stateText)}</span>',
                _e(_duration(now - worker.startedAt)),
                _e(_number(_sum(values.get("h2proxy_connections_open")))),
                _e(_number(_sum(values.get("h2proxy_requests_in_flight")))),
                _e(_number(_sum(values.get(REQUESTS)))),
                _e(streams),
            ])
    headers = ["Generation", "Worker", "PID", "State", "Up for", "Connections", "In flight",
               "Requests", "Draining streams"]
    return _table("workers", headers, rows, {5, 6, 7, 8}, "no worker")


def _worker_state(generation: str, worker) -> tuple[str, str]:
    if generation == "draining" or worker.draining:
        return "draining", "warn"
    if not worker.ready:
        return "starting", "warn"
    return generation, "ok"


def _health_text(states: dict[str, float]) -> tuple[str, str]:
    """The health cell: C{up}, or how many workers see each state."""
    seen = {state: int(count) for state, count in states.items() if count}
    if not seen:
        return "unknown", "muted"
    if set(seen) == {"up"}:
        return "up", "ok"
    badge = "bad" if "up" not in seen else "warn"
    return ", ".join(f"{state} ({count})" for state, count in sorted(seen.items())), badge


def _upstreams_table(state: AdminState, config: Config, totals: dict[str, dict]) -> str:
    states: dict[tuple[str, str], dict[str, float]] = {}
    for (upstream, server, health), count in totals.get("h2proxy_upstream_server_state", {}).items():
        states.setdefault((upstream, server), {})[health] = count
    inFlight = totals.get("h2proxy_upstream_in_flight", {})
    idle = totals.get("h2proxy_upstream_idle_connections", {})
    queue = totals.get("h2proxy_upstream_queue_depth", {})
    rows = []
    for name, upstream in config.upstreams.items():
        for server in upstream.servers:
            label = server_label(server)
            text, badge = _health_text(states.get((name, label), {}))
            rows.append([
                _e(name), _e(label), f'<span class="badge {badge}">{_e(text)}</span>',
                _e(_number(inFlight.get((name, label), 0))), _e(_number(idle.get((name, label), 0))),
                _e(_number(queue.get((name,), 0))),
            ])
    headers = ["Upstream", "Server", "Health", "In flight", "Idle connections", "Upstream queue"]
    return _table("upstreams", headers, rows, {3, 4, 5}, "no upstream")


def _clock(when: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))


#: What makes two recent errors the same row of the status page.
_ERROR_KEY = ("status", "error", "method", "authority", "path", "upstream", "server")


@dataclass
class ErrorGroup:
    """Identical recent errors (same status, reason, request and upstream), as one row.

    @ivar latest: the newest of them (its time and request id are shown).
    @ivar workers: the names of the workers that reported them, newest first.
    """

    latest: dict
    count: int = 1
    workers: list[str] = field(default_factory=list)


def group_errors(entries: Iterable[dict]) -> list[ErrorGroup]:
    """Identical errors gathered, each group with its count and newest entry, newest
    group first; C{entries} come newest first (L{Supervisor.recentErrors}). Twenty
    clients closing the same stream must not push every other error off the page."""
    groups: dict[tuple, ErrorGroup] = {}
    for entry in entries:
        key = tuple(entry.get(name) for name in _ERROR_KEY)
        group = groups.get(key)
        if group is None:
            group = groups[key] = ErrorGroup(latest=entry, count=0)
        group.count += 1
        worker = entry.get("worker")
        if worker and worker not in group.workers:
            group.workers.append(worker)
    return sorted(groups.values(), key=lambda group: group.latest.get("time", 0), reverse=True)


def _workers_text(names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN_WORKERS])
    more = len(names) - SHOWN_WORKERS
    return f"{shown} and {more} more" if more > 0 else (shown or "-")


def _errors_table(state: AdminState) -> str:
    rows = []
    for group in group_errors(state.supervisor.recentErrors())[:SHOWN_ERRORS]:
        entry = group.latest
        request = f"{entry.get('method', '')} {entry.get('authority', '')}{entry.get('path', '')}"
        rows.append([
            _e(_clock(entry.get("time", 0))), _e(group.count), _e(_workers_text(group.workers)),
            _e(entry.get("status", "")), _e(entry.get("error", "")),
            f'<span class="wrap">{_e(request)}</span>',
            _e(entry.get("upstream") or "-"), _e(entry.get("server") or "-"),
            _e(entry.get("request_id") or "-"),
        ])
    headers = ["Last seen", "Count", "Workers", "Status", "Reason", "Request", "Upstream", "Server",
               "Last request id"]
    return _table("errors", headers, rows, {1}, "no error reported")


def _log_table(state: AdminState) -> str:
    rows = [[_e(_clock(entry.when)), _e(entry.level), f'<pre class="msg">{_e(entry.text)}</pre>']
            for entry in reversed(state.recentLog.entries)]
    return _table("log", ["Time", "Level", "Message"], rows, set(), "no warning logged")


def _uptimes(state: AdminState, now: float) -> str:
    """The header's ages: the serving generation's, and the daemon's."""
    serving = state.servingNumber()
    since = state.servingSince.get(serving) if serving is not None else None
    generation = (f"generation {serving} serving for {_duration(now - since)}" if since is not None
                  else f"generation {serving if serving is not None else '-'}")
    return (f'<span id="generation">{_e(generation)}</span>'
            f'<span id="uptime">daemon up {_e(_duration(now - state.supervisor.startedAt))}</span>')


def status_html(state: AdminState) -> str:
    """The whole status page."""
    supervisor = state.supervisor
    now = supervisor.reactor.seconds()
    totals = state.totals()
    code, health = state.health()
    badge = "ok" if code == 200 else ("bad" if health == "draining" else "warn")
    rate = state.rate.rate()
    reloads = supervisor.metrics.reloads.values
    cards = [
        ("Requests/s", "-" if rate is None else f"{rate:,.1f}"),
        ("Requests", _number(_sum(totals.get(REQUESTS)))),
        ("Connections", _number(_sum(totals.get("h2proxy_connections_open")))),
        ("HTTP/2 streams", _number(_sum(totals.get("h2proxy_streams_open")))),
        ("In flight", _number(_sum(totals.get("h2proxy_requests_in_flight")))),
        ("Workers", _number(len(supervisor.liveWorkers()))),
        ("Reloads ok / failed", f"{_number(reloads.get(('ok',), 0))} / "
                                f"{_number(sum(v for k, v in reloads.items() if k != ('ok',)))}"),
        ("Lost log lines", _number(_sum(totals.get("h2proxy_access_log_lost_lines_total")))),
    ]
    cardHtml = "".join(f'<div class="card"><span class="muted">{_e(t)}</span><b>{_e(v)}</b></div>'
                       for t, v in cards)
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">'
        "<meta name=viewport content='width=device-width'>"
        f"<title>h2proxy status</title><style>{_STYLE}</style></head><body>"
        f'<header><h1>h2proxy</h1><span class="badge {badge}" id="health">{_e(health)}</span>'
        f"{_uptimes(state, now)}"
        f'<span class="muted">{_e(_clock(now))}, refreshes every {REFRESH_SECONDS}s</span></header>'
        f'<main><div class="cards">{cardHtml}</div>'
        f"<h2>Workers</h2>{_workers_table(state, now)}"
        f"<h2>Upstream servers</h2>{_upstreams_table(state, supervisor.config, totals)}"
        f"<h2>Recent errors</h2>{_errors_table(state)}"
        f"<h2>Daemon warnings</h2>{_log_table(state)}"
        "</main></body></html>"
    )


# -- the listener's life -----------------------------------------------------------------


class AdminServer:
    """Listens on the admin address, follows it across reloads, samples the request
    rate while listening.

    @ivar port: the listening port, if any.
    @ivar config: the admin section it listens for.
    """

    def __init__(self, *, supervisor, reactor, recentLog: RecentLog | None = None) -> None:
        self.supervisor = supervisor
        self.reactor = reactor
        self.recentLog = recentLog or RecentLog(reactor.seconds)
        self.rate = RateMeter()
        self.state = AdminState(supervisor, self.rate, self.recentLog)
        self.site = QuietSite(AdminRoot(self.state))
        self.port: IListeningPort | None = None
        self.config: AdminConfig | None = None
        self._sampler = task.LoopingCall(self._sample)
        self._sampler.clock = reactor
        supervisor.configObservers.append(self.follow)
        supervisor.configObservers.append(self.state.generationServes)

    def listen(self, config: AdminConfig | None) -> None:
        """Listen for C{config} (None: no admin listener).

        @raise twisted.internet.error.CannotListenError: the address cannot be bound.
        """
        self.config = config
        if config is None:
            return
        self.port = self.reactor.listenTCP(config.port, self.site, interface=config.address)
        host = self.port.getHost()
        shown = f"[{host.host}]" if ":" in host.host else host.host
        log.info("admin listener on {address}:{port} (/metrics, /healthz, status page /)",
                 address=shown, port=host.port)
        if not self._sampler.running:
            self._sampler.start(RATE_SAMPLE_INTERVAL, now=True)

    def follow(self, config: Config) -> None:
        """A reload's generation serves: move the admin listener if its section changed.
        If the new address cannot be bound, the old listener stays and the error is logged."""
        wanted = config.admin
        if wanted == self.config:
            return
        old, oldConfig = self.port, self.config
        self.port = None
        try:
            self.listen(wanted)
        except Exception as problem:
            log.error("admin listener: cannot listen on {address} port {port}: {problem}; keeping "
                      "the previous one", address=wanted.address, port=wanted.port, problem=problem)
            self.port, self.config = old, oldConfig
            return
        if old is not None:
            old.stopListening()

    def stop(self) -> defer.Deferred:
        if self._sampler.running:
            self._sampler.stop()
        port, self.port = self.port, None
        if port is None:
            return defer.succeed(None)
        return defer.maybeDeferred(port.stopListening)

    def _sample(self) -> None:
        self.rate.sample(self.reactor.seconds(), _sum(self.state.totals().get(REQUESTS)))
