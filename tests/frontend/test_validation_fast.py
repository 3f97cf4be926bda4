"""The one-pass field checks of parse_request and of response fields against the
one-by-one checks: the fast pass never accepts what the full checks refuse, and agrees
on what they accept."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from h2proxy.frontend.http2 import validation
from h2proxy.message import ResponseHead
from h2proxy.fields import HOP_BY_HOP
from h2proxy.frontend.http2.validation import (
    EXTENDED_CONNECT_PSEUDO,
    REQUEST_PSEUDO,
    InvalidResponseField,
    KnownGood,
    MalformedRequest,
    UnusableRequest,
    _fields_at_once,
    _fields_one_by_one,
    _outbound_checked,
    _outbound_regular,
)

NAMES = [
    b":method", b":scheme", b":authority", b":path", b":protocol", b":status", b":bogus",
    b"accept", b"user-agent", b"host", b"content-length", b"te", b"expect", b"cookie",
    b"connection", b"transfer-encoding", b"upgrade", b"Accept", b"bad name", b"", b"x-a",
    b"trailer", b"proxy-authorization", b"http2-settings",
]
VALUES = [
    b"GET", b"https", b"example.org", b"/", b"*/*", b"5", b"05", b"-1", b"1" * 20, b"trailers",
    b"Trailers", b"100-continue", b"", b" x", b"x ", b"\tx", b"x\t", b"a\tb", b"a\x00b", b"a\rb",
    b"a\nb", b"a\x01b", b"a\x7fb", b"\n", b"websocket",
]
field = st.tuples(st.sampled_from(NAMES) | st.binary(max_size=6), st.sampled_from(VALUES) | st.binary(max_size=6))


@settings(max_examples=1000, deadline=None)
@given(fields=st.lists(field, max_size=8), limit=st.sampled_from([16, 100, 65536]), extended=st.booleans())
def test_fast_pass_agrees_with_the_full_checks(fields, limit, extended):
    """When the one-pass check accepts a field list, the one-by-one checks accept it with
    the same result, but for the hop-by-hop fields the one pass already left out."""
    known = EXTENDED_CONNECT_PSEUDO if extended else REQUEST_PSEUDO
    fast = _fields_at_once(fields, limit, known, KnownGood())
    try:
        full = _fields_one_by_one(fields, limit, known)
    except (MalformedRequest, UnusableRequest):
        assert fast is None
        return
    pseudo, regular, length = full
    assert fast is None or fast == (pseudo, [item for item in regular if item[0] not in HOP_BY_HOP], length)


def test_common_request_takes_the_fast_pass():
    """When a request is ordinary, the one-pass check accepts it, leaving out the
    hop-by-hop te: trailers."""
    fields = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"a.test"), (b":path", b"/"),
              (b"accept", b"*/*"), (b"te", b"trailers"), (b"content-length", b"3"), (b"a-b", b"x\ty")]
    assert _fields_at_once(fields, 65536, REQUEST_PSEUDO, KnownGood()) == (
        {b":method": b"GET", b":scheme": b"https", b":authority": b"a.test", b":path": b"/"},
        [fields[4], *fields[6:]],
        3,
    )


@settings(max_examples=1000, deadline=None)
@given(warm=st.lists(field, max_size=8), fields=st.lists(field, max_size=8))
def test_outbound_fields_agree_with_the_field_by_field_checks(warm, fields):
    """When response fields are checked after other responses taught the remembered names, the result (fields or refusal) is the field-by-field one."""
    known = KnownGood()
    try:
        _outbound_checked(warm, known)
    except InvalidResponseField:
        pass
    try:
        expected = _outbound_checked(fields, KnownGood())
    except InvalidResponseField:
        expected = None
    try:
        got = _outbound_regular(fields, known)
    except InvalidResponseField:
        got = None
    assert got == expected


def test_repeated_response_names_take_the_short_path(monkeypatch):
    """When a response repeats names already sent, it is accepted without the field-by-field checks, unless a value holds CR, LF, NUL or edge whitespace."""
    head = [(b"content-type", b"text/plain"), (b"content-length", b"5")]
    known = KnownGood()
    assert _outbound_regular(head, known) == head
    monkeypatch.setattr(validation, "_outbound_checked", lambda headers, knownGood: "checked")
    assert _outbound_regular(head, known) == head
    for value in (b"a\rb", b"a\nb", b"a\x00b", b" a", b"a\t"):
        assert _outbound_regular([(b"content-type", value)], known) == "checked"
    assert _outbound_regular([(b"x-never-sent-before", b"1")], known) == "checked"


def test_known_good_names_stop_growing_at_their_cap():
    """When a connection is given its own KnownGood, requests and responses teach it (not the shared one) valid names, up to its cap."""
    known = KnownGood(maxNames=2, maxAuthorities=1)
    shared = (set(validation.SHARED_KNOWN_GOOD.requestNames), set(validation.SHARED_KNOWN_GOOD.authorities))
    pseudo = [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/")]
    for index in range(4):
        extra = [(b":authority", b"h%d.test" % index), (b"x-name-%d" % index, b"v")]
        validation.parse_request(pseudo + extra, end_stream=True, max_header_list_size=65536, knownGood=known)
    validation.response_fields(ResponseHead(200, ((b"x-a", b"1"), (b"x-b", b"1"), (b"x-c", b"1"))), known)
    assert known.requestNames == {b"x-name-0", b"x-name-1"}
    assert known.authorities == {b"h0.test"}
    assert known.responseNames == {b"x-a", b"x-b"}
    assert (validation.SHARED_KNOWN_GOOD.requestNames, validation.SHARED_KNOWN_GOOD.authorities) == shared


def test_a_pseudo_header_after_a_left_out_hop_by_hop_field_is_refused_by_the_fast_pass():
    """When a hop-by-hop field the fast pass leaves out comes before a pseudo-header, the
    order is still wrong (RFC 9113 8.3): the fast pass declines and the full checks refuse."""
    fields = [(b"trailer", b"x"), (b":method", b"GET")]
    assert _fields_at_once(fields, 65536, REQUEST_PSEUDO, KnownGood()) is None


def _outcome(fields, knownGood, **flags):
    """parse_request's result, or the class, status and message of its refusal."""
    try:
        return validation.parse_request(fields, knownGood=knownGood, **flags)
    except UnusableRequest as e:
        return (UnusableRequest, e.status, str(e))
    except MalformedRequest as e:
        return (MalformedRequest, str(e))


