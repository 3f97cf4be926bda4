"""WebSocket upgrades on the HTTP/1.1 front end: the parser marks the handshake, a
101 turns the connection into a pipe both ways, and either side's close ends it."""

from __future__ import annotations

from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.python.failure import Failure

from h2proxy.frontend.http1.parse import parse_request
from h2proxy.frontend.http1.write import switching_protocols
from h2proxy.message import ResponseHead
from tests.frontend_http1.harness import PausingProducer, connect

HANDSHAKE = (
    b"GET /chat HTTP/1.1\r\nHost: example.test\r\nConnection: keep-alive, Upgrade\r\n"
    b"Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
SWITCH = ResponseHead(101, ((b"sec-websocket-accept", b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),))


def switched(**options):
    h = connect(**options)
    h.feed(HANDSHAKE)
    h.handler.stream.writeHeaders(SWITCH)
    return h


def test_handshake_is_marked_and_keeps_the_websocket_fields():
    """When a GET asks to upgrade to websocket, the head says protocol websocket and keeps the Sec-WebSocket fields, not Upgrade/Connection."""
    head = parse_request(HANDSHAKE, secure=False).head
    assert head.protocol == b"websocket" and head.method == b"GET"
    names = [name for name, _ in head.headers]
    assert names == [b"sec-websocket-key", b"sec-websocket-version"]


def test_other_upgrades_are_dropped_as_before():
    """When a request asks to upgrade to something else (h2c), no protocol is marked and Upgrade is dropped."""
    raw = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAA\r\n\r\n"
    head = parse_request(raw, secure=False).head
    assert head.protocol is None
    assert all(name not in (b"upgrade", b"http2-settings") for name, _ in head.headers)


def test_upgrade_without_connection_option_is_not_a_handshake():
    """When Upgrade: websocket comes without Connection: upgrade, it is an ordinary GET."""
    raw = b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n"
    assert parse_request(raw, secure=False).head.protocol is None


def test_switching_protocols_head():
    """When the handler answers 101, the head names the upgrade and drops hop-by-hop fields the handler gave."""
    start = switching_protocols(ResponseHead(101, ((b"x-a", b"1"), (b"connection", b"close"))), b"websocket")
    assert start.data == b"HTTP/1.1 101 Switching Protocols\r\nx-a: 1\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n"


def test_request_end_is_not_delivered_before_the_switch():
    """When a handshake arrives, the handler gets its head but not its end (the tunnel is still to come)."""
    h = connect()
    h.feed(HANDSHAKE)
    assert h.handler.kinds() == ["head"]


def test_101_turns_the_connection_into_a_pipe():
    """When the handler answers 101, client bytes (also those sent early) go to it raw, and its writes go out raw."""
    h = connect()
    h.feed(HANDSHAKE + b"\x81\x85early")
    h.handler.stream.writeHeaders(SWITCH)
    out = h.output()
    assert out.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"upgrade: websocket\r\n" in out and b"connection: upgrade\r\n" in out
    assert h.handler.body() == b"\x81\x85early"
    h.feed(b"GET / HTTP/1.1\r\n\r\n")
    assert h.handler.body() == b"\x81\x85earlyGET / HTTP/1.1\r\n\r\n"
    h.handler.stream.write(b"\x81\x02hi")
    assert h.output() == b"\x81\x02hi"
    assert len(h.handlers) == 1


def test_tunnel_pause_pauses_the_socket():
    """When the handler pauses a tunnel, the client's socket is paused and bytes wait until resumed."""
    h = switched()
    h.handler.stream.pauseProducing()
    assert h.transport.producerState == "paused"
    h.feed(b"wait")
    assert h.handler.body() == b""
    h.handler.stream.resumeProducing()
    assert h.handler.body() == b"wait" and h.transport.producerState == "producing"


def test_full_client_socket_pauses_the_tunnel_producer():
    """When the client's socket is full, the registered producer (the backend) is paused, and resumed when it drains."""
    h = switched()
    producer = PausingProducer()
    h.handler.stream.registerProducer(producer, True)
    h.protocol.pauseProducing()
    assert producer.state == "paused"
    h.protocol.resumeProducing()
    assert producer.state == "producing"


def test_finish_closes_the_client_connection():
    """When the handler finishes a tunnel (the backend closed), the client connection is closed."""
    h = switched()
    h.handler.stream.finish()
    assert h.transport.disconnecting


def test_client_clean_close_is_the_end_of_the_request():
    """When the client closes a tunnel cleanly, the handler gets requestEnded, not an abort."""
    h = switched()
    h.protocol.connectionLost(Failure(ConnectionDone()))
    assert h.handler.kinds() == ["head", "end"]


def test_client_reset_aborts_the_tunnel():
    """When the client's connection is lost abnormally, the handler is aborted."""
    h = switched()
    h.protocol.connectionLost(Failure(ConnectionLost()))
    assert h.handler.kinds() == ["head", "aborted"]


def test_quiet_tunnel_outlives_the_idle_timeout():
    """When a tunnel is quiet longer than the idle timeout, the connection stays open."""
    h = switched(idleTimeout=5.0)
    h.clock.advance(60)
    assert not h.transport.disconnecting


def test_refused_upgrade_closes_after_the_response():
    """When the handler answers a handshake with 403, the response goes out and the connection closes."""
    h = connect()
    h.feed(HANDSHAKE)
    h.handler.respond(403, b"no")
    out = h.output()
    assert out.startswith(b"HTTP/1.1 403 ") and b"connection: close" in out
    assert h.transport.disconnecting
