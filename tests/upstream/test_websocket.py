"""Upgrade requests on HTTP11ClientProtocol and through the pool: the 101 turns the
backend connection into a raw pipe (WebSocket tunnel), never reused."""

from __future__ import annotations

import pytest
from twisted.internet.interfaces import IHalfCloseableDescriptor, ISSLTransport
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from h2proxy.errors import BackendClosed, BackendProtocolError, BackendTimeout
from h2proxy.upstream.http11 import (
    ClientState,
    TUNNEL_CLOSE_TIMEOUT,
    HTTP11ClientProtocol,
    RequestRefused,
    serialize_request_head,
)
from tests.upstream.helpers import Owner, Receiver, closed_cleanly, get, make_pool, reset, send

SWITCHED = (
    b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
    b"sec-websocket-accept: abc=\r\n\r\n"
)


@implementer(IHalfCloseableDescriptor)
class TCPTransport(StringTransport):
    """A StringTransport that half-closes like a TCP socket: after
    C{loseWriteConnection} the peer can still send; after C{loseConnection} it
    cannot (a real socket never reads what it sends)."""

    writeClosed = False

    def loseWriteConnection(self) -> None:
        self.writeClosed = True

    def writeConnectionLost(self) -> None:
        """IHalfCloseableDescriptor; not called by these tests."""

    def readConnectionLost(self, reason: Failure) -> None:
        """IHalfCloseableDescriptor; not called by these tests."""


@implementer(ISSLTransport)
class TLSLikeTransport(TCPTransport):
    """What Twisted's TLS transport looks like from above: an ISSLTransport that
    also provides the TCP transport's IHalfCloseableDescriptor."""


def ws(**kw):
    return get(b"/ws", upgrade=b"websocket", **kw)


def tunnel(tunnelIdle: float = 100.0):
    clock = MemoryReactorClock()
    owner = Owner()
    protocol = HTTP11ClientProtocol(reactor=clock, responseTimeout=10.0, owner=owner, idleTimeout=5.0, tunnelIdleTimeout=tunnelIdle)
    transport = TCPTransport()
    protocol.makeConnection(transport)
    listener = send(protocol, ws())
    return protocol, transport, clock, owner, listener


def test_upgrade_request_head_names_the_protocol():
    """When a request asks for an upgrade, the head carries Connection: upgrade and Upgrade, and no framing."""
    head = serialize_request_head(ws())
    assert head == b"GET /ws HTTP/1.1\r\nhost: backend.test\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n"


@pytest.mark.parametrize(
    "request_",
    [
        get(b"/ws", upgrade=b"web socket"),
        get(b"/ws", upgrade=b"websocket", body_length=3),
        get(b"/ws", upgrade=b"websocket", headers=((b"host", b"b"), (b"upgrade", b"h2c"))),
    ],
)
def test_bad_upgrade_requests_are_refused(request_):
    """When the upgrade protocol is not a token, a body is announced or the caller sets Upgrade itself, the request is refused."""
    with pytest.raises(RequestRefused):
        serialize_request_head(request_)


def test_101_switches_to_a_raw_pipe_both_ways():
    """When the backend answers 101, the head is delivered, then bytes flow unframed both ways."""
    protocol, transport, clock, owner, listener = tunnel()
    protocol.dataReceived(SWITCHED + b"\x81\x02hi")
    assert listener.events[0] == (
        "head",
        101,
        ((b"sec-websocket-accept", b"abc="),),
    )
    assert protocol.state is ClientState.TUNNEL
    assert listener.body == b"\x81\x02hi"
    transport.clear()
    protocol.writeBody(b"\x81\x82xxxxab")
    assert transport.value() == b"\x81\x82xxxxab"
    protocol.dataReceived(b"more")
    assert listener.body == b"\x81\x02himore" and listener.outcome is None


