"""The contract between the upstream side and its user (the bridge).

The upstream side speaks HTTP/1.1 to backends and knows nothing of HTTP/2. The
bridge hands it an L{UpstreamRequest} and a L{ResponseReceiver}; it gets back an
L{Exchange} at once (connecting happens in the background).

Request body: the exchange is an C{IConsumer}. The bridge registers the request-body
producer (an C{H2Stream}) with C{exchange.registerProducer(stream, True)}; the
exchange keeps that producer paused until a backend connection is ready and the
request head is written, and pauses it whenever the backend socket's buffer is full.
Bytes given to C{exchange.write()} are written to the backend transport at once
(never buffered without bound by the exchange).

Response body: the exchange is an C{IPushProducer}. The bridge registers it with the
client stream; C{pauseProducing} pauses reading from the backend socket, so a slow
client holds the backend back through TCP.
"""

from __future__ import annotations

from typing import Protocol

from h2proxy.errors import UpstreamError
from h2proxy.message import Headers, ResponseHead


class ResponseReceiver(Protocol):
    """Receives one response from the upstream side, in order:
    L{responseInformational}*, L{responseHeadReceived}, L{responseDataReceived}*,
    then exactly one of L{responseEnded} or L{responseFailed} (which may also come
    before the head)."""

    def responseInformational(self, head: ResponseHead) -> None:
        """A 1xx response other than 101 (e.g. 103 Early Hints)."""

    def responseHeadReceived(self, head: ResponseHead) -> None:
        """The final response head. Hop-by-hop headers are already removed."""

    def responseDataReceived(self, data: bytes) -> None:
        """One chunk of the response body (de-chunked)."""

    def responseEnded(self, trailers: Headers) -> None:
        """The response is complete; C{trailers} holds chunked trailers, if any."""

    def responseFailed(self, error: UpstreamError) -> None:
        """The exchange failed; nothing more will be delivered."""


class Exchange(Protocol):
    """One request/response exchange with a backend (IConsumer + IPushProducer)."""

    def registerProducer(self, producer: object, streaming: bool) -> None: ...

    def unregisterProducer(self) -> None: ...

    def write(self, data: bytes) -> None:
        """Send request body bytes (framed as the request's body_length says)."""

    def finishRequest(self, trailers: Headers = ()) -> None:
        """The request body is complete; trailers only go out on a chunked body."""

    def pauseProducing(self) -> None: ...

    def resumeProducing(self) -> None: ...

    def stopProducing(self) -> None:
        """Same as L{cancel}."""

    def cancel(self) -> None:
        """Abandon the exchange: close its backend connection unless the response is
        already complete; deliver nothing more to the receiver."""
