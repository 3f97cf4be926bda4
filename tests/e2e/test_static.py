"""Static routes through the real daemon with curl (HTTP/2 over TLS, HTTP/1.1) and
nghttp: bodies and types, ranges, conditionals, HEAD, a precompressed sibling,
traversal attempts, directories, a 64 MiB file intact over TLS, and a small HTTP/2
window (flow control holds the file back, nothing is lost)."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import base_config
from tests.e2e.harness import poll_until, run, start_proxy, write_config

PROTOCOLS = {"h2": ["--http2"], "http/1.1": ["--http1.1"]}
BIG = 64 * 1024 * 1024


@pytest.fixture(scope="module")
def site(workdir) -> Path:
    root = workdir / "site"
    (root / "css").mkdir(parents=True)
    (root / "docs").mkdir()
    (root / "empty").mkdir()
    (root / "hello.txt").write_bytes(b"0123456789abcdefghijklmnopqrstuvwxyz\n")
    (root / "css" / "a.css").write_bytes(b"body { color: red }\n" * 50)
    (root / "css" / "a.css.gz").write_bytes(gzip.compress((root / "css" / "a.css").read_bytes()))
    (root / "docs" / "index.html").write_bytes(b"<h1>docs</h1>\n")
    with open(root / "big.bin", "wb") as f:
        for _ in range(BIG // (1024 * 1024)):
            f.write(os.urandom(1024 * 1024))
    (workdir / "secret").write_bytes(b"TOP-SECRET\n")
    os.mkfifo(root / "fifo")
    return root


@pytest.fixture(scope="module")
def daemon(workdir, origin, certificate, site):
    config = base_config(origin.port, certificate, routes=[
        {"path": "/", "upstream": "app"},
        {"path": "/static", "static": {"root": str(site), "max_age": "1h"}},
    ], logging={"access_log": str(workdir / "static-access.log"), "format": "json"})
    proxy = start_proxy(write_config(workdir, config), ["tls", "h2c"])
    yield proxy
    proxy.stop()


def curl(daemon, workdir, path: str, *options: str, protocol: str = "h2") -> tuple[int, dict[str, str], bytes]:
    """Status, response fields (lowercase names) and body of one curl request on the TLS listener."""
    head, body = workdir / "static-head.txt", workdir / "static-body.bin"
    body.unlink(missing_ok=True)  # curl writes no file for an empty body
    result = run(["curl", "-sS", "-k", *PROTOCOLS[protocol], "-D", str(head), "-o", str(body), *options,
                  daemon.url("tls", path)], timeout=120)
    assert result.returncode == 0, result.stderr
    lines = head.read_text().splitlines()
    fields = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in fields.items()}, body.read_bytes() if body.exists() else b""


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_file_with_its_type_and_validators(daemon, workdir, site, protocol):
    status, fields, body = curl(daemon, workdir, "/static/css/a.css", protocol=protocol)
    assert (status, body) == (200, (site / "css" / "a.css").read_bytes())
    assert fields["content-type"] == "text/css; charset=utf-8"
    assert fields["cache-control"] == "max-age=3600" and fields["accept-ranges"] == "bytes"
    assert fields["etag"].startswith('"') and "last-modified" in fields and "x-request-id" in fields


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_ranges(daemon, workdir, site, protocol):
    status, fields, body = curl(daemon, workdir, "/static/hello.txt", "-r", "10-19", protocol=protocol)
    assert (status, body, fields["content-range"]) == (206, b"abcdefghij", "bytes 10-19/37")
    status, fields, _ = curl(daemon, workdir, "/static/hello.txt", "-r", "999999-", protocol=protocol)
    assert (status, fields["content-range"]) == (416, "bytes */37")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_if_none_match_gets_304_and_head_gets_no_body(daemon, workdir, protocol):
    _, fields, _ = curl(daemon, workdir, "/static/hello.txt", protocol=protocol)
    status, again, body = curl(
        daemon, workdir, "/static/hello.txt", "-H", f"If-None-Match: {fields['etag']}", protocol=protocol)
    assert (status, body, again["etag"]) == (304, b"", fields["etag"])
    status, head, output = curl(daemon, workdir, "/static/hello.txt", "-I")  # -I writes the head as the output
    assert (status, head["content-length"]) == (200, "37")
    assert output.endswith(b"\r\n\r\n") and b"0123456789" not in output


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_hostile_conditionals_ranges_and_files(daemon, workdir, protocol):
    """A failed If-Match is 412; a Range position of 5000 digits is read as larger
    than the file (206 of all of it), not an error; a date that overflows is
    ignored; a FIFO under the root is 404
    without blocking; every answer carries Date; the log stays clean."""
    status, fields, body = curl(daemon, workdir, "/static/hello.txt", "-H", 'If-Match: "nope"', protocol=protocol)
    assert (status, body) == (412, b"") and "date" in fields
    status, fields, body = curl(daemon, workdir, "/static/hello.txt", "-H", "Range: bytes=0-" + "9" * 5000,
                                protocol=protocol)
    assert (status, fields["content-range"], len(body)) == (206, "bytes 0-36/37", 37)
    status, _, body = curl(daemon, workdir, "/static/hello.txt", "-H",
                           "If-Modified-Since: Sun, 06 Nov 99999999999 08:49:37 GMT", protocol=protocol)
    assert (status, len(body)) == (200, 37)
    assert curl(daemon, workdir, "/static/fifo", protocol=protocol)[0] == 404
    assert curl(daemon, workdir, "/static/" + "n" * 300, protocol=protocol)[0] == 404
    daemon.check_log()


def test_a_precompressed_sibling(daemon, workdir, site):
    status, fields, body = curl(daemon, workdir, "/static/css/a.css", "--compressed")
    assert (status, fields["content-encoding"], fields["vary"]) == (200, "gzip", "accept-encoding")
    assert body == (site / "css" / "a.css").read_bytes()


@pytest.mark.parametrize("path", ["/static/../secret", "/static/%2e%2e/secret", "/static/..%2fsecret",
                                  "/static/css/%2e%2e/%2e%2e/secret", "/static/%2e%2e%2f%2e%2e%2fsecret"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_traversal_attempts_are_404(daemon, workdir, path, protocol):
    status, _, body = curl(daemon, workdir, path, "--path-as-is", protocol=protocol)
    assert status == 404 and b"TOP-SECRET" not in body


def test_directories(daemon, workdir):
    assert curl(daemon, workdir, "/static/docs/")[2] == b"<h1>docs</h1>\n"
    status, fields, _ = curl(daemon, workdir, "/static/docs?x=1")
    assert (status, fields["location"]) == (301, "/static/docs/?x=1")
    assert curl(daemon, workdir, "/static/empty/")[0] == 404


def test_a_64_mib_file_over_tls_h2_arrives_intact(daemon, workdir, site):
    status, fields, body = curl(daemon, workdir, "/static/big.bin")
    assert (status, int(fields["content-length"])) == (200, BIG)
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256((site / "big.bin").read_bytes()).hexdigest()


def test_a_small_window_holds_the_file_back_without_loss(daemon, workdir, site):
    """nghttp with a 64 KiB stream window: the proxy sends only what the window allows."""
    result = run(["nghttp", "-W", "16", "-w", "16", "-s", daemon.url("tls", "/static/big.bin")], timeout=300)
    assert result.returncode == 0, result.stderr
    assert hashlib.sha256(result.stdout[: BIG]).digest() == hashlib.sha256((site / "big.bin").read_bytes()).digest()


def test_a_post_with_a_body_gets_405_and_the_next_request_is_served(daemon, workdir):
    """HTTP/1.1: the body is read and dropped, and the next request is answered (curl
    itself may close the connection when the answer comes before its upload ends)."""
    url = daemon.url("tls", "/static/hello.txt")
    each = ["-k", "--http1.1", "-o", "/dev/null", "-w", "%{http_code}\\n"]
    result = run(["curl", "-sS", *each, "-H", "Expect:", "-d", "x" * 100_000, url, "--next", *each, url], timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().split() == ["405", "200"]


def test_each_request_is_one_access_log_line(daemon, workdir):
    path = workdir / "static-access.log"
    curl(daemon, workdir, "/static/hello.txt")

    def line():
        found = [json.loads(text) for text in path.read_text().splitlines()] if path.exists() else []
        return next((r for r in found if r.get("path") == "/static/hello.txt" and r.get("status") == 200), None)

    record = poll_until(line, 20.0, "the access log line of a static request")
    assert (record["route"], record["upstream"], record["response_bytes"]) == ("*/static", None, 37)
    assert record["upstream_first_byte"] is None and record["error"] is None


def test_a_reload_serves_the_new_root_and_check_names_a_missing_one(workdir, origin, certificate):
    """SIGHUP recompiles the route: the next request reads the new root. --check on a
    root that does not exist exits 1 naming the file, line and key."""
    directory = workdir / "reload"
    (directory / "one").mkdir(parents=True)
    (directory / "two").mkdir()
    (directory / "one" / "v.txt").write_bytes(b"one\n")
    (directory / "two" / "v.txt").write_bytes(b"two\n")

    def config(root: str) -> dict:
        return base_config(origin.port, certificate, routes=[{"path": "/", "static": {"root": root}}])

    proxy = start_proxy(write_config(directory, config("one")), ["tls", "h2c"])
    try:
        assert curl(proxy, directory, "/v.txt")[2] == b"one\n"
        write_config(directory, config("two"))
        assert proxy.reload().group(1) is not None
        assert curl(proxy, directory, "/v.txt")[2] == b"two\n"
    finally:
        proxy.stop()
    path = write_config(directory, config("three"))
    result = run([str(Path(sys.executable).with_name("twistd")), "--pidfile=", "h2proxy", "-c", str(path), "--check"],
                 timeout=60, cwd=directory, env=dict(os.environ))
    errors = result.stderr.decode()
    assert result.returncode == 1, errors
    assert f"{path}:" in errors and f"routes[0].static.root: directory not found: {directory}/three" in errors, errors


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_directory_redirect_stays_on_this_host(workdir, origin, certificate, protocol):
    """On a route at /, //evil.example (a directory under the root) is redirected
    to /evil.example/, never to //evil.example/, which a browser reads as a host."""
    directory = workdir / f"redirect-{protocol.replace('/', '')}"
    (directory / "site" / "evil.example").mkdir(parents=True)
    config = base_config(origin.port, certificate, routes=[{"path": "/", "static": {"root": "site"}}])
    proxy = start_proxy(write_config(directory, config), ["tls", "h2c"])
    try:
        status, fields, _ = curl(proxy, directory, "//evil.example?x=1", "--path-as-is", protocol=protocol)
    finally:
        proxy.stop()
    assert (status, fields["location"]) == (301, "/evil.example/?x=1")