def test_our_close_half_closes_and_the_backends_answer_still_arrives():
    """When the tunnel's request side ends, the connection is closed for writing only: what the backend sends next (its Close frame) is delivered, and its clean close ends the response; it is never pooled."""
    protocol, transport, clock, owner, listener = tunnel()
    protocol.dataReceived(SWITCHED)
    protocol.finishBody()
    assert transport.writeClosed and not transport.disconnecting
    assert protocol.state is ClientState.TUNNEL_CLOSING
    protocol.dataReceived(b"\x88\x02\x03\xe8")
    assert listener.body == b"\x88\x02\x03\xe8" and listener.outcome is None
    protocol.connectionLost(closed_cleanly())
    assert listener.outcome == ("end", ())
    assert owner.idle == [] and owner.gone == [protocol]


def test_our_close_without_a_half_close_is_loseConnection():
    """When the transport cannot half-close, our end of the tunnel closes it."""
    clock = MemoryReactorClock()
    protocol = HTTP11ClientProtocol(reactor=clock, responseTimeout=10.0, owner=Owner())
    transport = StringTransport()
    protocol.makeConnection(transport)
    send(protocol, ws())
    protocol.dataReceived(SWITCHED)
    protocol.finishBody()
    assert transport.disconnecting and protocol.state is ClientState.TUNNEL_CLOSING


def test_our_close_over_tls_sends_nothing_and_waits_for_the_backend():
    """When the tunnel runs over TLS (whose transport also shows the TCP transport's IHalfCloseableDescriptor), our end sends nothing, neither a half-close under TLS nor a close_notify most servers take as a full close: the backend's Close frame and close still arrive and end the response."""
    clock = MemoryReactorClock()
    protocol = HTTP11ClientProtocol(reactor=clock, responseTimeout=10.0, owner=Owner())
    transport = TLSLikeTransport()
    protocol.makeConnection(transport)
    listener = send(protocol, ws())
    protocol.dataReceived(SWITCHED)
    protocol.finishBody()
    assert not transport.disconnecting and not transport.writeClosed
    assert protocol.state is ClientState.TUNNEL_CLOSING
    protocol.dataReceived(b"\x88\x02\x03\xe8")
    protocol.connectionLost(closed_cleanly())
    assert listener.body == b"\x88\x02\x03\xe8" and listener.outcome == ("end", ())


def test_half_closed_tunnel_waits_at_most_the_close_timeout():
    """When the backend stays silent after our close, the tunnel fails with BackendTimeout after TUNNEL_CLOSE_TIMEOUT, not the tunnel idle timeout."""
    protocol, transport, clock, owner, listener = tunnel(tunnelIdle=3600.0)
    protocol.dataReceived(SWITCHED)
    protocol.finishBody()
    clock.advance(TUNNEL_CLOSE_TIMEOUT - 1)
    assert listener.outcome is None
    clock.advance(1)
    assert isinstance(listener.error, BackendTimeout) and transport.disconnecting


def test_backend_clean_close_ends_the_response():
    """When the backend closes the tunnel cleanly, the response ends normally."""
    protocol, transport, clock, owner, listener = tunnel()
    protocol.dataReceived(SWITCHED + b"bye")
    protocol.connectionLost(closed_cleanly())
    assert listener.body == b"bye" and listener.outcome == ("end", ())
    assert owner.idle == []


def test_backend_reset_fails_the_tunnel():
    """When the backend resets the tunnel, the exchange fails with BackendClosed."""
    protocol, transport, clock, owner, listener = tunnel()
    protocol.dataReceived(SWITCHED)
    protocol.connectionLost(reset())
    assert isinstance(listener.error, BackendClosed)


def test_end_before_the_101_closes_once_switched():
    """When the request side ends before the 101 arrives, the connection is closed for writing as soon as it switches."""
    protocol, transport, clock, owner, listener = tunnel()
    protocol.finishBody()
    assert not transport.writeClosed
    protocol.dataReceived(SWITCHED)
    assert transport.writeClosed and protocol.state is ClientState.TUNNEL_CLOSING


