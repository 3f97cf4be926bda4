"""H2Connection driven by a real h2 client (or raw frames) over a StringTransport and a
MemoryReactorClock: requests reach handlers, responses reach the client, and the
connection's duties (settings, 100-continue, polite 400, timeouts, GOAWAY, control
buffer cap, no leftovers) hold."""

from __future__ import annotations

import h2.events
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from hyperframe.frame import DataFrame, GoAwayFrame, HeadersFrame, PingFrame, RstStreamFrame, SettingsFrame, WindowUpdateFrame
from twisted.internet.error import ConnectionDone, TimeoutError
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from h2proxy.frontend.handler import ResetReason
from h2proxy.config.model import Http2Config
from h2proxy.frontend.http2.connection import H2Connection
from h2proxy.frontend.http2.lifecycle import GRACEFUL_GOAWAY_DELAY
from h2proxy.frontend.http2.stream import ResponseCompletedEarly, StreamResetError
from h2proxy.message import ResponseHead
from tests.frontend.frames import FrameFactory, ResponseDecoder, requestHeaders
from tests.frontend.support import Client, EchoHandler, RecordingHandler, Server, connected


def of(frames, kind, streamID=None):
    return [f for f in frames if isinstance(f, kind) and (streamID is None or f.stream_id == streamID)]


# -- connection preface and settings -----------------------------------------------


def test_preface_announces_settings_and_raises_the_connection_window():
    """When a client connects, the server's SETTINGS carry the configured values (push disabled) and a WINDOW_UPDATE on stream 0 raises the connection window to connection_window_size."""
    settings = Http2Config(max_concurrent_streams=7, initial_window_size=300000, max_frame_size=32768, max_header_list_size=9000, connection_window_size=5_000_000)
    server = Server(settings=settings)
    frames = server.frames()
    assert isinstance(frames[0], SettingsFrame)
    assert frames[0].settings[SettingCodes.MAX_CONCURRENT_STREAMS] == 7
    assert frames[0].settings[SettingCodes.INITIAL_WINDOW_SIZE] == 300000
    assert frames[0].settings[SettingCodes.MAX_FRAME_SIZE] == 32768
    assert frames[0].settings[SettingCodes.MAX_HEADER_LIST_SIZE] == 9000
    assert frames[0].settings[SettingCodes.ENABLE_PUSH] == 0
    assert isinstance(frames[1], WindowUpdateFrame) and frames[1].stream_id == 0
    assert frames[1].window_increment == 5_000_000 - 65535


def test_connection_is_a_producer_registered_with_its_transport():
    """When the connection is made, it registers itself as a streaming producer of its transport."""
    server = Server()
    assert server.transport.producer is server.connection
    assert server.transport.streaming is True


def test_client_window_reflects_our_settings():
    """When the client has read our preface, its view of our windows is the configured one, not 65,535."""
    server, client = connected(settings=Http2Config(initial_window_size=1 << 20, connection_window_size=1 << 24))
    streamID = client.request(end=False)
    assert client.conn.local_flow_control_window(streamID) == 1 << 20
    assert client.conn.outbound_flow_control_window == 1 << 24


# -- requests and responses ------------------------------------------------------------


def test_request_reaches_handler_and_response_reaches_client():
    """When a GET arrives, the handler gets its head and end, and its response reaches the client; then no state is left."""
    server, client = connected()
    streamID = client.request(b"/index?x=1", extra=[(b"accept", b"text/html")])
    handler = server.handlers[streamID]
    assert handler.head.path == b"/index?x=1"
    assert handler.head.headers == ((b"accept", b"text/html"),)
    assert handler.calls == ["requestReceived", "requestEnded"]
    assert handler.trailers == ()
    handler.respond(200, b"hello", ((b"content-type", b"text/plain"),))
    client.flush()
    response = client.response(streamID)
    assert response["status"] == 200 and response["body"] == b"hello" and response["ended"]
    assert (b"content-type", b"text/plain") in response["headers"]
    server.assertNoLeftovers()


