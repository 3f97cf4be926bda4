"""Consecutive DATA frames of one stream reach the stream as one chunk with one credit
(the frame buffer's DATA runs, L{h2proxy.frontend.http2.codec.framebuffer}: a short path), without changing what
the handler sees in order, what the client is credited, or the checks made per frame."""

from __future__ import annotations

import pytest
from hyperframe.frame import GoAwayFrame, RstStreamFrame, WindowUpdateFrame

from h2proxy.config.model import Http2Config
from h2proxy.frontend.http2.codec import MAX_DATA_RUN
from tests.frontend.frames import FrameFactory, requestHeaders
from tests.frontend.support import Server


def _post(factory: FrameFactory, streamID: int, length: int | None = None) -> bytes:
    extra = [(b"content-length", b"%d" % length)] if length is not None else []
    return factory.headers(streamID, requestHeaders(b"/up", b"POST", extra)).serialize()


def _opened(*streamIDs: int, settings: Http2Config | None = None) -> tuple[Server, FrameFactory]:
    server = Server(settings=settings)
    factory = FrameFactory()
    server.handshake(factory)
    server.feed(b"".join(_post(factory, streamID) for streamID in streamIDs))
    server.output()
    return server, factory


def _credit(frames, streamID: int) -> int:
    return sum(f.window_increment for f in frames if isinstance(f, WindowUpdateFrame) and f.stream_id == streamID)


@pytest.mark.short_paths
def test_frames_of_one_read_reach_the_handler_as_one_chunk():
    """When several DATA frames of one stream arrive in one read, the handler gets
    their bytes, in order, in one call."""
    server, factory = _opened(1)
    parts = [bytes([65 + n]) * 16384 for n in range(4)]
    server.feed(b"".join(factory.data(1, part).serialize() for part in parts))
    assert server.handlers[1].chunks == [b"".join(parts)]


@pytest.mark.short_paths
def test_frames_of_one_read_are_credited_in_full_once_handed_over():
    """When DATA frames worth more than half the windows arrive in one read, the
    handler gets them and the client is credited every byte, on the stream and on
    the connection, in one WINDOW_UPDATE each."""
    settings = Http2Config(initial_window_size=65535, connection_window_size=65535)
    server, factory = _opened(1, settings=settings)
    server.feed(b"".join(factory.data(1, b"c" * 16000).serialize() for _ in range(4)))
    frames = server.frames()
    assert server.handlers[1].body == b"c" * 64000
    assert _credit(frames, 1) == _credit(frames, 0) == 64000
    assert len([f for f in frames if isinstance(f, WindowUpdateFrame)]) == 2


@pytest.mark.short_paths
def test_interleaved_streams_each_get_their_own_chunks_in_order():
    """When the DATA frames of two streams alternate in one read, each handler gets
    only its own bytes, in order, one chunk per run of consecutive frames."""
    server, factory = _opened(1, 3)
    wire = [
        factory.data(1, b"a1"), factory.data(1, b"a2"), factory.data(3, b"b1"),
        factory.data(1, b"a3"), factory.data(3, b"b2"), factory.data(3, b"b3"),
    ]
    server.feed(b"".join(frame.serialize() for frame in wire))
    assert server.handlers[1].chunks == [b"a1a2", b"a3"]
    assert server.handlers[3].chunks == [b"b1", b"b2b3"]


@pytest.mark.short_paths
def test_end_stream_ends_the_run_after_its_data():
    """When the last frame of a run carries END_STREAM, the handler gets the data, then
    the end of the request."""
    server, factory = _opened(1)
    server.feed(factory.data(1, b"x" * 100).serialize() + factory.data(1, b"y" * 100, flags=["END_STREAM"]).serialize())
    handler = server.handlers[1]
    assert handler.calls == ["requestReceived", "requestDataReceived", "requestEnded"]
    assert handler.body == b"x" * 100 + b"y" * 100


@pytest.mark.short_paths
def test_a_run_is_at_most_max_data_run_bytes():
    """When one read carries more consecutive DATA than MAX_DATA_RUN, the handler gets
    it all, in order, in chunks no larger than MAX_DATA_RUN."""
    settings = Http2Config(initial_window_size=4 * MAX_DATA_RUN, connection_window_size=4 * MAX_DATA_RUN)
    server, factory = _opened(1, settings=settings)
    body = bytes(range(256)) * (3 * MAX_DATA_RUN // 256)
    server.feed(b"".join(factory.data(1, body[start : start + 16384]).serialize() for start in range(0, len(body), 16384)))
    chunks = server.handlers[1].chunks
    assert b"".join(chunks) == body
    assert len(chunks) == 3 and max(len(chunk) for chunk in chunks) <= MAX_DATA_RUN


@pytest.mark.short_paths
def test_content_length_overrun_within_a_run_resets_the_stream():
    """When a run of frames carries more than the declared content-length, the stream
    is reset PROTOCOL_ERROR and the handler is aborted without the excess."""
    server = Server()
    factory = FrameFactory()
    server.handshake(factory)
    server.feed(_post(factory, 1, length=10))
    server.output()
    server.feed(factory.data(1, b"a" * 6).serialize() + factory.data(1, b"b" * 6).serialize())
    resets = [f for f in server.frames() if isinstance(f, RstStreamFrame)]
    assert [(f.stream_id, f.error_code) for f in resets] == [(1, 1)]
    handler = server.handlers[1]
    assert handler.calls == ["requestReceived", "streamAborted"]
    assert len(handler.body) <= 10


def test_each_empty_frame_of_a_run_counts_as_a_glitch():
    """When a run holds empty DATA frames, each one is charged to the glitch budget:
    past the budget the connection is closed with ENHANCE_YOUR_CALM."""
    settings = Http2Config(glitch_budget=5)
    server, factory = _opened(1, settings=settings)
    server.feed(b"".join(factory.data(1, b"").serialize() for _ in range(10)))
    goaways = [f for f in server.frames() if isinstance(f, GoAwayFrame)]
    assert [f.error_code for f in goaways] == [11]
