"""Real clients for the browser end-to-end tests: headless Chromium driven by
Playwright, and a static origin serving a page with sub-resources.

Chromium is Debian's (/usr/bin/chromium): Playwright's own browser download
(``playwright install``) is not available here, and its Python package drives a
system Chromium through ``executable_path`` just as well. The dev certificate is
self-signed, so the browser ignores certificate errors; everything stays on
127.0.0.1.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")

#: Headless and quiet: no QUIC (the proxy speaks TCP only, and an Alt-Svc probe would
#: muddy the protocol checks), no background traffic off the machine.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--ignore-certificate-errors",
]

#: The page and its sub-resources: a stylesheet, a script, an image and a fetched
#: JSON document, so that one load makes several requests on the h2 connection.
PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>h2proxy browser test</title>
<link rel="stylesheet" href="/page/style.css">
<script src="/page/app.js"></script>
</head><body>
<h1 id="title">h2proxy</h1>
<img id="logo" src="/page/logo.svg" width="40" height="40" alt="logo">
<p id="data">waiting</p>
</body></html>
"""

STATIC = {
    "/page/index.html": ("text/html; charset=utf-8", PAGE),
    "/page/style.css": ("text/css", b"#title { color: rgb(1, 2, 3); }\n"),
    "/page/app.js": (
        "application/javascript",
        b"window.appLoaded = true;\n"
        b"window.dataLoaded = fetch('/page/data.json').then(r => r.json())\n"
        b"  .then(d => { document.getElementById('data').textContent = d.message; return d.message; });\n",
    ),
    "/page/logo.svg": (
        "image/svg+xml",
        b'<svg xmlns="http://www.w3.org/2000/svg" width="40" height="40">'
        b'<rect width="40" height="40" fill="#369"/></svg>',
    ),
    "/page/data.json": ("application/json", b'{"message": "loaded through the proxy"}'),
}


class _StaticHandler(BaseHTTPRequestHandler):
    """Serves L{files} (L{STATIC} unless a subclass says otherwise) over HTTP/1.1
    keep-alive; 404 for anything else."""

    protocol_version = "HTTP/1.1"
    files: dict[str, tuple[str, bytes]] = STATIC

    def do_GET(self) -> None:
        found = self.files.get(self.path.split("?", 1)[0])
        content_type, body = found if found is not None else ("text/plain", b"not found\n")
        self.send_response(200 if found is not None else 404)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads what the browser and the proxy saw instead."""


@contextmanager
def static_origin(files: dict[str, tuple[str, bytes]] | None = None) -> Iterator[int]:
    """A static HTTP/1.1 origin on 127.0.0.1 in a thread serving C{files} (path to
    content type and body; L{STATIC} by default); yields its port."""
    handler = _StaticHandler if files is None else type("_Files", (_StaticHandler,), {"files": files})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="static-origin", daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@contextmanager
def chromium() -> Iterator[object]:
    """A headless Debian Chromium under Playwright; yields the Browser."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