def test_upload_and_download_both_ways():
    """When a client posts a body larger than the windows, the echo comes back intact."""
    server, client = connected(handlerClass=EchoHandler, settings=Http2Config(initial_window_size=65535, connection_window_size=65535))
    body = bytes(range(256)) * 2000
    streamID = client.request(b"/echo", b"POST", body=body)
    response = client.response(streamID)
    assert response["body"] == body and response["ended"]
    server.assertNoLeftovers()


def test_input_one_byte_at_a_time_works_as_in_one_piece():
    """When the client's bytes arrive one at a time, the handlers see the same requests as when they arrive at once."""

    def run(split: bool):
        server = Server(handlerClass=EchoHandler)
        factory = FrameFactory()
        data = factory.preamble()
        data += factory.headers(1, requestHeaders(b"/a", b"POST", [(b"content-length", b"5")])).serialize()
        data += factory.data(1, b"hello", flags=["END_STREAM"]).serialize()
        data += factory.headers(3, requestHeaders(b"/b"), flags=["END_HEADERS", "END_STREAM"]).serialize()
        data += factory.headers(5, requestHeaders(b"/c", b"POST"), flags=["END_HEADERS"]).serialize()
        data += factory.data(5, b"xy", padLength=3).serialize()
        data += factory.headers(5, [(b"x-sum", b"2")], flags=["END_HEADERS", "END_STREAM"]).serialize()
        if split:
            for i in range(len(data)):
                server.feed(data[i : i + 1])
        else:
            server.feed(data)
        server.clock.advance(0)
        record = {sid: (h.head, h.body, h.trailers, h.calls) for sid, h in server.handlers.items()}
        decoder = ResponseDecoder()
        frames = server.frames()
        blocks = decoder.feed(frames)
        bodies = {sid: b"".join(f.data for f in of(frames, DataFrame, sid)) for sid in (1, 3, 5)}
        return record, [(sid, dict(fields)[b":status"]) for sid, fields, _ in blocks], bodies

    assert run(split=True) == run(split=False)
    record, statuses, bodies = run(split=False)
    assert record[1][1] == b"hello" and record[5][2] == ((b"x-sum", b"2"),)
    assert sorted(statuses) == [(1, b"200"), (3, b"200"), (5, b"200")]
    assert bodies == {1: b"hello", 3: b"", 5: b"xy"}


def test_request_trailers_reach_requestEnded():
    """When the client sends trailers, the handler gets them in requestEnded."""
    server, client = connected()
    streamID = client.request(b"/up", b"POST", body=b"abc", end=False)
    client.conn.send_headers(streamID, [(b"x-checksum", b"900150983cd24fb0")], end_stream=True)
    client.flush()
    handler = server.handlers[streamID]
    assert handler.body == b"abc"
    assert handler.trailers == ((b"x-checksum", b"900150983cd24fb0"),)


def test_response_trailers_follow_the_body_and_end_the_stream():
    """When the handler writes trailers, they are sent after the queued body, with END_STREAM."""
    server, client = connected()
    streamID = client.request()
    stream = server.handlers[streamID].stream
    stream.writeHeaders(ResponseHead(200))
    stream.write(b"x" * 40000)
    stream.writeTrailers(((b"grpc-status", b"0"),))
    client.flush()
    response = client.response(streamID)
    assert response["body"] == b"x" * 40000
    assert response["trailers"] == [(b"grpc-status", b"0")]
    assert response["ended"]
    server.assertNoLeftovers()


def test_headers_only_response_ends_in_the_headers_frame():
    """When the handler finishes without a body, END_STREAM rides on the HEADERS frame (no empty DATA frame)."""
    server = Server()
    factory = FrameFactory()
    server.handshake(factory)
    server.feed(factory.headers(1, flags=["END_HEADERS", "END_STREAM"]).serialize())
    server.output()
    server.handlers[1].respond(204)
    server.clock.advance(0)
    frames = server.frames()
    assert len(frames) == 1 and isinstance(frames[0], HeadersFrame) and "END_STREAM" in frames[0].flags


