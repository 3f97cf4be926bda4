"""Small blocking clients for the HTTP-semantics end-to-end tests (test_semantics_*.py):
a raw HTTP/1.1 client that shows informational responses, trailers and exact header
fields, optionally behind a PROXY protocol header, and an HTTP/2 upload helper that
respects flow control. Every read has a deadline; everything talks to 127.0.0.1.
"""

from __future__ import annotations

import json
import socket
import ssl
import struct
import time
from dataclasses import dataclass, field

import h2.events

from tests.e2e.h2client import H2Client

#: Largest response body these tests read into memory.
MAX_BODY = 16 * 1024 * 1024


@dataclass
class Response:
    """One HTTP/1.1 response as read off the wire (names lowercased)."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""
    trailers: list[tuple[str, str]] = field(default_factory=list)
    informational: list[tuple[int, list[tuple[str, str]]]] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        return next((v for n, v in self.headers if n == name), None)

    def json(self) -> dict:
        return json.loads(self.body)


def tls_context(alpn: list[str]) -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(alpn)
    return context


class RawHTTP1:
    """An HTTP/1.1 client on one connection: send bytes as given, read responses."""

    def __init__(self, port: int, *, tls: bool = False, prefix: bytes = b"", timeout: float = 10.0) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if prefix:
            sock.sendall(prefix)
        if tls:
            sock = tls_context(["http/1.1"]).wrap_socket(sock, server_hostname="localhost")
        self.sock = sock
        self.buffer = b""
        self.deadline = time.monotonic() + timeout

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()

    def _fill(self) -> bool:
        self.sock.settimeout(max(0.01, self.deadline - time.monotonic()))
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return bool(chunk)

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            if not self._fill():
                raise ConnectionError(f"closed while reading a line; got {self.buffer[:200]!r}")
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def _exactly(self, count: int) -> bytes:
        while len(self.buffer) < count:
            if not self._fill():
                raise ConnectionError("closed inside a body")
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def _fields(self) -> list[tuple[str, str]]:
        fields = []
        while line := self._line():
            name, _, value = line.decode("latin-1").partition(":")
            fields.append((name.strip().lower(), value.strip()))
        return fields

    def read_head(self) -> tuple[int, list[tuple[str, str]]]:
        """The next response head, informational or final."""
        status = int(self._line().split(b" ", 2)[1])
        return status, self._fields()

    def read_response(self, method: str = "GET") -> Response:
        """The next final response, with the 1xx heads before it and its body."""
        informational = []
        status, headers = self.read_head()
        while 100 <= status < 200:
            informational.append((status, headers))
            status, headers = self.read_head()
        response = Response(status, headers, informational=informational)
        if method == "HEAD" or status in (204, 304):
            return response
        length = response.header("content-length")
        if response.header("transfer-encoding") == "chunked":
            response.body, response.trailers = self._chunked()
        elif length is not None:
            response.body = self._exactly(int(length))
        else:
            while len(self.buffer) < MAX_BODY and self._fill():
                pass
            response.body, self.buffer = self.buffer, b""
        return response

    def _chunked(self) -> tuple[bytes, list[tuple[str, str]]]:
        parts = []
        while size := int(self._line().split(b";")[0], 16):
            parts.append(self._exactly(size))
            self._exactly(2)
        return b"".join(parts), self._fields()


def proxy_v1(source: str, source_port: int, destination_port: int) -> bytes:
    """A PROXY protocol v1 header for a TCP over IPv4 connection."""
    return f"PROXY TCP4 {source} 127.0.0.1 {source_port} {destination_port}\r\n".encode()


def proxy_v2(source: str, source_port: int, destination_port: int) -> bytes:
    """A PROXY protocol v2 header (PROXY command, TCP over IPv4)."""
    addresses = socket.inet_aton(source) + socket.inet_aton("127.0.0.1")
    addresses += struct.pack("!HH", source_port, destination_port)
    return b"\r\n\r\n\x00\r\nQUIT\n" + b"\x21\x11" + struct.pack("!H", len(addresses)) + addresses


def h2_upload(client: H2Client, stream_id: int, body: bytes, trailers=None, timeout: float = 30.0) -> None:
    """Send C{body} on a stream as the windows allow, then end it (with C{trailers}).
    Stops early if the server answers or resets the stream first."""
    deadline = time.monotonic() + timeout
    sent = 0
    while sent < len(body):
        if _stream_over(client, stream_id):
            return
        window = min(client.conn.local_flow_control_window(stream_id), client.conn.max_outbound_frame_size)
        if window <= 0:
            if time.monotonic() > deadline:
                raise AssertionError(f"upload stalled after {sent} bytes")
            client.receive(0.5)
            continue
        piece = body[sent : sent + window]
        client.conn.send_data(stream_id, piece)
        client.flush()
        sent += len(piece)
    if trailers:
        client.conn.send_headers(stream_id, trailers, end_stream=True)
    else:
        client.conn.end_stream(stream_id)
    client.flush()


def _stream_over(client: H2Client, stream_id: int) -> bool:
    return any(
        isinstance(e, (h2.events.StreamReset, h2.events.StreamEnded)) and e.stream_id == stream_id
        for e in client.events
    )


@dataclass
class H2Response:
    """Everything the client saw on one stream."""

    status: int | None
    headers: list[tuple[bytes, bytes]]
    body: bytes
    trailers: list[tuple[bytes, bytes]]
    informational: list[tuple[int, list[tuple[bytes, bytes]]]]
    reset: int | None

    def header(self, name: bytes) -> bytes | None:
        return next((v for n, v in self.headers if n == name), None)

    def json(self) -> dict:
        return json.loads(self.body)


def h2_response(client: H2Client, stream_id: int, timeout: float = 30.0) -> H2Response:
    """Read a stream to its end, including events the client already received."""
    client.run_until(lambda: _stream_over(client, stream_id), timeout)
    response = H2Response(None, [], b"", [], [], None)
    body = bytearray()
    for event in client.events:
        if getattr(event, "stream_id", None) != stream_id:
            continue
        if isinstance(event, h2.events.InformationalResponseReceived):
            headers = list(event.headers)
            response.informational.append((int(dict(headers)[b":status"]), headers))
        elif isinstance(event, h2.events.ResponseReceived):
            response.headers = list(event.headers)
            response.status = int(dict(response.headers)[b":status"])
        elif isinstance(event, h2.events.DataReceived):
            body += event.data
        elif isinstance(event, h2.events.TrailersReceived):
            response.trailers = list(event.headers)
        elif isinstance(event, h2.events.StreamReset):
            response.reset = event.error_code
    response.body = bytes(body)
    return response
