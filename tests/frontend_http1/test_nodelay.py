"""The HTTP/1.1 front end turns Nagle's algorithm off on its TCP socket and lets go of it when lost."""

from __future__ import annotations

from tests.frontend.support import TCPLikeTransport
from tests.frontend_http1.harness import make_factory


def test_http1_connection_turns_nagle_off():
    """When an HTTP/1.1 connection is made on a TCP transport, TCP_NODELAY is set."""
    factory, _, _ = make_factory()
    transport = TCPLikeTransport()
    factory.buildProtocol(None).makeConnection(transport)
    assert transport.noDelay is True


def test_http1_connection_on_a_gone_socket_still_serves():
    """When setting TCP_NODELAY fails because the socket is gone, the connection is
    still set up (connectionLost will follow) and answers a request."""
    factory, handlers, _ = make_factory()
    transport = TCPLikeTransport(failing=True)
    protocol = factory.buildProtocol(None)
    protocol.makeConnection(transport)
    protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert len(handlers) == 1


def test_a_lost_http1_connection_is_freed_without_the_cyclic_collector():
    """When an HTTP/1.1 connection that served a request is lost and its transport
    goes away, the protocol is freed at once by reference counting, and its
    addresses stay available to late callers until then."""
    import gc
    import weakref

    from twisted.internet.error import ConnectionDone
    from twisted.python.failure import Failure

    factory, handlers, _ = make_factory()
    gc.disable()
    try:
        transport = TCPLikeTransport()
        protocol = factory.buildProtocol(None)
        protocol.makeConnection(transport)
        protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        protocol.connectionLost(Failure(ConnectionDone()))
        assert protocol.transport is None and protocol.getPeer() == transport.getPeer()
        ref = weakref.ref(protocol)
        del protocol
        handlers.clear()
        assert ref() is not None  # the transport still holds it as its producer
        del transport
        assert ref() is None
    finally:
        gc.enable()
