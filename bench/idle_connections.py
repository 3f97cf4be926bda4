"""Memory of idle TLS connections, per protocol, and what the worker gives back after.

Starts the demo origin and the daemon (one worker, a TLS listener, ``timeouts.idle``
long enough to keep every connection), then for each protocol:

  h2        COUNT TLS connections with ALPN h2: preface, SETTINGS both ways, idle.
  http/1.1  COUNT TLS connections with ALPN http/1.1: one keep-alive GET, then idle.

and reports the worker's RSS before, with the connections open (1 s after the last
one is ready), and SETTLE seconds after they all closed, plus KiB per connection
((during - before) / COUNT). Each protocol runs on a freshly started daemon, so
neither reuses memory the other left behind.

    .venv/bin/python bench/idle_connections.py [--count 1000] [--settle 10]

Only 127.0.0.1 is contacted. Bounded in time: every wait has a deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import ssl
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from h2proxy_tools.devcert import make_certificate  # noqa: E402
from tests.e2e.harness import start_origin, start_proxy, write_config  # noqa: E402

#: Connections set up at once (handshakes in flight).
CONCURRENCY = 64
#: Seconds one connection may take to be ready.
CONNECT_TIMEOUT = 30.0
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#: An empty SETTINGS frame and a SETTINGS ACK.
SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
SETTINGS_ACK = b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"


def client_context(alpn: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols([alpn])
    return context


async def open_h2(port: int, context: ssl.SSLContext) -> asyncio.StreamWriter:
    """Preface and SETTINGS sent; the server's SETTINGS acknowledged and ours acked."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    writer.write(PREFACE + SETTINGS)
    seen = b""
    while SETTINGS_ACK not in seen:
        chunk = await reader.read(65536)
        if not chunk:
            raise ConnectionError("closed during the SETTINGS exchange")
        seen += chunk
    writer.write(SETTINGS_ACK)
    await writer.drain()
    return writer


async def open_http1(port: int, context: ssl.SSLContext) -> asyncio.StreamWriter:
    """One keep-alive GET answered in full."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    writer.write(b"GET /bytes/10 HTTP/1.1\r\nHost: bench.test\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
    await reader.readexactly(length)
    return writer


async def hold(port: int, alpn: str, count: int, measure) -> dict:
    """Open C{count} connections, call C{measure()} while they are all open, close them."""
    context = client_context(alpn)
    opener = open_h2 if alpn == "h2" else open_http1
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one() -> asyncio.StreamWriter:
        async with gate:
            return await asyncio.wait_for(opener(port, context), CONNECT_TIMEOUT)

    results = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
    writers = [r for r in results if isinstance(r, asyncio.StreamWriter)]
    errors = sorted({repr(r) for r in results if not isinstance(r, asyncio.StreamWriter)})
    await asyncio.sleep(1.0)  # the worker finishes what the last handshakes started
    during = measure()
    for writer in writers:
        writer.close()
    for writer in writers:
        try:
            await asyncio.wait_for(writer.wait_closed(), 5.0)
        except (OSError, asyncio.TimeoutError, ssl.SSLError):
            pass
    return {"opened": len(writers), "errors": errors[:3], "during_kib": during}


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def measure_protocol(port: int, worker: int, alpn: str, count: int, settle: float) -> dict:
    before = rss_kib(worker)
    report = asyncio.run(hold(port, alpn, count, lambda: rss_kib(worker)))
    time.sleep(settle)
    after = rss_kib(worker)
    opened = report["opened"] or 1
    return {"protocol": alpn, "opened": report["opened"], "errors": report["errors"],
            "rss_before_mib": round(before / 1024, 1), "rss_during_mib": round(report["during_kib"] / 1024, 1),
            "rss_after_mib": round(after / 1024, 1),
            "kib_per_connection": round((report["during_kib"] - before) / opened, 1)}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--settle", type=float, default=10.0, help="seconds after closing before the last RSS reading")
    args = parser.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 2 * args.count + 256), hard), hard))
    workdir = Path(tempfile.mkdtemp(prefix="h2proxy-idle-"))
    origin = start_origin(workdir)
    cert, key = make_certificate(str(workdir / "certs"))
    config = {
        "workers": 1,
        "listeners": [{"name": "tls", "address": "127.0.0.1", "port": 0,
                       "tls": {"certificates": [{"cert": cert, "key": key}]}}],
        "upstreams": {"app": {"servers": [{"address": f"127.0.0.1:{origin.port}"}]}},
        "routes": [{"host": "*", "path": "/", "upstream": "app"}],
        "timeouts": {"idle": "600s", "request_header": "600s"},
    }
    try:
        for alpn in ("h2", "http/1.1"):
            print(json.dumps(fresh_daemon_run(workdir / alpn.replace("/", ""), config, alpn, args.count, args.settle)),
                  flush=True)
    finally:
        origin.stop()


def fresh_daemon_run(workdir: Path, config: dict, alpn: str, count: int, settle: float) -> dict:
    """One protocol on a freshly started daemon, warmed up with a few connections of
    that protocol first (first-use imports and buffers are paid before the baseline)."""
    workdir.mkdir()
    proxy = start_proxy(write_config(workdir, config), ["tls"])
    try:
        [worker] = proxy.worker_pids()
        measure_protocol(proxy.ports["tls"], worker, alpn, 16, 1.0)
        return measure_protocol(proxy.ports["tls"], worker, alpn, count, settle)
    finally:
        proxy.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
