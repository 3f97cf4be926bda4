"""The worker's connection cap (limits.max_connections) and the slow-client deadlines
of the protocol negotiation, in memory."""

from __future__ import annotations

from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from hyperframe.frame import GoAwayFrame, SettingsFrame
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.internet.error import ConnectionDone
from zope.interface import implementer

from h2proxy.config.model import Http2Config
from h2proxy.frontend.http2.factory import ConnectionOptions, H2Factory
from h2proxy.frontend.http1.factory import HTTP1Factory
from h2proxy.frontend.limits import IDLE_SCAN_LIMIT, Admission, ConnectionLimiter
from h2proxy.frontend.negotiation import PREFACE, NegotiationFactory
from tests.frontend.frames import FrameFactory, framesFromBytes, requestHeaders
from tests.frontend.support import RecordingHandler

E = ErrorCodes


class FakeConnection:
    def __init__(self, idle: bool) -> None:
        self.idle = idle
        self.closed = False

    def isIdle(self) -> bool:
        return self.idle and not self.closed

    def closeIdle(self) -> None:
        self.closed = True


def filled(limiter: ConnectionLimiter, count: int, idle: bool = False) -> list[FakeConnection]:
    connections = [FakeConnection(idle) for _ in range(count)]
    for connection in connections:
        assert limiter.admit() is Admission.ADMIT
        limiter.track(connection)
    return connections


# -- the limiter ---------------------------------------------------------------------------


def test_connections_under_the_cap_are_admitted():
    """When fewer connections than the cap are open, a new one is admitted."""
    limiter = ConnectionLimiter(10)
    filled(limiter, 9)
    assert limiter.admit() is Admission.ADMIT


def test_at_the_cap_the_oldest_idle_connection_makes_room():
    """When the cap is reached and some connections are idle, the longest-tracked idle one is closed and the new one admitted."""
    limiter = ConnectionLimiter(10)
    busy = filled(limiter, 3)
    idle = filled(limiter, 7, idle=True)
    assert limiter.admit() is Admission.ADMIT
    assert [c.closed for c in idle] == [True] + [False] * 6
    assert not any(c.closed for c in busy)
    assert limiter.evicted == 1


def test_at_the_cap_with_nothing_idle_the_new_one_is_refused():
    """When the cap is reached and every connection is busy, the new one is refused politely."""
    limiter = ConnectionLimiter(10, slack=5)
    filled(limiter, 10)
    assert limiter.admit() is Admission.REFUSE
    assert limiter.refused == 1


def test_past_the_slack_new_connections_are_dropped():
    """When the cap plus the slack is reached (refusals in progress), new connections are dropped at once."""
    limiter = ConnectionLimiter(10, slack=2)
    filled(limiter, 10)
    for _ in range(2):
        assert limiter.admit() is Admission.REFUSE
        limiter.track(FakeConnection(False))
    assert limiter.admit() is Admission.DROP


def test_a_closed_connection_frees_its_place():
    """When a tracked connection is released, a new one is admitted again."""
    limiter = ConnectionLimiter(2)
    first, _ = filled(limiter, 2)
    limiter.release(first)
    assert limiter.admit() is Admission.ADMIT and len(limiter) == 1


