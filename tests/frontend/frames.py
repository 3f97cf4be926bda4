"""Building client frames and decoding server output, so tests speak in frames.

L{FrameFactory} builds what a client sends (with its own HPACK encoder, so header
blocks stay in step across a test); L{rawFrame} builds frames hyperframe refuses to
(bad lengths, reserved values); L{framesFromBytes} decodes server output into
hyperframe objects; L{ResponseDecoder} decodes the server's header blocks in order.
"""

from __future__ import annotations

import struct
from typing import Iterable

from hpack import Decoder, Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

Header = tuple[bytes, bytes]


def requestHeaders(path: bytes = b"/", method: bytes = b"GET", extra: Iterable[Header] = ()) -> list[Header]:
    """A valid request field list."""
    return [
        (b":method", method),
        (b":scheme", b"https"),
        (b":authority", b"example.org"),
        (b":path", path),
        *extra,
    ]


class FrameFactory:
    """Client frames, with one HPACK encoder for the whole connection."""

    def __init__(self) -> None:
        self.encoder = Encoder()

    def preamble(self) -> bytes:
        """The connection preface followed by an empty SETTINGS frame."""
        return PREFACE + self.settings().serialize()

    def encode(self, headers: Iterable[Header]) -> bytes:
        return self.encoder.encode(list(headers))

    def settings(self, settings: dict[int, int] | None = None, ack: bool = False) -> SettingsFrame:
        frame = SettingsFrame(0, settings=settings or {})
        if ack:
            frame.flags.add("ACK")
        return frame

    def headers(
        self,
        streamID: int,
        headers: Iterable[Header] | None = None,
        flags: Iterable[str] = ("END_HEADERS",),
        block: bytes | None = None,
        dependsOn: int | None = None,
        weight: int = 15,
        exclusive: bool = False,
    ) -> HeadersFrame:
        frame = HeadersFrame(streamID, flags=flags)
        frame.data = block if block is not None else self.encode(headers if headers is not None else requestHeaders())
        if dependsOn is not None:
            frame.flags.add("PRIORITY")
            frame.depends_on = dependsOn
            frame.stream_weight = weight
            frame.exclusive = exclusive
        return frame

    def continuation(self, streamID: int, block: bytes, flags: Iterable[str] = ("END_HEADERS",)) -> ContinuationFrame:
        frame = ContinuationFrame(streamID, flags=flags)
        frame.data = block
        return frame

    def data(self, streamID: int, data: bytes, flags: Iterable[str] = (), padLength: int | None = None) -> DataFrame:
        frame = DataFrame(streamID, data=data, flags=flags)
        if padLength is not None:
            frame.flags.add("PADDED")
            frame.pad_length = padLength
        return frame

    def windowUpdate(self, streamID: int, increment: int) -> WindowUpdateFrame:
        return WindowUpdateFrame(streamID, window_increment=increment)

    def rstStream(self, streamID: int, errorCode: int) -> RstStreamFrame:
        return RstStreamFrame(streamID, error_code=errorCode)

    def goAway(self, lastStreamID: int, errorCode: int = 0) -> GoAwayFrame:
        return GoAwayFrame(0, last_stream_id=lastStreamID, error_code=errorCode)

    def ping(self, data: bytes = b"12345678", ack: bool = False) -> PingFrame:
        frame = PingFrame(0, opaque_data=data)
        if ack:
            frame.flags.add("ACK")
        return frame

    def priority(self, streamID: int, dependsOn: int = 0, weight: int = 15, exclusive: bool = False) -> PriorityFrame:
        return PriorityFrame(streamID, depends_on=dependsOn, stream_weight=weight, exclusive=exclusive)


def rawFrame(kind: int, flags: int, streamID: int, payload: bytes, length: int | None = None) -> bytes:
    """A frame as bytes, with any length, type, flags and payload at all."""
    size = len(payload) if length is None else length
    return struct.pack(">HBBBL", size >> 8, size & 0xFF, kind, flags, streamID) + payload


def framesFromBytes(data: bytes) -> list[Frame]:
    """Decode a byte string of complete frames into hyperframe objects."""
    frames = []
    view = memoryview(data)
    while view:
        frame, length = Frame.parse_frame_header(view[:9])
        frame.parse_body(view[9 : 9 + length])
        frames.append(frame)
        view = view[9 + length :]
    return frames


class ResponseDecoder:
    """Decodes the server's header blocks, in order, with one HPACK context."""

    def __init__(self) -> None:
        self.decoder = Decoder()
        self._pending: bytes | None = None

    def feed(self, frames: Iterable[Frame]) -> list[tuple[int, list[Header], bool]]:
        """The complete header blocks among C{frames}: (stream, fields, end_stream)."""
        blocks = []
        for frame in frames:
            if isinstance(frame, HeadersFrame):
                self._pending = frame.data
                self._stream, self._end = frame.stream_id, "END_STREAM" in frame.flags
            elif isinstance(frame, ContinuationFrame):
                self._pending = (self._pending or b"") + frame.data
            else:
                continue
            if "END_HEADERS" in frame.flags:
                blocks.append((self._stream, self.decoder.decode(self._pending, raw=True), self._end))
                self._pending = None
        return blocks
