"""Choosing the protocol of a new client connection before any byte is answered.

On TLS the choice is ALPN's (``h2``); on cleartext, or when a TLS client negotiated
nothing, the first bytes decide: the HTTP/2 connection preface means h2c with prior
knowledge. Anything else goes to the C{http1Factory}. A listener may speak only one
of the two (``listeners[].protocols``, given here as which factories there are):

 - without an C{http1Factory} (h2c only), bytes that cannot be the preface go to
   the HTTP/2 connection, which answers them as a connection error (SETTINGS,
   GOAWAY PROTOCOL_ERROR, close; RFC 9113 3.4);
 - without an C{h2Factory} (HTTP/1.1 only), every connection is HTTP/1.1 from its
   first byte: the preface's ``PRI * HTTP/2.0`` request line gets the HTTP/1.1 front
   end's 505 and a close.

A broken preface (its ``PRI * HTTP/2.0`` request line, then other bytes) is an
HTTP/2 client's mistake, not an HTTP/1.x request: on a listener that speaks h2c it
goes to the HTTP/2 connection too, for the same GOAWAY PROTOCOL_ERROR.

Once decided, the chosen protocol takes over the transport and this object steps
out of the data path: its C{dataReceived} and C{connectionLost} are rebound to the
chosen protocol's own methods, so later reads cost nothing extra.

Slow clients are bounded from the accept: within C{handshakeTimeout}, a TLS
handshake must complete, and a cleartext client must send its first byte (a client
that says nothing is dropped early, whatever the listener). The first request must
then be complete within C{deadline} of the end of the handshake (of the accept, on
cleartext). This object watches the part it sees (the handshake and the first
bytes) and hands what is left of C{deadline} to the chosen protocol (its
C{requestHeaderTimeout}), which watches the rest. A connection that outlives either
is aborted: it has sent nothing worth an answer.

With a L{ConnectionLimiter}, each connection is counted from accept to close, and a
connection the limiter refuses is answered politely once its protocol is known
(HTTP/2: SETTINGS and GOAWAY REFUSED_STREAM; HTTP/1.1: 503) and closed.
"""

from __future__ import annotations

from enum import Enum
from typing import Callable

from twisted.internet.interfaces import IDelayedCall, IHandshakeListener, IProtocolFactory, IReactorTime, ISSLTransport
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from h2proxy.frontend.http2.codec import ErrorCodes, SettingCodes, goAwayFrame, settingsFrame
from h2proxy.frontend.limits import Admission, ConnectionLimiter

log = Logger()

#: RFC 9113 3.4: the client connection preface.
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

#: The request line of the preface: bytes that start with it come from an HTTP/2
#: client, even when what follows is wrong.
PREFACE_REQUEST_LINE = PREFACE[: PREFACE.index(b"\r\n")]

#: Seconds a refused connection may take to read its refusal before it is aborted.
REFUSAL_LINGER = 5.0

_BUSY_BODY = b"This server has too many connections; retry shortly.\r\n"
_HTTP1_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: %d\r\n"
    b"Retry-After: 1\r\n"
    b"Connection: close\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)
#: The server preface (no stream may be opened) and a GOAWAY that names no stream:
#: a client knows nothing was processed and may retry elsewhere (RFC 9113 6.8).
_H2_BUSY = settingsFrame({SettingCodes.MAX_CONCURRENT_STREAMS: 0}) + goAwayFrame(
    0, ErrorCodes.REFUSED_STREAM, b"connection limit reached"
)


class Phase(Enum):
    """Where a connection is in the negotiation."""

    #: TLS: waiting for the handshake (within C{handshakeTimeout}).
    HANDSHAKE = "handshake"
    #: Cleartext: waiting for the first byte (within C{handshakeTimeout}).
    FIRST_BYTE = "first byte"
    #: Reading the first bytes until they name a protocol (within C{deadline}).
    SNIFFING = "sniffing"
    #: The chosen protocol has the transport.
    CHOSEN = "chosen"
    #: Refused, dropped or timed out: nothing more is read.
    CLOSED = "closed"


#: What the log says when a phase's timer runs out (the option to raise, if the
#: clients are legitimate).
_TOO_SLOW = {
    Phase.HANDSHAKE: "TLS handshake not complete in time (timeouts.handshake)",
    Phase.FIRST_BYTE: "nothing received in time (timeouts.handshake)",
    Phase.SNIFFING: "first request not complete in time (timeouts.request_header)",
}


