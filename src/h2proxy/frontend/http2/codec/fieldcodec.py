"""HPACK for the hot path: response fields against the static table only, request
blocks of indexed fields by table lookup.

The hpack library is correct but costs about a quarter of a small request's CPU in
this proxy: its encoder searches the whole dynamic table for every field and logs a
debug line per field; its decoder walks a memoryview per field. Two narrow
replacements remove most of that without a second HPACK implementation:

- L{StaticTableEncoder} replaces h2's encoder. It never adds a response field to
  the dynamic table (nginx makes the same choice): a field is an index into the
  static table when the whole field is there (``:status: 200``), else a literal
  *without indexing* whose name, where it can, is a static-table index. Encoding
  therefore depends on nothing but the field, so the bytes of each field are
  cached (L{FieldCache}, L{FIELD_CACHE_ENTRIES} of them, process-wide) and a response head costs
  a few dictionary lookups. The price is a few bytes per field on the wire that the
  dynamic table would have saved on later responses. Values are Huffman-coded when
  that is shorter. Dynamic table size updates the client's SETTINGS call for are
  still emitted first in the next block, as hpack does. Fields that carry
  credentials (L{NEVER_INDEXED}) use the never-indexed form (RFC 7541 7.1.3), so an
  intermediary that re-encodes them must not index them either.
- L{IndexedBlockCache} decodes a request block made only of indexed fields (the
  common case of a client repeating requests: every field already in the table) by
  table lookups, with hpack's header-list size limit, and returns C{None} for any
  other block, which then goes to hpack's decoder. Such a block does not change the
  dynamic table, so either path leaves the decoder in the same state. Each
  connection has one, which remembers the blocks it decoded while its dynamic
  table does not change.
"""

from __future__ import annotations

from typing import Iterable

from hpack import Encoder, Decoder
from hpack.hpack import encode_integer
from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hpack.table import HeaderTable

from h2proxy.frontend.http2.codec import internals

#: Encoded fields (and names) a L{FieldCache} holds before it is emptied.
FIELD_CACHE_ENTRIES = 4096

#: Fields longer than this (name + value) are encoded each time, not cached.
MAX_CACHED_FIELD = 256

#: Response fields whose value is new in every response (the request id the proxy
#: adds): neither cached (they would only push the others out) nor Huffman-coded
#: (in Python that costs more than the dozen bytes it saves on an id).
UNIQUE_VALUE_FIELDS = frozenset({b"x-request-id"})

#: Response fields sent in the never-indexed form (RFC 7541 7.1.3): credentials.
NEVER_INDEXED = frozenset({b"set-cookie", b"authorization", b"proxy-authorization", b"cookie"})

_STATIC = HeaderTable.STATIC_TABLE
_STATIC_LENGTH = len(_STATIC)
_FULL_MATCH: dict[tuple[bytes, bytes], int] = {}
_NAME_MATCH: dict[bytes, int] = {}
for _index, (_name, _value) in enumerate(_STATIC, start=1):
    _FULL_MATCH.setdefault((_name, _value), _index)
    _NAME_MATCH.setdefault(_name, _index)

_HUFFMAN = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)
_LITERAL_WITHOUT_INDEXING = 0x00
_LITERAL_NEVER_INDEXED = 0x10
_HUFFMAN_FLAG = 0x80
_INDEXED = 0x80

class FieldCache:
    """Encoded fields and encoded names, each table emptied when it reaches
    C{entries} (a response header with ever-changing values, such as a date, must
    not grow it). Encoding depends on nothing but the field, so one cache serves
    every connection of the process (L{SHARED_FIELDS}): a new connection's first
    response is as cheap as the thousandth."""

    __slots__ = ("entries", "fields", "names")

    def __init__(self, entries: int = FIELD_CACHE_ENTRIES) -> None:
        self.entries = entries
        #: (name, value) -> the encoded field.
        self.fields: dict[tuple[bytes, bytes], bytes] = {}
        #: name -> the encoded name literal, for names outside the static table.
        self.names: dict[bytes, bytes] = {}

    def encodeAndKeep(self, name: bytes, value: bytes) -> bytes:
        """C{(name, value)} encoded, and kept unless it is over L{MAX_CACHED_FIELD}
        (the caller looked it up in C{fields} first)."""
        encoded = encode_field(name, value, self)
        if len(name) + len(value) <= MAX_CACHED_FIELD:
            if len(self.fields) >= self.entries:
                self.fields.clear()
            self.fields[(name, value)] = encoded
        return encoded

    def literalName(self, name: bytes) -> bytes:
        """A name outside the static table as a string literal, cached on its own: a
        field whose value changes with every response (x-request-id) misses the field
        cache but not this one."""
        encoded = self.names.get(name)
        if encoded is None:
            encoded = _string(name)
            if len(name) <= MAX_CACHED_FIELD:
                if len(self.names) >= self.entries:
                    self.names.clear()
                self.names[name] = encoded
        return encoded


def encode_field(name: bytes, value: bytes, cache: FieldCache) -> bytes:
    """One field, encoded without touching any dynamic table (a name literal from C{cache})."""
    index = _FULL_MATCH.get((name, value))
    if index is not None and name not in NEVER_INDEXED:
        return _integer(index, 7, _INDEXED)
    form = _LITERAL_NEVER_INDEXED if name in NEVER_INDEXED else _LITERAL_WITHOUT_INDEXING
    nameIndex = _NAME_MATCH.get(name)
    if nameIndex is not None:
        return _integer(nameIndex, 4, form) + _string(value)
    return bytes((form,)) + cache.literalName(name) + _string(value)


