"""The hot-path HPACK pieces: static-table encoding of responses, indexed-only
decoding of requests, and the short path of ServerConnection.send_headers."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import hpack
import pytest
from h2.stream import StreamState
from hpack import Decoder, Encoder, NeverIndexedHeaderTuple
from hypothesis import given, settings, strategies as st

from h2proxy.frontend.http2.codec.fieldcodec import FieldCache, IndexedBlockCache, StaticTableEncoder
from h2proxy.frontend.http2.codec.machine import ServerConnection
from tests.frontend.frames import requestHeaders

_names = st.one_of(
    st.sampled_from([b"content-type", b"content-length", b"server", b"set-cookie", b"x-request-id", b"etag", b"date"]),
    st.binary(min_size=1, max_size=20).map(lambda b: bytes(c % 26 + 97 for c in b)),
)
_values = st.one_of(
    st.sampled_from([b"", b"text/html", b"0", b"100", b"gzip"]),
    st.binary(max_size=300).map(lambda b: bytes(c % 95 + 32 for c in b)),
)
_fields = st.lists(st.tuples(_names, _values), max_size=12)
_statuses = st.sampled_from([b"200", b"204", b"304", b"404", b"500", b"418"])


@settings(max_examples=200, deadline=None)
@given(fields=_fields, status=_statuses)
def test_encoded_block_decodes_to_the_fields_without_indexing(fields, status):
    """When a response is encoded, hpack's decoder gives back exactly its fields and
    its dynamic table stays empty (nothing was indexed)."""
    block = StaticTableEncoder().encode([(b":status", status), *fields])
    decoder = Decoder()
    assert [tuple(f) for f in decoder.decode(block, raw=True)] == [(b":status", status), *fields]
    assert len(decoder.header_table.dynamic_entries) == 0


def test_static_table_fields_take_one_byte_and_cookies_are_never_indexed():
    """When a field is whole in the static table it is one index byte; set-cookie is
    sent in the never-indexed form."""
    encoder = StaticTableEncoder()
    assert encoder.encode([(b":status", b"200")]) == b"\x88"
    decoded = Decoder().decode(encoder.encode([(b"set-cookie", b"id=1")]), raw=True)
    assert isinstance(decoded[0], NeverIndexedHeaderTuple)


def test_table_size_change_is_signalled_first():
    """When the client changed SETTINGS_HEADER_TABLE_SIZE, the next block starts
    with the dynamic table size update, as hpack's encoder does."""
    encoder = StaticTableEncoder()
    encoder.header_table_size = 0
    block = encoder.encode([(b":status", b"200")])
    assert block == b"\x20\x88"
    assert encoder.encode([(b":status", b"200")]) == b"\x88"


def test_cache_is_bounded():
    """When more distinct fields and names than the caches hold are encoded, neither
    cache exceeds its size and every block still decodes."""
    cache = FieldCache(entries=8)
    encoder = StaticTableEncoder(cache)
    for n in range(50):
        fields = [(b"x-n", b"%d" % n), (b"x-name-%d" % n, b"v")]
        block = encoder.encode(fields)
        assert Decoder().decode(block, raw=True) == fields
        assert len(cache.fields) <= 8
        assert len(cache.names) <= 8


@settings(max_examples=200, deadline=None)
@given(fields=st.lists(st.tuples(_names, _values.filter(lambda v: len(v) < 100)), min_size=1, max_size=8))
def test_indexed_block_decodes_as_hpack_does(fields):
    """When a client repeats a request, the second block (all indexed) decodes to
    what hpack's decoder gives, and any other block is left to hpack."""
    encoder, decoder = Encoder(), Decoder()
    first = encoder.encode(fields)
    assert IndexedBlockCache().decode(decoder, first) in (None, [tuple(f) for f in Decoder().decode(first, raw=True)])
    decoder.decode(first, raw=True)
    second = encoder.encode(fields)
    expected = [tuple(f) for f in Decoder().decode(first, raw=True)]
    ours = IndexedBlockCache().decode(decoder, second)
    if all(byte & 0x80 and 0 < byte & 0x7F < 0x7F for byte in second):
        assert ours == expected
    else:
        assert ours is None
    assert [tuple(f) for f in decoder.decode(second, raw=True)] == expected


_requestFields = st.lists(
    st.tuples(st.sampled_from([b"accept", b"user-agent", b"x-a", b"x-b", b":path"]), st.sampled_from([b"1", b"2", b"/x"])),
    min_size=1,
    max_size=4,
)