def test_informational_response_precedes_the_final_one():
    """When the handler sends 103 Early Hints, the client sees it before the final 200."""
    server, client = connected()
    streamID = client.request()
    stream = server.handlers[streamID].stream
    stream.writeInformational(ResponseHead(103, ((b"link", b"</s.css>; rel=preload"),)))
    stream.writeHeaders(ResponseHead(200), endStream=True)
    client.flush()
    response = client.response(streamID)
    assert response["informational"] == [b"103"] and response["status"] == 200


def test_expect_100_continue_goes_to_the_handler_and_waits_for_its_100():
    """When a request with a body expects 100-continue, the handler's head carries expect and the client gets a 100 only when the handler relays one."""
    server, client = connected()
    streamID = client.request(b"/up", b"POST", extra=[(b"expect", b"100-continue")], end=False)
    assert server.handlers[streamID].head.headers == ((b"expect", b"100-continue"),)
    assert client.response(streamID)["informational"] == []
    server.handlers[streamID].stream.writeInformational(ResponseHead(100))
    client.flush()
    assert client.response(streamID)["informational"] == [b"100"]


def test_expect_100_continue_final_answer_without_100():
    """When the handler answers a request expecting 100-continue with a final 417, the client gets no 100, just the 417."""
    server, client = connected()
    streamID = client.request(b"/up", b"POST", extra=[(b"expect", b"100-continue")], end=False)
    server.handlers[streamID].stream.writeHeaders(ResponseHead(417), endStream=True)
    client.flush()
    response = client.response(streamID)
    assert response["informational"] == [] and response["status"] == 417


def test_local_continue_gets_100_at_once_and_expect_is_removed():
    """When the connection answers 100-continue locally, the client gets 100 at once and the handler's head has no expect."""
    server, client = connected()
    server.connection.localContinue = True
    streamID = client.request(b"/up", b"POST", extra=[(b"expect", b"100-continue")], end=False)
    assert client.response(streamID)["informational"] == [b"100"]
    assert server.handlers[streamID].head.headers == ()


def test_expect_100_continue_without_body_gets_no_100():
    """When a request that expects 100-continue has no body, no 100 is sent and expect is not handed on, in either mode."""
    for local in (False, True):
        server, client = connected()
        server.connection.localContinue = local
        streamID = client.request(extra=[(b"expect", b"100-continue")])
        assert client.response(streamID)["informational"] == []
        assert server.handlers[streamID].head.headers == ()


def test_polite_400_keeps_the_connection():
    """When a request is unusable (a :path without /), that stream gets a 400 with a short text body and the connection serves the next stream."""
    server, client = connected(handlerClass=EchoHandler)
    bad = client.conn.get_next_available_stream_id()
    client.conn.send_headers(bad, requestHeaders(b"nope"), end_stream=True)
    client.flush()
    response = client.response(bad)
    assert response["status"] == 400 and response["ended"] and response["reset"] is None
    assert response["body"].startswith(b"400 Bad Request")
    refused = server.handlers[bad]
    assert refused.calls == ["requestRefused"] and refused.refused[1] == 400
    assert (refused.refused[0].method, refused.refused[0].path) == (b"GET", b"nope")
    good = client.request(b"/fine")
    assert client.response(good)["status"] == 200
    server.assertNoLeftovers()


def test_polite_400_with_a_body_still_arriving_asks_the_client_to_stop():
    """When an unusable request is still sending its body, the 400 is followed by RST_STREAM NO_ERROR (RFC 9113 8.1) and the connection goes on."""
    server, client = connected()
    bad = client.conn.get_next_available_stream_id()
    client.conn.send_headers(bad, requestHeaders(b"nope", b"POST"), end_stream=False)
    client.flush()
    response = client.response(bad)
    assert response["status"] == 400 and response["ended"]
    assert response["reset"] == ErrorCodes.NO_ERROR
    server.assertNoLeftovers()


