"""Where h2proxy's time goes: cProfile of one worker's serving code under W1.

``bench/run --profile`` uses this. A worker of the real daemon is a child of the
supervisor (``python -m h2proxy.worker.process``), out of reach of ``twistd
--profile``; so this module serves the same config with the same wiring a worker
uses (``load_config`` → ``ProxyServer.factoryFor`` → a TLS listener), minus the
supervisor's socket hand-over, inside ``cProfile``. The orchestrator pins it to
CPU 0, drives W1 (``h2load -c 32 -m 16``) at it from CPU 1, stops it with SIGINT
and prints the functions with the most own time and the most cumulative time.

cProfile roughly doubles the cost of every Python call, so the absolute req/s of a
profiled run means nothing; the shares are what to read.

Serve mode (run by the orchestrator): ``python bench/profile_h2proxy.py serve CONFIG OUT``.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import re
import signal
import sys
from pathlib import Path

#: Rows of each profile listing printed.
TOP = 25


def serve(config_path: str, out: str) -> None:
    """Serve CONFIG's first listener under cProfile until SIGINT/SIGTERM; stats to OUT."""
    from twisted.internet import endpoints, reactor

    from h2proxy.config.load import load_config
    from h2proxy.worker.server import ProxyServer

    config = load_config(config_path)
    server = ProxyServer(config, reactor)
    listener = config.listeners[0]
    endpoint = endpoints.TCP4ServerEndpoint(reactor, 0, backlog=4096, interface=listener.address)
    port = endpoint.listen(server.factoryFor(listener))
    port.addCallback(lambda p: print(f"profiling listener on 127.0.0.1:{p.getHost().port}", flush=True))
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: reactor.callFromThread(reactor.stop))
    profiler = cProfile.Profile()
    profiler.enable()
    reactor.run(installSignalHandlers=False)
    profiler.disable()
    profiler.dump_stats(out)


#: (label, substring of a code file's path) in match order: where own time is charged.
AREAS = [
    ("h2proxy.frontend", "/h2proxy/frontend/"),
    ("h2proxy.upstream", "/h2proxy/upstream/"),
    ("h2proxy.bridge", "/h2proxy/bridge/"),
    ("h2proxy (other)", "/h2proxy/"),
    ("h2", "/h2/"),
    ("hpack", "/hpack/"),
    ("hyperframe", "/hyperframe/"),
    ("priority", "/priority/"),
    ("pyOpenSSL + cffi (TLS)", "/OpenSSL/"),
    ("twisted.protocols.tls", "/twisted/protocols/tls"),
    ("twisted (reactor, TCP, Deferreds, logging)", "/twisted/"),
    ("python stdlib", "/lib/python3"),
]


def by_area(stats: pstats.Stats) -> list[tuple[str, float]]:
    """Own time summed by library or h2proxy layer; C builtins are charged to 'builtins'."""
    totals: dict[str, float] = {}
    for (filename, _, name), (_, _, tottime, _, _) in stats.stats.items():
        if filename == "~":
            if "SSL_" in name or "BIO_" in name:
                area = "OpenSSL (C calls through cffi)"
            elif any(word in name for word in ("socket", "epoll", "poll")):
                area = "socket/epoll system calls"
            else:
                area = "builtins (C)"
        else:
            area = next((label for label, part in AREAS if part in filename), "other")
        totals[area] = totals.get(area, 0.0) + tottime
    return sorted(totals.items(), key=lambda item: -item[1])


def summary(stats_path: Path) -> str:
    """Own time by area, then the top functions by own and by cumulative time, as text."""
    text = io.StringIO()
    stats = pstats.Stats(str(stats_path), stream=text)
    total = stats.total_tt
    text.write(f"total profiled time {total:.2f}s\n\n== own time by area ==\n")
    for area, seconds in by_area(stats):
        text.write(f"{100 * seconds / total:5.1f}%  {seconds:7.2f}s  {area}\n")
    stats.strip_dirs()
    text.write("\n== by own time (tottime) ==\n")
    stats.sort_stats("tottime").print_stats(TOP)
    text.write("\n== by cumulative time ==\n")
    stats.sort_stats("cumulative").print_stats(TOP)
    return text.getvalue()


def profile_run(launcher, workdir: Path, settings, origin_binary: Path) -> int:
    """Start the origins and a profiled h2proxy, drive W1 at it, print the profile."""
    from bench import RESULTS, ROOT, log
    from peers import H2ProxyPeer, start_backends
    from processes import BenchError
    from workloads import Run, w1

    backends = start_backends(launcher, workdir, origin_binary)
    peer = H2ProxyPeer(launcher, backends, settings)
    import yaml

    config_path = workdir / "h2proxy.yaml"
    config_path.write_text(yaml.safe_dump(peer.config(), sort_keys=False))
    stats_path = workdir / "h2proxy.prof"
    argv = [sys.executable, str(Path(__file__)), "serve", str(config_path), str(stats_path)]
    pattern = re.compile(r"profiling listener on 127\.0\.0\.1:(\d+)")
    child, match = launcher.start("h2proxy-profiled", argv, "proxy", pattern.search, cwd=workdir)
    peer.child, peer.port = child, int(match.group(1))
    run = Run(peer, backends, settings, workdir, workdir / "unused")
    result = w1(run)
    log("profiled W1: " + ", ".join(f"{k}={v:.4g}" for k, v in result.items()))
    child.process.send_signal(signal.SIGINT)
    child.process.wait(60)
    if not stats_path.exists():
        raise BenchError(f"the profiled proxy wrote no statistics:\n{child.tail()}")
    report = summary(stats_path)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "profile-h2proxy.txt"
    out.write_text(report)
    print(report)
    print(f"saved to {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "serve":
        serve(sys.argv[2], sys.argv[3])
    else:
        print(summary(Path(sys.argv[1])) if len(sys.argv) == 2 else __doc__)