@settings(max_examples=300, deadline=None)
@given(
    requests=st.lists(_requestFields, min_size=1, max_size=12),
    tableSize=st.sampled_from([0, 64, 120, 4096]),
    listLimit=st.sampled_from([60, 65536]),
)
def test_remembered_blocks_decode_as_hpack_does(requests, tableSize, listLimit):
    """When one connection's cache decodes a client's blocks in turn (repeats, new
    fields pushing old ones out of a small dynamic table, blocks over the list
    limit), every answer is hpack's fields or None, and hpack then decodes as if
    the cache had not been asked."""
    encoder = Encoder()
    encoder.header_table_size = tableSize
    ours, theirs = Decoder(max_header_list_size=listLimit), Decoder(max_header_list_size=listLimit)
    ours.header_table_size = theirs.header_table_size = 4096
    cache = IndexedBlockCache()
    for fields in requests + requests:
        block = encoder.encode(fields)
        try:
            expected = [tuple(f) for f in theirs.decode(block, raw=True)]
        except hpack.exceptions.HPACKError:
            expected = None
        got = cache.decode(ours, block)
        if got is None:
            try:
                got_full = [tuple(f) for f in ours.decode(block, raw=True)]
            except hpack.exceptions.HPACKError:
                got_full = None
            assert got_full == expected
        else:
            assert got == expected
        assert list(ours.header_table.dynamic_entries) == list(theirs.header_table.dynamic_entries)


def test_remembered_block_follows_the_dynamic_table():
    """When the same indexed bytes come after the dynamic table changed, they are
    decoded against the new table, not remembered."""
    decoder = Decoder()
    cache = IndexedBlockCache()
    decoder.decode(b"\x40\x01a\x011", raw=True)  # a: 1 enters the table at index 62
    assert cache.decode(decoder, b"\xbe") == [(b"a", b"1")]
    decoder.decode(b"\x40\x01b\x012", raw=True)  # b: 2 is now index 62
    assert cache.decode(decoder, b"\xbe") == [(b"b", b"2")]


@pytest.mark.parametrize(
    "block",
    [
        b"\x80",  # index 0
        b"\xff\x00",  # multi-byte index
        b"\xbe",  # index 62: dynamic table empty
        b"\x82\x40\x01a\x01b",  # a literal with indexing
        b"\x3f\xe1\x1f\x82",  # a table size update
    ],
)
def test_other_blocks_are_left_to_hpack(block):
    """When a block holds anything but valid one-byte indexed fields, the short path
    declines it (hpack then decodes it or reports the error)."""
    assert IndexedBlockCache().decode(Decoder(), block) is None


def test_oversized_list_is_left_to_hpack():
    """When indexed fields add up past max_header_list_size, the short path declines
    the block, so hpack raises its oversized-list error."""
    decoder = Decoder(max_header_list_size=45)
    assert IndexedBlockCache().decode(decoder, b"\x82") == [(b":method", b"GET")]
    assert IndexedBlockCache().decode(decoder, b"\x82\x84") is None


# -- ServerConnection.send_headers against h2's own -------------------------------------


def _server(cls: type, frameSize: int) -> h2.connection.H2Connection:
    """A server of C{cls} with stream 1 open; C{frameSize} is the client's
    SETTINGS_MAX_FRAME_SIZE."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    client.update_settings({h2.settings.SettingCodes.MAX_FRAME_SIZE: frameSize})
    client.send_headers(1, requestHeaders(b"/", b"POST"), end_stream=False)
    if cls is ServerConnection:
        server: h2.connection.H2Connection = ServerConnection(
            local_settings={}, header_list_hard_limit=65536, shortPaths=True
        )
    else:
        server = h2.connection.H2Connection(
            h2.config.H2Configuration(
                client_side=False,
                header_encoding=None,
                validate_inbound_headers=False,
                validate_outbound_headers=False,
                normalize_outbound_headers=False,
            )
        )
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    server.data_to_send()
    return server


def _client_view(output: bytes) -> list[tuple]:
    """What a client makes of a server's output: its events, as comparable tuples."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    client.decoder.max_header_list_size = 1 << 20
    client.send_headers(1, requestHeaders(b"/", b"POST"), end_stream=False)
    view: list[tuple] = []
    for frame in _frames(output):
        try:
            events = client.receive_data(frame)
        except h2.exceptions.ProtocolError as e:
            return view + [("error", type(e).__name__)]
        view += _comparable(events)
    return view