def test_oversized_header_list_gets_431():
    """When the decoded header list exceeds max_header_list_size, the stream gets 431 and the connection goes on."""
    server, client = connected(handlerClass=EchoHandler, settings=Http2Config(max_header_list_size=4096))
    streamID = client.request(extra=[(b"x-big", b"a" * 5000)])
    assert client.response(streamID)["status"] == 431
    assert client.response(client.request())["status"] == 200


def test_malformed_request_is_reset_and_other_streams_carry_on():
    """When one request in a read is malformed, it gets RST_STREAM PROTOCOL_ERROR, never reaches a handler, and the other requests of the same read are served."""
    server = Server(handlerClass=EchoHandler)
    factory = FrameFactory()
    server.handshake(factory)
    data = factory.headers(1, requestHeaders(b"/a"), flags=["END_HEADERS", "END_STREAM"]).serialize()
    data += factory.headers(3, requestHeaders(extra=[(b"connection", b"close")]), flags=["END_HEADERS", "END_STREAM"]).serialize()
    data += factory.headers(5, requestHeaders(b"/c"), flags=["END_HEADERS", "END_STREAM"]).serialize()
    server.feed(data)
    frames = server.frames()
    resets = of(frames, RstStreamFrame)
    assert [(f.stream_id, f.error_code) for f in resets] == [(3, ErrorCodes.PROTOCOL_ERROR)]
    assert sorted(server.handlers) == [1, 5]
    assert {f.stream_id for f in of(frames, HeadersFrame)} == {1, 5}
    assert not of(frames, GoAwayFrame)


def test_content_length_exceeded_after_handover_aborts_the_handler():
    """When DATA exceeds content-length after the request was handed over, the stream gets RST_STREAM PROTOCOL_ERROR and the handler one streamAborted."""
    server = Server()
    factory = FrameFactory()
    server.handshake(factory)
    server.feed(factory.headers(1, requestHeaders(b"/", b"POST", [(b"content-length", b"3")])).serialize())
    server.feed(factory.data(1, b"abcd").serialize())
    frames = server.frames()
    assert [(f.stream_id, f.error_code) for f in of(frames, RstStreamFrame)] == [(1, ErrorCodes.PROTOCOL_ERROR)]
    handler = server.handlers[1]
    assert handler.calls == ["requestReceived", "streamAborted"]
    assert handler.aborted[0].value.errorCode == ErrorCodes.PROTOCOL_ERROR
    server.assertNoLeftovers()


def test_content_length_short_at_end_stream_aborts_the_handler():
    """When END_STREAM arrives before content-length bytes did, the stream is reset PROTOCOL_ERROR and the handler aborted (RFC 9113 8.1.1)."""
    server = Server()
    factory = FrameFactory()
    server.handshake(factory)
    server.feed(factory.headers(1, requestHeaders(b"/", b"POST", [(b"content-length", b"10")])).serialize())
    server.feed(factory.data(1, b"abc", flags=["END_STREAM"]).serialize())
    frames = server.frames()
    assert [(f.stream_id, f.error_code) for f in of(frames, RstStreamFrame)] == [(1, ErrorCodes.PROTOCOL_ERROR)]
    assert server.handlers[1].calls == ["requestReceived", "requestDataReceived", "streamAborted"]


# -- handler failures ----------------------------------------------------------------------


class RaisingHandler(RecordingHandler):
    def requestReceived(self, head):
        super().requestReceived(head)
        raise ValueError("boom")


