"""HTTP/2 frames as bytes: the frame header the codec's short paths pack and
unpack themselves, and whole frames for the front end's few standalone answers.

The short paths write a frame as its 9-byte header (RFC 9113 4.1) and payload,
which is what hyperframe's C{serialize} produces for an unpadded frame without
priority; the property tests of L{machine} compare the two.
"""

from __future__ import annotations

import struct

from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from hyperframe.frame import GoAwayFrame, SettingsFrame

#: Length (24 bits as 16 + 8), type, flags, stream id (with the reserved bit).
FRAME_HEADER = struct.Struct(">HBBBL")
FRAME_HEADER_SIZE = 9
WINDOW_INCREMENT = struct.Struct(">L")

DATA_TYPE = 0x0
HEADERS_TYPE = 0x1
PRIORITY_TYPE = 0x2
SETTINGS_TYPE = 0x4
WINDOW_UPDATE_TYPE = 0x8
CONTINUATION_TYPE = 0x9

END_STREAM_FLAG = 0x1
ACK_FLAG = 0x1
END_HEADERS_FLAG = 0x4
PADDED_FLAG = 0x8
PRIORITY_FLAG = 0x20

STREAM_ID_MASK = 0x7FFFFFFF


def frameHeader(size: int, kind: int, flags: int, stream_id: int) -> bytes:
    """The 9-byte header of a frame with a C{size}-byte payload."""
    return FRAME_HEADER.pack(size >> 8, size & 0xFF, kind, flags, stream_id)


def windowUpdate(stream_id: int, increment: int) -> bytes:
    """A WINDOW_UPDATE frame (RFC 9113 6.9)."""
    return FRAME_HEADER.pack(0, 4, WINDOW_UPDATE_TYPE, 0, stream_id) + WINDOW_INCREMENT.pack(increment)


def settingsFrame(settings: dict[SettingCodes, int]) -> bytes:
    """A SETTINGS frame carrying C{settings} (RFC 9113 6.5)."""
    return SettingsFrame(0, settings=settings).serialize()


def goAwayFrame(last_stream_id: int, error_code: ErrorCodes, additional_data: bytes = b"") -> bytes:
    """A GOAWAY frame (RFC 9113 6.8)."""
    return GoAwayFrame(
        0, last_stream_id=last_stream_id, error_code=error_code, additional_data=additional_data
    ).serialize()
