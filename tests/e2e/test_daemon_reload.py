"""Reloads of the real daemon under load: nothing dropped, each new config live, an
invalid config rejected with its location while the old generation keeps serving."""

from __future__ import annotations

import hashlib
import json
import re
import socket
import subprocess
import threading
from pathlib import Path

import h2.events
import pytest
import yaml

from h2proxy_tools.origin import PATTERN
from tests.e2e.conftest import base_config
from tests.e2e.h2client import H2Client
from tests.e2e.harness import cmdline, poll_until, start_origin, start_proxy, write_config
from tests.e2e.loadclient import LoadClient

MIB = 1024 * 1024
#: Size of the upload and of the download kept in flight across the reloads.
TRANSFER = 256 * MIB
#: curl's --limit-rate for both: slow enough to outlast five reloads.
TRANSFER_RATE = "12M"
#: The old generation's drain window: longer than the transfers.
DRAIN = "180s"
#: Bytes of each load request's response.
LOAD_BODY = 1024
#: Upper bound of one transfer, whatever the machine.
TRANSFER_DEADLINE = 120.0


@pytest.fixture(scope="module")
def origin_b(tmp_path_factory):
    server = start_origin(tmp_path_factory.mktemp("origin-b"))
    yield server
    server.stop()


def reload_config(origin, origin_b, certificate, switch_to: str) -> dict:
    """Two listeners, load on /, and /switch/ served by upstream C{switch_to} (a or b)."""
    config = base_config(origin.port, certificate, workers=2)
    config["upstreams"].update({
        "a": {"servers": [{"address": f"127.0.0.1:{origin.port}"}]},
        "b": {"servers": [{"address": f"127.0.0.1:{origin_b.port}"}]},
    })
    config["routes"] = [
        {"host": "*", "path": "/", "upstream": "app"},
        {"host": "*", "path": "/switch/", "upstream": switch_to},
    ]
    config["timeouts"] = {"drain": DRAIN}
    return config


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, origin, origin_b, certificate):
    workdir = tmp_path_factory.mktemp("reload")
    path = write_config(workdir, reload_config(origin, origin_b, certificate, "a"))
    proxy = start_proxy(path, ["tls", "h2c"])
    yield proxy
    proxy.stop()


def pattern_digest(count: int) -> str:
    digest = hashlib.sha256()
    whole, rest = divmod(count, len(PATTERN))
    for _ in range(whole):
        digest.update(PATTERN)
    digest.update(PATTERN[:rest])
    return digest.hexdigest()


