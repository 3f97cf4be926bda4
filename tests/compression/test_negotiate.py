"""Accept-Encoding negotiation: weights, wildcards, refusals, malformed entries."""

from hypothesis import given, strategies as st

from h2proxy.compression.negotiate import MAX_CODINGS, accepted_codings, choose, negotiate, parse_q

AVAILABLE = ("br", "zstd", "gzip")


def test_weights_default_to_one_and_names_are_lowercased():
    assert accepted_codings([b"GZip, br;q=0.5"]) == {"gzip": 1.0, "br": 0.5}


def test_several_field_lines_are_one_list():
    assert accepted_codings([b"gzip;q=0.2", b"br"]) == {"gzip": 0.2, "br": 1.0}


def test_highest_weight_wins_and_server_order_breaks_ties():
    assert negotiate([b"gzip, br"], AVAILABLE) == "br"
    assert negotiate([b"gzip;q=1, br;q=0.9"], AVAILABLE) == "gzip"
    assert negotiate([b"gzip, br"], ("gzip", "br")) == "gzip"


def test_q_zero_refuses_a_coding():
    assert negotiate([b"br;q=0, gzip;q=0.001"], AVAILABLE) == "gzip"
    assert negotiate([b"gzip;q=0"], AVAILABLE) is None


def test_wildcard_covers_codings_not_named():
    assert negotiate([b"*"], AVAILABLE) == "br"
    assert negotiate([b"br;q=0, *;q=0.5"], AVAILABLE) == "zstd"
    assert negotiate([b"*;q=0"], AVAILABLE) is None


def test_no_field_or_identity_only_means_no_coding():
    assert negotiate([], AVAILABLE) is None
    assert negotiate([b""], AVAILABLE) is None
    assert negotiate([b"identity"], AVAILABLE) is None


def test_x_gzip_is_gzip():
    assert negotiate([b"x-gzip"], AVAILABLE) == "gzip"


def test_malformed_weights_drop_the_entry_only():
    assert accepted_codings([b"br;q=2, gzip;q=abc, zstd;level=3, deflate;q=0.5"]) == {"deflate": 0.5}


def test_first_mention_of_a_coding_counts():
    assert accepted_codings([b"gzip;q=0, gzip"]) == {"gzip": 0.0}


def test_entries_past_the_cap_are_ignored():
    many = b",".join(b"c%d" % i for i in range(MAX_CODINGS)) + b",gzip"
    assert "gzip" not in accepted_codings([many])


def test_qvalue_grammar():
    for good, value in (("1", 1.0), ("1.000", 1.0), ("0", 0.0), ("0.5", 0.5), ("0.123", 0.123), (" 0.", 0.0)):
        assert parse_q(good) == value
    for bad in ("1.5", "1.001", "0.1234", "2", "-0", ".5", "", "q"):
        assert parse_q(bad) is None


@given(st.binary(max_size=200))
def test_any_bytes_give_a_choice_from_the_available_or_none(raw):
    assert negotiate([raw], AVAILABLE) in (*AVAILABLE, None)
