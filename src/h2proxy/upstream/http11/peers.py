"""What one backend connection talks to: its owner between exchanges (the pool),
the exchange it carries, and the producer it registers with the transport on that
exchange's behalf."""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Protocol as TypingProtocol

from h2proxy.upstream.interfaces import ResponseReceiver

if TYPE_CHECKING:
    from h2proxy.upstream.http11.protocol import HTTP11ClientProtocol


class ConnectionOwner(TypingProtocol):
    """Who keeps a connection between exchanges (the pool)."""

    def connectionIdle(self, connection: "HTTP11ClientProtocol") -> None:
        """The exchange completed and the connection may carry another request."""

    def connectionGone(self, connection: "HTTP11ClientProtocol") -> None:
        """The connection is closed or unusable; called once, before any failure is
        delivered to the exchange it carried."""


class ExchangeListener(ResponseReceiver, TypingProtocol):
    """What a connection reports to the exchange it carries: the response, and the
    backend socket's backpressure on the request body."""

    def pauseRequestBody(self) -> None:
        """The backend socket is full: stop feeding the request body."""

    def resumeRequestBody(self) -> None:
        """The backend socket drained."""


class BodyProducerProxy:
    """Registered with the backend transport while a request body is written, so a
    full socket pauses the exchange's own producer. Detached when the body ends, so
    a later transport call reaches nobody; C{stopProducing} (the transport going
    away) is ignored, since the loss is reported through C{connectionLost}."""

    def __init__(self, listener: ExchangeListener) -> None:
        self._listener: ExchangeListener | None = listener

    def pauseProducing(self) -> None:
        if self._listener is not None:
            self._listener.pauseRequestBody()

    def resumeProducing(self) -> None:
        if self._listener is not None:
            self._listener.resumeRequestBody()

    def stopProducing(self) -> None:
        """Ignored: see the class docstring."""

    def detach(self) -> None:
        self._listener = None
