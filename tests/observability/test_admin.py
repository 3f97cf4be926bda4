"""The admin listener's pages (metrics, health, status) over in-memory HTTP, and its life."""

from __future__ import annotations

import dataclasses
from html.parser import HTMLParser

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel

from h2proxy.supervisor.admin import AdminServer, RateMeter, RecentLog, group_errors
from h2proxy.config.model import AdminConfig
from h2proxy.config.upstreams import ServerConfig, UpstreamConfig
from h2proxy.observability.metrics import WorkerMetrics
from h2proxy.handover import format_metrics
from tests.supervisor.fakes import Harness, make_config


def app_config(workers: int = 2, admin: AdminConfig | None = AdminConfig(port=0)):
    servers = (ServerConfig(host="127.0.0.1", port=8001), ServerConfig(host="::1", port=8002))
    return dataclasses.replace(make_config(workers=workers), admin=admin,
                               upstreams={"app": UpstreamConfig(name="app", servers=servers)})


def report(process, requests: int = 0, inFlight: int = 0, state: str = "up", recent=None) -> None:
    metrics = WorkerMetrics()
    metrics.requests.inc(("*/", "app", "2xx"), requests)
    metrics.connections.set(("main", "h2"), 1)
    metrics.inFlightRequests.set((), inFlight)
    metrics.serverState.set(("app", "127.0.0.1:8001", state), 1)
    metrics.inFlight.set(("app", "127.0.0.1:8001"), inFlight)
    process.report(format_metrics({"metrics": metrics.registry.snapshot(), "recent": recent or []})
                   .decode().rstrip("\n"))


def make_admin(config=None):
    harness = Harness(config or app_config())
    admin = AdminServer(supervisor=harness.supervisor, reactor=harness.reactor, recentLog=RecentLog())
    return harness, admin


def get(admin: AdminServer, path: str, method: str = "GET") -> tuple[int, dict[str, str], str]:
    """One request through the admin site over a StringTransport."""
    protocol = admin.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(f"{method} {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n".encode())
    head, _, body = transport.value().partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if headers.get("transfer-encoding") == "chunked":
        body = dechunk(body)
    return int(lines[0].split()[1]), headers, body.decode()


def dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size, _, rest = data.partition(b"\r\n")
        length = int(size, 16)
        if not length:
            break
        out += rest[:length]
        data = rest[length + 2:]
    return out


class Tables(HTMLParser):
    """Collects each table's rows of cell texts, by table id."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._table = dict(attrs).get("id")
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def tables(page: str) -> dict[str, list[list[str]]]:
    parser = Tables()
    parser.feed(page)
    return parser.tables


def test_metrics_page_is_prometheus_text_with_worker_and_supervisor_families():
    """When /metrics is scraped, the strict parser reads worker totals and supervisor families."""
    harness, admin = make_admin()
    first, second = harness.startServing()
    report(first, requests=3)
    report(second, requests=4)
    status, headers, body = get(admin, "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(body) for s in family.samples}
    assert samples[("h2proxy_requests_total", (("route", "*/"), ("status_class", "2xx"), ("upstream", "app")))] == 7
    assert samples[("h2proxy_workers", (("state", "serving"),))] == 2
    assert samples[("h2proxy_generation", ())] == 1


def test_healthz_follows_the_daemon_life():
    """When workers start, serve, then the daemon stops, /healthz answers 503 starting, 200 ok, 503 draining."""
    harness, admin = make_admin()
    processes = harness.start()
    assert get(admin, "/healthz")[::2] == (503, "starting\n")
    harness.ready(processes)
    assert get(admin, "/healthz")[::2] == (200, "ok\n")
    assert get(admin, "/healthz", "HEAD")[0] == 200
    harness.supervisor.stop()
    assert get(admin, "/healthz")[::2] == (503, "draining\n")


def test_unknown_paths_are_404():
    """When a path other than /, /metrics or /healthz is asked for, the answer is 404."""
    harness, admin = make_admin()
    assert get(admin, "/nope")[0] == 404


def test_status_page_shows_workers_upstreams_and_errors():
    """When the status page is rendered, its tables list each worker, each upstream server with
    its health and load, and the recent errors; it refreshes itself and loads nothing external."""
    harness, admin = make_admin()
    first, second = harness.startServing()
    report(first, requests=5, inFlight=2,
           recent=[{"time": 100.0, "status": 502, "error": "connection_refused", "method": "GET",
                    "authority": "example.org", "path": "/<script>", "server": "127.0.0.1:8001"}])
    report(second, requests=1, state="ejected")
    status, headers, page = get(admin, "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert '<meta http-equiv="refresh"' in page
    assert "src=" not in page and "href=" not in page and "<script>" not in page
    found = tables(page)
    workers = found["workers"][1:]
    assert [(row[1], row[3], row[7]) for row in workers] == [("1.0", "serving", "5"), ("1.1", "serving", "1")]
    upstreams = {row[1]: row for row in found["upstreams"][1:]}
    assert upstreams["127.0.0.1:8001"][2] == "ejected (1), up (1)"
    assert upstreams["127.0.0.1:8001"][3] == "2"
    assert upstreams["[::1]:8002"][2] == "unknown"
    (error,) = found["errors"][1:]
    assert error[1:5] == ["1", "1.0", "502", "connection_refused"]
    assert error[5] == "GET example.org/<script>"
    assert error[6:8] == ["-", "127.0.0.1:8001"]


def test_status_page_shows_draining_workers_with_their_streams():
    """When an old generation drains after a reload, its workers show as draining with their open streams."""
    harness, admin = make_admin(app_config(workers=1))
    (old,) = harness.startServing()
    harness.nextConfig = app_config(workers=1)
    harness.supervisor.reload()
    harness.reactor.live()[-1].report("ready")
    old.report("streams 4")
    rows = tables(get(admin, "/")[2])["workers"][1:]
    assert [(row[0], row[3], row[8]) for row in rows] == [("1", "draining", "4"), ("2", "serving", "-")]


def test_status_page_lists_daemon_warnings():
    """When the daemon logs a warning, the status page's log table shows it."""
    harness, admin = make_admin()
    admin.recentLog({"log_level": LogLevel.info, "log_format": "routine", "log_time": 4.0})
    admin.recentLog({"log_level": LogLevel.warn, "log_format": "worker 1.0 died", "log_time": 5.0})
    rows = tables(get(admin, "/")[2])["log"][1:]
    assert [row[1:] for row in rows] == [["warn", "worker 1.0 died"]]


