"""Slow and silent clients, in memory: the deadline for the first request headers,
the request body progress timeout, the send timeout (socket unread, window shut),
the idle timeout that ignores streams waiting on a backend, and the lingering close."""

from __future__ import annotations

from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from twisted.internet.testing import StringTransport

from h2proxy.frontend.http2.lifecycle import LINGER
from h2proxy.frontend.handler import REQUEST_ERROR, StreamCut
from h2proxy.message import ResponseHead
from tests.frontend.frames import FrameFactory, PREFACE
from tests.frontend.support import Client, RecordingHandler, Server
from tests.hardening.support import Attacker, goaways, resets

E = ErrorCodes


# -- the first request's headers ----------------------------------------------------------


def test_no_request_headers_in_time_closes_the_connection():
    """When no complete request headers arrive within requestHeaderTimeout of the start, the connection gets GOAWAY NO_ERROR and closes."""
    attacker = Attacker(requestHeaderTimeout=10)
    streamID = attacker.streamID()
    attacker.feed(attacker.frames.headers(streamID, block=b"", flags=[]).serialize())  # a block never finished
    attacker.server.clock.advance(9.9)
    assert not attacker.server.transport.disconnecting
    attacker.server.clock.advance(0.1)
    assert goaways(attacker.server.frames()) == [(E.NO_ERROR, 0)]
    assert attacker.server.transport.disconnecting


def test_a_request_in_time_lifts_the_deadline():
    """When the first request's headers arrive in time, the deadline no longer applies, however long the connection lives."""
    attacker = Attacker(requestHeaderTimeout=10)
    attacker.feed(attacker.request())
    attacker.server.clock.advance(1000)
    assert not attacker.server.transport.disconnecting


def test_the_preface_alone_does_not_count_as_a_request():
    """When a client sends its preface and SETTINGS and then trickles PINGs, the deadline still closes it (PINGs do reset the idle timer)."""
    server = Server(requestHeaderTimeout=10, idleTimeout=5)
    factory = FrameFactory()
    server.feed(PREFACE + factory.settings().serialize())
    for _ in range(4):
        server.clock.advance(2.4)
        server.feed(factory.ping().serialize())
    assert not server.transport.disconnecting
    server.clock.advance(0.4)
    assert server.transport.disconnecting


# -- the request body -------------------------------------------------------------------------


def bodyServer(**kw) -> tuple[Server, Client, RecordingHandler]:
    server = Server(requestBodyTimeout=30, **kw)
    client = Client(server)
    streamID = client.request(b"/upload", method=b"POST", end=False)
    return server, client, server.handlers[streamID]


def test_a_silent_request_body_gets_408_and_the_handler_is_told():
    """When the client sends no body bytes for requestBodyTimeout while the handler waits, the client gets 408 and the handler a StreamCut saying so (it cancels its backend request and logs the 408)."""
    server, client, handler = bodyServer()
    server.clock.advance(29.9)
    assert handler.aborted == []
    server.clock.advance(0.1)
    client.flush()
    response = client.response(handler.stream.streamID)
    assert response["status"] == 408 and response["ended"]
    assert response["reset"] == E.NO_ERROR  # the client is asked to stop sending
    assert len(handler.aborted) == 1 and handler.aborted[0].check(StreamCut)
    assert (handler.aborted[0].value.reason, handler.aborted[0].value.status) == (REQUEST_ERROR, 408)
    server.assertNoLeftovers()


def test_body_progress_restarts_the_timer():
    """When body bytes keep arriving, each within requestBodyTimeout of the last, nothing times out."""
    server, client, handler = bodyServer()
    streamID = handler.stream.streamID
    for _ in range(10):
        server.clock.advance(20)
        client.sendBody(streamID, b"chunk", end=False)
        client.flush()
    assert handler.aborted == [] and handler.body == b"chunk" * 10


def test_no_body_timeout_while_the_handler_holds_the_client_back():
    """When the handler has paused the stream (its backend is slow), the client's silence is not counted against it."""
    server, client, handler = bodyServer()
    handler.stream.pauseProducing()
    server.clock.advance(300)
    assert handler.aborted == []
    handler.stream.resumeProducing()
    server.clock.advance(29)
    assert handler.aborted == []
    server.clock.advance(1)
    assert len(handler.aborted) == 1


