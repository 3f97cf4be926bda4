"""NegotiatingStream: the response head written through it decides whether the body
is encoded, whoever writes it; and static routes with compress go through it."""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass

from h2proxy.bridge.bridge import BridgeContext
from h2proxy.bridge.routing import Router
from h2proxy.compression.encoders import EncoderBudget
from h2proxy.compression.policy import compression_policy
from h2proxy.compression.stream import NegotiatingStream
from h2proxy.config.compression import CompressionConfig
from h2proxy.config.model import RouteConfig
from h2proxy.config.static import StaticConfig
from h2proxy.message import ResponseHead
from h2proxy.static.reader import InlineIO
from tests.bridge.test_redirects import Recorder
from tests.static.support import RecordingStream, request

POLICY = compression_policy(CompressionConfig())
HTML = ResponseHead(200, ((b"content-type", b"text/html"), (b"content-length", b"4000")))
PAGE = b"<p>some text worth compressing</p>\n" * 200


@dataclass
class Tally:
    coding: str | None = None
    codingIn: int = 0
    codingOut: int = 0


def negotiating(accept: bytes | None = b"gzip", bodyless: bool = False, budget: EncoderBudget | None = None):
    inner, tally = RecordingStream(), Tally()
    fields = ((b"accept-encoding", accept),) if accept is not None else ()
    return inner, tally, NegotiatingStream(inner, POLICY, fields, bodyless, tally, budget or EncoderBudget())


def test_an_eligible_head_turns_the_encoder_on():
    inner, tally, stream = negotiating()
    stream.writeHeaders(HTML)
    stream.write(PAGE)
    stream.finish()
    assert inner.headers[b"content-encoding"] == b"gzip" and b"content-length" not in inner.headers
    assert gzip.decompress(inner.body) == PAGE and inner.ended
    assert (tally.coding, tally.codingIn) == ("gzip", len(PAGE))


def test_an_ineligible_head_leaves_the_body_alone():
    inner, tally, stream = negotiating()
    stream.writeHeaders(ResponseHead(206, HTML.headers + ((b"content-range", b"bytes 0-3999/9000"),)))
    stream.write(PAGE)
    stream.finish()
    assert b"content-encoding" not in inner.headers and inner.body == PAGE and tally.coding is None


def test_an_empty_body_claims_no_coding():
    """A 200 ending with its head (an empty file) has nothing to encode, and a
    zero-length body must not be labelled gzip."""
    inner, tally, stream = negotiating()
    stream.writeHeaders(ResponseHead(200, ((b"content-type", b"text/html"),)), endStream=True)
    assert b"content-encoding" not in inner.headers and inner.ended and tally.coding is None


def test_a_head_request_gets_the_head_a_get_would():
    inner, tally, stream = negotiating(bodyless=True)
    stream.writeHeaders(HTML, endStream=True)
    assert inner.headers[b"content-encoding"] == b"gzip" and inner.body == b"" and tally.codingIn == 0


def test_past_the_budget_an_eligible_body_goes_as_it_is_until_a_place_is_free():
    budget = EncoderBudget(limit=1)
    first, _, firstStream = negotiating(budget=budget)
    second, secondTally, secondStream = negotiating(budget=budget)
    firstStream.writeHeaders(HTML)
    secondStream.writeHeaders(HTML)
    secondStream.write(PAGE)
    secondStream.finish()
    assert first.headers[b"content-encoding"] == b"gzip"
    assert b"content-encoding" not in second.headers and second.headers[b"vary"] == b"Accept-Encoding"
    assert (second.body, secondTally.coding, budget.refused) == (PAGE, None, 1)
    firstStream.write(PAGE)
    firstStream.finish()
    assert budget.live == 0
    third, _, thirdStream = negotiating(budget=budget)
    thirdStream.writeHeaders(HTML)
    assert third.headers[b"content-encoding"] == b"gzip" and budget.live == 1


def test_a_response_that_never_ends_gives_its_place_back_when_freed():
    """A stream reset mid-body never finishes its coding; its encoder's place comes
    back when the wrapper (and so the encoder) is freed."""
    budget = EncoderBudget(limit=1)
    inner, _, stream = negotiating(budget=budget)
    stream.writeHeaders(HTML)
    stream.write(PAGE)
    stream.reset()
    assert budget.live == 1
    del stream
    assert budget.live == 0


def static_site(tmp_path, **compress):
    root = tmp_path / "site"
    root.mkdir()
    (root / "app.js").write_bytes(PAGE)
    (root / "style.css").write_bytes(PAGE)
    (root / "style.css.gz").write_bytes(gzip.compress(b"the sibling"))
    (root / "tiny.css").write_bytes(b"a{}")
    route = RouteConfig(path="/static", static=StaticConfig(root=str(root)), compress=CompressionConfig(**compress))
    return BridgeContext(router=Router((route,)), pools={}, staticIO=InlineIO(), observer=Recorder())


def test_a_static_file_without_sibling_is_compressed_on_the_fly(tmp_path):
    context = static_site(tmp_path)
    stream, _ = request(context, b"/static/app.js", headers=((b"accept-encoding", b"gzip"),))
    assert stream.status == 200 and stream.headers[b"content-encoding"] == b"gzip"
    assert stream.headers[b"etag"].startswith(b'W/"') and b"content-length" not in stream.headers
    assert zlib.decompress(stream.body, 16 + zlib.MAX_WBITS) == PAGE and stream.ended
    assert context.observer.finished[0].coding == "gzip"


def test_a_precompressed_sibling_is_sent_as_it_is(tmp_path):
    context = static_site(tmp_path)
    stream, _ = request(context, b"/static/style.css", headers=((b"accept-encoding", b"gzip"),))
    assert stream.headers[b"content-encoding"] == b"gzip"
    assert gzip.decompress(stream.body) == b"the sibling" and context.observer.finished[0].coding == ""


def test_small_files_ranges_and_plain_clients_are_sent_as_they_are(tmp_path):
    context = static_site(tmp_path)
    tiny, _ = request(context, b"/static/tiny.css", headers=((b"accept-encoding", b"gzip"),))
    ranged, _ = request(context, b"/static/app.js", headers=((b"accept-encoding", b"gzip"), (b"range", b"bytes=0-9")))
    plain, _ = request(context, b"/static/app.js")
    assert (tiny.status, tiny.body, b"content-encoding" in tiny.headers) == (200, b"a{}", False)
    assert (ranged.status, ranged.body, b"content-encoding" in ranged.headers) == (206, PAGE[:10], False)
    assert (plain.status, plain.body, plain.headers[b"vary"]) == (200, PAGE, b"Accept-Encoding")


def test_a_304_for_the_encoded_variant_names_its_weak_etag_whoever_writes_it():
    """A backend's 304 (head, then finish) and a static one (head ending the
    stream) both carry the ETag and Vary the encoded 200 had."""
    for endStream in (False, True):
        inner, tally = RecordingStream(), Tally()
        fields = ((b"accept-encoding", b"gzip"), (b"if-none-match", b'W/"v1"'))
        stream = NegotiatingStream(inner, POLICY, fields, False, tally, EncoderBudget())
        stream.writeHeaders(ResponseHead(304, ((b"etag", b'"v1"'),)), endStream)
        assert inner.headers[b"etag"] == b'W/"v1"' and inner.headers[b"vary"] == b"Accept-Encoding"
        assert tally.coding is None
