"""Stopping the real daemon: SIGTERM lets a long download finish within the drain
window and exits 0; a shorter window cuts it; a second signal forces; nothing is
left running afterwards."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import threading
import time

from tests.e2e.conftest import base_config
from tests.e2e.harness import alive, kill_leftovers, poll_until, start_proxy, write_config
from tests.e2e.test_daemon_reload import pattern_digest

MIB = 1024 * 1024


class SlowDownload:
    """curl reading /bytes/N at a fixed rate over h2c, hashing what arrives."""

    def __init__(self, url: str, rate: str) -> None:
        self.process = subprocess.Popen(
            ["curl", "-sS", "--http2-prior-knowledge", "--limit-rate", rate, "-o", "-", url],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        self.received = 0
        self.digest = hashlib.sha256()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while chunk := self.process.stdout.read(1 << 16):
            self.digest.update(chunk)
            self.received += len(chunk)

    def started(self, timeout: float = 20.0) -> None:
        poll_until(lambda: self.received > 0, timeout, "the download to start", interval=0.02)

    def finish(self, timeout: float = 60.0) -> tuple[int, int, str]:
        code = self.process.wait(timeout)
        self.thread.join(10)
        return code, self.received, self.digest.hexdigest()


def daemon(tmp_path_factory, origin, certificate, drain: str, name: str):
    config = base_config(origin.port, certificate, workers=2, timeouts={"drain": drain})
    return start_proxy(write_config(tmp_path_factory.mktemp(name), config), ["tls", "h2c"])


def test_sigterm_lets_a_long_download_finish_then_exits_0(tmp_path_factory, origin, certificate):
    """When SIGTERM arrives during a download that fits in the drain window, the download
    completes intact, then the supervisor exits 0 and no worker is left."""
    proxy = daemon(tmp_path_factory, origin, certificate, "30s", "stop-graceful")
    size = 48 * MIB
    try:
        download = SlowDownload(proxy.url("h2c", f"/bytes/{size}"), "16M")
        download.started()
        workers = proxy.worker_pids()
        began = time.monotonic()
        proxy.process.send_signal(signal.SIGTERM)
        code, received, digest = download.finish()
        assert (code, received) == (0, size) and digest == pattern_digest(size)
        assert proxy.process.wait(30) == 0
        elapsed = time.monotonic() - began
        assert elapsed < 30
        assert not any(alive(pid) for pid in workers)
        proxy.wait_for(r"every worker has exited")
        print(f"\ngraceful stop took {elapsed:.1f}s with a download in flight")
    finally:
        proxy.stop()


def test_a_short_drain_window_cuts_the_download_and_exits(tmp_path_factory, origin, certificate):
    """When the drain window is shorter than the download, the supervisor stops at the
    window (plus the worker's small grace), exits 0 and leaves no process behind."""
    proxy = daemon(tmp_path_factory, origin, certificate, "1s", "stop-window")
    try:
        download = SlowDownload(proxy.url("h2c", f"/bytes/{256 * MIB}"), "4M")
        download.started()
        workers = proxy.worker_pids()
        began = time.monotonic()
        proxy.process.send_signal(signal.SIGTERM)
        assert proxy.process.wait(20) == 0
        elapsed = time.monotonic() - began
        code, received, _ = download.finish()
        assert code != 0 and received < 256 * MIB
        assert elapsed < 1 + 5
        assert not any(alive(pid) for pid in workers)
        print(f"\nstop with a 1s drain window took {elapsed:.1f}s")
    finally:
        proxy.stop()


def test_a_second_sigterm_forces_the_stop(tmp_path_factory, origin, certificate):
    """When a second SIGTERM arrives while the workers drain, they are killed at once and
    the supervisor exits 0 without waiting for the drain window."""
    proxy = daemon(tmp_path_factory, origin, certificate, "60s", "stop-forced")
    try:
        download = SlowDownload(proxy.url("h2c", f"/bytes/{256 * MIB}"), "4M")
        download.started()
        workers = proxy.worker_pids()
        start = proxy.mark()
        began = time.monotonic()
        proxy.process.send_signal(signal.SIGTERM)
        proxy.wait_for(r"stopping: draining", start=start)
        proxy.process.send_signal(signal.SIGTERM)
        assert proxy.process.wait(20) == 0
        assert time.monotonic() - began < 10
        proxy.wait_for(r"forced stop: killing 2 worker\(s\)", start=start)
        assert not any(alive(pid) for pid in workers)
        download.process.kill()
    finally:
        proxy.stop()


def test_a_killed_supervisor_leaves_no_worker_behind(tmp_path_factory, origin, certificate):
    """When the supervisor itself is killed with SIGKILL, each worker sees its pipe close,
    drains and exits, so no orphan keeps serving."""
    proxy = daemon(tmp_path_factory, origin, certificate, "5s", "supervisor-killed")
    workers = proxy.worker_pids()
    try:
        proxy.process.kill()
        proxy.process.wait(10)
        poll_until(lambda: not any(alive(pid) for pid in workers), 15, "the orphaned workers to exit")
    finally:
        proxy.stop()
        kill_leftovers(workers)
