"""The fence: every use the codec makes of a private name of h2, hpack, hyperframe,
priority or heapq is in this module, and nowhere else in h2proxy.

Each name below says which private name it stands for and what the codec relies on
it doing. A library release that renames or changes one of them breaks here, and
tests/test_private_names.py names the one that went missing. Three kinds of use:

- Reading or calling a private name: a small function or an alias.
- Calling the library's own version of a hook the codec overrides (what
  C{super()._hook(...)} would do): the library's function, called with the
  instance as first argument.
- Overriding a private hook the library calls on itself: the codec's classes
  implement it under a public name, and the class decorators here install it
  under the library's private name.

Hot paths do not call these per frame: the objects they need (the outgoing
buffer, the window managers, the frame buffer's bytes) are fetched once per
connection or stream and kept under the codec's own names; each such getter says
that the library keeps the same object for the connection's lifetime.
"""

from __future__ import annotations

import heapq
from typing import Any, Callable, TypeVar

import priority
from h2.connection import H2Connection, _decode_headers
from h2.exceptions import StreamClosedError
from h2.frame_buffer import FrameBuffer
from h2.settings import Settings
from h2 import stream as h2stream
from h2.stream import H2Stream
from hpack import Encoder
from hyperframe.frame import AltSvcFrame, ContinuationFrame, DataFrame, ExtensionFrame, PingFrame, PushPromiseFrame, SettingsFrame
from priority.priority import Stream as PriorityStream

C = TypeVar("C", bound=type)

# -- h2.connection -----------------------------------------------------------------

#: C{h2.connection._decode_headers(decoder, data)}: a field block decoded by hpack
#: into a list of (name, value) pairs, hpack's errors raised as h2's ProtocolError
#: (DenialOfServiceError for a list over the decoder's size limit).
decodeHeaders: Callable[[Any, bytes], list[tuple[bytes, bytes]]] = _decode_headers


def outputBuffer(connection: H2Connection) -> Any:
    """C{H2Connection._data_to_send}: the buffer h2 appends outgoing frames to
    with C{+=} (so a replacement object needs only C{__iadd__})."""
    return connection._data_to_send


def replaceOutputBuffer(connection: H2Connection, buffer: Any) -> None:
    """Set C{H2Connection._data_to_send}; h2 reads it only through C{+=} and its
    own C{data_to_send}/C{clear_outbound_data_buffer}, which the codec overrides."""
    connection._data_to_send = buffer


def connectionWindowManager(connection: H2Connection) -> Any:
    """C{H2Connection._inbound_flow_control_window_manager}: h2's WindowManager of
    the connection's receive window, made once in C{__init__} and never replaced."""
    return connection._inbound_flow_control_window_manager


def streamWindowManager(stream: H2Stream) -> Any:
    """C{H2Stream._inbound_window_manager}: the stream's receive-window manager,
    made once in C{__init__} and never replaced."""
    return stream._inbound_window_manager


def queueFrames(connection: H2Connection, frames: list[Any]) -> None:
    """C{H2Connection._prepare_for_sending(frames)}: serialise hyperframe frames
    onto the outgoing buffer."""
    connection._prepare_for_sending(frames)


def dropDispatchTable(connection: H2Connection) -> None:
    """Delete C{H2Connection._frame_dispatch_table}, h2's per-connection table of
    bound methods; only h2's C{_receive_frame}, which the codec overrides, reads it."""
    del connection._frame_dispatch_table


def closedStreams(connection: H2Connection) -> dict[int, Any]:
    """C{H2Connection._closed_streams}: stream id -> how it closed, for streams
    removed from C{streams}; h2's C{_stream_closed_by} looks there."""
    return connection._closed_streams


def streamClosedBy(connection: H2Connection, stream_id: int) -> Any:
    """C{H2Connection._stream_closed_by(stream_id)}: the StreamClosedBy of a closed
    stream, or C{None} for one never opened."""
    return connection._stream_closed_by(stream_id)


def getOrCreateStream(connection: H2Connection, stream_id: int, allowed_ids: Any) -> H2Stream:
    """C{H2Connection._get_or_create_stream}: the stream, opened through the
    C{_begin_new_stream} hook if it is new."""
    return connection._get_or_create_stream(stream_id, allowed_ids)


def closedStreamEvents(error: StreamClosedError) -> list[Any]:
    """C{StreamClosedError._events}: the events h2 had for the frame before it
    found the stream closed (an RST_STREAM it then answers)."""
    return error._events


#: h2's own C{H2Connection} frame receivers and hooks, called as
#: C{function(connection, ...)} where the codec defers to the library.
receiveDataFrame = H2Connection._receive_data_frame
receivePriorityFrame = H2Connection._receive_priority_frame
receiveRstStreamFrame = H2Connection._receive_rst_stream_frame
receiveWindowUpdateFrame = H2Connection._receive_window_update_frame
localSettingsAcked = H2Connection._local_settings_acked
openStreams = H2Connection._open_streams