def test_handler_exception_resets_only_its_stream(capture_logs, logged_errors):
    """When a handler raises, its stream gets RST_STREAM INTERNAL_ERROR, the error is logged, the handler is aborted, and the connection goes on."""
    server, client = connected(handlerClass=RaisingHandler)
    streamID = client.request()
    assert client.response(streamID)["reset"] == ErrorCodes.INTERNAL_ERROR
    assert server.handlers[streamID].calls == ["requestReceived", "streamAborted"]
    assert any("boom" in str(event.get("log_failure", "")) for event in capture_logs)
    server.handlerClass = EchoHandler
    assert client.response(client.request())["status"] == 200
    assert logged_errors.take(r"raised for stream 1 .*resetting the stream")


def test_unexpected_internal_error_becomes_goaway_internal_error(capture_logs, logged_errors):
    """When something unexpected breaks inside event dispatch, no exception escapes dataReceived: the client gets GOAWAY INTERNAL_ERROR and the connection closes."""
    server = Server()
    factory = FrameFactory()
    server.handshake(factory)

    def broken(event):
        raise KeyError("bug")

    server.connection._requestReceived = broken
    server.feed(factory.headers(1, flags=["END_HEADERS", "END_STREAM"]).serialize())
    goaways = of(server.frames(), GoAwayFrame)
    assert [g.error_code for g in goaways] == [ErrorCodes.INTERNAL_ERROR]
    assert server.transport.disconnecting
    assert any(event.get("log_failure") is not None for event in capture_logs)
    assert logged_errors.take(r"internal error on HTTP/2 connection")


# -- stream life ---------------------------------------------------------------------------


def test_client_reset_aborts_the_handler_and_later_writes_are_ignored():
    """When the client resets a stream, its handler gets exactly one streamAborted and later writes on the stream are silently ignored."""
    server, client = connected()
    streamID = client.request(end=False)
    handler = server.handlers[streamID]
    client.conn.reset_stream(streamID, ErrorCodes.CANCEL)
    client.flush()
    assert handler.calls == ["requestReceived", "streamAborted"]
    reason = handler.aborted[0].value
    assert isinstance(reason, StreamResetError) and reason.byPeer and reason.errorCode == ErrorCodes.CANCEL
    stream = handler.stream
    stream.writeHeaders(ResponseHead(200))
    stream.write(b"late")
    stream.finish()
    stream.reset()
    client.flush()
    assert client.response(streamID)["status"] is None
    assert len(handler.aborted) == 1
    server.assertNoLeftovers()


def test_local_reset_sends_rst_stream_and_aborts_once():
    """When the bridge resets a stream, RST_STREAM with its code goes out and the handler gets one streamAborted."""
    server, client = connected()
    streamID = client.request()
    handler = server.handlers[streamID]
    handler.stream.writeHeaders(ResponseHead(200))
    handler.stream.write(b"partial")
    handler.stream.reset(ResetReason.INTERNAL_ERROR)
    client.flush()
    assert client.response(streamID)["reset"] == ErrorCodes.INTERNAL_ERROR
    assert len(handler.aborted) == 1 and not handler.aborted[0].value.byPeer
    server.assertNoLeftovers()


def test_stop_producing_resets_with_cancel():
    """When the request body's consumer calls stopProducing, the stream is reset with CANCEL."""
    server, client = connected()
    streamID = client.request(end=False)
    server.handlers[streamID].stream.stopProducing()
    client.flush()
    assert client.response(streamID)["reset"] == ErrorCodes.CANCEL


def test_early_response_sends_rst_no_error_after_end_stream():
    """When the response completes while the request body is still coming, END_STREAM is followed by RST_STREAM NO_ERROR and the handler learns the rest will not come."""
    server, client = connected()
    streamID = client.request(b"/", b"POST", body=b"part", end=False)
    handler = server.handlers[streamID]
    handler.respond(413, b"too big")
    client.flush()
    response = client.response(streamID)
    assert response["status"] == 413 and response["ended"] and response["reset"] == ErrorCodes.NO_ERROR
    assert handler.calls[-1] == "streamAborted"
    assert isinstance(handler.aborted[0].value, ResponseCompletedEarly)
    server.assertNoLeftovers()


