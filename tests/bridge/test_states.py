"""A bridge's L{BridgeState} and its WebSocket L{TunnelState}, moved by the client's
request and the backend's answer."""

from __future__ import annotations

from h2proxy.bridge.bridge import BridgeState
from h2proxy.bridge.websocket import TunnelState
from h2proxy.errors import BackendClosed
from h2proxy.frontend.handler import ResetReason
from h2proxy.message import ResponseHead
from tests.bridge.test_bridge import request, setup
from tests.bridge.test_websocket import h1_upgrade, switched

RFC_KEY = b"dGhlIHNhbXBsZSBub25jZQ=="


def test_a_response_moves_the_bridge_from_awaiting_to_responding_to_done():
    """AWAITING_RESPONSE until the backend's head, RESPONDING while the body is
    relayed, DONE when it ends; nothing is relayed after."""
    context, bridge, stream, pool = setup()
    bridge.requestReceived(request(method=b"GET", end_stream=True))
    assert bridge.state is BridgeState.AWAITING_RESPONSE and bridge.tunnel is TunnelState.NONE
    receiver = pool.exchanges[0].receiver
    receiver.responseHeadReceived(ResponseHead(200))
    assert bridge.state is BridgeState.RESPONDING
    receiver.responseEnded(())
    assert bridge.state is BridgeState.DONE and context.active == set()
    calls = list(stream.calls)
    receiver.responseDataReceived(b"late")
    assert stream.calls == calls


def test_a_failure_while_awaiting_the_response_answers_with_an_error():
    """A backend failure before the head is an error response (502), not a reset."""
    context, bridge, stream, pool = setup()
    bridge.requestReceived(request(method=b"GET", end_stream=True))
    pool.exchanges[0].receiver.responseFailed(BackendClosed("gone"))
    assert bridge.state is BridgeState.DONE
    assert stream.calls[0][:2] == ("headers", 502) and not any(c[0] == "reset" for c in stream.calls)


def test_a_failure_while_responding_resets_with_internal_error():
    """A backend failure after the head is a reset with ResetReason.INTERNAL_ERROR."""
    context, bridge, stream, pool = setup()
    bridge.requestReceived(request(method=b"GET", end_stream=True))
    pool.exchanges[0].receiver.responseHeadReceived(ResponseHead(200))
    pool.exchanges[0].receiver.responseFailed(BackendClosed("gone"))
    assert bridge.state is BridgeState.DONE and stream.calls[-1] == ("reset", ResetReason.INTERNAL_ERROR)


def test_a_websocket_handshake_opens_the_tunnel_on_101():
    """HANDSHAKE while the backend has not answered, OPEN on its 101; a failure of an
    open tunnel is a CANCEL, not an error."""
    context, bridge, stream, pool = setup()
    bridge.requestReceived(h1_upgrade())
    assert bridge.tunnel is TunnelState.HANDSHAKE
    receiver = pool.exchanges[0].receiver
    receiver.responseHeadReceived(switched(RFC_KEY))
    assert bridge.tunnel is TunnelState.OPEN and bridge.state is BridgeState.RESPONDING
    receiver.responseFailed(BackendClosed("gone"))
    assert stream.calls[-1] == ("reset", ResetReason.CANCEL)


def test_a_refused_handshake_leaves_the_tunnel_unopened():
    """A handshake answered with anything but 101 is an ordinary response: the tunnel never opens."""
    context, bridge, stream, pool = setup()
    bridge.requestReceived(h1_upgrade())
    pool.exchanges[0].receiver.responseHeadReceived(ResponseHead(403))
    assert bridge.tunnel is TunnelState.HANDSHAKE and bridge.state is BridgeState.RESPONDING
