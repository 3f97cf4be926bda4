"""A strict reader of HTTP/1.1 requests as a backend receives them: anything an HTTP/1.1
server could read two ways fails an assertion (used by the smuggling tests on what
h2proxy writes to its backends)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TARGET = re.compile(rb"(?:/[\x21-\x7e]*|\*)")
_CHUNK_SIZE = re.compile(rb"[0-9a-fA-F]{1,16}")
_CONNECTION_SPECIFIC = {b"connection", b"keep-alive", b"proxy-connection", b"upgrade", b"te"}


@dataclass
class Request:
    method: bytes
    target: bytes
    fields: list[tuple[bytes, bytes]]
    body: bytes
    complete: bool


def read_request(data: bytes) -> tuple[Request, bytes]:
    """Parse one request from the start of C{data}; return it and what follows it.

    A request whose body is cut short (the connection was closed mid-body) comes back
    with C{complete=False}.
    """
    head, separator, rest = data.partition(b"\r\n\r\n")
    assert separator, f"no end of head in {data[:200]!r}"
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    assert len(parts) == 3, f"request line {lines[0]!r}"
    method, target, version = parts
    assert _TOKEN.fullmatch(method), method
    assert _TARGET.fullmatch(target), target
    assert version == b"HTTP/1.1", version
    fields = [_field(line) for line in lines[1:]]
    names = [name for name, _ in fields]
    assert names.count(b"host") == 1, names
    assert not _CONNECTION_SPECIFIC & {n for n in names if n != b"connection"}, names
    lengths = [value for name, value in fields if name == b"content-length"]
    codings = [value for name, value in fields if name == b"transfer-encoding"]
    assert not (lengths and codings), "both content-length and transfer-encoding"
    assert len(lengths) <= 1 and len(codings) <= 1, fields
    if codings:
        assert codings == [b"chunked"], codings
        body, rest, complete = _chunked(rest)
    elif lengths:
        assert lengths[0].isdigit(), lengths
        length = int(lengths[0])
        body, rest = rest[:length], rest[length:]
        complete = len(body) == length
    else:
        body, complete = b"", True
    return Request(method, target, fields, body, complete), rest


def _field(line: bytes) -> tuple[bytes, bytes]:
    name, colon, value = line.partition(b":")
    assert colon and _TOKEN.fullmatch(name), f"field line {line!r}"
    assert name == name.lower(), name
    value = value.strip(b" \t")
    assert all(c == 0x09 or 0x20 <= c != 0x7F for c in value), f"control in {line!r}"
    return name, value


def _chunked(data: bytes) -> tuple[bytes, bytes, bool]:
    body = bytearray()
    while True:
        line, separator, data = data.partition(b"\r\n")
        if not separator:
            return bytes(body), b"", False
        size = line.split(b";")[0]
        assert _CHUNK_SIZE.fullmatch(size), line
        length = int(size, 16)
        if length == 0:
            while True:
                trailer, separator, data = data.partition(b"\r\n")
                if not separator:
                    return bytes(body), b"", False
                if not trailer:
                    return bytes(body), data, True
                _field(trailer)
        if len(data) < length + 2:
            return bytes(body) + data[:length], b"", False
        assert data[length : length + 2] == b"\r\n"
        body += data[:length]
        data = data[length + 2 :]
