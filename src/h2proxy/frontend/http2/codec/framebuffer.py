"""Reading frames from the client's bytes: h2's frame buffer, with the frame
checks RFC 9113 words differently, caps on a header block still arriving, a
per-turn frame limit, and short paths for plain DATA and HEADERS frames.

@var MAX_DATA_RUN: body bytes of consecutive DATA frames handed over as one
    (L{ServerFrameBuffer.dataRun}).
@var MAX_FRAMES_PER_TURN: frames handled by one call of C{receive_data}. Ordinary
    traffic is far below it (a 64 KiB read holds four full DATA frames); a flood
    of tiny frames (HEADERS and RST_STREAM pairs: about 25 bytes each) stops here,
    a few milliseconds of work.
"""

from __future__ import annotations

from typing import Any

from h2.connection import ConnectionState
from h2.exceptions import FrameDataMissingError, ProtocolError
from h2.frame_buffer import FrameBuffer
from h2.stream import H2Stream
from hyperframe.frame import ContinuationFrame, DataFrame, Frame, HeadersFrame, PriorityFrame, WindowUpdateFrame

from h2proxy.frontend.http2.codec import internals, shortpaths
from h2proxy.frontend.http2.codec.errors import HeaderBlockFlood
from h2proxy.frontend.http2.codec.streams import DATA_RECEIVING_STATES
from h2proxy.frontend.http2.codec.wire import (
    ACK_FLAG,
    DATA_TYPE,
    END_HEADERS_FLAG,
    END_STREAM_FLAG,
    FRAME_HEADER,
    HEADERS_TYPE,
    PADDED_FLAG,
    PRIORITY_FLAG,
    PRIORITY_TYPE,
    SETTINGS_TYPE,
    STREAM_ID_MASK,
    WINDOW_INCREMENT,
    WINDOW_UPDATE_TYPE,
)

MAX_DATA_RUN = 256 * 1024
MAX_FRAMES_PER_TURN = 512

#: Frame types handed over without hyperframe when they are plain (see
#: L{PlainData} and L{PlainHeaders}).
PLAIN_FRAME_TYPES = frozenset({DATA_TYPE, HEADERS_TYPE})

_END_HEADERS = "END_HEADERS"
_HEADERS_FLAGS = frozenset({"END_HEADERS"})
_HEADERS_END_STREAM_FLAGS = frozenset({"END_HEADERS", "END_STREAM"})


