"""The defences of L{H2Connection} against hostile clients (the L{Defences} half of
it): the budgets, the timeouts, and the per-stream watchdog. (See docs/security.md
for the whole list.)

- Two leaky-bucket budgets (L{h2proxy.frontend.http2.budget}): streams the client
  resets before their response is complete (C{reset_budget}), and "glitches"
  (C{glitch_budget}): stream errors, refused or malformed requests, premature
  resets, empty DATA or header fragments, WINDOW_UPDATEs under
  L{TINY_WINDOW_UPDATE} while a stream waits for window, PRIORITY frames, SETTINGS
  after the first, unknown frame types. Over either, GOAWAY ENHANCE_YOUR_CALM and
  close at once.
- Timers: C{requestHeaderTimeout} bounds the time to the first complete request
  headers; C{sendTimeout} bounds how long the transport may stay paused (the client
  does not read) and how long a stream may wait for window with data queued;
  C{requestBodyTimeout} bounds the silence of a client whose request body the proxy
  is waiting for. The per-stream ones share one watchdog timer per connection
  (L{Defences._watch}), so a DATA frame costs a clock read, not a timer.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.error import ConnectionAborted, TimeoutError
from twisted.logger import Logger
from twisted.python.failure import Failure

from h2proxy.frontend.handler import REQUEST_ERROR, StreamCut
from h2proxy.frontend.http2.codec import ErrorCodes
from h2proxy.frontend.http2.lifecycle import CLOSING, Timer
from h2proxy.frontend.http2.stream import H2Stream
from h2proxy.message import Headers


log = Logger()

#: Seconds of float error tolerated when the watchdog compares a deadline with the
#: clock (it was scheduled for that very deadline).
_CLOCK_SLACK = 1e-6

#: A WINDOW_UPDATE smaller than this, for a stream (or the connection) that has
#: response bytes waiting for window, is a glitch: the data dribble of CVE-2019-9511
#: makes the proxy cut its queue into frames of a few bytes. Clients batch their
#: updates (h2, nghttp2, browsers: half a window at a time), far above this.
TINY_WINDOW_UPDATE = 1024


class _DiscardRequest:
    """The handler of a request the front end answers itself: the body is read
    (and its window credit returned) and dropped."""

    def requestReceived(self, head: Any) -> None:
        pass

    def requestDataReceived(self, data: bytes) -> None:
        pass

    def requestEnded(self, trailers: Headers) -> None:
        pass

    def streamAborted(self, reason: Failure) -> None:
        pass


DISCARD = _DiscardRequest()


class Defences:
    """Budgets, timeouts and the watchdog of L{H2Connection} (a base class of it)."""

    def _prematureReset(self) -> None:
        """The client reset a stream whose response was not complete."""
        if self._resets.charge():
            self._calmDown(f"{self._resets.spent} streams reset before their response", "reset_budget", self._resets.capacity)
            return
        self._glitch("stream reset before its response")

    def _glitch(self, what: str, units: int = 1) -> None:
        """Charge the glitch budget; over it, close the connection."""
        if self._glitches.charge(units):
            self._calmDown(f"{self._glitches.spent} glitches (the last: {what})", "glitch_budget", self._glitches.capacity)

    def _calmDown(self, what: str, option: str, limit: int) -> None:
        """A budget is spent: GOAWAY ENHANCE_YOUR_CALM and close now."""
        if self._state >= CLOSING:
            return
        self._rejected(option)
        log.warn(
            "closing HTTP/2 connection from {peer}: {what}, over http2.{option} ({limit} per {window}s); "
            "GOAWAY ENHANCE_YOUR_CALM",
            peer=self._peer(),
            what=what,
            option=option,
            limit=limit,
            window=self._settings.budget_window,
        )
        self.conn.send_goaway(
            self.conn.last_accepted_stream_id, ErrorCodes.ENHANCE_YOUR_CALM, f"http2.{option} exceeded".encode()
        )
        self._closeNow(Failure(ConnectionAborted(f"http2.{option} exceeded: {what}")))

    def _rejected(self, reason: str) -> None:
        if self.tracker is not None:
            self.tracker.rejected(reason)

    def _requestHeaderTimedOut(self) -> None:
        """No complete request headers within C{requestHeaderTimeout} of the start."""
        if self._state >= CLOSING:
            return
        log.info(
            "closing HTTP/2 connection from {peer}: no complete request headers within {timeout}s",
            peer=self._peer(),
            timeout=self.requestHeaderTimeout,
        )
        self.conn.send_goaway(self.conn.last_accepted_stream_id)
        self._closeNow(Failure(TimeoutError(f"no request headers within {self.requestHeaderTimeout}s")))

    def _sendTimedOut(self) -> None:
        """The transport stayed paused C{sendTimeout} seconds: the client does not read."""
        if self._state >= CLOSING:
            return
        log.info(
            "aborting HTTP/2 connection from {peer}: it read nothing for {timeout}s", peer=self._peer(), timeout=self.sendTimeout
        )
        self._abortNow(Failure(TimeoutError(f"client read nothing for {self.sendTimeout}s")))

    def _watch(self, deadline: float) -> None:
        """Make sure the watchdog runs no later than C{deadline}."""
        delay = max(0.0, deadline - self._reactor.seconds())
        due = self._timers.deadline(Timer.WATCHDOG)
        if due is None:
            self._timers.arm(Timer.WATCHDOG, delay, self._watchdog)
        elif due > deadline:
            self._timers.reschedule(Timer.WATCHDOG, delay)

    def _watchdog(self) -> None:
        """Deal with the streams whose request body or response window has stalled
        past its timeout; run again at the next deadline, if there is one."""
        if self._state >= CLOSING:
            return
        now = self._reactor.seconds() + _CLOCK_SLACK
        nextDeadline: float | None = None
        for stream in list(self.streams.values()):
            windowDeadline, bodyDeadline = self._deadlines(stream)
            if windowDeadline is not None and windowDeadline <= now:
                self._windowTimedOut(stream)
            elif bodyDeadline is not None and bodyDeadline <= now:
                self._requestBodyTimedOut(stream)
            else:
                for deadline in (windowDeadline, bodyDeadline):
                    if deadline is not None and (nextDeadline is None or deadline < nextDeadline):
                        nextDeadline = deadline
            if self._state >= CLOSING:
                return
        if nextDeadline is not None:
            self._watch(nextDeadline)

    def _deadlines(self, stream: H2Stream) -> tuple[float | None, float | None]:
        """When C{stream}'s wait for window, and its wait for request body, time out."""
        window = body = None
        if self.sendTimeout is not None and stream.streamID in self._windowBlocked:
            window = self._windowBlocked[stream.streamID] + self.sendTimeout
        if self.requestBodyTimeout is not None and stream.awaitingBody:
            body = stream.lastBodyProgress + self.requestBodyTimeout
        return window, body

    def _windowTimedOut(self, stream: H2Stream) -> None:
        log.info(
            "resetting stream {stream} from {peer}: response bytes waited {timeout}s for flow-control window",
            stream=stream.streamID,
            peer=self._peer(),
            timeout=self.sendTimeout,
        )
        self.abortRequest(stream.streamID, ErrorCodes.CANCEL)

    def _requestBodyTimedOut(self, stream: H2Stream) -> None:
        """The client sent no request body bytes for C{requestBodyTimeout}: 408 if no
        response has started (the handler is told the stream is gone), else reset."""
        log.info(
            "stream {stream} from {peer}: no request body bytes for {timeout}s",
            stream=stream.streamID,
            peer=self._peer(),
            timeout=self.requestBodyTimeout,
        )
        if stream.hasFinalHead:
            self.abortRequest(stream.streamID, ErrorCodes.CANCEL)
            return
        handler = stream.replaceHandler(DISCARD)
        stream.abandonBody()
        if handler is not None:
            try:
                handler.streamAborted(Failure(StreamCut(REQUEST_ERROR, f"no request body bytes for {self.requestBodyTimeout}s", 408)))
            except Exception:
                log.failure("streamAborted raised for stream {stream} from {peer}", stream=stream.streamID, peer=self._peer())
        if stream.alive and not stream.hasFinalHead:
            self._writeErrorResponse(stream.streamID, 408, "request body not received in time")
