"""Which responses a compressing route encodes, and how their heads change: one
test per rule."""

from h2proxy.compression.policy import (
    CompressionPolicy,
    compression_policy,
    encoded_headers,
    media_type,
    weak_etag,
    with_vary,
)
from h2proxy.config.compression import CompressionConfig
from h2proxy.message import ResponseHead

POLICY = compression_policy(CompressionConfig())
GZIP = (b"gzip, deflate, br;q=0.5",)


def head(status=200, *fields, type_=b"text/html; charset=utf-8", length=b"5000"):
    base = ((b"content-type", type_),) if type_ else ()
    base += ((b"content-length", length),) if length is not None else ()
    return ResponseHead(status, base + tuple(fields))


def fields(response: ResponseHead, name: bytes) -> list[bytes]:
    return [v for k, v in response.headers if k == name]


def test_an_eligible_response_is_encoded_in_the_coding_the_client_prefers():
    decision = POLICY.decide(head(), GZIP, bodyless=False)
    assert (decision.coding, decision.encode) == ("gzip", True)
    assert fields(decision.head, b"content-encoding") == [b"gzip"]


def test_server_preference_breaks_ties():
    assert POLICY.decide(head(), (b"gzip, zstd, br",), bodyless=False).coding == "br"
    policy = compression_policy(CompressionConfig(codings=("gzip", "br")))
    assert policy.decide(head(), (b"gzip, zstd, br",), bodyless=False).coding == "gzip"


def test_content_length_and_accept_ranges_are_dropped():
    decision = POLICY.decide(head(200, (b"accept-ranges", b"bytes")), GZIP, bodyless=False)
    assert not fields(decision.head, b"content-length") and not fields(decision.head, b"accept-ranges")


def test_a_strong_etag_is_weakened_and_a_weak_one_kept():
    assert fields(POLICY.decide(head(200, (b"etag", b'"abc"')), GZIP, False).head, b"etag") == [b'W/"abc"']
    assert fields(POLICY.decide(head(200, (b"etag", b'W/"abc"')), GZIP, False).head, b"etag") == [b'W/"abc"']
    assert weak_etag(b' "x" ') == b'W/"x"'


def test_vary_is_added_merged_and_never_duplicated():
    assert fields(POLICY.decide(head(), GZIP, False).head, b"vary") == [b"Accept-Encoding"]
    merged = POLICY.decide(head(200, (b"vary", b"Cookie")), GZIP, False).head
    assert fields(merged, b"vary") == [b"Cookie, Accept-Encoding"]
    already = POLICY.decide(head(200, (b"vary", b"accept-encoding, Cookie")), GZIP, False).head
    assert fields(already, b"vary") == [b"accept-encoding, Cookie"]
    assert with_vary(((b"vary", b"*"),)) == ((b"vary", b"*"),)


def test_an_eligible_response_to_a_client_accepting_no_coding_still_gets_vary():
    for accept in ((), (b"identity",), (b"gzip;q=0, br;q=0, zstd;q=0",), (b"deflate",)):
        decision = POLICY.decide(head(), accept, bodyless=False)
        assert (decision.coding, decision.encode) == (None, False)
        assert fields(decision.head, b"vary") == [b"Accept-Encoding"]
        assert fields(decision.head, b"content-length") == [b"5000"]


def test_only_a_200_is_compressed():
    for status in (206, 304, 204, 404, 500, 301, 101):
        decision = POLICY.decide(head(status), GZIP, bodyless=False)
        assert decision.coding is None and decision.head == head(status)


def test_a_type_not_listed_is_not_compressed_and_gets_no_vary():
    decision = POLICY.decide(head(type_=b"image/png"), GZIP, bodyless=False)
    assert decision.coding is None and decision.head == head(type_=b"image/png")


def test_a_response_without_content_type_is_not_compressed():
    assert POLICY.decide(head(type_=None), GZIP, bodyless=False).coding is None