def test_data_in_flight_after_our_reset_is_ignored_but_credited():
    """When DATA arrives for a stream we reset, it is ignored (no RST_STREAM, no GOAWAY, RFC 9113 5.1) and still credited to the connection window."""
    server = Server(settings=Http2Config(connection_window_size=65535))
    factory = FrameFactory()
    server.handshake(factory)
    server.feed(factory.headers(1, requestHeaders(b"/", b"POST")).serialize())
    server.handlers[1].stream.reset(ResetReason.CANCEL)
    server.output()
    server.feed(b"".join(factory.data(1, b"x" * 10000).serialize() for _ in range(4)))
    frames = server.frames()
    assert not of(frames, RstStreamFrame) and not of(frames, GoAwayFrame)
    assert sum(f.window_increment for f in of(frames, WindowUpdateFrame, 0)) == 40000


def test_connection_lost_reaches_every_open_stream():
    """When the connection is lost, every open stream's handler gets streamAborted with the reason, all timers are cancelled and no state is left."""
    server, client = connected(idleTimeout=30, abortTimeout=5)
    streams = [client.request(end=False, flush=False) for _ in range(3)]
    client.flush()
    handlers = [server.handlers[s] for s in streams]
    server.connection.gracefulShutdown()
    server.connection.connectionLost(Failure(ConnectionDone()))
    for handler in handlers:
        assert handler.calls == ["requestReceived", "streamAborted"]
        assert handler.aborted[0].check(ConnectionDone)
    server.assertNoLeftovers()
    assert server.clock.getDelayedCalls() == []


def test_getters():
    """When asked, streams and connection report the transport's addresses and whether it is TLS."""
    server, client = connected(secure=False)
    stream = server.handlers[client.request(end=False)].stream
    assert stream.getPeer() == server.transport.getPeer() == server.connection.getPeer()
    assert stream.getHost() == server.transport.getHost() == server.connection.getHost()
    assert stream.isSecure() is False


def test_peer_address_is_asked_of_the_transport_once():
    """When several streams of a connection ask for the peer, they all get the transport's address, which it built only once."""
    server, client = connected(secure=False)
    asked = []
    original = server.transport.getPeer
    server.transport.getPeer = lambda: asked.append(1) or original()
    first = server.handlers[client.request(end=False)].stream
    second = server.handlers[client.request(end=False)].stream
    assert first.getPeer() == second.getPeer() == original()
    assert first.getPeer() is second.getPeer() and asked == [1]


# -- timeouts ----------------------------------------------------------------------------------


def test_idle_timeout_sends_goaway_then_aborts_after_abort_timeout():
    """When the connection is idle for timeOut seconds, it sends GOAWAY NO_ERROR and closes; abortTimeout seconds later it aborts a transport still there."""
    server, client = connected(idleTimeout=10, abortTimeout=5)
    server.clock.advance(9.9)
    assert not server.transport.disconnecting
    server.clock.advance(0.1)
    goaways = of(server.frames(), GoAwayFrame)
    assert [(g.error_code, g.last_stream_id) for g in goaways] == [(ErrorCodes.NO_ERROR, 0)]
    assert server.transport.disconnecting and not server.transport.disconnected
    server.clock.advance(5)
    assert server.transport.disconnected


def test_idle_timeout_is_reset_by_frames_while_no_stream_is_open():
    """When frames arrive on a connection with no stream open, the idle timer starts over."""
    server, client = connected(idleTimeout=10)
    server.clock.advance(8)
    client.conn.ping(b"12345678")
    client.flush()
    server.clock.advance(8)
    assert not server.transport.disconnecting
    server.clock.advance(2)
    assert server.transport.disconnecting


