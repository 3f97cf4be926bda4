"""The codec's own protocol errors, beside the h2 exceptions it re-exports."""

from __future__ import annotations

from h2.errors import ErrorCodes
from h2.exceptions import DenialOfServiceError, ProtocolError


class StreamError(ProtocolError):
    """A protocol error confined to one stream: answered with RST_STREAM."""

    def __init__(self, stream_id: int, error_code: ErrorCodes, message: str) -> None:
        super().__init__(message)
        self.stream_id = stream_id
        self.error_code = error_code


class CompressionError(ProtocolError):
    """A field block that cannot be decoded (RFC 9113 4.3); h2 calls it PROTOCOL_ERROR."""

    error_code = ErrorCodes.COMPRESSION_ERROR


class HeaderBlockFlood(DenialOfServiceError):
    """A header block over the frame-count or size cap while still arriving: a
    connection error ENHANCE_YOUR_CALM (the CONTINUATION flood)."""


def errorCode(value: int) -> ErrorCodes | int:
    """The ErrorCodes member of C{value}, or the bare integer for a code RFC 9113 does not define."""
    try:
        return ErrorCodes(value)
    except ValueError:
        return value