#: The frame classes whose receipt the codec leaves to h2's own receiver.
LIBRARY_FRAME_HANDLERS: dict[type, Callable[[H2Connection, Any], tuple[list[Any], list[Any]]]] = {
    PushPromiseFrame: H2Connection._receive_push_promise_frame,
    SettingsFrame: H2Connection._receive_settings_frame,
    DataFrame: H2Connection._receive_data_frame,
    PingFrame: H2Connection._receive_ping_frame,
    ContinuationFrame: H2Connection._receive_naked_continuation,
    AltSvcFrame: H2Connection._receive_alt_svc_frame,
    ExtensionFrame: H2Connection._receive_unknown_frame,
}


def connectionHooks(cls: C) -> C:
    """Install a ServerConnection's methods as the private hooks h2's
    C{H2Connection} calls on itself (the names on the left)."""
    cls._open_streams = cls.openStreamCount  # open_inbound_streams counts through it
    cls._begin_new_stream = cls.beginNewStream  # _get_or_create_stream opens through it
    cls._receive_frame = cls.receiveFrame  # receive_data dispatches each frame through it
    cls._receive_headers_frame = cls.receiveHeadersFrame
    cls._receive_priority_frame = cls.receivePriorityFrame
    cls._receive_rst_stream_frame = cls.receiveRstStreamFrame
    cls._receive_window_update_frame = cls.receiveWindowUpdateFrame
    cls._receive_goaway_frame = cls.receiveGoAwayFrame
    cls._handle_data_on_closed_stream = cls.handleDataOnClosedStream  # from _receive_data_frame
    cls._terminate_connection = cls.terminateConnection  # receive_data's connection errors
    cls._local_settings_acked = cls.localSettingsAcked  # _receive_settings_frame's ACK
    return cls


# -- h2.stream ---------------------------------------------------------------------

#: C{h2.stream._transitions}: (StreamState, StreamInputs) -> (function or None,
#: next state), the table h2's C{H2StreamStateMachine.process_input} looks up.
STREAM_TRANSITIONS: dict[tuple[Any, Any], tuple[Any, Any]] = h2stream._transitions


def streamHooks(cls: C) -> C:
    """Install a stream's C{trackContentLength} as h2's C{H2Stream._track_content_length},
    which h2 calls for every received HEADERS and DATA frame."""
    cls._track_content_length = cls.trackContentLength
    return cls


# -- h2.frame_buffer ---------------------------------------------------------------

#: C{FrameBuffer._update_header_buffer(buffer, frame)}: h2's header-block assembly.
updateHeaderBuffer = FrameBuffer._update_header_buffer


def bufferedBytes(buffer: FrameBuffer) -> bytearray:
    """C{FrameBuffer._data}: the bytes not yet parsed; h2 appends with C{+=} and
    consumes with C{del}, so the same bytearray lives as long as the buffer."""
    return buffer._data


def pendingHeaderBlock(buffer: FrameBuffer) -> list[Any]:
    """C{FrameBuffer._headers_buffer}: the frames of a header block still arriving.
    h2 replaces the list only when it completes a block itself, which the codec's
    own assembly (L{frameBufferHooks}) does in place instead."""
    return buffer._headers_buffer


def frameBufferHooks(cls: C) -> C:
    """Install a frame buffer's C{updateHeaderBuffer} as h2's
    C{FrameBuffer._update_header_buffer}, called for every parsed frame."""
    cls._update_header_buffer = cls.updateHeaderBuffer
    return cls


# -- h2.settings -------------------------------------------------------------------


def settingValues(settings: Settings) -> dict[Any, Any]:
    """C{Settings._settings}: setting code -> its values (current first, then those
    awaiting an ACK), read through C{popleft}, C{append} and indexing only."""
    return settings._settings


def replaceSettingValues(settings: Settings, values: dict[Any, Any]) -> None:
    """Set C{Settings._settings} (see L{settingValues})."""
    settings._settings = values


# -- hpack -------------------------------------------------------------------------


def tableSizeChange(encoder: Encoder) -> bytes:
    """C{Encoder._encode_table_size_change()}: the dynamic table size updates owed
    to the peer, encoded (the caller then clears C{header_table.resized})."""
    return encoder._encode_table_size_change()


# -- priority ----------------------------------------------------------------------


def treeStreams(tree: priority.PriorityTree) -> dict[int, PriorityStream]:
    """C{PriorityTree._streams}: stream id -> the tree's node (the root, 0, included);
    made once in C{__init__} and never replaced."""
    return tree._streams


def treeMaximum(tree: priority.PriorityTree) -> int:
    """C{PriorityTree._maximum_streams}: the limit C{insert_stream} enforces
    (counting the root)."""
    return tree._maximum_streams


# -- heapq -------------------------------------------------------------------------


def restoreHeapAt(heap: list[Any], index: int) -> None:
    """Restore the heap invariant after C{heap[index]} was replaced: heapq's
    C{_siftup(heap, index)} then C{_siftdown(heap, 0, index)}, as C{heapq.heapreplace}
    and the C implementation's removal do."""
    heapq._siftup(heap, index)  # type: ignore[attr-defined]
    heapq._siftdown(heap, 0, index)  # type: ignore[attr-defined]
