"""Requests in, responses out: heads, bodies, framing and keep-alive on one connection."""

from __future__ import annotations

import pytest

from h2proxy.message import ResponseHead

from tests.frontend_http1.harness import PausingProducer, connect, respond_ok, split_responses

GET = b"GET /x HTTP/1.1\r\nHost: example.org\r\n\r\n"


def test_get_reaches_the_handler_and_the_response_goes_back():
    """When a GET arrives, the handler gets its head and end, and its response is written."""
    h = connect()
    h.feed(b"GET /x?y HTTP/1.1\r\nHost: example.org\r\nUser-Agent: t\r\n\r\n")
    handler = h.handler
    head = handler.head
    assert (head.method, head.scheme, head.authority, head.path) == (b"GET", b"http", b"example.org", b"/x?y")
    assert head.headers == ((b"user-agent", b"t"),) and head.end_stream
    assert handler.kinds() == ["head", "end"] and handler.events[1][1] == ()
    assert handler.stream.streamID == 1 and handler.stream.head is head
    handler.respond(body=b"hello")
    assert h.output() == b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"
    assert not h.transport.disconnecting


def test_stream_reports_addresses_and_security():
    """When the handler asks, the stream gives the connection's peer, host and TLS state."""
    h = connect(secure=True)
    h.feed(GET)
    stream = h.handler.stream
    assert stream.getPeer().host == "192.0.2.9"
    assert stream.getHost() == h.transport.getHost()
    assert stream.isSecure() and h.handler.head.scheme == b"https"
    assert stream.connection is h.protocol


def test_keep_alive_serves_requests_one_after_another():
    """When a second request follows a complete exchange, it gets the next stream ID."""
    h = connect()
    h.feed(GET)
    h.handler.respond()
    h.feed(GET)
    assert len(h.handlers) == 2 and h.handler.stream.streamID == 2
    h.handler.respond()
    assert [r[0] for r in split_responses(h.output())] == [b"HTTP/1.1 200 OK"] * 2


