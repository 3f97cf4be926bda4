"""The protocol negotiation of a cleartext listener, in memory: the first-byte limit
(``timeouts.handshake``) and the listener's protocols (``listeners[].protocols``,
given to NegotiationFactory as which factories it has)."""

from __future__ import annotations

from h2.errors import ErrorCodes
from hyperframe.frame import GoAwayFrame, SettingsFrame
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport

from h2proxy.config.model import Http2Config
from h2proxy.frontend.http2.factory import ConnectionOptions, H2Factory
from h2proxy.frontend.http1.factory import HTTP1Factory
from h2proxy.frontend.negotiation import PREFACE, NegotiationFactory
from tests.frontend.frames import FrameFactory, framesFromBytes
from tests.frontend.support import RecordingHandler

FIRST_BYTE = 2.0
DEADLINE = 30.0
IDLE = 60.0
ADDR = IPv4Address("TCP", "192.0.2.1", 4000)
#: h2spec 6.5/3.5 sends this instead of the preface.
GARBAGE = b"INVALID CONNECTION PREFACE\r\n\r\n"
BROKEN_PREFACE = b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n"


class Listener:
    """One cleartext listener's negotiation, over a memory clock."""

    def __init__(self, *, h2c: bool = True, http1: bool = True) -> None:
        self.clock = MemoryReactorClock()
        self.handlers: list[RecordingHandler] = []
        h2 = H2Factory(
            reactor=self.clock, handlerFactory=self._handler,
            options=ConnectionOptions(settings=Http2Config(), idleTimeout=IDLE, abortTimeout=None, secure=False, requestHeaderTimeout=DEADLINE),
        )
        http1Factory = HTTP1Factory(reactor=self.clock, handlerFactory=self._handler, idleTimeout=IDLE, secure=False)
        self.factory = NegotiationFactory(
            reactor=self.clock,
            h2Factory=h2 if h2c else None,
            http1Factory=http1Factory if http1 else None,
            deadline=DEADLINE,
            handshakeTimeout=FIRST_BYTE,
        )

    def _handler(self, stream):
        handler = RecordingHandler(stream)
        self.handlers.append(handler)
        return handler

    def connect(self):
        protocol = self.factory.buildProtocol(ADDR)
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport


def closed(transport: StringTransport) -> bool:
    return transport.disconnecting or transport.disconnected


def goaways(transport: StringTransport) -> list[int]:
    return [f.error_code for f in framesFromBytes(transport.value()) if isinstance(f, GoAwayFrame)]


# -- the first-byte limit ----------------------------------------------------------------------


def test_a_silent_cleartext_connection_is_dropped_at_the_first_byte_limit():
    """When a cleartext client connects and sends nothing, it is aborted once timeouts.handshake has passed, long before the request deadline."""
    listener = Listener()
    _, transport = listener.connect()
    listener.clock.advance(FIRST_BYTE - 0.1)
    assert not closed(transport)
    listener.clock.advance(0.1)
    assert transport.disconnected and transport.value() == b""


def test_after_the_first_byte_the_request_deadline_applies():
    """When a cleartext client sends one byte of the preface, the first-byte limit no longer applies: the request deadline (from the accept) does."""
    listener = Listener()
    protocol, transport = listener.connect()
    listener.clock.advance(1)
    protocol.dataReceived(PREFACE[:1])
    listener.clock.advance(DEADLINE - 1.1)
    assert not closed(transport)
    listener.clock.advance(0.1)
    assert transport.disconnected


def test_after_a_request_the_idle_timeout_applies():
    """When a cleartext client sends a request and gets its answer, the connection stays open past the first-byte limit until the idle timeout."""
    listener = Listener()
    protocol, transport = listener.connect()
    protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    listener.handlers[0].respond()
    listener.clock.advance(FIRST_BYTE * 2)
    assert not closed(transport)
    listener.clock.advance(IDLE)
    assert closed(transport)


# -- protocols ---------------------------------------------------------------------------------


