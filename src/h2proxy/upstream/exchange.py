# -*- test-case-name: tests.upstream.test_pool -*-
"""UpstreamExchange: the L{Exchange} the bridge holds for one request.

It exists before any connection does (the pool connects, queues or retries in the
background), so it keeps what the bridge gives it until a connection is attached,
then forwards everything to that L{HTTP11ClientProtocol}. It filters what comes
back: after a cancel or a final outcome nothing more reaches the receiver, and a
failed attempt is first offered to the pool (its L{Dispatcher}), which may send the
request again, invisibly to the bridge, when that is safe.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Protocol

from h2proxy.errors import UpstreamError
from h2proxy.message import Headers, ResponseHead, UpstreamRequest
from h2proxy.upstream.interfaces import ResponseReceiver

if TYPE_CHECKING:
    from h2proxy.upstream.http11 import HTTP11ClientProtocol
    from h2proxy.upstream.serverpool import ServerPool

#: Most request-body bytes held before a connection is attached. The exchange pauses
#: its producer as soon as it is registered, so only bytes written before that (or by
#: a producer ignoring the pause) land here; over the cap the exchange fails.
MAX_EARLY_BODY = 1024 * 1024

#: Most request-body bytes kept so that an idempotent request can be sent again to
#: another server. A larger body is not kept, and its request is not retried once
#: any of it was written.
MAX_REPLAY_BODY = 64 * 1024

#: Methods safe to send twice (RFC 9110 9.2.2).
IDEMPOTENT_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})

#: Why the request-body producer is held paused.
_CONNECTING = "connecting"
_TRANSPORT = "transport"


class Dispatcher(Protocol):
    """Where an exchange's attempts are decided (the upstream's pool)."""

    def withdraw(self, exchange: "UpstreamExchange") -> None:
        """C{exchange} no longer wants a connection (cancelled while waiting)."""

    def attemptFailed(self, exchange: "UpstreamExchange", failure: "AttemptFailure") -> bool:
        """An attempt failed; returns True if the dispatcher took the exchange back
        (for another attempt), False if the failure is final."""

    def attemptAnswered(self, exchange: "UpstreamExchange") -> None:
        """The server sent a response head: it is alive."""

    def exchangeDone(self, exchange: "UpstreamExchange") -> None:
        """The exchange ended (any way); called once."""


class PushProducer(Protocol):
    """The request-body producer (an H2Stream), as far as the exchange uses it."""

    def pauseProducing(self) -> None: ...

    def resumeProducing(self) -> None: ...


@dataclass(frozen=True, slots=True)
class AttemptFailure:
    """One failed attempt, as the dispatcher needs to judge it.

    @ivar error: what went wrong.
    @ivar server: the server pool of the attempt.
    @ivar sent: whether any byte of the request may have reached the server.
    @ivar reused: whether the connection came from the idle pool.
    @ivar answered: whether the server sent any byte of a response.
    """

    error: UpstreamError
    server: "ServerPool | None"
    sent: bool
    reused: bool
    answered: bool


class ExchangeState(Enum):
    """The states of L{UpstreamExchange}; see its docstring."""

    WAITING = "waiting for a connection"
    ATTACHED = "attached to a connection"
    DONE = "done"


def replayable(request: UpstreamRequest) -> bool:
    """Whether sending C{request} twice is harmless: idempotent and without a body."""
    return request.body_length == 0 and request.method in IDEMPOTENT_METHODS


class UpstreamExchange:
    """One request/response exchange with a backend, as the bridge sees it.

    States (L{ExchangeState}):
      - C{WAITING}: no connection yet (connecting, queued for a free slot, or between
        two attempts). Body bytes and the end of the body are kept (at most
        L{MAX_EARLY_BODY}); the request-body producer is held paused.
      - C{ATTACHED}: a connection carries the request; calls are forwarded to it and
        its reports are passed to the receiver.
      - C{DONE}: ended, failed or cancelled; every call is ignored and the receiver,
        producer and connection are let go.

    Request-body backpressure: the producer is paused while either reason holds
    (no connection yet; backend socket full) and resumed when none does. When the
    exchange ends before its body was all sent (an early response), the producer is
    resumed after the receiver heard the outcome, so the client's remaining upload
    drains (the bridge drops it) instead of stalling the HTTP/2 stream.

    Replay: for an idempotent method the body written so far is kept (up to
    L{MAX_REPLAY_BODY}, then dropped for good) until the response starts, so a
    failed attempt can be sent again whole. A request that was never written (the
    connect failed) needs nothing kept: what the bridge gave is still here.

    @ivar request: what is sent.
    @ivar state: the current L{ExchangeState}.
    @ivar server: the server pool of the current attempt (None between attempts).
    @ivar excluded: servers this request must not be sent to again (they failed it).
    @ivar tries: retries on another server used so far.
    @ivar retried: whether the one stale-connection retry was used.
    @ivar wantsFresh: the next attempt must use a new connection (after a stale one).
    @ivar startedAt: when the request was made (the retry deadline counts from it).
    """

    def __init__(
        self,
        *,
        request: UpstreamRequest,
        head: bytes,
        receiver: ResponseReceiver,
        dispatcher: Dispatcher | None,
        startedAt: float = 0.0,
    ) -> None:
        self.request = request
        self.state = ExchangeState.WAITING
        self.server: ServerPool | None = None
        self.excluded: set[ServerPool] = set()
        self.tries = 0
        self.retried = False
        self.wantsFresh = False
        self.startedAt = startedAt
        self._head = head
        self._receiver: ResponseReceiver | None = receiver
        self._dispatcher = dispatcher
        self._connection: HTTP11ClientProtocol | None = None
        self._reused = False
        self._sending = False
        self._producer: PushProducer | None = None
        self._producerPaused = False
        self._holds: set[str] = {_CONNECTING}
        self._early: list[bytes] = []
        self._earlySize = 0
        self._replay: list[bytes] | None = [] if request.method in IDEMPOTENT_METHODS else None
        self._replaySize = 0
        self._finished = False
        self._trailers: Headers = ()
        self._responsePaused = False

    @property
    def bodyReplayable(self) -> bool:
        """Whether every body byte written so far is kept for another attempt."""
        return self._replay is not None

    # -- Exchange: the bridge's side -------------------------------------------

    def registerProducer(self, producer: PushProducer, streaming: bool) -> None:
        """Take the request-body producer, paused at once if it may not write yet."""
        if self.state is ExchangeState.DONE:
            return
        self._producer = producer
        self._producerPaused = False
        if self._holds:
            self._pauseProducer()

    def unregisterProducer(self) -> None:
        self._producer = None
        self._producerPaused = False

    def write(self, data: bytes) -> None:
        """Send request body bytes now, or keep them until a connection is attached."""
        if self.state is ExchangeState.DONE:
            return
        self._keepForReplay(data)
        if self.state is ExchangeState.ATTACHED:
            assert self._connection is not None
            self._connection.writeBody(data)
            return
        self._earlySize += len(data)
        if self._earlySize > MAX_EARLY_BODY:
            if self._dispatcher is not None:
                self._dispatcher.withdraw(self)
            self.fail(
                UpstreamError(
                    f"request body producer wrote over {MAX_EARLY_BODY} bytes "
                    "before the backend connection was ready"
                )
            )
            return
        self._early.append(data)

    def finishRequest(self, trailers: Headers = ()) -> None:
        if self.state is ExchangeState.DONE or self._finished:
            return
        self._finished = True
        self._trailers = trailers
        if self.state is ExchangeState.ATTACHED:
            assert self._connection is not None
            self._connection.finishBody(trailers)
        self._release(_TRANSPORT)

    def pauseProducing(self) -> None:
        """Stop reading the response from the backend (the client is slow)."""
        self._responsePaused = True
        if self.state is ExchangeState.ATTACHED:
            assert self._connection is not None
            self._connection.pauseResponse()

    def resumeProducing(self) -> None:
        self._responsePaused = False
        if self.state is ExchangeState.ATTACHED:
            assert self._connection is not None
            self._connection.resumeResponse()

    def stopProducing(self) -> None:
        """Same as L{cancel}."""
        self.cancel()

    def cancel(self) -> None:
        """Abandon the exchange: close its connection unless the response is already
        complete; deliver nothing more."""
        if self.state is ExchangeState.WAITING and self._dispatcher is not None:
            self._dispatcher.withdraw(self)
        elif self.state is ExchangeState.ATTACHED:
            assert self._connection is not None
            self._connection.abandon()
        self._letGo()

    # -- the pool's side -------------------------------------------------------

    def attach(self, connection: "HTTP11ClientProtocol", reused: bool) -> None:
        """Send the request on C{connection} (from the idle pool if C{reused})."""
        assert self.state is ExchangeState.WAITING
        self.state = ExchangeState.ATTACHED
        self._connection = connection
        self._reused = reused
        self._sending = True
        connection.sendRequest(self.request, self._head, self)
        self._sending = False
        if self._connection is not connection:
            return
        if self._responsePaused:
            connection.pauseResponse()
        early, self._early, self._earlySize = self._early, [], 0
        for data in early:
            if self._connection is not connection:
                return
            connection.writeBody(data)
        if self._finished and self._connection is connection:
            connection.finishBody(self._trailers)
        if self._connection is connection:
            self._release(_CONNECTING)

    def connectFailed(self, error: UpstreamError) -> None:
        """The connection for this attempt could not be opened: nothing was sent, so
        the dispatcher may try another server whatever the method."""
        if self.state is not ExchangeState.WAITING:
            return
        failure = AttemptFailure(error, self.server, sent=False, reused=False, answered=False)
        self.server = None
        if self._dispatcher is not None and self._dispatcher.attemptFailed(self, failure):
            return
        self._deliverOutcome(lambda receiver: receiver.responseFailed(error))

    def fail(self, error: UpstreamError) -> None:
        """Fail a waiting exchange for good (no server, queue full or timed out,
        upstream shutting down, request refused)."""
        if self.state is not ExchangeState.WAITING:
            return
        self._deliverOutcome(lambda receiver: receiver.responseFailed(error))

    def rewind(self, fresh: bool, resend: bool) -> None:
        """Get ready for another attempt: back to C{WAITING}. With C{resend} (the last
        attempt wrote the request) the body kept for replay is queued again; the
        dispatcher only asks for that when L{bodyReplayable}."""
        if resend:
            assert self._replay is not None
            self._early, self._earlySize = list(self._replay), self._replaySize
        self.state = ExchangeState.WAITING
        self._connection = None
        self.server = None
        self.wantsFresh = fresh
        self._holds.discard(_TRANSPORT)
        self._hold(_CONNECTING)

    # -- ExchangeListener: the connection's side -------------------------------

    def responseInformational(self, head: ResponseHead) -> None:
        self._replay = None
        if self._receiver is not None:
            self._receiver.responseInformational(head)

    def responseHeadReceived(self, head: ResponseHead) -> None:
        self._replay = None
        if self._dispatcher is not None and self.state is ExchangeState.ATTACHED:
            self._dispatcher.attemptAnswered(self)
        if self._receiver is not None:
            self._receiver.responseHeadReceived(head)

    def responseDataReceived(self, data: bytes) -> None:
        if self._receiver is not None:
            self._receiver.responseDataReceived(data)

    def responseEnded(self, trailers: Headers) -> None:
        if self.state is ExchangeState.ATTACHED:
            self._deliverOutcome(lambda receiver: receiver.responseEnded(trailers))

    def responseFailed(self, error: UpstreamError) -> None:
        if self.state is not ExchangeState.ATTACHED:
            return
        connection = self._connection
        assert connection is not None
        failure = AttemptFailure(
            error,
            self.server,
            sent=not self._sending,
            reused=self._reused,
            answered=connection.responseBytes > 0,
        )
        if self._dispatcher is not None and self._dispatcher.attemptFailed(self, failure):
            return
        self._deliverOutcome(lambda receiver: receiver.responseFailed(error))

    def pauseRequestBody(self) -> None:
        self._hold(_TRANSPORT)

    def resumeRequestBody(self) -> None:
        self._release(_TRANSPORT)

    # -- internals -------------------------------------------------------------

    def _keepForReplay(self, data: bytes) -> None:
        if self._replay is None:
            return
        self._replaySize += len(data)
        if self._replaySize > MAX_REPLAY_BODY:
            self._replay = None
            return
        self._replay.append(data)

    def _deliverOutcome(self, deliver: Callable[[ResponseReceiver], None]) -> None:
        """Tell the receiver the final outcome, then let go of everything; a producer
        we held paused is resumed last (see the class docstring)."""
        receiver, producer, paused = self._receiver, self._producer, self._producerPaused
        self._letGo()
        if receiver is not None:
            deliver(receiver)
        if producer is not None and paused:
            producer.resumeProducing()

    def _letGo(self) -> None:
        if self.state is ExchangeState.DONE:
            return
        self.state = ExchangeState.DONE
        self._receiver = None
        self._producer = None
        self._producerPaused = False
        self._connection = None
        self._early = []
        self._replay = None
        self.server = None
        self.excluded = set()
        self._holds.clear()
        dispatcher, self._dispatcher = self._dispatcher, None
        if dispatcher is not None:
            dispatcher.exchangeDone(self)

    def _hold(self, reason: str) -> None:
        if self.state is ExchangeState.DONE:
            return
        self._holds.add(reason)
        self._pauseProducer()

    def _release(self, reason: str) -> None:
        self._holds.discard(reason)
        if not self._holds and self._producer is not None and self._producerPaused:
            self._producerPaused = False
            self._producer.resumeProducing()

    def _pauseProducer(self) -> None:
        if self._producer is not None and not self._producerPaused:
            self._producerPaused = True
            self._producer.pauseProducing()
