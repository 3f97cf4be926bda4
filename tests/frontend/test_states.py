"""The HTTP/2 front end's lifecycles as enums: a stream's L{StreamState},
L{RequestState}, L{ResponseState} and L{ProducerState}, and the connection's
L{ConnectionState} and L{Timers}, each moved by what happens on the wire."""

from __future__ import annotations

import pytest
from twisted.internet.testing import MemoryReactorClock

from h2proxy.config.model import Http2Config
from h2proxy.frontend.http2.lifecycle import GRACEFUL_GOAWAY_DELAY, ConnectionState, Timer, Timers
from h2proxy.frontend.http2.stream import (
    STREAM_HIGH_WATER,
    ProducerState,
    RequestState,
    ResponseState,
    StreamState,
)
from h2proxy.message import ResponseHead
from tests.frontend.support import FakeProducer, connected


def test_a_stream_goes_through_its_request_and_response_states():
    """A request with a body is RECEIVING until END_STREAM, then DELIVERED; the
    response is HEAD_QUEUED, FINISHING, then ENDED once END_STREAM went out, and the
    stream is CLOSED."""
    server, client = connected()
    streamID = client.request(b"/", method=b"POST", end=False)
    stream = server.handlers[streamID].stream
    assert (stream.state, stream.request, stream.response) == (StreamState.STARTED, RequestState.RECEIVING, ResponseState.AWAITING_HEAD)
    client.conn.send_data(streamID, b"body", end_stream=True)
    client.flush()
    assert stream.request is RequestState.DELIVERED and server.handlers[streamID].body == b"body"
    stream.writeHeaders(ResponseHead(200))
    assert stream.response is ResponseState.HEAD_QUEUED
    stream.write(b"answer")
    stream.finish()
    assert stream.response is ResponseState.FINISHING
    client.flush()
    assert stream.response is ResponseState.ENDED and stream.state is StreamState.CLOSED and not stream.alive
    assert client.response(streamID)["body"] == b"answer"


def test_writes_out_of_order_are_refused_by_the_response_state():
    """Body before the head, a second head, a 1xx after the head and a second end raise."""
    server, client = connected()
    stream = server.handlers[client.request(b"/")].stream
    with pytest.raises(RuntimeError, match="before the response head"):
        stream.write(b"x")
    with pytest.raises(RuntimeError, match="finished before its head"):
        stream.finish()
    stream.writeHeaders(ResponseHead(200))
    with pytest.raises(RuntimeError, match="head already written"):
        stream.writeHeaders(ResponseHead(200))
    with pytest.raises(RuntimeError, match="informational head after the final one"):
        stream.writeInformational(ResponseHead(103))
    stream.finish()
    with pytest.raises(RuntimeError, match="already finished"):
        stream.finish()
    with pytest.raises(RuntimeError, match="after the response was finished"):
        stream.write(b"x")


def test_a_head_with_end_stream_ends_the_response_on_the_head():
    """writeHeaders(endStream=True) is FINISHING at once and ENDED by the HEADERS frame."""
    server, client = connected()
    streamID = client.request(b"/")
    stream = server.handlers[streamID].stream
    stream.writeHeaders(ResponseHead(204), endStream=True)
    assert stream.response is ResponseState.FINISHING
    client.flush()
    assert stream.response is ResponseState.ENDED and client.response(streamID)["ended"]


def test_the_push_producer_is_paused_above_the_high_water_mark_and_resumed_once_drained():
    """STREAMING -> PAUSED when the queue passes the high-water mark (the window is
    closed), PAUSED -> STREAMING once the client opens it and the queue drains."""
    server, client = connected(autoAck=False)
    streamID = client.request(b"/")
    stream = server.handlers[streamID].stream
    producer = FakeProducer()
    stream.writeHeaders(ResponseHead(200))
    stream.registerProducer(producer, True)
    assert stream.producer is ProducerState.STREAMING
    stream.write(b"x" * (STREAM_HIGH_WATER + 65536 + 1))
    client.flush()
    assert stream.producer is ProducerState.PAUSED and producer.state == "paused"
    client.conn.increment_flow_control_window(2**30)
    client.conn.increment_flow_control_window(2**30, streamID)
    client.flush()
    assert stream.producer is ProducerState.STREAMING and producer.state == "producing"
    stream.unregisterProducer()
    assert stream.producer is ProducerState.NONE


