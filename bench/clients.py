"""HTTP/2 clients for the workloads h2load cannot drive (asyncio + ssl + h2).

  slow   W5: CLIENTS connections each GET a large body and return flow-control
         credit at RATE bytes/s, so the proxy may hold at most one window per
         stream; a proxy that reads the origin ahead into memory grows instead.
  ttfb   W6: GET /drip from bench/drip.py and compare each chunk's send stamp
         (CLOCK_MONOTONIC, written by the origin) with its arrival time here.
  idle   Idle connections: open COUNT TLS + HTTP/2 connections (preface, SETTINGS,
         both SETTINGS acknowledged), print a "ready" JSON line, hold them until a
         line arrives on stdin (or --hold seconds pass), then close them.

Every command prints one JSON object on stdout and is bounded in time. Only
127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import ssl
import statistics
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.settings

HOST = "127.0.0.1"
#: Bytes asked of the socket per read.
READ_SIZE = 65536
#: How often the slow reader hands out credit (seconds).
PACE_INTERVAL = 0.01
#: Seconds allowed for one connection's TLS and SETTINGS exchange.
CONNECT_TIMEOUT = 20.0
#: Handshakes in flight at once while opening idle connections.
IDLE_CONCURRENCY = 64
#: Extra seconds any single drip request may take beyond its nominal length.
DRIP_SLACK = 10.0


def make_tls_context() -> ssl.SSLContext:
    """One client context for every connection (building one loads the CA store: slow)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    return context


TLS_CONTEXT = make_tls_context()


class Client:
    """One HTTP/2 connection: an h2 state machine over an asyncio TLS stream."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 window: int) -> None:
        self.reader = reader
        self.writer = writer
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.conn = h2.connection.H2Connection(config)
        self.conn.local_settings = h2.settings.Settings(
            client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window}
        )

    @classmethod
    async def open(cls, port: int, window: int = 65535) -> "Client":
        reader, writer = await asyncio.open_connection(
            HOST, port, ssl=TLS_CONTEXT, server_hostname="localhost", limit=READ_SIZE
        )
        if writer.get_extra_info("ssl_object").selected_alpn_protocol() != "h2":
            writer.close()
            raise ConnectionError("the server did not negotiate h2 over ALPN")
        client = cls(reader, writer, window)
        client.conn.initiate_connection()
        client.flush()
        return client

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.writer.write(data)

    async def events(self) -> list:
        """The h2 events of the next read; an empty read means the server closed."""
        data = await self.reader.read(READ_SIZE)
        if not data:
            raise ConnectionError("connection closed by the server")
        events = self.conn.receive_data(data)
        self.flush()
        return events

    def get(self, path: str) -> int:
        stream_id = self.conn.get_next_available_stream_id()
        self.conn.send_headers(
            stream_id,
            [(":method", "GET"), (":scheme", "https"), (":authority", "localhost"), (":path", path)],
            end_stream=True,
        )
        self.flush()
        return stream_id

    def close(self) -> None:
        self.writer.transport.abort()


# ---- W5: slow readers ----------------------------------------------------------------


async def slow_reader(port: int, path: str, rate: float, seconds: float) -> dict:
    """Read one body, crediting at most C{rate} bytes/s, for C{seconds}."""
    client = await asyncio.wait_for(Client.open(port), CONNECT_TIMEOUT)
    stream_id = client.get(path)
    state = {"received": 0, "credited": 0, "pending": 0, "ended": False, "status": None, "reset": None}
    start = time.monotonic()
    deadline = start + seconds

    async def read_loop() -> None:
        while not state["ended"]:
            for event in await client.events():
                if isinstance(event, h2.events.ResponseReceived):
                    state["status"] = dict(event.headers).get(b":status", b"").decode()
                elif isinstance(event, h2.events.DataReceived):
                    state["received"] += len(event.data)
                    state["pending"] += event.flow_controlled_length
                elif isinstance(event, h2.events.StreamReset):
                    state["ended"], state["reset"] = True, int(event.error_code)
                elif isinstance(event, h2.events.StreamEnded):
                    state["ended"] = True

    async def pace_loop() -> None:
        while True:
            await asyncio.sleep(PACE_INTERVAL)
            allowed = int(rate * (time.monotonic() - start)) - state["credited"]
            give = min(state["pending"], allowed)
            if give > 0:
                client.conn.acknowledge_received_data(give, stream_id)
                state["pending"] -= give
                state["credited"] += give
                client.flush()

    reading = asyncio.ensure_future(read_loop())
    pacing = asyncio.ensure_future(pace_loop())
    try:
        await asyncio.wait_for(asyncio.shield(reading), max(0.0, deadline - time.monotonic()))
    except asyncio.TimeoutError:
        pass
    finally:
        pacing.cancel()
        reading.cancel()
        client.close()
    elapsed = time.monotonic() - start
    return {"status": state["status"], "received": state["received"], "seconds": elapsed,
            "rate": state["received"] / elapsed, "ended": state["ended"], "reset": state["reset"]}


async def slow_command(args) -> dict:
    results = await asyncio.gather(
        *(slow_reader(args.port, args.path, args.rate, args.seconds) for _ in range(args.clients)),
        return_exceptions=True,
    )
    errors = [repr(r) for r in results if isinstance(r, BaseException)]
    good = [r for r in results if not isinstance(r, BaseException)]
    return {"clients": good, "errors": errors,
            "mean_rate": statistics.fmean(r["rate"] for r in good) if good else 0.0}


# ---- W6: time to first byte of a dripped response --------------------------------------


async def drip_once(port: int, chunks: int, interval: float) -> dict:
    """One /drip request: per-chunk delay (ms) between the origin's send and our receipt."""
    sent = time.monotonic()
    client = await asyncio.wait_for(Client.open(port), CONNECT_TIMEOUT)
    stream_id = client.get(f"/drip?chunks={chunks}&interval={interval}")
    delays: list[float] = []
    head_ms = None
    buffer = b""
    try:
        ended = False
        while not ended:
            for event in await client.events():
                if isinstance(event, h2.events.ResponseReceived):
                    head_ms = (time.monotonic() - sent) * 1000
                elif isinstance(event, h2.events.DataReceived):
                    arrived = time.monotonic_ns()
                    client.conn.acknowledge_received_data(event.flow_controlled_length, stream_id)
                    client.flush()
                    buffer += event.data
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        if line.startswith(b"t="):
                            stamp = int(line[2:].rstrip(b"."))
                            delays.append((arrived - stamp) / 1e6)
                elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                    ended = True
    finally:
        client.close()
    if not delays:
        raise ConnectionError("no stamped chunk arrived")
    return {"head_ms": head_ms, "first_ms": delays[0], "max_ms": max(delays), "delays_ms": delays}


