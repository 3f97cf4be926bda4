"""Header blocks from hostile clients, in memory: CONTINUATION floods (2024), blocks
too large while still arriving, HPACK bombs (decoded size), and oversized lists. Each
is refused before anything reaches a handler."""

from __future__ import annotations

from h2.errors import ErrorCodes

from h2proxy.frontend.http2.connection import HEADER_LIST_HARD_LIMIT_FACTOR
from tests.frontend.frames import requestHeaders
from tests.hardening.support import Attacker, calmedDown, goaways, settings

E = ErrorCodes


def test_continuation_frames_over_the_cap_are_enhance_your_calm():
    """When a header block goes on past max_continuation_frames CONTINUATION frames, the connection gets GOAWAY ENHANCE_YOUR_CALM before the block is decoded."""
    attacker = Attacker(settings=settings(max_continuation_frames=8))
    streamID = attacker.streamID()
    frames = attacker.frames
    chunks = [frames.headers(streamID, block=b"", flags=[]).serialize()]
    chunks += [frames.continuation(streamID, b"\x00" * 10, flags=[]).serialize() for _ in range(9)]
    answer = attacker.feed(*chunks)
    assert calmedDown(attacker, answer)
    assert attacker.server.handlers == {}


def test_a_block_within_the_frame_cap_is_accepted():
    """When a header block arrives in as many CONTINUATION frames as allowed, the request is served."""
    attacker = Attacker(settings=settings(max_continuation_frames=8))
    streamID = attacker.streamID()
    block = attacker.frames.encode(requestHeaders(extra=[(b"x-long", b"v" * 80)]))
    pieces = [block[i : i + 10] for i in range(0, len(block), 10)][:9]
    pieces[-1] += block[10 * 9 :]
    frames = attacker.frames
    chunks = [frames.headers(streamID, block=pieces[0], flags=["END_STREAM"]).serialize()]
    chunks += [frames.continuation(streamID, p, flags=[]).serialize() for p in pieces[1:-1]]
    chunks.append(frames.continuation(streamID, pieces[-1]).serialize())
    attacker.feed(*chunks)
    assert attacker.server.handlers[streamID].head.path == b"/"


def test_a_block_over_the_hard_size_is_refused_while_arriving():
    """When the encoded header block grows past the hard limit (a multiple of max_header_list_size), the connection gets ENHANCE_YOUR_CALM without waiting for END_HEADERS."""
    limit = 1024
    attacker = Attacker(settings=settings(max_header_list_size=limit, max_continuation_frames=1000))
    streamID = attacker.streamID()
    frames = attacker.frames
    total = limit * HEADER_LIST_HARD_LIMIT_FACTOR + 1
    chunks = [frames.headers(streamID, block=b"", flags=[]).serialize()]
    chunks += [frames.continuation(streamID, b"\x00" * 1000, flags=[]).serialize() for _ in range(total // 1000 + 1)]
    answer = attacker.feed(*chunks)
    assert calmedDown(attacker, answer)


def test_an_hpack_bomb_is_enhance_your_calm():
    """When a small block decodes to a header list far over the limit (one table entry referenced thousands of times), the connection gets ENHANCE_YOUR_CALM and no handler runs."""
    attacker = Attacker()
    streamID = attacker.streamID()
    block = attacker.frames.encode(requestHeaders(extra=[(b"x-bomb", b"b" * 4000)])) + b"\xbe" * 4000
    answer = attacker.feed(attacker.block(streamID, block))
    assert calmedDown(attacker, answer)
    assert attacker.server.handlers == {}


def test_a_list_somewhat_over_the_limit_gets_431_and_no_handler():
    """When the decoded header list is over max_header_list_size but under the hard limit, the stream gets a 431 (a handler only records the refusal) and the connection serves on."""
    attacker = Attacker(settings=settings(max_header_list_size=2048))
    streamID = attacker.streamID()
    fields = requestHeaders(extra=[(b"x-big", b"v" * 3000)])
    answer = attacker.feed(attacker.block(streamID, attacker.frames.encode(fields)))
    assert attacker.statuses(answer) == {streamID: 431}
    assert [h.calls for h in attacker.server.handlers.values()] == [["requestRefused"]]  # its access log line only
    assert goaways(answer) == [] and not attacker.server.transport.disconnecting
