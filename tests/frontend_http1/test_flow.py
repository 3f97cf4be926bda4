"""Pipelining, backpressure both ways, 100-continue and early responses."""

from __future__ import annotations

from h2proxy.frontend.http1.protocol import MAX_DISCARD, READ_AHEAD_LIMIT
from h2proxy.message import ResponseHead

from tests.frontend_http1.harness import PausingProducer, connect, split_responses


def get(path: bytes) -> bytes:
    return b"GET " + path + b" HTTP/1.1\r\nHost: a\r\n\r\n"


def pause_on_head(handler) -> None:
    handler.stream.pauseProducing()


def test_pipelined_requests_are_answered_in_order_one_at_a_time():
    """When three requests arrive in one read, each is handed over only after the previous response."""
    h = connect()
    h.feed(get(b"/1") + get(b"/2") + get(b"/3"))
    assert [x.head.path for x in h.handlers] == [b"/1"]
    assert h.transport.producerState == "paused"
    h.handlers[0].respond(body=b"one")
    assert [x.head.path for x in h.handlers] == [b"/1", b"/2"]
    h.handlers[1].respond(body=b"two")
    h.handlers[2].respond(body=b"three")
    assert [r[2] for r in split_responses(h.output())] == [b"one", b"two", b"three"]
    assert h.transport.producerState == "producing"


