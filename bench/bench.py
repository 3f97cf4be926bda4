"""The h2proxy benchmark: h2proxy against nginx and Twisted's HTTP/2 proxy, same run.

``bench/run`` installs what is needed and calls this. It starts one origin that is
never the bottleneck (``bench/origin.c``, checked directly with h2load first), a
dripping origin for W6 (``bench/drip.py``), and the proxies under test, each pinned
with ``taskset``: proxies on CPU 0, origin and clients on CPU 1. With ``--workers N``
(N > 1) h2proxy and nginx run N workers each and nothing is pinned: the whole-machine
run. nginx is tuned as an operator would for a keep-alive HTTP/1.1 backend, and
h2proxy gets the same origin keep-alive (see peers.NGINX_CONF). Then it runs the
workloads interleaved over several rounds (every peer once per workload per round,
the peers' order rotated each round), prints a table of medians with min–max and the
ratio of h2proxy to each peer measured in the same round, and writes every raw
figure to ``bench/results/bench-<time>.json``.

Everything it starts runs in its own process group, recorded in WORKDIR/pgids so
that ``bench/run`` can kill what is left even if this process is killed; every
group is stopped at exit, on error and on Ctrl-C.

The pieces: ``processes`` (placement, starting, stopping and measuring processes),
``settings`` (what a run is asked to do), ``peers`` (the proxies and their configs),
``workloads`` (W1-W8, idle; W7 and W8 against the peers with the feature only); this
module runs the rounds and reports.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from peers import PEERS, Backends, Peer, start_backends
from processes import (LOAD_CPU, PINNED, PROXY_CPU, UNPINNED, BenchError, Launcher, cpu_seconds, describe,
                       leaf_pids, run_client, use_placement)
from settings import QUICK, Settings
from workloads import DOWNLOAD_SIZE, FRESH, NEEDS, UPLOAD_SIZE, WARM_UP, WORKLOADS, Run, parse_h2load

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
MiB = 1 << 20

#: Pause between two measurements, so one run's tail does not leak into the next.
SETTLE = 0.5
#: Before a measurement every server must be this quiet (CPU fraction over QUIET_WINDOW)...
QUIET_CPU = 0.05
QUIET_WINDOW = 0.25
#: ...or this many seconds must have passed (a peer still flushing an aborted 64 MiB body
#: into a dead connection would otherwise steal CPU 0 from the next peer's run).
QUIET_TIMEOUT = 30.0


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
    # No targets: figures for h2proxy's own file serving and compression, against nginx.
    ("W7", "mibps", "MiB/s (4 x 64 MiB from disk)", "{:,.0f}"),
    ("W7", "peak_rss_mib", "proxy peak RSS MiB", "{:.1f}"),
    ("W8", "rps", "req/s (100 KB HTML, gzip)", "{:,.0f}"),
    ("W8", "proxy_cpu_pct", "proxy CPU %", "{:.0f}"),
    ("W8", "wire_bytes", "body bytes per response", "{:,.0f}"),
    ("W8", "ratio", "compression ratio", "{:.2f}"),
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
    """raw[workload][peer] = one dict per round (figures, or {"error": ...}); a peer
    without the feature a workload needs has no entry for it."""
    raw: dict[str, dict[str, list[dict]]] = {
        w: {p.name: [] for p in peers if p.supports(NEEDS.get(w))} for w in settings.workloads}
    for index in range(settings.rounds):
        order = peers[index % len(peers):] + peers[:index % len(peers)]
        for workload in settings.workloads:
            for peer in order:
                if peer.name not in raw[workload]:
                    continue
                wait_quiet(peers, backends)
                raw[workload][peer.name].append(one_measurement(workload, peer, backends, settings, workdir,
                                                                upload_file, index))
                time.sleep(SETTLE)
    return raw


def one_measurement(workload: str, peer: Peer, backends: Backends, settings: Settings, workdir: Path,
                    upload_file: Path, index: int) -> dict:
    label = f"[round {index + 1}/{settings.rounds}] {workload:<4} {peer.name:<8}"
    feature = NEEDS.get(workload)
    try:
        if workload in FRESH:
            peer.restart(feature)
            run_client(["h2load", *WARM_UP, peer.url("/small")], 60)
            wait_quiet([peer], backends)
        else:
            peer.ensure_running(feature)
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
    parser.add_argument("--workloads", help="comma list of W1,W2,W3,W4,W5,W6,W7,W8,idle")
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
    settings, args = parse_args(argv)
    use_placement(PINNED if settings.pinned else UNPINNED)
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
    log(f"h2 library alone (no I/O, {describe('proxy')}): {ceiling['us_per_request']:.0f} us per small request, "
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
    configs = {f"{p.name} ({variant})" if variant else p.name: text
               for p in peers for variant, text in p.configs.items()}
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
    print(f"origin alone, h2load --h1 on {describe('load')}: {check['small_rps']:,.0f} req/s small "
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
