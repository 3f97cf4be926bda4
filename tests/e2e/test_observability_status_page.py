"""The status page in a real headless browser (Debian's chromium): the rendered worker and
upstream tables, and a screenshot kept as a test artifact."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

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


def chromium(url: str, profile: Path, *mode: str) -> subprocess.CompletedProcess:
    """Run headless chromium once on C{url} (bounded in time, loopback only)."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    assert binary, "chromium is not installed: apt-get install chromium (scripts/test does it)"
    return subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--hide-scrollbars", f"--user-data-dir={profile}",
         "--window-size=1400,1100", *mode, url],
        capture_output=True, timeout=90, text=True,
    )


def test_status_page_renders_workers_and_upstreams_in_chromium(tmp_path, origin, certificate):
    """When chromium loads the status page of a daemon with 2 workers after some traffic, its
    rendered DOM has one row per worker and per upstream server (with health and load), the
    502 among the recent errors, and a screenshot is saved."""
    dead = closed_port()
    config = base_config(
        origin.port, certificate, workers=2, admin={"address": "127.0.0.1", "port": 0},
        upstreams={"app": {"servers": [{"address": f"127.0.0.1:{origin.port}"}]},
                   "legacy": {"servers": [{"address": f"127.0.0.1:{dead}"}], "retries": 0}},
        routes=[{"host": "*", "path": "/legacy", "upstream": "legacy"},
                {"host": "*", "path": "/", "upstream": "app"}],
    )
    proxy = start_proxy(write_config(tmp_path, config), ["tls", "h2c"])
    try:
        port = int(proxy.wait_for(r"admin listener on [^ ]*:(\d+) ").group(1))
        client = H2Client(proxy.ports["h2c"])
        try:
            for _ in range(8):
                assert client.response(client.request("GET", "/bytes/2048"))[0] == 200
            assert client.response(client.request("GET", "/legacy/report"))[0] == 502
        finally:
            client.close()
        scrape_until(port, lambda s: sum(v for (name, _), v in s.items() if name == "h2proxy_requests_total") >= 9)

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
        assert sum(int(row[7]) for row in workers) == 9

        header, *servers = tables["upstreams"]
        rows = {(row[0], row[1]): row for row in servers}
        assert set(rows) == {("app", f"127.0.0.1:{origin.port}"), ("legacy", f"127.0.0.1:{dead}")}
        assert rows[("app", f"127.0.0.1:{origin.port}")][2] == "up"

        header, *errors = tables["errors"]
        assert [(row[2], row[3]) for row in errors] == [("502", "connection_refused")]
        assert "/legacy/report" in errors[0][4]

        shot = tmp_path / "status-page.png"
        result = chromium(url, tmp_path / "profile-shot", f"--screenshot={shot}")
        assert result.returncode == 0 and shot.stat().st_size > 10_000, result.stderr[-2000:]
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(shot, ARTIFACTS / "status-page.png")
    finally:
        proxy.stop()
