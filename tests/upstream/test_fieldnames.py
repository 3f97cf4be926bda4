"""The field names the upstream client remembers as valid (FieldNameCache): owned by
whoever passes it (a pool), bounded, and never a way around the checks; and the
shared hop-by-hop set applied to responses."""

from __future__ import annotations

import pytest

from h2proxy.errors import BackendProtocolError
from h2proxy.upstream.http11 import (
    MAX_GOOD_NAMES,
    FieldNameCache,
    FinalHead,
    RequestRefused,
    ResponseParser,
    serialize_request_head,
)
from tests.upstream.helpers import get


def _head(parser: ResponseParser, data: bytes) -> FinalHead:
    parser.feed(data)
    event = parser.next_event()
    assert isinstance(event, FinalHead)
    return event


def test_request_names_are_remembered_in_the_cache_given():
    """When a request is serialised with a cache, its valid names are remembered there and nowhere else."""
    names = FieldNameCache()
    serialize_request_head(get(headers=((b"host", b"x"), (b"x-trace", b"1"))), names)
    assert names.request == {b"host", b"x-trace"}
    other = FieldNameCache()
    serialize_request_head(get(headers=((b"accept", b"*/*"),)), other)
    assert other.request == {b"accept"} and b"accept" not in names.request


def test_remembered_request_name_still_has_its_value_checked():
    """When a remembered name carries a value with CR or LF, the request is still refused."""
    names = FieldNameCache()
    serialize_request_head(get(headers=((b"x-a", b"fine"),)), names)
    with pytest.raises(RequestRefused, match="x-a contains CR, LF or NUL"):
        serialize_request_head(get(headers=((b"x-a", b"bad\r\nx-b: 1"),)), names)


def test_refused_request_names_are_not_remembered():
    """When a name is not a token or is owned by the client, it is refused and not remembered."""
    names = FieldNameCache()
    for headers in (((b"bad name", b"1"),), ((b"content-length", b"5"),)):
        with pytest.raises(RequestRefused):
            serialize_request_head(get(headers=headers), names)
    assert names.request == set()


def test_cache_holds_at_most_max_good_names_each_way():
    """When more distinct names than the limit arrive, the cache stops growing and the names are still accepted."""
    names = FieldNameCache()
    for i in range(MAX_GOOD_NAMES + 10):
        serialize_request_head(get(headers=((b"x-%d" % i, b"1"),)), names)
        parser = ResponseParser(b"GET", names=names)
        head = _head(parser, b"HTTP/1.1 204 No Content\r\nX-R%d: 1\r\n\r\n" % i)
        assert head.head.headers == ((b"x-r%d" % i, b"1"),)
    assert len(names.request) == MAX_GOOD_NAMES and len(names.response) == MAX_GOOD_NAMES


def test_response_names_are_remembered_lowercased_and_shared_by_parsers():
    """When one parser learns a response name, the next parser with the same cache lowercases it the same way."""
    names = FieldNameCache()
    _head(ResponseParser(b"GET", names=names), b"HTTP/1.1 204 No Content\r\nX-Thing: a\r\n\r\n")
    assert names.response == {b"X-Thing": b"x-thing"}
    head = _head(ResponseParser(b"GET", names=names), b"HTTP/1.1 204 No Content\r\nX-Thing: b\r\n\r\n")
    assert head.head.headers == ((b"x-thing", b"b"),)


def test_invalid_response_name_is_refused_and_not_remembered():
    """When a response field name is not a token, the head is refused and the name not remembered."""
    names = FieldNameCache()
    parser = ResponseParser(b"GET", names=names)
    parser.feed(b"HTTP/1.1 204 No Content\r\nbad name: 1\r\n\r\n")
    with pytest.raises(BackendProtocolError):
        parser.next_event()
    assert names.response == {}


@pytest.mark.parametrize("name", [b"proxy-authenticate", b"proxy-authorization", b"http2-settings", b"keep-alive"])
def test_fields_addressed_to_this_hop_are_dropped_from_responses(name):
    """When a backend response carries a field of the shared hop-by-hop set, it is not delivered."""
    parser = ResponseParser(b"GET")
    head = _head(parser, b"HTTP/1.1 204 No Content\r\n" + name + b": x\r\nx-kept: 1\r\n\r\n")
    assert head.head.headers == ((b"x-kept", b"1"),)