def test_an_open_stream_waiting_on_its_handler_does_not_make_the_connection_idle():
    """When a stream waits on its backend longer than the idle timeout (a long poll), the connection stays open; the idle timer starts when the last stream completes."""
    server, client = connected(idleTimeout=10)
    streamID = client.request()
    handler = server.handlers[streamID]
    server.clock.advance(100)
    assert not server.transport.disconnecting and handler.aborted == []
    handler.respond(200, b"late")
    client.flush()
    assert client.response(streamID)["body"] == b"late"
    server.clock.advance(9.9)
    assert not server.transport.disconnecting
    server.clock.advance(0.1)
    assert server.transport.disconnecting


def test_no_abort_when_the_connection_goes_away_in_time():
    """When the transport closes before abortTimeout, forceAbortClient is never called and no timer remains."""
    server, client = connected(idleTimeout=10, abortTimeout=5)
    server.clock.advance(10)
    server.connection.connectionLost(Failure(ConnectionDone()))
    assert server.clock.getDelayedCalls() == []
    server.clock.advance(5)
    assert not server.transport.disconnected


# -- GOAWAY both ways and stream budgets -----------------------------------------------------


def test_client_goaway_lets_open_streams_finish_then_closes():
    """When the client sends GOAWAY, streams it already opened still complete, new ones are refused, and the connection closes after the last one."""
    server, client = connected()
    first = client.request(end=False)
    client.conn.close_connection()
    client.flush()
    handler = server.handlers[first]
    assert handler.aborted == []
    server.feed(headersInClientContext(client, 3))
    frames = server.frames()
    assert [(f.stream_id, f.error_code) for f in of(frames, RstStreamFrame)] == [(3, ErrorCodes.REFUSED_STREAM)]
    assert not server.transport.disconnecting
    handler.stream.writeHeaders(ResponseHead(200))
    handler.stream.write(b"done")
    handler.stream.finish()
    server.clock.advance(0)
    frames = server.frames()
    data = of(frames, DataFrame, first)
    assert b"".join(f.data for f in data) == b"done" and "END_STREAM" in data[-1].flags
    assert server.transport.disconnecting
    assert of(frames, GoAwayFrame)[-1].last_stream_id == first


def headersInClientContext(client: Client, streamID: int) -> bytes:
    """A HEADERS frame the h2 client would refuse to send, encoded with its HPACK context."""
    frame = HeadersFrame(streamID, flags=["END_HEADERS", "END_STREAM"])
    frame.data = client.conn.encoder.encode(requestHeaders())
    return frame.serialize()


def test_max_streams_per_connection_sends_goaway_and_refuses_the_rest():
    """When max_streams_per_connection streams were accepted, GOAWAY names the last one, later streams are refused, and the connection closes once they complete."""
    server, client = connected(handlerClass=EchoHandler, settings=Http2Config(max_streams_per_connection=2))
    client.conn.send_headers(1, requestHeaders(), end_stream=False)
    client.conn.send_headers(3, requestHeaders(), end_stream=False)
    client.conn.send_headers(5, requestHeaders(), end_stream=True)
    server.feed(client.conn.data_to_send())
    frames = server.frames()
    goaways = of(frames, GoAwayFrame)
    assert [(g.last_stream_id, g.error_code) for g in goaways] == [(3, ErrorCodes.NO_ERROR)]
    assert [(f.stream_id, f.error_code) for f in of(frames, RstStreamFrame)] == [(5, ErrorCodes.REFUSED_STREAM)]
    assert sorted(server.handlers) == [1, 3]
    client.conn.end_stream(1)
    server.feed(client.conn.data_to_send())
    assert not server.transport.disconnecting
    client.conn.end_stream(3)
    server.feed(client.conn.data_to_send())
    assert server.transport.disconnecting


