"""Headless Chromium (Debian's, driven by Playwright) loading a page through the real
daemon the way an operator deploys it in front of a Python app: the page from the
app (compressed on the fly), its assets from a static route on disk (one with a
precompressed sibling, one compressed on the fly, one too small to compress)."""

from __future__ import annotations

import gzip
from urllib.parse import urlsplit

import pytest

from tests.e2e.browser import CHROMIUM, chromium, static_origin
from tests.e2e.conftest import base_config
from tests.e2e.harness import start_proxy, write_config

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} missing (apt-get install chromium)")

TIMEOUT = 20.0

#: Filler that makes a text resource worth compressing (over the 1 KiB default).
FILLER = "".join(f"/* line {i}: padding so that the resource is worth compressing */\n" for i in range(60))

PAGE = (
    """<!doctype html>
<html><head><meta charset="utf-8"><title>static and compressed</title>
<link rel="stylesheet" href="/assets/style.css">
<script src="/assets/app.js"></script>
</head><body>
<h1 id="title">h2proxy</h1>
<img id="logo" src="/assets/logo.svg" width="40" height="40" alt="logo">
<!-- """
    + FILLER.replace("/*", "").replace("*/", "")
    + """ -->
</body></html>
"""
).encode()

STYLE = (FILLER + "#title { color: rgb(4, 5, 6); }\n").encode()
SCRIPT = (FILLER + "window.appLoaded = 'from disk';\n").encode()
LOGO = b'<svg xmlns="http://www.w3.org/2000/svg" width="40" height="40"><rect width="40" height="40" fill="#963"/></svg>'

#: What each resource must arrive as: the page compressed on the fly from the app
#: (brotli, the server's first choice, which Chromium accepts); the stylesheet from
#: its .gz sibling (the only coding on disk); the script compressed on the fly on
#: the static route; the small logo as it is.
EXPECTED_CODINGS = {
    "/index.html": "br",
    "/assets/style.css": "gzip",
    "/assets/app.js": "br",
    "/assets/logo.svg": None,
}


@pytest.fixture(scope="module")
def site(tmp_path_factory, origin, certificate):
    """The daemon with the page from an app origin and the assets from a static
    route, both compressing; yields the proxy."""
    tmp = tmp_path_factory.mktemp("browser-static")
    assets = tmp / "assets"
    assets.mkdir()
    (assets / "style.css").write_bytes(STYLE)
    (assets / "style.css.gz").write_bytes(gzip.compress(STYLE))
    (assets / "app.js").write_bytes(SCRIPT)
    (assets / "logo.svg").write_bytes(LOGO)
    with static_origin({"/index.html": ("text/html; charset=utf-8", PAGE)}) as app_port:
        config = base_config(
            origin.port,
            certificate,
            upstreams={"app": {"servers": [{"address": f"127.0.0.1:{app_port}"}]}},
            routes=[
                {"host": "*", "path": "/assets", "static": {"root": str(assets)}, "compress": True},
                {"host": "*", "path": "/", "upstream": "app", "compress": True},
            ],
        )
        proxy = start_proxy(write_config(tmp, config), ["tls", "h2c"])
        try:
            yield proxy
        finally:
            proxy.stop()


@pytest.fixture(scope="module")
def browser():
    with chromium() as launched:
        yield launched


def test_page_from_app_and_assets_from_disk_arrive_compressed_and_render(site, browser):
    """When Chromium loads a page whose HTML comes from the app and whose assets come from a static route, every resource loads with 200 over h2 in the coding expected of it (br on the fly, gzip from a precompressed sibling, none for a small image), and the page renders with them."""
    context = browser.new_context(ignore_https_errors=True)
    try:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT * 1000)
        seen: dict[str, tuple[int, str | None]] = {}
        page.on(
            "requestfinished",
            lambda request: seen.__setitem__(
                urlsplit(request.url).path,
                (request.response().status, request.response().headers.get("content-encoding")),
            ),
        )
        response = page.goto(site.url("tls", "/index.html"), wait_until="load")
        assert response.status == 200
        assert page.evaluate("window.appLoaded") == "from disk"
        assert page.evaluate("getComputedStyle(document.getElementById('title')).color") == "rgb(4, 5, 6)"
        assert page.evaluate("document.getElementById('logo').naturalWidth") == 40
        protocols = page.evaluate(
            """() => Object.fromEntries([...performance.getEntriesByType('navigation'),
                 ...performance.getEntriesByType('resource')].map(e => [new URL(e.name).pathname, e.nextHopProtocol]))"""
        )
        assert {path: protocols.get(path) for path in EXPECTED_CODINGS} == dict.fromkeys(EXPECTED_CODINGS, "h2")
        assert {path: seen.get(path) for path in EXPECTED_CODINGS} == {
            path: (200, coding) for path, coding in EXPECTED_CODINGS.items()
        }
    finally:
        context.close()
