"""An HTTP/2 connection's life: its L{ConnectionState}, its L{Timers}, and the
GOAWAY and close sequencing of L{H2Connection} (the L{Lifecycle} half of it).

States only move forward::

    OPEN -> GOING_AWAY -> FINAL_GOAWAY -> CLOSING -> CLOSED
      \\__________\\_____________\\_____________^

- C{GOING_AWAY}: the first GOAWAY of a graceful shutdown (last stream id 2^31-1)
  is out; streams still open normally.
- C{FINAL_GOAWAY}: the GOAWAY naming the last accepted stream is out; later
  streams are refused; the connection closes with its last stream.
- C{CLOSING}: we closed (or aborted) the transport; nothing more is read, sent or
  started; the transport is aborted C{abortTimeout} later if it is still there.
- C{CLOSED}: the transport is gone (C{connectionLost}).

Whether the I{client} sent GOAWAY is a fact about the peer, kept beside the state
(C{_peerGoingAway}): it refuses new streams and closes the connection with its last
stream, whatever our own state is.
"""

from __future__ import annotations

import enum
from typing import Callable

from twisted.internet.error import ConnectionLost, TimeoutError
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from h2proxy.frontend.handler import StreamCut
from h2proxy.frontend.http2.codec import ErrorCodes, ProtocolError


log = Logger()

#: Seconds between the two GOAWAY frames of a graceful shutdown (h2o's value).
GRACEFUL_GOAWAY_DELAY = 1.0

#: Highest stream id, announced by the first GOAWAY of a graceful shutdown.
MAX_STREAM_ID = 2**31 - 1

#: Seconds a connection we close keeps reading (and dropping) what the client
#: still sends, after its GOAWAY and our FIN, before closing for good: closing a
#: socket with unread input makes the kernel send a TCP reset, and a client still
#: writing (a flood) would lose the GOAWAY that says why (nginx's lingering close).
LINGER = 2.0


class ConnectionState(enum.IntEnum):
    """Where the connection is in its life (ordered: states only move forward)."""

    OPEN = 0
    GOING_AWAY = 1
    FINAL_GOAWAY = 2
    CLOSING = 3
    CLOSED = 4


#: Aliases for the comparisons on the hot path.
CLOSING = ConnectionState.CLOSING
CLOSED = ConnectionState.CLOSED


class Timer(enum.IntEnum):
    """The connection's delayed calls (the idle timeout is L{TimeoutMixin}'s)."""

    #: The next pass of the send loop (one per reactor turn).
    SEND = 0
    #: The rest of a read deferred to the next reactor turn.
    INPUT = 1
    #: The second GOAWAY of a graceful shutdown.
    GRACEFUL = 2
    #: C{requestHeaderTimeout}: the first complete request headers.
    REQUEST_HEADER = 3
    #: C{sendTimeout}: how long the transport may stay paused.
    SEND_STALL = 4
    #: The per-stream deadlines (window waits, request body silence).
    WATCHDOG = 5
    #: The lingering close (see L{LINGER}).
    LINGER = 6
    #: C{abortTimeout}: abort a transport that did not close.
    ABORT = 7


class Timers:
    """The delayed calls of one connection, one slot per L{Timer}: one place to
    arm, cancel and cancel all. A slot is empty again once its call ran."""

    __slots__ = ("_reactor", "_calls")

    def __init__(self, reactor: IReactorTime) -> None:
        self._reactor = reactor
        self._calls: list[IDelayedCall | None] = [None] * len(Timer)

    def arm(self, timer: Timer, delay: float, function: Callable[[], object]) -> None:
        """Call C{function} in C{delay} seconds (replacing what C{timer} had armed)."""
        self.cancel(timer)
        self._calls[timer] = self._reactor.callLater(delay, self._fire, timer, function)

    def armed(self, timer: Timer) -> bool:
        return self._calls[timer] is not None

    def deadline(self, timer: Timer) -> float | None:
        """When C{timer} fires, or C{None} when it is not armed."""
        call = self._calls[timer]
        return None if call is None else call.getTime()

    def reschedule(self, timer: Timer, delay: float) -> None:
        """Move an armed C{timer} to C{delay} seconds from now."""
        call = self._calls[timer]
        if call is not None:
            call.reset(delay)

    def cancel(self, timer: Timer) -> None:
        call = self._calls[timer]
        if call is not None:
            self._calls[timer] = None
            if call.active():
                call.cancel()

    def cancelAll(self, keep: Timer | None = None) -> None:
        """Cancel every timer but C{keep}."""
        for timer in Timer:
            if timer is not keep:
                self.cancel(timer)

    def _fire(self, timer: Timer, function: Callable[[], object]) -> None:
        self._calls[timer] = None
        function()


