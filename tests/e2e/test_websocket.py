"""WebSockets through the real daemon to the origin's /ws echo: RFC 8441 extended
CONNECT from an h2 client (TLS) and an HTTP/1.1 Upgrade (cleartext), 10,000 messages
each, and a close from either side closing the other."""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import time

import h2.events
import h2.settings
import pytest

from h2proxy_tools.origin import ws_frame
from tests.config.certs import make_self_signed
from tests.e2e.conftest import base_config
from tests.e2e.h2client import H2Client
from tests.e2e.harness import poll_until, start_proxy, write_config
from tests.e2e.test_upstreams_pooling import start_named_origin

MESSAGES = 10_000
BATCH = 250
TIMEOUT = 20.0


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, origin, certificate):
    workdir = tmp_path_factory.mktemp("websocket")
    proxy = start_proxy(write_config(workdir, base_config(origin.port, certificate)), ["tls", "h2c"])
    yield proxy
    proxy.stop()


def message(i: int) -> bytes:
    return b"message %d " % i + b"x" * (i % 300)


def client_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    return ws_frame(0x80 | opcode, payload, os.urandom(4))


class Frames:
    """Parses server frames (unmasked) from bytes as they arrive."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self.buffer += data
        out = []
        while len(self.buffer) >= 2:
            length, offset = self.buffer[1] & 0x7F, 2
            if length == 126:
                if len(self.buffer) < 4:
                    break
                length, offset = int.from_bytes(self.buffer[2:4], "big"), 4
            elif length == 127:
                if len(self.buffer) < 10:
                    break
                length, offset = int.from_bytes(self.buffer[2:10], "big"), 10
            if len(self.buffer) < offset + length:
                break
            out.append((self.buffer[0] & 0x0F, bytes(self.buffer[offset : offset + length])))
            del self.buffer[: offset + length]
        return out


def origin_open(port: int) -> int:
    """Connections open at the origin, not counting the one asking."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/stats")
        return json.loads(connection.getresponse().read())["open"] - 1
    finally:
        connection.close()


def wait_origin_open(port: int, expected: int) -> None:
    poll_until(lambda: origin_open(port) == expected, TIMEOUT, f"the origin to have {expected} open connections")


# -- HTTP/2 (RFC 8441) ---------------------------------------------------------


class H2WebSocket:
    def __init__(self, port: int) -> None:
        self.client = H2Client(port, tls=True)
        self.client.run_until(
            lambda: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in self.client.events), TIMEOUT
        )
        assert self.client.conn.remote_settings[h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL] == 1
        self.stream = self.client.conn.get_next_available_stream_id()
        self.client.conn.send_headers(
            self.stream,
            [
                (":method", "CONNECT"),
                (":protocol", "websocket"),
                (":scheme", "https"),
                (":authority", "localhost"),
                (":path", "/ws"),
                ("sec-websocket-version", "13"),
                ("sec-websocket-protocol", "echo"),
            ],
        )
        self.client.flush()
        self.frames = Frames()
        self.read = 0
        self.status, self.headers = None, {}
        self.client.run_until(lambda: self._head() is not None, TIMEOUT)

    def _head(self):
        for event in self.client.events:
            if isinstance(event, h2.events.ResponseReceived) and event.stream_id == self.stream:
                self.headers = dict(event.headers)
                self.status = int(self.headers[b":status"])
                return self.status
        return None

    def send(self, data: bytes, end: bool = False) -> None:
        """Send in DATA frames of at most the peer's frame size (the batches stay
        well inside the proxy's 1 MiB stream window)."""
        size = self.client.conn.max_outbound_frame_size
        chunks = [data[i : i + size] for i in range(0, len(data), size)] or [b""]
        for index, chunk in enumerate(chunks):
            self.client.conn.send_data(self.stream, chunk, end_stream=end and index == len(chunks) - 1)
        self.client.flush()

    def receive(self, count: int) -> list[tuple[int, bytes]]:
        got: list[tuple[int, bytes]] = []

        def enough() -> bool:
            events = self.client.events[self.read :]
            self.read = len(self.client.events)
            for event in events:
                if isinstance(event, h2.events.DataReceived) and event.stream_id == self.stream:
                    got.extend(self.frames.feed(event.data))
            return len(got) >= count

        self.client.run_until(enough, TIMEOUT)
        return got

    def ended(self) -> bool:
        return any(
            isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset)) and e.stream_id == self.stream
            for e in self.client.events
        )


def test_h2_websocket_echoes_10000_messages(daemon):
    """When an h2 client opens a WebSocket with extended CONNECT, it gets 200 with the negotiated subprotocol and 10,000 messages echo intact and in order."""
    ws = H2WebSocket(daemon.ports["tls"])
    try:
        assert ws.status == 200
        assert ws.headers[b"sec-websocket-protocol"] == b"echo"
        assert b"sec-websocket-accept" not in ws.headers
        for start in range(0, MESSAGES, BATCH):
            ws.send(b"".join(client_frame(message(i)) for i in range(start, start + BATCH)))
            assert ws.receive(BATCH) == [(0x1, message(i)) for i in range(start, start + BATCH)]
    finally:
        ws.client.close()


