"""What the HTTP/2 front end asks of whoever handles its requests.

The front end knows nothing of backends or routing. For each stream whose request
headers arrived complete and valid, it calls the C{handlerFactory} given to
L{H2Connection} (or L{HTTP1Factory}) with the stream, a L{ClientStream}, and then
drives the returned L{StreamHandler}. A handler ends a stream early with a
L{ResetReason}, which each front end turns into its own wire behaviour.
The bridge is the production implementation; tests use small fakes.

Request body backpressure: the stream is an C{IPushProducer} of the request body.
A handler that cannot take more (the backend socket is full, or there is no backend
connection yet) calls C{stream.pauseProducing()}. While paused, the stream keeps
received DATA in its own buffer and does not return window credit for it; it
re-opens the HTTP/2 flow-control window (C{H2Connection.openStreamWindow}) only for
bytes it has handed to L{StreamHandler.requestDataReceived}, after that call
returns. The client is therefore held back by HTTP/2 itself, and a stream's buffer
never holds more than the window the proxy advertised.

Response body backpressure: the stream is an C{IConsumer} of the response body. The
handler registers its producer (the backend side) with
C{stream.registerProducer(producer, True)}; the stream pauses it while the bytes it
has queued for the client are above its high-water mark (because the stream's send
window or the connection's transport is full) and resumes it when they drain.
"""

from __future__ import annotations

import enum
from typing import Any, Protocol, runtime_checkable

from twisted.internet.interfaces import IAddress
from twisted.python.failure import Failure

from h2proxy.frontend.clientcert import ClientCertificate
from h2proxy.message import Headers, RequestHead, ResponseHead


class StreamHandler(Protocol):
    """The per-stream request handler the front end drives.

    Calls arrive in this order: L{requestReceived} once, then any number of
    L{requestDataReceived}, then L{requestEnded} once; L{streamAborted} may arrive at
    any point instead of the rest, and nothing follows it. A request the front end
    answers itself (malformed or unusable: 400, 431, 505...) gets L{requestRefused}
    once instead, and nothing else.
    """

    def requestRefused(self, head: RequestHead, status: int) -> None:
        """The front end answered this request itself with C{status}, before any
        routing; C{head} holds what could be read of it (empty fields when even the
        request line was unreadable). The handler only records it (access log)."""

    def requestReceived(self, head: RequestHead) -> None:
        """The request's headers arrived complete and valid; start handling it."""

    def requestDataReceived(self, data: bytes) -> None:
        """One chunk of the request body, in order. Never called while paused."""

    def requestEnded(self, trailers: Headers) -> None:
        """The request body is complete; C{trailers} is empty when there were none."""

    def streamAborted(self, reason: Failure) -> None:
        """The stream ended abnormally: client RST_STREAM, connection lost, a stream
        error found after the request was handed over (e.g. a content-length
        mismatch), or a local reset. Cancel any backend work; the stream is gone and
        accepts no more writes."""


class StreamCut(Exception):
    """The reason a handler gets in L{StreamHandler.streamAborted} when the proxy
    itself ended the stream for a cause of its own rather than the client going away:
    the drain window ran out, the request body timed out, the body's framing was bad.

    @ivar reason: the access log's name for the cause, e.g. C{drain_timeout}.
    @ivar status: the status the front end answered with (408, 400...), or C{None}
        when the client got no answer of the front end's (the stream was cut).
    """

    def __init__(self, reason: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status


#: The reason of a stream cut because the drain window ran out.
DRAIN_TIMEOUT = "drain_timeout"
#: The reason of a request the front end refused or answered itself (RFC 9209).
REQUEST_ERROR = "http_request_error"


class ResetReason(enum.Enum):
    """Why a handler ends a stream early, in words neither front end owns.

    Each front end says it on its own wire: HTTP/2 sends RST_STREAM with the
    matching error code; HTTP/1.1 has no per-exchange reset and closes the
    connection (the client sees a truncated response).
    """

    #: The exchange is no longer wanted: the body went over a limit, a tunnel
    #: ended, the handler stopped reading (HTTP/2: CANCEL).
    CANCEL = "cancel"
    #: The proxy or its backend failed after the response had started (HTTP/2:
    #: INTERNAL_ERROR).
    INTERNAL_ERROR = "internal_error"


@runtime_checkable
class ClientStream(Protocol):
    """One client exchange as a handler sees it, whichever front end it came on
    (C{H2Stream}, C{HTTP1Stream}): the request body's push producer, the response's
    consumer, and the few facts about the connection the bridge needs.

    Response calls come in this order: any C{writeInformational}, one C{writeHeaders},
    any C{write}, then C{writeTrailers} or C{finish} (or C{endStream=True} on the
    head); C{reset} may come at any point instead. After the stream is gone every
    call is a no-op.

    @ivar streamID: the stream's number on its connection (HTTP/2 stream id, or the
        request's position on an HTTP/1.1 connection).
    """

    streamID: int

    def pauseProducing(self) -> None:
        """Hold the request body back (the handler cannot take more now)."""

    def resumeProducing(self) -> None:
        """Let the request body flow again."""

    def stopProducing(self) -> None:
        """The handler wants no more of the request body."""

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        """Attach the response body's producer; the stream pauses it while the client is slow."""

    def unregisterProducer(self) -> None:
        """Detach the response body's producer."""

    def writeInformational(self, head: ResponseHead) -> None:
        """Send a 1xx head before the final one."""

    def writeHeaders(self, head: ResponseHead, endStream: bool = False) -> None:
        """Send the final response head; C{endStream} when there is no body."""

    def write(self, data: bytes) -> None:
        """Send response body bytes."""

    def writeTrailers(self, headers: Headers) -> None:
        """End the response with trailers."""

    def finish(self) -> None:
        """End the response."""

    def reset(self, reason: ResetReason = ResetReason.INTERNAL_ERROR) -> None:
        """End the exchange abnormally now, for C{reason}."""

    def getPeer(self) -> IAddress:
        """The client's address."""

    def isSecure(self) -> bool:
        """Whether the client came over TLS."""

    def clientCertificate(self) -> ClientCertificate | None:
        """The verified certificate the client presented (mutual TLS), read once per
        connection; None on cleartext or when the client sent none."""


class HandlerFactory(Protocol):
    """Builds the handler for one stream."""

    def __call__(self, stream: ClientStream) -> StreamHandler: ...
