"""The immediate-write TCP transport on a socketpair: what goes out at once, what is
queued, and that Twisted's queued path (partial writes, producers, errors, closing)
behaves as before."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from twisted.internet import error, tcp
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport

from h2proxy.upstream.http11 import BACKEND_READ_SIZE, HTTP11ClientProtocol
from h2proxy.upstream.transport import ImmediateWriteClient, ImmediateWriteMixin, writeImmediately

#: Send buffer asked of the kernel for the partial-write tests (it rounds it up).
SMALL_SNDBUF = 4096
#: A write larger than any kernel socket buffer, so part of it must be queued.
BIG = 8 * 1024 * 1024


class _Connection(ImmediateWriteMixin, tcp.Connection):
    """A connected TCP-style transport over one end of a socketpair."""


class _Producer:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def pauseProducing(self) -> None:
        self.calls.append("pause")

    def resumeProducing(self) -> None:
        self.calls.append("resume")

    def stopProducing(self) -> None:
        self.calls.append("stop")


@pytest.fixture
def pair() -> Iterator[tuple[_Connection, socket.socket, MemoryReactorClock]]:
    ours, peer = socket.socketpair()
    reactor = MemoryReactorClock()
    transport = _Connection(ours, Protocol(), reactor)
    transport.connected = 1
    peer.setblocking(False)
    yield transport, peer, reactor
    ours.close()
    peer.close()


def _received(peer: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = peer.recv(1 << 20)
        except BlockingIOError:
            return b"".join(chunks)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _drain(transport: _Connection, peer: socket.socket, reactor: MemoryReactorClock) -> bytes:
    """Read the peer and run doWrite while the transport wants to write."""
    received = [_received(peer)]
    while transport in reactor.getWriters():
        assert transport.doWrite() is None
        received.append(_received(peer))
    return b"".join(received)


def test_write_with_nothing_queued_sends_at_once(pair):
    """When nothing is queued, a write reaches the socket at once and the transport never registers for writability."""
    transport, peer, reactor = pair
    transport.write(b"GET / HTTP/1.1\r\n\r\n")
    assert _received(peer) == b"GET / HTTP/1.1\r\n\r\n"
    assert reactor.getWriters() == []
    assert not transport.dataBuffer and not transport._tempDataBuffer


def test_partial_write_queues_the_rest_in_order(pair):
    """When the kernel takes only part of a write, the rest and any later write are queued and doWrite sends them in order."""
    transport, peer, reactor = pair
    transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_SNDBUF)
    data = bytes(range(256)) * (BIG // 256)
    transport.write(data)
    first = _received(peer)
    assert 0 < len(first) < len(data)
    assert reactor.getWriters() == [transport]
    transport.write(b"tail")
    assert first + _drain(transport, peer, reactor) == data + b"tail"
    assert reactor.getWriters() == []


def test_write_with_a_producer_sends_at_once_while_nothing_is_queued(pair):
    """When a producer is registered and nothing is queued, a write goes out at once
    and the producer is left alone."""
    transport, peer, reactor = pair
    producer = _Producer()
    transport.registerProducer(producer, True)
    transport.write(b"x" * 10)
    assert _received(peer) == b"x" * 10
    assert producer.calls == [] and reactor.getWriters() == []


def test_producer_is_paused_when_the_kernel_refuses_and_resumed_when_drained(pair):
    """When the kernel takes only part of a write with a producer registered, the rest
    is queued, the producer paused once the queue passes bufferSize, and resumed when
    doWrite has sent it all, in order."""
    transport, peer, reactor = pair
    producer = _Producer()
    transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_SNDBUF)
    transport.bufferSize = 16
    transport.registerProducer(producer, True)
    data = bytes(range(256)) * (BIG // 256)
    transport.write(data)
    first = _received(peer)
    assert 0 < len(first) < len(data)
    transport.write(b"tail")
    assert set(producer.calls) == {"pause"}  # Twisted pauses again on each write over the limit
    assert first + _drain(transport, peer, reactor) == data + b"tail"
    assert producer.calls[-1] == "resume" and producer.calls.count("resume") == 1


def test_failed_send_is_reported_by_dowrite(pair):
    """When the peer is gone, write does not raise; the bytes are queued and doWrite reports the lost connection."""
    transport, peer, reactor = pair
    peer.close()
    transport.write(b"GET / HTTP/1.1\r\n\r\n")
    assert reactor.getWriters() == [transport]
    assert isinstance(transport.doWrite(), error.ConnectionLost)


def test_write_after_lose_connection_is_flushed_before_closing(pair):
    """When the transport is closing, a write is queued and flushed before the close, as Twisted does."""
    transport, peer, reactor = pair
    transport.loseConnection()
    transport.write(b"last")
    assert _received(peer) == b""
    assert isinstance(transport.doWrite(), error.ConnectionDone)
    assert _received(peer) == b"last"


def test_write_when_not_connected_is_dropped(pair):
    """When the transport is not connected, a write is dropped as Twisted drops it."""
    transport, peer, reactor = pair
    transport.connected = 0
    transport.write(b"late")
    assert _received(peer) == b"" and reactor.getWriters() == []


def test_only_plain_tcp_clients_are_converted():
    """When given a plain tcp.Client, writeImmediately switches it to the immediate-write class; anything else is left alone."""
    reactor = MemoryReactorClock()
    client = tcp.Client("127.0.0.1", 9, None, None, reactor)
    try:
        assert writeImmediately(client) is True
        assert type(client) is ImmediateWriteClient and isinstance(client, tcp.Client)
        other = StringTransport()
        assert writeImmediately(other) is False and type(other) is StringTransport
    finally:
        client.socket.close()


def test_backend_connection_converts_its_tcp_transport():
    """When a backend connection is made over a plain tcp.Client, it reads wide, writes immediately and turns Nagle's algorithm off."""
    reactor = MemoryReactorClock()
    client = tcp.Client("127.0.0.1", 9, None, None, reactor)
    try:
        protocol = HTTP11ClientProtocol(reactor=reactor, responseTimeout=5)
        protocol.makeConnection(client)
        assert type(client) is ImmediateWriteClient and client.bufferSize == BACKEND_READ_SIZE
        assert client.getTcpNoDelay()
    finally:
        client.socket.close()
