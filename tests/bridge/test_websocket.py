"""WebSocket handshakes through StreamBridge (fake stream and pool): RFC 8441 extended
CONNECT becomes an HTTP/1.1 Upgrade with the proxy's key, the 101 becomes a 200 when
its accept is right, HTTP/1.1 handshakes pass through, and the tunnel is wired both
ways and closed from either side."""

from __future__ import annotations

from twisted.python.failure import Failure

from h2proxy.bridge import websocket
from h2proxy.errors import BackendClosed
from h2proxy.frontend.handler import ResetReason
from h2proxy.message import RequestHead, ResponseHead
from tests.bridge.test_bridge import setup

RFC_KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def h2_connect(**kw) -> RequestHead:
    base = dict(
        method=b"CONNECT",
        scheme=b"https",
        authority=b"example.org",
        path=b"/chat",
        protocol=b"websocket",
        headers=(
            (b"sec-websocket-protocol", b"chat, superchat"),
            (b"sec-websocket-extensions", b"permessage-deflate"),
            (b"sec-websocket-version", b"13"),
            (b"sec-websocket-key", b"client-chosen"),
        ),
    )
    base.update(kw)
    return RequestHead(**base)


def h1_upgrade() -> RequestHead:
    return RequestHead(
        method=b"GET",
        scheme=b"http",
        authority=b"example.org",
        path=b"/chat",
        protocol=b"websocket",
        headers=((b"sec-websocket-key", RFC_KEY), (b"sec-websocket-version", b"13")),
        end_stream=True,
    )


def switched(key: bytes, extra=()) -> ResponseHead:
    return ResponseHead(101, ((b"sec-websocket-accept", websocket.accept_for(key)), *extra))


def test_accept_matches_rfc_6455_example():
    """When the RFC 6455 sample key is hashed, the sample accept comes out."""
    assert websocket.accept_for(RFC_KEY) == RFC_ACCEPT


def test_new_keys_are_16_random_bytes_in_base64():
    """When a key is made, it is the base64 of 16 bytes from the random source."""
    assert websocket.new_key(lambda n: b"\x01" * n) == b"AQEBAQEBAQEBAQEBAQEBAQ=="


def test_extended_connect_becomes_an_upgrade_get_with_the_proxys_key():
    """When an HTTP/2 client opens a WebSocket, the backend gets GET <path> with Upgrade, a fresh key and version 13; protocol and extensions pass."""
    context, bridge, stream, pool = setup()
    bridge.requestReceived(h2_connect())
    request = pool.exchanges[0].request
    assert (request.method, request.target, request.body_length, request.upgrade) == (b"GET", b"/chat", 0, b"websocket")
    fields = dict(request.headers)
    assert fields[b"sec-websocket-protocol"] == b"chat, superchat"
    assert fields[b"sec-websocket-extensions"] == b"permessage-deflate"
    assert fields[b"sec-websocket-version"] == b"13"
    assert fields[b"sec-websocket-key"] not in (b"client-chosen", None)
    assert [name for name, _ in request.headers].count(b"sec-websocket-key") == 1
    assert stream.paused and pool.exchanges[0].producer is None


def test_101_with_the_right_accept_becomes_200_and_opens_the_tunnel():
    """When the backend switches with the right accept, the client gets 200 without the accept, and bytes flow both ways."""
    context, bridge, stream, pool = setup()
    bridge.requestReceived(h2_connect())
    exchange = pool.exchanges[0]
    key = dict(exchange.request.headers)[b"sec-websocket-key"]
    bridge.responseHeadReceived(switched(key, ((b"sec-websocket-protocol", b"chat"),)))
    status, fields = stream.calls[0][1], stream.calls[0][2]
    assert status == 200 and fields[b"sec-websocket-protocol"] == b"chat"
    assert b"sec-websocket-accept" not in fields
    assert exchange.producer is stream and stream.producer is exchange and not stream.paused
    bridge.requestDataReceived(b"\x81\x85hello")
    bridge.responseDataReceived(b"\x81\x05hello")
    assert exchange.written == [b"\x81\x85hello"] and stream.calls[-1] == ("data", b"\x81\x05hello")


