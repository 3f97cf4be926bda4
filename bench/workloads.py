"""The workloads: what each one sends through a proxy and the figures it returns.

Each is a function of a Run (the peer under test and the shared pieces) returning a
dict of figures; a workload that cannot be measured raises BenchError.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from peers import Backends, Feature, Peer
from processes import (BenchError, RssSampler, cpu_seconds, leaf_pids, machine_busy_seconds, on_cpu,
                       record_group, reset_peak, rss_kib, run_client, status_kib)
from settings import Settings

BENCH = Path(__file__).resolve().parent
MiB = 1 << 20
#: The slowest transfer rate a big-body run may have before it is cut off (bytes/s).
SLOWEST_RATE = 16 * MiB
#: Body sizes of W3/W5 (download) and W4 (upload).
DOWNLOAD_SIZE = 64 * MiB
UPLOAD_SIZE = 16 * MiB
#: W7's file on disk, and its name under the static root.
STATIC_SIZE = 64 * MiB
STATIC_NAME = "file-64m.bin"
#: W8's HTML response (bench/origin.c's /html/N) and the clients fetching it.
HTML_SIZE = 100 * 1024
HTML_CLIENTS, HTML_STREAMS = 8, 4
#: Responses fetched one by one to count W8's body bytes per response exactly.
HTML_COUNTED = 64


def parse_h2load(text: str) -> dict:
    """The figures of an h2load summary (its req/s is over the measured duration)."""
    finished = re.search(r"finished in ([\d.]+)(ms|s), ([\d.]+) req/s", text)
    counts = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                       r"(\d+) errored, (\d+) timeout", text)
    if not finished or not counts:
        raise BenchError(f"unexpected h2load output:\n{text[-1500:]}")
    seconds = float(finished.group(1)) / (1000 if finished.group(2) == "ms" else 1)
    total, _, done, ok, failed, errored, timeout = map(int, counts.groups())
    data = re.search(r"\((\d+)\) data", text)
    return {"seconds": seconds, "h2load_rps": float(finished.group(3)), "total": total, "done": done,
            "succeeded": ok, "failed": failed, "errored": errored, "timeout": timeout,
            "data_bytes": int(data.group(1)) if data else None}


def latency_percentiles(log: Path) -> dict:
    latencies = sorted(int(line.split("\t")[2]) for line in log.read_text().splitlines() if line.count("\t") == 2)
    if not latencies:
        return {"p50_ms": None, "p99_ms": None}

    def pick(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] / 1000

    return {"p50_ms": pick(0.50), "p99_ms": pick(0.99)}


@dataclass
class Run:
    """What a workload function gets: the peer under test and the shared pieces."""

    peer: Peer
    backends: Backends
    settings: Settings
    workdir: Path
    upload_file: Path


def measured(run: Run, body: Callable[[], tuple[str, float]]) -> tuple[str, dict]:
    """Run C{body} (a client) and account the CPU used by the proxy, the origin, the client
    and everything else on the machine (other work competing for the same two cores)."""
    pids = run.peer.pids()
    origin_pids = leaf_pids(run.backends.origin.process.pid)
    proxy_before, origin_before = cpu_seconds(pids), cpu_seconds(origin_pids)
    busy_before = machine_busy_seconds()
    start = time.monotonic()
    text, client_cpu = body()
    wall = time.monotonic() - start
    proxy = cpu_seconds(pids) - proxy_before
    load = cpu_seconds(origin_pids) - origin_before + client_cpu
    other = machine_busy_seconds() - busy_before - proxy - load
    usage = {"proxy_cpu_pct": 100 * proxy / wall, "load_cpu_pct": 100 * load / wall,
             "other_cpu_pct": max(0.0, 100 * other / wall)}
    return text, usage


def h2load_rate(run: Run, clients: int, streams: int) -> dict:
    """W1/W2: small responses for a fixed duration; req/s and latency percentiles."""
    s = run.settings
    log = run.workdir / f"h2load-{run.peer.name}.log"
    argv = ["h2load", "-c", str(clients), "-m", str(streams), "-D", str(int(s.duration)), "--warm-up-time=1",
            f"--log-file={log}", run.peer.url("/small")]
    text, usage = measured(run, lambda: run_client(argv, s.duration + 60))
    figures = parse_h2load(text)
    result = {"rps": figures["succeeded"] / s.duration, "errors": figures["total"] - figures["succeeded"],
              **latency_percentiles(log), **usage}
    log.unlink(missing_ok=True)
    return result


def w1(run: Run) -> dict:
    return h2load_rate(run, 32, 16)


def w2(run: Run) -> dict:
    return h2load_rate(run, 1, 100)


def bulk(run: Run, path: str, count: int, size: int, extra: list[str]) -> dict:
    """W3/W4: COUNT bodies of SIZE over 4 connections; MiB/s and the proxy's peak RSS."""
    pids = run.peer.pids()
    exact = reset_peak(pids)
    argv = ["h2load", "-c", "4", "-m", "1", "-n", str(count), *extra, run.peer.url(path)]
    timeout = count * size / SLOWEST_RATE + 30
    with RssSampler(pids) as sampler:
        text, usage = measured(run, lambda: run_client(argv, timeout))
    figures = parse_h2load(text)
    peak = sum(status_kib(pid, "VmHWM") for pid in pids) if exact else sampler.peak_kib
    return {"mibps": figures["succeeded"] * size / figures["seconds"] / MiB,
            "errors": figures["total"] - figures["succeeded"],
            "peak_rss_mib": max(peak, sampler.peak_kib) / 1024, **usage}