def relayed(log: RecentLog, when: float, text: str, worker: str = "1.0", pid: int = 42,
            level: LogLevel = LogLevel.warn) -> None:
    """One line of a worker as the supervisor relays it (see WorkerProtocol._relay)."""
    log({"log_level": level, "log_format": "worker {worker}[{pid}]: {text}", "log_time": when,
         "worker": worker, "pid": pid, "text": text})


TRACEBACK = [
    "Unhandled Error",
    "Traceback (most recent call last):",
    '  File "/srv/h2proxy/worker.py", line 10, in serve',
    "    handle(request)",
    "--- <exception caught here> ---",
    '  File "/srv/h2proxy/bridge.py", line 20, in handle',
    "    raise ValueError('boom')",
    "builtins.ValueError: boom",
]


def test_a_relayed_traceback_is_one_entry_in_order():
    """When a worker's traceback arrives as one relayed line per event, the recent log keeps
    it as one entry with its lines in order, and the next message is an entry of its own."""
    log = RecentLog()
    for line in TRACEBACK:
        relayed(log, 10.0, line)
    relayed(log, 10.0, "upstream app server 127.0.0.1:8000 is down")
    first, second = log.entries
    assert first.lines == ["worker 1.0[42]: Unhandled Error", *TRACEBACK[1:]]
    assert second.lines == ["worker 1.0[42]: upstream app server 127.0.0.1:8000 is down"]


def test_lines_of_another_worker_or_a_later_read_are_not_merged():
    """When an indented line comes from another worker, or seconds after, it starts its own entry."""
    log = RecentLog()
    relayed(log, 10.0, "Traceback (most recent call last):")
    relayed(log, 10.0, "  File 'x.py', line 1", worker="1.1", pid=43)
    assert [len(entry.lines) for entry in log.entries] == [1, 1]
    relayed(log, 20.0, "Traceback (most recent call last):")
    relayed(log, 25.0, "  File 'y.py', line 2")
    assert [len(entry.lines) for entry in log.entries] == [1, 1, 1, 1]


def test_a_daemon_failure_keeps_its_traceback():
    """When the supervisor itself logs a failure, the entry carries the traceback after the message."""
    from twisted.python.failure import Failure

    log = RecentLog()
    try:
        raise ValueError("boom")
    except ValueError:
        failure = Failure()
    log({"log_level": LogLevel.critical, "log_format": "Unhandled Error", "log_time": 1.0,
         "log_failure": failure})
    (entry,) = log.entries
    assert entry.lines[0] == "Unhandled Error"
    assert entry.lines[1] == "Traceback (most recent call last):"
    assert entry.lines[-1].endswith("ValueError: boom")