def _literal(name: bytes, value: bytes, cache: FieldCache) -> bytes:
    """A literal without indexing whose value is not Huffman-coded."""
    return bytes((_LITERAL_WITHOUT_INDEXING,)) + cache.literalName(name) + _integer(len(value), 7, 0) + value


def _integer(value: int, prefixBits: int, flags: int) -> bytes:
    encoded = encode_integer(value, prefixBits)
    encoded[0] |= flags
    return bytes(encoded)


def _string(data: bytes) -> bytes:
    """A string literal, Huffman-coded when that is shorter (RFC 7541 5.2)."""
    coded = _HUFFMAN.encode(data)
    if len(coded) < len(data):
        return _integer(len(coded), 7, _HUFFMAN_FLAG) + coded
    return _integer(len(data), 7, 0) + data


#: The cache every encoder of the process uses unless given its own.
SHARED_FIELDS = FieldCache()


class StaticTableEncoder(Encoder):
    """h2's HPACK encoder, encoding against the static table only (see the module
    docstring). Takes the field lists the front end builds: (name, value) pairs of
    lower-case bytes.

    @ivar cache: the encoded fields it reuses (L{SHARED_FIELDS} unless given one).
    """

    def __init__(self, cache: FieldCache = SHARED_FIELDS) -> None:
        super().__init__()
        self.cache = cache
        # Never filled (nothing is indexed): a list instead of hpack's deque, which
        # takes about 700 bytes of every connection even when empty.
        self.header_table.dynamic_entries = []  # type: ignore[assignment]

    def encode(self, headers: Iterable[tuple[bytes, bytes]], huffman: bool = True) -> bytes:  # type: ignore[override]
        parts = []
        if self.header_table.resized:
            parts.append(internals.tableSizeChange(self))
            self.header_table.resized = False
        cache = self.cache
        fields = cache.fields
        for field in headers:
            encoded = fields.get(field)  # type: ignore[call-overload]
            if encoded is None:
                name, value = field
                encoded = _literal(name, value, cache) if name in UNIQUE_VALUE_FIELDS else cache.encodeAndKeep(name, value)
            parts.append(encoded)
        return b"".join(parts)


def _indexed_fields(decoder: Decoder, data: bytes) -> tuple[list[tuple[bytes, bytes]], int] | None:
    """The fields of an indexed block and their header-list size, unchecked."""
    dynamic = decoder.header_table.dynamic_entries
    highest = _STATIC_LENGTH + len(dynamic)
    fields = []
    size = 0
    for byte in data:
        index = byte & 0x7F
        if byte < _INDEXED or index == 0 or index == 0x7F or index > highest:
            return None
        field = _STATIC[index - 1] if index <= _STATIC_LENGTH else dynamic[index - _STATIC_LENGTH - 1]
        size += len(field[0]) + len(field[1]) + 32
        fields.append(field)
    return fields, size


def _acceptable(decoder: Decoder, size: int) -> bool:
    """hpack's own checks of a decoded block: the header-list limit, and a table not
    larger than the peer may make it."""
    return size <= decoder.max_header_list_size and decoder.header_table_size <= decoder.max_allowed_table_size


#: Decoded blocks an L{IndexedBlockCache} holds before it is emptied.
INDEXED_BLOCK_ENTRIES = 32

#: Longest block an L{IndexedBlockCache} keeps (one byte per field).
MAX_CACHED_BLOCK = 64


class IndexedBlockCache:
    """The fields of a block made only of indexed fields with one-byte indices, or
    C{None} for any other block (including any error, so that hpack's decoder
    reports it, and a block over the decoder's C{max_header_list_size}), for one
    connection's decoder, remembering what each block meant: a client repeating a
    request sends the same bytes, which mean the same fields for as long as the
    dynamic table is unchanged. hpack changes that table only by adding an entry at
    its front or dropping entries at its end, so its first entry (held, and compared
    by identity) and its length tell whether it changed; when it did, everything
    remembered is forgotten.
    """

    __slots__ = ("blocks", "first", "length")

    def __init__(self) -> None:
        self.blocks: dict[bytes, tuple[list[tuple[bytes, bytes]], int]] = {}
        self.first: tuple[bytes, bytes] | None = None
        self.length = 0

    def decode(self, decoder: Decoder, data: bytes) -> list[tuple[bytes, bytes]] | None:
        """The block's fields (a list shared with later calls: not to be changed), or C{None}."""
        dynamic = decoder.header_table.dynamic_entries
        first = dynamic[0] if dynamic else None
        blocks = self.blocks
        if first is not self.first or len(dynamic) != self.length:
            blocks.clear()
            self.first, self.length = first, len(dynamic)
        decoded = blocks.get(data)
        if decoded is None:
            decoded = _indexed_fields(decoder, data)
            if decoded is None:
                return None
            if len(data) <= MAX_CACHED_BLOCK:
                if len(blocks) >= INDEXED_BLOCK_ENTRIES:
                    blocks.clear()
                blocks[data] = decoded
        if not _acceptable(decoder, decoded[1]):
            return None
        return decoded[0]
