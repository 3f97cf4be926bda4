"""Headless Chromium (Debian's, driven by Playwright) through the real daemon: a page
with sub-resources over h2, and WebSockets over RFC 8441 (HTTP/2 extended CONNECT on
the page's own connection) closed by the page and by the server."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest

from tests.e2e.browser import CHROMIUM, chromium, static_origin
from tests.e2e.conftest import base_config
from tests.e2e.harness import poll_until, start_proxy, write_config

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} missing (apt-get install chromium)")

TIMEOUT = 20.0
#: The page and its sub-resources (Chromium may also ask for /favicon.ico: not counted).
PAGE_PATHS = ("/page/index.html", "/page/style.css", "/page/app.js", "/page/logo.svg", "/page/data.json")

#: Opens a WebSocket to the page's own origin, echoes one message, then closes it
#: the way the test says: the page (ws.close) or the server (the origin's ``close``
#: message). Resolves with what the page saw.
WEBSOCKET_SCRIPT = """async (who) => {
  const ws = new WebSocket(`wss://${location.host}/ws`, ["echo"]);
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = () => reject(new Error("error before open")); });
  const closed = new Promise(resolve => { ws.onclose = e => resolve({code: e.code, wasClean: e.wasClean, reason: e.reason}); });
  const echo = new Promise(resolve => { ws.onmessage = e => resolve(e.data); });
  ws.send("hello through h2proxy");
  const echoed = await echo;
  if (who === "page") { ws.close(1000, "page done"); } else { ws.send("close"); }
  return {echoed, protocol: ws.protocol, close: await closed};
}"""


@pytest.fixture(scope="module")
def site(tmp_path_factory, origin, certificate):
    """The daemon in front of a static origin (the page) and the demo origin (/ws),
    with a JSON access log; yields (proxy, access log path)."""
    tmp = tmp_path_factory.mktemp("browser")
    log_path = tmp / "access.log"
    with static_origin() as static_port:
        config = base_config(
            origin.port,
            certificate,
            logging={"access_log": str(log_path), "format": "json"},
            upstreams={
                "app": {"servers": [{"address": f"127.0.0.1:{origin.port}"}]},
                "static": {"servers": [{"address": f"127.0.0.1:{static_port}"}]},
            },
            routes=[
                {"host": "*", "path": "/ws", "upstream": "app"},
                {"host": "*", "path": "/", "upstream": "static"},
            ],
        )
        proxy = start_proxy(write_config(tmp, config), ["tls", "h2c"])
        try:
            yield proxy, log_path
        finally:
            proxy.stop()


@pytest.fixture(scope="module")
def browser():
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser):
    """A fresh browser context per test: its own connection to the proxy."""
    context = browser.new_context(ignore_https_errors=True)
    try:
        opened = context.new_page()
        opened.set_default_timeout(TIMEOUT * 1000)
        yield opened
    finally:
        context.close()


def access_log(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def websocket_log_lines(path, count: int) -> list[dict]:
    """The access log lines of /ws requests, once there are C{count} (a tunnel is
    logged when it ends)."""

    def lines():
        found = [line for line in access_log(path) if line["path"] == "/ws"]
        return found if len(found) >= count else None

    return poll_until(lines, TIMEOUT, f"{count} /ws lines in {path}")


def test_page_and_subresources_load_over_h2(site, page):
    """When Chromium loads a page through the proxy's TLS listener, the page and each of its sub-resources (stylesheet, script, image, fetched JSON) load with 200 over h2, and the page renders them."""
    proxy, _ = site
    statuses: dict[str, int] = {}
    page.on("requestfinished", lambda request: statuses.__setitem__(request.url, request.response().status))
    response = page.goto(proxy.url("tls", "/page/index.html"), wait_until="load")
    assert response.status == 200
    assert page.evaluate("window.dataLoaded") == "loaded through the proxy"
    protocols = page.evaluate(
        """() => Object.fromEntries([...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')]
             .map(e => [new URL(e.name).pathname, e.nextHopProtocol]))"""
    )
    assert {path: protocols.get(path) for path in PAGE_PATHS} == {path: "h2" for path in PAGE_PATHS}
    assert page.evaluate("window.appLoaded") is True
    assert page.evaluate("getComputedStyle(document.getElementById('title')).color") == "rgb(1, 2, 3)"
    assert page.evaluate("document.getElementById('logo').naturalWidth") == 40
    paths = {urlsplit(url).path: status for url, status in statuses.items()}
    assert {path: paths.get(path) for path in PAGE_PATHS} == {path: 200 for path in PAGE_PATHS}


@pytest.mark.parametrize("who", ["page", "server"])
def test_websocket_over_rfc8441_echoes_and_closes_cleanly(site, page, who):
    """When a page on an h2 connection opens a WebSocket to its own origin, it goes over RFC 8441 (an HTTP/2 CONNECT in the access log), a message echoes, and a close started by the page (ws.close) or by the server ends with wasClean and code 1000."""
    proxy, log_path = site
    before = len([line for line in access_log(log_path) if line["path"] == "/ws"])
    page.goto(proxy.url("tls", "/page/index.html"), wait_until="load")
    assert page.evaluate("performance.getEntriesByType('navigation')[0].nextHopProtocol") == "h2"
    seen = page.evaluate(WEBSOCKET_SCRIPT, who)
    assert seen["echoed"] == "hello through h2proxy"
    assert seen["protocol"] == "echo"
    expected_reason = "page done" if who == "page" else ""
    assert seen["close"] == {"code": 1000, "wasClean": True, "reason": expected_reason}
    line = websocket_log_lines(log_path, before + 1)[before]
    assert (line["method"], line["protocol"], line["status"], line["error"]) == ("CONNECT", "h2", 200, None)