def _frames(output: bytes) -> list[bytes]:
    """Split a server's output into its frames."""
    frames = []
    while output:
        end = 9 + int.from_bytes(output[:3], "big")
        frames.append(output[:end])
        output = output[end:]
    return frames


def _comparable(events: list) -> list[tuple]:
    view: list[tuple] = []
    for event in events:
        if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived, h2.events.InformationalResponseReceived)):
            view.append((type(event).__name__, [tuple(f) for f in event.headers]))
        elif isinstance(event, (h2.events.StreamEnded, h2.events.DataReceived)):
            view.append((type(event).__name__,))
    return view


_heads = st.lists(
    st.tuples(st.sampled_from(["informational", "final", "data", "trailers", "end"]), _fields, st.booleans()),
    min_size=1,
    max_size=5,
)


@settings(max_examples=150, deadline=None)
@given(steps=_heads, status=_statuses, frameSize=st.sampled_from([16384, 16777215]))
def test_send_headers_matches_h2(steps, status, frameSize):
    """When a server sends any sequence of heads, data, trailers and ends, a client
    sees the same events as from h2's own send path, the stream is in the same
    state, and the same calls raise."""
    servers = [_server(ServerConnection, frameSize), _server(h2.connection.H2Connection, frameSize)]
    outputs: list[bytes] = [b"", b""]
    for kind, fields, end in steps:
        outcomes = []
        for index, server in enumerate(servers):
            try:
                _step(server, kind, fields, end, status)
                outcomes.append(None)
            except (h2.exceptions.ProtocolError, IndexError) as e:  # IndexError: h2 on an empty block
                outcomes.append(type(e))
            outputs[index] += server.data_to_send()
        assert outcomes[0] == outcomes[1]
        states = [_state(server) for server in servers]
        assert states[0] == states[1]
    assert _client_view(outputs[0]) == _client_view(outputs[1])


def _step(server: h2.connection.H2Connection, kind: str, fields: list, end: bool, status: bytes) -> None:
    if kind == "informational":
        server.send_headers(1, [(b":status", b"103"), *fields])
    elif kind == "final":
        server.send_headers(1, [(b":status", status), *fields], end_stream=end)
    elif kind == "trailers":
        server.send_headers(1, fields, end_stream=True)
    elif kind == "data":
        server.send_data(1, b"body", end_stream=end)
    else:
        server.end_stream(1)


def _state(server: h2.connection.H2Connection) -> StreamState | None:
    stream = server.streams.get(1)
    return stream.state_machine.state if stream is not None else None


def test_large_head_is_split_into_continuation_frames():
    """When a head is larger than the client's frame size, it goes out as HEADERS
    plus CONTINUATION frames that the client reassembles."""
    server = _server(ServerConnection, 16384)
    fields = [(b":status", b"200"), *[(b"x-big-%d" % n, b"v" * 4000) for n in range(10)]]
    server.send_headers(1, fields, end_stream=True)
    output = server.data_to_send()
    assert output[3] == 0x1 and output[4] == 0x1  # HEADERS with END_STREAM, without END_HEADERS
    assert _client_view(output) == [("ResponseReceived", fields), ("StreamEnded",)]
    assert server.streams[1].state_machine.state is StreamState.HALF_CLOSED_LOCAL


def test_table_size_changes_work_without_a_dynamic_table():
    """When the client shrinks the table to 0 and grows it again, the encoder (which
    keeps no entries) signals both sizes and goes on encoding."""
    encoder = StaticTableEncoder()
    encoder.header_table_size = 0
    encoder.header_table_size = 4096
    block = encoder.encode([(b":status", b"404")])
    decoder = Decoder()
    assert decoder.decode(block, raw=True) == [(b":status", b"404")]
    assert block.startswith(b"\x20")


def test_request_ids_are_sent_plain_and_not_cached():
    """When a response carries x-request-id, its value goes out as a plain literal
    (decodable, not Huffman-coded) and never enters the field cache."""
    cache = FieldCache()
    encoder = StaticTableEncoder(cache)
    block = encoder.encode([(b":status", b"200"), (b"x-request-id", b"0123456789abcdef")])
    assert Decoder().decode(block, raw=True) == [(b":status", b"200"), (b"x-request-id", b"0123456789abcdef")]
    assert block.endswith(b"\x100123456789abcdef")
    assert (b"x-request-id", b"0123456789abcdef") not in cache.fields