class Lifecycle:
    """The GOAWAY and close sequencing of L{H2Connection} (a base class of it)."""

    def _enter(self, state: ConnectionState) -> None:
        """Move forward to C{state} (never back)."""
        if state > self._state:
            self._state = state

    def gracefulShutdown(self) -> None:
        """h2o's graceful GOAWAY: GOAWAY(2^31-1, NO_ERROR) now, so that requests in
        flight are not refused, then after L{GRACEFUL_GOAWAY_DELAY} GOAWAY naming the
        last accepted stream; later streams are refused, and the connection closes
        when its last stream completes."""
        if self._state >= ConnectionState.GOING_AWAY:
            return
        self._enter(ConnectionState.GOING_AWAY)
        self.conn.send_goaway(MAX_STREAM_ID)
        self._outputReady()
        self._timers.arm(Timer.GRACEFUL, GRACEFUL_GOAWAY_DELAY, self._sendFinalGoAway)

    def isIdle(self) -> bool:
        """No stream is open and the connection is not closing: closing it now
        loses nothing (the worker's connection cap closes such connections first)."""
        return not self.streams and self._state < CLOSING

    def closeIdle(self) -> None:
        """Close an idle connection to make room for another: GOAWAY NO_ERROR naming
        the last accepted stream, then close."""
        if not self.isIdle():
            return
        log.info("closing idle HTTP/2 connection from {peer} to make room for a new one", peer=self._peer())
        self.conn.send_goaway(self.conn.last_accepted_stream_id)
        self._closeNow(Failure(ConnectionLost("idle connection closed at the connection cap")))

    def timeoutConnection(self) -> None:
        """The connection was idle for C{timeOut} seconds: GOAWAY NO_ERROR and close;
        C{abortTimeout} later, abort the transport if it is still there."""
        if self._state >= CLOSING:
            return
        log.info("closing idle HTTP/2 connection from {peer} after {timeout}s", peer=self._peer(), timeout=self.timeOut)
        self.conn.send_goaway(self.conn.last_accepted_stream_id)
        self._closeNow(Failure(TimeoutError(f"HTTP/2 connection idle for {self.timeOut}s")))

    def forceAbortClient(self) -> None:
        """The transport did not go away C{abortTimeout} seconds after we closed it
        (a peer that does not read): abort it so the descriptor is not leaked."""
        self._timers.cancel(Timer.ABORT)
        log.info("aborting HTTP/2 connection from {peer}: still open {timeout}s after close", peer=self._peer(), timeout=self.abortTimeout)
        self.transport.abortConnection()

    def cutStreams(self, cause: StreamCut) -> None:
        """Drop the connection now, telling each open stream's handler C{cause} (the
        drain window ran out: the proxy's reason, not the client's)."""
        if self._state is CLOSED:
            return
        log.info("aborting HTTP/2 connection from {peer} with {count} open stream(s): {cause}", peer=self._peer(), count=len(self.streams), cause=str(cause))
        self._abortNow(Failure(cause))

    def _refusing(self, streamID: int) -> bool:
        """A new stream is refused: the client is going away, or the stream is above
        the last one our final GOAWAY accepted."""
        if self._peerGoingAway:
            return True
        return self._finalGoAwayID is not None and streamID > self._finalGoAwayID

    def _sendFinalGoAway(self) -> None:
        """Second step of the graceful GOAWAY: streams above the last accepted one
        are refused from now on."""
        if self._state >= ConnectionState.FINAL_GOAWAY:
            return
        self._finalGoAway()
        self._outputReady()
        self._maybeClose()

    def _finalGoAway(self) -> None:
        """GOAWAY naming the last accepted stream."""
        self._finalGoAwayID = self.conn.last_accepted_stream_id
        self.conn.send_goaway(self._finalGoAwayID)
        self._enter(ConnectionState.FINAL_GOAWAY)

    def _maybeClose(self) -> None:
        """Close once going away (either side) and no stream is left."""
        if self._state >= CLOSING or self.streams:
            return
        if self._finalGoAwayID is None:
            if not self._peerGoingAway:
                return
            self._finalGoAway()
        self._closeNow(Failure(ConnectionLost("HTTP/2 connection closed after GOAWAY")))

    def _connectionError(self, error: ProtocolError) -> None:
        """h2 found a connection error and queued GOAWAY: send it and close."""
        code = getattr(error, "error_code", ErrorCodes.PROTOCOL_ERROR)
        log.info("HTTP/2 connection error from {peer}: {code}: {error}", peer=self._peer(), code=code, error=str(error))
        self._closeNow(Failure(error))

    def _internalError(self, failure: Failure) -> None:
        """A bug of ours: log it, GOAWAY INTERNAL_ERROR, close."""
        log.failure("internal error on HTTP/2 connection from {peer}", failure, peer=self._peer())
        if self._state >= CLOSING:
            return
        self.conn.send_goaway(self.conn.last_accepted_stream_id, ErrorCodes.INTERNAL_ERROR)
        self._closeNow(failure)

    def _closeNow(self, reason: Failure) -> None:
        """Abort the streams, flush what is queued, close the transport (and abort
        it C{abortTimeout} later if it is still there)."""
        if self._state >= CLOSING:
            return
        self._enter(CLOSING)
        self._timers.cancelAll(keep=Timer.ABORT)
        self.setTimeout(None)
        self._abortAllStreams(reason)
        self._writeAllNow()
        self._closeTransport()
        if self.abortTimeout is not None:
            self._timers.arm(Timer.ABORT, self.abortTimeout, self.forceAbortClient)

    def _abortNow(self, reason: Failure) -> None:
        """Drop the connection without a word: the client is not reading anyway."""
        self._enter(CLOSING)
        self._timers.cancelAll(keep=Timer.ABORT)
        self.setTimeout(None)
        self._abortAllStreams(reason)
        self._discardControl()
        self.transport.abortConnection()

    def _closeTransport(self) -> None:
        """Close after the output is flushed; where the transport can half-close
        (TCP; TLS: close_notify, then TCP's half-close), close the write side first
        and linger (see L{LINGER}).

        The connection stops being the transport's producer first: a TLS transport
        does not start its close while a producer is registered, so every close
        waited for the abort timer and ended in a reset."""
        self.transport.unregisterProducer()
        loseWriteConnection = getattr(self.transport, "loseWriteConnection", None)
        if loseWriteConnection is None:
            self.transport.loseConnection()
            return
        loseWriteConnection()
        self._timers.arm(Timer.LINGER, LINGER, self.transport.loseConnection)