@implementer(IHandshakeListener)
class ProtocolNegotiation(Protocol):
    """Waits for ALPN or the first bytes, then hands the transport over.

    @ivar deadline: seconds, after the TLS handshake (or the accept, on cleartext),
        within which the first request must be complete; C{None}: no deadline.
    @ivar handshakeTimeout: seconds from the accept within which a TLS handshake
        must complete, or a cleartext client must send its first byte; C{None}: none.
    @ivar admission: the connection limiter's decision on this connection.
    @ivar phase: where the negotiation is.
    """

    def __init__(
        self,
        *,
        reactor: IReactorTime,
        h2Factory: IProtocolFactory | None,
        http1Factory: IProtocolFactory | None,
        addr,
        deadline: float | None,
        handshakeTimeout: float | None = None,
        admission: Admission = Admission.ADMIT,
        onLost: Callable[["ProtocolNegotiation"], None] | None = None,
    ) -> None:
        self._reactor = reactor
        self._h2Factory = h2Factory
        self._http1Factory = http1Factory
        self._addr = addr
        self.deadline = deadline
        self.handshakeTimeout = handshakeTimeout
        self.admission = admission
        self._onLost = onLost
        self._timer: IDelayedCall | None = None
        self._deadlineAt: float | None = None
        self._buffer = b""
        self._chosen: Protocol | None = None
        self.phase = Phase.SNIFFING

    def connectionMade(self) -> None:
        if self.admission is Admission.DROP:
            self.phase = Phase.CLOSED
            self.transport.abortConnection()
            return
        if ISSLTransport.providedBy(self.transport):
            if self.handshakeTimeout:
                self.phase = Phase.HANDSHAKE
                self._timer = self._reactor.callLater(self.handshakeTimeout, self._tooSlow)
            else:
                self._startDeadline()
            return
        if self.deadline:
            self._deadlineAt = self._reactor.seconds() + self.deadline
        if self.handshakeTimeout and (self.deadline is None or self.handshakeTimeout < self.deadline):
            self.phase = Phase.FIRST_BYTE
            self._timer = self._reactor.callLater(self.handshakeTimeout, self._tooSlow)
        else:
            self._armDeadline()

    def handshakeCompleted(self) -> None:
        """TLS is up: ALPN ``h2`` hands over at once, before the client's preface;
        otherwise the first bytes decide, within the deadline (from now)."""
        if self.phase not in (Phase.HANDSHAKE, Phase.SNIFFING):
            return
        self._cancelTimer()
        self.phase = Phase.SNIFFING
        self._startDeadline()
        if getattr(self.transport, "negotiatedProtocol", None) == b"h2" and self._h2Factory is not None:
            self._handOver(self._h2Factory, b"")

    def dataReceived(self, data: bytes) -> None:
        if self.phase is Phase.FIRST_BYTE:
            self.phase = Phase.SNIFFING
            self._cancelTimer()
            self._armDeadline()
        if self.phase is not Phase.SNIFFING:
            return
        self._buffer += data
        factory = self._choose(self._buffer)
        if factory is not None:
            self._handOver(factory, self._buffer)

    def _choose(self, received: bytes) -> IProtocolFactory | None:
        """The factory the bytes so far call for; None: too few bytes to tell.

        A listener with both protocols reads up to the 24 bytes of the preface; one
        with a single protocol needs no more than the byte that rules the preface out."""
        if self._h2Factory is None:
            return self._http1Factory
        start = received[: len(PREFACE)]
        if PREFACE.startswith(start) and len(start) < len(PREFACE):
            return None
        if start == PREFACE or self._http1Factory is None or start.startswith(PREFACE_REQUEST_LINE):
            return self._h2Factory
        return self._http1Factory

    def connectionLost(self, reason: Failure) -> None:
        self._cancelTimer()
        self._lost()

    # -- what the connection limiter asks (see h2proxy.frontend.limits) -------------

    def isIdle(self) -> bool:
        """Still negotiating (nothing asked yet), or the chosen protocol is idle."""
        if self.phase is Phase.CLOSED:
            return False
        chosen = self._chosen
        if chosen is None:
            return True
        isIdle = getattr(chosen, "isIdle", None)
        return isIdle is not None and isIdle()

    def closeIdle(self) -> None:
        """Make room: a connection still negotiating is dropped, an idle protocol
        closes itself politely."""
        if self._chosen is None:
            self.phase = Phase.CLOSED
            self._cancelTimer()
            self.transport.abortConnection()
            return
        self._chosen.closeIdle()  # type: ignore[attr-defined]

    # -- internals ------------------------------------------------------------------

    def _startDeadline(self) -> None:
        """The first request's deadline runs from now."""
        self._deadlineAt = self._reactor.seconds() + self.deadline if self.deadline else None
        self._armDeadline()

    def _armDeadline(self) -> None:
        """Time what is left of the first request's deadline, if there is one."""
        if self._deadlineAt is not None:
            self._timer = self._reactor.callLater(max(0.0, self._deadlineAt - self._reactor.seconds()), self._tooSlow)

    def _handOver(self, factory: IProtocolFactory, pending: bytes) -> None:
        if self.admission is Admission.REFUSE:
            self._refuseBusy(factory)
            return
        self._cancelTimer()
        protocol = factory.buildProtocol(self._addr)
        if protocol is None:
            self.phase = Phase.CLOSED
            self.transport.loseConnection()
            return
        self.phase = Phase.CHOSEN
        self._chosen = protocol
        if self._deadlineAt is not None and getattr(protocol, "requestHeaderTimeout", None) is not None:
            protocol.requestHeaderTimeout = max(0.0, self._deadlineAt - self._reactor.seconds())  # type: ignore[attr-defined]
        self.dataReceived = protocol.dataReceived  # type: ignore[method-assign]
        self.connectionLost = self._chosenLost(protocol)  # type: ignore[method-assign]
        protocol.makeConnection(self.transport)
        if pending:
            protocol.dataReceived(pending)

    def _chosenLost(self, protocol: Protocol) -> Callable[[Failure], None]:
        """The chosen protocol's C{connectionLost}, followed by the limiter's release.
        The closure refers to this protocol, which holds it: once called it removes
        itself (and the delegated C{dataReceived}), so that the closed connection is
        freed by reference counting instead of waiting for the cyclic collector."""
        if self._onLost is None:
            return protocol.connectionLost
        chosenLost = protocol.connectionLost

        def connectionLost(reason: Failure) -> None:
            try:
                chosenLost(reason)
            finally:
                self._lost()
                self.__dict__.pop("connectionLost", None)
                self.__dict__.pop("dataReceived", None)

        return connectionLost

    def _lost(self) -> None:
        onLost, self._onLost = self._onLost, None
        if onLost is not None:
            onLost(self)

    def _refuseBusy(self, factory: IProtocolFactory) -> None:
        """The connection cap refused this connection: say so in its protocol, close."""
        self.phase = Phase.CLOSED
        self._cancelTimer()
        self.transport.write(_H2_BUSY if factory is self._h2Factory else _HTTP1_BUSY)
        self.transport.loseConnection()
        self._timer = self._reactor.callLater(REFUSAL_LINGER, self.transport.abortConnection)

    def _tooSlow(self) -> None:
        self._timer = None
        log.info(
            "dropping connection from {peer}: {what}",
            peer=self._peerText(),
            what=_TOO_SLOW[self.phase],
        )
        self.phase = Phase.CLOSED
        self.transport.abortConnection()

    def _cancelTimer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _peerText(self) -> str:
        peer = self.transport.getPeer()
        host = getattr(peer, "host", None)
        return f"{host}:{peer.port}" if host is not None else str(peer)


