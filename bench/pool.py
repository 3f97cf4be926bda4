"""Requests per second through the upstream pool: keep-alive connections versus a new
TCP connection per request.

    python bench/pool.py [--requests 20000] [--rounds 3] [--concurrency 1,16]

One process runs our UpstreamPool on an EPollReactor against one origin on
127.0.0.1: bench/build/origin (the C origin bench/run builds) when it exists, else
h2proxy_tools.origin. For each concurrency it sends the same GETs twice, once
with a pool that keeps idle connections (keepalive 32, more than any concurrency
measured here needs) and once with keepalive: 0 (a new connection for every
request), and prints the best of --rounds for each, their ratio, and the
connections the pool opened. A benchmark, not a test: it prints
figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from twisted.internet import epollreactor

from h2proxy.config.upstreams import ServerConfig, UpstreamConfig
from h2proxy.errors import UpstreamError
from h2proxy.message import Headers, ResponseHead, UpstreamRequest
from h2proxy.upstream.pool import UpstreamPool

HERE = Path(__file__).resolve().parent
C_ORIGIN = HERE / "build" / "origin"
REQUEST = UpstreamRequest(b"GET", b"/", ((b"host", b"bench.test"),))


class Run:
    """Keeps C{concurrency} requests in flight until C{total} have completed."""

    def __init__(self, reactor, pool: UpstreamPool, total: int, concurrency: int) -> None:
        self.reactor = reactor
        self.pool = pool
        self.total = total
        self.concurrency = concurrency
        self.started = 0
        self.completed = 0
        self.failures = 0

    def start(self) -> None:
        for _ in range(min(self.concurrency, self.total)):
            self._next()

    def _next(self) -> None:
        self.started += 1
        self.pool.request(REQUEST, _Receiver(self))

    def finished(self, ok: bool) -> None:
        self.completed += 1
        self.failures += not ok
        if self.completed == self.total:
            self.reactor.stop()
        elif self.started < self.total:
            self._next()


class _Receiver:
    def __init__(self, run: Run) -> None:
        self.run = run

    def responseInformational(self, head: ResponseHead) -> None:
        pass

    def responseHeadReceived(self, head: ResponseHead) -> None:
        pass

    def responseDataReceived(self, data: bytes) -> None:
        pass

    def responseEnded(self, trailers: Headers) -> None:
        self.run.finished(True)

    def responseFailed(self, error: UpstreamError) -> None:
        self.run.finished(False)


def measure(port: int, total: int, concurrency: int, keepalive: int) -> tuple[float, int, int]:
    """(seconds, failures, connections opened) for C{total} GETs on a fresh reactor."""
    reactor = epollreactor.EPollReactor()
    config = UpstreamConfig(
        name="bench", servers=(ServerConfig(host="127.0.0.1", port=port),), keepalive=keepalive, max_requests=0
    )
    pool = UpstreamPool(reactor=reactor, config=config, connectTimeout=5, responseTimeout=30)
    run = Run(reactor, pool, total, concurrency)
    reactor.callWhenRunning(run.start)
    began = time.perf_counter()
    reactor.run(installSignalHandlers=False)
    elapsed = time.perf_counter() - began
    opened = pool.connectionsOpened
    closed: list[object] = []
    pool.close().addBoth(closed.append)
    while not closed:
        reactor.iterate(0.01)
    return elapsed, run.failures, opened


def start_origin() -> tuple[subprocess.Popen, int, str]:
    if C_ORIGIN.exists():
        command, name = [str(C_ORIGIN), "0"], "bench/build/origin (C)"
    else:
        command, name = [sys.executable, "-m", "h2proxy_tools.origin", "--port", "0"], "h2proxy_tools.origin"
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    match = re.search(r"127\.0\.0\.1:(\d+)", line)
    if match is None:
        process.kill()
        raise SystemExit(f"origin did not start: {line!r}")
    return process, int(match.group(1)), name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", default="1,16")
    args = parser.parse_args(argv)
    process, port, origin = start_origin()
    results = []
    try:
        print(f"origin: {origin} on 127.0.0.1:{port}; {args.requests} GETs per run, best of {args.rounds}")
        print(f"{'concurrency':>11} {'pooled req/s':>13} {'new conn req/s':>15} {'ratio':>6} {'conns pooled/new':>17}")
        for concurrency in (int(c) for c in args.concurrency.split(",")):
            row = {"concurrency": concurrency}
            for label, keepalive in (("pooled", 32), ("new_connection", 0)):
                best = min(measure(port, args.requests, concurrency, keepalive) for _ in range(args.rounds))
                seconds, failures, opened = best
                row[label] = {"req_per_s": round(args.requests / seconds), "failures": failures, "connections": opened}
            ratio = row["pooled"]["req_per_s"] / row["new_connection"]["req_per_s"]
            print(
                f"{concurrency:>11} {row['pooled']['req_per_s']:>13} {row['new_connection']['req_per_s']:>15} "
                f"{ratio:>6.2f} {row['pooled']['connections']:>8}/{row['new_connection']['connections']}"
            )
            results.append(row)
    finally:
        process.kill()
        process.wait()
    print(json.dumps({"bench": "pool", "origin": origin, "requests": args.requests, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
