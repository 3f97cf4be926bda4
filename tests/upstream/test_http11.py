"""HTTP11ClientProtocol on a StringTransport and a fake clock: states, body writing,
early responses, keep-alive decisions, timeouts, backpressure, cancel."""

from __future__ import annotations

from h2proxy.errors import BackendClosed, BackendProtocolError, BackendTimeout, UpstreamError
from h2proxy.upstream.http11 import MAX_BUFFERED_WHILE_PAUSED, ClientState, HTTP11ClientProtocol, RequestRefused
from tests.upstream.helpers import OK, closed_cleanly, connected, get, reset, send


def test_simple_exchange_returns_connection_to_owner():
    """When a GET gets a complete keep-alive response, it is delivered and the connection goes idle."""
    protocol, transport, clock, owner = connected()
    listener = send(protocol, get(b"/x"))
    assert transport.value() == b"GET /x HTTP/1.1\r\nhost: backend.test\r\n\r\n"
    assert protocol.state is ClientState.WAITING
    protocol.dataReceived(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-a: 1\r\n\r\nhello")
    assert listener.events == [
        ("head", 200, ((b"content-length", b"5"), (b"x-a", b"1"))),
        ("data", b"hello"),
        ("end", ()),
    ]
    assert protocol.state is ClientState.QUIESCENT
    assert owner.idle == [protocol] and owner.gone == []
    assert not transport.disconnecting and clock.getDelayedCalls() == []


def test_response_fed_one_byte_at_a_time():
    """When the response arrives one byte at a time, the same events come out."""
    protocol, transport, clock, owner = connected()
    listener = send(protocol, get())
    data = (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early\r\nlink: <a>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nx-t: 1\r\n\r\n"
    )
    for i in range(len(data)):
        protocol.dataReceived(data[i : i + 1])
    assert [e[0] for e in listener.events if e[0] != "data"] == ["info", "head", "end"]
    assert listener.body == b"abcde"
    assert listener.outcome == ("end", ((b"x-t", b"1"),))
    assert owner.idle == [protocol]


def test_two_exchanges_in_sequence_on_one_connection():
    """When an exchange completes, the next one can be sent on the same connection."""
    protocol, transport, clock, owner = connected()
    first = send(protocol, get(b"/1"))
    protocol.dataReceived(OK)
    transport.clear()
    second = send(protocol, get(b"/2"))
    assert transport.value().startswith(b"GET /2 ")
    protocol.dataReceived(OK)
    assert first.body == second.body == b"ok"
    assert protocol.requestsSent == 2 and owner.idle == [protocol, protocol]


def test_connection_close_response_is_not_reused():
    """When the response says connection: close, the connection is closed after the response."""
    protocol, transport, clock, owner = connected()
    listener = send(protocol, get())
    protocol.dataReceived(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok")
    assert listener.outcome == ("end", ())
    assert transport.disconnecting and owner.gone == [protocol] and owner.idle == []


def test_http10_response_is_not_reused():
    """When the backend answers HTTP/1.0 without keep-alive, the connection is closed."""
    protocol, transport, clock, owner = connected()
    send(protocol, get())
    protocol.dataReceived(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok")
    assert transport.disconnecting and owner.idle == []


def test_extra_bytes_after_response_prevent_reuse():
    """When the backend sends bytes beyond the response, the connection is not reused."""
    protocol, transport, clock, owner = connected()
    listener = send(protocol, get())
    protocol.dataReceived(OK + b"HTTP/1.1 200 OK\r\n")
    assert listener.outcome == ("end", ())
    assert transport.disconnecting and owner.idle == []


def test_bytes_while_idle_close_the_connection():
    """When an idle connection receives a byte, it is closed and reported gone."""
    protocol, transport, clock, owner = connected()
    protocol.dataReceived(b"HTTP/1.1 408 Timeout\r\n\r\n")
    assert transport.disconnecting and owner.gone == [protocol]
    assert protocol.state is ClientState.CLOSED


def test_close_while_idle_reports_gone():
    """When the backend closes an idle connection, the owner is told once."""
    protocol, transport, clock, owner = connected()
    protocol.connectionLost(closed_cleanly())
    assert owner.gone == [protocol] and protocol.state is ClientState.CLOSED


def test_close_delimited_response_completes_on_close():
    """When the body is delimited by close, the clean close completes it."""
    protocol, transport, clock, owner = connected()
    listener = send(protocol, get())
    protocol.dataReceived(b"HTTP/1.1 200 OK\r\n\r\npart")
    protocol.dataReceived(b"s")
    assert listener.outcome is None
    protocol.connectionLost(closed_cleanly())
    assert listener.body == b"parts" and listener.outcome == ("end", ())
    assert owner.gone == [protocol] and owner.idle == []


def test_close_mid_body_is_backend_closed():
    """When the backend closes before the declared length arrived, the exchange fails with BackendClosed."""
    protocol, transport, clock, owner = connected()
    listener = send(protocol, get())
    protocol.dataReceived(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
    protocol.connectionLost(reset())
    assert isinstance(listener.error, BackendClosed)
    assert listener.events[0][0] == "head" and listener.body == b"abc"
    assert owner.gone == [protocol] and clock.getDelayedCalls() == []


def test_close_before_response_is_backend_closed_and_gone_comes_first():
    """When the backend closes before answering, the owner hears of it before the exchange fails."""
    protocol, transport, clock, owner = connected()
    order: list[str] = []
    listener = send(protocol, get())
    owner.connectionGone = lambda c: order.append("gone")
    listener.responseFailed = lambda e: order.append(type(e).__name__)
    protocol.connectionLost(closed_cleanly())
    assert order == ["gone", "BackendClosed"]
    assert protocol.responseBytes == 0


def test_protocol_error_fails_and_aborts():
    """When the backend sends garbage, the exchange fails once with BackendProtocolError and the connection is aborted."""
    protocol, transport, clock, owner = connected()
    listener = send(protocol, get())
    protocol.dataReceived(b"SMTP ready\r\n\r\n")
    protocol.dataReceived(b"more garbage")
    assert isinstance(listener.error, BackendProtocolError)
    assert transport.disconnected and owner.gone == [protocol]
    protocol.connectionLost(reset())
    assert len([e for e in listener.events if e[0] == "failed"]) == 1 and owner.gone == [protocol]


def test_protocol_error_after_head_is_delivered_after_the_head():
    """When the body framing breaks after the head, the failure follows the head and the data so far."""
    protocol, transport, clock, owner = connected()
    listener = send(protocol, get())
    protocol.dataReceived(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\r\nzz\r\n")
    assert [e[0] for e in listener.events] == ["head", "data", "failed"]
    assert isinstance(listener.error, BackendProtocolError)


def test_post_with_content_length_body():
    """When a body with a content-length is written and finished, the bytes go out as is and the response is awaited."""
    protocol, transport, clock, owner = connected()
    listener = send(protocol, get(method=b"POST", body_length=5))
    assert protocol.state is ClientState.TRANSMITTING
    protocol.writeBody(b"he")
    protocol.writeBody(b"llo")
    protocol.finishBody()
    assert transport.value().endswith(b"content-length: 5\r\n\r\nhello")
    assert protocol.state is ClientState.WAITING and transport.producer is None
    protocol.dataReceived(OK)
    assert listener.outcome == ("end", ()) and owner.idle == [protocol]


def test_chunked_request_body_with_trailers():
    """When the body length is unknown, it is sent chunked, with the trailers at the end."""
    protocol, transport, clock, owner = connected()
    send(protocol, get(method=b"POST", body_length=None))
    transport.clear()
    protocol.writeBody(b"abc")
    protocol.finishBody(((b"x-sum", b"1"),))
    assert transport.value() == b"3\r\nabc\r\n0\r\nx-sum: 1\r\n\r\n"


def test_body_over_content_length_fails_and_closes():
    """When more body bytes come than declared, the exchange fails and the connection is aborted."""
    protocol, transport, clock, owner = connected()
    listener = send(protocol, get(method=b"POST", body_length=2))
    protocol.writeBody(b"abc")
    assert isinstance(listener.error, RequestRefused)
    assert transport.disconnected and owner.gone == [protocol]
    assert not transport.value().endswith(b"abc")


def test_short_body_fails_and_closes():
    """When the body finishes short of its content-length, the exchange fails and the connection is closed."""
    protocol, transport, clock, owner = connected()
    listener = send(protocol, get(method=b"POST", body_length=4))
    protocol.writeBody(b"ab")
    protocol.finishBody()
    assert isinstance(listener.error, RequestRefused)
    assert transport.disconnected and owner.gone == [protocol]


def test_early_response_is_delivered_and_connection_not_reused():
    """When the backend answers completely (413) while the body is still being sent, the
    response is delivered, further body bytes are dropped, and the connection is closed."""
    protocol, transport, clock, owner = connected()
    listener = send(protocol, get(method=b"POST", body_length=1000))
    protocol.writeBody(b"x" * 10)
    protocol.dataReceived(b"HTTP/1.1 413 Too Large\r\ncontent-length: 0\r\n\r\n")
    assert listener.events == [("head", 413, ((b"content-length", b"0"),)), ("end", ())]
    assert transport.disconnecting and owner.idle == [] and owner.gone == [protocol]
    assert transport.producer is None
    size = len(transport.value())
    protocol.writeBody(b"y" * 10)
    protocol.finishBody()
    assert len(transport.value()) == size


def test_early_head_then_body_completes_then_reused():
    """When the head arrives while the body is still sent and the body then completes, the connection is reused."""
    protocol, transport, clock, owner = connected()
    listener = send(protocol, get(method=b"POST", body_length=4))
    protocol.writeBody(b"ab")
    protocol.dataReceived(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nec")
    protocol.writeBody(b"cd")
    protocol.finishBody()
    protocol.dataReceived(b"ho")
    assert listener.body == b"echo" and listener.outcome == ("end", ())
    assert owner.idle == [protocol]


def test_request_body_backpressure_from_the_transport():
    """When the backend transport pauses its producer, the listener is told to pause the body, and resumed likewise."""
    protocol, transport, clock, owner = connected()
    listener = send(protocol, get(method=b"POST", body_length=None))
    assert transport.streaming is True
    transport.producer.pauseProducing()
    assert listener.bodyPaused
    transport.producer.resumeProducing()
    assert not listener.bodyPaused
    transport.producer.stopProducing()
    protocol.finishBody()
    assert transport.producer is None


def test_response_backpressure_pauses_transport_and_holds_buffered_data():
    """When the exchange is paused, the backend transport is paused and bytes already read are held until resumed."""
    protocol, transport, clock, owner = connected()
    listener = send(protocol, get())
    protocol.dataReceived(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n")
    protocol.pauseResponse()
    assert transport.producerState == "paused"
    protocol.dataReceived(b"3\r\ndef\r\n0\r\n\r\n")
    assert listener.body == b"abc" and listener.outcome is None
    protocol.resumeResponse()
    assert transport.producerState == "producing"
    assert listener.body == b"abcdef" and listener.outcome == ("end", ())
    assert owner.idle == [protocol]


def test_pausing_from_inside_a_delivery_stops_at_once():
    """When the receiver pauses while handling a chunk, the rest of the read is held back."""
    protocol, transport, clock, owner = connected()
    listener = send(protocol, get())
    listener.onData = lambda data: protocol.pauseResponse()
    protocol.dataReceived(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\n1\r\nb\r\n0\r\n\r\n")
    assert listener.body == b"a"
    listener.onData = None
    protocol.resumeResponse()
    assert listener.body == b"ab" and listener.outcome == ("end", ())


def test_completion_while_paused_resumes_the_transport_for_the_next_request():
    """When a response completes with the transport paused, the pooled connection reads again."""
    protocol, transport, clock, owner = connected()
    listener = send(protocol, get())
    protocol.dataReceived(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    protocol.pauseResponse()
    protocol.dataReceived(b"ok")
    protocol.resumeResponse()
    assert listener.outcome == ("end", ()) and transport.producerState == "producing"


def test_paused_buffer_is_capped():
    """When the backend keeps sending although reading is paused, the exchange fails past the cap."""
    protocol, transport, clock, owner = connected()
    listener = send(protocol, get())
    protocol.dataReceived(b"HTTP/1.1 200 OK\r\n\r\n")
    protocol.pauseResponse()
    protocol.dataReceived(b"x" * MAX_BUFFERED_WHILE_PAUSED)
    assert listener.outcome is None
    protocol.dataReceived(b"x")
    assert isinstance(listener.error, UpstreamError) and transport.disconnected


def test_close_while_paused_delivers_the_rest_on_resume():
    """When the backend closes while we are paused, what it sent is still delivered on resume, then the end."""
    protocol, transport, clock, owner = connected()
    listener = send(protocol, get())
    protocol.dataReceived(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 4\r\n\r\n")
    protocol.pauseResponse()
    protocol.dataReceived(b"data")
    protocol.connectionLost(closed_cleanly())
    assert listener.outcome is None and owner.gone == [protocol]
    protocol.resumeResponse()
    assert listener.body == b"data" and listener.outcome == ("end", ())


def test_response_timeout_before_head():
    """When no head arrives within the response timeout after the request was sent, it fails with BackendTimeout."""
    protocol, transport, clock, owner = connected(timeout=10)
    listener = send(protocol, get())
    clock.advance(9.9)
    protocol.dataReceived(b"HTTP/1.1 200")
    clock.advance(0.2)
    assert isinstance(listener.error, BackendTimeout) and "no response head" in str(listener.error)
    assert transport.disconnected and owner.gone == [protocol]


def test_response_timer_starts_when_the_request_is_sent():
    """When the request body takes long to send, the response timer only starts once it is complete."""
    protocol, transport, clock, owner = connected(timeout=10)
    listener = send(protocol, get(method=b"POST", body_length=None))
    clock.advance(100)
    assert listener.outcome is None
    protocol.finishBody()
    clock.advance(10)
    assert isinstance(listener.error, BackendTimeout)


def test_body_silence_times_out_but_not_while_paused():
    """When the body stalls while not paused, it times out; while paused, it does not."""
    protocol, transport, clock, owner = connected(timeout=10)
    listener = send(protocol, get())
    protocol.dataReceived(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n")
    clock.advance(9)
    protocol.dataReceived(b"x")
    clock.advance(9)
    protocol.pauseResponse()
    clock.advance(1000)
    assert listener.outcome is None
    protocol.resumeResponse()
    clock.advance(10)
    assert isinstance(listener.error, BackendTimeout) and "middle" in str(listener.error)
    assert clock.getDelayedCalls() == []


def test_zero_timeout_disables_the_timer():
    """When the response timeout is 0, no timer is set."""
    protocol, transport, clock, owner = connected(timeout=0)
    send(protocol, get())
    assert clock.getDelayedCalls() == []


def test_abandon_closes_and_delivers_nothing():
    """When the exchange is abandoned mid-response, the connection is aborted and nothing more is delivered."""
    protocol, transport, clock, owner = connected()
    listener = send(protocol, get())
    protocol.dataReceived(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nab")
    protocol.abandon()
    protocol.dataReceived(b"cd")
    protocol.connectionLost(reset())
    assert [e[0] for e in listener.events] == ["head", "data"]
    assert transport.disconnected and owner.gone == [protocol] and clock.getDelayedCalls() == []


def test_abandon_during_body_upload_unregisters_the_body_producer():
    """When the exchange is abandoned while its body is being sent, the transport forgets the body producer."""
    protocol, transport, clock, owner = connected()
    send(protocol, get(method=b"POST", body_length=None))
    protocol.abandon()
    assert transport.producer is None and transport.disconnected


def test_send_on_lost_connection_fails_at_once():
    """When a request is sent on a connection that was lost meanwhile, it fails with BackendClosed."""
    protocol, transport, clock, owner = connected()
    protocol.connectionLost(closed_cleanly())
    listener = send(protocol, get())
    assert isinstance(listener.error, BackendClosed) and transport.value() == b""


def test_head_request_ignores_content_length():
    """When the request was HEAD, a response with content-length has no body and the connection is reused."""
    protocol, transport, clock, owner = connected()
    listener = send(protocol, get(method=b"HEAD"))
    protocol.dataReceived(b"HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n")
    assert listener.outcome == ("end", ()) and owner.idle == [protocol]


def test_protocol_without_owner_works():
    """When no owner is set, exchanges still complete."""
    from twisted.internet.testing import MemoryReactorClock, StringTransport

    protocol = HTTP11ClientProtocol(reactor=MemoryReactorClock(), responseTimeout=5)
    protocol.makeConnection(StringTransport())
    listener = send(protocol, get())
    protocol.dataReceived(OK)
    assert listener.outcome == ("end", ())
