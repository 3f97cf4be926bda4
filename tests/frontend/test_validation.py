"""Request and response field checks (pure functions): malformed vs unusable vs fine."""

from __future__ import annotations

import pytest

from h2proxy.frontend.http2.validation import (
    InvalidResponseField,
    MalformedRequest,
    UnusableRequest,
    content_length_mismatch,
    header_list_size,
    parse_request,
    request_trailers,
    response_fields,
    trailer_fields,
)
from h2proxy.message import ResponseHead

LIMIT = 64 * 1024


def fields(*extra, method=b"GET", scheme=b"https", authority=b"example.org", path=b"/"):
    base = []
    for name, value in ((b":method", method), (b":scheme", scheme), (b":authority", authority), (b":path", path)):
        if value is not None:
            base.append((name, value))
    return base + list(extra)


def parse(block, end_stream=True, limit=LIMIT):
    return parse_request(block, end_stream=end_stream, max_header_list_size=limit)


def test_valid_request_builds_the_head():
    """When a request is valid, the head carries its pseudo-headers and regular fields in order."""
    parsed = parse(fields((b"accept", b"*/*"), (b"cookie", b"a=1"), (b"cookie", b"b=2")), end_stream=False)
    head = parsed.head
    assert (head.method, head.scheme, head.authority, head.path) == (b"GET", b"https", b"example.org", b"/")
    assert head.headers == ((b"accept", b"*/*"), (b"cookie", b"a=1"), (b"cookie", b"b=2"))
    assert head.end_stream is False and head.content_length is None
    assert parsed.expectsContinue is False


@pytest.mark.parametrize(
    "extra",
    [
        [(b"Accept", b"x")],  # uppercase name
        [(b"acc ept", b"x")],  # space in name
        [(b"acc:ept", b"x")],  # colon in a regular name
        [(b"", b"x")],  # empty name
        [(b"x-a", b"a\r\nb")],  # CR LF in value
        [(b"x-a", b"a\x00b")],  # NUL in value
        [(b"x-a", b" a")],  # leading whitespace
        [(b"x-a", b"a\t")],  # trailing whitespace
        [(b"connection", b"close")],
        [(b"keep-alive", b"5")],
        [(b"proxy-connection", b"x")],
        [(b"transfer-encoding", b"chunked")],
        [(b"upgrade", b"h2c")],
        [(b"te", b"gzip")],
        [(b"content-length", b"12a")],
        [(b"content-length", b"-1")],
        [(b"content-length", b"")],
        [(b"content-length", b"1, 1")],
        [(b"content-length", b"5"), (b"content-length", b"6")],
    ],
)
def test_malformed_regular_fields(extra):
    """When a regular field breaks RFC 9113 8.2 (names, values, connection-specific fields, te, content-length), the request is malformed."""
    with pytest.raises(MalformedRequest):
        parse(fields(*extra), end_stream=False)


@pytest.mark.parametrize(
    "block",
    [
        fields(path=None),  # missing :path
        fields(method=None),  # missing :method
        fields(scheme=None),  # missing :scheme
        fields(path=b""),  # empty :path
        fields() + [(b":path", b"/again")],  # duplicated
        [(b"accept", b"x")] + fields(),  # pseudo after regular
        fields() + [(b":status", b"200")],  # response-only
        [(b":status", b"100")] + fields(),  # response-only, first
        fields() + [(b":protocol", b"websocket")],  # RFC 8441 not offered
        fields() + [(b":foo", b"bar")],  # unknown
        fields(method=b"CONNECT"),  # CONNECT with :scheme and :path
        fields(method=b"CONNECT", scheme=None, path=None, authority=None),  # CONNECT without :authority
        fields(path=b" /"),  # whitespace around a pseudo value
    ],
)
def test_malformed_pseudo_headers(block):
    """When pseudo-headers break RFC 9113 8.3 (missing, empty, duplicated, misplaced, unknown, response-only), the request is malformed."""
    with pytest.raises(MalformedRequest):
        parse(block)


def test_te_trailers_is_allowed():
    """When te is exactly "trailers", the request is accepted (RFC 9113 8.2.2), and te, a hop-by-hop field, is not handed on (as on HTTP/1.1)."""
    assert parse(fields((b"te", b"trailers"), (b"accept", b"*/*"))).head.headers == ((b"accept", b"*/*"),)


def test_content_length_parsed_and_duplicates_that_agree_accepted():
    """When content-length fields agree, the head carries the value."""
    head = parse(fields((b"content-length", b"10"), (b"content-length", b"10")), end_stream=False).head
    assert head.content_length == 10


def test_content_length_with_end_stream_on_headers_is_malformed():
    """When HEADERS ends the stream but content-length announces a body, the request is malformed (RFC 9113 8.1.1)."""
    with pytest.raises(MalformedRequest):
        parse(fields((b"content-length", b"3")), end_stream=True)
    assert parse(fields((b"content-length", b"0")), end_stream=True).head.content_length == 0


