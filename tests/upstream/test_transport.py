"""The immediate-write TCP transport on a socketpair: what goes out at once, what is
queued and in which order, the write path it tracks itself, and that Twisted's queued
path (partial writes, producers, errors, closing) behaves as before."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from twisted.internet import error, tcp
from twisted.internet.interfaces import IReactorPluggableNameResolver, IReactorTCP
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.internet.selectreactor import SelectReactor
from twisted.internet.testing import MemoryReactorClock

from h2proxy.upstream.http11 import BACKEND_READ_SIZE, HTTP11ClientProtocol
from h2proxy.upstream.transport import (
    ImmediateWriteClient,
    ImmediateWriteConnector,
    WritePath,
    immediateWriteReactor,
)

#: Send buffer asked of the kernel for the partial-write tests (it rounds it up).
SMALL_SNDBUF = 4096
#: A write larger than any kernel socket buffer, so part of it must be queued.
BIG = 8 * 1024 * 1024


def _client(reactor: MemoryReactorClock) -> ImmediateWriteClient:
    """An unconnected client transport (its connect attempt waits on the memory reactor)."""
    return ImmediateWriteClient("127.0.0.1", 9, None, None, reactor)


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
def pair() -> Iterator[tuple[ImmediateWriteClient, socket.socket, MemoryReactorClock]]:
    """A client transport connected over one end of a socketpair (its own socket,
    never connected, is closed and replaced)."""
    ours, peer = socket.socketpair()
    reactor = MemoryReactorClock()
    transport = _client(reactor)
    transport.socket.close()
    ours.setblocking(False)
    transport.socket, transport.fileno = ours, ours.fileno
    transport.protocol = Protocol()
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


def _drain(transport: ImmediateWriteClient, peer: socket.socket, reactor: MemoryReactorClock) -> bytes:
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
    assert reactor.getWriters() == [] and transport.writePath is WritePath.DIRECT


def test_partial_write_queues_the_rest_in_order(pair):
    """When the kernel takes only part of a write, the rest and any later write are queued and doWrite sends them in order."""
    transport, peer, reactor = pair
    transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_SNDBUF)
    data = bytes(range(256)) * (BIG // 256)
    transport.write(data)
    first = _received(peer)
    assert 0 < len(first) < len(data)
    assert reactor.getWriters() == [transport]
    assert transport.writePath is WritePath.QUEUED
    transport.write(b"tail")
    assert first + _drain(transport, peer, reactor) == data + b"tail"
    assert reactor.getWriters() == [] and transport.writePath is WritePath.DIRECT
    transport.write(b"next")
    assert _received(peer) == b"next" and reactor.getWriters() == []


def test_writes_stay_in_order_across_many_partial_writes(pair):
    """When the kernel takes each write only in part, writes interleaved with doWrite
    calls still reach the peer in the order they were made."""
    transport, peer, reactor = pair
    transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_SNDBUF)
    pieces = [bytes([i]) * 300_000 for i in range(8)]
    received = []
    for piece in pieces:
        transport.write(piece)
        received.append(_received(peer))
        if transport in reactor.getWriters():
            transport.doWrite()
    received.append(_drain(transport, peer, reactor))
    assert b"".join(received) == b"".join(pieces)
    assert transport.writePath is WritePath.DIRECT


def test_write_sequence_is_queued_and_later_writes_follow_it(pair):
    """When a sequence is written, it is queued; a write made before it is sent goes
    behind it, and the direct path comes back once it is sent."""
    transport, peer, reactor = pair
    transport.writeSequence([b"5\r\n", b"hello", b"\r\n"])
    assert transport.writePath is WritePath.QUEUED and reactor.getWriters() == [transport]
    transport.write(b"0\r\n\r\n")
    assert _received(peer) == b""
    assert _drain(transport, peer, reactor) == b"5\r\nhello\r\n0\r\n\r\n"
    assert transport.writePath is WritePath.DIRECT


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


def test_queued_bytes_are_flushed_but_writes_after_lose_connection_are_not_sent(pair):
    """When the transport is closing, what was queued before still goes out before the
    close, and a write made after loseConnection is dropped."""
    transport, peer, reactor = pair
    transport.writeSequence([b"queued"])
    transport.loseConnection()
    transport.write(b"late")
    transport.writeSequence([b"later"])
    assert transport.writePath is WritePath.CLOSED
    assert isinstance(transport.doWrite(), error.ConnectionDone)
    assert _received(peer) == b"queued"


def test_write_after_abort_connection_is_not_sent(pair):
    """When the connection was aborted, a write is dropped."""
    transport, peer, reactor = pair
    transport.abortConnection()
    transport.write(b"late")
    assert transport.writePath is WritePath.CLOSED
    assert _received(peer) == b"" and reactor.getWriters() == []


def test_write_after_lose_write_connection_is_not_sent(pair):
    """When our side was half-closed, a write is dropped and the peer reads EOF."""
    transport, peer, reactor = pair
    transport.loseWriteConnection()
    transport.write(b"late")
    transport.doWrite()
    assert peer.recv(10) == b""


def test_write_when_not_connected_is_dropped(pair):
    """When the transport is not connected, a write is dropped as Twisted drops it."""
    transport, peer, reactor = pair
    transport.connected = 0
    transport.write(b"late")
    assert _received(peer) == b"" and reactor.getWriters() == []


def test_connector_makes_the_immediate_write_client():
    """When a connection attempt starts, the connector's transport is the immediate-write client, on the direct path."""
    reactor = MemoryReactorClock()
    connector = ImmediateWriteConnector("127.0.0.1", 9, ClientFactory(), 30, None, reactor)
    connector.connect()
    try:
        assert type(connector.transport) is ImmediateWriteClient
        assert connector.transport.writePath is WritePath.DIRECT
    finally:
        connector.stopConnecting()


def test_reactor_wrapper_connects_through_the_immediate_write_connector():
    """When the endpoints' reactor is a real one, its connectTCP uses the immediate-write
    connector and it keeps the reactor's interfaces (the name resolver included); a
    memory reactor is left as it is."""
    real = SelectReactor()
    try:
        wrapped = immediateWriteReactor(real)
        assert IReactorTCP.providedBy(wrapped) and IReactorPluggableNameResolver.providedBy(wrapped)
        assert wrapped.nameResolver is real.nameResolver
        connector = wrapped.connectTCP("127.0.0.1", 9, ClientFactory(), timeout=5)
        assert type(connector) is ImmediateWriteConnector and connector.reactor is real
        assert type(connector.transport) is ImmediateWriteClient
        connector.stopConnecting()
    finally:
        real.removeAll()
        real.waker.connectionLost(None)
    memory = MemoryReactorClock()
    assert immediateWriteReactor(memory) is memory


def test_backend_connection_tunes_its_tcp_transport():
    """When a backend connection is made over a TCP client, it reads wide and turns Nagle's algorithm off."""
    reactor = MemoryReactorClock()
    client = tcp.Client("127.0.0.1", 9, None, None, reactor)
    try:
        protocol = HTTP11ClientProtocol(reactor=reactor, responseTimeout=5)
        protocol.makeConnection(client)
        assert client.bufferSize == BACKEND_READ_SIZE
        assert client.getTcpNoDelay()
    finally:
        client.socket.close()