def test_pipelined_request_after_a_body_waits_for_the_body():
    """When a GET is pipelined behind a POST body, it is parsed only after that body is complete and answered."""
    h = connect()
    h.feed(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 7\r\n\r\nGET /x " + get(b"/next"))
    assert len(h.handlers) == 1
    assert h.handlers[0].body() == b"GET /x " and h.handlers[0].kinds()[-1] == "end"
    h.handlers[0].respond()
    assert h.handlers[1].head.path == b"/next"


def test_reading_continues_while_waiting_for_a_response_until_bytes_arrive():
    """When a request is in flight, the socket stays readable (to notice a close) until a next request's bytes arrive."""
    h = connect()
    h.feed(get(b"/1"))
    assert h.transport.producerState == "producing"
    h.feed(b"GET /2 HT")
    assert h.transport.producerState == "paused" and len(h.handlers) == 1
    h.handlers[0].respond()
    assert h.transport.producerState == "producing"
    h.feed(b"TP/1.1\r\nHost: a\r\n\r\n")
    assert h.handlers[1].head.path == b"/2"


def test_pipelined_burst_is_capped():
    """When more requests are pipelined than maxPipelined, the last one answered closes the connection."""
    h = connect(maxPipelined=2)
    h.feed(b"".join(get(b"/%d" % i) for i in range(5)))
    for _ in range(3):
        h.handler.respond()
    responses = split_responses(h.output())
    assert len(responses) == 3 and len(h.handlers) == 3
    assert responses[-1][1][b"connection"] == b"close"
    assert b"connection" not in responses[0][1]
    assert h.transport.disconnecting


def test_pause_stops_reading_the_socket_and_resume_delivers_buffered_body():
    """When the handler pauses, the transport is paused and no body is delivered until it resumes."""
    h = connect(onHead=pause_on_head)
    h.feed(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\nabc")
    assert h.transport.producerState == "paused"
    assert h.handler.kinds() == ["head"]
    h.feed(b"def")
    assert h.handler.kinds() == ["head"]
    h.handler.stream.resumeProducing()
    assert h.handler.body() == b"abcdef" and h.handler.kinds()[-1] == "end"
    assert h.transport.producerState == "producing"


def test_pause_from_inside_data_delivery_holds_the_rest():
    """When the handler pauses while taking a chunk, later chunks wait in the buffer."""
    h = connect(onData=lambda handler, data: handler.stream.pauseProducing())
    h.feed(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n1\r\nb\r\n0\r\n\r\n")
    assert h.handler.body() == b"a" and h.transport.producerState == "paused"
    h.handler.stream.resumeProducing()
    assert h.handler.body() == b"ab"
    h.handler.stream.resumeProducing()
    assert h.handler.kinds()[-1] == "end"


def test_client_ignoring_the_pause_is_cut_off():
    """When a client's bytes keep coming past the read-ahead cap while paused, the connection is aborted."""
    h = connect(onHead=pause_on_head, maxHeaderBytes=1024)
    h.feed(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 999999999\r\n\r\n")
    h.feed(b"x" * (1024 + READ_AHEAD_LIMIT + 1))
    assert h.transport.disconnected
    assert h.handler.kinds() == ["head"]


def test_full_client_socket_pauses_the_response_producer():
    """When the transport pauses the protocol, the stream's response producer is paused and later resumed."""
    h = connect()
    h.feed(get(b"/"))
    stream = h.handler.stream
    producer = PausingProducer()
    stream.writeHeaders(ResponseHead(status=200))
    stream.registerProducer(producer, True)
    assert h.transport.producer is h.protocol and h.transport.streaming
    h.protocol.pauseProducing()
    assert producer.state == "paused"
    h.protocol.resumeProducing()
    assert producer.state == "producing"


def test_producer_registered_while_the_socket_is_full_starts_paused():
    """When a producer registers while the client's socket is full, it is paused at once."""
    h = connect()
    h.feed(get(b"/"))
    h.protocol.pauseProducing()
    producer = PausingProducer()
    h.handler.stream.registerProducer(producer, True)
    assert producer.state == "paused"


def test_continue_goes_to_the_handler_and_its_100_is_relayed_once():
    """When Expect: 100-continue comes, the handler's head carries it, no 100 is written until the handler relays one, and a second 100 is dropped."""
    h = connect()
    h.feed(b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
    assert h.output() == b""
    assert dict(h.handler.head.headers)[b"expect"] == b"100-continue"
    h.handler.stream.writeInformational(ResponseHead(100))
    assert h.output() == b"HTTP/1.1 100 Continue\r\n\r\n"
    h.handler.stream.writeInformational(ResponseHead(100))
    assert h.output() == b""
    h.feed(b"ok")
    assert h.handler.body() == b"ok"


def test_a_100_nobody_waits_for_is_dropped():
    """When the handler relays a 100 for a request without Expect, the client gets nothing, while a 103 still goes out."""
    h = connect()
    h.feed(b"PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n")
    h.handler.stream.writeInformational(ResponseHead(100))
    h.handler.stream.writeInformational(ResponseHead(103))
    assert h.output() == b"HTTP/1.1 103 Early Hints\r\n\r\n"


def test_local_continue_is_sent_when_the_handler_reads_the_body():
    """When the factory answers 100-continue locally and the handler reads at once, 100 Continue is written right away and Expect is not handed on."""
    h = connect()
    h.protocol.factory.localContinue = True
    h.feed(b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
    assert h.output() == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert b"expect" not in dict(h.handler.head.headers)
    h.handler.stream.writeInformational(ResponseHead(100))
    assert h.output() == b""
    h.feed(b"ok")
    assert h.handler.body() == b"ok"


def test_local_continue_waits_for_the_handler_to_resume():
    """When the factory answers 100-continue locally and the handler pauses the body at first, 100 Continue goes out only when it resumes."""
    h = connect(onHead=pause_on_head)
    h.protocol.factory.localContinue = True
    h.feed(b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
    assert h.output() == b""
    h.handler.stream.resumeProducing()
    assert h.output() == b"HTTP/1.1 100 Continue\r\n\r\n"
    h.handler.stream.resumeProducing()
    assert h.output() == b""


def test_final_response_before_continue_closes_the_connection():
    """When the handler answers without reading the body, no 100 is sent and the connection closes after the answer."""
    h = connect(onHead=lambda handler: handler.respond(status=413, body=b"too big"))
    h.feed(b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 99999\r\n\r\n")
    out = h.output()
    assert out.startswith(b"HTTP/1.1 413 ") and b"100 Continue" not in out
    assert b"connection: close\r\n" in out and h.transport.disconnecting


def test_no_continue_for_http10():
    """When an HTTP/1.0 client sends Expect, it is not handed on and it gets no 1xx, relayed or local (RFC 9110 15.2)."""
    for local in (False, True):
        h = connect()
        h.protocol.factory.localContinue = local
        h.feed(b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
        assert b"expect" not in dict(h.handler.head.headers)
        h.handler.stream.writeInformational(ResponseHead(100))
        assert h.output() == b""


def test_early_response_discards_the_rest_of_the_body_and_keeps_the_connection():
    """When the response ends before the request body, the rest of the body is read and dropped, then the next request is served."""
    h = connect(onHead=lambda handler: handler.respond(status=404, body=b"no"))
    h.feed(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n01234")
    assert h.handlers[0].kinds() == ["head"]
    assert h.transport.producerState == "producing"
    h.feed(b"56789" + get(b"/next"))
    assert h.handlers[0].kinds() == ["head"]
    assert [x.head.path for x in h.handlers] == [b"/", b"/next"]
    assert not h.transport.disconnecting


def test_early_response_with_a_huge_body_left_closes():
    """When more than MAX_DISCARD bytes of body would have to be thrown away, the connection closes instead."""
    h = connect(onHead=lambda handler: handler.respond(status=413, body=b"no"))
    h.feed(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (64 * 1024, b"x" * 64 * 1024)
    for _ in range(MAX_DISCARD // (64 * 1024) + 1):
        assert not h.transport.disconnecting
        h.feed(chunk)
    assert h.transport.disconnecting


def test_stop_producing_discards_the_body_but_keeps_the_response():
    """When the handler stops the body, later bytes are dropped and its response still goes out."""
    h = connect(onHead=lambda handler: handler.stream.stopProducing())
    h.feed(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nab")
    h.feed(b"cd")
    assert h.handler.kinds() == ["head"]
    h.handler.respond()
    assert h.output().startswith(b"HTTP/1.1 200 OK")
    h.feed(get(b"/2"))
    assert len(h.handlers) == 2
