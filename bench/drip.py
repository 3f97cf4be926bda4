"""A slowly streaming HTTP/1.1 origin that stamps every chunk with its send time.

W6 (time to first byte of a slowly streamed response) needs to know when the origin
sent a byte and when the client received it. Both run on this machine, so they share
``CLOCK_MONOTONIC``: each chunk of ``GET /drip?chunks=N&interval=S`` is one line
``t=<time.monotonic_ns() just before the write>`` padded to CHUNK_SIZE bytes, and the
client subtracts that stamp from its own clock when the chunk arrives. The response
head goes out at once, the first chunk after ``interval`` seconds, so a proxy that
waited for the whole body (or for a buffer to fill) shows up as a delay of up to
``chunks * interval``.

Run: ``python bench/drip.py --port P``; prints ``drip listening on 127.0.0.1:P``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from urllib.parse import parse_qs, urlsplit

#: Bytes per chunk: small, like one server-sent event.
CHUNK_SIZE = 64
#: Upper bounds on what a request may ask for, so a typo cannot hold a connection for hours.
MAX_CHUNKS = 1000
MAX_INTERVAL = 5.0
#: Largest request head read (the bench sends a few hundred bytes).
MAX_HEAD = 16384


def stamp_chunk() -> bytes:
    """One chunk in chunked transfer coding, carrying the monotonic time of its sending."""
    line = f"t={time.monotonic_ns()}\n".encode().ljust(CHUNK_SIZE - 1, b".") + b"\n"
    return b"%x\r\n%s\r\n" % (len(line), line)


async def drip(writer: asyncio.StreamWriter, chunks: int, interval: float) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
                 b"Cache-Control: no-store\r\n\r\n")
    await writer.drain()
    for _ in range(chunks):
        await asyncio.sleep(interval)
        writer.write(stamp_chunk())
        await writer.drain()
    writer.write(b"0\r\n\r\n")
    await writer.drain()


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *fields = head.decode("latin-1").split("\r\n")
            method, target, version = request_line.split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, _, v in (f.partition(":") for f in fields if f)}
            length = int(headers.get("content-length", "0") or 0)
            if length:
                await reader.readexactly(length)
            query = {k: v[0] for k, v in parse_qs(urlsplit(target).query).items()}
            chunks = min(int(query.get("chunks", "5")), MAX_CHUNKS)
            interval = min(float(query.get("interval", "0.2")), MAX_INTERVAL)
            await drip(writer, chunks, interval)
            if version != "HTTP/1.1" or headers.get("connection", "").lower() == "close":
                break
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def main_async(port: int) -> None:
    server = await asyncio.start_server(serve, "127.0.0.1", port, limit=MAX_HEAD)
    print(f"drip listening on 127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    asyncio.run(main_async(parser.parse_args().port))


if __name__ == "__main__":
    main()
