"""Connection life: timeouts, aborts, resets, drain, and nothing left behind."""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.error import TimeoutError
from twisted.internet.testing import StringTransport

from h2proxy.frontend.http1.protocol import HTTP11ServerProtocol
from h2proxy.frontend.negotiation import NegotiationFactory
from h2proxy.message import ResponseHead

from tests.frontend_http1.harness import PausingProducer, attach, connect, make_factory

GET = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
POST = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n"


def test_idle_keep_alive_connection_times_out():
    """When no request arrives within the idle timeout, the connection closes."""
    h = connect(idleTimeout=5)
    h.clock.advance(4.9)
    assert not h.transport.disconnecting
    h.clock.advance(0.1)
    assert h.transport.disconnecting


def test_idle_timer_restarts_after_each_exchange():
    """When a response completes, the next request gets a full idle period."""
    h = connect(idleTimeout=5)
    h.clock.advance(4)
    h.feed(GET)
    h.handler.respond()
    h.clock.advance(4)
    assert not h.transport.disconnecting
    h.clock.advance(1)
    assert h.transport.disconnecting


def test_trickling_head_times_out_despite_progress():
    """When a head trickles in byte by byte (slowloris), it must still complete within one idle timeout."""
    h = connect(idleTimeout=5)
    for byte in b"GET / HTTP/1.1\r\nHost:":
        h.feed(bytes([byte]))
        h.clock.advance(0.25)
    assert h.transport.disconnecting and h.handlers == []


def test_no_timeout_while_waiting_for_the_handler():
    """When the request is complete and the handler has not answered, the idle timer does not run."""
    h = connect(idleTimeout=5)
    h.feed(GET)
    h.clock.advance(100)
    assert not h.transport.disconnecting
    assert h.clock.getDelayedCalls() == []


def test_stalled_body_times_out_and_aborts_the_exchange():
    """When a request body stops arriving, the connection is aborted after the idle timeout and the handler told once."""
    h = connect(idleTimeout=5)
    h.feed(POST + b"abc")
    h.clock.advance(4)
    h.feed(b"d")
    h.clock.advance(4)
    assert not h.transport.disconnecting
    h.clock.advance(1)
    assert h.transport.disconnected
    kinds = h.handler.kinds()
    assert kinds.count("aborted") == 1 and kinds[-1] == "aborted"
    assert h.handler.events[-1][1].check(TimeoutError)
    h.lose()
    assert h.handler.kinds().count("aborted") == 1


def test_paused_body_does_not_time_out():
    """When the handler pauses the body, the wait is the handler's, and the idle timer stops."""
    h = connect(idleTimeout=5, onHead=lambda handler: handler.stream.pauseProducing())
    h.feed(POST)
    h.clock.advance(100)
    assert not h.transport.disconnecting


def test_client_not_reading_the_response_times_out():
    """When the client's socket stays full for the idle timeout, the connection is aborted."""
    h = connect(idleTimeout=5)
    h.feed(GET)
    stream = h.handler.stream
    stream.writeHeaders(ResponseHead(status=200))
    producer = PausingProducer()
    stream.registerProducer(producer, True)
    h.protocol.pauseProducing()
    h.clock.advance(5)
    assert h.transport.disconnected
    assert h.handler.kinds()[-1] == "aborted"


def test_connection_lost_mid_exchange_aborts_the_handler_exactly_once():
    """When the client goes away during an exchange, the handler gets one streamAborted and later writes are ignored."""
    h = connect()
    h.feed(POST + b"abc")
    stream = h.handler.stream
    h.lose()
    assert h.handler.kinds() == ["head", "data", "aborted"]
    stream.writeHeaders(ResponseHead(status=200))
    stream.write(b"x")
    stream.finish()
    stream.reset()
    assert h.output() == b""
    assert h.handler.kinds().count("aborted") == 1


def test_connection_lost_after_the_exchange_tells_nobody():
    """When the client goes away between requests, no handler hears of it."""
    h = connect()
    h.feed(GET)
    h.handler.respond()
    h.lose()
    assert "aborted" not in h.handler.kinds()


def test_reset_closes_the_connection_and_aborts_the_stream():
    """When the handler resets mid-response, the connection closes (client sees a truncated body) and writes stop."""
    h = connect()
    h.feed(GET + GET)
    stream = h.handler.stream
    stream.writeHeaders(ResponseHead(status=200, headers=((b"content-length", b"10"),)))
    stream.write(b"abc")
    stream.reset()
    assert h.transport.disconnecting and not h.transport.disconnected
    assert h.handler.kinds()[-1] == "aborted"
    stream.write(b"def")
    assert h.output().endswith(b"abc")
    assert len(h.handlers) == 1


