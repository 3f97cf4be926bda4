"""Large bodies both ways, and backpressure: bounded proxy memory whatever the size.

This module runs its own daemon so that its peak RSS reflects these transfers only.
The figures are printed (run pytest with -s to see them) for the closing notes.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import urllib.request

import h2.events
import pytest

from h2proxy_tools.origin import PATTERN
from tests.e2e.conftest import base_config
from tests.e2e.h2client import H2Client
from tests.e2e.harness import pattern_digest, start_proxy, upload_pattern, write_config

GIB = 1024 ** 3
#: What the proxy may hold at its peak while moving 1 GiB (interpreter included).
PEAK_RSS_BOUND_KIB = 160 * 1024


@pytest.fixture(scope="module")
def big_proxy(tmp_path_factory, origin, certificate):
    workdir = tmp_path_factory.mktemp("transfers")
    daemon = start_proxy(write_config(workdir, base_config(origin.port, certificate)), ["tls", "h2c"])
    yield daemon
    daemon.stop()


def test_one_gib_download_intact_with_bounded_memory(big_proxy):
    """When a client downloads 1 GiB over TLS, the checksum matches and peak RSS stays bounded."""
    process = subprocess.Popen(
        ["curl", "-sS", "-k", "--http2", "-o", "-", big_proxy.url("tls", f"/bytes/{GIB}")],
        stdout=subprocess.PIPE,
    )
    digest = hashlib.sha256()
    size = 0
    while chunk := process.stdout.read(1 << 20):
        digest.update(chunk)
        size += len(chunk)
    assert process.wait(300) == 0
    assert size == GIB
    assert digest.hexdigest() == pattern_digest(GIB)
    peak = big_proxy.peak_rss_kib()
    print(f"\n1 GiB download: proxy peak RSS {peak / 1024:.1f} MiB")
    assert peak < PEAK_RSS_BOUND_KIB


def test_one_gib_upload_intact_with_bounded_memory(big_proxy):
    """When a client uploads 1 GiB (no content-length, so chunked to the origin), it arrives intact."""
    out = upload_pattern(
        ["curl", "-sS", "-k", "--http2", "-X", "POST", "-T", "-", big_proxy.url("tls", "/upload")], GIB
    )
    assert json.loads(out) == {"bytes": GIB, "sha256": pattern_digest(GIB)}
    peak = big_proxy.peak_rss_kib()
    print(f"\n1 GiB upload: proxy peak RSS {peak / 1024:.1f} MiB")
    assert peak < PEAK_RSS_BOUND_KIB


def origin_json(origin, path: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{origin.port}{path}", timeout=30) as reply:
        return json.loads(reply.read())


def test_slow_reader_blocks_the_backend(big_proxy, origin):
    """When a client stops reading a large response, the backend is blocked after a bounded
    number of bytes and the proxy's memory does not grow with the body."""
    before_sent = origin_json(origin, "/stats")["body_sent"]
    rss_before = big_proxy.rss_kib()
    client = H2Client(big_proxy.ports["h2c"], window=16 * 1024 * 1024, recv_buffer=64 * 1024)
    try:
        stream = client.request("GET", f"/bytes/{GIB}")
        client.run_until(lambda: any(isinstance(e, h2.events.ResponseReceived) for e in client.events))
        # From here on the client reads nothing; the origin must end up blocked.
        state = origin_json(origin, "/wait-blocked?timeout=20")
        sent = state["body_sent"] - before_sent
        growth = big_proxy.rss_kib() - rss_before
        print(f"\nslow reader: backend blocked after {sent / 2**20:.1f} MiB; proxy RSS growth {growth / 1024:.1f} MiB")
        assert state["blocked"]
        assert sent < 64 * 2**20
        assert growth < 48 * 1024
        client.conn.reset_stream(stream)
        client.flush()
    finally:
        client.close()


def test_stalled_backend_holds_the_uploader_back(big_proxy):
    """When the backend stops reading an upload, HTTP/2 flow control stops the client after
    a bounded number of bytes."""
    client = H2Client(big_proxy.ports["h2c"])
    try:
        stream = client.request("POST", "/stall-upload", end_stream=False)
        sent = 0
        chunk = PATTERN[:16384]
        idle_reads = 0
        while idle_reads < 3 and sent < 256 * 2**20:
            window = min(client.conn.local_flow_control_window(stream), client.conn.max_outbound_frame_size)
            if window > 0:
                client.conn.send_data(stream, chunk[:window])
                client.flush()
                sent += min(window, len(chunk))
                continue
            client.receive(1.0)
            stuck = client.conn.local_flow_control_window(stream) <= 0
            idle_reads = idle_reads + 1 if stuck else 0
        print(f"\nstalled backend: client held back after {sent / 2**20:.1f} MiB")
        assert sent < 32 * 2**20
    finally:
        client.close()