def test_the_idle_scan_is_bounded_and_rotates():
    """When thousands of connections are busy, one admission looks at no more than IDLE_SCAN_LIMIT of them, and the next looks at others."""
    limiter = ConnectionLimiter(1000, slack=1000)
    busy = filled(limiter, 999)
    idle = filled(limiter, 1, idle=True)[0]
    for _ in range(999 // IDLE_SCAN_LIMIT):
        assert limiter.admit() is Admission.REFUSE
    assert limiter.admit() is Admission.ADMIT
    assert idle.closed and not any(c.closed for c in busy)


def test_no_cap_admits_everything():
    """When max_connections is 0, every connection is admitted."""
    limiter = ConnectionLimiter(0)
    filled(limiter, 5000)
    assert limiter.admit() is Admission.ADMIT


# -- the negotiation with a limiter ----------------------------------------------------------


@implementer(ISSLTransport)
class TLSTransport(StringTransport):
    """A StringTransport that says it is TLS (the negotiation then waits for the handshake)."""

    negotiatedProtocol: bytes | None = None


class Setup:
    def __init__(self, limiter: ConnectionLimiter | None = None, **kw) -> None:
        self.clock = MemoryReactorClock()
        self.handlers: list[RecordingHandler] = []
        self.h2 = H2Factory(
            reactor=self.clock, handlerFactory=self._handler,
            options=ConnectionOptions(settings=Http2Config(), idleTimeout=None, abortTimeout=None, secure=False, requestHeaderTimeout=30),
        )
        self.http1 = HTTP1Factory(reactor=self.clock, handlerFactory=self._handler, idleTimeout=None, secure=False)
        self.factory = NegotiationFactory(reactor=self.clock, h2Factory=self.h2, http1Factory=self.http1, limiter=limiter, **kw)

    def _handler(self, stream):
        handler = RecordingHandler(stream)
        self.handlers.append(handler)
        return handler

    def connect(self, transport: StringTransport | None = None):
        protocol = self.factory.buildProtocol(None)
        transport = transport if transport is not None else StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport


def test_a_refused_http2_client_gets_settings_and_goaway_naming_no_stream():
    """When the cap refuses an HTTP/2 connection, it gets SETTINGS (no streams allowed) and GOAWAY REFUSED_STREAM with last stream 0, and is closed."""
    limiter = ConnectionLimiter(1, slack=5)
    setup = Setup(limiter)
    limiter.track(FakeConnection(False))
    protocol, transport = setup.connect()
    protocol.dataReceived(PREFACE + FrameFactory().settings().serialize())
    frames = framesFromBytes(transport.value())
    assert isinstance(frames[0], SettingsFrame) and frames[0].settings == {SettingCodes.MAX_CONCURRENT_STREAMS: 0}
    assert [(f.error_code, f.last_stream_id) for f in frames[1:]] == [(E.REFUSED_STREAM, 0)]
    assert transport.disconnecting and setup.handlers == []


def test_a_refused_http1_client_gets_503():
    """When the cap refuses an HTTP/1.1 connection, it gets a 503 with Retry-After and is closed."""
    limiter = ConnectionLimiter(1, slack=5)
    setup = Setup(limiter)
    limiter.track(FakeConnection(False))
    protocol, transport = setup.connect()
    protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 503 ") and b"Retry-After: 1" in transport.value()
    assert transport.disconnecting and setup.handlers == []


def test_a_dropped_connection_is_aborted_at_once():
    """When the cap and slack are both full, a new connection is aborted as soon as it is made."""
    limiter = ConnectionLimiter(1, slack=0)
    setup = Setup(limiter)
    limiter.track(FakeConnection(False))
    _, transport = setup.connect()
    assert transport.disconnected and transport.value() == b""


def test_an_idle_http2_connection_is_closed_to_admit_a_new_one():
    """When the cap is reached and an HTTP/2 connection has no stream open, it gets GOAWAY and is closed, and the newcomer is served."""
    limiter = ConnectionLimiter(1)
    setup = Setup(limiter)
    old, oldTransport = setup.connect()
    old.dataReceived(PREFACE + FrameFactory().settings().serialize())
    new, newTransport = setup.connect()
    assert oldTransport.disconnecting
    assert [f.error_code for f in framesFromBytes(oldTransport.value()) if isinstance(f, GoAwayFrame)] == [E.NO_ERROR]
    frames = FrameFactory()
    new.dataReceived(frames.preamble() + frames.headers(1, requestHeaders(), flags=["END_HEADERS", "END_STREAM"]).serialize())
    assert [h.head.path for h in setup.handlers] == [b"/"]


def test_a_busy_http2_connection_is_not_closed():
    """When the only connection at the cap has a stream open, the newcomer is refused and the busy one kept."""
    limiter = ConnectionLimiter(1, slack=5)
    setup = Setup(limiter)
    old, oldTransport = setup.connect()
    frames = FrameFactory()
    old.dataReceived(frames.preamble() + frames.headers(1, requestHeaders(), flags=["END_HEADERS"]).serialize())
    new, _ = setup.connect()
    assert not oldTransport.disconnecting
    assert new.admission is Admission.REFUSE


def test_an_idle_http1_connection_is_closed_to_admit_a_new_one():
    """When the cap is reached and an HTTP/1.1 connection waits between requests, it is closed to make room."""
    limiter = ConnectionLimiter(1)
    setup = Setup(limiter)
    old, oldTransport = setup.connect()
    old.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    setup.handlers[0].respond(200, b"ok")
    setup.connect()
    assert oldTransport.disconnecting


def test_connections_are_released_when_lost():
    """When connections close, before or after choosing their protocol, the limiter forgets them."""
    limiter = ConnectionLimiter(10)
    setup = Setup(limiter)
    negotiating, _ = setup.connect()
    chosen, _ = setup.connect()
    chosen.dataReceived(PREFACE + FrameFactory().settings().serialize())
    assert len(limiter) == 2
    negotiating.connectionLost(Failure(ConnectionDone()))
    chosen.connectionLost(Failure(ConnectionDone()))
    assert len(limiter) == 0


# -- deadlines ---------------------------------------------------------------------------------


def test_a_tls_handshake_not_done_in_time_is_aborted():
    """When a TLS client does not complete its handshake within handshakeTimeout, the connection is aborted."""
    setup = Setup(handshakeTimeout=5, deadline=30)
    _, transport = setup.connect(TLSTransport())
    setup.clock.advance(4.9)
    assert not transport.disconnected
    setup.clock.advance(0.1)
    assert transport.disconnected


def test_after_the_handshake_the_first_bytes_have_the_request_deadline():
    """When the handshake completes without ALPN h2, the first bytes must arrive within the request deadline."""
    setup = Setup(handshakeTimeout=5, deadline=30)
    protocol, transport = setup.connect(TLSTransport())
    setup.clock.advance(4)
    protocol.handshakeCompleted()
    setup.clock.advance(29.9)
    assert not transport.disconnected
    setup.clock.advance(0.1)
    assert transport.disconnected


def test_the_h2_connection_gets_what_is_left_of_the_deadline():
    """When the preface arrives after part of the deadline was spent, the HTTP/2 connection has only the rest to receive complete request headers."""
    setup = Setup(deadline=30)
    protocol, transport = setup.connect()
    setup.clock.advance(20)
    protocol.dataReceived(PREFACE + FrameFactory().settings().serialize())
    setup.clock.advance(9.9)
    assert not transport.disconnecting
    setup.clock.advance(0.1)
    assert transport.disconnecting


def test_cleartext_silence_is_dropped_after_the_deadline():
    """When a cleartext client sends nothing, it is dropped once the deadline has passed."""
    setup = Setup(deadline=30)
    _, transport = setup.connect()
    setup.clock.advance(30)
    assert transport.disconnected