def test_the_status_page_shows_a_traceback_as_one_preformatted_row():
    """When the recent log holds a worker's traceback, the page has one row for it, its
    lines in order inside a <pre>."""
    harness, admin = make_admin()
    for line in TRACEBACK:
        relayed(admin.recentLog, 10.0, line)
    page = get(admin, "/")[2]
    rows = tables(page)["log"][1:]
    assert len(rows) == 1
    assert rows[0][2] == "\n".join(["worker 1.0[42]: Unhandled Error", *TRACEBACK[1:]])
    assert '<pre class="msg">worker 1.0[42]: Unhandled Error\nTraceback' in page


def error(when: float, worker: str = "1.0", **fields) -> dict:
    entry = {"time": when, "status": 499, "error": "client_closed", "method": "GET",
             "authority": "example.org", "path": "/feed", "upstream": "app",
             "server": "127.0.0.1:8001", "request_id": f"id{when:g}", "worker": worker}
    entry.update(fields)
    return entry


def test_identical_errors_are_one_group_with_a_count_and_the_latest():
    """When twenty identical errors and two others are recent, there are three groups, newest
    first: the twenty as one with its count, latest time and request id, and the workers."""
    entries = [error(100.0 - i, worker="1.0" if i % 2 else "1.1") for i in range(20)]
    entries.insert(5, error(96.5, status=502, error="connection_refused"))
    entries.append(error(50.0, path="/other"))
    groups = group_errors(entries)
    assert [(g.count, g.latest["time"], g.latest.get("status")) for g in groups] == [
        (20, 100.0, 499), (1, 96.5, 502), (1, 50.0, 499)]
    assert groups[0].latest["request_id"] == "id100"
    assert groups[0].workers == ["1.1", "1.0"]


def test_errors_differing_in_upstream_server_are_not_grouped():
    """When the same request failed on two servers, each server has its row."""
    groups = group_errors([error(2.0), error(1.0, server="[::1]:8002")])
    assert [g.latest["server"] for g in groups] == ["127.0.0.1:8001", "[::1]:8002"]


def test_the_status_page_shows_grouped_errors_with_upstream_and_server():
    """When a worker reports twenty identical errors, the page shows one row with count 20,
    and the upstream and the server each in their own column."""
    harness, admin = make_admin()
    first, second = harness.startServing()
    report(first, recent=[error(100.0 - i) for i in range(20)])
    rows = tables(get(admin, "/")[2])["errors"]
    assert rows[0] == ["Last seen", "Count", "Workers", "Status", "Reason", "Request", "Upstream",
                       "Server", "Last request id"]
    (row,) = rows[1:]
    assert row[1:] == ["20", "1.0", "499", "client_closed", "GET example.org/feed", "app",
                       "127.0.0.1:8001", "id100"]


def test_the_header_shows_the_generation_age_apart_from_the_daemon_uptime():
    """When a reload's generation has served for 5 s in a daemon up for 65 s, the header says
    generation 2 serving for 5s and daemon up 1m 5s."""
    harness, admin = make_admin(app_config(workers=1))
    harness.startServing()
    harness.reactor.advance(60)
    harness.nextConfig = app_config(workers=1)
    harness.supervisor.reload()
    harness.reactor.live()[-1].report("ready")
    harness.reactor.advance(5)
    page = get(admin, "/")[2]
    assert '<span id="generation">generation 2 serving for 5s</span>' in page
    assert '<span id="uptime">daemon up 1m 5s</span>' in page


def test_rate_meter_measures_requests_per_second():
    """When the request total grows by 50 over 10 seconds of samples, the rate is 5/s."""
    meter = RateMeter()
    assert meter.rate() is None
    for second in range(11):
        meter.sample(float(second), 5.0 * second)
    assert meter.rate() == 5.0


def test_admin_listens_on_its_address_and_follows_a_reload():
    """When the admin section changes on reload, the listener moves to the new port; unchanged, it stays."""
    harness, admin = make_admin(app_config(workers=1, admin=AdminConfig(port=9901)))
    admin.listen(harness.supervisor.config.admin)
    (port, site, _, interface), = harness.reactor.tcpServers
    assert (port, interface, site) == (9901, "127.0.0.1", admin.site)
    (process,) = harness.startServing()
    harness.nextConfig = app_config(workers=1, admin=AdminConfig(port=9902))
    harness.supervisor.reload()
    harness.reactor.live()[-1].report("ready")
    assert [server[0] for server in harness.reactor.tcpServers] == [9901, 9902]
    assert admin.config.port == 9902
    admin.stop()
