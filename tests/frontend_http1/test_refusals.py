"""Requests the front end refuses itself: the handler only records the refusal (its
access log line), the client gets a short error and a close."""

from __future__ import annotations

import pytest

from h2proxy.message import ResponseHead
from tests.frontend_http1.harness import Harness, connect


def only_refused(h: Harness, status: int) -> bool:
    """The handlers saw exactly one request, as a refusal with C{status}, and nothing else."""
    return [[event[0::2] for event in handler.events] for handler in h.handlers] == [[("refused", status)]]

H = b"Host: a\r\n"

VECTORS = [
    ("CL and TE", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("TE not chunked", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: identity\r\n\r\n", 400),
    ("TE chunked not last", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, gzip\r\n\r\n", 400),
    ("TE other coding", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n", 501),
    ("TE in HTTP/1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    ("CL differing", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400),
    ("CL invalid", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1e3\r\n\r\n", 400),
    ("obs-fold", b"GET / HTTP/1.1\r\n" + H + b"X-A: 1\r\n\tfolded\r\n\r\n", 400),
    ("space before colon", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding : chunked\r\n\r\n", 400),
    ("bad name", b"GET / HTTP/1.1\r\n" + H + b"X@Y: 1\r\n\r\n", 400),
    ("CR in value", b"GET / HTTP/1.1\r\n" + H + b"X: a\rb\r\n\r\n", 400),
    ("NUL in value", b"GET / HTTP/1.1\r\n" + H + b"X: a\x00b\r\n\r\n", 400),
    ("bare LF", b"GET / HTTP/1.1\n" + H + b"\n", 400),
    ("bare LF in a field", b"GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n", 400),
    ("bad method", b"G\x01T / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("bad version", b"GET / HTTP/1.x\r\n" + H + b"\r\n", 400),
    ("HTTP/2 version", b"GET / HTTP/2.0\r\n" + H + b"\r\n", 505),
    ("space in target", b"GET /a b HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("control in target", b"GET /a\x01 HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("no Host", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("two Hosts", b"GET / HTTP/1.1\r\n" + H + b"Host: b\r\n\r\n", 400),
    ("expectation", b"PUT / HTTP/1.1\r\n" + H + b"Expect: x\r\nContent-Length: 1\r\n\r\n", 417),
    ("CONNECT", b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 501),
]


@pytest.mark.parametrize("name, wire, status", VECTORS, ids=[v[0] for v in VECTORS])
def test_smuggling_vectors_never_reach_the_handler(name, wire, status):
    """When a request could be read two ways or is malformed, it is refused with a short error and a close, and a handler only records the refusal."""
    h = connect()
    h.feed(wire + b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n")
    assert only_refused(h, status)
    out = h.output()
    assert out.startswith(b"HTTP/1.1 %d " % status)
    assert b"connection: close\r\n" in out and b"content-type: text/plain" in out
    assert h.transport.disconnecting


@pytest.mark.parametrize("name, wire, status", VECTORS, ids=[v[0] for v in VECTORS])
def test_smuggling_vectors_fed_one_byte_at_a_time(name, wire, status):
    """When a refused request trickles in byte by byte, it is refused the same way."""
    h = connect()
    for i in range(len(wire)):
        h.feed(wire[i : i + 1])
    assert only_refused(h, status)
    assert h.output().startswith(b"HTTP/1.1 %d " % status)


def test_head_over_the_limit_gets_431():
    """When a head grows past maxHeaderBytes without ending, the client gets 431 and a handler records only the refusal, with the request line."""
    h = connect(maxHeaderBytes=256)
    h.feed(b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 300)
    assert only_refused(h, 431)
    assert (h.handlers[0].events[0][1].method, h.handlers[0].events[0][1].path) == (b"GET", b"/")
    assert h.output().startswith(b"HTTP/1.1 431 ")
    assert h.transport.disconnecting


def test_complete_head_over_the_limit_gets_431():
    """When a complete head arrives in one read but exceeds maxHeaderBytes, it is refused with 431."""
    h = connect(maxHeaderBytes=64)
    h.feed(b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 60 + b"\r\n\r\n")
    assert only_refused(h, 431) and h.output().startswith(b"HTTP/1.1 431 ")


def test_too_many_empty_lines_are_refused():
    """When a client sends endless empty lines instead of a request, it is refused."""
    h = connect()
    h.feed(b"\r\n" * 20)
    assert h.output().startswith(b"HTTP/1.1 400 ")


def test_bytes_after_a_refusal_are_ignored():
    """When more bytes arrive after a refusal, nothing else is parsed or written."""
    h = connect()
    h.feed(b"GET / HTTP/1.1\r\n\r\n")
    h.output()
    h.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert h.output() == b"" and only_refused(h, 400)


def test_bad_chunk_framing_before_the_response_aborts_and_answers_400():
    """When chunk framing breaks mid-body before any response, the handler is aborted and the client gets 400."""
    h = connect()
    h.feed(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n")
    assert h.handler.kinds() == ["head", "data", "aborted"]
    assert h.output().startswith(b"HTTP/1.1 400 ")
    assert h.transport.disconnecting
    h.handler.stream.writeHeaders(ResponseHead(status=200))
    h.handler.stream.write(b"late")
    assert h.output() == b""


def test_bad_chunk_framing_after_the_response_started_just_closes():
    """When chunk framing breaks after the response head went out, the handler is aborted and the connection closes without a second response."""
    h = connect()
    h.feed(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n")
    h.handler.stream.writeHeaders(ResponseHead(status=200))
    h.output()
    h.feed(b"1\r\nbXX")
    assert h.handler.kinds()[-1] == "aborted"
    assert h.output() == b"" and h.transport.disconnecting


def test_a_refused_request_line_is_recorded_as_far_as_it_can_be_read():
    """When the request line has the shape METHOD TARGET VERSION, the refusal names its
    method and target; when it has not (a space in the target), they are empty."""
    h = connect()
    h.feed(b"GET /x HTTP/2.0\r\nHost: a\r\n\r\n")
    head = h.handlers[0].events[0][1]
    assert (head.method, head.path) == (b"GET", b"/x")
    h = connect()
    h.feed(b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n")
    head = h.handlers[0].events[0][1]
    assert (head.method, head.path) == (b"", b"")