def test_h2_client_end_stream_closes_the_backend(daemon, origin):
    """When the h2 client ends its stream, the backend connection is closed and the client's stream is ended."""
    ws = H2WebSocket(daemon.ports["tls"])
    try:
        ws.send(client_frame(b"ping"))
        assert ws.receive(1) == [(0x1, b"ping")]
        during = origin_open(origin.port)
        ws.send(b"", end=True)
        ws.client.run_until(ws.ended, TIMEOUT)
        wait_origin_open(origin.port, during - 1)
    finally:
        ws.client.close()


def test_h2_client_close_with_end_stream_gets_the_backend_close(daemon):
    """When the h2 client sends its Close frame with END_STREAM (as Chromium does), the stream stays open for the backend's answer: the client gets the backend's Close frame, then END_STREAM (no reset)."""
    ws = H2WebSocket(daemon.ports["tls"])
    try:
        ws.send(client_frame(b"ping"))
        assert ws.receive(1) == [(0x1, b"ping")]
        ws.send(client_frame((1000).to_bytes(2, "big") + b"bye", opcode=0x8), end=True)
        assert ws.receive(1) == [(0x8, (1000).to_bytes(2, "big") + b"bye")]
        ws.client.run_until(ws.ended, TIMEOUT)
        assert not any(isinstance(e, h2.events.StreamReset) and e.stream_id == ws.stream for e in ws.client.events)
    finally:
        ws.client.close()


def test_h2_backend_close_ends_the_stream(daemon):
    """When the backend closes the WebSocket, the client gets its Close frame and then END_STREAM."""
    ws = H2WebSocket(daemon.ports["tls"])
    try:
        ws.send(client_frame(b"close"))
        assert ws.receive(1) == [(0x8, (1000).to_bytes(2, "big"))]
        ws.client.run_until(ws.ended, TIMEOUT)
        assert not any(isinstance(e, h2.events.StreamReset) and e.stream_id == ws.stream and e.error_code
                       for e in ws.client.events)
    finally:
        ws.client.close()


@pytest.fixture(scope="module")
def tls_backend_daemon(tmp_path_factory, certificate):
    """The daemon in front of the origin serving HTTPS (an https:// upstream)."""
    workdir = tmp_path_factory.mktemp("websocket-tls-backend")
    backend_cert = make_self_signed(workdir / "backend-certs", ["localhost", "127.0.0.1"], name="backend")
    secure = start_named_origin(workdir, "secure", tls=backend_cert)
    upstreams = {"app": {"servers": [{"address": f"https://127.0.0.1:{secure.port}"}],
                         "tls": {"ca_file": backend_cert[0], "server_name": "localhost"}}}
    proxy = start_proxy(write_config(workdir, base_config(secure.port, certificate, upstreams=upstreams)), ["tls"])
    yield proxy
    proxy.stop()
    secure.stop()


def test_h2_client_close_with_end_stream_over_a_tls_backend(tls_backend_daemon):
    """When the backend is reached over TLS and the h2 client sends its Close frame with END_STREAM, the client still gets the backend's Close frame, then END_STREAM (no reset)."""
    ws = H2WebSocket(tls_backend_daemon.ports["tls"])
    try:
        ws.send(client_frame(b"ping"))
        assert ws.receive(1) == [(0x1, b"ping")]
        ws.send(client_frame((1000).to_bytes(2, "big"), opcode=0x8), end=True)
        assert ws.receive(1) == [(0x8, (1000).to_bytes(2, "big"))]
        ws.client.run_until(ws.ended, TIMEOUT)
        assert not any(isinstance(e, h2.events.StreamReset) and e.stream_id == ws.stream for e in ws.client.events)
    finally:
        ws.client.close()


# -- HTTP/1.1 Upgrade ----------------------------------------------------------