def test_reset_before_the_response_just_closes():
    """When the handler resets before answering, the connection closes with nothing written."""
    h = connect()
    h.feed(GET)
    h.handler.stream.reset()
    assert h.output() == b"" and h.transport.disconnecting


def test_closing_connection_is_aborted_if_it_never_flushes():
    """When a closing connection is still open after abortTimeout, it is aborted."""
    h = connect(abortTimeout=3)
    h.feed(GET)
    h.handler.stream.reset()
    h.clock.advance(3)
    assert h.transport.disconnected


def test_nothing_is_left_behind():
    """When connections end in every way, no timer and no connection entry remains."""
    factory, handlers, clock = make_factory(idleTimeout=5, abortTimeout=3)
    ends = []
    a = attach(factory, handlers, clock)
    a.feed(GET)
    a.handler.respond()
    ends.append(a)
    b = attach(factory, handlers, clock)
    b.feed(POST + b"ab")
    ends.append(b)
    c = attach(factory, handlers, clock)
    c.feed(GET)
    c.handler.stream.reset()
    ends.append(c)
    d = attach(factory, handlers, clock)
    d.feed(b"GET / HTTP/1.1\r\n\r\n")
    ends.append(d)
    assert len(factory.connections) == 4
    for harness in ends:
        harness.lose()
    assert factory.connections == set()
    assert clock.getDelayedCalls() == []
    assert all(p._stream is None and not p._buffer for p in (x.protocol for x in ends))


def test_drain_closes_idle_connections_and_lets_busy_ones_finish():
    """When draining, idle connections close at once and an in-flight response says Connection: close, then closes."""
    factory, handlers, clock = make_factory()
    idle = attach(factory, handlers, clock)
    busy = attach(factory, handlers, clock)
    busy.feed(GET)
    done = factory.drain(30)
    fired = []
    done.addCallback(fired.append)
    assert idle.transport.disconnecting and not busy.transport.disconnecting
    idle.lose()
    assert fired == []
    busy.handler.respond()
    assert b"connection: close\r\n" in busy.output()
    assert busy.transport.disconnecting
    busy.lose()
    assert fired == [None]
    assert clock.getDelayedCalls() == []


def test_drain_closes_after_a_response_already_under_way():
    """When draining starts after the response head went out, the connection closes when the response ends."""
    h = connect()
    h.feed(GET + GET)
    stream = h.handler.stream
    stream.writeHeaders(ResponseHead(status=200, headers=((b"content-length", b"1"),)))
    h.factory.drain(30)
    stream.write(b"x")
    stream.finish()
    assert h.transport.disconnecting and len(h.handlers) == 1


def test_drain_aborts_leftovers_after_the_window():
    """When in-flight exchanges outlast the drain window, their connections are aborted and the handlers told."""
    h = connect()
    h.feed(GET)
    fired = []
    h.factory.drain(10).addCallback(fired.append)
    h.clock.advance(10)
    assert h.transport.disconnected
    assert h.handler.kinds()[-1] == "aborted"
    h.lose()
    assert fired == [None] and h.handler.kinds().count("aborted") == 1


def test_drain_with_no_connections_fires_at_once():
    """When nothing is connected, drain fires immediately and leaves no timer."""
    factory, _, clock = make_factory()
    fired = []
    factory.drain(10).addCallback(fired.append)
    assert fired == [None] and clock.getDelayedCalls() == []


def test_request_arriving_during_drain_is_answered_with_close():
    """When a request arrives on a connection after the drain began, it is served once, with Connection: close."""
    factory, handlers, clock = make_factory()
    h = attach(factory, handlers, clock)
    h.feed(b"GET / HT")
    factory.drain(30)
    assert not h.transport.disconnecting
    h.feed(b"TP/1.1\r\nHost: a\r\n\r\n")
    h.handler.respond()
    assert b"connection: close\r\n" in h.output() and h.transport.disconnecting


def test_negotiation_hands_http1_clients_to_this_front_end():
    """When a cleartext client starts with an HTTP/1.1 request, NegotiationFactory hands it to HTTP1Factory with the bytes already read."""
    factory, handlers, clock = make_factory()
    negotiation = NegotiationFactory(reactor=clock, h2Factory=None, http1Factory=factory, deadline=5)
    protocol = negotiation.buildProtocol(IPv4Address("TCP", "192.0.2.1", 1))
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(b"GE")
    protocol.dataReceived(b"T / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert handlers[0].head.path == b"/"
    assert isinstance(transport.producer, HTTP11ServerProtocol)
    handlers[0].respond()
    assert transport.value().startswith(b"HTTP/1.1 200 OK\r\n")
