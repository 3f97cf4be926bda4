"""The pure parts of static serving: Range parsing, validators and conditionals,
media types, and the path checks made before the file system is asked."""

from __future__ import annotations

import time

import pytest

from h2proxy.static import paths
from h2proxy.static.ranges import ByteRange, Unsatisfiable, parse_range
from h2proxy.static.types import DEFAULT_TYPE, content_type
from h2proxy.static.validators import Validators, not_modified, precondition_failed, range_applies

V = Validators.of(size=0x1A4, mtime=0x5F3A1B2C)
DATE = V.last_modified


@pytest.mark.parametrize("value, expected", [
    (b"bytes=10-19", ByteRange(10, 19, 100)),
    (b"bytes=90-", ByteRange(90, 99, 100)),
    (b"bytes=-5", ByteRange(95, 99, 100)),
    (b"bytes=-500", ByteRange(0, 99, 100)),
    (b"bytes=50-5000", ByteRange(50, 99, 100)),
    (b"BYTES = 1 - 2", ByteRange(1, 2, 100)),
])
def test_one_range_is_honoured(value, expected):
    assert parse_range(value, 100) == expected


@pytest.mark.parametrize("value", [b"bytes=1-2,5-6", b"items=1-2", b"bytes=5-1", b"bytes=-", b"bytes=a-b", b"nonsense"])
def test_several_or_malformed_ranges_mean_the_whole_file(value):
    assert parse_range(value, 100) is None


@pytest.mark.parametrize("value, size", [(b"bytes=100-", 100), (b"bytes=999999-", 100), (b"bytes=-0", 100), (b"bytes=-5", 0)])
def test_a_range_past_the_end_is_unsatisfiable(value, size):
    with pytest.raises(Unsatisfiable) as raised:
        parse_range(value, size)
    assert raised.value.content_range() == b"bytes */%d" % size


@pytest.mark.parametrize("value, expected", [
    (b"bytes=0-" + b"9" * 5000, ByteRange(0, 99, 100)),
    (b"bytes=-" + b"9" * 5000, ByteRange(0, 99, 100)),
    (b"bytes=" + b"0" * 5000 + b"5-6", ByteRange(5, 6, 100)),
])
def test_positions_of_any_length_are_read(value, expected):
    """Past Python's 4300-digit int conversion limit, a position is still a number
    larger than any file, not a ValueError."""
    assert parse_range(value, 100) == expected


def test_a_first_position_of_any_length_is_unsatisfiable():
    with pytest.raises(Unsatisfiable):
        parse_range(b"bytes=" + b"9" * 5000 + b"-", 100)


def test_content_range_names_the_bytes_sent():
    assert ByteRange(10, 19, 100).content_range() == b"bytes 10-19/100"


def test_the_etag_is_mtime_and_size_in_hex_like_nginx():
    assert V.etag == b'"5f3a1b2c-1a4"'
    assert Validators.of(size=0x1A4, mtime=0x5F3A1B2C, coding="gzip").etag == b'"5f3a1b2c-1a4-gzip"'
    assert DATE.endswith(b" GMT")


@pytest.mark.parametrize("headers, expected", [
    (((b"if-none-match", V.etag),), True),
    (((b"if-none-match", b'"x", W/' + V.etag),), True),
    (((b"if-none-match", b"*"),), True),
    (((b"if-none-match", b'"other"'),), False),
    (((b"if-none-match", b'"other"'), (b"if-modified-since", DATE)), False),
    (((b"if-modified-since", DATE),), True),
    (((b"if-modified-since", b"Thu, 01 Jan 1970 00:00:00 GMT"),), False),
    (((b"if-modified-since", b"yesterday"),), False),
    ((), False),
])
def test_not_modified_follows_rfc_9110(headers, expected):
    assert not_modified(headers, V) is expected


