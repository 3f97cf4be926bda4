"""The send loop of L{H2Connection} (the L{SendLoop} half of it): which stream sends
next, framing, writing, and the transport's backpressure.

Each stream keeps its response in a queue of chunks (L{H2Stream}). Streams that can
send something now (a head, or body bytes with window left, or their end) are
"ready": unblocked in the priority tree, blocked otherwise, so a stream waiting for
data or window costs nothing. One pass of the loop picks the next ready stream by
priority (directly when only one is ready), lets it emit one frame of at most
min(peer's max frame size, stream window, connection window) (L{H2Stream.emit}), and
repeats until the transport pauses us, nothing is ready, or L{SEND_PASS_BYTES} went
out; the frames of a pass leave in one C{transport.write}. Writes from streams
schedule one pass per reactor turn (one C{callLater(0)}, not one per frame); a read
runs a pass at its end so that responses and control frames leave together.

The connection is an C{IPushProducer} registered with its transport. While the
transport is paused nothing is sent, stream queues fill to their high-water mark
and pause their producers: a slow reader holds the backends back. WINDOW_UPDATEs
and SETTINGS changes re-evaluate only the streams that wait for window (kept with
the time they started waiting, for C{sendTimeout}). Frames produced while the
transport is paused (SETTINGS/PING ACKs, RST_STREAM, WINDOW_UPDATE, GOAWAY) are
buffered up to C{settings.max_control_buffer} bytes; over it, the connection is
aborted with a log line naming the peer, the limit and the amount.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.error import ConnectionLost
from twisted.logger import Logger
from twisted.python.failure import Failure

from h2proxy.frontend.http2.lifecycle import CLOSED, CLOSING, Timer
from h2proxy.frontend.http2.stream import H2Stream, ResponseState


log = Logger()

#: Body bytes one pass of the send loop may write before yielding to the reactor.
SEND_PASS_BYTES = 256 * 1024

# Enum members as module globals: a lookup on the enum class costs about 0.1 µs on
# Python 3.11, and these are read on every write and every frame.
_SEND = Timer.SEND
_RESPONSE_ENDED = ResponseState.ENDED


class SendLoop:
    """The send loop and output of L{H2Connection} (a base class of it)."""

    def _streamChanged(self, stream: H2Stream) -> None:
        """Something was queued or a window changed: re-evaluate, send soon."""
        if self._updateReady(stream):
            self._scheduleSend()

    def _windowsChanged(self, streamIDs: Any) -> None:
        woken = False
        for streamID in list(streamIDs):
            stream = self.streams.get(streamID)
            if stream is not None and self._updateReady(stream):
                woken = True
        if woken:
            self._scheduleSend()

    def _updateReady(self, stream: H2Stream) -> bool:
        """Block or unblock a stream in the tree; return whether it can send now."""
        streamID = stream.streamID
        if stream.sendableWithoutWindow:
            ready = True
        elif stream.queued:
            ready = self.conn.local_flow_control_window(streamID) > 0
            if ready:
                self._windowBlocked.pop(streamID, None)
            elif streamID not in self._windowBlocked:
                since = self._windowBlocked[streamID] = self._reactor.seconds()
                if self.sendTimeout is not None:
                    self._watch(since + self.sendTimeout)
        else:
            ready = False
        if ready != (streamID in self._ready):
            if ready:
                self._ready.add(streamID)
                self.priority.unblock(streamID)
            else:
                self._ready.discard(streamID)
                self.priority.block(streamID)
        return ready

    def _scheduleSend(self) -> None:
        """One pass per reactor turn; a read or a running pass picks it up itself."""
        if self._inRead or self._inSend or self._transportPaused or self._timers.armed(_SEND):
            return
        self._timers.arm(_SEND, 0, self._sendPass)

    def _sendPass(self) -> None:
        """Send frames by priority until the transport pauses, nothing is ready or
        L{SEND_PASS_BYTES} went out; then write them all at once."""
        self._timers.cancel(_SEND)
        if self._state >= CLOSING:
            return
        sent = 0
        ready = self._ready
        streams = self.streams
        conn = self.conn
        self._inSend = True
        try:
            while ready and not self._transportPaused and self._state < CLOSING and sent < SEND_PASS_BYTES:
                # The next stream by priority (directly when only one is ready); it
                # sends what it can now (L{H2Stream.emit}) and is completed if
                # END_STREAM went. Inline: this runs once per frame.
                stream = streams[next(iter(ready)) if len(ready) == 1 else next(self.priority)]
                sent += stream.emit(conn)
                if stream.response is _RESPONSE_ENDED:
                    self._responseComplete(stream)
                else:
                    stream.afterSend()
                    if stream.alive:
                        self._updateReady(stream)
        except Exception:
            self._inSend = False
            self._internalError(Failure())
            return
        self._inSend = False
        self._flushOutput()
        if self._ready and self._state < CLOSING:
            self._scheduleSend()

    def pauseProducing(self) -> None:
        """The transport is full: stop the send loop (control frames get buffered)
        and give the client C{sendTimeout} seconds to read."""
        self._transportPaused = True
        if self.sendTimeout is not None and not self._timers.armed(Timer.SEND_STALL) and self._state < CLOSING:
            self._timers.arm(Timer.SEND_STALL, self.sendTimeout, self._sendTimedOut)

    def resumeProducing(self) -> None:
        """The transport drained: flush buffered control frames, then send again."""
        self._transportPaused = False
        self._timers.cancel(Timer.SEND_STALL)
        if self._state >= CLOSING:
            return
        if self._controlBuffer:
            buffered, self._controlBuffer, self._controlBuffered = self._controlBuffer, [], 0
            self.transport.writeSequence(buffered)
        if not (self._inRead or self._inSend):
            self._sendPass()

    def stopProducing(self) -> None:
        """The transport will take nothing more: the connection is over."""
        self.connectionLost(Failure(ConnectionLost("the transport stopped taking data")))

    def _outputReady(self) -> None:
        """Frames were queued outside a read or a pass: write them now."""
        if not (self._inRead or self._inSend):
            self._flushOutput()

    def _flushOutput(self) -> bool:
        """Write h2's output, or buffer it behind a paused transport; return
        whether anything was written."""
        data = self.conn.data_to_send()
        if not data or self._state is CLOSED:
            return False
        if self._transportPaused:
            self._bufferControl(data)
            return False
        self.transport.write(data)
        return True

    def _bufferControl(self, data: bytes) -> None:
        self._controlBuffer.append(data)
        self._controlBuffered += len(data)
        limit = self._settings.max_control_buffer
        if self._controlBuffered > limit:
            log.warn(
                "aborting HTTP/2 connection from {peer}: {value} bytes of control frames "
                "buffered while it does not read, over the limit of {limit}",
                peer=self._peer(),
                value=self._controlBuffered,
                limit=limit,
            )
            self._abortNow(Failure(ConnectionLost("control frame buffer limit exceeded")))

    def _writeAllNow(self) -> None:
        """Closing: write buffered control frames and h2's output whatever the
        transport's state (a few frames at most, and the transport is closing)."""
        pending = self._controlBuffer + [self.conn.data_to_send()]
        self._controlBuffer, self._controlBuffered = [], 0
        self.transport.writeSequence([chunk for chunk in pending if chunk])

    def _discardControl(self) -> None:
        """Forget buffered control frames (the connection is being dropped)."""
        self._controlBuffer.clear()
        self._controlBuffered = 0
