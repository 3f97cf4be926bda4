"""The shared field grammar: tokens, unsafe values, hop-by-hop sets."""

from h2proxy.fields import CONNECTION_SPECIFIC, HOP_BY_HOP, TCHARS, TOKEN, UNSAFE_VALUE, list_items


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