def w3(run: Run) -> dict:
    return bulk(run, f"/bytes/{DOWNLOAD_SIZE}", 4 * run.settings.downloads, DOWNLOAD_SIZE, [])


def w4(run: Run) -> dict:
    return bulk(run, "/upload", 4 * run.settings.uploads, UPLOAD_SIZE, ["-d", str(run.upload_file)])


def static_path(backends: Backends) -> str:
    """W7's URL path: a 64 MiB file of random bytes under the static root, written once."""
    root = backends.static_root
    target = root / STATIC_NAME
    if not target.exists():
        root.mkdir(mode=0o755, exist_ok=True)   # nginx's workers read it as nobody
        with open(target, "wb") as out:
            for _ in range(STATIC_SIZE // MiB):
                out.write(os.urandom(MiB))
        target.chmod(0o644)
    return f"/static/{STATIC_NAME}"


def w7(run: Run) -> dict:
    """Static file: W3's shape, the 64 MiB body read from disk by the proxy itself."""
    return bulk(run, static_path(run.backends), 4 * run.settings.downloads, STATIC_SIZE, [])


def w8(run: Run) -> dict:
    """Compressed HTML: 100 KB text/html asked for with accept-encoding: gzip for a fixed
    duration (req/s, CPU), then a fixed number of them for the body bytes per response:
    h2load's data count covers its warm-up and the requests cut off at the end of a timed
    run, so only a counted run divides exactly."""
    s = run.settings
    url = run.peer.url(f"/html/{HTML_SIZE}")
    gzip = ["-H", "accept-encoding: gzip"]
    argv = ["h2load", "-c", str(HTML_CLIENTS), "-m", str(HTML_STREAMS), "-D", str(int(s.duration)),
            "--warm-up-time=1", *gzip, url]
    text, usage = measured(run, lambda: run_client(argv, s.duration + 60))
    rate = parse_h2load(text)
    counted = parse_h2load(run_client(["h2load", "-c", "1", "-n", str(HTML_COUNTED), *gzip, url], 60)[0])
    if counted["succeeded"] != HTML_COUNTED or counted["data_bytes"] is None:
        raise BenchError(f"{counted['succeeded']} of {HTML_COUNTED} compressed responses arrived whole "
                         f"(h2load counted {counted['data_bytes']} body bytes)")
    wire = counted["data_bytes"] / HTML_COUNTED
    return {"rps": rate["succeeded"] / s.duration, "errors": rate["total"] - rate["succeeded"],
            "wire_bytes": wire, "ratio": HTML_SIZE / wire, **usage}


def python_client(*args: str) -> list[str]:
    return [sys.executable, str(BENCH / "clients.py"), *args]


def w5(run: Run) -> dict:
    """Slow readers: the proxy's RSS growth while 4 clients read 64 MiB at 2 MB/s each."""
    s = run.settings
    pids = run.peer.pids()
    baseline = rss_kib(pids)
    argv = python_client("slow", "--port", str(run.peer.port), "--clients", "4", "--rate", str(s.slow_rate),
                         "--seconds", str(s.slow_seconds), "--path", f"/bytes/{DOWNLOAD_SIZE}")
    with RssSampler(pids) as sampler:
        text, _ = run_client(argv, s.slow_seconds + 60)
    report = json.loads(text.strip().splitlines()[-1])
    early = [c for c in report["clients"] if c["ended"] and c["received"] < DOWNLOAD_SIZE]
    if report["errors"] or len(report["clients"]) < 4 or early:
        raise BenchError(f"slow clients failed: {report['errors'][:2]} {early[:2]}")
    series = [rss for _, rss in sampler.samples]
    return {"growth_mib": (sampler.peak_kib - baseline) / 1024,
            "end_growth_mib": ((series[-1] if series else baseline) - baseline) / 1024,
            "client_mbps": report["mean_rate"] / 1e6}


def w6(run: Run) -> dict:
    """Time from the origin writing a chunk to the client receiving it, slow drip."""
    argv = python_client("ttfb", "--port", str(run.peer.port), "--repeat", str(run.settings.ttfb_repeat),
                         "--chunks", "5", "--interval", "0.2")
    text, _ = run_client(argv, 30 + 15 * run.settings.ttfb_repeat)
    report = json.loads(text.strip().splitlines()[-1])
    return {"first_ms": report["first_ms"], "max_ms": report["max_ms"]}


def idle(run: Run) -> dict:
    """RSS per idle HTTP/2 connection: (RSS with COUNT open - RSS before) / COUNT."""
    count = run.settings.idle_count
    pids = run.peer.pids()
    baseline = rss_kib(pids)
    argv = on_cpu("load", python_client("idle", "--port", str(run.peer.port), "--count", str(count),
                                        "--hold", "120"))
    process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               start_new_session=True, bufsize=0)   # unbuffered: select() sees every byte
    record_group(process.pid)
    try:
        ready = read_line(process, 60 + count / 50)
        report = json.loads(ready)
        time.sleep(1.0)   # let the proxy finish what the last handshakes started
        held = rss_kib(pids)
        process.stdin.write(b"close\n")
        process.stdin.flush()
        process.wait(30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    if not report["opened"]:
        raise BenchError(f"no idle connection could be opened: {report['errors']}")
    return {"kib_per_conn": (held - baseline) / report["opened"], "opened": report["opened"],
            "held_mib": held / 1024}


def read_line(process: subprocess.Popen, timeout: float) -> str:
    """The next line of a child's stdout, or BenchError after C{timeout} seconds."""
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([process.stdout], [], [], remaining)[0]:
            raise BenchError(f"no answer from the client within {timeout:.0f}s")
        byte = process.stdout.read(1)
        if not byte:
            raise BenchError(f"the client exited early: {line.decode(errors='replace')}")
        line += byte
    return line.decode()


#: Workloads that measure memory run on a freshly started proxy (after a short warm-up):
#: an allocator keeps what earlier workloads freed, which would hide or inflate growth.
FRESH = {"W3", "W4", "W5", "W7", "idle"}
#: The warm-up: a few small requests, so lazy imports and first-use buffers are paid.
WARM_UP = ["-n", "256", "-c", "4", "-m", "8"]

WORKLOADS: dict[str, Callable[[Run], dict]] = {
    "W1": w1, "W2": w2, "W3": w3, "W4": w4, "W5": w5, "W6": w6, "W7": w7, "W8": w8, "idle": idle,
}
#: The workloads that need a feature beyond reverse proxying; a peer without it skips them.
NEEDS: dict[str, Feature] = {"W7": Feature.STATIC, "W8": Feature.COMPRESS}
