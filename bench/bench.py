"""The h2proxy benchmark: h2proxy against nginx and Twisted's HTTP/2 proxy, same run.

``bench/run`` installs what is needed and calls this. It starts one origin that is
never the bottleneck (``bench/origin.c``, checked directly with h2load first), a
dripping origin for W6 (``bench/drip.py``), and the proxies under test, each pinned
with ``taskset``: proxies on CPU 0, origin and clients on CPU 1. With ``--workers N``
(N > 1) h2proxy and nginx run N workers each and nothing is pinned: the whole-machine
run. nginx is tuned as an operator would for a keep-alive HTTP/1.1 backend, and
h2proxy gets the same origin keep-alive (see NGINX_CONF). Then it runs the
workloads interleaved over several rounds (every peer once per workload per round,
the peers' order rotated each round), prints a table of medians with min–max and the
ratio of h2proxy to each peer measured in the same round, and writes every raw
figure to ``bench/results/bench-<time>.json``.

Everything it starts runs in its own process group, recorded in WORKDIR/pgids so
that ``bench/run`` can kill what is left even if this process is killed; every
group is stopped at exit, on error and on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
PROXY_CPU = "0"
LOAD_CPU = "1"
MiB = 1 << 20
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

#: Seconds a server may take to say it is listening.
START_TIMEOUT = 30.0
#: Seconds a process group gets between SIGTERM and SIGKILL.
STOP_GRACE = 5.0
#: Pause between two measurements, so one run's tail does not leak into the next.
SETTLE = 0.5
#: Before a measurement every server must be this quiet (CPU fraction over QUIET_WINDOW)...
QUIET_CPU = 0.05
QUIET_WINDOW = 0.25
#: ...or this many seconds must have passed (a peer still flushing an aborted 64 MiB body
#: into a dead connection would otherwise steal CPU 0 from the next peer's run).
QUIET_TIMEOUT = 30.0
#: How often RSS is sampled during a workload (seconds).
SAMPLE_INTERVAL = 0.02
#: The slowest transfer rate a big-body run may have before it is cut off (bytes/s).
SLOWEST_RATE = 16 * MiB
#: Body sizes of W3/W5 (download) and W4 (upload).
DOWNLOAD_SIZE = 64 * MiB
UPLOAD_SIZE = 16 * MiB
#: Where bench/run wants every process group id written (its exit trap kills them).
PGID_FILE = Path(os.environ["H2PROXY_BENCH_PGIDS"]) if os.environ.get("H2PROXY_BENCH_PGIDS") else None
#: Lines of a failed process's log quoted in an error.
LOG_TAIL = 15

#: What both proxies get towards the origin, so that neither has more kept-alive
#: connections, more requests per connection or a longer idle life than the other.
UPSTREAM_KEEPALIVE = 256          # idle connections kept per worker
UPSTREAM_REQUESTS = 100_000       # requests one origin connection carries
UPSTREAM_IDLE_SECONDS = 600       # an idle origin connection lives this long
#: Streams a client may open at once on either proxy (h2proxy's default; nginx's is 128).
MAX_CONCURRENT_STREAMS = 100


@dataclass
class Settings:
    rounds: int = 3
    duration: float = 10.0         # W1/W2 measured seconds (after 1 s warm-up)
    downloads: int = 2             # W3: 64 MiB requests per client (4 clients)
    uploads: int = 4               # W4: 16 MiB requests per client (4 clients)
    slow_seconds: float = 8.0      # W5: how long the slow clients read
    slow_rate: float = 2e6         # W5: bytes/s per client
    ttfb_repeat: int = 3           # W6: drip requests per run
    idle_count: int = 5000         # idle connections opened
    check_duration: float = 3.0    # origin check with h2load --h1
    peers: tuple[str, ...] = ("h2proxy", "nginx", "twisted")
    workloads: tuple[str, ...] = ("W1", "W2", "W3", "W4", "W5", "W6", "idle")
    http2: dict = field(default_factory=dict)   # h2proxy http2: overrides (tuning runs)
    overrides: dict = field(default_factory=dict)   # h2proxy config "dotted.path": value (tuning runs)
    keep_workdir: bool = False
    workers: int = 1               # 1: the pinned one-core comparison; more: the whole-machine run

    @property
    def pinned(self) -> bool:
        """One worker per proxy is compared on one pinned core; more workers get the whole machine."""
        return self.workers == 1


QUICK = dict(rounds=1, duration=3.0, downloads=1, uploads=2, slow_seconds=4.0, ttfb_repeat=1,
             idle_count=1000, check_duration=2.0)


class BenchError(Exception):
    """A workload or a server could not be run; the message says what to look at."""


#: What a process is to the placement: a proxy under test, or the origin and load side.
Role = Literal["proxy", "load"]


@dataclass(frozen=True)
class Placement:
    """The CPU the proxies run on and the one the origin and load run on; None = unpinned."""

    proxy: str | None
    load: str | None

    def argv(self, role: Role, argv: list[str]) -> list[str]:
        """C{argv} prefixed with taskset for C{role} ("proxy" or "load"), unchanged if unpinned."""
        cpu = self.proxy if role == "proxy" else self.load
        return ["taskset", "-c", cpu, *argv] if cpu is not None else list(argv)

    def describe(self, role: Role) -> str:
        cpu = self.proxy if role == "proxy" else self.load
        return f"CPU {cpu}" if cpu is not None else "any CPU"


PINNED = Placement(PROXY_CPU, LOAD_CPU)
UNPINNED = Placement(None, None)
#: Where everything runs: set once by main() from --workers (the whole-machine run is unpinned).
placement = PINNED


# ---- processes --------------------------------------------------------------------------


@dataclass
class Child:
    name: str
    process: subprocess.Popen
    log: Path

    def tail(self) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-LOG_TAIL:])
        return ""


class Launcher:
    """Starts servers pinned to a CPU, each in its own process group, and stops them all."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.children: list[Child] = []
        self.pgid_file = PGID_FILE or workdir / "pgids"

    def start(self, name: str, argv: list[str], role: Role, ready: Callable[[str], re.Match | bool | None],
              cwd: Path | None = None) -> tuple[Child, re.Match | bool]:
        """Run C{argv} where C{role} ("proxy" or "load") runs; wait until C{ready(log text)} is
        true or fail with the log."""
        log = self.workdir / f"{name}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(placement.argv(role, argv), stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, cwd=cwd, start_new_session=True)
        child = Child(name, process, log)
        self.children.append(child)
        record_group(process.pid, self.pgid_file)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            found = ready(log.read_text(errors="replace"))
            if found:
                return child, found
            if process.poll() is not None:
                raise BenchError(f"{name} exited with {process.returncode} before it was ready:\n{child.tail()}")
            time.sleep(0.05)
        raise BenchError(f"{name} was not ready within {START_TIMEOUT:.0f}s:\n{child.tail()}")

    def stop(self, child: Child) -> None:
        if child.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.process.pid, signal.SIGTERM)
            try:
                child.process.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError):   # stragglers of the group
            os.killpg(child.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.process.wait(STOP_GRACE)
        if child in self.children:
            self.children.remove(child)

    def stop_all(self) -> None:
        for child in reversed(list(self.children)):
            self.stop(child)


def record_group(pgid: int, path: Path | None = None) -> None:
    """Note a process group for bench/run's exit trap (the safety net if we are killed)."""
    path = path or PGID_FILE
    if path is not None:
        with open(path, "a") as handle:
            handle.write(f"{pgid}\n")


def run_client(argv: list[str], timeout: float, role: Role = "load") -> tuple[str, float]:
    """Run a load client where C{role} runs, to completion; its output and the CPU seconds it used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    process = subprocess.Popen(placement.argv(role, argv), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    record_group(process.pid)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise BenchError(f"{Path(argv[0]).name} did not finish within {timeout:.0f}s")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    text = output.decode(errors="replace")
    if process.returncode != 0:
        raise BenchError(f"{' '.join(argv[:3])}… exited {process.returncode}:\n{text[-2000:]}")
    return text, cpu_used


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# ---- memory and CPU of a process tree ---------------------------------------------------


def children_map() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                tree.setdefault(ppid, []).append(int(entry))
    return tree


def leaf_pids(root: int) -> list[int]:
    """The processes that do the work: the leaves under C{root} (past taskset/twistd/nginx master)."""
    tree = children_map()
    leaves, todo = [], [root]
    while todo:
        pid = todo.pop()
        kids = tree.get(pid, [])
        if kids:
            todo.extend(kids)
        else:
            leaves.append(pid)
    return leaves


def status_kib(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise BenchError(f"no {name} in /proc/{pid}/status")


def rss_kib(pids: list[int]) -> int:
    return sum(status_kib(pid, "VmRSS") for pid in pids)


def reset_peak(pids: list[int]) -> bool:
    """Reset VmHWM (peak RSS) so it covers only what follows; False where the kernel refuses."""
    try:
        for pid in pids:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


class RssSampler:
    """Samples the summed VmRSS of some processes on a thread while a workload runs."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        start = time.monotonic()
        while not self._stop.is_set():
            with contextlib.suppress(OSError, BenchError):
                self.samples.append((time.monotonic() - start, rss_kib(self.pids)))
            self._stop.wait(SAMPLE_INTERVAL)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_kib(self) -> int:
        return max((rss for _, rss in self.samples), default=0)


# ---- the servers ------------------------------------------------------------------------


@dataclass
class Backends:
    """What every proxy forwards to, and the files they need."""

    workdir: Path
    cert: str
    key: str
    origin_port: int
    drip_port: int
    origin: Child


class Peer:
    """One proxy under test. Subclasses say how to configure and start it."""

    name = ""

    def __init__(self, launcher: Launcher, backends: Backends, settings: Settings) -> None:
        self.launcher = launcher
        self.backends = backends
        self.settings = settings
        self.child: Child | None = None
        self.port = 0
        self.error: str | None = None
        self.config_text = ""   # the configuration it was last started with, for the report

    def start(self) -> None:
        raise NotImplementedError

    def pids(self) -> list[int]:
        if not self.alive():
            raise BenchError(f"{self.name} is not running:\n{self.child.tail() if self.child else ''}")
        return leaf_pids(self.child.process.pid)

    def alive(self) -> bool:
        return self.child is not None and self.child.process.poll() is None

    def ensure_running(self) -> None:
        """Start (or restart after a crash) once per call; remember why it failed."""
        if self.alive():
            return
        if self.child is not None:
            self.launcher.stop(self.child)
        try:
            self.start()
            self.error = None
        except BenchError as error:
            self.error = str(error)
            raise

    def restart(self) -> None:
        """A fresh process, so memory figures are not inflated by earlier workloads."""
        if self.child is not None:
            self.launcher.stop(self.child)
            self.child = None
        self.ensure_running()

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"


class H2ProxyPeer(Peer):
    name = "h2proxy"

    def config(self) -> dict:
        """h2proxy's config: the origin upstream kept alive exactly as nginx's (see NGINX_CONF)."""
        b = self.backends
        config = {
            "workers": self.settings.workers,
            "listeners": [{"name": "bench", "address": "127.0.0.1", "port": 0,
                           "tls": {"certificates": [{"cert": b.cert, "key": b.key}]}}],
            "upstreams": {"origin": {"servers": [{"address": f"127.0.0.1:{b.origin_port}"}],
                                     "keepalive": UPSTREAM_KEEPALIVE, "max_requests": UPSTREAM_REQUESTS,
                                     "keepalive_idle": f"{UPSTREAM_IDLE_SECONDS}s"},
                          "drip": {"servers": [{"address": f"127.0.0.1:{b.drip_port}"}]}},
            "routes": [{"host": "*", "path": "/drip", "upstream": "drip"},
                       {"host": "*", "path": "/", "upstream": "origin"}],
            "timeouts": {"idle": "600s"},
            "http2": {"max_concurrent_streams": MAX_CONCURRENT_STREAMS, **self.settings.http2},
        }
        for dotted, value in self.settings.overrides.items():
            *parents, leaf = dotted.split(".")
            node = config
            for key in parents:
                node = node.setdefault(key, {})
            node[leaf] = value
        return config

    def start(self, extra_twistd: tuple[str, ...] = ()) -> None:
        import yaml

        path = self.backends.workdir / "h2proxy.yaml"
        self.config_text = yaml.safe_dump(self.config(), sort_keys=False)
        path.write_text(self.config_text)
        twistd = shutil.which("twistd") or str(Path(sys.executable).with_name("twistd"))
        argv = [twistd, "-n", "--pidfile=", "--logfile=-", *extra_twistd, "h2proxy", "-c", str(path)]
        listening = re.compile(r"listener bench on [^ ]*:(\d+)")
        serving = re.compile(r"worker .* is ready|serving with")   # the supervisor's word that a worker took over

        def ready(text: str) -> re.Match | None:
            return listening.search(text) if serving.search(text) else None

        self.child, match = self.launcher.start("h2proxy", argv, "proxy", ready, cwd=self.backends.workdir)
        self.port = int(match.group(1))


NGINX_CONF = """\
# nginx as an operator tunes it in front of a keep-alive HTTP/1.1 backend.
worker_processes {workers};
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
worker_rlimit_nofile {nofile};
events {{ worker_connections {connections}; }}
http {{
    access_log off;
    client_body_temp_path {work}/nginx-tmp/body;
    proxy_temp_path {work}/nginx-tmp/proxy;
    fastcgi_temp_path {work}/nginx-tmp/fastcgi;
    uwsgi_temp_path {work}/nginx-tmp/uwsgi;
    scgi_temp_path {work}/nginx-tmp/scgi;
    upstream origin {{
        server 127.0.0.1:{origin};
        keepalive {keepalive};                # idle origin connections kept per worker
        keepalive_requests {requests};
        keepalive_timeout {idle}s;
    }}
    upstream drip {{ server 127.0.0.1:{drip}; keepalive 8; }}
    server {{
        listen 127.0.0.1:{port} ssl http2;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        http2_max_concurrent_streams {streams};
        keepalive_requests 1000000;           # h2load does not reconnect after GOAWAY
        keepalive_timeout 600s;               # idle connections stay for the idle measurement
        client_max_body_size 0;
        client_body_buffer_size 1m;
        proxy_http_version 1.1;               # keep-alive to the origin
        proxy_set_header Connection "";
        proxy_request_buffering off;          # stream uploads, as h2proxy does
        proxy_buffering on;                   # read responses ahead (the default)
        proxy_buffer_size 64k;
        proxy_buffers 8 64k;
        proxy_busy_buffers_size 128k;         # nginx requires less than 7 x 64k (all buffers but one)
        location / {{ proxy_pass http://origin; }}
        location /drip {{ proxy_pass http://drip; }}
    }}
}}
"""


class NginxPeer(Peer):
    name = "nginx"

    def start(self) -> None:
        work = self.backends.workdir
        (work / "nginx-tmp").mkdir(exist_ok=True)
        self.port = free_port()
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self.config_text = NGINX_CONF.format(
            work=work, workers=self.settings.workers, nofile=nofile,
            connections=max(1024, nofile // 2 - 64),
            origin=self.backends.origin_port, keepalive=UPSTREAM_KEEPALIVE, requests=UPSTREAM_REQUESTS,
            idle=UPSTREAM_IDLE_SECONDS, drip=self.backends.drip_port, port=self.port,
            streams=self.settings.http2.get("max_concurrent_streams", MAX_CONCURRENT_STREAMS), cert=self.backends.cert, key=self.backends.key)
        (work / "nginx.conf").write_text(self.config_text)
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        argv = [nginx, "-c", str(work / "nginx.conf"), "-p", str(work), "-e", str(work / "nginx-error.log")]
        self.child, _ = self.launcher.start("nginx", argv, "proxy", lambda _: port_open(self.port))


class TwistedPeer(Peer):
    name = "twisted"

    def start(self) -> None:
        b = self.backends
        argv = [sys.executable, str(BENCH / "twisted_proxy.py"), "--port", "0", "--cert", b.cert,
                "--key", b.key, "--origin", f"127.0.0.1:{b.origin_port}",
                "--route", f"/drip=127.0.0.1:{b.drip_port}"]
        pattern = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
        self.config_text = " ".join(argv[1:])   # nothing tuned: its whole configuration is the command line
        self.child, match = self.launcher.start("twisted", argv, "proxy", pattern.search)
        self.port = int(match.group(1))


PEERS = {"h2proxy": H2ProxyPeer, "nginx": NginxPeer, "twisted": TwistedPeer}


def start_backends(launcher: Launcher, workdir: Path, origin_binary: Path) -> Backends:
    cert_dir = workdir / "cert"
    subprocess.run([sys.executable, "-m", "h2proxy_tools.devcert", str(cert_dir)], check=True,
                   capture_output=True, timeout=60)
    origin_re = re.compile(r"origin listening on 127\.0\.0\.1:(\d+)")
    origin, match = launcher.start("origin", [str(origin_binary), "0"], "load", origin_re.search)
    drip_re = re.compile(r"drip listening on 127\.0\.0\.1:(\d+)")
    _, drip = launcher.start("drip", [sys.executable, str(BENCH / "drip.py"), "--port", "0"], "load",
                             drip_re.search)
    return Backends(workdir, str(cert_dir / "cert.pem"), str(cert_dir / "key.pem"),
                    int(match.group(1)), int(drip.group(1)), origin)


# ---- h2load ------------------------------------------------------------------------------


def parse_h2load(text: str) -> dict:
    """The figures of an h2load summary (its req/s is over the measured duration)."""
    finished = re.search(r"finished in ([\d.]+)(ms|s), ([\d.]+) req/s", text)
    counts = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                       r"(\d+) errored, (\d+) timeout", text)
    if not finished or not counts:
        raise BenchError(f"unexpected h2load output:\n{text[-1500:]}")
    seconds = float(finished.group(1)) / (1000 if finished.group(2) == "ms" else 1)
    total, _, done, ok, failed, errored, timeout = map(int, counts.groups())
    return {"seconds": seconds, "h2load_rps": float(finished.group(3)), "total": total, "done": done,
            "succeeded": ok, "failed": failed, "errored": errored, "timeout": timeout}


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


def machine_busy_seconds() -> float:
    """CPU seconds all cores have spent busy since boot (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]   # idle + iowait
    return (sum(fields[:8]) - idle) / CLOCK_TICKS


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
    argv = placement.argv("load", python_client("idle", "--port", str(run.peer.port), "--count", str(count),
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
FRESH = {"W3", "W4", "W5", "idle"}
#: The warm-up: a few small requests, so lazy imports and first-use buffers are paid.
WARM_UP = ["-n", "256", "-c", "4", "-m", "8"]

WORKLOADS: dict[str, Callable[[Run], dict]] = {
    "W1": w1, "W2": w2, "W3": w3, "W4": w4, "W5": w5, "W6": w6, "idle": idle,
}

#: (workload, metric key, label, format) rows of the table, in order.
ROWS = [
    ("W1", "rps", "req/s (-c32 -m16)", "{:,.0f}"),
    ("W1", "p50_ms", "p50 latency ms", "{:.1f}"),
    ("W1", "p99_ms", "p99 latency ms", "{:.1f}"),
    ("W1", "proxy_cpu_pct", "proxy CPU %", "{:.0f}"),
    ("W1", "load_cpu_pct", "origin+h2load CPU %", "{:.0f}"),
    ("W1", "other_cpu_pct", "other processes CPU %", "{:.0f}"),
    ("W2", "rps", "req/s (-c1 -m100)", "{:,.0f}"),
    ("W2", "p50_ms", "p50 latency ms", "{:.1f}"),
    ("W2", "p99_ms", "p99 latency ms", "{:.1f}"),
    ("W2", "proxy_cpu_pct", "proxy CPU %", "{:.0f}"),
    ("W2", "other_cpu_pct", "other processes CPU %", "{:.0f}"),
    ("W3", "mibps", "MiB/s (4 x 64 MiB down)", "{:,.0f}"),
    ("W3", "peak_rss_mib", "proxy peak RSS MiB", "{:.1f}"),
    ("W4", "mibps", "MiB/s (4 x 16 MiB up)", "{:,.0f}"),
    ("W4", "peak_rss_mib", "proxy peak RSS MiB", "{:.1f}"),
    ("W5", "growth_mib", "RSS growth MiB (2 MB/s)", "{:.1f}"),
    ("W5", "client_mbps", "client read MB/s", "{:.2f}"),
    ("W6", "first_ms", "first chunk delay ms", "{:.1f}"),
    ("W6", "max_ms", "worst chunk delay ms", "{:.1f}"),
    ("idle", "kib_per_conn", "KiB per idle conn", "{:.1f}"),
]

#: (workload, metric, peer or None for an absolute bound, "min"/"max", bound): the targets
#: the bench reports PASS/FAIL against (docs/performance.md, "Targets").
TARGETS = [
    ("W1", "rps", "twisted", "min", 4.0), ("W1", "rps", "nginx", "min", 0.15),
    ("W2", "rps", "twisted", "min", 4.0), ("W2", "rps", "nginx", "min", 0.15),
    ("W3", "mibps", "nginx", "min", 0.7), ("W3", "peak_rss_mib", None, "max", 64.0),
    ("W4", "mibps", "nginx", "min", 0.7), ("W4", "peak_rss_mib", None, "max", 64.0),
    ("W5", "growth_mib", None, "max", 16.0),
    ("W6", "first_ms", None, "max", 50.0),
    ("idle", "kib_per_conn", None, "max", 40.0),
]


# ---- rounds, summary, table --------------------------------------------------------------


def wait_quiet(peers: list[Peer], backends: Backends) -> float:
    """Wait until no server burns CPU; the seconds waited (logged when long)."""
    start = time.monotonic()
    while time.monotonic() - start < QUIET_TIMEOUT:
        pids = leaf_pids(backends.origin.process.pid)
        for peer in peers:
            if peer.alive():
                pids += leaf_pids(peer.child.process.pid)
        before = cpu_seconds(pids)
        time.sleep(QUIET_WINDOW)
        if cpu_seconds(pids) - before < QUIET_CPU * QUIET_WINDOW:
            break
    waited = time.monotonic() - start
    if waited > 2:
        log(f"(waited {waited:.1f}s for the servers to go quiet)")
    return waited


def run_rounds(peers: list[Peer], backends: Backends, settings: Settings, workdir: Path,
               upload_file: Path) -> dict:
    """raw[workload][peer] = one dict per round (figures, or {"error": ...})."""
    raw: dict[str, dict[str, list[dict]]] = {w: {p.name: [] for p in peers} for w in settings.workloads}
    for index in range(settings.rounds):
        order = peers[index % len(peers):] + peers[:index % len(peers)]
        for workload in settings.workloads:
            for peer in order:
                wait_quiet(peers, backends)
                raw[workload][peer.name].append(one_measurement(workload, peer, backends, settings, workdir,
                                                                upload_file, index))
                time.sleep(SETTLE)
    return raw


def one_measurement(workload: str, peer: Peer, backends: Backends, settings: Settings, workdir: Path,
                    upload_file: Path, index: int) -> dict:
    label = f"[round {index + 1}/{settings.rounds}] {workload:<4} {peer.name:<8}"
    try:
        if workload in FRESH:
            peer.restart()
            run_client(["h2load", *WARM_UP, peer.url("/small")], 60)
            wait_quiet([peer], backends)
        else:
            peer.ensure_running()
        result = WORKLOADS[workload](Run(peer, backends, settings, workdir, upload_file))
    except BenchError as error:
        log(f"{label} FAILED: {headline(error)}")
        return {"error": str(error)}
    log(f"{label} " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items()))
    return result


def headline(error: Exception) -> str:
    """The first line of an error and, when it quotes a log, that log's last line."""
    lines = [line for line in str(error).splitlines() if line.strip()] or ["failed"]
    return lines[0] if len(lines) == 1 else f"{lines[0]} … {lines[-1].strip()}"


def values(raw: dict, workload: str, peer: str, key: str) -> list[float]:
    return [r[key] for r in raw.get(workload, {}).get(peer, []) if r.get(key) is not None]


def round_ratios(raw: dict, workload: str, key: str, peer: str, base: str = "h2proxy") -> list[float]:
    """h2proxy / peer for each round in which both were measured."""
    ours, theirs = raw.get(workload, {}).get(base, []), raw.get(workload, {}).get(peer, [])
    return [a[key] / b[key] for a, b in zip(ours, theirs)
            if a.get(key) is not None and b.get(key) not in (None, 0)]


def summarize(raw: dict, peers: list[str]) -> dict:
    summary = {}
    for workload, key, _, _ in ROWS:
        cell = {}
        for peer in peers:
            got = values(raw, workload, peer, key)
            if got:
                cell[peer] = {"median": statistics.median(got), "min": min(got), "max": max(got), "n": len(got)}
        for peer in peers:
            ratios = round_ratios(raw, workload, key, peer) if peer != "h2proxy" else []
            if ratios:
                cell[f"h2proxy/{peer}"] = {"median": statistics.median(ratios), "min": min(ratios),
                                           "max": max(ratios), "n": len(ratios)}
        summary[f"{workload}.{key}"] = cell
    return summary


def targets(summary: dict) -> list[dict]:
    verdicts = []
    for workload, key, peer, direction, bound in TARGETS:
        cell = summary.get(f"{workload}.{key}", {})
        figure = cell.get(f"h2proxy/{peer}" if peer else "h2proxy")
        text = f"{workload} {key}: " + (f"h2proxy/{peer} " if peer else "h2proxy ") + \
            (">= " if direction == "min" else "< ") + (f"{bound}x" if peer else f"{bound}")
        if figure is None:
            verdicts.append({"target": text, "value": None, "verdict": "n/a"})
            continue
        value = figure["median"]
        ok = value >= bound if direction == "min" else value < bound
        verdicts.append({"target": text, "value": value, "verdict": "PASS" if ok else "FAIL"})
    return verdicts


def render_cell(stat: dict | None, fmt: str) -> str:
    if stat is None:
        return "-"
    if stat["n"] == 1 or stat["min"] == stat["max"]:
        return fmt.format(stat["median"])
    return f"{fmt.format(stat['median'])} ({fmt.format(stat['min'])}–{fmt.format(stat['max'])})"


def render_table(summary: dict, peers: list[str]) -> str:
    others = [p for p in peers if p != "h2proxy"] if "h2proxy" in peers else []
    header = ["workload", "metric", *peers, *(f"h2proxy/{p}" for p in others)]
    lines = [header]
    for workload, key, label, fmt in ROWS:
        cell = summary.get(f"{workload}.{key}", {})
        if not cell:
            continue
        row = [workload, label, *(render_cell(cell.get(p), fmt) for p in peers)]
        row += [render_cell(cell.get(f"h2proxy/{p}"), "{:.2f}") for p in others]
        lines.append(row)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = ["| " + " | ".join(c.ljust(w) for c, w in zip(line, widths)) + " |" for line in lines]
    out.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


# ---- the origin check and the environment -----------------------------------------------


def origin_check(backends: Backends, settings: Settings, upload_file: Path) -> dict:
    """h2load --h1 straight at the origin, on the load core: what origin + client can do alone."""
    base = f"http://127.0.0.1:{backends.origin_port}"
    origin_pids = [backends.origin.process.pid]
    checks = {}
    plans = {
        "small_rps": (["-c", "32", "-m", "1", "-D", str(int(settings.check_duration)), f"{base}/small"], 0),
        "download_mibps": (["-c", "4", "-n", "8", f"{base}/bytes/{DOWNLOAD_SIZE}"], DOWNLOAD_SIZE),
        "upload_mibps": (["-c", "4", "-n", "16", "-d", str(upload_file), f"{base}/upload"], UPLOAD_SIZE),
    }
    for name, (args, size) in plans.items():
        before = cpu_seconds(origin_pids)
        text, _ = run_client(["h2load", "--h1", *args], 120)
        figures = parse_h2load(text)
        if size:
            checks[name] = figures["succeeded"] * size / figures["seconds"] / MiB
        else:
            checks[name] = figures["succeeded"] / settings.check_duration
            checks["small_origin_cpu_pct"] = 100 * (cpu_seconds(origin_pids) - before) / settings.check_duration
    return checks


def environment() -> dict:
    def first_line(argv: list[str]) -> str:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (done.stdout or done.stderr).strip().splitlines()[0]
        return "unknown"

    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    import h2
    import twisted

    return {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "host": platform.node(), "kernel": platform.release(), "cpu": cpu, "cores": os.cpu_count(),
            "python": platform.python_version(), "twisted": twisted.__version__, "h2": h2.__version__,
            "nginx": first_line(["nginx", "-v"]), "h2load": first_line(["h2load", "--version"]),
            "git": first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
            "src_changes_not_committed": first_line(["sh", "-c", f"git -C {ROOT} status --porcelain src | wc -l"])}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---- main --------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> tuple[Settings, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 short round of everything (~2 minutes)")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--duration", type=float, help="seconds of W1/W2 measurement per run")
    parser.add_argument("--peers", help="comma list of h2proxy,nginx,twisted")
    parser.add_argument("--workloads", help="comma list of W1,W2,W3,W4,W5,W6,idle")
    parser.add_argument("--idle-count", type=int)
    parser.add_argument("--http2", action="append", default=[], metavar="KEY=VALUE",
                        help="h2proxy http2: setting for a tuning run, e.g. initial_window_size=4MiB")
    parser.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                        help="any h2proxy config value for a tuning run, e.g. upstreams.origin.keepalive=512")
    parser.add_argument("--origin-binary", default=str(BENCH / "build" / "origin"))
    parser.add_argument("--keep-workdir", action="store_true", help="keep configs and logs after the run")
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes of h2proxy and nginx; above 1 nothing is pinned (the "
                             "whole-machine run); the default 1 pins the proxies to CPU 0")
    parser.add_argument("--profile", action="store_true",
                        help="instead of the rounds: profile h2proxy (cProfile) under W1 and print the top")
    args = parser.parse_args(argv)
    settings = Settings(**QUICK) if args.quick else Settings()
    if args.rounds:
        settings.rounds = args.rounds
    if args.duration:
        settings.duration = args.duration
    if args.idle_count:
        settings.idle_count = args.idle_count
    if args.peers:
        settings.peers = tuple(p for p in args.peers.split(",") if p)
    if args.workloads:
        settings.workloads = tuple(w for w in args.workloads.split(",") if w)
    unknown = [p for p in settings.peers if p not in PEERS] + [w for w in settings.workloads if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown peer or workload: {', '.join(unknown)}")
    settings.http2 = dict(item.split("=", 1) for item in args.http2)
    import yaml

    settings.overrides = {path: yaml.safe_load(value) for path, value in (i.split("=", 1) for i in args.set)}
    settings.keep_workdir = args.keep_workdir
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    settings.workers = args.workers
    return settings, args


def raise_file_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: list[str]) -> int:
    global placement
    settings, args = parse_args(argv)
    placement = PINNED if settings.pinned else UNPINNED
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    raise_file_limit()
    workdir = Path(tempfile.mkdtemp(prefix="h2proxy-bench-"))
    workdir.chmod(0o755)   # nginx workers run as nobody and write their temp files in here
    launcher = Launcher(workdir)
    started = time.monotonic()
    try:
        if args.profile:
            from profile_h2proxy import profile_run   # bench/ is on sys.path when run as a script

            return profile_run(launcher, workdir, settings, Path(args.origin_binary))
        return bench(launcher, workdir, settings, Path(args.origin_binary), started)
    except KeyboardInterrupt:
        log("interrupted: stopping everything")
        return 130
    except BenchError as error:
        log(f"bench failed: {error}")
        return 1
    finally:
        launcher.stop_all()
        if settings.keep_workdir:
            log(f"configs and logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def run_label(settings: Settings) -> str:
    """What kind of run this is, in words, for the log, the table and the JSON."""
    if settings.pinned:
        return (f"pinned run: 1 worker per proxy on CPU {PROXY_CPU}, origin and load on CPU {LOAD_CPU}")
    return (f"whole-machine run: {settings.workers} workers per proxy (h2proxy workers, nginx "
            f"worker_processes; Twisted has one process), nothing pinned: proxies, origin and load "
            f"share all {os.cpu_count()} cores")


def print_configs(configs: dict[str, str]) -> None:
    """Each peer's configuration as it was run, so that the table is read against it."""
    for name, text in configs.items():
        print(f"\n--- {name} configuration ---\n{text.rstrip()}")


def bench(launcher: Launcher, workdir: Path, settings: Settings, origin_binary: Path, started: float) -> int:
    env = environment()
    log(f"h2proxy bench {env['date']} on {env['cpu']} ({env['cores']} cores); workdir {workdir}")
    log(run_label(settings))
    upload_file = workdir / "upload.bin"
    upload_file.write_bytes(os.urandom(UPLOAD_SIZE))
    backends = start_backends(launcher, workdir, origin_binary)
    check = origin_check(backends, settings, upload_file)
    log("origin alone (h2load --h1 on the load core): "
        + ", ".join(f"{k}={v:,.0f}" for k, v in check.items()))
    ceiling = json.loads(run_client([sys.executable, str(BENCH / "h2_ceiling.py")], 120, role="proxy")[0])
    log(f"h2 library alone (no I/O, {placement.describe('proxy')}): {ceiling['us_per_request']:.0f} us per small request, "
        f"a ceiling of {ceiling['ceiling_rps']:,.0f} req/s on one core")
    peers = [PEERS[name](launcher, backends, settings) for name in settings.peers]
    for peer in peers:
        with contextlib.suppress(BenchError):
            peer.ensure_running()
        log(f"{peer.name}: " + (f"listening on {peer.port}" if peer.alive() else f"FAILED to start: {peer.error}"))
    raw = run_rounds(peers, backends, settings, workdir, upload_file)
    names = [p.name for p in peers]
    summary = summarize(raw, names)
    # The targets are set for one worker on one core: a whole-machine run sums two workers' memory.
    verdicts = targets(summary) if "h2proxy" in names and settings.pinned else []
    configs = {p.name: p.config_text for p in peers if p.config_text}
    report = {"environment": env, "settings": settings.__dict__, "run": run_label(settings),
              "configs": configs, "origin_check": check, "h2_ceiling": ceiling, "raw": raw,
              "summary": summary, "targets": verdicts, "seconds": time.monotonic() - started,
              "start_errors": {p.name: p.error for p in peers if p.error}}
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"bench-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=1, default=str))
    print(f"\nh2proxy bench, {env['date']}, {env['cpu']}, {env['cores']} cores, kernel {env['kernel']}")
    print(run_label(settings))
    print(f"{settings.rounds} round(s); median (min–max) over rounds; ratios are h2proxy/peer per round, "
          f"then their median.\n")
    print(f"origin alone, h2load --h1 on {placement.describe('load')}: {check['small_rps']:,.0f} req/s small "
          f"(origin CPU {check['small_origin_cpu_pct']:.0f}%), {check['download_mibps']:,.0f} MiB/s down, "
          f"{check['upload_mibps']:,.0f} MiB/s up")
    print(f"h2 alone, no I/O: {ceiling['us_per_request']:.0f} us per small request "
          f"(ceiling {ceiling['ceiling_rps']:,.0f} req/s per core)\n")
    print(render_table(summary, names))
    if not settings.pinned:
        print("\ntargets: not judged (they are set for the pinned one-worker run)")
    if verdicts:
        print("\ntargets:")
        for v in verdicts:
            shown = "-" if v["value"] is None else f"{v['value']:.3g}"
            print(f"  {v['verdict']:<4}  {v['target']:<45} measured {shown}")
    failures = {(w, p): headline(Exception(r["error"])) for w, by in raw.items() for p, rs in by.items()
                for r in rs if "error" in r}
    if failures:
        print("\nfailed measurements:")
        for (w, p), reason in sorted(failures.items()):
            print(f"  {w} {p}: {reason}")
    print_configs(configs)
    print(f"\nraw figures: {out.relative_to(ROOT)}  ({time.monotonic() - started:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
