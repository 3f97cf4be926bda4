# -*- test-case-name: tests.upstream.test_exchange -*-
"""UpstreamExchange: the L{Exchange} the bridge holds for one request.

It exists before any connection does (the pool connects in the background), so it
keeps what the bridge gives it until a connection is attached, then forwards
everything to that L{HTTP11ClientProtocol}. It filters what comes back: after a
cancel or a final outcome nothing more reaches the receiver, and a stale pooled
connection is retried once when that is safe.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING, Protocol

from h2proxy.errors import BackendClosed, UpstreamError
from h2proxy.message import Headers, ResponseHead, UpstreamRequest
from h2proxy.upstream.interfaces import ResponseReceiver

if TYPE_CHECKING:
    from h2proxy.upstream.http11 import HTTP11ClientProtocol

#: Most request-body bytes held before a connection is attached. The exchange pauses
#: its producer as soon as it is registered, so only bytes written before that (or by
#: a producer ignoring the pause) land here; over the cap the exchange fails.
MAX_EARLY_BODY = 1024 * 1024

#: Methods safe to send twice (RFC 9110 9.2.2): a stale-connection retry needs one.
IDEMPOTENT_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})

#: Why the request-body producer is held paused.
_CONNECTING = "connecting"
_TRANSPORT = "transport"


class ConnectionSource(Protocol):
    """Where an exchange gets its connection (a server's pool)."""

    def acquire(self, exchange: "UpstreamExchange", fresh: bool = False) -> None:
        """Attach a connection to C{exchange} now or later, or fail it."""

    def withdraw(self, exchange: "UpstreamExchange") -> None:
        """C{exchange} no longer wants a connection (cancelled while waiting)."""


class PushProducer(Protocol):
    """The request-body producer (an H2Stream), as far as the exchange uses it."""

    def pauseProducing(self) -> None: ...

    def resumeProducing(self) -> None: ...


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
      - C{WAITING}: no connection yet (connecting, or queued behind the server's
        C{max_connections}). Body bytes and the end of the body are kept (at most
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

    Stale connections: if a connection taken from the idle pool fails with
    L{BackendClosed} before the backend sent a single byte, and the request is
    L{replayable}, it is sent again once on a fresh connection. Never otherwise: a
    request with a body or a non-idempotent method may have been acted upon.

    @ivar request: what is sent.
    @ivar state: the current L{ExchangeState}.
    @ivar retried: whether the one stale-connection retry was used.
    """

    def __init__(
        self,
        *,
        request: UpstreamRequest,
        head: bytes,
        receiver: ResponseReceiver,
        source: ConnectionSource | None,
    ) -> None:
        self.request = request
        self.state = ExchangeState.WAITING
        self.retried = False
        self._head = head
        self._receiver: ResponseReceiver | None = receiver
        self._source = source
        self._connection: HTTP11ClientProtocol | None = None
        self._reused = False
        self._producer: PushProducer | None = None
        self._producerPaused = False
        self._holds: set[str] = {_CONNECTING}
        self._early: list[bytes] = []
        self._earlySize = 0
        self._finished = False
        self._trailers: Headers = ()
        self._responsePaused = False

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
        if self.state is ExchangeState.ATTACHED:
            assert self._connection is not None
            self._connection.writeBody(data)
        elif self.state is ExchangeState.WAITING:
            self._earlySize += len(data)
            if self._earlySize > MAX_EARLY_BODY:
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
        if self.state is ExchangeState.WAITING and self._source is not None:
            self._source.withdraw(self)
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
        connection.sendRequest(self.request, self._head, self)
        if self._responsePaused and self._connection is connection:
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

    def fail(self, error: UpstreamError) -> None:
        """Fail an exchange that has no connection (connect failed, queue full or
        timed out, upstream shutting down, request refused)."""
        if self.state is not ExchangeState.WAITING:
            return
        self._deliverOutcome(lambda receiver: receiver.responseFailed(error))

    # -- ExchangeListener: the connection's side -------------------------------

    def responseInformational(self, head: ResponseHead) -> None:
        if self._receiver is not None:
            self._receiver.responseInformational(head)

    def responseHeadReceived(self, head: ResponseHead) -> None:
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
        if self._mayRetry(error, connection):
            self.retried = True
            self._connection = None
            self.state = ExchangeState.WAITING
            self._hold(_CONNECTING)
            assert self._source is not None
            self._source.acquire(self, fresh=True)
            return
        self._deliverOutcome(lambda receiver: receiver.responseFailed(error))

    def pauseRequestBody(self) -> None:
        self._hold(_TRANSPORT)

    def resumeRequestBody(self) -> None:
        self._release(_TRANSPORT)

    # -- internals -------------------------------------------------------------

    def _mayRetry(self, error: UpstreamError, connection: "HTTP11ClientProtocol") -> bool:
        return (
            not self.retried
            and self._reused
            and isinstance(error, BackendClosed)
            and connection.responseBytes == 0
            and replayable(self.request)
            and self._source is not None
        )

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
        self.state = ExchangeState.DONE
        self._receiver = None
        self._producer = None
        self._producerPaused = False
        self._connection = None
        self._source = None
        self._early = []
        self._holds.clear()

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