def test_content_length_body_streams_to_the_handler():
    """When a body arrives in pieces, each piece reaches the handler as it arrives."""
    h = connect()
    h.feed(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nhel")
    assert h.handler.kinds() == ["head", "data"]
    assert h.handler.head.content_length == 10 and not h.handler.head.end_stream
    h.feed(b"lo")
    h.feed(b"world")
    assert h.handler.body() == b"helloworld" and h.handler.kinds()[-1] == "end"


def test_chunked_body_streams_as_it_arrives_and_ends_with_trailers():
    """When a chunked body arrives, decoded bytes reach the handler before the chunk ends, then the trailers."""
    h = connect()
    h.feed(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n8\r\nabcd")
    assert h.handler.body() == b"abcd"
    assert h.handler.head.content_length is None
    h.feed(b"efgh\r\n3;ext=x\r\nijk\r\n0\r\nX-Checksum: 42\r\n\r\n")
    assert h.handler.body() == b"abcdefghijk"
    assert h.handler.events[-1] == ("end", ((b"x-checksum", b"42"),))


def test_request_fed_one_byte_at_a_time():
    """When a chunked request trickles in one byte per read, the handler sees the same request."""
    h = connect()
    wire = (
        b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\nX-T: v\r\n\r\n"
    )
    for i in range(len(wire)):
        h.feed(wire[i : i + 1])
    handler = h.handler
    assert handler.head.path == b"/up" and handler.head.headers == ((b"x-a", b"1"),)
    assert handler.body() == b"hello world"
    assert handler.events[-1] == ("end", ((b"x-t", b"v"),))
    handler.respond()
    assert h.output().startswith(b"HTTP/1.1 200 OK\r\n")


def test_chunked_response_when_length_is_unknown():
    """When the handler gives no length, an HTTP/1.1 response is chunked and ended by the last chunk."""
    h = connect()
    h.feed(GET)
    stream = h.handler.stream
    stream.writeHeaders(ResponseHead(status=200, headers=((b"content-type", b"text/plain"),)))
    stream.write(b"abc")
    stream.write(b"")
    stream.write(b"0123456789abcdef")
    stream.finish()
    assert h.output() == (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n"
    )
    h.feed(GET)
    assert len(h.handlers) == 2


def test_trailers_end_a_chunked_response():
    """When the handler writes trailers, they follow the last chunk and end the response."""
    h = connect()
    h.feed(GET)
    stream = h.handler.stream
    stream.writeHeaders(ResponseHead(status=200))
    stream.write(b"x")
    stream.writeTrailers(((b"grpc-status", b"0"),))
    assert h.output().endswith(b"1\r\nx\r\n0\r\ngrpc-status: 0\r\n\r\n")
    h.feed(GET)
    assert len(h.handlers) == 2


def test_trailers_on_a_length_framed_response_just_finish_it():
    """When the response has a Content-Length, trailers cannot be sent and the response simply ends."""
    h = connect()
    h.feed(GET)
    stream = h.handler.stream
    stream.writeHeaders(ResponseHead(status=200, headers=((b"content-length", b"1"),)))
    stream.write(b"x")
    stream.writeTrailers(((b"x-t", b"1"),))
    assert h.output().endswith(b"\r\n\r\nx")
    assert stream.finished


def test_end_stream_with_the_head_sends_content_length_zero():
    """When the handler ends the stream with its head, the response has Content-Length: 0."""
    h = connect()
    h.feed(GET)
    h.handler.stream.writeHeaders(ResponseHead(status=201), endStream=True)
    assert h.output() == b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n"
    h.feed(GET)
    assert len(h.handlers) == 2


def test_head_request_response_has_no_body():
    """When the request is HEAD, the response's Content-Length is kept and body writes are dropped."""
    h = connect()
    h.feed(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n")
    h.handler.respond(body=b"ignored", headers=((b"content-length", b"7"),))
    assert h.output() == b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\n"
    h.feed(GET)
    assert len(h.handlers) == 2


def test_204_and_304_have_no_body():
    """When the status is 204 or 304, no body framing is written and the connection goes on."""
    h = connect()
    for status in (204, 304):
        h.feed(GET)
        stream = h.handler.stream
        stream.writeHeaders(ResponseHead(status=status))
        stream.write(b"nope")
        stream.finish()
    out = h.output()
    assert out == b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 304 Not Modified\r\n\r\n"
    assert not h.transport.disconnecting


def test_connection_close_from_the_client_is_honoured():
    """When the request says Connection: close, the response says so and the connection closes after it."""
    h = connect()
    h.feed(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" + GET)
    h.handler.respond()
    out = h.output()
    assert b"connection: close\r\n" in out and out.count(b"HTTP/1.1") == 1
    assert h.transport.disconnecting and len(h.handlers) == 1


def test_connection_field_from_the_handler_is_not_written():
    """When the handler passes a Connection field, it is dropped: persistence is the front end's decision."""
    h = connect()
    h.feed(GET)
    h.handler.respond(headers=((b"connection", b"close"), (b"content-length", b"2")))
    assert b"connection" not in h.output()
    assert not h.transport.disconnecting


def test_http10_without_keep_alive_closes_after_the_response():
    """When an HTTP/1.0 client does not ask for keep-alive, the connection closes after the response."""
    h = connect()
    h.feed(b"GET / HTTP/1.0\r\n\r\n")
    assert h.handler.head.authority == b""
    h.handler.respond()
    assert b"connection: close\r\n" in h.output()
    assert h.transport.disconnecting


def test_http10_keep_alive_with_length_stays_open():
    """When an HTTP/1.0 client asks for keep-alive and the length is known, the connection stays open."""
    h = connect()
    h.feed(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    h.handler.respond()
    assert b"connection: keep-alive\r\n" in h.output()
    assert not h.transport.disconnecting


def test_http10_unknown_length_is_close_delimited():
    """When an HTTP/1.0 response has no length, the body is raw and the connection closes after it."""
    h = connect()
    h.feed(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    stream = h.handler.stream
    stream.writeHeaders(ResponseHead(status=200))
    stream.write(b"raw body")
    assert not h.transport.disconnecting
    stream.finish()
    out = h.output()
    assert out.endswith(b"connection: close\r\n\r\nraw body") and b"chunked" not in out
    assert h.transport.disconnecting


def test_informational_responses_go_to_http11_clients_only():
    """When the handler sends 103 Early Hints, an HTTP/1.1 client gets it and an HTTP/1.0 client does not."""
    hint = ResponseHead(status=103, headers=((b"link", b"</s.css>; rel=preload"),))
    h = connect()
    h.feed(GET)
    h.handler.stream.writeInformational(hint)
    assert h.output() == b"HTTP/1.1 103 Early Hints\r\nlink: </s.css>; rel=preload\r\n\r\n"
    h10 = connect()
    h10.feed(b"GET / HTTP/1.0\r\n\r\n")
    h10.handler.stream.writeInformational(hint)
    assert h10.output() == b""


def test_leading_empty_lines_are_ignored():
    """When a client sends CRLFs before its request line, the request is still read."""
    h = connect()
    h.feed(b"\r\n\r\n" + GET)
    assert len(h.handlers) == 1


def test_response_short_of_its_content_length_closes_the_connection():
    """When the handler finishes before writing its Content-Length, the connection closes (truncated)."""
    h = connect()
    h.feed(GET)
    stream = h.handler.stream
    stream.writeHeaders(ResponseHead(status=200, headers=((b"content-length", b"10"),)))
    stream.write(b"abc")
    stream.finish()
    assert h.transport.disconnecting
    assert h.handler.kinds()[-1] == "aborted"


def test_response_past_its_content_length_closes_the_connection():
    """When the handler writes more than its Content-Length, the excess is not sent and the connection closes."""
    h = connect()
    h.feed(GET)
    stream = h.handler.stream
    stream.writeHeaders(ResponseHead(status=200, headers=((b"content-length", b"2"),)))
    stream.write(b"abc")
    assert h.transport.disconnecting
    assert not h.output().endswith(b"abc")


def test_handler_answering_at_once_then_serving_pipelined_requests():
    """When the handler answers inside requestReceived, pipelined requests are still answered in order."""
    h = connect(onHead=respond_ok)
    h.feed(GET + b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n" + GET)
    assert len(h.handlers) == 3
    assert [r[0] for r in split_responses(h.output())] == [b"HTTP/1.1 200 OK"] * 3
    assert all(handler.kinds() == ["head"] for handler in h.handlers)


def test_misuse_of_the_response_side_is_a_loud_error():
    """When a handler writes a body before its head, sends two heads, or registers a pull producer, it gets an exception."""
    h = connect()
    h.feed(GET)
    stream = h.handler.stream
    with pytest.raises(RuntimeError):
        stream.write(b"early")
    with pytest.raises(ValueError):
        stream.registerProducer(PausingProducer(), False)
    stream.writeHeaders(ResponseHead(status=200))
    with pytest.raises(RuntimeError):
        stream.writeHeaders(ResponseHead(status=200))