request_flags = st.fixed_dictionaries({
    "end_stream": st.booleans(),
    "max_header_list_size": st.sampled_from([100, 65536]),
    "extended_connect": st.booleans(),
    "localContinue": st.booleans(),
})
plausible_request = st.tuples(
    st.just([(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"a.test"), (b":path", b"/")]),
    st.lists(field, max_size=4),
).map(lambda parts: parts[0] + parts[1]) | st.lists(field, max_size=8)


@settings(max_examples=1000, deadline=None)
@given(requests=st.lists(st.tuples(plausible_request, request_flags), min_size=1, max_size=6), size=st.sampled_from([0, 2, 256]))
def test_remembered_requests_agree_with_the_checks(requests, size):
    """When requests are parsed in turn (repeats included) with a memory of accepted
    ones, each outcome is the one a parse without any memory gives."""
    remembering = KnownGood(maxRequests=size)
    for fields, flags in requests + requests:
        assert _outcome(fields, remembering, **flags) == _outcome(fields, KnownGood(maxRequests=0), **flags)


def test_a_repeated_request_is_not_checked_again(monkeypatch):
    """When a request repeats one accepted before, with the same flags, its outcome is
    the remembered one; other flags are checked again."""
    fields = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"a.test"), (b":path", b"/")]
    known = KnownGood()
    first = validation.parse_request(fields, end_stream=True, max_header_list_size=65536, knownGood=known)
    monkeypatch.setattr(validation, "_checked_request", lambda fields, **flags: "checked")
    assert validation.parse_request(list(fields), end_stream=True, max_header_list_size=65536, knownGood=known) is first
    assert validation.parse_request(fields, end_stream=False, max_header_list_size=65536, knownGood=known) == "checked"


def test_remembered_requests_are_bounded():
    """When the memory of requests is full it starts again empty, and blocks over
    MAX_GOOD_REQUEST_SIZE are never remembered."""
    known = KnownGood(maxRequests=2)
    pseudo = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"a.test")]
    for path in (b"/1", b"/2", b"/3"):
        validation.parse_request(pseudo + [(b":path", path)], end_stream=True, max_header_list_size=65536, knownGood=known)
    assert [key[0][-1] for key in known.requests] == [(b":path", b"/3")]
    large = pseudo + [(b":path", b"/"), (b"x-large", b"v" * validation.MAX_GOOD_REQUEST_SIZE)]
    validation.parse_request(large, end_stream=True, max_header_list_size=65536, knownGood=known)
    assert len(known.requests) == 1