class NegotiationFactory(Factory):
    """Builds a L{ProtocolNegotiation} per connection of one listener.

    @ivar h2Factory: builds HTTP/2 connections; C{None} on a listener that speaks
        HTTP/1.1 only.
    @ivar http1Factory: builds HTTP/1.1 connections; C{None} on a cleartext listener
        that speaks h2c only.
    @ivar deadline: see L{ProtocolNegotiation.deadline} (``timeouts.request_header``).
    @ivar handshakeTimeout: see L{ProtocolNegotiation.handshakeTimeout}
        (``timeouts.handshake``).
    @ivar limiter: the worker's connection cap, shared by its listeners, or C{None}.
    """

    def __init__(
        self,
        *,
        reactor: IReactorTime,
        h2Factory: IProtocolFactory | None,
        http1Factory: IProtocolFactory | None = None,
        deadline: float | None = None,
        handshakeTimeout: float | None = None,
        limiter: ConnectionLimiter | None = None,
    ) -> None:
        self.reactor = reactor
        self.h2Factory = h2Factory
        self.http1Factory = http1Factory
        self.deadline = deadline
        self.handshakeTimeout = handshakeTimeout
        self.limiter = limiter

    def buildProtocol(self, addr) -> ProtocolNegotiation:
        limiter = self.limiter
        protocol = ProtocolNegotiation(
            reactor=self.reactor,
            h2Factory=self.h2Factory,
            http1Factory=self.http1Factory,
            addr=addr,
            deadline=self.deadline,
            handshakeTimeout=self.handshakeTimeout,
            admission=limiter.admit() if limiter is not None else Admission.ADMIT,
            onLost=limiter.release if limiter is not None else None,
        )
        if limiter is not None:
            limiter.track(protocol)
        return protocol
