"""h2's connection state machine, adjusted to the error split RFC 9113 asks of a server.

h2 (pinned <5) is a fine sans-I/O state machine, but as a server in front of many
clients a few of its choices do not fit, and they all live in private hooks this
module overrides (every override says which rule it restores):

- Inbound header validation is off (``validate_inbound_headers=False``) and done by
  L{h2proxy.frontend.http2.validation}, because h2 turns a malformed request into a
  *connection* error. For the same reason h2's content-length tracking is disabled
  (the stream checks it, as a stream error), and trailers without END_STREAM, a
  stream depending on itself and streams over SETTINGS_MAX_CONCURRENT_STREAMS are
  stream errors here (RFC 9113 8.1, 5.3.1, 5.1.2) instead of connection errors.
- Every field block is HPACK-decoded before any other check, even for a stream that
  is then refused or already closed: skipping one would leave the decoder out of
  step with the client (RFC 9113 4.3).
- A client GOAWAY neither closes h2's state machine nor throws away queued output:
  the streams the client already opened must still be answered (RFC 9113 6.8).
- Frames that arrive for a stream *we* reset are ignored (RFC 9113 5.1, "closed");
  frames after the client's own RST_STREAM get RST_STREAM STREAM_CLOSED; frames
  after both sides ended the stream are a connection error STREAM_CLOSED.
- Missing checks are added: the first frame must be SETTINGS (3.4); RST_STREAM on an
  idle stream is a connection error (6.4); a zero WINDOW_UPDATE on a stream is a
  stream error (6.9); SETTINGS ACK with a payload is FRAME_SIZE_ERROR (6.5).
- The decoder's hard header-list limit stays at the "absurd" threshold given by the
  front end, so that a merely-too-large request can get a polite 431 while an HPACK
  bomb is still a connection error ENHANCE_YOUR_CALM.
- GOAWAY on a connection error names the last stream the front end accepted, not
  the last one the client tried to open.
- A header block is bounded while it is still arriving (the CONTINUATION flood of
  2024): at most C{max_continuation_frames} CONTINUATION frames and at most the
  hard header-list limit in encoded bytes, else a connection error
  ENHANCE_YOUR_CALM, before any of it is decoded. h2's own cap (64 frames, of any
  size) is replaced by these.
- One call of C{receive_data} handles at most L{MAX_FRAMES_PER_TURN} frames; the
  rest stays buffered (L{ServerConnection.inputPending}) for the front end to
  feed on at its next turn, so one connection's flood cannot hold the reactor.
- Frames that cost work and serve no request are counted as "glitches" for the
  front end's budget (L{ServerConnection.takeGlitches}): standalone PRIORITY frames,
  empty header-block fragments, streams refused over the concurrency limit, and
  every frame answered with RST_STREAM (stream errors, frames on closed streams).
"""

from __future__ import annotations

import struct
import weakref
from typing import Any

