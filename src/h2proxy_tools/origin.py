"""A small, fast HTTP/1.1 origin for the demo, the end-to-end tests and bench/.

Standard library only (asyncio), keep-alive, Content-Length and chunked request
bodies. It never buffers a whole body, so it is not the bottleneck of a transfer.

Endpoints:
  GET  /                 a greeting naming the request
  GET  /bytes/N          N bytes of a fixed pattern (Content-Length); ?chunked=1 chunked
  POST /upload           reads the body; answers JSON {"bytes": n, "sha256": hex}
  ANY  /headers          JSON of the request line and header fields as received
  GET  /status/N         an empty-ish response with status N
  GET  /drip?chunks=N&interval=S   N small chunks, one every S seconds (chunked)
  GET  /truncate/N       declares 2N bytes, sends N, then closes the connection
  GET  /stats            JSON {"connections": accepted, "requests": served, "open": n}
  GET  /trailers         a chunked body followed by trailers
  POST /stall-upload     never reads the request body; holds the connection open
  GET  /wait-open?max=N&timeout=S     answers once at most N other connections are open
  GET  /wait-blocked?timeout=S        answers once a /bytes sender has been blocked on a
                         full socket for 0.5 s; JSON {"blocked": bool, "body_sent": n}
  GET  /early-hints      a 103 Early Hints (a Link field) before a 200
  POST /continue         with ``Expect: 100-continue``, answers 100 Continue before reading
                         the body; then JSON {"expect": value or null, "bytes": n}
  ANY  /hop-by-hop       a response carrying connection-specific fields (Connection naming
                         X-Private, Keep-Alive) and mixed-case names, for header translation tests
  GET  /ws               a WebSocket echo (RFC 6455 handshake; each frame is echoed with the
                         same opcode, unmasked); a text message ``close`` makes the server
                         send a Close frame and close the connection; a Close is echoed, then closed

Run: ``python -m h2proxy_tools.origin --port 8000 [--log requests.jsonl]``.
Every request is appended to the log (one JSON object per line) when --log is set.
With ``--tls-cert CERT.pem --tls-key KEY.pem`` it serves HTTPS (HTTP/1.1 over TLS),
for testing https:// backends.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import sys
from urllib.parse import parse_qs, urlsplit

PATTERN = (bytes(range(256)) * 256)  # 64 KiB, the unit of /bytes bodies
MAX_HEAD = 64 * 1024
WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_WS_PAYLOAD = 16 * 1024 * 1024  # larger frames close the connection
WS_CLOSE = 0x8


async def read_ws_frame(reader) -> tuple[int, int, bytes]:
    """One client frame: (first byte, opcode, unmasked payload)."""
    first, second = await reader.readexactly(2)
    length = second & 0x7F
    if length == 126:
        length = int.from_bytes(await reader.readexactly(2), "big")
    elif length == 127:
        length = int.from_bytes(await reader.readexactly(8), "big")
    if length > MAX_WS_PAYLOAD:
        raise ValueError(f"WebSocket frame of {length} bytes")
    mask = await reader.readexactly(4) if second & 0x80 else b""
    payload = await reader.readexactly(length)
    return first, first & 0x0F, ws_unmask(payload, mask) if mask else payload


def ws_unmask(payload: bytes, mask: bytes) -> bytes:
    """XOR with the repeated 4-byte mask (RFC 6455 5.3), as one big integer."""
    size = len(payload)
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")


def ws_frame(first: int, payload: bytes, mask: bytes = b"") -> bytes:
    """A frame with first byte C{first}; masked (as a client must) when C{mask} is given."""
    size = len(payload)
    maskBit = 0x80 if mask else 0
    if size < 126:
        head = bytes([first, maskBit | size])
    elif size < 65536:
        head = bytes([first, maskBit | 126]) + size.to_bytes(2, "big")
    else:
        head = bytes([first, maskBit | 127]) + size.to_bytes(8, "big")
    return head + mask + (ws_unmask(payload, mask) if mask else payload)


def pattern_bytes(count: int) -> bytes:
    """The first ``count`` bytes of what /bytes/N serves (for checksums in tests)."""
    whole, rest = divmod(count, len(PATTERN))
    return PATTERN * whole + PATTERN[:rest]


class Origin:
    def __init__(self, log_path: str | None) -> None:
        self.connections = 0
        self.requests = 0
        self.open = 0
        self.body_sent = 0
        self.blocked_since: float | None = None
        self.log = open(log_path, "a", buffering=1) if log_path else None

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        try:
            while await self.one_request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            self.open -= 1
            writer.close()

    async def one_request(self, reader, writer) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head[:-4].decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name.strip().lower(), value.strip()))
        fields = dict(headers)
        self.requests += 1
        url = urlsplit(target)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/stall-upload":
            await asyncio.sleep(60)
            return False
        if url.path == "/continue" and fields.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await writer.drain()
        digest, size, trailers = await self.read_body(reader, fields)
        if self.log:
            self.log.write(json.dumps({"method": method, "target": target, "version": version,
                                       "headers": headers, "body_bytes": size,
                                       "trailers": trailers}) + "\n")
        keep = fields.get("connection", "").lower() != "close" and version == "HTTP/1.1"
        path = url.path
        if path.startswith("/bytes/"):
            await self.send_bytes(writer, int(path[7:]), query.get("chunked") == "1", method)
        elif path == "/upload":
            body = json.dumps({"bytes": size, "sha256": digest.hexdigest()}).encode()
            self.respond(writer, 200, body, b"application/json")
        elif path == "/headers":
            body = json.dumps({"method": method, "target": target, "version": version,
                               "headers": headers, "body_bytes": size,
                               "trailers": trailers}).encode()
            self.respond(writer, 200, body, b"application/json")
        elif path.startswith("/status/"):
            status = int(path[8:])
            self.respond(writer, status, b"" if status in (204, 304) else b"status\n")
        elif path == "/drip":
            await self.drip(writer, int(query.get("chunks", "5")), float(query.get("interval", "0.1")))
        elif path.startswith("/truncate/"):
            count = int(path[10:])
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (2 * count))
            writer.write(pattern_bytes(count))
            await writer.drain()
            writer.transport.abort()
            return False
        elif path == "/stats":
            self.respond(writer, 200, self.stats(), b"application/json")
        elif path == "/wait-open":
            await self.wait_until(lambda: self.open - 1 <= int(query.get("max", "0")),
                                  float(query.get("timeout", "10")))
            self.respond(writer, 200, self.stats(), b"application/json")
        elif path == "/wait-blocked":
            loop = asyncio.get_running_loop()
            blocked = await self.wait_until(
                lambda: self.blocked_since is not None and loop.time() - self.blocked_since > 0.5,
                float(query.get("timeout", "10")))
            body = json.dumps({"blocked": blocked, "body_sent": self.body_sent}).encode()
            self.respond(writer, 200, body, b"application/json")
        elif path == "/early-hints":
            writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\n")
            self.respond(writer, 200, b"hinted\n")
        elif path == "/continue":
            body = json.dumps({"expect": fields.get("expect"), "bytes": size}).encode()
            self.respond(writer, 200, body, b"application/json")
        elif path == "/hop-by-hop":
            writer.write(b"HTTP/1.1 200 OK\r\nConnection: X-Private\r\nX-Private: secret\r\n"
                         b"Keep-Alive: timeout=5\r\nX-Mixed-Case: Kept\r\nContent-Length: 3\r\n\r\nhop")
        elif path == "/ws":
            if not await self.websocket(reader, writer, fields):
                self.respond(writer, 400, b"not a websocket handshake\n")
                await writer.drain()
            return False
        elif path == "/trailers":
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-checksum\r\n\r\n"
                         b"5\r\nhello\r\n0\r\nx-checksum: abc123\r\n\r\n")
        else:
            body = f"hello from the h2proxy demo origin: {method} {target}\n".encode()
            self.respond(writer, 200, body)
        await writer.drain()
        return keep

    async def websocket(self, reader, writer, fields) -> bool:
        """Answer an RFC 6455 handshake with 101, then echo frames until a Close."""
        key = fields.get("sec-websocket-key", "").encode("latin-1")
        if "websocket" not in fields.get("upgrade", "").lower() or not key:
            return False
        accept = base64.b64encode(hashlib.sha1(key + WEBSOCKET_GUID).digest())
        protocols = [p.strip() for p in fields.get("sec-websocket-protocol", "").split(",") if p.strip()]
        extra = b"Sec-WebSocket-Protocol: %s\r\n" % protocols[0].encode() if protocols else b""
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Accept: %s\r\n%s\r\n" % (accept, extra))
        while True:
            first, opcode, payload = await read_ws_frame(reader)
            if opcode == 0x1 and payload == b"close":
                writer.write(ws_frame(0x80 | WS_CLOSE, (1000).to_bytes(2, "big")))
                await writer.drain()
                return True
            writer.write(ws_frame(first, payload))
            await writer.drain()
            if opcode == WS_CLOSE:
                return True

    def stats(self) -> bytes:
        return json.dumps({"connections": self.connections, "requests": self.requests,
                           "open": self.open, "body_sent": self.body_sent}).encode()

    async def wait_until(self, condition, timeout: float) -> bool:
        """Poll a condition inside the origin (the test itself waits on the answer)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not condition():
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def read_body(self, reader, fields):
        digest = hashlib.sha256()
        size = 0
        trailers = []
        if "chunked" in fields.get("transfer-encoding", "").lower():
            while True:
                line = await reader.readuntil(b"\r\n")
                length = int(line.split(b";")[0].strip(), 16)
                if length == 0:
                    while True:
                        line = await reader.readuntil(b"\r\n")
                        if line == b"\r\n":
                            break
                        name, _, value = line.decode("latin-1").partition(":")
                        trailers.append((name.strip().lower(), value.strip()))
                    break
                while length:
                    chunk = await reader.read(min(length, 262144))
                    if not chunk:
                        raise ConnectionError("eof in chunk")
                    digest.update(chunk)
                    size += len(chunk)
                    length -= len(chunk)
                await reader.readexactly(2)
        else:
            remaining = int(fields.get("content-length", "0") or 0)
            while remaining:
                chunk = await reader.read(min(remaining, 262144))
                if not chunk:
                    raise ConnectionError("eof in body")
                digest.update(chunk)
                size += len(chunk)
                remaining -= len(chunk)
        return digest, size, trailers

    def respond(self, writer, status: int, body: bytes, ctype: bytes = b"text/plain") -> None:
        writer.write(b"HTTP/1.1 %d X\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s"
                     % (status, ctype, len(body), body))

    async def send_bytes(self, writer, count: int, chunked: bool, method: str) -> None:
        if chunked:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                         b"Content-Length: %d\r\n\r\n" % count)
        if method == "HEAD":
            return
        remaining = count
        while remaining:
            piece = PATTERN if remaining >= len(PATTERN) else PATTERN[:remaining]
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            remaining -= len(piece)
            self.body_sent += len(piece)
            self.blocked_since = asyncio.get_running_loop().time()
            await writer.drain()
            self.blocked_since = None
        if chunked:
            writer.write(b"0\r\n\r\n")

    async def drip(self, writer, chunks: int, interval: float) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n")
        for index in range(chunks):
            line = f"chunk {index}\n".encode()
            writer.write(b"%x\r\n%s\r\n" % (len(line), line))
            await writer.drain()
            await asyncio.sleep(interval)
        writer.write(b"0\r\n\r\n")


