"""The WebSocket closing handshake through the whole proxy, in memory: a real h2
client opening an RFC 8441 tunnel, our H2Connection, the bridge and the upstream
pool, with the backend played on a TCP-like StringTransport.

Browsers (Chromium) send their Close frame with END_STREAM set on the DATA frame:
the stream is then half-closed (remote), and the backend's answering Close frame
must still reach the client before the stream ends, or the page sees close code
1006 instead of a clean close."""

from __future__ import annotations

import base64
import hashlib

import h2.errors
import h2.events
from twisted.internet import defer
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from h2proxy_tools.origin import WS_CLOSE, ws_frame
from h2proxy.upstream.http11 import TUNNEL_CLOSE_TIMEOUT, ClientState
from tests.integration.test_proxy_inmemory import Proxy
from tests.upstream.test_websocket import TCPTransport

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
NORMAL_CLOSURE = (1000).to_bytes(2, "big")
#: The Close frame a client sends: FIN + opcode 8, masked (RFC 6455 5.3).
CLIENT_CLOSE = ws_frame(0x80 | WS_CLOSE, NORMAL_CLOSURE, b"\x1f\x2e\x3d\x4c")
#: The backend's answer: the same status, unmasked.
SERVER_CLOSE = ws_frame(0x80 | WS_CLOSE, NORMAL_CLOSURE)


class Backend:
    """Hands the pool's protocols L{TCPTransport}s and plays the backend on them."""

    def __init__(self) -> None:
        self.connections: list[tuple[object, TCPTransport]] = []

    def connect(self, factory):
        protocol = factory.buildProtocol(None)
        transport = TCPTransport()
        protocol.makeConnection(transport)
        self.connections.append((protocol, transport))
        return defer.succeed(protocol)

    def sends(self, data: bytes) -> None:
        """The backend writes C{data}. A closed socket never reads it: the
        connection is simply gone."""
        protocol, transport = self.connections[0]
        if transport.disconnecting:
            protocol.connectionLost(Failure(ConnectionDone("socket closed by us")))
        else:
            protocol.dataReceived(data)

    def closes(self) -> None:
        protocol, transport = self.connections[0]
        if not transport.disconnecting:
            protocol.connectionLost(Failure(ConnectionDone("backend closed")))


def open_websocket(proxy: Proxy, backend: Backend) -> int:
    """Extended CONNECT from the client, a 101 from the backend: an open tunnel."""
    client = proxy.client
    streamID = client.conn.get_next_available_stream_id()
    client.conn.send_headers(
        streamID,
        [
            (b":method", b"CONNECT"),
            (b":protocol", b"websocket"),
            (b":scheme", b"https"),
            (b":authority", b"example.org"),
            (b":path", b"/ws"),
            (b"sec-websocket-version", b"13"),
        ],
    )
    client.flush()
    _, transport = backend.connections[0]
    fields = dict(line.split(b": ", 1) for line in transport.value().split(b"\r\n\r\n")[0].split(b"\r\n")[1:])
    accept = base64.b64encode(hashlib.sha1(fields[b"sec-websocket-key"] + GUID).digest())
    transport.clear()
    backend.sends(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )
    client.flush()
    assert client.response(streamID)["status"] == 200
    return streamID


def proxy_with_backend() -> tuple[Proxy, Backend]:
    proxy = Proxy()
    backend = Backend()
    proxy.endpoint.connect = backend.connect  # the pool holds the endpoint made with it
    return proxy, backend


def test_client_close_with_end_stream_gets_the_backends_close_then_end_stream():
    """When the client sends its Close frame with END_STREAM, the stream stays half-closed: the backend gets the Close and an EOF, its answering Close frame reaches the client as DATA, and its close then ends the stream with END_STREAM, not RST_STREAM."""
    proxy, backend = proxy_with_backend()
    streamID = open_websocket(proxy, backend)
    protocol, transport = backend.connections[0]

    proxy.client.conn.send_data(streamID, CLIENT_CLOSE, end_stream=True)
    proxy.client.flush()
    assert transport.value() == CLIENT_CLOSE
    assert transport.writeClosed and not transport.disconnecting
    assert protocol.state is ClientState.TUNNEL_CLOSING
    assert streamID in proxy.server.connection.streams
    assert proxy.client.response(streamID)["ended"] is False

    backend.sends(SERVER_CLOSE)
    proxy.client.flush()
    response = proxy.client.response(streamID)
    assert response["body"] == SERVER_CLOSE and not response["ended"]

    backend.closes()
    proxy.server.clock.advance(0)
    proxy.client.flush()
    response = proxy.client.response(streamID)
    assert response["ended"] and response["reset"] is None
    endings = [e for e in proxy.client.events if isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset))]
    assert [type(e) for e in endings] == [h2.events.StreamEnded]
    proxy.assertNoLeftovers()


def test_backend_that_never_closes_after_the_clients_close_is_cut_off():
    """When the backend neither answers nor closes after the client's END_STREAM, the tunnel is closed after TUNNEL_CLOSE_TIMEOUT of silence and the client's stream is reset with CANCEL."""
    proxy, backend = proxy_with_backend()
    streamID = open_websocket(proxy, backend)
    protocol, transport = backend.connections[0]
    proxy.client.conn.send_data(streamID, CLIENT_CLOSE, end_stream=True)
    proxy.client.flush()

    proxy.server.clock.advance(TUNNEL_CLOSE_TIMEOUT - 1)
    assert not transport.disconnecting
    proxy.server.clock.advance(1)
    assert transport.disconnecting
    protocol.connectionLost(Failure(ConnectionDone("aborted by us")))
    proxy.server.clock.advance(0)
    proxy.client.flush()
    assert proxy.client.response(streamID)["reset"] == h2.errors.ErrorCodes.CANCEL
    proxy.assertNoLeftovers()