def test_non_101_answer_is_an_ordinary_response():
    """When the backend refuses the upgrade with a 403, it is an ordinary response and the connection may be reused."""
    protocol, transport, clock, owner, listener = tunnel()
    protocol.dataReceived(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 2\r\n\r\nno")
    assert listener.head[1] == 403 and listener.outcome == ("end", ())
    assert owner.idle == [protocol]


def test_101_without_upgrade_field_is_a_protocol_error():
    """When a 101 does not name the protocol asked for, the exchange fails with BackendProtocolError."""
    protocol, transport, clock, owner, listener = tunnel()
    protocol.dataReceived(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: h2c\r\nconnection: upgrade\r\n\r\n")
    assert isinstance(listener.error, BackendProtocolError)


def test_101_to_an_ordinary_request_is_still_an_error():
    """When a backend answers 101 to a request that asked for no upgrade, the exchange fails."""
    protocol = HTTP11ClientProtocol(reactor=MemoryReactorClock(), responseTimeout=10.0)
    protocol.makeConnection(StringTransport())
    listener = send(protocol, get())
    protocol.dataReceived(SWITCHED)
    assert isinstance(listener.error, BackendProtocolError)


def test_tunnel_idle_timer_replaces_the_body_idle_timer():
    """When a tunnel is quiet longer than the body idle timeout it lives on, until the tunnel idle timeout."""
    protocol, transport, clock, owner, listener = tunnel(tunnelIdle=100.0)
    protocol.dataReceived(SWITCHED)
    clock.advance(50)
    assert listener.outcome is None
    protocol.writeBody(b"x")
    clock.advance(99)
    assert listener.outcome is None
    protocol.dataReceived(b"y")
    clock.advance(99)
    assert listener.outcome is None
    clock.advance(2)
    assert isinstance(listener.error, BackendTimeout)
    assert "idle" in str(listener.error)


def test_tunnel_backpressure_reaches_the_listener():
    """When the backend socket is full during a tunnel, the listener is told to pause the client, then to resume."""
    protocol, transport, clock, owner, listener = tunnel()
    protocol.dataReceived(SWITCHED)
    assert transport.streaming is True
    transport.producer.pauseProducing()
    assert listener.bodyPaused
    transport.producer.resumeProducing()
    assert not listener.bodyPaused


def test_tunnel_response_pause_pauses_the_transport():
    """When the client side is slow, the tunnel pauses reading from the backend."""
    protocol, transport, clock, owner, listener = tunnel()
    protocol.dataReceived(SWITCHED)
    protocol.pauseResponse()
    assert transport.producerState == "paused"
    protocol.dataReceived(b"held")
    assert listener.body == b""
    protocol.resumeResponse()
    assert listener.body == b"held"


def test_pool_never_reuses_a_tunnel_connection():
    """When a tunnel through the pool ends, its connection is closed and the next request opens a new one."""
    pool, clock, endpoints = make_pool()
    receiver = Receiver()
    exchange = pool.request(ws(), receiver)
    protocol, transport = endpoints[0].succeed()
    assert b"upgrade: websocket" in transport.value()
    protocol.dataReceived(SWITCHED + b"srv")
    exchange.write(b"cli")
    assert transport.value().endswith(b"cli")
    exchange.finishRequest()
    assert transport.disconnecting
    protocol.connectionLost(closed_cleanly())
    assert receiver.body == b"srv" and receiver.outcome == ("end", ())
    assert pool.idleCount == 0
    pool.request(get(), Receiver())
    assert endpoints[0].pending == 1


def test_pool_applies_its_tunnel_idle_timeout():
    """When the pool is given a tunnel idle timeout, its tunnels close after that much silence."""
    from h2proxy.config.upstreams import ServerConfig, UpstreamConfig
    from h2proxy.upstream.pool import UpstreamPool
    from tests.upstream.helpers import FakeEndpoint

    clock = MemoryReactorClock()
    endpoints: list[FakeEndpoint] = []

    def factory(server):
        endpoints.append(FakeEndpoint(server))
        return endpoints[-1]

    config = UpstreamConfig(name="app", servers=(ServerConfig(host="127.0.0.1", port=8000),))
    pool = UpstreamPool(
        reactor=clock, config=config, connectTimeout=5.0, responseTimeout=30.0,
        tunnelIdleTimeout=7.0, endpointFactory=factory,
    )
    receiver = Receiver()
    pool.request(ws(), receiver)
    protocol, transport = endpoints[0].succeed()
    protocol.dataReceived(SWITCHED)
    clock.advance(6.5)
    assert receiver.outcome is None
    clock.advance(1)
    assert isinstance(receiver.error, BackendTimeout)
