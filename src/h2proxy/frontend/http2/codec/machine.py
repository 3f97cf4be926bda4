"""h2's connection state machine, adjusted to the error split RFC 9113 asks of a server.

h2 is a fine sans-I/O state machine, but as a server in front of many
clients a few of its choices do not fit, and they all live in private hooks this
module overrides through L{internals} (every override says which rule it restores):

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
- One call of C{receive_data} handles at most C{framebuffer.MAX_FRAMES_PER_TURN} frames; the
  rest stays buffered (L{ServerConnection.inputPending}) for the front end to
  feed on at its next turn, so one connection's flood cannot hold the reactor.
- Frames that cost work and serve no request are counted as "glitches" for the
  front end's budget (L{ServerConnection.takeGlitches}): standalone PRIORITY frames,
  empty header-block fragments, streams refused over the concurrency limit, and
  every frame answered with RST_STREAM (stream errors, frames on closed streams).

Frames are read by L{framebuffer}, streams are L{streams}' classes, and the
places where this module writes frames itself instead of through h2 are short
paths (L{shortpaths}).
"""


from __future__ import annotations

from typing import Any, Callable

from h2.config import H2Configuration
from h2.connection import AllowedStreamIDs, ConnectionInputs, ConnectionState, H2Connection
from h2.errors import ErrorCodes
from h2.events import ConnectionTerminated, Event, StreamReset
from h2.exceptions import DenialOfServiceError, ProtocolError, StreamClosedError, StreamIDTooLowError
from h2.settings import SettingCodes
from h2.stream import H2Stream, StreamClosedBy, StreamInputs, StreamState
from hyperframe.frame import (
    ContinuationFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from h2proxy.frontend.http2.codec import internals, shortpaths
from h2proxy.frontend.http2.codec.compact import CompactSettings, Output
from h2proxy.frontend.http2.codec.errors import CompressionError, StreamError, errorCode
from h2proxy.frontend.http2.codec.fieldcodec import IndexedBlockCache, StaticTableEncoder
from h2proxy.frontend.http2.codec.framebuffer import MisSizedPriorityFrame, PlainData, PlainHeaders, ServerFrameBuffer
from h2proxy.frontend.http2.codec.streams import DATA_SENDING_STATES, OPEN_STATES, ServerStream
from h2proxy.frontend.http2.codec.wire import (
    CONTINUATION_TYPE,
    DATA_TYPE,
    END_HEADERS_FLAG,
    END_STREAM_FLAG,
    FRAME_HEADER,
    HEADERS_TYPE,
    frameHeader,
    windowUpdate,
)

FrameHandler = Callable[[Any, Any], tuple[list[Frame], list[Event]]]


@internals.connectionHooks
class ServerConnection(H2Connection):
    """The state machine of one server connection.

    @ivar last_accepted_stream_id: the highest stream the front end handed to a
        handler or answered itself; used as the last stream id of GOAWAY frames.
    @ivar lastGlitch: what the most recent glitch was (for the log line of a
        connection closed over its budget).
    @ivar shortPaths: whether this connection takes the codec's short paths
        (L{shortpaths}; the process-wide switch unless a test says otherwise).
    """

    def __init__(
        self,
        *,
        local_settings: dict[SettingCodes, int],
        header_list_hard_limit: int,
        max_continuation_frames: int = 32,
        shortPaths: bool = shortpaths.ENABLED,
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
        self.shortPaths = shortPaths
        # Our SETTINGS apply from the start: h2 enforces only acknowledged values,
        # and these are all at least as lenient as the defaults the client assumes
        # until it reads them (except MAX_CONCURRENT_STREAMS, which refuses
        # politely with REFUSED_STREAM).
        self.local_settings = CompactSettings(client=False, initial_values=local_settings)
        self.remote_settings = CompactSettings(client=True)
        self.max_inbound_frame_size = self.local_settings.max_frame_size
        self.encoder = StaticTableEncoder()
        self.output = Output()
        internals.replaceOutputBuffer(self, self.output)
        self.inboundWindow = internals.connectionWindowManager(self)
        self.incoming_buffer = ServerFrameBuffer(
            max_continuation_frames=max_continuation_frames,
            max_header_block=header_list_hard_limit,
            shortPaths=shortPaths,
        )
        internals.dropDispatchTable(self)  # L{FRAME_HANDLERS} instead
        self.incoming_buffer.bodyStreams = self.streams
        self.incoming_buffer.connectionMachine = self.state_machine
        self._header_list_hard_limit = header_list_hard_limit
        self.decoder.max_header_list_size = header_list_hard_limit
        self.indexedBlocks = IndexedBlockCache()
        self.last_accepted_stream_id = 0
        self._client_settings_seen = False
        self._terminated = False
        self._glitches = 0
        self.lastGlitch = ""
        self._openInbound = 0
        self._closedSincePrune: list[int] = []

    @property
    def inputPending(self) -> bool:
        """The last C{receive_data} left frames for later (see
        L{framebuffer.MAX_FRAMES_PER_TURN}); C{receive_data(b"")} goes on with them."""
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
                self.terminateConnection(e.error_code)
            raise

    def data_to_send(self, amount: int | None = None) -> bytes:
        """h2's, on L{Output}: what is queued (at most C{amount} bytes of it)."""
        data = self.output.take()
        if amount is not None and amount < len(data):
            self.output += data[amount:]
            data = data[:amount]
        return data

    def clear_outbound_data_buffer(self) -> None:
        """h2's, on L{Output}."""
        self.output = Output()
        internals.replaceOutputBuffer(self, self.output)

    def send_goaway(
        self, last_stream_id: int, error_code: ErrorCodes = ErrorCodes.NO_ERROR, additional_data: bytes = b""
    ) -> None:
        """Queue a GOAWAY without closing the state machine, so that streams up to
        C{last_stream_id} can still be answered (graceful shutdown)."""
        frame = GoAwayFrame(0, last_stream_id=last_stream_id, error_code=error_code, additional_data=additional_data)
        internals.queueFrames(self, [frame])

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
            or not self.shortPaths
            or priority
            or machine.headers_sent
            or machine.state not in DATA_SENDING_STATES
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
        self._frameHeaderBlock(stream_id, block, stream.max_outbound_frame_size, end_stream)  # type: ignore[union-attr]

    def _frameHeaderBlock(self, stream_id: int, block: bytes, frameSize: int, end_stream: bool) -> None:
        """A HEADERS frame, followed by CONTINUATION frames if the block is larger
        than the peer's frame size (a response head almost never is: one frame
        without the loop)."""
        output = self.output
        flags = END_STREAM_FLAG if end_stream else 0
        if len(block) <= frameSize:
            output += frameHeader(len(block), HEADERS_TYPE, flags | END_HEADERS_FLAG, stream_id)
            output += block
            return
        kind = HEADERS_TYPE
        for start in range(0, max(len(block), 1), frameSize):
            piece = block[start : start + frameSize]
            if start + frameSize >= len(block):
                flags |= END_HEADERS_FLAG
            output += frameHeader(len(piece), kind, flags, stream_id)
            output += piece
            kind, flags = CONTINUATION_TYPE, 0

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
            or not self.shortPaths
            or size > self.max_outbound_frame_size
            or size > self.outbound_flow_control_window
            or size > stream.outbound_flow_control_window
            or self.state_machine.state is not ConnectionState.SERVER_OPEN
            or stream.state_machine.state not in DATA_SENDING_STATES
        ):
            super().send_data(stream_id, data, end_stream, pad_length)
            return
        output = self.output
        output += FRAME_HEADER.pack(size >> 8, size & 0xFF, DATA_TYPE, END_STREAM_FLAG if end_stream else 0, stream_id)
        output += data
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
            or not self.shortPaths
            or self.state_machine.state is not ConnectionState.SERVER_OPEN
            or stream.state_machine.state not in DATA_SENDING_STATES
        ):
            super().end_stream(stream_id)
            return
        stream.state_machine.process_input(StreamInputs.SEND_END_STREAM)
        self.output += frameHeader(0, DATA_TYPE, END_STREAM_FLAG, stream_id)

    def acknowledge_received_data(self, acknowledged_size: int, stream_id: int) -> None:
        """h2's, writing the WINDOW_UPDATE frames directly (an upload acknowledges
        every DATA frame it hands on). Streams h2 does not hold (closed, idle) and
        bad arguments go through h2."""
        stream = self.streams.get(stream_id)
        if stream is None or acknowledged_size < 0 or not self.shortPaths:
            super().acknowledge_received_data(acknowledged_size, stream_id)
            return
        output = self.output
        increment = self.inboundWindow.process_bytes(acknowledged_size)
        if increment:
            output += windowUpdate(0, increment)
        if stream.open:
            increment = stream.inboundWindow.process_bytes(acknowledged_size)  # type: ignore[attr-defined]
            if increment:
                output += windowUpdate(stream_id, increment)

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
        internals.queueFrames(self, [RstStreamFrame(stream_id, error_code=error_code)])

    def streamStateChanged(self, stream_id: int, before: StreamState, after: StreamState) -> None:
        """Keep the open-stream count and note streams to prune (see L{openStreamCount})."""
        delta = (after in OPEN_STATES) - (before in OPEN_STATES)
        if delta and stream_id % 2:
            self._openInbound += delta
        if after is StreamState.CLOSED and self.shortPaths:
            self._closedSincePrune.append(stream_id)

    # -- h2's private hooks, installed by internals.connectionHooks ------------------

    def openStreamCount(self, remainder: int) -> int:
        """h2's count of open streams (C{_open_streams}), without its scan of every
        stream: the inbound count is kept as streams change state, and the closed
        streams are moved to h2's closed-stream table as h2 does here, in stream
        order (h2's dict order). A server that never pushes has no outbound
        streams, so that count is 0. With the short paths off, h2's scan."""
        if not self.shortPaths:
            return internals.openStreams(self, remainder)
        closed = self._closedSincePrune
        if closed:
            self._closedSincePrune = []
            closedBy = internals.closedStreams(self)
            for stream_id in sorted(closed):
                stream = self.streams.get(stream_id)
                if stream is not None and stream.closed:
                    del self.streams[stream_id]
                    closedBy[stream_id] = stream.closed_by
        return self._openInbound if remainder else 0

    def beginNewStream(self, stream_id: int, allowed_ids: AllowedStreamIDs) -> H2Stream:
        """h2's own (C{_begin_new_stream}), building L{ServerStream}s."""
        if (stream_id % 2) != int(allowed_ids):
            raise ProtocolError("the client opened an even-numbered stream (RFC 9113 5.1.1)")
        if stream_id <= self.highest_inbound_stream_id:
            raise StreamIDTooLowError(stream_id, self.highest_inbound_stream_id)
        stream = ServerStream(
            stream_id,
            listener=self,
            config=self.config,
            inbound_window_size=self.local_settings.initial_window_size,
            outbound_window_size=self.remote_settings.initial_window_size,
        )
        stream.max_outbound_frame_size = self.max_outbound_frame_size
        self.streams[stream_id] = stream
        self.highest_inbound_stream_id = stream_id
        return stream

    def receiveFrame(self, frame: Frame) -> list[Event]:
        """h2's dispatch (C{_receive_frame}), with the stream/connection error split
        of the module docstring."""
        if not self._client_settings_seen:
            if not isinstance(frame, SettingsFrame) or "ACK" in frame.flags:
                raise ProtocolError("the client preface must be followed by SETTINGS (RFC 9113 3.4)")
            self._client_settings_seen = True
        if isinstance(frame, ContinuationFrame):
            raise ProtocolError("CONTINUATION outside a header block (RFC 9113 6.10)")
        if isinstance(frame, PriorityFrame):
            self._glitch("PRIORITY frame")
        try:
            frames, events = FRAME_HANDLERS[frame.__class__](self, frame)
        except StreamError as e:
            return self._reset_for_error(e.stream_id, e.error_code)
        except StreamClosedError as e:
            return self._frame_on_closed_stream(e.stream_id, internals.closedStreamEvents(e))
        except StreamIDTooLowError as e:
            return self._frame_on_closed_stream(e.stream_id, [])
        internals.queueFrames(self, frames)
        return events

    def receiveHeadersFrame(self, frame: HeadersFrame | PlainHeaders) -> tuple[list[Frame], list[Event]]:
        """Decode first (HPACK stays in step), then open, refuse or reject the stream.
        (An open connection's state machine has nothing to do for HEADERS: it is only
        consulted in other states.)"""
        try:
            headers = (self.shortPaths and self.indexedBlocks.decode(self.decoder, frame.data)) or internals.decodeHeaders(
                self.decoder, frame.data
            )
        except DenialOfServiceError:
            raise
        except ProtocolError as e:
            raise CompressionError(str(e)) from e
        stream_id = frame.stream_id
        # openStreamCount(1) is h2's open_inbound_streams for a server, without the
        # property and the configuration lookup in between.
        refuse = (
            stream_id not in self.streams
            and self.openStreamCount(1) >= self.local_settings.max_concurrent_streams
        )
        events: list[Event] = []
        if self.state_machine.state is not ConnectionState.SERVER_OPEN:
            events = self.state_machine.process_input(ConnectionInputs.RECV_HEADERS)
        stream = internals.getOrCreateStream(self, stream_id, AllowedStreamIDs.ODD)
        frames, stream_events = stream.receive_headers(headers, "END_STREAM" in frame.flags, None)
        if refuse:
            # RFC 9113 5.1.2: a stream error; REFUSED_STREAM tells the client it may retry.
            self._glitch("stream over SETTINGS_MAX_CONCURRENT_STREAMS")
            return stream.reset_stream(ErrorCodes.REFUSED_STREAM), events
        if "PRIORITY" in frame.flags:
            _, priority_events = self.receivePriorityFrame(frame)  # type: ignore[arg-type]
            stream_events[0].priority_updated = priority_events[0]  # type: ignore[attr-defined]
            stream_events.extend(priority_events)
        return frames, events + stream_events

    def receivePlainData(self, frame: PlainData) -> tuple[list[Frame], list[Event]]:
        """h2's C{_receive_data_frame} for body on an open stream of an open
        connection, where the connection's state machine has nothing to do:
        consume both windows and let the stream report it. Anything else goes
        through h2's own path with a real frame (the frame buffer's
        C{receivingBody} is the one statement of which streams qualify)."""
        if not self.incoming_buffer.receivingBody(frame.stream_id):
            return internals.receiveDataFrame(self, frame.toFrame())
        size = len(frame.data)
        self.inboundWindow.window_consumed(size)
        return self.streams[frame.stream_id].receive_data(frame.data, frame.end_stream, size)

    def receivePriorityFrame(self, frame: HeadersFrame | PriorityFrame) -> tuple[list[Frame], list[Event]]:
        """h2's, with a stream depending on itself a stream error (RFC 9113 5.3.1)."""
        if frame.depends_on == frame.stream_id:
            raise StreamError(frame.stream_id, ErrorCodes.PROTOCOL_ERROR, "stream depends on itself (RFC 9113 5.3.1)")
        return internals.receivePriorityFrame(self, frame)

    def receiveMisSizedPriorityFrame(self, frame: MisSizedPriorityFrame) -> tuple[list[Frame], list[Event]]:
        """A PRIORITY frame not 5 octets long: a stream error (RFC 9113 6.3)."""
        raise StreamError(frame.stream_id, ErrorCodes.FRAME_SIZE_ERROR, "PRIORITY frame not 5 octets long (RFC 9113 6.3)")

    def receiveRstStreamFrame(self, frame: RstStreamFrame) -> tuple[list[Frame], list[Event]]:
        """h2's, with RST_STREAM on an idle stream a connection error (RFC 9113 6.4)."""
        if self._is_idle(frame.stream_id):
            raise ProtocolError("RST_STREAM on an idle stream (RFC 9113 6.4)")
        return internals.receiveRstStreamFrame(self, frame)

    def receiveWindowUpdateFrame(self, frame: WindowUpdateFrame) -> tuple[list[Frame], list[Event]]:
        """h2's, with a zero increment on a stream a stream error (RFC 9113 6.9)."""
        if frame.window_increment == 0:
            if self._is_idle(frame.stream_id):
                raise ProtocolError("WINDOW_UPDATE on an idle stream (RFC 9113 5.1)")
            stream = self.streams.get(frame.stream_id)
            if stream is None or stream.closed:
                return [], []
            raise StreamError(frame.stream_id, ErrorCodes.PROTOCOL_ERROR, "WINDOW_UPDATE of 0 (RFC 9113 6.9)")
        return internals.receiveWindowUpdateFrame(self, frame)

    def receiveGoAwayFrame(self, frame: GoAwayFrame) -> tuple[list[Frame], list[Event]]:
        """Report the GOAWAY but keep the state machine open for the streams in flight."""
        event = ConnectionTerminated()
        event.error_code = errorCode(frame.error_code)
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]

    def handleDataOnClosedStream(self, events, exc, frame):  # type: ignore[no-untyped-def]
        """DATA for a closed stream still counts against the connection window."""
        increment = self.inboundWindow.process_bytes(frame.flow_controlled_length)
        if increment:
            internals.queueFrames(self, [WindowUpdateFrame(0, window_increment=increment)])
        return [], events + self._frame_on_closed_stream(exc.stream_id, internals.closedStreamEvents(exc))

    def terminateConnection(self, error_code: ErrorCodes) -> None:
        """GOAWAY naming the last stream the front end accepted, for a connection error."""
        self._terminated = True
        frame = GoAwayFrame(0, last_stream_id=self.last_accepted_stream_id, error_code=error_code)
        self.state_machine.process_input(ConnectionInputs.SEND_GOAWAY)
        internals.queueFrames(self, [frame])

    def localSettingsAcked(self):  # type: ignore[no-untyped-def]
        """h2's, keeping the decoder's hard header-list limit (see the module docstring)."""
        changes = internals.localSettingsAcked(self)
        self.decoder.max_header_list_size = self._header_list_hard_limit
        return changes

    # -- helpers --------------------------------------------------------------

    def _is_idle(self, stream_id: int) -> bool:
        """RFC 9113 5.1: a stream id the client has not used yet (we never push)."""
        if stream_id % 2 == 0:
            return stream_id > self.highest_outbound_stream_id
        return stream_id > self.highest_inbound_stream_id

    def _reset_for_error(self, stream_id: int, error_code: ErrorCodes) -> list[Event]:
        self._glitch(f"stream error {errorCode(error_code)!s}")
        stream = self.streams.get(stream_id)
        if stream is not None and stream.open:
            self.reset_stream(stream_id, error_code)
        else:
            self.send_rst_frame(stream_id, error_code)
        return [StreamReset(stream_id=stream_id, error_code=error_code, remote_reset=False)]

    def _frame_on_closed_stream(self, stream_id: int, events: list[Event]) -> list[Event]:
        """RFC 9113 5.1 "closed": what a frame on a closed stream calls for."""
        closed_by = internals.streamClosedBy(self, stream_id)
        if events or closed_by is StreamClosedBy.RECV_RST_STREAM:
            self._glitch("frame on a closed stream")
            self.send_rst_frame(stream_id, ErrorCodes.STREAM_CLOSED)
            return events
        if closed_by is StreamClosedBy.SEND_RST_STREAM:
            return []
        if closed_by is None:
            raise ProtocolError(f"stream {stream_id} was never opened and is below the highest (RFC 9113 5.1.1)")
        raise StreamClosedError(stream_id)


#: Frame class -> the function that receives it, called with the connection: h2's
#: own receivers plus ours. A module-level table rather than h2's per-connection
#: table of bound methods, which took about 1.5 KiB of every idle connection's memory.
FRAME_HANDLERS: dict[type, FrameHandler] = {
    **internals.LIBRARY_FRAME_HANDLERS,
    HeadersFrame: ServerConnection.receiveHeadersFrame,
    WindowUpdateFrame: ServerConnection.receiveWindowUpdateFrame,
    RstStreamFrame: ServerConnection.receiveRstStreamFrame,
    PriorityFrame: ServerConnection.receivePriorityFrame,
    GoAwayFrame: ServerConnection.receiveGoAwayFrame,
    MisSizedPriorityFrame: ServerConnection.receiveMisSizedPriorityFrame,
    PlainData: ServerConnection.receivePlainData,
    PlainHeaders: ServerConnection.receiveHeadersFrame,
}
