"""NegotiatingStream: the response head written through it decides whether the body
is encoded, whoever writes it; and static routes with compress go through it."""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass

from h2proxy.bridge.bridge import BridgeContext
from h2proxy.bridge.routing import Router
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


def negotiating(accept: bytes | None = b"gzip", bodyless: bool = False):
    inner, tally = RecordingStream(), Tally()
    accepted = (accept,) if accept is not None else ()
    return inner, tally, NegotiatingStream(inner, POLICY, accepted, bodyless, tally)


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
