"""What goes to the backend: the request head, its one framing field, and the body
writers; anything that could be read two ways is refused."""

from __future__ import annotations

import pytest
from twisted.internet.testing import StringTransport

from h2proxy.upstream.http11 import (
    ChunkedBody,
    LengthBody,
    NoBody,
    RequestRefused,
    serialize_request_head,
)
from tests.upstream.helpers import get


def test_get_has_request_line_fields_and_nothing_else():
    """When a GET without body is serialised, only the request line and the given fields go out."""
    head = serialize_request_head(get(b"/a?b=1", headers=((b"host", b"x"), (b"accept", b"*/*"))))
    assert head == b"GET /a?b=1 HTTP/1.1\r\nhost: x\r\naccept: */*\r\n\r\n"


@pytest.mark.parametrize(
    "method, length, framing",
    [
        (b"POST", 5, b"content-length: 5"),
        (b"POST", 0, b"content-length: 0"),
        (b"PUT", 0, b"content-length: 0"),
        (b"PATCH", 0, b"content-length: 0"),
        (b"POST", None, b"transfer-encoding: chunked"),
        (b"GET", 3, b"content-length: 3"),
    ],
)
def test_framing_field(method, length, framing):
    """When the body length is an int or None, exactly one matching framing field is added."""
    head = serialize_request_head(get(method=method, body_length=length))
    assert head.endswith(b"\r\n" + framing + b"\r\n\r\n")
    assert head.count(b"content-length") + head.count(b"transfer-encoding") == 1


def test_get_and_delete_without_body_have_no_framing_field():
    """When a bodiless method has body_length 0, no content-length is sent."""
    for method in (b"GET", b"DELETE", b"HEAD"):
        head = serialize_request_head(get(method=method))
        assert b"content-length" not in head and b"transfer-encoding" not in head


@pytest.mark.parametrize(
    "request_kw",
    [
        dict(headers=((b"x-a", b"1\r\nx-b: 2"),)),
        dict(headers=((b"x-a", b"1\nx"),)),
        dict(headers=((b"x-a", b"1\rx"),)),
        dict(headers=((b"x-a", b"1\x00"),)),
        dict(headers=((b"x a", b"1"),)),
        dict(headers=((b"x-a:", b"1"),)),
        dict(headers=((b"", b"1"),)),
        dict(headers=((b"content-length", b"1"),)),
        dict(headers=((b"transfer-encoding", b"chunked"),)),
        dict(headers=((b"connection", b"close"),)),
        dict(target=b"/a b"),
        dict(target=b"/a\r\nx"),
        dict(target=b""),
        dict(method=b"G ET"),
        dict(body_length=-1),
    ],
)
def test_injection_is_refused(request_kw):
    """When a method, target or field could split or reframe the request, it is refused."""
    with pytest.raises(RequestRefused):
        serialize_request_head(get(**request_kw))


def test_length_body_writes_exactly_the_declared_bytes():
    """When writes add up to the content-length, they pass through and finish is fine."""
    transport = StringTransport()
    body = LengthBody(5)
    body.write(transport, b"ab")
    body.write(transport, b"")
    body.write(transport, b"cde")
    body.finish(transport, ())
    assert transport.value() == b"abcde"


def test_length_body_refuses_a_byte_too_many():
    """When a write goes past the content-length, it is refused and nothing of it is written."""
    transport = StringTransport()
    body = LengthBody(3)
    body.write(transport, b"ab")
    with pytest.raises(RequestRefused, match="longer"):
        body.write(transport, b"cd")
    assert transport.value() == b"ab"


def test_length_body_refuses_to_finish_short():
    """When the body ends before the content-length is reached, finishing is refused."""
    body = LengthBody(3)
    body.write(StringTransport(), b"ab")
    with pytest.raises(RequestRefused, match="short"):
        body.finish(StringTransport(), ())


def test_chunked_body_frames_chunks_and_trailers():
    """When a chunked body is written, each write is a chunk, empty writes are skipped,
    and finish writes the last chunk and the trailers."""
    transport = StringTransport()
    body = ChunkedBody()
    body.write(transport, b"hello")
    body.write(transport, b"")
    body.write(transport, b"x" * 26)
    body.finish(transport, ((b"x-checksum", b"abc"),))
    assert transport.value() == (
        b"5\r\nhello\r\n1a\r\n" + b"x" * 26 + b"\r\n0\r\nx-checksum: abc\r\n\r\n"
    )


def test_chunked_body_refuses_bad_trailers():
    """When a trailer could inject a line, finishing the chunked body is refused."""
    with pytest.raises(RequestRefused):
        ChunkedBody().finish(StringTransport(), ((b"x", b"1\r\nevil: 1"),))


def test_no_body_refuses_bytes():
    """When body bytes are written for a request declared without a body, they are refused."""
    NoBody().write(StringTransport(), b"")
    with pytest.raises(RequestRefused):
        NoBody().write(StringTransport(), b"x")
