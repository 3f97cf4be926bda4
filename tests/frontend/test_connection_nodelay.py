"""H2Connection turns Nagle's algorithm off on its TCP socket (L{h2proxy.frontend.nodelay})."""

from __future__ import annotations

from hyperframe.frame import SettingsFrame

from tests.frontend.frames import framesFromBytes
from tests.frontend.support import Server, TCPLikeTransport


def test_connection_turns_nagle_off():
    """When the connection is made on a TCP transport, TCP_NODELAY is set on it, so
    small frames (a response head after a WINDOW_UPDATE) leave without waiting for
    the client's ACK."""
    transport = TCPLikeTransport()
    Server(transport=transport)
    assert transport.noDelay is True


def test_a_socket_gone_before_the_option_still_gets_the_preface():
    """When setting TCP_NODELAY fails because the socket is gone, the connection goes
    on and writes its SETTINGS (connectionLost will follow)."""
    transport = TCPLikeTransport(failing=True)
    Server(transport=transport)
    assert isinstance(framesFromBytes(transport.value())[0], SettingsFrame)