def test_101_with_a_wrong_accept_is_a_bad_gateway():
    """When the backend's accept does not match the proxy's key, the client gets 502 and the backend connection is cancelled."""
    context, bridge, stream, pool = setup()
    bridge.requestReceived(h2_connect())
    bridge.responseHeadReceived(ResponseHead(101, ((b"sec-websocket-accept", b"wrong="),)))
    assert stream.calls[0][1] == 502
    assert b"http_protocol_error" in stream.calls[0][2][b"proxy-status"]
    assert pool.exchanges[0].cancelled and bridge not in context.active


def test_refusal_is_passed_through():
    """When the backend answers the handshake with 403, the client gets that 403 as an ordinary response."""
    context, bridge, stream, pool = setup()
    bridge.requestReceived(h2_connect())
    bridge.responseHeadReceived(ResponseHead(403, ((b"content-length", b"2"),)))
    bridge.responseDataReceived(b"no")
    bridge.responseEnded(())
    assert stream.calls[0][1] == 403 and stream.calls[-1] == ("finish",)


def test_http1_handshake_passes_the_clients_key_and_the_101():
    """When an HTTP/1.1 client opens a WebSocket, its key goes to the backend and the 101 comes back as it is."""
    context, bridge, stream, pool = setup()
    bridge.requestReceived(h1_upgrade())
    exchange = pool.exchanges[0]
    assert dict(exchange.request.headers)[b"sec-websocket-key"] == RFC_KEY
    assert exchange.request.upgrade == b"websocket" and exchange.request.method == b"GET"
    bridge.responseHeadReceived(ResponseHead(101, ((b"sec-websocket-accept", RFC_ACCEPT),)))
    assert stream.calls[0][1] == 101 and stream.calls[0][2][b"sec-websocket-accept"] == RFC_ACCEPT
    assert exchange.producer is stream


def test_client_end_closes_the_backend_and_backend_close_finishes_the_stream():
    """When the client ends its side, the exchange's request is finished (backend closed); the backend's close finishes the stream."""
    context, bridge, stream, pool = setup()
    bridge.requestReceived(h2_connect())
    exchange = pool.exchanges[0]
    bridge.responseHeadReceived(switched(dict(exchange.request.headers)[b"sec-websocket-key"]))
    bridge.requestEnded(())
    assert exchange.finished == ()
    bridge.responseEnded(())
    assert stream.calls[-1] == ("finish",) and bridge not in context.active


def test_backend_reset_cancels_the_client_stream():
    """When the backend connection is reset mid-tunnel, the client stream is reset with CANCEL."""
    context, bridge, stream, pool = setup()
    bridge.requestReceived(h2_connect())
    exchange = pool.exchanges[0]
    bridge.responseHeadReceived(switched(dict(exchange.request.headers)[b"sec-websocket-key"]))
    bridge.responseFailed(BackendClosed("reset"))
    assert stream.calls[-1] == ("reset", ResetReason.CANCEL)


def test_client_abort_cancels_the_backend():
    """When the client resets the tunnel, the backend exchange is cancelled."""
    context, bridge, stream, pool = setup()
    bridge.requestReceived(h2_connect())
    exchange = pool.exchanges[0]
    bridge.responseHeadReceived(switched(dict(exchange.request.headers)[b"sec-websocket-key"]))
    bridge.streamAborted(Failure(ConnectionError("client reset")))
    assert exchange.cancelled and bridge not in context.active


def test_tunnel_bytes_are_not_limited_by_max_request_body():
    """When a tunnel carries more than max_request_body, it goes on: a WebSocket is not a request body."""
    context, bridge, stream, pool = setup(max_body=10)
    bridge.requestReceived(h2_connect())
    exchange = pool.exchanges[0]
    bridge.responseHeadReceived(switched(dict(exchange.request.headers)[b"sec-websocket-key"]))
    bridge.requestDataReceived(b"x" * 100)
    assert exchange.written == [b"x" * 100] and not exchange.cancelled
