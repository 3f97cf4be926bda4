"""Expect: 100-continue towards the backend: the body waits for the backend's 100 (or a
short timer), a final answer before it means no body, and a 100 nobody asked for stays
swallowed."""

from __future__ import annotations

from h2proxy.message import UpstreamRequest
from h2proxy.upstream.http11 import (
    CONTINUE_TIMEOUT,
    MAX_HELD_BODY,
    ClientState,
    FinalHead,
    Informational,
    ResponseParser,
)
from tests.upstream.helpers import OK, connected, send

EXPECT = ((b"host", b"backend.test"), (b"expect", b"100-continue"))
HEAD = b"PUT /up HTTP/1.1\r\nhost: backend.test\r\nexpect: 100-continue\r\ncontent-length: 5\r\n\r\n"


def put(length: int | None = 5, headers=EXPECT) -> UpstreamRequest:
    return UpstreamRequest(method=b"PUT", target=b"/up", headers=headers, body_length=length)


def events(parser: ResponseParser) -> list:
    out = []
    while (event := parser.next_event()) is not None:
        out.append(event)
    return out


def test_parser_reports_the_first_100_only_when_expected():
    """When the request expected 100-continue, the parser reports the first 100 and swallows any later one."""
    parser = ResponseParser(b"PUT", expectContinue=True)
    parser.feed(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
    found = events(parser)
    assert isinstance(found[0], Informational) and found[0].head.status == 100
    assert isinstance(found[1], FinalHead)


def test_body_waits_for_the_backends_100():
    """When a request expects 100-continue, its body is held (producer paused) until the backend's 100, which is reported, then the body goes out and the connection is reused."""
    protocol, transport, clock, owner = connected()
    listener = send(protocol, put())
    assert transport.value() == HEAD and listener.bodyPaused
    protocol.writeBody(b"hel")
    assert transport.value() == HEAD
    protocol.dataReceived(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert listener.events == [("info", 100, ())]
    assert transport.value() == HEAD + b"hel" and not listener.bodyPaused
    assert transport.producer is not None and clock.getDelayedCalls() == []
    protocol.writeBody(b"lo")
    protocol.finishBody()
    assert transport.value() == HEAD + b"hello" and protocol.state is ClientState.WAITING
    protocol.dataReceived(OK)
    assert listener.outcome == ("end", ()) and owner.idle == [protocol]


def test_whole_body_held_then_sent_with_its_end_on_100():
    """When the whole body and its end arrive while waiting, the 100 sends both and the request is complete."""
    protocol, transport, clock, owner = connected()
    listener = send(protocol, put(length=None))
    protocol.writeBody(b"abc")
    protocol.finishBody(((b"x-sum", b"1"),))
    assert b"abc" not in transport.value()
    protocol.dataReceived(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert transport.value().endswith(b"3\r\nabc\r\n0\r\nx-sum: 1\r\n\r\n")
    assert protocol.state is ClientState.WAITING and listener.bodyPaused is False


def test_final_answer_before_100_means_no_body_and_no_reuse():
    """When the backend answers 417 without a 100, the body is never sent, and the connection is closed after the response."""
    protocol, transport, clock, owner = connected()
    listener = send(protocol, put())
    protocol.writeBody(b"hel")
    protocol.dataReceived(b"HTTP/1.1 417 Expectation Failed\r\ncontent-length: 2\r\n\r\nno")
    protocol.writeBody(b"lo")
    protocol.finishBody()
    assert transport.value() == HEAD
    assert listener.events == [("head", 417, ((b"content-length", b"2"),)), ("data", b"no"), ("end", ())]
    assert transport.disconnecting and owner.idle == [] and owner.gone == [protocol]
    assert clock.getDelayedCalls() == []


def test_silent_backend_gets_the_body_after_the_timer():
    """When the backend sends no 100 within CONTINUE_TIMEOUT, the held body is sent anyway and a late 100 is still reported."""
    protocol, transport, clock, owner = connected()
    listener = send(protocol, put())
    protocol.writeBody(b"hello")
    clock.advance(CONTINUE_TIMEOUT - 0.01)
    assert transport.value() == HEAD
    clock.advance(0.01)
    assert transport.value() == HEAD + b"hello" and not listener.bodyPaused
    protocol.finishBody()
    protocol.dataReceived(b"HTTP/1.1 100 Continue\r\n\r\n" + OK)
    assert [e[0] for e in listener.events] == ["info", "head", "data", "end"]
    assert owner.idle == [protocol]


def test_100_without_expect_stays_swallowed():
    """When a request without expect gets a 100, the listener never hears of it and the body was never held."""
    protocol, transport, clock, owner = connected()
    listener = send(protocol, put(headers=((b"host", b"backend.test"),)))
    assert not listener.bodyPaused
    protocol.writeBody(b"hello")
    protocol.finishBody()
    protocol.dataReceived(b"HTTP/1.1 100 Continue\r\n\r\n" + OK)
    assert [e[0] for e in listener.events] == ["head", "data", "end"]


def test_bodyless_request_with_expect_is_not_held():
    """When a request with expect has no body, nothing waits: it is sent whole and the response awaited."""
    protocol, transport, clock, owner = connected()
    send(protocol, put(length=0))
    assert protocol.state is ClientState.WAITING


def test_too_much_held_body_fails_the_exchange():
    """When a producer writes over MAX_HELD_BODY while waiting for 100, the exchange fails and the connection is aborted."""
    protocol, transport, clock, owner = connected()
    listener = send(protocol, put(length=MAX_HELD_BODY + 1))
    protocol.writeBody(b"x" * MAX_HELD_BODY)
    protocol.writeBody(b"x")
    assert "100 Continue" in str(listener.error)
    assert transport.value() == HEAD.replace(b"5", str(MAX_HELD_BODY + 1).encode())
    assert owner.gone == [protocol] and clock.getDelayedCalls() == []
