"""Response compression through the real daemon, with real clients: curl
``--compressed`` over HTTP/2 and HTTP/1.1, brotli decoded with the brotli module, the
responses that must go out as they came, and server-sent events that reach the
client one by one through a compressing route.

The origin is a small HTTP/1.1 server on 127.0.0.1 in the test process, so each
response's type and fields are exactly what a rule needs, and the events test can
hold each event back until the client has decoded the one before (a gate per event,
opened by the test: no sleeps).
"""

from __future__ import annotations

import http.server
import json
import threading
import uuid
import zlib
from collections import defaultdict

import brotli
import httpx
import pytest

from tests.e2e.conftest import base_config
from tests.e2e.harness import poll_until, run, start_proxy, write_config

#: Seconds a client waits for one event, and the origin for the test to open a gate.
EVENT_TIMEOUT = 10.0


def page() -> bytes:
    """About 100 KB of HTML with varying text."""
    rows = [f'<tr><td class="n">{i}</td><td>item {i * 7919 % 10007}</td><td>{"abcdefghij"[i % 10] * (i % 13)}</td></tr>'
            for i in range(1600)]
    return ("<!doctype html><html><body><table>" + "\n".join(rows) + "</table></body></html>").encode()


PAGE = page()
#: The gates of the events endpoint: (stream name, event index) -> opened.
GATES: defaultdict[tuple[str, int], threading.Event] = defaultdict(threading.Event)


class Handler(http.server.BaseHTTPRequestHandler):
    """The origin's endpoints: /page (HTML), /small, /image (PNG), /no-transform,
    /events/NAME (an event stream whose event N waits for its gate)."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path.startswith("/events/"):
            self.events(self.path.rsplit("/", 1)[1])
            return
        bodies = {
            "/page": (PAGE, "text/html; charset=utf-8", {"ETag": '"page-1"', "Accept-Ranges": "bytes"}),
            "/small": (b"short text\n" * 10, "text/plain", {}),
            "/image": (bytes(range(256)) * 40, "image/png", {}),
            "/no-transform": (PAGE, "text/html", {"Cache-Control": "public, no-transform"}),
        }
        body, ctype, extra = bodies[self.path.partition("?")[0]]
        if "ETag" in extra and self.headers.get("If-None-Match", "").removeprefix("W/") == extra["ETag"]:
            self.send_response(304)
            self.send_header("ETag", extra["ETag"])
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_HEAD = do_GET

    def events(self, name: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for index in range(3):
            if index and not GATES[(name, index)].wait(EVENT_TIMEOUT):
                break
            event = f"id: {index}\ndata: event {index}\n\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, format: str, *args) -> None:
        """Quiet: the test reads the responses, not the origin's log."""


