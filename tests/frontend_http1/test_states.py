"""An HTTP/1.1 exchange's L{ExchangeState} and L{BodyState}, and its connection's
L{ProtocolState}, moved by the handler's calls and the connection's events."""

from __future__ import annotations

from h2proxy.frontend.http1.protocol import ProtocolState
from h2proxy.frontend.http1.stream import BodyState, ExchangeState
from h2proxy.message import ResponseHead
from tests.frontend_http1.harness import connect

UPLOAD = b"POST /up HTTP/1.1\r\nHost: example.org\r\nContent-Length: 10\r\n\r\n"


def test_a_completed_response_finishes_the_exchange():
    """OPEN until the response is complete, then FINISHED; the handler is let go."""
    h = connect()
    h.feed(b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n")
    stream = h.handler.stream
    assert stream.state is ExchangeState.OPEN
    h.handler.respond()
    assert stream.state is ExchangeState.FINISHED and stream.finished and stream.handler is None


def test_a_reset_aborts_the_exchange_and_later_writes_are_ignored():
    """A reset is ABORTED: the handler hears streamAborted once, the connection closes,
    and writes after it send nothing."""
    h = connect()
    h.feed(b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n")
    stream = h.handler.stream
    stream.writeHeaders(ResponseHead(200, ((b"content-length", b"10"),)))
    stream.reset()
    assert stream.state is ExchangeState.ABORTED and h.handler.kinds().count("aborted") == 1
    assert h.transport.disconnecting
    written = h.transport.value()
    stream.write(b"late")
    assert h.transport.value() == written


def test_losing_the_connection_after_the_response_keeps_it_finished():
    """A finished exchange stays FINISHED when the connection goes; the handler hears nothing more."""
    h = connect()
    h.feed(b"GET / HTTP/1.1\r\nHost: example.org\r\nConnection: close\r\n\r\n")
    stream = h.handler.stream
    h.handler.respond()
    h.lose()
    assert stream.state is ExchangeState.FINISHED and "aborted" not in h.handler.kinds()


def test_the_body_flows_pauses_and_is_dropped_when_unwanted():
    """FLOWING body bytes reach the handler; PAUSED stops reading; after stopProducing
    (UNWANTED) the rest of the body is read and discarded."""
    h = connect()
    h.feed(UPLOAD)
    stream = h.handler.stream
    assert stream._body is BodyState.FLOWING and stream.wantsBody
    stream.pauseProducing()
    assert stream._body is BodyState.PAUSED and stream.paused
    h.feed(b"01234")
    assert h.handler.body() == b"" and h.transport.producerState == "paused"
    stream.resumeProducing()
    assert stream._body is BodyState.FLOWING and h.handler.body() == b"01234"
    stream.stopProducing()
    assert stream._body is BodyState.UNWANTED and not stream.wantsBody
    h.feed(b"56789")
    assert h.handler.body() == b"01234"


def test_a_bodiless_request_wants_no_body():
    """A request without a body starts UNWANTED: pausing it does not stop reading."""
    h = connect()
    h.feed(b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n")
    stream = h.handler.stream
    stream.pauseProducing()
    assert stream._body is BodyState.UNWANTED and not stream.paused


def test_the_connection_closes_then_is_lost():
    """A Connection: close response moves the connection to CLOSING (transport closed,
    nothing more read), then CLOSED when the transport is gone."""
    h = connect()
    h.feed(b"GET / HTTP/1.1\r\nHost: example.org\r\nConnection: close\r\n\r\n")
    assert h.protocol._state is ProtocolState.OPEN
    h.handler.respond()
    assert h.protocol._state is ProtocolState.CLOSING and h.transport.disconnecting
    h.feed(b"GET /more HTTP/1.1\r\nHost: example.org\r\n\r\n")
    assert len(h.handlers) == 1
    h.lose()
    assert h.protocol._state is ProtocolState.CLOSED


def test_a_transport_that_stops_taking_data_stops_the_connection():
    """stopProducing is CLOSING: bytes that still arrive start no exchange."""
    h = connect()
    h.protocol.stopProducing()
    assert h.protocol._state is ProtocolState.CLOSING
    h.feed(b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n")
    assert h.handlers == []
