"""Choosing the protocol of a new client connection before any byte is answered.

On TLS the choice is ALPN's (``h2``); on cleartext, or when a TLS client negotiated
nothing, the first bytes decide: the HTTP/2 connection preface means h2c with prior
knowledge. Anything else is an HTTP/1.x client, which is answered by the
C{http1Factory} when there is one, or else refused with a plain 505 that says the
listener speaks HTTP/2 (never left hanging).

Once decided, the chosen protocol takes over the transport and this object steps
out of the data path: its C{dataReceived} and C{connectionLost} are rebound to the
chosen protocol's own methods, so later reads cost nothing extra.
"""

from __future__ import annotations

from twisted.internet.interfaces import IHandshakeListener, IProtocolFactory, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

#: RFC 9113 3.4: the client connection preface.
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

_REFUSAL_BODY = b"This listener speaks HTTP/2 only: use an HTTP/2 client.\r\n"
_HTTP2_ONLY = (
    b"HTTP/1.1 505 HTTP Version Not Supported\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: %d\r\n"
    b"Connection: close\r\n\r\n%s" % (len(_REFUSAL_BODY), _REFUSAL_BODY)
)


@implementer(IHandshakeListener)
class ProtocolNegotiation(Protocol):
    """Waits for ALPN or the first bytes, then hands the transport over.

    @ivar deadline: seconds to wait for the TLS handshake and the first bytes.
    """

    def __init__(
        self,
        *,
        reactor: IReactorTime,
        h2Factory: IProtocolFactory,
        http1Factory: IProtocolFactory | None,
        addr,
        deadline: float | None,
    ) -> None:
        self._reactor = reactor
        self._h2Factory = h2Factory
        self._http1Factory = http1Factory
        self._addr = addr
        self._deadline = deadline
        self._timer = None
        self._buffer = b""
        self._chosen: Protocol | None = None

    def connectionMade(self) -> None:
        if self._deadline:
            self._timer = self._reactor.callLater(self._deadline, self._tooSlow)

    def handshakeCompleted(self) -> None:
        """TLS is up: ALPN ``h2`` hands over at once, before the client's preface."""
        if getattr(self.transport, "negotiatedProtocol", None) == b"h2":
            self._handOver(self._h2Factory, b"")

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        start = self._buffer[: len(PREFACE)]
        if PREFACE.startswith(start) and len(start) < len(PREFACE):
            return
        if start == PREFACE:
            self._handOver(self._h2Factory, self._buffer)
        elif self._http1Factory is not None:
            self._handOver(self._http1Factory, self._buffer)
        else:
            self._refuse()

    def connectionLost(self, reason: Failure) -> None:
        self._cancelTimer()

    def _handOver(self, factory: IProtocolFactory, pending: bytes) -> None:
        self._cancelTimer()
        protocol = factory.buildProtocol(self._addr)
        if protocol is None:
            self.transport.loseConnection()
            return
        self._chosen = protocol
        self.dataReceived = protocol.dataReceived  # type: ignore[method-assign]
        self.connectionLost = protocol.connectionLost  # type: ignore[method-assign]
        protocol.makeConnection(self.transport)
        if pending:
            protocol.dataReceived(pending)

    def _refuse(self) -> None:
        self._cancelTimer()
        if self._buffer[:1].isalpha():
            self.transport.write(_HTTP2_ONLY)
        self.transport.loseConnection()

    def _tooSlow(self) -> None:
        self._timer = None
        self.transport.abortConnection()

    def _cancelTimer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None


class NegotiationFactory(Factory):
    """Builds a L{ProtocolNegotiation} per connection of one listener."""

    def __init__(
        self,
        *,
        reactor: IReactorTime,
        h2Factory: IProtocolFactory,
        http1Factory: IProtocolFactory | None = None,
        deadline: float | None = None,
    ) -> None:
        self.reactor = reactor
        self.h2Factory = h2Factory
        self.http1Factory = http1Factory
        self.deadline = deadline

    def buildProtocol(self, addr) -> ProtocolNegotiation:
        return ProtocolNegotiation(
            reactor=self.reactor,
            h2Factory=self.h2Factory,
            http1Factory=self.http1Factory,
            addr=addr,
            deadline=self.deadline,
        )