async def ttfb_command(args) -> dict:
    runs = []
    for _ in range(args.repeat):
        limit = args.chunks * args.interval + DRIP_SLACK
        runs.append(await asyncio.wait_for(drip_once(args.port, args.chunks, args.interval), limit))
    return {"runs": runs,
            "first_ms": statistics.median(r["first_ms"] for r in runs),
            "max_ms": max(r["max_ms"] for r in runs)}


# ---- idle connections ----------------------------------------------------------------


async def open_idle(port: int, gate: asyncio.Semaphore) -> Client:
    """A connection whose SETTINGS both sides have acknowledged, then left alone."""
    async with gate:
        client = await Client.open(port)
        got_settings = got_ack = False
        while not (got_settings and got_ack):
            for event in await client.events():
                got_settings |= isinstance(event, h2.events.RemoteSettingsChanged)
                got_ack |= isinstance(event, h2.events.SettingsAcknowledged)
        return client


async def idle_command(args) -> dict:
    gate = asyncio.Semaphore(IDLE_CONCURRENCY)
    start = time.monotonic()
    attempts = [asyncio.wait_for(open_idle(args.port, gate), CONNECT_TIMEOUT + args.count / 100)
                for _ in range(args.count)]
    results = await asyncio.gather(*attempts, return_exceptions=True)
    clients = [r for r in results if isinstance(r, Client)]
    errors = sorted({repr(r) for r in results if not isinstance(r, Client)})
    print(json.dumps({"ready": True, "opened": len(clients), "failed": args.count - len(clients),
                      "seconds": time.monotonic() - start, "errors": errors[:5]}), flush=True)
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.readline), args.hold)
    except asyncio.TimeoutError:
        pass
    closed_by_server = sum(1 for c in clients if c.reader.at_eof())
    for client in clients:
        client.close()
    return {"opened": len(clients), "closed_by_server": closed_by_server}


def raise_file_limit(needed: int) -> None:
    """Lift this process's open-file limit (soft, up to hard) for many connections."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    slow = sub.add_parser("slow")
    slow.add_argument("--port", type=int, required=True)
    slow.add_argument("--path", default="/bytes/67108864")
    slow.add_argument("--clients", type=int, default=4)
    slow.add_argument("--rate", type=float, default=2e6, help="bytes per second per client")
    slow.add_argument("--seconds", type=float, default=10.0)
    ttfb = sub.add_parser("ttfb")
    ttfb.add_argument("--port", type=int, required=True)
    ttfb.add_argument("--chunks", type=int, default=5)
    ttfb.add_argument("--interval", type=float, default=0.2)
    ttfb.add_argument("--repeat", type=int, default=3)
    idle = sub.add_parser("idle")
    idle.add_argument("--port", type=int, required=True)
    idle.add_argument("--count", type=int, default=5000)
    idle.add_argument("--hold", type=float, default=120.0, help="seconds to hold at most")
    args = parser.parse_args(argv)
    if args.command == "idle":
        raise_file_limit(args.count + 256)
    command = {"slow": slow_command, "ttfb": ttfb_command, "idle": idle_command}[args.command]
    print(json.dumps(asyncio.run(command(args))), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