from h2.config import H2Configuration
from h2.connection import AllowedStreamIDs, ConnectionInputs, ConnectionState, H2Connection, _decode_headers
from h2.errors import ErrorCodes
from h2.events import ConnectionTerminated, Event, StreamReset
from h2.exceptions import (
    DenialOfServiceError,
    FrameDataMissingError,
    ProtocolError,
    StreamClosedError,
    StreamIDTooLowError,
)
from h2.frame_buffer import FrameBuffer
from h2.settings import SettingCodes, Settings
from h2 import stream as h2stream
from h2.stream import H2Stream, H2StreamStateMachine, StreamClosedBy, StreamInputs, StreamState
from hyperframe.frame import (
    AltSvcFrame,
    ContinuationFrame,
    DataFrame,
    ExtensionFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    PushPromiseFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from h2proxy.frontend.http2.codec.fieldcodec import StaticTableEncoder, decode_indexed_block

_FRAME_HEADER = struct.Struct(">HBBBL")
_WINDOW_INCREMENT = struct.Struct(">L")
_DATA_TYPE = 0x0
_HEADERS_TYPE = 0x1
_CONTINUATION_TYPE = 0x9
_END_STREAM_FLAG = 0x1
_END_HEADERS_FLAG = 0x4
_PADDED_FLAG = 0x8
_PRIORITY_FLAG = 0x20
_PRIORITY_TYPE = 0x2
_SETTINGS_TYPE = 0x4
_WINDOW_UPDATE_TYPE = 0x8
_ACK_FLAG = 0x1
_END_HEADERS = "END_HEADERS"

#: Body bytes of consecutive DATA frames handed over as one (L{_FrameBuffer._dataRun}).
MAX_DATA_RUN = 256 * 1024

#: Frames handled by one call of C{receive_data}. Ordinary traffic is far below it
#: (a 64 KiB read holds four full DATA frames); a flood of tiny frames (HEADERS and
#: RST_STREAM pairs: about 25 bytes each) stops here, a few milliseconds of work.
MAX_FRAMES_PER_TURN = 512


#: Frame types L{_FrameBuffer} hands over without hyperframe when they are plain
#: (see L{_PlainData} and L{_PlainHeaders}).
_SHORT_PATHS = frozenset({_DATA_TYPE, _HEADERS_TYPE})

_HEADERS_FLAGS = frozenset({"END_HEADERS"})
_HEADERS_END_STREAM_FLAGS = frozenset({"END_HEADERS", "END_STREAM"})

#: Stream states in which a DATA frame may go out without changing the stream's state.
_DATA_SENDING_STATES = frozenset({StreamState.OPEN, StreamState.HALF_CLOSED_REMOTE})

#: Stream states in which a DATA frame from the client is body (h2's RECV_DATA is valid).
_DATA_RECEIVING_STATES = frozenset({StreamState.OPEN, StreamState.HALF_CLOSED_LOCAL})

#: Stream states in which a HEADERS frame from the client is a trailer block.
_TRAILERS_STATES = frozenset({StreamState.OPEN, StreamState.HALF_CLOSED_LOCAL})


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


#: Stream states that count against SETTINGS_MAX_CONCURRENT_STREAMS (h2's C{STREAM_OPEN}).
_OPEN_STATES = frozenset({StreamState.OPEN, StreamState.HALF_CLOSED_LOCAL, StreamState.HALF_CLOSED_REMOTE})


#: h2's stream transitions keyed by the (state, input) members' integer values.
_TRANSITIONS = {(state._value_, input_._value_): entry for (state, input_), entry in h2stream._transitions.items()}


class _CountingStateMachine(H2StreamStateMachine):
    """h2's stream state machine, reporting to the connection when its stream starts
    or stops counting as open and when it closes, so that the connection keeps a
    count instead of scanning every stream for each new one (h2's C{_open_streams})."""

    def __init__(self, stream_id: int, connection: ServerConnection) -> None:
        super().__init__(stream_id)
        # Weak: a strong reference made every connection a reference cycle (connection
        # -> streams -> state machine -> connection) that only the cyclic collector
        # could free, and closed connections piled up between its rare full passes.
        self._connection = weakref.ref(connection)

    def process_input(self, input_: StreamInputs) -> list[Event]:
        """h2's transition, looked up by the members' integer values: h2's table is
        keyed by (state, input) enum pairs, and each lookup hashed both through
        C{Enum.__hash__} in Python (four transitions per request). Inputs h2 does
        not know from this state go through h2's own method, for its error."""
        before = self.state
        transition = _TRANSITIONS.get((before._value_, input_._value_)) if type(input_) is StreamInputs else None
        try:
            if transition is None:
                return super().process_input(input_)
            function, self.state = transition
            if function is None:
                return []
            try:
                return function(self, before)
            except ProtocolError:
                self.state = StreamState.CLOSED
                raise
            except AssertionError as e:  # pragma: no cover - h2's own guard
                self.state = StreamState.CLOSED
                raise ProtocolError(e) from e
        finally:
            if self.state is not before:
                connection = self._connection()
                if connection is not None:
                    connection._streamStateChanged(self.stream_id, before, self.state)


class _ServerStream(H2Stream):
    """h2's stream without its own request validation (see the module docstring),
    whose state changes are counted by its connection."""

    def __init__(self, stream_id: int, *, connection: ServerConnection, **kw) -> None:  # type: ignore[no-untyped-def]
        super().__init__(stream_id, **kw)
        self.state_machine = _CountingStateMachine(stream_id, connection)

    def receive_headers(self, headers, end_stream, header_encoding):  # type: ignore[override]
        """A request or trailer block; a server never receives 1xx heads, so h2's
        informational branch (a connection error for a stray ``:status``) is
        skipped and validation.py reports such a request as malformed."""
        if not end_stream and self.state_machine.state in _TRAILERS_STATES:
            raise StreamError(self.stream_id, ErrorCodes.PROTOCOL_ERROR, "trailers without END_STREAM")
        events = self.state_machine.process_input(StreamInputs.RECV_HEADERS)
        if end_stream:
            ended = self.state_machine.process_input(StreamInputs.RECV_END_STREAM)
            events[0].stream_ended = ended[0]  # type: ignore[attr-defined]
            events += ended
        events[0].headers = list(headers)  # type: ignore[attr-defined]
        return [], events

    def _track_content_length(self, length: int, end_stream: bool) -> None:
        """Content-length is checked by the front end's stream, as a stream error."""


class _PlainData:
    """A DATA frame without padding, as L{_FrameBuffer} hands it over: the three
    things h2's receive path reads of one, without building hyperframe's object
    (its flags set and two copies of the payload)."""

    __slots__ = ("stream_id", "data", "end_stream")

    def __init__(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        self.stream_id = stream_id
        self.data = data
        self.end_stream = end_stream

    def toFrame(self) -> DataFrame:
        """hyperframe's frame, for h2's own path (unusual states and errors)."""
        return DataFrame(self.stream_id, self.data, flags=("END_STREAM",) if self.end_stream else ())


class _PlainHeaders:
    """A HEADERS frame that carries a whole field block, without padding or
    priority: what h2's (and our) header handling reads of one (stream id, block,
    flags), without hyperframe's object."""

    __slots__ = ("stream_id", "data", "flags")

    def __init__(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        self.stream_id = stream_id
        self.data = data
        self.flags = _HEADERS_END_STREAM_FLAGS if end_stream else _HEADERS_FLAGS


class _MisSizedPriorityFrame(PriorityFrame):
    """A PRIORITY frame whose length is not 5: a stream error (RFC 9113 6.3)."""


class _FrameBuffer(FrameBuffer):
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
    """

    def __init__(self, *, max_continuation_frames: int, max_header_block: int) -> None:
        super().__init__(server=True)
        self.max_continuation_frames = max_continuation_frames
        self.max_header_block = max_header_block
        self.glitches = 0
        self.turnFrames = 0
        self.stoppedEarly = False
        self._blockSize = 0
        self.bodyStreams: dict[int, H2Stream] = {}
        self.connectionMachine: Any = None  # h2.connection.H2ConnectionStateMachine

    def receivingBody(self, stream_id: int) -> bool:
        """Whether DATA on C{stream_id} takes L{ServerConnection._receive_plain_data}'s
        short path now; for any other stream (closed, unusual) each frame keeps its
        own answer and glitch."""
        stream = self.bodyStreams.get(stream_id)
        return (
            stream is not None
            and self.connectionMachine.state is ConnectionState.SERVER_OPEN
            and stream.state_machine.state in _DATA_RECEIVING_STATES
        )

    def _update_header_buffer(self, f: Frame | None) -> Frame | None:
        """h2's header-block assembly, with our caps instead of its 64-frame backlog."""
        pending = self._headers_buffer
        if not pending:
            if isinstance(f, HeadersFrame) and _END_HEADERS not in f.flags:
                self._blockSize = len(f.data)
                self._checkBlock(f, 0)
                pending.append(f)
                return None
            return super()._update_header_buffer(f)
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

    def _plainFrame(self, kind: int, flags: int, streamID: int, end: int) -> _PlainData | _PlainHeaders | None:
        """The next frame as a L{_PlainData} or L{_PlainHeaders} if it is whole and
        plain (HEADERS: the whole block, no priority), else C{None}."""
        data = self._data
        if len(data) < end:
            return None
        if kind == _DATA_TYPE:
            if end > 9 and not flags & _END_STREAM_FLAG and self.receivingBody(streamID):
                return self._dataRun(streamID, end)
            plain: _PlainData | _PlainHeaders = _PlainData(streamID, b"", bool(flags & _END_STREAM_FLAG))
        elif flags & _END_HEADERS_FLAG and not flags & _PRIORITY_FLAG:
            plain = _PlainHeaders(streamID, b"", bool(flags & _END_STREAM_FLAG))
        else:
            return None
        with memoryview(data) as view:
            plain.data = bytes(view[9:end])
        del data[:end]
        return plain

    def _dataRun(self, streamID: int, end: int) -> _PlainData:
        """The plain, non-empty DATA frames of one open stream that follow each other
        in the buffer (the first ends at C{end}), up to one with END_STREAM and at
        most L{MAX_DATA_RUN} bytes, as one L{_PlainData}: an upload's read holds a
        dozen 16 KiB frames, and each frame otherwise costs a dispatch, a state
        machine call, an event and a copy. Each frame still counts towards
        L{MAX_FRAMES_PER_TURN}."""
        data = self._data
        spans = [(9, end)]
        size = end - 9
        endStream = False
        available = len(data)
        while (
            available >= end + 9 and size < MAX_DATA_RUN and self.turnFrames < MAX_FRAMES_PER_TURN and not endStream
        ):
            high, low, kind, flags, nextID = _FRAME_HEADER.unpack_from(data, end)
            length = (high << 8) + low
            if (
                kind != _DATA_TYPE
                or (nextID & 0x7FFFFFFF) != streamID
                or flags & _PADDED_FLAG
                or not length
                or length > self.max_frame_size
                or available < end + 9 + length
            ):
                break
            spans.append((end + 9, end + 9 + length))
            end += 9 + length
            size += length
            endStream = bool(flags & _END_STREAM_FLAG)
            self.turnFrames += 1
        with memoryview(data) as view:
            payload = bytes(view[9:end]) if len(spans) == 1 else b"".join([view[a:b] for a, b in spans])
        del data[:end]
        return _PlainData(streamID, payload, endStream)

    def __next__(self) -> Frame:
        data = self._data
        if self.turnFrames >= MAX_FRAMES_PER_TURN:
            self.stoppedEarly = len(data) >= 9
            raise StopIteration
        self.turnFrames += 1
        if len(data) >= 9 and not self._headers_buffer:
            high, low, kind, flags, streamID = _FRAME_HEADER.unpack_from(data)
            length = (high << 8) + low
            streamID &= 0x7FFFFFFF
            if kind in _SHORT_PATHS and not flags & _PADDED_FLAG and streamID and length <= self.max_frame_size:
                plain = self._plainFrame(kind, flags, streamID, 9 + length)
                if plain is not None:
                    return plain
            if kind == _PRIORITY_TYPE and length != 5 and streamID and len(data) >= 9 + length:
                # RFC 9113 6.3: hyperframe makes every size error a connection error.
                if length > self.max_frame_size:
                    return super().__next__()
                del data[: 9 + length]
                return _MisSizedPriorityFrame(streamID)
            if kind == _SETTINGS_TYPE and flags & _ACK_FLAG and length:
                # RFC 9113 6.5: hyperframe calls this PROTOCOL_ERROR.
                raise FrameDataMissingError("SETTINGS ACK with a payload")
            if kind == _WINDOW_UPDATE_TYPE and length == 4 and len(data) >= 13:
                increment = _WINDOW_INCREMENT.unpack_from(data, 9)[0] & 0x7FFFFFFF
                if increment == 0 and streamID:
                    # RFC 9113 6.9: a stream error, which hyperframe cannot express.
                    del data[:13]
                    return WindowUpdateFrame(streamID, window_increment=0)
        return super().__next__()


class _Output:
    """h2's outgoing bytes, kept as the list of pieces they were queued as: ``+=``
    keeps a reference instead of copying into a bytearray (a DATA payload is a
    memoryview of the stream's chunk), and one join makes the bytes to write. That
    is one copy of every response byte fewer than h2's bytearray, which was copied
    in and then copied out again by C{data_to_send}."""

    __slots__ = ("parts", "size")

    def __init__(self) -> None:
        self.parts: list[bytes | bytearray | memoryview] = []
        self.size = 0

    def __iadd__(self, data: bytes | bytearray | memoryview) -> _Output:
        if data:
            self.parts.append(data)
            self.size += len(data)
        return self

    def __len__(self) -> int:
        return self.size

    def take(self) -> bytes:
        """Everything queued, as one bytes object; the buffer is empty afterwards."""
        parts = self.parts
        data = parts[0] if len(parts) == 1 and type(parts[0]) is bytes else b"".join(parts)
        self.parts = []
        self.size = 0
        return data  # type: ignore[return-value]


class _Values(list):  # type: ignore[type-arg]
    """The stack of values of one setting (current first, then those awaiting an
    acknowledgement): the one deque method h2's L{Settings} uses, on a list."""

    __slots__ = ()

    def popleft(self) -> int | None:
        return self.pop(0)


class CompactSettings(Settings):
    """h2's L{Settings}, keeping each setting's values in a short list instead of a
    C{collections.deque}: a deque takes over 600 bytes even for one value, and two
    settings objects of a dozen entries made up about 10 KiB of every idle
    connection."""

    def __init__(self, client: bool = True, initial_values: dict[SettingCodes, int] | None = None) -> None:
        super().__init__(client=client, initial_values=initial_values)
        self._settings = {key: _Values(values) for key, values in self._settings.items()}  # type: ignore[misc]

    def __setitem__(self, key: SettingCodes | int, value: int) -> None:
        super().__setitem__(key, value)
        values = self._settings[key]
        if type(values) is not _Values:
            self._settings[key] = _Values(values)  # type: ignore[assignment]


#: Frame class -> the name of the ServerConnection method that receives it: h2's own
#: dispatch table plus our frame kinds. Names rather than h2's per-connection table of
#: bound methods, which took about 1.5 KiB of every idle connection's memory.
_FRAME_HANDLERS: dict[type, str] = {
    HeadersFrame: "_receive_headers_frame",
    PushPromiseFrame: "_receive_push_promise_frame",
    SettingsFrame: "_receive_settings_frame",
    DataFrame: "_receive_data_frame",
    WindowUpdateFrame: "_receive_window_update_frame",
    PingFrame: "_receive_ping_frame",
    RstStreamFrame: "_receive_rst_stream_frame",
    PriorityFrame: "_receive_priority_frame",
    GoAwayFrame: "_receive_goaway_frame",
    ContinuationFrame: "_receive_naked_continuation",
    AltSvcFrame: "_receive_alt_svc_frame",
    ExtensionFrame: "_receive_unknown_frame",
    _MisSizedPriorityFrame: "_receive_missized_priority_frame",
    _PlainData: "_receive_plain_data",
    _PlainHeaders: "_receive_headers_frame",
}


class ServerConnection(H2Connection):
    """The state machine of one server connection.

    @ivar last_accepted_stream_id: the highest stream the front end handed to a
        handler or answered itself; used as the last stream id of GOAWAY frames.
    @ivar lastGlitch: what the most recent glitch was (for the log line of a
        connection closed over its budget).
    """

    def __init__(
        self,
        *,
        local_settings: dict[SettingCodes, int],
        header_list_hard_limit: int,
        max_continuation_frames: int = 32,
    ) -> None:
        super().__init__(
            H2Configuration(
                client_side=False,
                header_encoding=None,
                validate_inbound_headers=False,
                normalize_inbound_headers=False,
                validate_outbound_headers=False,
                normalize_outbound_headers=False,
            )
        )
        # Our SETTINGS apply from the start: h2 enforces only acknowledged values,
        # and these are all at least as lenient as the defaults the client assumes
        # until it reads them (except MAX_CONCURRENT_STREAMS, which refuses
        # politely with REFUSED_STREAM).
        self.local_settings = CompactSettings(client=False, initial_values=local_settings)
        self.remote_settings = CompactSettings(client=True)
        self.max_inbound_frame_size = self.local_settings.max_frame_size
        self.encoder = StaticTableEncoder()
        self._data_to_send = _Output()  # type: ignore[assignment]
        self.incoming_buffer = _FrameBuffer(
            max_continuation_frames=max_continuation_frames, max_header_block=header_list_hard_limit
        )
        del self._frame_dispatch_table  # L{_FRAME_HANDLERS} instead
        self.incoming_buffer.bodyStreams = self.streams
        self.incoming_buffer.connectionMachine = self.state_machine
        self._header_list_hard_limit = header_list_hard_limit
        self.decoder.max_header_list_size = header_list_hard_limit
        self.last_accepted_stream_id = 0
        self._client_settings_seen = False
        self._terminated = False
        self._glitches = 0
        self.lastGlitch = ""
        self._openInbound = 0
        self._closedSincePrune: list[int] = []

    @property
    def inputPending(self) -> bool:
        """The last C{receive_data} left frames for later (see L{MAX_FRAMES_PER_TURN});
        C{receive_data(b"")} goes on with them."""
        return self.incoming_buffer.stoppedEarly

    def receive_data(self, data: bytes) -> list[Event]:  # type: ignore[override]
        """h2's, plus a GOAWAY for the one error h2 raises without queuing one
        (an invalid connection preface, RFC 9113 3.4)."""
        buffer = self.incoming_buffer
        buffer.turnFrames = 0
        buffer.stoppedEarly = False
        try:
            return super().receive_data(data)
        except ProtocolError as e:
            if not self._terminated:
                self._terminate_connection(e.error_code)
            raise

    def data_to_send(self, amount: int | None = None) -> bytes:
        """h2's, on L{_Output}: what is queued (at most C{amount} bytes of it)."""
        data = self._data_to_send.take()  # type: ignore[attr-defined]
        if amount is not None and amount < len(data):
            self._data_to_send += data[amount:]
            data = data[:amount]
        return data

    def clear_outbound_data_buffer(self) -> None:
        """h2's, on L{_Output}."""
        self._data_to_send = _Output()  # type: ignore[assignment]

    def send_goaway(
        self, last_stream_id: int, error_code: ErrorCodes = ErrorCodes.NO_ERROR, additional_data: bytes = b""
    ) -> None:
        """Queue a GOAWAY without closing the state machine, so that streams up to
        C{last_stream_id} can still be answered (graceful shutdown)."""
        frame = GoAwayFrame(0, last_stream_id=last_stream_id, error_code=error_code, additional_data=additional_data)
        self._prepare_for_sending([frame])

    def send_headers(  # type: ignore[override]
        self, stream_id: int, headers: list[tuple[bytes, bytes]], end_stream: bool = False, **priority: object
    ) -> None:
        """h2's, with a short path for the block every request ends with: a final
        response head on an open stream. Only the stream's state machine is told
        (as h2 tells it); the block is encoded by L{StaticTableEncoder} and framed
        here, skipping h2's frame objects, its header re-encoding pass and its
        connection state machine (whose SEND_HEADERS leaves SERVER_OPEN as it is).
        Informational heads, trailers, priority arguments and every unusual state
        go through h2."""
        stream = self.streams.get(stream_id)
        machine = stream.state_machine if stream is not None else None
        if (
            machine is None
            or priority
            or machine.headers_sent
            or machine.state not in _DATA_SENDING_STATES
            or self.state_machine.state is not ConnectionState.SERVER_OPEN
            or not headers
            or headers[0][0] != b":status"
            or headers[0][1][:1] == b"1"
        ):
            super().send_headers(stream_id, headers, end_stream, **priority)  # type: ignore[arg-type]
            return
        machine.process_input(StreamInputs.SEND_HEADERS)
        block = self.encoder.encode(headers)
        if end_stream:
            machine.process_input(StreamInputs.SEND_END_STREAM)
        self._frameHeaderBlock(stream_id, block, stream.max_outbound_frame_size, end_stream)

    def _frameHeaderBlock(self, stream_id: int, block: bytes, frameSize: int, end_stream: bool) -> None:
        """A HEADERS frame, followed by CONTINUATION frames if the block is larger
        than the peer's frame size."""
        buffer = self._data_to_send
        flags = _END_STREAM_FLAG if end_stream else 0
        kind = _HEADERS_TYPE
        for start in range(0, max(len(block), 1), frameSize):
            piece = block[start : start + frameSize]
            if start + frameSize >= len(block):
                flags |= _END_HEADERS_FLAG
            size = len(piece)
            buffer += _FRAME_HEADER.pack(size >> 8, size & 0xFF, kind, flags, stream_id)
            buffer += piece
            kind, flags = _CONTINUATION_TYPE, 0

    def send_data(  # type: ignore[override]
        self, stream_id: int, data: bytes | memoryview, end_stream: bool = False, pad_length: int | None = None
    ) -> None:
        """h2's, with a short path for the frame a bulk transfer sends thousands of
        times: no padding, open connection and stream, within the windows and the
        frame size. Such a frame changes no state but the two windows and, with
        END_STREAM, the stream's state (told to its state machine as h2 does), so
        it is written as a 9-byte header and the payload, skipping h2's frame
        objects and state-machine calls (a third of the per-frame cost of a
        download). Anything else, errors included, goes through h2."""
        size = len(data)
        stream = self.streams.get(stream_id)
        if (
            pad_length is not None
            or not size
            or stream is None
            or size > self.max_outbound_frame_size
            or size > self.outbound_flow_control_window
            or size > stream.outbound_flow_control_window
            or self.state_machine.state is not ConnectionState.SERVER_OPEN
            or stream.state_machine.state not in _DATA_SENDING_STATES
        ):
            super().send_data(stream_id, data, end_stream, pad_length)
            return
        buffer = self._data_to_send
        buffer += _FRAME_HEADER.pack(size >> 8, size & 0xFF, _DATA_TYPE, _END_STREAM_FLAG if end_stream else 0, stream_id)
        buffer += data
        stream.outbound_flow_control_window -= size
        self.outbound_flow_control_window -= size
        if end_stream:
            stream.state_machine.process_input(StreamInputs.SEND_END_STREAM)

    def end_stream(self, stream_id: int) -> None:
        """h2's, with the short path of L{send_data} for the empty DATA frame with
        END_STREAM that ends a response whose body went out earlier."""
        stream = self.streams.get(stream_id)
        if (
            stream is None
            or self.state_machine.state is not ConnectionState.SERVER_OPEN
            or stream.state_machine.state not in _DATA_SENDING_STATES
        ):
            super().end_stream(stream_id)
            return
        stream.state_machine.process_input(StreamInputs.SEND_END_STREAM)
        self._data_to_send += _FRAME_HEADER.pack(0, 0, _DATA_TYPE, _END_STREAM_FLAG, stream_id)

    def acknowledge_received_data(self, acknowledged_size: int, stream_id: int) -> None:
        """h2's, writing the WINDOW_UPDATE frames directly (an upload acknowledges
        every DATA frame it hands on). Streams h2 does not hold (closed, idle) and
        bad arguments go through h2."""
        stream = self.streams.get(stream_id)
        if stream is None or acknowledged_size < 0:
            super().acknowledge_received_data(acknowledged_size, stream_id)
            return
        buffer = self._data_to_send
        increment = self._inbound_flow_control_window_manager.process_bytes(acknowledged_size)
        if increment:
            buffer += _FRAME_HEADER.pack(0, 4, _WINDOW_UPDATE_TYPE, 0, 0) + _WINDOW_INCREMENT.pack(increment)
        if stream.open:
            increment = stream._inbound_window_manager.process_bytes(acknowledged_size)
            if increment:
                buffer += _FRAME_HEADER.pack(0, 4, _WINDOW_UPDATE_TYPE, 0, stream_id) + _WINDOW_INCREMENT.pack(increment)

    def takeGlitches(self) -> int:
        """The glitches counted since the last call (see the module docstring)."""
        buffer = self.incoming_buffer
        count = self._glitches + buffer.glitches
        if buffer.glitches:
            self.lastGlitch = "empty header block fragment"
        self._glitches = buffer.glitches = 0
        return count

    def _glitch(self, what: str) -> None:
        self._glitches += 1
        self.lastGlitch = what

    def send_rst_frame(self, stream_id: int, error_code: ErrorCodes) -> None:
        """Queue a RST_STREAM for a stream h2 has no state for (refused or idle)."""
        self._prepare_for_sending([RstStreamFrame(stream_id, error_code=error_code)])

    def _streamStateChanged(self, stream_id: int, before: StreamState, after: StreamState) -> None:
        """Keep the open-stream count and note streams to prune (see L{_open_streams})."""
        delta = (after in _OPEN_STATES) - (before in _OPEN_STATES)
        if delta and stream_id % 2:
            self._openInbound += delta
        if after is StreamState.CLOSED:
            self._closedSincePrune.append(stream_id)

    # -- overridden h2 hooks ------------------------------------------------

    def _open_streams(self, remainder: int) -> int:
        """h2's count of open streams, without its scan of every stream: the inbound
        count is kept as streams change state, and the closed streams are moved to
        C{_closed_streams} as h2 does here, in stream order (h2's dict order). A server
        that never pushes has no outbound streams, so that count is 0."""
        closed = self._closedSincePrune
        if closed:
            self._closedSincePrune = []
            for stream_id in sorted(closed):
                stream = self.streams.get(stream_id)
                if stream is not None and stream.closed:
                    del self.streams[stream_id]
                    self._closed_streams[stream_id] = stream.closed_by
        return self._openInbound if remainder else 0

    def _begin_new_stream(self, stream_id: int, allowed_ids: AllowedStreamIDs) -> H2Stream:
        """h2's own, building L{_ServerStream}s."""
        if (stream_id % 2) != int(allowed_ids):
            raise ProtocolError("the client opened an even-numbered stream (RFC 9113 5.1.1)")
        if stream_id <= self.highest_inbound_stream_id:
            raise StreamIDTooLowError(stream_id, self.highest_inbound_stream_id)
        stream = _ServerStream(
            stream_id,
            connection=self,
            config=self.config,
            inbound_window_size=self.local_settings.initial_window_size,
            outbound_window_size=self.remote_settings.initial_window_size,
        )
        stream.max_outbound_frame_size = self.max_outbound_frame_size
        self.streams[stream_id] = stream
        self.highest_inbound_stream_id = stream_id
        return stream

    def _receive_frame(self, frame: Frame) -> list[Event]:
        """h2's dispatch, with the stream/connection error split of the module docstring."""
        if not self._client_settings_seen:
            if not isinstance(frame, SettingsFrame) or "ACK" in frame.flags:
                raise ProtocolError("the client preface must be followed by SETTINGS (RFC 9113 3.4)")
            self._client_settings_seen = True
        if isinstance(frame, ContinuationFrame):
            raise ProtocolError("CONTINUATION outside a header block (RFC 9113 6.10)")
        if isinstance(frame, PriorityFrame):
            self._glitch("PRIORITY frame")
        try:
            frames, events = getattr(self, _FRAME_HANDLERS[frame.__class__])(frame)
        except StreamError as e:
            return self._reset_for_error(e.stream_id, e.error_code)
        except StreamClosedError as e:
            return self._frame_on_closed_stream(e.stream_id, e._events)
        except StreamIDTooLowError as e:
            return self._frame_on_closed_stream(e.stream_id, [])
        self._prepare_for_sending(frames)
        return events

    def _receive_headers_frame(self, frame: HeadersFrame | _PlainHeaders) -> tuple[list[Frame], list[Event]]:
        """Decode first (HPACK stays in step), then open, refuse or reject the stream.
        (An open connection's state machine has nothing to do for HEADERS: it is only
        consulted in other states.)"""
        try:
            headers = decode_indexed_block(self.decoder, frame.data) or _decode_headers(self.decoder, frame.data)
        except DenialOfServiceError:
            raise
        except ProtocolError as e:
            raise CompressionError(str(e)) from e
        stream_id = frame.stream_id
        refuse = (
            stream_id not in self.streams
            and self.open_inbound_streams >= self.local_settings.max_concurrent_streams
        )
        events: list[Event] = []
        if self.state_machine.state is not ConnectionState.SERVER_OPEN:
            events = self.state_machine.process_input(ConnectionInputs.RECV_HEADERS)
        stream = self._get_or_create_stream(stream_id, AllowedStreamIDs.ODD)
        frames, stream_events = stream.receive_headers(headers, "END_STREAM" in frame.flags, None)
        if refuse:
            # RFC 9113 5.1.2: a stream error; REFUSED_STREAM tells the client it may retry.
            self._glitch("stream over SETTINGS_MAX_CONCURRENT_STREAMS")
            return stream.reset_stream(ErrorCodes.REFUSED_STREAM), events
        if "PRIORITY" in frame.flags:
            _, priority_events = self._receive_priority_frame(frame)
            stream_events[0].priority_updated = priority_events[0]  # type: ignore[attr-defined]
            stream_events.extend(priority_events)
        return frames, events + stream_events

    def _receive_plain_data(self, frame: _PlainData) -> tuple[list[Frame], list[Event]]:
        """h2's C{_receive_data_frame} for body on an open stream of an open
        connection, where the connection's state machine has nothing to do:
        consume both windows and let the stream report it. Anything else goes
        through h2's own path with a real frame (the frame buffer's
        C{receivingBody} is the one statement of which streams qualify)."""
        if not self.incoming_buffer.receivingBody(frame.stream_id):
            return self._receive_data_frame(frame.toFrame())
        size = len(frame.data)
        self._inbound_flow_control_window_manager.window_consumed(size)
        return self.streams[frame.stream_id].receive_data(frame.data, frame.end_stream, size)

    def _receive_priority_frame(self, frame: HeadersFrame | PriorityFrame) -> tuple[list[Frame], list[Event]]:
        if frame.depends_on == frame.stream_id:
            raise StreamError(frame.stream_id, ErrorCodes.PROTOCOL_ERROR, "stream depends on itself (RFC 9113 5.3.1)")
        return super()._receive_priority_frame(frame)

    def _receive_missized_priority_frame(self, frame: _MisSizedPriorityFrame) -> tuple[list[Frame], list[Event]]:
        raise StreamError(frame.stream_id, ErrorCodes.FRAME_SIZE_ERROR, "PRIORITY frame not 5 octets long (RFC 9113 6.3)")

    def _receive_rst_stream_frame(self, frame: RstStreamFrame) -> tuple[list[Frame], list[Event]]:
        if self._is_idle(frame.stream_id):
            raise ProtocolError("RST_STREAM on an idle stream (RFC 9113 6.4)")
        return super()._receive_rst_stream_frame(frame)

    def _receive_window_update_frame(self, frame: WindowUpdateFrame) -> tuple[list[Frame], list[Event]]:
        if frame.window_increment == 0:
            if self._is_idle(frame.stream_id):
                raise ProtocolError("WINDOW_UPDATE on an idle stream (RFC 9113 5.1)")
            stream = self.streams.get(frame.stream_id)
            if stream is None or stream.closed:
                return [], []
            raise StreamError(frame.stream_id, ErrorCodes.PROTOCOL_ERROR, "WINDOW_UPDATE of 0 (RFC 9113 6.9)")
        return super()._receive_window_update_frame(frame)

    def _receive_goaway_frame(self, frame: GoAwayFrame) -> tuple[list[Frame], list[Event]]:
        """Report the GOAWAY but keep the state machine open for the streams in flight."""
        event = ConnectionTerminated()
        event.error_code = _error_code(frame.error_code)
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]

    def _handle_data_on_closed_stream(self, events, exc, frame):  # type: ignore[no-untyped-def]
        """DATA for a closed stream still counts against the connection window."""
        increment = self._inbound_flow_control_window_manager.process_bytes(frame.flow_controlled_length)
        if increment:
            self._prepare_for_sending([WindowUpdateFrame(0, window_increment=increment)])
        return [], events + self._frame_on_closed_stream(exc.stream_id, exc._events)

    def _terminate_connection(self, error_code: ErrorCodes) -> None:
        self._terminated = True
        frame = GoAwayFrame(0, last_stream_id=self.last_accepted_stream_id, error_code=error_code)
        self.state_machine.process_input(ConnectionInputs.SEND_GOAWAY)
        self._prepare_for_sending([frame])

    def _local_settings_acked(self):  # type: ignore[no-untyped-def]
        changes = super()._local_settings_acked()
        self.decoder.max_header_list_size = self._header_list_hard_limit
        return changes

    # -- helpers --------------------------------------------------------------

    def _is_idle(self, stream_id: int) -> bool:
        """RFC 9113 5.1: a stream id the client has not used yet (we never push)."""
        if stream_id % 2 == 0:
            return stream_id > self.highest_outbound_stream_id
        return stream_id > self.highest_inbound_stream_id

    def _reset_for_error(self, stream_id: int, error_code: ErrorCodes) -> list[Event]:
        self._glitch(f"stream error {_error_code(error_code)!s}")
        stream = self.streams.get(stream_id)
        if stream is not None and stream.open:
            self.reset_stream(stream_id, error_code)
        else:
            self.send_rst_frame(stream_id, error_code)
        return [StreamReset(stream_id=stream_id, error_code=error_code, remote_reset=False)]

    def _frame_on_closed_stream(self, stream_id: int, events: list[Event]) -> list[Event]:
        """RFC 9113 5.1 "closed": what a frame on a closed stream calls for."""
        closed_by = self._stream_closed_by(stream_id)
        if events or closed_by is StreamClosedBy.RECV_RST_STREAM:
            self._glitch("frame on a closed stream")
            self.send_rst_frame(stream_id, ErrorCodes.STREAM_CLOSED)
            return events
        if closed_by is StreamClosedBy.SEND_RST_STREAM:
            return []
        if closed_by is None:
            raise ProtocolError(f"stream {stream_id} was never opened and is below the highest (RFC 9113 5.1.1)")
        raise StreamClosedError(stream_id)


def _error_code(value: int) -> ErrorCodes | int:
    try:
        return ErrorCodes(value)
    except ValueError:
        return value