@pytest.fixture(scope="module")
def origin_port():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def compressing_proxy(origin_port, certificate, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("compression")
    config = base_config(origin_port, certificate)
    config["routes"] = [
        {"host": "*", "path": "/", "upstream": "app", "compress": True},
        {"host": "*", "path": "/events", "upstream": "app", "compress": {"types": ["text/event-stream"]}},
    ]
    config["logging"] = {"access_log": str(workdir / "access.log"), "format": "json"}
    daemon = start_proxy(write_config(workdir, config), ["tls", "h2c"])
    daemon.access_log = workdir / "access.log"
    yield daemon
    daemon.stop()


def curl(*args: str) -> tuple[dict[str, str], bytes, str]:
    """The response's fields (lowercase names), body and HTTP version from curl."""
    result = run(["curl", "-sS", "-k", "-D", "/dev/stderr", "-w", "%{stderr}%{http_version}", *args], timeout=60)
    assert result.returncode == 0, result.stderr
    text = result.stderr.decode("latin-1")
    head, _, version = text.rpartition("\r\n\r\n")
    fields = {}
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    return fields, result.stdout, version.strip()


@pytest.mark.parametrize("protocol, version", [("--http2", "2"), ("--http1.1", "1.1")])
def test_curl_compressed_gets_gzip_decoding_to_the_origin_body(compressing_proxy, protocol, version):
    """When curl asks --compressed over h2 or HTTP/1.1, the page comes gzipped, chunked
    or framed by the front end, and decodes to the origin's bytes."""
    fields, body, seen = curl("--compressed", "-H", "accept-encoding: gzip", protocol,
                              compressing_proxy.url("tls", "/page"))
    assert seen == version
    assert fields["content-encoding"] == "gzip" and "content-length" not in fields
    assert fields["vary"] == "Accept-Encoding" and fields["etag"] == 'W/"page-1"' and "accept-ranges" not in fields
    assert body == PAGE
    if version == "1.1":
        assert fields["transfer-encoding"] == "chunked"


def test_brotli_decodes_with_the_brotli_module(compressing_proxy):
    """When the client accepts only br, the body is brotli and much smaller."""
    fields, raw, _ = curl("-H", "accept-encoding: br", "--http2", compressing_proxy.url("tls", "/page"))
    assert fields["content-encoding"] == "br"
    assert brotli.decompress(raw) == PAGE and len(raw) < len(PAGE) / 4


def test_zstd_is_offered_to_a_client_preferring_it(compressing_proxy):
    """When a client weights zstd highest, it gets zstd."""
    import zstandard

    fields, raw, _ = curl("-H", "accept-encoding: gzip;q=0.5, zstd", compressing_proxy.url("h2c", "/page"))
    assert fields["content-encoding"] == "zstd"
    assert zstandard.ZstdDecompressor().decompressobj().decompress(raw) == PAGE


@pytest.mark.parametrize(
    "path, accept, vary",
    [("/page", None, True), ("/small", "gzip", False), ("/image", "gzip", False), ("/no-transform", "gzip", False)],
)
def test_responses_that_go_as_they_came(compressing_proxy, path, accept, vary):
    """When the client accepts no coding, the response is short, an image or marked
    no-transform, the body is the origin's with its Content-Length; only an
    eligible response gets Vary."""
    args = ["-H", f"accept-encoding: {accept}"] if accept else []
    fields, body, _ = curl(*args, "--http2", compressing_proxy.url("tls", path))
    assert "content-encoding" not in fields and int(fields["content-length"]) == len(body)
    assert ("vary" in fields) is vary


def test_a_head_gets_the_head_a_get_would(compressing_proxy):
    """When a HEAD is sent, the head names the coding and has no Content-Length."""
    fields, body, _ = curl("-I", "-H", "accept-encoding: gzip", "--http2", compressing_proxy.url("tls", "/page"))
    assert fields["content-encoding"] == "gzip" and "content-length" not in fields
    assert body.startswith(b"HTTP/2 200") and body.endswith(b"\r\n\r\n")  # -I prints the head, nothing more


@pytest.mark.parametrize("http2", [True, False])
def test_server_sent_events_arrive_one_by_one_compressed(compressing_proxy, http2):
    """When the origin sends event N only after the client decoded event N-1, every
    event still arrives: each is flushed through the encoder as it comes."""
    name = uuid.uuid4().hex
    gunzip = zlib.decompressobj(16 + zlib.MAX_WBITS)
    client = httpx.Client(http2=http2, http1=not http2, verify=False, timeout=httpx.Timeout(EVENT_TIMEOUT))
    with client, client.stream("GET", compressing_proxy.url("tls", f"/events/{name}"),
                               headers={"accept-encoding": "gzip"}) as response:
        assert response.headers["content-encoding"] == "gzip"
        raw = response.iter_raw()
        decoded = b""
        for index in range(3):
            wanted = f"data: event {index}\n\n".encode()
            while wanted not in decoded:
                decoded += gunzip.decompress(next(raw))
            if index < 2:
                GATES[(name, index + 1)].set()
        assert decoded == b"".join(f"id: {i}\ndata: event {i}\n\n".encode() for i in range(3))


def test_the_access_log_names_the_coding(compressing_proxy):
    """When a compressed response is logged, its record names the coding."""
    curl("-H", "accept-encoding: br", compressing_proxy.url("h2c", "/page?logged"))

    def logged() -> list[dict]:
        log = compressing_proxy.access_log
        lines = log.read_text().splitlines() if log.exists() else []
        return [json.loads(line) for line in lines if '"/page?logged"' in line]

    records = poll_until(logged, what="the access log line of /page?logged")
    assert records[0]["coding"] == "br"


def test_an_http10_client_gets_a_close_delimited_compressed_body(compressing_proxy):
    """When an HTTP/1.0 client (no chunking) accepts gzip, the encoded body runs to
    the connection's close and decodes to the origin's bytes."""
    fields, body, _ = curl("--compressed", "-H", "accept-encoding: gzip", "--http1.0",
                                 compressing_proxy.url("h2c", "/page"))
    assert fields["content-encoding"] == "gzip"
    assert "content-length" not in fields and "transfer-encoding" not in fields
    assert body == PAGE


def test_keep_alive_serves_the_next_request_after_a_compressed_one(compressing_proxy):
    """When two compressed responses go over one HTTP/1.1 connection, the first
    one's chunked end leaves the connection usable for the second."""
    url = compressing_proxy.url("h2c", "/page")
    result = run(["curl", "-sS", "-v", "--http1.1", "--compressed", "-o", "/dev/null", "-o", "/dev/null", url, url],
                 timeout=60)
    assert result.returncode == 0, result.stderr
    assert b"Re-using existing connection" in result.stderr or b"Reusing existing" in result.stderr


@pytest.mark.parametrize("protocol", ["--http2", "--http1.1"])
def test_a_revalidation_of_the_encoded_variant_names_its_weak_etag_and_vary(compressing_proxy, protocol):
    """When a client revalidates the gzip variant it holds (If-None-Match with the
    weak ETag it was given), the 304 carries that ETag and the Vary the 200 had
    (RFC 9110 15.4.5), so the client's cache can match and refresh it."""
    fields, body, _ = curl("-H", "accept-encoding: gzip", "-H", 'if-none-match: W/"page-1"', protocol,
                           compressing_proxy.url("tls", "/page"))
    assert body == b""
    assert fields["etag"] == 'W/"page-1"' and fields["vary"] == "Accept-Encoding"