HANDSHAKE = (
    b"GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


class H1WebSocket:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock.sendall(HANDSHAKE)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            assert chunk, f"closed during the handshake: {head!r}"
            head += chunk
        self.head, _, rest = head.partition(b"\r\n\r\n")
        self.frames = Frames()
        self.pending = self.frames.feed(rest)

    def receive(self, count: int) -> list[tuple[int, bytes]]:
        got, self.pending = self.pending, []
        while len(got) < count:
            chunk = self.sock.recv(65536)
            assert chunk, "connection closed"
            got.extend(self.frames.feed(chunk))
        return got

    def at_eof(self) -> bool:
        return self.sock.recv(65536) == b""


def test_http1_websocket_echoes_10000_messages(daemon):
    """When an HTTP/1.1 client upgrades to WebSocket, it gets the backend's 101 with the right accept and 10,000 messages echo intact and in order."""
    ws = H1WebSocket(daemon.ports["h2c"])
    try:
        lines = ws.head.lower().split(b"\r\n")
        assert lines[0].startswith(b"http/1.1 101")
        assert b"sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=" in lines
        assert b"upgrade: websocket" in lines and b"connection: upgrade" in lines
        for start in range(0, MESSAGES, BATCH):
            ws.sock.sendall(b"".join(client_frame(message(i)) for i in range(start, start + BATCH)))
            assert ws.receive(BATCH) == [(0x1, message(i)) for i in range(start, start + BATCH)]
    finally:
        ws.sock.close()


def test_http1_client_close_closes_the_backend(daemon, origin):
    """When the HTTP/1.1 client closes its connection, the proxy closes the backend connection too."""
    ws = H1WebSocket(daemon.ports["h2c"])
    ws.sock.sendall(client_frame(b"ping"))
    assert ws.receive(1) == [(0x1, b"ping")]
    during = origin_open(origin.port)
    ws.sock.close()
    wait_origin_open(origin.port, during - 1)


def test_http1_backend_close_closes_the_client(daemon):
    """When the backend closes the WebSocket, the HTTP/1.1 client gets the Close frame and then the connection closes."""
    ws = H1WebSocket(daemon.ports["h2c"])
    try:
        ws.sock.sendall(client_frame(b"close"))
        assert ws.receive(1) == [(0x8, (1000).to_bytes(2, "big"))]
        assert ws.at_eof()
    finally:
        ws.sock.close()


# -- the websockets client library (HTTP/1.1 Upgrade, TLS and cleartext) ------------

#: The daemon's abort timer (how long a closing client connection may take to flush)
#: is set far above the bound below: a close that waits for it is unmistakable.
ABORT_TIMEOUT = 120.0
#: How long the client waits for the proxy to close the TCP connection after the
#: closing handshake, above the bound so that a late close is measured, not cut off.
CLIENT_CLOSE_TIMEOUT = 20.0
#: A clean close completes in well under this (the handshake is two frames and a FIN).
CLOSE_BOUND = 5.0


@pytest.fixture(scope="module")
def long_abort_daemon(tmp_path_factory, origin, certificate):
    workdir = tmp_path_factory.mktemp("websocket-client")
    config = base_config(origin.port, certificate, timeouts={"abort": ABORT_TIMEOUT})
    proxy = start_proxy(write_config(workdir, config), ["tls", "h2c"])
    yield proxy
    proxy.stop()


def websockets_client(proxy, listener: str, certificate):
    """A websockets client connected through C{listener} to the origin's /ws, over
    HTTP/1.1 (the library sends no ALPN, so a TLS listener speaks HTTP/1.1 to it)."""
    from websockets.sync.client import connect

    if listener == "tls":
        context = ssl.create_default_context(cafile=certificate[0])
        url = f"wss://127.0.0.1:{proxy.ports['tls']}/ws"
    else:
        context = None
        url = f"ws://127.0.0.1:{proxy.ports['h2c']}/ws"
    return connect(url, ssl=context, subprotocols=["echo"], open_timeout=TIMEOUT, close_timeout=CLIENT_CLOSE_TIMEOUT)


@pytest.mark.parametrize("listener", ["tls", "h2c"])
def test_websockets_client_close_is_clean_and_prompt(long_abort_daemon, origin, certificate, listener):
    """When the websockets client echoes a message and closes, it gets the backend's Close (1000) back and the proxy closes the connection at once, well before the abort timer."""
    with websockets_client(long_abort_daemon, listener, certificate) as ws:
        assert ws.subprotocol == "echo"
        ws.send("ping")
        assert ws.recv(TIMEOUT) == "ping"
        during = origin_open(origin.port)
        started = time.monotonic()
        ws.close(1000, "client done")
        elapsed = time.monotonic() - started
    assert (ws.close_code, ws.close_reason) == (1000, "client done")
    assert elapsed < CLOSE_BOUND, f"close took {elapsed:.1f}s"
    wait_origin_open(origin.port, during - 1)


@pytest.mark.parametrize("listener", ["tls", "h2c"])
def test_websockets_server_close_is_clean_and_prompt(long_abort_daemon, certificate, listener):
    """When the backend closes the WebSocket (the origin's ``close`` message), the websockets client gets Close 1000 and the connection ends promptly."""
    from websockets.exceptions import ConnectionClosedOK

    with websockets_client(long_abort_daemon, listener, certificate) as ws:
        ws.send("ping")
        assert ws.recv(TIMEOUT) == "ping"
        started = time.monotonic()
        ws.send("close")
        with pytest.raises(ConnectionClosedOK):
            ws.recv(TIMEOUT)
        elapsed = time.monotonic() - started
    assert ws.close_code == 1000
    assert elapsed < CLOSE_BOUND, f"close took {elapsed:.1f}s"