@pytest.mark.parametrize(
    "block",
    [
        fields(method=b"GE T"),
        fields(method=b"G\x01T"),
        fields(path=b"/a b"),
        fields(path=b"/a\x7f"),
        fields(path=b"/caf\xc3\xa9"),
        fields(path=b"/a#frag"),
        fields(path=b"relative"),
        fields(path=b"*"),  # only OPTIONS
        fields(scheme=b"ftp"),
        fields(authority=b"user@example.org"),
        fields(authority=b"exa mple.org"),
        fields(authority=b"example.org:80x"),
        fields(authority=b"example.org:"),
        fields(authority=b"[::1"),
        fields(authority=b""),
        fields((b"host", b"other.org")),
        fields((b"host", b"example.org"), (b"host", b"example.org")),
        fields(authority=None),  # neither :authority nor host
        fields(method=b"CONNECT", scheme=None, path=None),
    ],
)
def test_unusable_requests_get_400(block):
    """When a request is well-formed HTTP/2 but unusable (method, path, scheme, authority, host, CONNECT), it gets a 400."""
    with pytest.raises(UnusableRequest) as info:
        parse(block)
    assert info.value.status == 400


def test_host_without_authority_becomes_the_authority():
    """When only a host field names the authority, the head's authority is that host."""
    head = parse(fields((b"host", b"example.net:8443"), authority=None)).head
    assert head.authority == b"example.net:8443"


def test_host_matching_authority_is_accepted_case_insensitively():
    """When host repeats :authority in another case, the request is accepted."""
    assert parse(fields((b"host", b"EXAMPLE.org"))).head.authority == b"example.org"


@pytest.mark.parametrize("authority", [b"example.org:8443", b"[::1]:443", b"[2001:db8::1]", b"127.0.0.1", b"xn--bcher-kva.example"])
def test_valid_authorities(authority):
    """When the authority is a host, IP literal or address with a port, it is accepted."""
    assert parse(fields(authority=authority)).head.authority == authority


def test_options_star_is_accepted():
    """When OPTIONS asks for *, the path is accepted."""
    assert parse(fields(method=b"OPTIONS", path=b"*")).head.path == b"*"


def test_header_list_over_the_limit_is_431():
    """When the decoded header list is over SETTINGS_MAX_HEADER_LIST_SIZE (RFC 9113 6.5.2 accounting), the request gets 431."""
    block = fields((b"x-big", b"a" * 1000))
    size = header_list_size(block)
    assert size == sum(len(n) + len(v) + 32 for n, v in block)
    parse(block, limit=size)
    with pytest.raises(UnusableRequest) as info:
        parse(block, limit=size - 1)
    assert info.value.status == 431


def test_expect_100_continue_is_kept_and_reported():
    """When the client expects 100-continue before a body, the head carries it (lowercased) for the backend to decide, and it is reported."""
    parsed = parse(fields((b"expect", b"100-Continue"), (b"accept", b"*/*")), end_stream=False)
    assert parsed.expectsContinue is True and parsed.localContinue is False
    assert parsed.head.headers == ((b"accept", b"*/*"), (b"expect", b"100-continue"))


def test_expect_100_continue_is_removed_when_answered_locally():
    """When the front end answers 100-continue itself, the head no longer carries expect and the front end is told to answer it."""
    block = fields((b"expect", b"100-continue"), (b"accept", b"*/*"))
    parsed = parse_request(block, end_stream=False, max_header_list_size=LIMIT, localContinue=True)
    assert parsed.expectsContinue is True and parsed.localContinue is True
    assert parsed.head.headers == ((b"accept", b"*/*"),)


def test_expect_100_continue_without_body_is_removed():
    """When a request expecting 100-continue has no body, expect is not handed on and no 100 is owed."""
    parsed = parse(fields((b"expect", b"100-continue"),), end_stream=True)
    assert parsed.head.headers == () and parsed.localContinue is False


def test_trailers_reject_pseudo_headers_and_bad_fields():
    """When request trailers carry a pseudo-header or an invalid field, they are malformed (RFC 9113 8.1)."""
    assert request_trailers([(b"x-sum", b"1")]) == ((b"x-sum", b"1"),)
    for bad in ([(b":path", b"/")], [(b"X-Sum", b"1")], [(b"x-sum", b"a\nb")], [(b"transfer-encoding", b"chunked")]):
        with pytest.raises(MalformedRequest):
            request_trailers(bad)


def test_content_length_mismatch():
    """When DATA exceeds content-length, or ends short of it, a reason is given; otherwise none."""
    assert content_length_mismatch(None, 10, True) is None
    assert content_length_mismatch(5, 3, False) is None
    assert content_length_mismatch(5, 6, False) is not None
    assert content_length_mismatch(5, 4, True) is not None
    assert content_length_mismatch(5, 5, True) is None


def test_response_fields_drop_connection_specific_and_reject_bad_fields():
    """When response fields are built, connection-specific ones are dropped and invalid ones rejected before encoding."""
    head = ResponseHead(200, ((b"content-type", b"text/plain"), (b"connection", b"close"), (b"te", b"x")))
    assert response_fields(head) == [(b":status", b"200"), (b"content-type", b"text/plain")]
    for bad in ((b"Bad", b"x"), (b"x-a", b"a\r\nb"), (b"", b"x")):
        with pytest.raises(InvalidResponseField):
            response_fields(ResponseHead(200, (bad,)))
    with pytest.raises(InvalidResponseField):
        response_fields(ResponseHead(42))


def test_trailer_fields_reject_pseudo_headers():
    """When response trailers carry a pseudo-header, they are rejected."""
    assert trailer_fields(((b"grpc-status", b"0"),)) == [(b"grpc-status", b"0")]
    with pytest.raises(InvalidResponseField):
        trailer_fields(((b":status", b"200"),))
