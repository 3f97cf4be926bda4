"""The status page in a real headless browser (Debian's chromium): the rendered worker,
upstream, error and log tables, its width at 1280 px, and a screenshot kept as a test
artifact."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.request import urlopen

import h2.errors
import h2.events

from tests.e2e.conftest import base_config
from tests.e2e.h2client import H2Client
from tests.e2e.harness import start_proxy, write_config
from tests.e2e.test_observability_logs import closed_port
from tests.e2e.test_observability_metrics import scrape_until

#: Where the screenshot is copied for people to look at (gitignored).
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


class Tables(HTMLParser):
    """Each table's rows of cell texts, by table id, from the DOM chromium rendered."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
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


def chromium(url: str, profile: Path, *mode: str, width: int = 1280) -> subprocess.CompletedProcess:
    """Run headless chromium once on C{url} (bounded in time, loopback only)."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    assert binary, "chromium is not installed: apt-get install chromium (scripts/test does it)"
    return subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--hide-scrollbars", f"--user-data-dir={profile}",
         f"--window-size={width},1100", *mode, url],
        capture_output=True, timeout=90, text=True,
    )


#: A multi-line message a worker writes on its stderr before its logging starts (the way a
#: Python warning prints: a long first line, then indented lines), which the supervisor
#: relays line by line. Its first line has a long unbroken token, the worst case for width.
INJECTED = [
    "/srv/app/settings.py:12: RuntimeWarning: injected by the status page test: " + "x" * 300,
    "  first indented line of the same message",
    "  second indented line of the same message",
]
SITECUSTOMIZE = f"""
import sys
if "h2proxy.worker.process" in sys.orig_argv:
    sys.stderr.write({"".join(line + chr(10) for line in INJECTED)!r})
    sys.stderr.flush()
"""


def reset_after_headers(client: H2Client, path: str) -> None:
    """Request C{path}, and reset the stream once the response headers are in (a client
    that goes away: the proxy records client_closed)."""
    stream = client.request("GET", path)
    client.run_until(lambda: any(isinstance(e, h2.events.ResponseReceived) and e.stream_id == stream
                                 for e in client.events))
    client.conn.reset_stream(stream, h2.errors.ErrorCodes.CANCEL)
    client.flush()


def page_width(page: str, tmp_path: Path) -> int:
    """The rendered width of C{page} (the status page's own HTML, with a measuring script
    appended: the page itself carries none) in chromium at a 1280 px viewport."""
    probe = tmp_path / "measure.html"
    probe.write_text(page.replace("</body>", "<script>document.body.setAttribute('data-width', "
                                  "document.documentElement.scrollWidth)</script></body>"))
    dom = chromium(probe.as_uri(), tmp_path / "profile-measure", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    match = re.search(r'data-width="(\d+)"', dom.stdout)
    assert match, dom.stdout[-2000:]
    return int(match.group(1))


def test_status_page_renders_workers_upstreams_and_errors_in_chromium(tmp_path, origin, certificate):
    """When chromium loads the status page of a daemon with 2 workers after some traffic, a
    502, twenty identical client resets and a worker's multi-line message, its rendered DOM
    has one row per worker and per upstream server (with health and load), the 502 and
    the resets as one row with their count below it, each naming its upstream, the message as one row
    with its lines in order, and the page is no wider than a 1280 px viewport; a
    screenshot is saved."""
    dead = closed_port()
    config = base_config(
        origin.port, certificate, workers=2, admin={"address": "127.0.0.1", "port": 0},
        upstreams={"app": {"servers": [{"address": f"127.0.0.1:{origin.port}"}]},
                   "legacy": {"servers": [{"address": f"127.0.0.1:{dead}"}], "retries": 0}},
        routes=[{"host": "*", "path": "/legacy", "upstream": "legacy"},
                {"host": "*", "path": "/", "upstream": "app"}],
    )
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    pythonpath = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    proxy = start_proxy(write_config(tmp_path, config), ["tls", "h2c"], env={"PYTHONPATH": pythonpath})
    try:
        port = int(proxy.wait_for(r"admin listener on [^ ]*:(\d+) ").group(1))
        client = H2Client(proxy.ports["h2c"])
        try:
            for _ in range(8):
                assert client.response(client.request("GET", "/bytes/2048"))[0] == 200
            for _ in range(20):
                reset_after_headers(client, "/drip?chunks=100&interval=0.1")
            # last: a worker keeps its 20 most recent errors (accesslog.RECENT_ERRORS)
            assert client.response(client.request("GET", "/legacy/report"))[0] == 502
        finally:
            client.close()
        scrape_until(port, lambda s: sum(v for (name, _), v in s.items() if name == "h2proxy_requests_total") >= 29)

        url = f"http://127.0.0.1:{port}/"
        dom = chromium(url, tmp_path / "profile-dom", "--dump-dom")
        assert dom.returncode == 0, dom.stderr[-2000:]
        parser = Tables()
        parser.feed(dom.stdout)
        tables = parser.tables

        header, *workers = tables["workers"]
        assert header[:4] == ["Generation", "Worker", "PID", "State"]
        assert sorted(row[1] for row in workers) == ["1.0", "1.1"]
        assert all(row[3] == "serving" for row in workers)
        assert sum(int(row[7]) for row in workers) == 29

        header, *servers = tables["upstreams"]
        rows = {(row[0], row[1]): row for row in servers}
        assert set(rows) == {("app", f"127.0.0.1:{origin.port}"), ("legacy", f"127.0.0.1:{dead}")}
        assert rows[("app", f"127.0.0.1:{origin.port}")][2] == "up"

        header, *errors = tables["errors"]
        assert header[:5] == ["Last seen", "Count", "Workers", "Status", "Reason"]
        assert [(row[1], row[4], row[6]) for row in errors] == [
            ("1", "connection_refused", "legacy"), ("19", "client_closed", "app")]
        assert "/legacy/report" in errors[0][5] and "/drip" in errors[1][5]

        messages = [row[2] for row in tables["log"][1:] if "injected by the status page test" in row[2]]
        assert len(messages) == 2, tables["log"]  # one per worker, each one row
        assert all(message.splitlines()[1:] == INJECTED[1:] for message in messages), messages

        assert page_width(urlopen(url, timeout=10).read().decode(), tmp_path) <= 1280

        shot = tmp_path / "status-page.png"
        result = chromium(url, tmp_path / "profile-shot", f"--screenshot={shot}")
        assert result.returncode == 0 and shot.stat().st_size > 10_000, result.stderr[-2000:]
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(shot, ARTIFACTS / "status-page.png")
        assert not re.search(r"Traceback|Unhandled Error|#critical", "\n".join(proxy.output.lines))
    finally:
        proxy.stop()
