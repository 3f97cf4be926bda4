"""The Range request field (RFC 9110 section 14.2), for one representation of a
known size. Only a single byte range is honoured: several ranges get the whole
representation (a 200), which the RFC allows, and spares a multipart body."""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Digits of a position past which it is larger than any file (2**63 has 19): read
#: as L{_BEYOND}, since Python refuses to convert more than 4300 digits.
_MAX_DIGITS = 19
_BEYOND = 10**_MAX_DIGITS

#: One byte range: ``first-last``, ``first-`` or ``-suffix``.
_SPEC = re.compile(rb"\s*(\d*)\s*-\s*(\d*)\s*")


@dataclass(frozen=True, slots=True)
class ByteRange:
    """The bytes C{first} to C{last} inclusive of a representation of C{size} bytes."""

    first: int
    last: int
    size: int

    @property
    def length(self) -> int:
        return self.last - self.first + 1

    def content_range(self) -> bytes:
        return b"bytes %d-%d/%d" % (self.first, self.last, self.size)


def _position(digits: bytes) -> int:
    """The number C{digits} spell, or L{_BEYOND} when it has more digits than any
    file size, so that a client's thousand-digit position cannot raise."""
    significant = digits.lstrip(b"0") or b"0"
    return int(significant) if len(significant) <= _MAX_DIGITS else _BEYOND


class Unsatisfiable(Exception):
    """The range names no byte of the representation: answered 416 with
    ``Content-Range: bytes */SIZE``."""

    def __init__(self, size: int) -> None:
        super().__init__(f"no byte of the {size} bytes is in the requested range")
        self.size = size

    def content_range(self) -> bytes:
        return b"bytes */%d" % self.size


def parse_range(value: bytes, size: int) -> ByteRange | None:
    """The single range C{value} asks for in a representation of C{size} bytes.

    C{None} means "send the whole representation": the field is malformed, not in
    bytes, or asks for several ranges. Raises L{Unsatisfiable} when the one range
    it asks for holds no byte of the representation."""
    unit, _, specs = value.partition(b"=")
    if unit.strip().lower() != b"bytes" or b"," in specs:
        return None
    match = _SPEC.fullmatch(specs)
    if match is None:
        return None
    first_text, last_text = match.groups()
    if first_text:
        first = _position(first_text)
        last = _position(last_text) if last_text else size - 1
        if last_text and last < first:
            return None
        if first >= size:
            raise Unsatisfiable(size)
        return ByteRange(first, min(last, size - 1), size)
    if not last_text:
        return None
    suffix = _position(last_text)
    if suffix == 0 or size == 0:
        raise Unsatisfiable(size)
    return ByteRange(max(0, size - suffix), size - 1, size)