class Download:
    """curl reading /bytes/N slowly over h2c, hashing what arrives. Past half of it,
    the reader waits for C{release}: until then curl's output pipe fills, so the
    stream stays open through the reloads however fast or slow the machine is."""

    def __init__(self, url: str, release: threading.Event) -> None:
        self.release = release
        self.process = subprocess.Popen(
            ["curl", "-sS", "--http2-prior-knowledge", "--limit-rate", TRANSFER_RATE,
             "--max-time", str(int(TRANSFER_DEADLINE)), "-o", "-", url],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.received = 0
        self.digest = hashlib.sha256()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while chunk := self.process.stdout.read(1 << 20):
            self.digest.update(chunk)
            self.received += len(chunk)
            if self.received >= TRANSFER // 2:
                self.release.wait(TRANSFER_DEADLINE)

    def finish(self) -> tuple[int, int, str]:
        code = self.process.wait(TRANSFER_DEADLINE)
        self.thread.join(10)
        return code, self.received, self.digest.hexdigest()


class Upload:
    """curl sending N bytes of the pattern slowly over TLS to /upload; the second
    half only once C{release} is set (see L{Download})."""

    def __init__(self, url: str, release: threading.Event) -> None:
        self.release = release
        self.process = subprocess.Popen(
            ["curl", "-sS", "-k", "--http2", "--limit-rate", TRANSFER_RATE,
             "--max-time", str(int(TRANSFER_DEADLINE)), "-X", "POST", "-T", "-", url],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.sent = 0
        self.thread = threading.Thread(target=self._feed, daemon=True)
        self.thread.start()

    def _feed(self) -> None:
        try:
            for _ in range(TRANSFER // len(PATTERN)):
                if self.sent >= TRANSFER // 2:
                    self.release.wait(TRANSFER_DEADLINE)
                self.process.stdin.write(PATTERN)
                self.sent += len(PATTERN)
            self.process.stdin.close()
        except BrokenPipeError:
            pass

    def finish(self) -> tuple[int, bytes]:
        self.thread.join(TRANSFER_DEADLINE)
        out = self.process.stdout.read()
        err = self.process.stderr.read()
        return self.process.wait(TRANSFER_DEADLINE), out + err


def wait_for_request(origin, target: str, timeout: float = 10.0) -> bool:
    try:
        return poll_until(lambda: any(r["target"] == target for r in origin.requests()), timeout)
    except AssertionError:
        return False


def probe(daemon, target: str, attempts: int = 5) -> None:
    """One request on a fresh connection. A connection the old generation accepted just
    before it began draining is answered on the old config and carries a GOAWAY: such
    an answer does not count, and the probe asks again on a new connection."""
    for _ in range(attempts):
        client = H2Client(daemon.ports["h2c"])
        try:
            status, _, _, reset = client.response(client.request("GET", target))
            assert status == 200 and reset is None
            if not any(isinstance(e, h2.events.ConnectionTerminated) for e in client.events):
                return
        finally:
            client.close()
    raise AssertionError(f"every probe of {target} landed on a draining generation")


def start_load(daemon) -> list[LoadClient]:
    return [
        LoadClient(daemon.ports["h2c"], tls=False, path=f"/bytes/{LOAD_BODY}", expect_size=LOAD_BODY).start(),
        LoadClient(daemon.ports["tls"], tls=True, path=f"/bytes/{LOAD_BODY}", expect_size=LOAD_BODY).start(),
    ]


def wait_for_progress(loads: list[LoadClient], more_than: int, timeout: float = 20.0) -> int:
    return poll_until(
        lambda: (done := sum(load.completed() for load in loads)) > more_than and done,
        timeout,
        f"the load to progress beyond {more_than} requests",
    )


def test_five_reloads_under_load_drop_nothing(daemon, origin, origin_b, certificate):
    """When the config is reloaded five times in a row under continuous load, with a
    256 MiB upload and a slowly read 256 MiB download in flight, no request fails, no
    stream is reset, both transfers arrive intact, and each new route is live."""
    release = threading.Event()
    download = Download(daemon.url("h2c", f"/bytes/{TRANSFER}"), release)
    upload = Upload(daemon.url("tls", "/upload"), release)
    loads = start_load(daemon)
    try:
        done = wait_for_progress(loads, 0)
        poll_until(lambda: download.received > 0 and upload.sent >= 8 * MIB, 20, "both transfers to start")
        for round_ in range(1, 6):
            switch_to, server = ("b", origin_b) if round_ % 2 else ("a", origin)
            write_config(daemon.config_path.parent,
                         reload_config(origin, origin_b, certificate, switch_to))
            match = daemon.reload()
            assert match.group(1) == str(round_ + 1), match.group(0)
            target = f"/switch/probe-{round_}"
            probe(daemon, target)
            assert wait_for_request(server, target), f"{target} did not reach upstream {switch_to}"
            done = wait_for_progress(loads, done)
        in_flight = download.process.poll() is None and upload.process.poll() is None
        release.set()
        code, size, digest = download.finish()
        assert (code, size) == (0, TRANSFER)
        assert digest == pattern_digest(TRANSFER)
        code, out = upload.finish()
        assert code == 0, out
        assert json.loads(out) == {"bytes": TRANSFER, "sha256": pattern_digest(TRANSFER)}
        assert in_flight, "a transfer ended before the fifth reload, though half of it was held back"
    finally:
        release.set()
        results = [load.stop() for load in loads]
        for process in (download.process, upload.process):
            if process.poll() is None:
                process.kill()
    print("\nload across five reloads: " + "; ".join(r.summary() for r in results))
    assert [r.failures for r in results] == [[], []]
    assert [r.resets for r in results] == [{}, {}]
    assert all(r.goaways > 0 and r.completed > 0 for r in results)


def serving_generation(daemon) -> int:
    """The newest generation the log says is serving."""
    return max(int(n) for line in daemon.output.lines
               for n in re.findall(r"generation (\d+) serving", line))


def worker_generations(daemon) -> list[int]:
    return sorted(int(re.search(r"--generation=(\d+)", cmdline(pid)).group(1))
                  for pid in daemon.worker_pids())


def test_an_invalid_reload_is_logged_with_its_location_and_changes_nothing(daemon):
    """When SIGHUP comes with an invalid config, the error is logged with file:line:col,
    the serving generation stays, and the load sees no failure and no GOAWAY."""
    path = daemon.config_path
    good = path.read_text()
    generation = serving_generation(daemon)
    daemon.expect_log(r"listeners\[1\]\.port: expected an integer", r"reload failed: .* is invalid")
    broken = yaml.safe_load(good)
    broken["listeners"][1]["port"] = "http"
    path.write_text(yaml.safe_dump(broken, sort_keys=False))
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "port: http" in text)
    loads = start_load(daemon)
    try:
        done = wait_for_progress(loads, 0)
        start = daemon.mark()
        match = daemon.reload()
        assert match.group(2) == "reload failed"
        daemon.wait_for(rf"{re.escape(str(path))}:{line}:\d+: listeners\[1\]\.port", start=start)
        daemon.wait_for(rf"generation {generation} keeps serving", start=start)
        wait_for_progress(loads, done)
    finally:
        results = [load.stop() for load in loads]
        path.write_text(good)
    print("\nload across an invalid reload: " + "; ".join(r.summary() for r in results))
    assert [r.failures for r in results] == [[], []]
    assert [r.goaways for r in results] == [0, 0]
    # Older generations may still be finishing their drain.
    poll_until(lambda: worker_generations(daemon) == [generation] * 2, 20, "only the current generation to remain")


def served_certificate(port: int) -> bytes:
    """The DER certificate a TLS listener presents to a new connection."""
    import ssl

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            return tls.getpeercert(binary_form=True)


def test_a_reload_reads_renewed_certificates(tmp_path, origin):
    """When the certificate and key files are replaced and the daemon reloaded, new
    connections get the new certificate (same paths, new contents)."""
    from tests.config.certs import make_self_signed

    cert, key = make_self_signed(tmp_path / "tls", ["localhost"], name="site")
    path = write_config(tmp_path, base_config(origin.port, (cert, key)))
    proxy = start_proxy(path, ["tls", "h2c"])
    try:
        before = served_certificate(proxy.ports["tls"])
        make_self_signed(tmp_path / "tls", ["localhost"], name="site")
        assert proxy.reload().group(1) == "2"
        after = served_certificate(proxy.ports["tls"])
        assert after != before
        assert after == ssl_der(cert)
    finally:
        proxy.stop()


def ssl_der(cert_path: str) -> bytes:
    """The first (leaf) certificate of a PEM file, in DER."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    leaf = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    return leaf.public_bytes(Encoding.DER)