def tls_context(cert: str, key: str):
    """A server-side TLS context for --tls-cert/--tls-key (HTTP/1.1 only)."""
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["http/1.1"])
    return context


class CannotListen(Exception):
    """The origin's address cannot be bound (a port in use, most often)."""


async def main_async(args) -> None:
    origin = Origin(args.log)
    context = tls_context(args.tls_cert, args.tls_key) if args.tls_cert else None
    try:
        server = await asyncio.start_server(origin.serve, args.host, args.port, limit=MAX_HEAD,
                                            backlog=1024, ssl=context)
    except OSError as error:
        reason = os.strerror(error.errno) if error.errno else str(error)
        raise CannotListen(f"origin: cannot listen on {args.host} port {args.port}: {reason}") from None
    port = server.sockets[0].getsockname()[1]
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as handle:
            handle.write(str(port))
        os.replace(args.port_file + ".tmp", args.port_file)
    scheme = "https" if context else "http"
    print(f"origin listening on {scheme}://{args.host}:{port}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve until interrupted; a port that cannot be bound
    is one line on stderr and exit status 1 (the demo script reports it as is)."""
    parser = argparse.ArgumentParser(prog="python -m h2proxy_tools.origin", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--port-file", help="write the bound port here (use with --port 0)")
    parser.add_argument("--log", help="append one JSON line per request to this file")
    parser.add_argument("--tls-cert", help="serve HTTPS with this PEM certificate chain (needs --tls-key)")
    parser.add_argument("--tls-key", help="the PEM private key of --tls-cert")
    args = parser.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    try:
        asyncio.run(main_async(args))
    except KeyboardInterrupt:
        sys.exit(0)
    except CannotListen as error:
        sys.stderr.write(f"{error}\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
