"""The sans-I/O HTTP/1.1 request parser: heads, framing, smuggling vectors, body decoders."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from h2proxy.frontend.http1.parse import (
    MAX_CHUNK_LINE,
    ChunkedDecoder,
    LengthDecoder,
    RequestRejected,
    find_head_end,
    parse_request,
    skip_empty_lines,
)
from h2proxy.message import Trailers


def parse(head: bytes, secure: bool = False):
    return parse_request(head, secure=secure)


def rejected(head: bytes) -> int:
    with pytest.raises(RequestRejected) as info:
        parse(head)
    return info.value.status


def test_origin_form_request_becomes_a_request_head():
    """When a plain GET arrives, the head carries method, scheme, Host as authority and the path."""
    parsed = parse(b"GET /a?b=1 HTTP/1.1\r\nHost: example.org\r\nAccept: */*\r\n\r\n")
    head = parsed.head
    assert (head.method, head.scheme, head.authority, head.path) == (b"GET", b"http", b"example.org", b"/a?b=1")
    assert head.headers == ((b"accept", b"*/*"),)
    assert head.content_length is None and head.end_stream
    assert parsed.keepAlive and not parsed.http10 and not parsed.chunked


def test_secure_connection_gives_https_scheme():
    """When the connection is TLS, the scheme is https."""
    assert parse(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", secure=True).head.scheme == b"https"


def test_field_names_are_lowercased_and_values_trimmed():
    """When fields use mixed case and padding, names are lowercased and values stripped of OWS."""
    head = parse(b"GET / HTTP/1.1\r\nHost: a\r\nX-Thing: \t v a l \t\r\n\r\n").head
    assert head.headers == ((b"x-thing", b"v a l"),)


def test_hop_by_hop_and_connection_named_fields_are_removed():
    """When a request carries connection-specific fields, none of them reaches the handler."""
    head = parse(
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret\r\nKeep-Alive: 5\r\n"
        b"TE: trailers\r\nUpgrade: h2c\r\nProxy-Connection: x\r\nX-Secret: 1\r\nTrailer: x\r\nX-Kept: 2\r\n\r\n"
    ).head
    assert head.headers == ((b"x-kept", b"2"),)


def test_absolute_form_takes_the_authority_from_the_target():
    """When the target is an absolute URI, its authority wins over Host and its path is used."""
    head = parse(b"GET http://Example.org:8080?q HTTP/1.1\r\nHost: other\r\n\r\n").head
    assert head.authority == b"Example.org:8080"
    assert head.path == b"/?q"


def test_asterisk_form_is_accepted_for_options_only():
    """When OPTIONS * arrives it is accepted; * with another method is refused."""
    assert parse(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").head.path == b"*"
    assert rejected(b"GET * HTTP/1.1\r\nHost: a\r\n\r\n") == 400


def test_content_length_body_is_described():
    """When Content-Length is given, the head carries it and end_stream is False."""
    head = parse(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n").head
    assert head.content_length == 12 and not head.end_stream
    assert head.headers == ((b"content-length", b"12"),)


def test_zero_content_length_means_no_body():
    """When Content-Length is 0, the request has no body."""
    head = parse(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n").head
    assert head.content_length == 0 and head.end_stream


def test_repeated_identical_content_length_is_accepted():
    """When Content-Length repeats one value (as fields or as a list), it is that value."""
    assert parse(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3, 3\r\n\r\n").head.content_length == 3


def test_chunked_request_has_unknown_length():
    """When Transfer-Encoding is chunked, content_length is None and the decoder is chunked."""
    parsed = parse(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n")
    assert parsed.chunked and parsed.head.content_length is None and not parsed.head.end_stream


def test_http10_keeps_alive_only_when_asked():
    """When an HTTP/1.0 request has no Connection: keep-alive, the connection will close."""
    assert not parse(b"GET / HTTP/1.0\r\n\r\n").keepAlive
    parsed = parse(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
    assert parsed.keepAlive and parsed.http10 and parsed.head.authority == b""


def test_connection_close_is_honoured():
    """When an HTTP/1.1 request says Connection: close, keepAlive is False."""
    assert not parse(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").keepAlive


def test_expect_continue_is_noted_and_handed_on():
    """When Expect: 100-continue comes with a body, it is noted and handed on (lowercased) for the backend to decide."""
    parsed = parse(b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 5\r\n\r\n")
    assert parsed.expectContinue
    assert dict(parsed.head.headers)[b"expect"] == b"100-continue"


def test_expect_continue_answered_locally_is_not_handed_on():
    """When the front end answers 100-continue itself, Expect is noted and not handed on."""
    parsed = parse_request(b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n", secure=False, localContinue=True)
    assert parsed.expectContinue
    assert b"expect" not in dict(parsed.head.headers)


def test_expect_continue_without_body_is_ignored():
    """When Expect: 100-continue comes without a body, no 100 is owed."""
    parsed = parse(b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n")
    assert not parsed.expectContinue and b"expect" not in dict(parsed.head.headers)


def test_minor_versions_above_one_are_read_as_http11():
    """When a client says HTTP/1.2, it is treated as HTTP/1.1."""
    assert not parse(b"GET / HTTP/1.2\r\nHost: a\r\n\r\n").http10


@pytest.mark.parametrize(
    "head, status",
    [
        # Framing ambiguity (RFC 9112 6.1, 6.3).
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", 400),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9999999999999999999\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nConnection: content-length\r\nContent-Length: 1\r\n\r\n", 400),
        # Field syntax.
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n continued\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX\tY: 1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX(Y): 1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\n: empty\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nno colon\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \x0bchunked\r\n\r\n", 400),
        # Host.
        (b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: user@a\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
        # Request line.
        (b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400),
        (b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET /#frag HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET / http/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400),
        (b"GET /\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
        (b"GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505),
        (b"GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET relative HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 501),
        # Expectations.
        (b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: something\r\nContent-Length: 1\r\n\r\n", 417),
    ],
)
def test_ambiguous_or_malformed_heads_are_refused(head, status):
    """When a head could be read two ways or breaks RFC 9112, it is refused with its status."""
    assert rejected(head) == status


def test_head_end_is_found_after_the_blank_line():
    """When a head is complete, find_head_end points just past CRLFCRLF."""
    buf = bytearray(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nrest")
    assert find_head_end(buf, 0) == len(buf) - 4


def test_head_end_search_resumes_where_it_stopped():
    """When the CRLFCRLF straddles two reads, a search resumed 3 bytes back finds it."""
    buf = bytearray(b"GET / HTTP/1.1\r\nHost: a\r\n\r")
    assert find_head_end(buf, 0) == -1
    start = len(buf) - 3
    buf += b"\n"
    assert find_head_end(buf, start) == len(buf)


@pytest.mark.parametrize("data", [b"GET / HTTP/1.1\nHost: a\n\n", b"GET / HTTP/1.1\r\nHost: a\n", b"GET / HTTP/1.1\r\nHost: a\r\n\n"])
def test_bare_lf_is_refused_before_the_head_completes(data):
    """When a line ends with a bare LF, the head is refused at once (not waited on)."""
    with pytest.raises(RequestRejected) as info:
        find_head_end(bytearray(data), 0)
    assert info.value.status == 400


def test_leading_empty_lines_are_skipped():
    """When empty lines precede a request line, they are removed and counted."""
    buf = bytearray(b"\r\n\r\nGET")
    assert skip_empty_lines(buf) == 2
    assert buf == b"GET"
    assert skip_empty_lines(buf) == 0


def drain(decoder, buf: bytearray) -> list:
    events = []
    while True:
        event = decoder.step(buf)
        if event is None:
            return events
        events.append(event)
        if isinstance(event, Trailers):
            return events


def test_length_decoder_hands_out_exactly_the_declared_bytes():
    """When more bytes than the length arrive, the decoder takes only the body and leaves the rest."""
    buf = bytearray(b"hello")
    decoder = LengthDecoder(3)
    assert drain(decoder, buf) == [b"hel", Trailers()]
    assert buf == b"lo"


def test_chunked_decoder_streams_partial_chunks():
    """When half a chunk has arrived, its bytes are handed out before the chunk completes."""
    decoder = ChunkedDecoder(1024)
    buf = bytearray(b"a;ext=1\r\n01234")
    assert drain(decoder, buf) == [b"01234"]
    buf += b"56789\r\n0\r\nX-Sum: abc\r\nContent-Length: 3\r\n\r\nNEXT"
    assert drain(decoder, buf) == [b"56789", Trailers(((b"x-sum", b"abc"),))]
    assert buf == b"NEXT"


@pytest.mark.parametrize(
    "body",
    [
        b"zz\r\n",  # not hex
        b"0x5\r\nhello\r\n0\r\n\r\n",  # prefix
        b"-5\r\n",  # sign
        b" 5\r\n",  # leading space
        b"5\r\nhelloXX0\r\n\r\n",  # missing CRLF after data
        b"5\nhello\r\n0\r\n\r\n",  # bare LF after size
        b"5;a\nb\r\nhello\r\n",  # LF in an extension
        b"11111111111111111\r\n",  # 17 hex digits
        b"0\r\nX : y\r\n\r\n",  # bad trailer
        b"0\r\n folded\r\n\r\n",  # obs-fold in trailers
    ],
)
def test_chunked_decoder_refuses_bad_framing(body):
    """When chunk framing is malformed, the decoder raises a 400."""
    with pytest.raises(RequestRejected) as info:
        drain(ChunkedDecoder(1024), bytearray(body))
    assert info.value.status == 400


def test_chunk_size_line_is_capped():
    """When a chunk-size line (extensions included) grows past its cap, it is refused."""
    with pytest.raises(RequestRejected):
        drain(ChunkedDecoder(1024), bytearray(b"5;" + b"x" * MAX_CHUNK_LINE))


def test_trailer_section_is_capped():
    """When trailers grow past maxTrailerBytes, the decoder refuses them with 431."""
    with pytest.raises(RequestRejected) as info:
        drain(ChunkedDecoder(64), bytearray(b"0\r\n" + b"X-A: " + b"b" * 100 + b"\r\n\r\n"))
    assert info.value.status == 431


@given(
    chunks=st.lists(st.binary(min_size=1, max_size=40), max_size=6),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8),
)
def test_chunked_decoding_does_not_depend_on_how_bytes_are_split(chunks, cuts):
    """When a chunked body arrives split at arbitrary points, the decoded bytes are the same."""
    wire = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\nT: v\r\n\r\n"
    points = sorted({min(c, len(wire)) for c in cuts}) + [len(wire)]
    decoder, buf, events, last = ChunkedDecoder(1024), bytearray(), [], 0
    for point in points:
        if events and isinstance(events[-1], Trailers):
            break
        buf += wire[last:point]
        last = point
        events += drain(decoder, buf)
    assert b"".join(e for e in events if isinstance(e, bytes)) == b"".join(chunks)
    assert events[-1] == Trailers(((b"t", b"v"),))


_FIELD_BYTES = st.sampled_from([b"a", b"Z", b"-", b":", b" ", b"\t", b"\r", b"\n", b"\x00", b"\x7f", b"\xe9", b"(", b"1"])


@given(lines=st.lists(st.lists(_FIELD_BYTES, max_size=12).map(b"".join), max_size=6))
def test_fast_field_block_agrees_with_line_by_line_parsing(lines):
    """When any field block is parsed, the one-pass fast path accepts and refuses exactly what line-by-line parsing does."""
    from h2proxy.frontend.http1.parse import _field_block, parse_field_line

    block = b"".join(line + b"\r\n" for line in lines)
    try:
        expected = [parse_field_line(line) for line in block[:-2].split(b"\r\n")] if block else []
    except RequestRejected:
        expected = None
    try:
        got = _field_block(block)
    except RequestRejected:
        got = None
    assert got == expected
