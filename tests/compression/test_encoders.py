"""Streaming encoders: every flush decodes to exactly the input so far, the end
completes a valid stream, and each encoder's memory is bounded by fixed parameters."""

import zlib

import brotli
import pytest
import zstandard
from hypothesis import given, settings, strategies as st

from h2proxy.compression import encoders
from h2proxy.compression.encoders import CODINGS, new_encoder


class _Decoder:
    """An incremental decoder for one coding: bytes in, the decoded bytes out."""

    def __init__(self, coding: str) -> None:
        if coding == "gzip":
            zobj = zlib.decompressobj(16 + zlib.MAX_WBITS)
            self.feed = zobj.decompress
        elif coding == "br":
            self.feed = brotli.Decompressor().process
        else:
            self.feed = zstandard.ZstdDecompressor().decompressobj().decompress


def _text(seed: int, size: int) -> bytes:
    words = [b"proxy", b"stream", b"<div class=\"item\">", b"</div>", b"event", b"data:", b"\n"]
    return b" ".join(words[(seed * 7 + i * 13) % len(words)] + b"%d" % (i % 97) for i in range(size // 8))[:size]


@pytest.mark.parametrize("coding", CODINGS)
def test_a_body_round_trips(coding):
    body = _text(3, 200_000)
    encoder = new_encoder(coding, 6)
    out = b"".join(encoder.compress(body[i : i + 16384]) for i in range(0, len(body), 16384)) + encoder.finish()
    assert _Decoder(coding).feed(out) == body
    assert len(out) < len(body) / 3


@pytest.mark.parametrize("coding", CODINGS)
def test_an_empty_body_is_a_complete_stream(coding):
    encoder = new_encoder(coding, 6)
    assert _Decoder(coding).feed(encoder.finish()) == b""


@pytest.mark.parametrize("coding", CODINGS)
@settings(max_examples=40, deadline=None)
@given(chunks=st.lists(st.binary(max_size=3000) | st.sampled_from([b"data: tick\n\n", b"<p>hello</p>", b""]), max_size=12))
def test_after_each_flush_the_output_decodes_to_the_input_so_far(coding, chunks):
    encoder = new_encoder(coding, 6)
    decoder = _Decoder(coding)
    for chunk in chunks:
        decoded = decoder.feed(encoder.compress(chunk))
        assert decoded == chunk
    assert decoder.feed(encoder.finish()) == b""


def test_gzip_output_is_a_gzip_member_with_the_level_applied():
    body = _text(1, 50_000)
    fast, best = new_encoder("gzip", 1), new_encoder("gzip", 9)
    fastOut = fast.compress(body) + fast.finish()
    bestOut = best.compress(body) + best.finish()
    assert fastOut[:2] == b"\x1f\x8b" and zlib.decompress(fastOut, 16 + zlib.MAX_WBITS) == body
    assert len(bestOut) < len(fastOut)


def test_encoder_memory_is_bounded_by_fixed_parameters():
    """The windows that bound each encoder's memory are fixed: 32 KiB for gzip,
    256 KiB for br and zstd (zstd level 3 alone would take 2 MiB on long bodies)."""
    assert encoders.GZIP_WINDOW_BITS == 16 + 15 and encoders.GZIP_MEM_LEVEL == 8
    assert encoders.BROTLI_LGWIN == 18 and encoders.BROTLI_QUALITY == 4
    params = encoders.zstd_parameters()
    assert params.window_log == encoders.ZSTD_WINDOW_LOG == 18
    assert params.window_log < zstandard.ZstdCompressionParameters.from_level(3, source_size=1 << 30).window_log


def test_encoders_are_created_with_the_bounded_parameters(monkeypatch):
    """What each library is asked for when a response starts, not just the constants."""
    made = {}
    realZlib, realBrotli = encoders.zlib.compressobj, encoders.brotli.Compressor
    monkeypatch.setattr(encoders.zlib, "compressobj", lambda *a: made.setdefault("gzip", a) and realZlib(*a))
    monkeypatch.setattr(encoders.brotli, "Compressor", lambda **k: made.setdefault("br", k) and realBrotli(**k))
    new_encoder("gzip", 5)
    new_encoder("br", 5)
    assert made["gzip"] == (5, zlib.DEFLATED, 16 + 15, 8)
    assert made["br"] == {"mode": brotli.MODE_TEXT, "quality": 4, "lgwin": 18}


def test_a_zstd_frame_declares_the_bounded_window():
    encoder = new_encoder("zstd", 6)
    frame = encoder.compress(_text(2, 100_000)) + encoder.finish()
    assert zstandard.get_frame_parameters(frame).window_size <= 1 << encoders.ZSTD_WINDOW_LOG


def test_an_unknown_coding_is_refused_by_name():
    with pytest.raises(ValueError, match="'deflate'"):
        new_encoder("deflate", 6)