def test_garbage_on_an_h2c_only_listener_is_an_http2_connection_error():
    """When a client sends bytes that are not the preface to an h2c-only listener, it gets SETTINGS and GOAWAY PROTOCOL_ERROR and the connection closes (h2spec 3.5/2), not an HTTP/1.1 answer."""
    listener = Listener(http1=False)
    protocol, transport = listener.connect()
    protocol.dataReceived(GARBAGE)
    frames = framesFromBytes(transport.value())
    assert isinstance(frames[0], SettingsFrame)
    assert goaways(transport) == [ErrorCodes.PROTOCOL_ERROR]
    assert transport.disconnecting and listener.handlers == []


def test_an_http1_request_on_an_h2c_only_listener_is_refused_at_its_first_byte():
    """When an HTTP/1.1 client sends a request to an h2c-only listener, its first byte rules out the preface: GOAWAY PROTOCOL_ERROR at once."""
    listener = Listener(http1=False)
    protocol, transport = listener.connect()
    protocol.dataReceived(b"G")
    assert goaways(transport) == [ErrorCodes.PROTOCOL_ERROR] and transport.disconnecting


def test_the_preface_on_an_h2c_only_listener_is_served():
    """When an HTTP/2 client sends the preface and a request to an h2c-only listener, the request reaches a handler."""
    listener = Listener(http1=False)
    protocol, transport = listener.connect()
    frames = FrameFactory()
    protocol.dataReceived(frames.preamble() + frames.headers(1, flags=["END_HEADERS", "END_STREAM"]).serialize())
    assert [h.head.path for h in listener.handlers] == [b"/"] and not closed(transport)


def test_a_broken_preface_is_an_http2_connection_error_on_a_listener_with_both():
    """When a client sends PRI * HTTP/2.0 but the rest of the preface is wrong, it gets GOAWAY PROTOCOL_ERROR and a close, not an HTTP/1.1 505."""
    listener = Listener()
    protocol, transport = listener.connect()
    protocol.dataReceived(BROKEN_PREFACE)
    assert not transport.value().startswith(b"HTTP/1.1")
    assert goaways(transport) == [ErrorCodes.PROTOCOL_ERROR] and transport.disconnecting


def test_a_broken_preface_is_an_http2_connection_error_on_an_h2c_only_listener():
    """When a client sends a broken preface to an h2c-only listener, it gets GOAWAY PROTOCOL_ERROR and a close."""
    listener = Listener(http1=False)
    protocol, transport = listener.connect()
    protocol.dataReceived(BROKEN_PREFACE)
    assert goaways(transport) == [ErrorCodes.PROTOCOL_ERROR] and transport.disconnecting


def test_garbage_on_a_listener_with_both_is_still_answered_in_http1():
    """When a listener speaks both and a client sends bytes that are neither HTTP/2 nor a valid request, the HTTP/1.1 front end answers 400."""
    listener = Listener()
    protocol, transport = listener.connect()
    protocol.dataReceived(GARBAGE)
    assert transport.value().startswith(b"HTTP/1.1 400 ")


def test_the_preface_on_an_http1_only_listener_gets_505_and_a_close():
    """When an HTTP/2 client sends the preface to an HTTP/1.1-only listener, it gets an HTTP/1.1 505 and the connection closes."""
    listener = Listener(h2c=False)
    protocol, transport = listener.connect()
    protocol.dataReceived(PREFACE + FrameFactory().settings().serialize())
    assert transport.value().startswith(b"HTTP/1.1 505 HTTP Version Not Supported\r\n")
    assert transport.disconnecting
    assert [handler.calls for handler in listener.handlers] in ([], [["requestRefused"]])


def test_an_http1_only_listener_serves_http1():
    """When an HTTP/1.1 client sends a request to an HTTP/1.1-only listener, it is served."""
    listener = Listener(h2c=False)
    protocol, transport = listener.connect()
    protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    listener.handlers[0].respond()
    assert transport.value().startswith(b"HTTP/1.1 200 OK\r\n") and not closed(transport)
