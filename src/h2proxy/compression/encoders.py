"""Streaming encoders for the content codings a route may compress responses in.

Each encoder compresses one response body chunk by chunk and flushes after every
chunk, so that whatever has gone out so far decodes to exactly the body so far:
server-sent events and HTML streamed as it is produced reach the client as they
happen, not when a compressor's buffer fills. L{Encoder.finish} writes the coding's
end (gzip's CRC and length, brotli's last meta-block, zstd's frame end).

Memory per encoder is bounded by fixed parameters, whatever the response's size
(measured as resident memory per live encoder after 400 KB of HTML, 200 at once):

  - gzip: zlib with a 32 KiB window (windowBits 15) and memLevel 8: about 210 KiB;
  - br: quality L{BROTLI_QUALITY} with a 2**L{BROTLI_LGWIN} = 256 KiB window: about
    1 MiB;
  - zstd: level L{ZSTD_LEVEL} with the window capped at 2**L{ZSTD_WINDOW_LOG} =
    256 KiB (level 3 alone would use up to 2 MiB for long bodies): about 1.1 MiB.

The route's ``level`` sets gzip's level only: brotli and zstd keep the streaming
settings above, which cost about what gzip level 6 costs per byte while giving
smaller output (bench/compression_cost.py measures it).
"""

from __future__ import annotations

import weakref
import zlib
from typing import Protocol

import brotli
import zstandard

#: The codings an encoder exists for, in the default order of preference.
CODINGS = ("br", "zstd", "gzip")

#: zlib's windowBits for a gzip wrapper around a 32 KiB window.
GZIP_WINDOW_BITS = 16 + 15
#: zlib's memLevel (its default): 128 KiB of hash state.
GZIP_MEM_LEVEL = 8
#: Brotli quality for streaming: the cheapest setting that still beats gzip -6.
BROTLI_QUALITY = 4
#: Brotli window: 2**18 bytes = 256 KiB.
BROTLI_LGWIN = 18
#: zstd level for streaming.
ZSTD_LEVEL = 3
#: zstd window: 2**18 bytes = 256 KiB.
ZSTD_WINDOW_LOG = 18
#: Responses one worker encodes at once; past it, eligible responses go as they are.
MAX_LIVE_ENCODERS = 128

#: What the coding libraries raise when they cannot encode (a fault in the library
#: or its use, not in the data: any bytes can be encoded).
CODING_ERRORS: tuple[type[Exception], ...] = (zlib.error, brotli.error, zstandard.ZstdError)


class Encoder(Protocol):
    """One response body being encoded."""

    coding: str

    def compress(self, data: bytes) -> bytes:
        """The encoded form of C{data}, flushed: with what came before, it decodes
        to every byte given so far."""

    def finish(self) -> bytes:
        """The coding's end; nothing may be compressed after it."""


class GzipEncoder:
    """gzip (RFC 1952) with a sync flush after each chunk."""

    coding = "gzip"

    def __init__(self, level: int) -> None:
        self._zlib = zlib.compressobj(level, zlib.DEFLATED, GZIP_WINDOW_BITS, GZIP_MEM_LEVEL)

    def compress(self, data: bytes) -> bytes:
        return self._zlib.compress(data) + self._zlib.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        return self._zlib.flush(zlib.Z_FINISH)


class BrotliEncoder:
    """br (RFC 7932) in text mode, flushed after each chunk."""

    coding = "br"

    def __init__(self) -> None:
        self._brotli = brotli.Compressor(mode=brotli.MODE_TEXT, quality=BROTLI_QUALITY, lgwin=BROTLI_LGWIN)

    def compress(self, data: bytes) -> bytes:
        return self._brotli.process(data) + self._brotli.flush()

    def finish(self) -> bytes:
        return self._brotli.finish()


def zstd_parameters() -> zstandard.ZstdCompressionParameters:
    """Level L{ZSTD_LEVEL} with the window capped at 2**L{ZSTD_WINDOW_LOG}."""
    return zstandard.ZstdCompressionParameters.from_level(ZSTD_LEVEL, window_log=ZSTD_WINDOW_LOG)


class ZstdEncoder:
    """zstd (RFC 8878), one frame, a block flushed after each chunk."""

    coding = "zstd"

    def __init__(self) -> None:
        compressor = zstandard.ZstdCompressor(compression_params=zstd_parameters())
        self._zstd = compressor.compressobj()

    def compress(self, data: bytes) -> bytes:
        return self._zstd.compress(data) + self._zstd.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)

    def finish(self) -> bytes:
        return self._zstd.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH)


def new_encoder(coding: str, level: int) -> Encoder:
    """An encoder for C{coding} (one of L{CODINGS}); C{level} is gzip's."""
    if coding == "gzip":
        return GzipEncoder(level)
    if coding == "br":
        return BrotliEncoder()
    if coding == "zstd":
        return ZstdEncoder()
    raise ValueError(f"no encoder for the content coding {coding!r}; expected one of {', '.join(CODINGS)}")


class EncoderBudget:
    """How many response bodies one worker encodes at once.

    Each live encoder holds up to about 1 MiB (see the module), so a client that
    opens many streams for compressible responses and reads them slowly could
    otherwise make a worker hold one per stream. Past the limit an eligible response
    goes as it is (still with ``Vary: Accept-Encoding``): correct, only larger.
    An encoder's place is given back when its body ends or, failing that (a reset,
    a client gone), when the encoder itself is freed.

    @ivar limit: the most encoders alive at once.
    @ivar live: how many are alive now.
    @ivar refused: how many encoders were not made because the budget was spent.
    """

    def __init__(self, limit: int = MAX_LIVE_ENCODERS) -> None:
        self.limit = limit
        self.live = 0
        self.refused = 0

    def encoder(self, coding: str, level: int) -> tuple[Encoder, weakref.finalize] | None:
        """A new encoder for C{coding} and the call that gives its place back (at
        most once; it also runs when the encoder is freed), or C{None} when
        L{limit} encoders are alive."""
        if self.live >= self.limit:
            self.refused += 1
            return None
        made = new_encoder(coding, level)
        self.live += 1
        return made, weakref.finalize(made, self._release)

    def _release(self) -> None:
        self.live -= 1
