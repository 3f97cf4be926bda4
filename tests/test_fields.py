"""The shared field grammar: tokens, unsafe values, hop-by-hop sets."""

from h2proxy.fields import (
    CONNECTION_SPECIFIC,
    HOP_BY_HOP,
    TCHARS,
    TOKEN,
    UNSAFE_VALUE,
    UNSAFE_VALUE_BYTES,
    list_items,
)
from h2proxy.frontend.http1.parse import parse_request as parse_http1
from h2proxy.frontend.http2.validation import parse_request as parse_http2


def test_token_pattern_and_character_set_agree() -> None:
    for byte in range(256):
        assert (TOKEN.fullmatch(bytes([byte])) is not None) == (byte in TCHARS), byte


def test_unsafe_values_are_nul_cr_lf() -> None:
    assert [b for b in range(256) if UNSAFE_VALUE.search(bytes([b]))] == [0, 10, 13]


def test_http2_connection_specific_fields_are_all_hop_by_hop() -> None:
    assert CONNECTION_SPECIFIC <= HOP_BY_HOP


def test_proxy_credentials_stop_at_the_proxy() -> None:
    assert {b"proxy-authorization", b"proxy-authenticate"} <= HOP_BY_HOP


def test_list_items_trims_lowercases_and_skips_empty_members() -> None:
    assert list(list_items(b" Keep-Alive ,, X-Foo\t,")) == [b"keep-alive", b"x-foo"]


def test_both_front_ends_hand_a_handler_the_same_fields() -> None:
    """When the same fields arrive over HTTP/2 and HTTP/1.1 (plus, on HTTP/1.1 only, the
    connection-specific fields HTTP/2 forbids), both parsers hand on the same fields:
    no hop-by-hop field, no proxy credential, nothing a Connection header names."""
    shared = [
        (b"accept", b"*/*"),
        (b"te", b"trailers"),
        (b"trailer", b"x-sum"),
        (b"proxy-authorization", b"Basic dXNlcjpwYXNz"),
        (b"proxy-authenticate", b"Basic"),
        (b"http2-settings", b"AAMAAABkAAQAAP__"),
        (b"x-dup", b"1"),
        (b"x-dup", b"2"),
    ]
    pseudo = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"a.test"), (b":path", b"/")]
    viaHTTP2 = parse_http2(pseudo + shared, end_stream=True, max_header_list_size=65536).head
    lines = b"".join(b"%s: %s\r\n" % field for field in shared)
    raw = (
        b"GET / HTTP/1.1\r\nHost: a.test\r\n" + lines
        + b"Connection: keep-alive, x-hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nProxy-Connection: x\r\n\r\n"
    )
    viaHTTP1 = parse_http1(raw, secure=True).head
    assert viaHTTP1.headers == viaHTTP2.headers == ((b"accept", b"*/*"), (b"x-dup", b"1"), (b"x-dup", b"2"))


def test_unsafe_value_set_and_pattern_agree() -> None:
    """When a check uses the byte set instead of the pattern, it refuses the same bytes."""
    assert UNSAFE_VALUE_BYTES == {b for b in range(256) if UNSAFE_VALUE.search(bytes([b]))}


def test_entity_tags_keep_commas_inside_quotes_and_name_the_wildcard():
    from h2proxy.fields import entity_tags, field_values

    values = field_values(((b"if-none-match", b'"a,b", W/"c"'), (b"x", b'"no"'), (b"if-none-match", b" * ")),
                          b"if-none-match")
    assert entity_tags(values) == [b'"a,b"', b'W/"c"', b"*"]