def test_a_silent_body_after_the_response_started_resets_the_stream():
    """When the response head already went out, a stalled request body resets the stream with CANCEL."""
    server, client, handler = bodyServer()
    handler.stream.writeHeaders(ResponseHead(200))
    client.flush()
    server.clock.advance(30)
    client.flush()
    assert client.response(handler.stream.streamID)["reset"] == E.CANCEL
    assert len(handler.aborted) == 1


def test_a_complete_body_is_not_watched():
    """When the request body has ended, the handler may take as long as it likes."""
    server, client, handler = bodyServer()
    client.sendBody(handler.stream.streamID, b"all of it")
    client.flush()
    server.clock.advance(1000)
    assert handler.aborted == [] and handler.trailers == ()


# -- sending: socket unread, window shut ---------------------------------------------------


def test_a_transport_paused_for_send_timeout_is_aborted():
    """When the client reads nothing for sendTimeout (the transport stays paused), the connection is aborted and its streams told."""
    server = Server(sendTimeout=20)
    client = Client(server)
    handler = server.handlers[client.request()]
    server.connection.pauseProducing()
    server.clock.advance(19.9)
    assert not server.transport.disconnected
    server.clock.advance(0.1)
    assert server.transport.disconnected  # aborted
    assert len(handler.aborted) == 1


def test_a_transport_that_drains_in_time_is_kept():
    """When the transport resumes within sendTimeout, the timer is cancelled."""
    server = Server(sendTimeout=20)
    Client(server)
    for _ in range(5):
        server.connection.pauseProducing()
        server.clock.advance(15)
        server.connection.resumeProducing()
    assert not server.transport.disconnecting


def test_a_stream_waiting_for_window_too_long_is_reset():
    """When a stream has response bytes queued and the client keeps its window shut for sendTimeout, the stream is reset with CANCEL and its handler told."""
    server = Server(sendTimeout=20)
    client = Client(server, autoAck=False, settings={SettingCodes.INITIAL_WINDOW_SIZE: 10})
    streamID = client.request()
    handler = server.handlers[streamID]
    handler.stream.writeHeaders(ResponseHead(200))
    handler.stream.write(b"x" * 1000)
    client.flush()
    server.clock.advance(19.9)
    assert handler.aborted == []
    server.clock.advance(0.1)
    client.flush()
    assert client.response(streamID)["reset"] == E.CANCEL
    assert len(handler.aborted) == 1
    assert not server.transport.disconnecting


def test_window_credit_in_time_keeps_the_stream():
    """When window arrives before sendTimeout each time, the stream is never reset."""
    server = Server(sendTimeout=20)
    client = Client(server, autoAck=False, settings={SettingCodes.INITIAL_WINDOW_SIZE: 100})
    streamID = client.request()
    handler = server.handlers[streamID]
    handler.respond(200, b"x" * 1000)
    client.flush()
    for _ in range(9):
        server.clock.advance(15)
        client.conn.increment_flow_control_window(100, streamID)
        client.flush()
    assert handler.aborted == []
    assert client.response(streamID)["ended"]


# -- idle ------------------------------------------------------------------------------------


def test_a_long_poll_outlives_the_idle_timeout():
    """When a stream waits on its handler far longer than the idle timeout, the connection stays open."""
    server = Server(idleTimeout=10)
    client = Client(server)
    handler = server.handlers[client.request()]
    server.clock.advance(600)
    assert not server.transport.disconnecting and handler.aborted == []


# -- closing ---------------------------------------------------------------------------------


class HalfClosingTransport(StringTransport):
    """A StringTransport that can close its write side, as TCP can."""

    writeClosed = False

    def loseWriteConnection(self) -> None:
        self.writeClosed = True


def test_closing_half_closes_then_lingers_before_closing():
    """When the connection closes itself on a transport that can half-close, it sends its GOAWAY and FIN, keeps reading (and dropping) for LINGER seconds, then closes."""
    transport = HalfClosingTransport()
    server = Server(transport=transport, idleTimeout=10)
    Client(server)
    server.clock.advance(10)
    assert transport.writeClosed and not transport.disconnecting
    server.feed(b"\x00" * 1000)  # a flood still arriving is dropped
    server.clock.advance(LINGER)
    assert transport.disconnecting
