"""The HTTP/1.1 front end turns Nagle's algorithm off on its TCP socket."""

from __future__ import annotations

from twisted.internet.testing import StringTransport

from tests.frontend_http1.harness import make_factory


class _TCPLike(StringTransport):
    """A StringTransport with TCP's no-delay switch."""

    def __init__(self, failing: bool = False) -> None:
        super().__init__()
        self.noDelay: bool | None = None
        self.failing = failing

    def setTcpNoDelay(self, enabled: bool) -> None:
        if self.failing:
            raise OSError("socket already closed")
        self.noDelay = enabled


def test_http1_connection_turns_nagle_off():
    """When an HTTP/1.1 connection is made on a TCP transport, TCP_NODELAY is set."""
    factory, _, _ = make_factory()
    transport = _TCPLike()
    factory.buildProtocol(None).makeConnection(transport)
    assert transport.noDelay is True


def test_http1_connection_on_a_gone_socket_still_serves():
    """When setting TCP_NODELAY fails because the socket is gone, the connection is
    still set up (connectionLost will follow) and answers a request."""
    factory, handlers, _ = make_factory()
    transport = _TCPLike(failing=True)
    protocol = factory.buildProtocol(None)
    protocol.makeConnection(transport)
    protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert len(handlers) == 1
