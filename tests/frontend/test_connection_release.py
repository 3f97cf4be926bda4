"""A closed HTTP/2 connection is freed by reference counting, without the cyclic
collector: it lets go of its transport (which holds it as its producer)."""

from __future__ import annotations

import gc
import weakref

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure

from h2proxy.config.model import Http2Config
from h2proxy.frontend.http2.connection import H2Connection
from tests.frontend.frames import FrameFactory, requestHeaders
from tests.frontend.support import TCPLikeTransport


class _Handler:
    def __init__(self, stream) -> None:
        self.stream = stream

    def requestReceived(self, head) -> None:
        pass

    def requestDataReceived(self, data: bytes) -> None:
        pass

    def requestEnded(self, trailers) -> None:
        pass

    def requestRefused(self, head, status) -> None:
        pass

    def streamAborted(self, reason) -> None:
        pass


def _lostConnection() -> tuple[weakref.ref, H2Connection]:
    """A connection with a stream in flight, then lost; a weak reference to it."""
    from twisted.internet.testing import MemoryReactorClock

    connection = H2Connection(
        reactor=MemoryReactorClock(), handlerFactory=_Handler, settings=Http2Config(),
        idleTimeout=60, abortTimeout=15, secure=True,
    )
    transport = TCPLikeTransport()
    connection.makeConnection(transport)
    factory = FrameFactory()
    connection.dataReceived(factory.preamble() + factory.settings().serialize())
    connection.dataReceived(factory.headers(1, requestHeaders(b"/", b"GET"), flags=["END_HEADERS", "END_STREAM"]).serialize())
    connection.connectionLost(Failure(ConnectionDone()))
    return weakref.ref(connection), transport


def test_a_lost_connection_is_freed_without_the_cyclic_collector():
    """When a connection with a stream in flight is lost and its transport goes away,
    the connection is freed at once by reference counting (no reference cycle left
    for the cyclic collector)."""
    gc.disable()
    try:
        ref, transport = _lostConnection()
        assert ref() is not None  # the transport still holds it as its producer
        del transport
        assert ref() is None
    finally:
        gc.enable()


def test_addresses_are_kept_after_the_transport_is_released():
    """When the connection is lost, getPeer and getHost still answer (late callers)."""
    ref, transport = _lostConnection()
    connection = ref()
    assert connection.transport is None
    assert isinstance(connection.getPeer(), IPv4Address) and isinstance(connection.getHost(), IPv4Address)