def test_graceful_shutdown_two_step_goaway():
    """When gracefulShutdown is called, GOAWAY(2^31-1) goes out at once, GOAWAY(last accepted stream) 1 s later; streams above it are refused and the connection closes after the last stream."""
    server, client = connected()
    first = client.request(end=False)
    server.connection.gracefulShutdown()
    goaways = of(server.frames(), GoAwayFrame)
    assert [(g.last_stream_id, g.error_code) for g in goaways] == [(2**31 - 1, ErrorCodes.NO_ERROR)]
    second = client.request(end=False)  # in flight during the first second: accepted
    assert second in server.handlers
    server.clock.advance(GRACEFUL_GOAWAY_DELAY)
    goaways = of(server.frames(), GoAwayFrame)
    assert [(g.last_stream_id, g.error_code) for g in goaways] == [(second, ErrorCodes.NO_ERROR)]
    server.feed(headersInClientContext(client, 5))
    assert [(f.stream_id, f.error_code) for f in of(server.frames(), RstStreamFrame)] == [(5, ErrorCodes.REFUSED_STREAM)]
    assert 5 not in server.handlers
    for streamID in (first, second):
        server.handlers[streamID].respond(200, b"ok")
        server.clock.advance(0)
    assert server.transport.disconnecting


def test_graceful_shutdown_without_streams_closes_after_the_second_goaway():
    """When a connection with no stream shuts down gracefully, it closes right after the second GOAWAY."""
    server, client = connected()
    server.connection.gracefulShutdown()
    assert not server.transport.disconnecting
    server.clock.advance(GRACEFUL_GOAWAY_DELAY)
    assert server.transport.disconnecting


# -- control frame buffer ---------------------------------------------------------------------


def test_control_frames_are_buffered_while_paused_and_flushed_on_resume():
    """When the transport is paused, PING ACKs are held back and written, in order, on resume."""
    server = Server()
    factory = FrameFactory()
    server.handshake(factory)
    server.connection.pauseProducing()
    server.feed(factory.ping(b"00000001").serialize() + factory.ping(b"00000002").serialize())
    assert server.output() == b""
    server.connection.resumeProducing()
    pings = of(server.frames(), PingFrame)
    assert [p.opaque_data for p in pings] == [b"00000001", b"00000002"]
    assert all("ACK" in p.flags for p in pings)


def test_control_buffer_over_the_cap_aborts_the_connection(capture_logs):
    """When control frames buffered behind a paused transport exceed max_control_buffer, the connection is aborted and the peer, limit and value are logged."""
    server = Server(settings=Http2Config(max_control_buffer=100))
    factory = FrameFactory()
    server.handshake(factory)
    server.feed(factory.headers(1, flags=["END_HEADERS"]).serialize())
    server.connection.pauseProducing()
    for i in range(5):
        server.feed(factory.ping(b"%08d" % i).serialize())
        assert not server.transport.disconnected
    server.feed(factory.ping(b"00000009").serialize())
    assert server.transport.disconnected
    assert len(server.handlers[1].aborted) == 1
    warning = [e for e in capture_logs if "control frames" in e.get("log_format", "")]
    assert warning and warning[0]["limit"] == 100 and warning[0]["value"] > 100


# -- frames coalesced -----------------------------------------------------------------------------


class CountingTransport(StringTransport):
    def __init__(self):
        super().__init__()
        self.writes = 0

    def write(self, data):
        self.writes += 1
        super().write(data)

    def writeSequence(self, data):
        self.writes += 1
        super().writeSequence(data)


def test_one_write_per_read_for_all_responses():
    """When a read produces several responses, their frames and the control frames leave in one transport write."""
    server = Server(handlerClass=EchoHandler)
    server.transport = CountingTransport()
    connection = H2Connection(reactor=server.clock, handlerFactory=server._makeHandler, settings=Http2Config(), idleTimeout=None, abortTimeout=None, secure=True)
    server.connection = connection
    connection.makeConnection(server.transport)
    factory = FrameFactory()
    data = factory.preamble() + factory.ping().serialize()
    for streamID in (1, 3, 5, 7):
        data += factory.headers(streamID, flags=["END_HEADERS", "END_STREAM"]).serialize()
    server.transport.writes = 0
    server.feed(data)
    assert server.transport.writes == 1
    frames = server.frames()
    assert len(of(frames, HeadersFrame)) == 4 and len(of(frames, PingFrame)) == 1