def test_types_match_without_parameters_and_case_insensitively():
    assert POLICY.decide(head(type_=b"Application/JSON ; charset=UTF-8"), GZIP, False).coding == "gzip"
    assert media_type(b"TEXT/Html;q=1") == "text/html"
    events = compression_policy(CompressionConfig(types=("text/event-stream",)))
    assert events.decide(head(type_=b"text/event-stream", length=None), GZIP, False).coding == "gzip"
    assert events.decide(head(), GZIP, False).coding is None


def test_an_already_encoded_response_is_left_alone_but_identity_is_not_an_encoding():
    encoded = head(200, (b"content-encoding", b"br"))
    assert POLICY.decide(encoded, GZIP, False).head == encoded
    identity = POLICY.decide(head(200, (b"content-encoding", b"Identity")), GZIP, False)
    assert identity.coding == "gzip" and fields(identity.head, b"content-encoding") == [b"gzip"]


def test_no_transform_forbids_compression():
    marked = head(200, (b"cache-control", b"public, No-Transform"))
    assert POLICY.decide(marked, GZIP, False).head == marked


def test_a_content_range_forbids_compression():
    ranged = head(200, (b"content-range", b"bytes 0-9/100"))
    assert POLICY.decide(ranged, GZIP, False).head == ranged


def test_a_digest_of_the_bytes_forbids_compression():
    """Encoding would make an RFC 9530 digest describe bytes that were never sent."""
    for field in (b"content-digest", b"repr-digest"):
        digested = head(200, (field, b"sha-256=:RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=:"))
        assert POLICY.decide(digested, GZIP, False).head == digested


def test_a_known_length_below_min_length_is_not_compressed_and_unknown_is():
    assert POLICY.decide(head(length=b"1023"), GZIP, False).coding is None
    assert POLICY.decide(head(length=b"1024"), GZIP, False).coding == "gzip"
    assert POLICY.decide(head(length=None), GZIP, False).coding == "gzip"
    tiny = CompressionPolicy(frozenset({"text/html"}), minLength=0, level=6, codings=("gzip",))
    assert tiny.decide(head(length=b"0"), GZIP, False).coding == "gzip"


def test_a_head_response_gets_the_head_a_get_would_and_nothing_to_encode():
    get, head_ = POLICY.decide(head(), GZIP, bodyless=False), POLICY.decide(head(), GZIP, bodyless=True)
    assert head_.head == get.head and head_.coding == "gzip" and not head_.encode


def test_encoded_headers_keep_the_other_fields_in_order():
    out = encoded_headers(((b"x-a", b"1"), (b"content-length", b"9"), (b"x-b", b"2")), "br")
    assert out == ((b"x-a", b"1"), (b"x-b", b"2"), (b"content-encoding", b"br"), (b"vary", b"Accept-Encoding"))


NOT_MODIFIED = ResponseHead(304, ((b"etag", b'"v1"'), (b"cache-control", b"max-age=60")))


def test_a_304_revalidating_the_encoded_variant_gets_its_weak_etag_and_vary():
    sent = POLICY.revalidated(NOT_MODIFIED, GZIP, (b'"other", W/"v1"',))
    assert fields(sent, b"etag") == [b'W/"v1"'] and fields(sent, b"vary") == [b"Accept-Encoding"]
    assert fields(sent, b"cache-control") == [b"max-age=60"] and sent.status == 304


def test_a_304_for_a_variant_not_encoded_here_is_left_alone():
    assert POLICY.revalidated(NOT_MODIFIED, GZIP, (b'"v1"',)) is NOT_MODIFIED
    assert POLICY.revalidated(NOT_MODIFIED, (), (b'W/"v1"',)) is NOT_MODIFIED
    weak = ResponseHead(304, ((b"etag", b'W/"v1"'),))
    assert POLICY.revalidated(weak, GZIP, (b'W/"v1"',)) is weak
    assert POLICY.revalidated(ResponseHead(304), GZIP, (b'W/"v1"',)).headers == ()


def test_an_entity_tag_holding_a_comma_is_read_whole():
    tagged = ResponseHead(304, ((b"etag", b'"a,b"'),))
    assert fields(POLICY.revalidated(tagged, GZIP, (b'W/"a,b"',)), b"etag") == [b'W/"a,b"']
    assert POLICY.revalidated(tagged, GZIP, (b'W/"a", "b"',)) is tagged