@pytest.mark.parametrize("field", [b"if-modified-since", b"if-unmodified-since", b"if-range"])
@pytest.mark.parametrize("date", [
    b"Sun, 06 Nov 99999999999 08:49:37 GMT", b"Sun, 06 Nov 1994 99999999999:49:37 GMT",
    b"Sun, 99999999999 Nov 1994 08:49:37 GMT",
])
def test_a_date_out_of_range_is_ignored_not_raised(field, date):
    """A date whose numbers overflow a C int is not an HTTP date: the condition is
    ignored (or, for If-Range, fails), instead of an OverflowError."""
    assert not_modified(((field, date),), V) is False
    assert precondition_failed(((field, date),), V) is False
    assert range_applies(((field, date),), V) is (field != b"if-range")


@pytest.mark.parametrize("date", [
    time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(V.mtime)).encode(),
    time.strftime("%A, %d-%b-%y %H:%M:%S GMT", time.gmtime(V.mtime)).encode(),
    time.asctime(time.gmtime(V.mtime)).encode(),
])
def test_every_http_date_format_is_understood(date):
    """RFC 9110 section 5.6.7: IMF-fixdate, rfc850-date and asctime-date, all GMT
    (asctime has no zone to name it)."""
    assert not_modified(((b"if-modified-since", date),), V) is True
    assert range_applies(((b"if-range", date),), V) is True


@pytest.mark.parametrize("headers, expected", [
    ((), True),
    (((b"if-range", V.etag),), True),
    (((b"if-range", b"W/" + V.etag),), False),
    (((b"if-range", b'"other"'),), False),
    (((b"if-range", DATE),), True),
    (((b"if-range", b"Thu, 01 Jan 1970 00:00:00 GMT"),), False),
])
def test_if_range_needs_a_strong_etag_or_the_exact_date(headers, expected):
    assert range_applies(headers, V) is expected


def test_if_range_with_a_date_of_this_very_second_sends_the_whole_file():
    """A Last-Modified within the response's own second is weak (RFC 9110 8.8.2.2):
    the file may change again within it, so an If-Range date cannot vouch for it;
    the strong ETag still can."""
    fresh = Validators.of(10, 1_000_000.5, now=1_000_000.9)
    aged = Validators.of(10, 1_000_000.5, now=1_000_001.0)
    date = fresh.last_modified
    assert (fresh.strongDate, aged.strongDate) == (False, True)
    assert range_applies(((b"if-range", date),), fresh) is False
    assert range_applies(((b"if-range", date),), aged) is True
    assert range_applies(((b"if-range", fresh.etag),), fresh) is True


@pytest.mark.parametrize("name, expected", [
    (b"/a/b.CSS", b"text/css; charset=utf-8"),
    (b"app.mjs", b"text/javascript; charset=utf-8"),
    (b"x.woff2", b"font/woff2"),
    (b"x.wasm", b"application/wasm"),
    (b"x.tar.gz", DEFAULT_TYPE),
    (b".bashrc", DEFAULT_TYPE),
    (b"README", DEFAULT_TYPE),
])
def test_content_type_comes_from_the_extension(name, expected):
    assert content_type(name) == expected


@pytest.mark.parametrize("path, relative, directory", [
    (b"/static/css/a.css?v=1", b"/css/a.css", False),
    (b"/static/", b"/", True),
    (b"/static", b"", False),
    (b"/static/a%20b.txt", b"/a b.txt", False),
    (b"/static/.well-known/x", b"/.well-known/x", False),
    (b"/static/a//b", b"/a//b", False),
])
def test_the_prefix_goes_and_the_rest_is_decoded_once(path, relative, directory):
    assert paths.requested(path, "/static") == paths.Requested(relative, directory)


def test_decoding_happens_once():
    assert paths.requested(b"/static/%252e%252e/x", "/static").relative == b"/%2e%2e/x"


@pytest.mark.parametrize("path", [
    b"/static/../x", b"/static/a/./b", b"/static/%2e%2e/x", b"/static/%2E./x", b"/static/a%2fb",
    b"/static/a%2F..%2Fb", b"/static/a%00", b"/static/a\\..\\b", b"/static/a%5cb", b"/static/..",
])
def test_paths_that_could_escape_are_refused(path):
    with pytest.raises(paths.Refused):
        paths.requested(path, "/static")
