"""ResponseParser: status line, fields, 1xx, framing (length, chunked, close), trailers,
limits, and errors, sans I/O."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from h2proxy.errors import BackendClosed, BackendProtocolError
from h2proxy.upstream.http11 import (
    MAX_CHUNK_LINE,
    MAX_HEAD_SIZE,
    Body,
    Complete,
    FinalHead,
    Informational,
    ResponseParser,
)


def parse(data: bytes, method: bytes = b"GET", eof: bool | None = None, step: int | None = None) -> list:
    """Feed C{data} (in C{step}-sized pieces), collect events; C{eof} closes after."""
    parser = ResponseParser(method)
    events: list = []
    pieces = [data] if step is None else [data[i : i + step] for i in range(0, len(data), step)]
    for piece in pieces:
        parser.feed(piece)
        events.extend(drain(parser))
    if eof is not None:
        parser.close(clean=eof)
        events.extend(drain(parser))
    return events


def drain(parser: ResponseParser) -> list:
    events = []
    while (event := parser.next_event()) is not None:
        events.append(event)
    return events


def summary(events: list) -> tuple:
    """(status, headers, body, trailers or None if incomplete)."""
    head = next(e.head for e in events if isinstance(e, FinalHead))
    body = b"".join(e.data for e in events if isinstance(e, Body))
    ends = [e for e in events if isinstance(e, Complete)]
    return head.status, head.headers, body, (ends[0].trailers if ends else None)


def test_content_length_body():
    """When the response has a content-length, exactly that many bytes form the body."""
    parser = ResponseParser(b"GET")
    parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhelloEXTRA")
    status, headers, body, trailers = summary(drain(parser))
    assert (status, body, trailers) == (200, b"hello", ())
    assert headers == ((b"content-length", b"5"), (b"x-a", b"b"))
    assert parser.keepAlive and parser.buffered == 5


def test_body_read_is_delivered_without_copying():
    """When a read holds only body bytes, the same bytes object is delivered."""
    parser = ResponseParser(b"GET")
    parser.feed(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n")
    drain(parser)
    chunk = b"0123456789"
    parser.feed(chunk)
    events = drain(parser)
    assert events[0].data is chunk


def test_chunked_body_with_extensions_and_trailers():
    """When the body is chunked, it is de-chunked, extensions are ignored and trailers returned."""
    data = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n"
        b"6 ; x\r\n world\r\n"
        b"0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n"
    )
    status, headers, body, trailers = summary(parse(data))
    assert body == b"hello world"
    assert trailers == ((b"x-checksum", b"abc"), (b"x-other", b"1"))
    assert headers == ()


def test_chunked_without_trailers():
    """When a chunked body ends with an empty trailer section, the trailers are empty."""
    assert summary(parse(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"))[2:] == (
        b"abc",
        (),
    )


def test_close_delimited_body_ends_on_clean_close():
    """When there is no framing, the body runs until a clean close, and the connection is not reusable."""
    parser = ResponseParser(b"GET")
    parser.feed(b"HTTP/1.1 200 OK\r\n\r\nsome")
    events = drain(parser)
    parser.feed(b" body")
    events += drain(parser)
    assert not any(isinstance(e, Complete) for e in events)
    parser.close(clean=True)
    events += drain(parser)
    assert summary(events)[2:] == (b"some body", ())
    assert not parser.keepAlive


def test_close_delimited_body_reset_is_a_failure():
    """When a close-delimited body ends with a reset, the response is incomplete."""
    with pytest.raises(BackendClosed):
        parse(b"HTTP/1.1 200 OK\r\n\r\nsome", eof=False)


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nab",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\nx-t: 1\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-le",
    ],
)
def test_close_before_the_end_is_backend_closed(data):
    """When the backend closes before the framing says the response ends, it is BackendClosed."""
    with pytest.raises(BackendClosed, match="middle"):
        parse(data, eof=True)


def test_close_before_any_byte_says_so():
    """When the backend closes before sending anything, the error says no response came."""
    with pytest.raises(BackendClosed, match="before sending a response"):
        parse(b"", eof=True)


@pytest.mark.parametrize(
    "method, status",
    [(b"HEAD", 200), (b"GET", 204), (b"GET", 304)],
)
def test_responses_without_body(method, status):
    """When the method is HEAD or the status 204/304, there is no body whatever the fields say."""
    data = b"HTTP/1.1 %d X\r\ncontent-length: 100\r\n\r\n" % status
    parser = ResponseParser(method)
    parser.feed(data)
    assert summary(drain(parser))[2:] == (b"", ())
    assert parser.keepAlive


def test_100_is_swallowed_and_103_reported():
    """When 1xx responses precede the final one, 100 is dropped and 103 is reported with its fields."""
    data = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
    )
    events = parse(data)
    assert isinstance(events[0], Informational)
    assert events[0].head.status == 103
    assert events[0].head.headers == ((b"link", b"</s.css>; rel=preload"),)
    assert isinstance(events[1], FinalHead) and isinstance(events[2], Complete)


def test_101_is_an_error():
    """When the backend switches protocols, it is a protocol error (no upgrades yet)."""
    with pytest.raises(BackendProtocolError, match="101"):
        parse(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n")


def test_too_many_1xx_is_an_error():
    """When the backend sends 1xx responses without end, it is stopped."""
    with pytest.raises(BackendProtocolError, match="1xx"):
        parse(b"HTTP/1.1 100 Continue\r\n\r\n" * 100)


def test_hop_by_hop_fields_are_removed():
    """When the head has connection-specific fields, they and the fields named in connection are removed."""
    data = (
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Secret\r\nKeep-Alive: timeout=5\r\n"
        b"X-Secret: 1\r\nProxy-Connection: x\r\nTrailer: x-t\r\nUpgrade: h2c\r\nTE: trailers\r\n"
        b"X-Kept: yes\r\ncontent-length: 0\r\n\r\n"
    )
    assert summary(parse(data))[1] == ((b"x-kept", b"yes"), (b"content-length", b"0"))


@pytest.mark.parametrize(
    "version, connection, keep",
    [
        (b"HTTP/1.1", b"", True),
        (b"HTTP/1.1", b"close", False),
        (b"HTTP/1.1", b"Close", False),
        (b"HTTP/1.0", b"", False),
        (b"HTTP/1.0", b"keep-alive", True),
    ],
)
def test_keep_alive_decision(version, connection, keep):
    """When the version and connection field vary, keep-alive follows RFC 9112 9.3."""
    field = b"connection: " + connection + b"\r\n" if connection else b""
    parser = ResponseParser(b"GET")
    parser.feed(version + b" 200 OK\r\n" + field + b"content-length: 1\r\n\r\nx")
    drain(parser)
    assert parser.keepAlive is keep


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-A: 1\r\n\tfolded\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX A: 1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-A : 1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-A: 1\nX-B: 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-A: 1\x00\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-A: a\rb\r\n\r\n",
        b"HTTP/2 200 OK\r\n\r\n",
        b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 099 Nope\r\n\r\n",
        b"HTTP/1.1 600 Nope\r\n\r\n",
        b"ICY 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 1, 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: +1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 0x10\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n",
        b"HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
    ],
)
def test_invalid_heads_are_protocol_errors(head):
    """When the head is malformed, ambiguous or folded, it is a BackendProtocolError."""
    with pytest.raises(BackendProtocolError):
        parse(head)


def test_repeated_identical_content_length_is_accepted():
    """When several content-length values agree, the body has that length."""
    data = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 2, 2\r\n\r\nok"
    assert summary(parse(data))[2] == b"ok"


@pytest.mark.parametrize(
    "body",
    [
        b"5\r\nhelloXX0\r\n\r\n",
        b"zz\r\nhello\r\n0\r\n\r\n",
        b"0x5\r\nhello\r\n0\r\n\r\n",
        b"-5\r\nhello\r\n0\r\n\r\n",
        b"\r\n",
        b"11111111111111111\r\n",
        b"5\r\nhello\r\n0\r\n folded\r\n\r\n",
    ],
)
def test_invalid_chunked_bodies_are_protocol_errors(body):
    """When chunk sizes, chunk ends or trailers are malformed, it is a BackendProtocolError."""
    with pytest.raises(BackendProtocolError):
        parse(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + body)


def test_head_size_is_capped_before_the_end_arrives():
    """When the head grows over the cap without ending, it is refused without waiting for more."""
    data = b"HTTP/1.1 200 OK\r\n" + b"x-a: " + b"a" * MAX_HEAD_SIZE
    with pytest.raises(BackendProtocolError, match="longer than"):
        parse(data, step=4096)


def test_head_size_is_capped_when_complete():
    """When a complete head is over the cap, it is refused."""
    data = b"HTTP/1.1 200 OK\r\n" + b"x-a: " + b"a" * MAX_HEAD_SIZE + b"\r\n\r\n"
    with pytest.raises(BackendProtocolError, match="longer than"):
        parse(data)


def test_head_just_under_the_cap_is_accepted():
    """When the head is just under the cap, it is parsed."""
    prefix = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nx-a: "
    data = prefix + b"a" * (MAX_HEAD_SIZE - len(prefix)) + b"\r\n\r\n"
    assert summary(parse(data))[0] == 200


def test_trailer_section_is_capped():
    """When the trailer section grows over the cap, it is refused."""
    data = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\nx-t: " + b"a" * MAX_HEAD_SIZE
    with pytest.raises(BackendProtocolError, match="trailer"):
        parse(data, step=8192)


def test_chunk_size_line_is_capped():
    """When a chunk-size line (with extensions) grows over its cap, it is refused."""
    data = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;" + b"e" * MAX_CHUNK_LINE
    with pytest.raises(BackendProtocolError, match="chunk-size"):
        parse(data, step=512)


def test_one_byte_at_a_time():
    """When a response with 1xx, chunks and trailers arrives one byte at a time, the result is the same."""
    data = (
        b"HTTP/1.1 103 Early\r\nlink: <a>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-a: 1\r\n\r\n"
        b"5\r\nhello\r\n1;ext\r\n!\r\n0\r\nx-t: 2\r\n\r\n"
    )
    assert summary(parse(data, step=1)) == summary(parse(data))
    assert summary(parse(data, step=1)) == (200, ((b"x-a", b"1"),), b"hello!", ((b"x-t", b"2"),))


def test_byte_at_a_time_head_is_linear():
    """When a near-cap head arrives one byte at a time, parsing stays fast (no quadratic rescans)."""
    prefix = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nx-a: "
    data = prefix + b"a" * (MAX_HEAD_SIZE - len(prefix) - 10) + b"\r\n\r\n"
    import time

    started = time.perf_counter()
    assert summary(parse(data, step=1))[0] == 200
    assert time.perf_counter() - started < 2.0


@settings(max_examples=60, deadline=None)
@given(
    chunks=st.lists(st.binary(min_size=1, max_size=50), max_size=8),
    cuts=st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=20),
)
def test_any_split_of_a_chunked_response_parses_the_same(chunks, cuts):
    """When a chunked response is split at arbitrary points, the de-chunked body is the concatenation."""
    data = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
    data += b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    parser = ResponseParser(b"GET")
    events: list = []
    position, index = 0, 0
    while position < len(data):
        step = cuts[index % len(cuts)]
        parser.feed(data[position : position + step])
        events += drain(parser)
        position += step
        index += 1
    assert summary(events)[2:] == (b"".join(chunks), ())


def test_known_field_name_without_colon_is_an_error():
    """When a line repeats a field name seen before but has no colon, it is still a BackendProtocolError."""
    parse(b"HTTP/1.1 200 OK\r\nX-Seen-Name: 1\r\ncontent-length: 0\r\n\r\n")
    with pytest.raises(BackendProtocolError, match="invalid field line"):
        parse(b"HTTP/1.1 200 OK\r\nX-Seen-Name\r\ncontent-length: 0\r\n\r\n")


def test_stray_cr_in_a_value_is_an_error_after_clean_heads():
    """When a value holds a bare CR, LF or NUL, the head is a BackendProtocolError even for field names seen before."""
    parse(b"HTTP/1.1 200 OK\r\nX-Seen-Value: 1\r\ncontent-length: 0\r\n\r\n")
    for bad in (b"a\rb", b"a\nb", b"a\x00b"):
        with pytest.raises(BackendProtocolError, match="CR, LF or NUL"):
            parse(b"HTTP/1.1 200 OK\r\nX-Seen-Value: " + bad + b"\r\ncontent-length: 0\r\n\r\n")