def test_a_silent_request_body_is_abandoned_and_answered_408():
    """Past requestBodyTimeout the body is ABANDONED (no longer awaited) and the client gets 408."""
    server, client = connected(requestBodyTimeout=5.0)
    streamID = client.request(b"/", method=b"POST", end=False)
    stream = server.handlers[streamID].stream
    assert stream.awaitingBody
    server.clock.advance(5.0)
    client.flush()
    assert stream.request is RequestState.ABANDONED and not stream.awaitingBody
    assert client.response(streamID)["status"] == 408


def test_graceful_shutdown_moves_the_connection_forward_to_closed():
    """OPEN -> GOING_AWAY (first GOAWAY) -> FINAL_GOAWAY (second) -> CLOSING once
    the last stream is done -> CLOSED when the transport is gone."""
    server, client = connected()
    connection = server.connection
    streamID = client.request(b"/")
    assert connection._state is ConnectionState.OPEN
    connection.gracefulShutdown()
    assert connection._state is ConnectionState.GOING_AWAY
    server.clock.advance(GRACEFUL_GOAWAY_DELAY)
    assert connection._state is ConnectionState.FINAL_GOAWAY
    server.handlers[streamID].respond(200, b"done")
    server.clock.advance(0)
    assert connection.streams == {}
    assert connection._state is ConnectionState.CLOSING and server.transport.disconnecting
    connection.connectionLost()
    assert connection._state is ConnectionState.CLOSED


def test_states_never_move_back():
    """A graceful shutdown asked of a closing connection does nothing."""
    server, client = connected()
    connection = server.connection
    connection.closeIdle()
    assert connection._state is ConnectionState.CLOSING
    connection.gracefulShutdown()
    assert connection._state is ConnectionState.CLOSING


def test_closing_leaves_only_the_abort_timer_and_losing_the_transport_none():
    """Closing cancels every timer but the abort one (armed for abortTimeout);
    connectionLost cancels that one too."""
    server, client = connected(abortTimeout=10.0, requestHeaderTimeout=30.0)
    connection = server.connection
    assert connection._timers.armed(Timer.REQUEST_HEADER)
    connection.closeIdle()
    assert [t for t in Timer if connection._timers.armed(t)] == [Timer.ABORT]
    connection.connectionLost()
    assert [t for t in Timer if connection._timers.armed(t)] == []
    assert server.clock.getDelayedCalls() == []


def test_timers_fire_once_and_empty_their_slot():
    """An armed timer fires its function once and is no longer armed; re-arming
    replaces the pending call; cancelAll keeps the one it is told to keep."""
    clock = MemoryReactorClock()
    timers = Timers(clock)
    fired: list[str] = []
    timers.arm(Timer.WATCHDOG, 2.0, lambda: fired.append("first"))
    timers.arm(Timer.WATCHDOG, 1.0, lambda: fired.append("second"))
    assert timers.deadline(Timer.WATCHDOG) == 1.0 and len(clock.getDelayedCalls()) == 1
    clock.advance(2.0)
    assert fired == ["second"] and not timers.armed(Timer.WATCHDOG)
    timers.arm(Timer.SEND, 0, lambda: fired.append("send"))
    timers.arm(Timer.ABORT, 5, lambda: fired.append("abort"))
    timers.cancelAll(keep=Timer.ABORT)
    clock.advance(5)
    assert fired == ["second", "abort"]


def test_default_settings_build_an_open_connection():
    """A new connection is OPEN with no stream."""
    server, client = connected(settings=Http2Config())
    assert server.connection._state is ConnectionState.OPEN and server.connection.isIdle()
