"""The sans-I/O HTTP/1.1 response writer: framing choice and field safety."""

from __future__ import annotations

import pytest

from h2proxy.frontend.http1.write import (
    Framing,
    chunk_header,
    error_response,
    informational,
    last_chunk,
    start_response,
)
from h2proxy.message import ResponseHead


def start(status=200, headers=(), method=b"GET", http10=False, close=False, endStream=False):
    return start_response(
        ResponseHead(status=status, headers=headers), method=method, http10=http10, close=close, endStream=endStream
    )


def test_content_length_from_the_handler_frames_the_body():
    """When the handler gives a Content-Length, the body is framed by it."""
    s = start(headers=((b"content-length", b"5"), (b"x-a", b"1")))
    assert s.framing is Framing.LENGTH and s.length == 5 and not s.close
    assert s.data == b"HTTP/1.1 200 OK\r\nx-a: 1\r\ncontent-length: 5\r\n\r\n"


def test_unknown_length_is_chunked_for_http11():
    """When no length is known and the client speaks HTTP/1.1, the body is chunked."""
    s = start()
    assert s.framing is Framing.CHUNKED
    assert b"transfer-encoding: chunked\r\n" in s.data


def test_unknown_length_closes_for_http10():
    """When no length is known and the client speaks HTTP/1.0, the body ends at the close."""
    s = start(http10=True)
    assert s.framing is Framing.CLOSE and s.close
    assert b"connection: close\r\n" in s.data and b"transfer-encoding" not in s.data


def test_http10_keep_alive_is_confirmed():
    """When an HTTP/1.0 connection stays open, the response says Connection: keep-alive."""
    assert b"connection: keep-alive\r\n" in start(http10=True, headers=((b"content-length", b"0"),)).data


def test_no_body_from_the_handler_means_content_length_zero():
    """When the handler ends the stream with the head, Content-Length: 0 keeps the connection usable."""
    s = start(endStream=True)
    assert s.framing is Framing.LENGTH and s.length == 0
    assert b"content-length: 0\r\n" in s.data


@pytest.mark.parametrize("status, method", [(204, b"GET"), (304, b"GET"), (200, b"HEAD")])
def test_bodyless_responses_have_no_framing(status, method):
    """When the response can carry no body (HEAD, 204, 304), nothing frames one."""
    s = start(status=status, method=method)
    assert s.framing is Framing.NONE
    assert b"transfer-encoding" not in s.data


def test_head_and_304_keep_the_representation_length():
    """When HEAD or 304 carries a Content-Length, it is passed on; 204 drops it."""
    cl = ((b"content-length", b"42"),)
    assert b"content-length: 42\r\n" in start(headers=cl, method=b"HEAD").data
    assert b"content-length: 42\r\n" in start(status=304, headers=cl).data
    assert b"content-length" not in start(status=204, headers=cl).data


def test_hop_by_hop_fields_from_the_handler_are_not_written():
    """When the handler passes connection-specific fields, they do not reach the client."""
    s = start(
        headers=(
            (b"connection", b"x"),
            (b"keep-alive", b"1"),
            (b"transfer-encoding", b"gzip"),
            (b"upgrade", b"h2c"),
            (b"trailer", b"x"),
            (b"content-length", b"0"),
        )
    )
    assert s.data == b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"


def test_fields_that_could_split_the_response_are_dropped_and_reported():
    """When a field value carries CR/LF or a name is not a token, it is dropped and named."""
    s = start(headers=((b"x-bad", b"a\r\nSet-Cookie: evil"), (b"bad name", b"v"), (b"x-ok", b"1")))
    assert s.dropped == (b"x-bad", b"bad name")
    assert b"evil" not in s.data and b"x-ok: 1\r\n" in s.data


def test_conflicting_content_lengths_fall_back_to_chunked():
    """When the handler's Content-Length values disagree, none is trusted."""
    s = start(headers=((b"content-length", b"1"), (b"content-length", b"2")))
    assert s.framing is Framing.CHUNKED and b"content-length" not in s.data


def test_close_is_announced():
    """When the connection ends after the response, the head says Connection: close."""
    assert b"connection: close\r\n" in start(close=True, headers=((b"content-length", b"0"),)).data


def test_unknown_status_has_an_empty_reason():
    """When the status has no registered phrase, the reason phrase is empty."""
    assert start(status=599, endStream=True).data.startswith(b"HTTP/1.1 599 \r\n")


def test_informational_status_is_refused_as_a_final_head():
    """When a 1xx is passed as the final head, it is a programming error."""
    with pytest.raises(ValueError):
        start(status=103)


def test_informational_response():
    """When a 103 is written, it is a status line, its fields and a blank line."""
    data = informational(ResponseHead(status=103, headers=((b"link", b"</a.css>; rel=preload"),)))
    assert data == b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n"


def test_chunks_and_trailers():
    """When a chunked body ends with trailers, framing fields among them are dropped."""
    assert chunk_header(255) == b"ff\r\n"
    data, dropped = last_chunk(((b"x-sum", b"1"), (b"content-length", b"3"), (b"x-bad", b"\n")))
    assert data == b"0\r\nx-sum: 1\r\n\r\n"
    assert dropped == (b"x-bad",)


def test_error_response_is_short_text_and_closes():
    """When the front end refuses a request, the answer is a short text body with Connection: close."""
    data = error_response(431, "request head too large")
    assert data.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert b"connection: close\r\n" in data
    assert data.endswith(b"\r\n\r\n431 request head too large\n")


def test_error_response_carries_date():
    """The front end is the origin of its own error responses, so they carry Date (RFC 9110 6.6.1)."""
    assert b"date: Sun, 06 Nov 1994 08:49:37 GMT\r\n" in error_response(400, "bad request", now=784111777)