class PlainData:
    """A DATA frame without padding, as L{ServerFrameBuffer} hands it over: the
    three things h2's receive path reads of one, without building hyperframe's
    object (its flags set and two copies of the payload)."""

    __slots__ = ("stream_id", "data", "end_stream")

    def __init__(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        self.stream_id = stream_id
        self.data = data
        self.end_stream = end_stream

    def toFrame(self) -> DataFrame:
        """hyperframe's frame, for h2's own path (unusual states and errors)."""
        return DataFrame(self.stream_id, self.data, flags=("END_STREAM",) if self.end_stream else ())


class PlainHeaders:
    """A HEADERS frame that carries a whole field block, without padding or
    priority: what h2's (and our) header handling reads of one (stream id, block,
    flags), without hyperframe's object."""

    __slots__ = ("stream_id", "data", "flags")

    def __init__(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        self.stream_id = stream_id
        self.data = data
        self.flags = _HEADERS_END_STREAM_FLAGS if end_stream else _HEADERS_FLAGS


class MisSizedPriorityFrame(PriorityFrame):
    """A PRIORITY frame whose length is not 5: a stream error (RFC 9113 6.3)."""


@internals.frameBufferHooks
class ServerFrameBuffer(FrameBuffer):
    """h2's frame buffer, with three frame checks RFC 9113 words differently and
    caps on a header block that is still arriving.

    @ivar glitches: empty header-block fragments seen (counted, then taken by the
        connection).
    @ivar turnFrames: frames handed out since the current C{receive_data} began.
    @ivar bodyStreams: the connection's h2 streams, and C{connectionMachine} its
        state machine (set by the connection; not the connection itself, which
        would make a reference cycle): consecutive DATA frames are joined only for
        a stream that takes the short path (L{receivingBody}).
    @ivar stoppedEarly: the last C{receive_data} stopped at L{MAX_FRAMES_PER_TURN}
        with bytes still buffered.
    @ivar plainTypes: the frame types parsed without hyperframe (none with the
        short paths off).
    """

    def __init__(self, *, max_continuation_frames: int, max_header_block: int, shortPaths: bool = shortpaths.ENABLED) -> None:
        super().__init__(server=True)
        self.max_continuation_frames = max_continuation_frames
        self.max_header_block = max_header_block
        self.glitches = 0
        self.turnFrames = 0
        self.stoppedEarly = False
        self.plainTypes = PLAIN_FRAME_TYPES if shortPaths else frozenset()
        self._blockSize = 0
        self._buffered = internals.bufferedBytes(self)
        self._pending = internals.pendingHeaderBlock(self)
        self.bodyStreams: dict[int, H2Stream] = {}
        self.connectionMachine: Any = None  # h2.connection.H2ConnectionStateMachine

    def receivingBody(self, stream_id: int) -> bool:
        """Whether DATA on C{stream_id} takes the connection's body short path now;
        for any other stream (closed, unusual) each frame keeps its own answer and
        glitch."""
        stream = self.bodyStreams.get(stream_id)
        return (
            stream is not None
            and self.connectionMachine.state is ConnectionState.SERVER_OPEN
            and stream.state_machine.state in DATA_RECEIVING_STATES
        )

    def updateHeaderBuffer(self, f: Frame | None) -> Frame | None:
        """h2's header-block assembly, with our caps instead of its 64-frame backlog
        (installed as h2's C{_update_header_buffer})."""
        pending = self._pending
        if not pending:
            if isinstance(f, HeadersFrame) and _END_HEADERS not in f.flags:
                self._blockSize = len(f.data)
                self._checkBlock(f, 0)
                pending.append(f)
                return None
            return internals.updateHeaderBuffer(self, f)
        if not isinstance(f, ContinuationFrame) or f.stream_id != pending[0].stream_id:
            raise ProtocolError("Invalid frame during header block.")
        self._blockSize += len(f.data)
        self._checkBlock(f, len(pending))
        if _END_HEADERS not in f.flags:
            pending.append(f)
            return None
        first = pending[0]
        first.flags.add(_END_HEADERS)
        first.data = b"".join([*(frame.data for frame in pending), f.data])
        pending.clear()
        return first

    def _checkBlock(self, frame: Frame, continuations: int) -> None:
        """Caps on the block so far; an empty fragment that does not end it is a glitch."""
        if continuations > self.max_continuation_frames:
            raise HeaderBlockFlood(
                f"header block of stream {frame.stream_id} exceeds {self.max_continuation_frames} CONTINUATION frames"
            )
        if self._blockSize > self.max_header_block:
            raise HeaderBlockFlood(
                f"header block of stream {frame.stream_id} exceeds {self.max_header_block} encoded bytes"
            )
        if not frame.data and _END_HEADERS not in frame.flags:
            self.glitches += 1

    def _plainFrame(self, kind: int, flags: int, streamID: int, end: int) -> PlainData | PlainHeaders | None:
        """The next frame as a L{PlainData} or L{PlainHeaders} if it is whole and
        plain (HEADERS: the whole block, no priority), else C{None}."""
        data = self._buffered
        if len(data) < end:
            return None
        if kind == DATA_TYPE:
            if end > 9 and not flags & END_STREAM_FLAG and self.receivingBody(streamID):
                return self.dataRun(streamID, end)
            plain: PlainData | PlainHeaders = PlainData(streamID, b"", bool(flags & END_STREAM_FLAG))
        elif flags & END_HEADERS_FLAG and not flags & PRIORITY_FLAG:
            plain = PlainHeaders(streamID, b"", bool(flags & END_STREAM_FLAG))
        else:
            return None
        with memoryview(data) as view:
            plain.data = bytes(view[9:end])
        del data[:end]
        return plain

    def dataRun(self, streamID: int, end: int) -> PlainData:
        """The plain, non-empty DATA frames of one open stream that follow each other
        in the buffer (the first ends at C{end}), up to one with END_STREAM and at
        most L{MAX_DATA_RUN} bytes, as one L{PlainData}: an upload's read holds a
        dozen 16 KiB frames, and each frame otherwise costs a dispatch, a state
        machine call, an event and a copy. Each frame still counts towards
        L{MAX_FRAMES_PER_TURN}."""
        data = self._buffered
        spans = [(9, end)]
        size = end - 9
        endStream = False
        available = len(data)
        while (
            available >= end + 9 and size < MAX_DATA_RUN and self.turnFrames < MAX_FRAMES_PER_TURN and not endStream
        ):
            high, low, kind, flags, nextID = FRAME_HEADER.unpack_from(data, end)
            length = (high << 8) + low
            if (
                kind != DATA_TYPE
                or (nextID & STREAM_ID_MASK) != streamID
                or flags & PADDED_FLAG
                or not length
                or length > self.max_frame_size
                or available < end + 9 + length
            ):
                break
            spans.append((end + 9, end + 9 + length))
            end += 9 + length
            size += length
            endStream = bool(flags & END_STREAM_FLAG)
            self.turnFrames += 1
        with memoryview(data) as view:
            payload = bytes(view[9:end]) if len(spans) == 1 else b"".join([view[a:b] for a, b in spans])
        del data[:end]
        return PlainData(streamID, payload, endStream)

    def __next__(self) -> Frame:
        data = self._buffered
        if self.turnFrames >= MAX_FRAMES_PER_TURN:
            self.stoppedEarly = len(data) >= 9
            raise StopIteration
        self.turnFrames += 1
        if len(data) >= 9 and not self._pending:
            high, low, kind, flags, streamID = FRAME_HEADER.unpack_from(data)
            length = (high << 8) + low
            streamID &= STREAM_ID_MASK
            if kind in self.plainTypes and not flags & PADDED_FLAG and streamID and length <= self.max_frame_size:
                plain = self._plainFrame(kind, flags, streamID, 9 + length)
                if plain is not None:
                    return plain  # type: ignore[return-value]
            if kind == PRIORITY_TYPE and length != 5 and streamID and len(data) >= 9 + length:
                # RFC 9113 6.3: hyperframe makes every size error a connection error.
                if length > self.max_frame_size:
                    return super().__next__()
                del data[: 9 + length]
                return MisSizedPriorityFrame(streamID)
            if kind == SETTINGS_TYPE and flags & ACK_FLAG and length:
                # RFC 9113 6.5: hyperframe calls this PROTOCOL_ERROR.
                raise FrameDataMissingError("SETTINGS ACK with a payload")
            if kind == WINDOW_UPDATE_TYPE and length == 4 and len(data) >= 13:
                increment = WINDOW_INCREMENT.unpack_from(data, 9)[0] & STREAM_ID_MASK
                if increment == 0 and streamID:
                    # RFC 9113 6.9: a stream error, which hyperframe cannot express.
                    del data[:13]
                    return WindowUpdateFrame(streamID, window_increment=0)
        return super().__next__()
