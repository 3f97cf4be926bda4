# -*- test-case-name: tests.upstream.test_http11 -*-
"""L{HTTP11ClientProtocol}: one backend connection, one exchange at a time, explicit
states; it writes what L{h2proxy.upstream.http11.request} serialises and delivers
what L{h2proxy.upstream.http11.response} parses."""

from __future__ import annotations

from enum import Enum

from twisted.internet import defer
from twisted.internet.base import DelayedCall
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHandshakeListener, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from h2proxy.errors import BackendClosed, BackendTimeout, UpstreamError
from h2proxy.message import Headers, ResponseHead, UpstreamRequest
from h2proxy.upstream.http11.continuation import CONTINUE_TIMEOUT, HeldBody
from h2proxy.upstream.http11.grammar import FieldNameCache
from h2proxy.upstream.http11.peers import BodyProducerProxy, ConnectionOwner, ExchangeListener
from h2proxy.upstream.http11.request import (
    NO_BODY,
    ChunkedBody,
    LengthBody,
    NoBody,
    RequestRefused,
    body_writer,
    expects_continue,
)
from h2proxy.upstream.http11.response import Body, Complete, Event, FinalHead, Informational, ResponseParser
from h2proxy.upstream.transport import halfClose, tuneTransport

#: Most bytes held while the consumer has paused us (the transport is paused too, so
#: only what was already in flight arrives; more means the transport ignored the pause).
MAX_BUFFERED_WHILE_PAUSED = 1024 * 1024
#: Longest silence (no byte either way) of an upgraded connection (a WebSocket
#: tunnel) before it is closed, unless the pool says otherwise; 0 disables.
TUNNEL_IDLE_TIMEOUT = 3600.0
#: Longest silence of a tunnel whose request side we closed before the backend
#: closes too. A WebSocket backend answers the client's Close frame and closes at
#: once (RFC 6455 7.1.1); one that does not is cut off after this, so a half-closed
#: tunnel cannot linger for the whole tunnel idle timeout.
TUNNEL_CLOSE_TIMEOUT = 30.0


class ClientState(Enum):
    """The states of L{HTTP11ClientProtocol}; see its docstring."""

    CONNECTING = "connecting"
    QUIESCENT = "quiescent"
    TRANSMITTING = "transmitting"
    WAITING = "waiting"
    TUNNEL = "tunnel"
    TUNNEL_CLOSING = "tunnel closing"
    CLOSED = "closed"


@implementer(IHandshakeListener)
class HTTP11ClientProtocol(Protocol):
    """One HTTP/1.1 connection to a backend, carrying one exchange at a time.

    States (L{ClientState}):
      - C{CONNECTING}: built, the transport not yet connected.
      - C{QUIESCENT}: connected and idle (in the pool). A byte from the backend now is
        a protocol violation: the connection is closed. A close just removes it.
      - C{TRANSMITTING}: L{sendRequest} wrote the head; the request body is still
        being written (L{writeBody}/L{finishBody}). The response may already be
        arriving: a backend may answer early (e.g. 413) or stream full duplex. A
        response that completes in this state is delivered and the connection is
        closed, never reused, since the body was cut short. A request with
        ``expect: 100-continue`` first holds its body (L{HeldBody}, at most C{MAX_HELD_BODY}
        bytes, the exchange's producer paused) until the backend's 100 (reported
        to the listener), or C{continueTimeout} seconds, then sends it; a final
        head before either means the backend does not want it: the body is
        dropped, and the connection closed after the response.
      - C{WAITING}: the request is completely written; the response is awaited and
        read. On completion the connection goes back to C{QUIESCENT} when the
        parser allows keep-alive and nothing extra arrived, else it is closed.
      - C{TUNNEL}: a 101 answered an upgrade request (L{UpstreamRequest.upgrade}):
        the connection is a raw byte pipe. L{writeBody} writes bytes as they are,
        every byte read is response body, L{finishBody} closes our side, and the
        backend's close ends the response (L{ResponseReceiver.responseEnded} for a
        clean close, C{responseFailed} for a reset). Never reused. The idle timer is
        C{tunnelIdleTimeout}, restarted by bytes either way.
      - C{TUNNEL_CLOSING}: the request side of the tunnel ended (the client's
        END_STREAM or FIN): our side is closed for writing only (a TCP half-close;
        on TLS, nothing is sent, see L{halfClose}), and the backend's bytes are still read and
        delivered, its Close frame included, until it closes; then the response
        ends as in C{TUNNEL}. The timer is at most L{TUNNEL_CLOSE_TIMEOUT}.
      - C{CLOSED}: closed or unusable; terminal. If the backend closed while we were
        paused, bytes already received are still delivered (on resume) before the
        end or the failure.

    Timers (on the injected reactor): from the moment the request is completely sent
    until the final head arrives, C{responseTimeout}; after the head, C{idleTimeout}
    (C{responseTimeout} when not given) as the longest silence between two reads while
    not paused. Either fails the exchange with L{BackendTimeout}. 0 disables them.

    TLS: over a TLS transport the connection is usable only once the handshake is
    done (and the certificate verified); L{whenSecured} fires then, or fails with the
    reason the connection was lost, while the transport can still be asked about the
    peer's certificates. The pool waits for it before sending anything.

    Response field names found valid are remembered in C{names} (the pool's
    L{FieldNameCache}; the connection's own when not given).

    @ivar state: the current L{ClientState}.
    @ivar responseBytes: bytes received for the current exchange (0 means the backend
        said nothing: the pool's stale-connection retry depends on it).
    @ivar requestsSent: exchanges started on this connection.
    """

    def __init__(
        self,
        *,
        reactor: IReactorTime,
        responseTimeout: float,
        owner: ConnectionOwner | None = None,
        idleTimeout: float | None = None,
        tunnelIdleTimeout: float = TUNNEL_IDLE_TIMEOUT,
        continueTimeout: float = CONTINUE_TIMEOUT,
        names: FieldNameCache | None = None,
    ) -> None:
        self._reactor = reactor
        self._names = FieldNameCache() if names is None else names
        self._continueTimeout = continueTimeout
        self._timeout = responseTimeout
        self._idleTimeout = responseTimeout if idleTimeout is None else idleTimeout
        self._tunnelIdleTimeout = tunnelIdleTimeout
        self._closeWhenSwitched = False
        self.owner = owner
        self.state = ClientState.CONNECTING
        self.responseBytes = 0
        self.requestsSent = 0
        self._listener: ExchangeListener | None = None
        self._parser: ResponseParser | None = None
        self._body: NoBody | LengthBody | ChunkedBody = NO_BODY
        self._proxy: BodyProducerProxy | None = None
        self._timer: DelayedCall | None = None
        # Waiting for a 100 Continue: the body held back, its end (trailers) if
        # given, and the timer that sends it anyway; _bodyRefused after a final
        # head came first.
        self._held: HeldBody | None = None
        self._bodyRefused = False
        self._headReceived = False
        self._paused = False
        self._lost = False
        self._gone = False
        self._processing = False
        self._secured = False
        self._securing: defer.Deferred[HTTP11ClientProtocol] | None = None

    # -- Twisted protocol ------------------------------------------------------

    def connectionMade(self) -> None:
        self.state = ClientState.QUIESCENT
        tuneTransport(self.transport)

    def dataReceived(self, data: bytes) -> None:
        """Feed the parser and deliver what it finds (unless paused)."""
        if self.state is ClientState.QUIESCENT:
            self._shutdown(abort=True)
            return
        if self._parser is None or self._listener is None:
            return
        self.responseBytes += len(data)
        if self._headReceived and self._timer is not None:
            self._timer.reset(self._idleTimeout)
        self._parser.feed(data)
        if self._paused and self._parser.buffered > MAX_BUFFERED_WHILE_PAUSED:
            self._fail(
                UpstreamError(
                    f"backend sent over {MAX_BUFFERED_WHILE_PAUSED} bytes while reading was paused"
                )
            )
            return
        self._process()

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        """The backend closed (or reset) the connection. An exchange under way still
        gets what was received; the parser decides if that is a complete response."""
        self._lost = True
        self._stopTimer()
        self._stopProxying()
        self._dropHeld()
        securing, self._securing = self._securing, None
        if securing is not None:
            securing.errback(reason)
        if self._parser is not None and self._listener is not None:
            self._parser.close(clean=reason.check(ConnectionDone) is not None)
            self._notifyGone()
            self._process()
        else:
            self.state = ClientState.CLOSED
            self._notifyGone()

    # -- TLS -------------------------------------------------------------------

    def handshakeCompleted(self) -> None:
        """IHandshakeListener: the TLS handshake succeeded and the peer was verified."""
        self._secured = True
        securing, self._securing = self._securing, None
        if securing is not None:
            securing.callback(self)

    def whenSecured(self) -> defer.Deferred["HTTP11ClientProtocol"]:
        """Fires with this protocol once the TLS handshake is done; fails with the
        reason the connection was lost before that. Cancelling it aborts the connection.
        The failure is delivered synchronously from C{connectionLost}, while the TLS
        transport still holds the peer's certificate chain."""
        if self._secured:
            return defer.succeed(self)
        if self._lost or self._securing is not None:
            return defer.fail(BackendClosed("backend connection closed before the TLS handshake completed"))
        self._securing = defer.Deferred(lambda _: self._abortHandshake())
        return self._securing

    def _abortHandshake(self) -> None:
        self._securing = None
        self._shutdown(abort=True)

    # -- the exchange's side ---------------------------------------------------

    def sendRequest(self, request: UpstreamRequest, head: bytes, listener: ExchangeListener) -> None:
        """Start an exchange: write C{head} (from L{serialize_request_head}) and get
        ready for the body and the response. The connection must be C{QUIESCENT};
        if it was lost meanwhile, the listener gets L{BackendClosed} at once."""
        if self.state is not ClientState.QUIESCENT:
            listener.responseFailed(BackendClosed("backend connection closed before the request was sent"))
            return
        self.requestsSent += 1
        self.responseBytes = 0
        self._listener = listener
        self._body = body = body_writer(request)
        expectContinue = body is not NO_BODY and expects_continue(request)
        self._parser = ResponseParser(request.method, request.upgrade, expectContinue, self._names)
        self._headReceived = False
        self._paused = False
        self._bodyRefused = False
        self.transport.write(head)
        if body is NO_BODY:
            self._requestSent()
            return
        self.state = ClientState.TRANSMITTING
        if expectContinue:
            self._holdBody(listener)
            return
        self._proxy = BodyProducerProxy(listener)
        self.transport.registerProducer(self._proxy, True)

    def writeBody(self, data: bytes) -> None:
        """Write request body bytes (tunnel bytes once switched); dropped unless the
        body is being sent."""
        if self.state is ClientState.TUNNEL and not self._lost:
            self.transport.write(data)
            if self._timer is not None:
                self._timer.reset(self._idleTimeout)
            return
        if self.state is not ClientState.TRANSMITTING or self._lost or self._bodyRefused:
            return
        if self._held is not None:
            try:
                self._held.keep(data)
            except UpstreamError as error:
                self._fail(error)
            return
        try:
            self._body.write(self.transport, data)
        except RequestRefused as error:
            self._fail(error)

    def finishBody(self, trailers: Headers = ()) -> None:
        """End the request body (trailers go out only on a chunked body). On a tunnel,
        close our side: the backend's close then ends the response; before the 101
        of an upgrade request, do that as soon as it is switched."""
        if self.state is ClientState.TUNNEL:
            self._closeTunnel()
            return
        if self.state is ClientState.TUNNEL_CLOSING:
            return
        if self.state is ClientState.WAITING and self._parser is not None and self._parser.upgrading:
            self._closeWhenSwitched = True
            return
        if self.state is not ClientState.TRANSMITTING or self._lost or self._bodyRefused:
            return
        if self._held is not None:
            self._held.end = trailers
            return
        try:
            self._body.finish(self.transport, trailers)
        except RequestRefused as error:
            self._fail(error)
            return
        self._stopProxying()
        self._requestSent()

    def pauseResponse(self) -> None:
        """Stop reading from the backend and delivering body bytes."""
        if self._paused:
            return
        self._paused = True
        if self._headReceived:
            self._stopTimer()
        if self._transportUsable():
            self.transport.pauseProducing()

    def resumeResponse(self) -> None:
        """Deliver what was held back, then read from the backend again."""
        if not self._paused:
            return
        self._paused = False
        if self._transportUsable():
            self.transport.resumeProducing()
            if self._headReceived and self._listener is not None:
                self._startTimer()
        self._process()

    def abandon(self) -> None:
        """Cancel the exchange: deliver nothing more and close the connection."""
        self._listener = None
        self._shutdown(abort=True)

    def close(self) -> None:
        """Close an idle connection (pool expiry, pool shutdown)."""
        self._shutdown(abort=False)

    # -- internals -------------------------------------------------------------

    def _requestSent(self) -> None:
        self.state = ClientState.WAITING
        if not self._headReceived:
            self._startTimer()

    def _transportUsable(self) -> bool:
        return not self._lost and self.state is not ClientState.CLOSED

    def _process(self) -> None:
        """Hand parser events to the listener until it needs bytes, we are paused
        (after the head), the exchange ends, or it is cancelled."""
        if self._processing:
            return
        self._processing = True
        try:
            while self._listener is not None and self._parser is not None:
                if self._paused and self._headReceived:
                    break
                event = self._parser.next_event()
                if event is None:
                    break
                self._dispatch(event)
        except UpstreamError as error:
            self._fail(error)
        finally:
            self._processing = False

    def _dispatch(self, event: Event) -> None:
        listener = self._listener
        assert listener is not None
        if isinstance(event, Body):
            listener.responseDataReceived(event.data)
        elif isinstance(event, FinalHead):
            self._finalHead(listener, event.head)
        elif isinstance(event, Informational):
            listener.responseInformational(event.head)
            if event.head.status == 100 and self._held is not None and self._listener is listener:
                self._sendHeld()
        elif isinstance(event, Complete):
            self._complete(event.trailers)
        else:
            raise AssertionError(f"Unexpected event: {event!r}")

    def _finalHead(self, listener: ExchangeListener, head: ResponseHead) -> None:
        """Deliver the final head; when its whole body is already buffered (the
        common small response), deliver the body and the end right after it, without
        the parser's two further events and without moving the timer to the body
        phase: it is stopped at the end anyway, and a pause or an abandon from a
        callback stops it as it would have. Anything else goes back to the event loop."""
        parser = self._parser
        assert parser is not None
        self._headReceived = True
        if self._held is not None:
            self._bodyRefused = True
            self._dropHeld()
        if parser.upgraded:
            self._switched(listener)
        whole = not self._paused and parser.wholeBodyBuffered()
        if self._paused:
            self._stopTimer()
        elif not whole:
            self._startTimer()
        listener.responseHeadReceived(head)
        if not whole or self._listener is not listener or self._paused:
            return
        data = parser.takeWholeBody()
        if data:
            listener.responseDataReceived(data)
            if self._listener is not listener or self._paused:
                return
        self._complete(parser.takeComplete())

    def _complete(self, trailers: Headers) -> None:
        """The response is whole: pool or close the connection, then deliver the end.
        The owner hears first, so a request made from inside C{responseEnded} (or a
        waiting one) can already have this connection."""
        listener, parser = self._listener, self._parser
        assert listener is not None and parser is not None
        self._listener = self._parser = None
        self._stopTimer()
        reusable = (
            parser.keepAlive
            and self.state is ClientState.WAITING
            and not parser.buffered
            and not self._lost
        )
        if reusable:
            self.state = ClientState.QUIESCENT
            if self._paused:
                self._paused = False
                self.transport.resumeProducing()
        else:
            self._shutdown(abort=False)
        if reusable and self.owner is not None:
            self.owner.connectionIdle(self)
        listener.responseEnded(trailers)

    def _switched(self, listener: ExchangeListener) -> None:
        """The backend accepted the upgrade: from now on a raw pipe (C{TUNNEL})."""
        self.state = ClientState.TUNNEL
        self._idleTimeout = self._tunnelIdleTimeout
        if not self._lost:
            self._proxy = BodyProducerProxy(listener)
            self.transport.registerProducer(self._proxy, True)
        if self._closeWhenSwitched:
            self._closeTunnel()

    def _closeTunnel(self) -> None:
        """Our side of the tunnel is done: close it for writing once the written
        bytes are flushed, and go on reading; the backend's close completes the
        response (C{TUNNEL_CLOSING}). A full close here would drop what the backend
        still sends, its answering Close frame first, and the client would see the
        WebSocket end uncleanly (close code 1006)."""
        self.state = ClientState.TUNNEL_CLOSING
        self._stopProxying()
        if self._lost or self.transport is None:
            return
        halfClose(self.transport)
        if self._idleTimeout <= 0 or self._idleTimeout > TUNNEL_CLOSE_TIMEOUT:
            self._idleTimeout = TUNNEL_CLOSE_TIMEOUT
        if not self._paused:
            self._startTimer()

    def _fail(self, error: UpstreamError) -> None:
        """Close the connection, then report C{error} once to the exchange."""
        listener = self._listener
        self._listener = None
        self._shutdown(abort=True)
        if listener is not None:
            listener.responseFailed(error)

    def _shutdown(self, abort: bool) -> None:
        """Make the connection unusable: timers off, transport closed, owner told."""
        if self.state is ClientState.CLOSED and self._gone:
            return
        self.state = ClientState.CLOSED
        self._stopTimer()
        self._stopProxying()
        self._dropHeld()
        if not self._lost and self.transport is not None:
            if abort:
                self.transport.abortConnection()
            else:
                self.transport.loseConnection()
        self._notifyGone()

    def _notifyGone(self) -> None:
        if self._gone:
            return
        self._gone = True
        if self.owner is not None:
            self.owner.connectionGone(self)

    def _stopProxying(self) -> None:
        proxy, self._proxy = self._proxy, None
        if proxy is None:
            return
        proxy.detach()
        if not self._lost:
            self.transport.unregisterProducer()

    def _holdBody(self, listener: ExchangeListener) -> None:
        """Wait for the backend's 100 (or its final answer) before sending the body:
        pause the producer and start the timer that sends the body anyway."""
        self._held = HeldBody(self._reactor, self._continueTimeout, self._sendHeld)
        listener.pauseRequestBody()

    def _sendHeld(self) -> None:
        """The backend said 100 (or kept silent too long): write what was held,
        then let the producer go on under the transport's backpressure."""
        held, listener = self._held, self._listener
        self._dropHeld()
        if held is None or listener is None or self._lost:
            return
        for data in held.chunks:
            self.writeBody(data)
            if self.state is not ClientState.TRANSMITTING:
                return
        if held.end is not None:
            self.finishBody(held.end)
        else:
            self._proxy = BodyProducerProxy(listener)
            self.transport.registerProducer(self._proxy, True)
        listener.resumeRequestBody()

    def _dropHeld(self) -> None:
        """Stop waiting for a 100: forget the held body and its timer."""
        held, self._held = self._held, None
        if held is not None:
            held.cancel()

    def _startTimer(self) -> None:
        """(Re)start the timer for the current phase; a running one is reset rather
        than cancelled and replaced (one C{callLater} per exchange, not one per phase)."""
        timeout = self._idleTimeout if self._headReceived else self._timeout
        if timeout <= 0 or self._lost:
            self._stopTimer()
            return
        timer = self._timer
        if timer is not None and timer.active():
            timer.reset(timeout)
        else:
            self._timer = self._reactor.callLater(timeout, self._timedOut)

    def _stopTimer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _timedOut(self) -> None:
        self._timer = None
        if self.state is ClientState.TUNNEL:
            message = f"upgraded connection (WebSocket) idle for {self._idleTimeout:g}s both ways"
        elif self.state is ClientState.TUNNEL_CLOSING:
            message = (
                f"backend did not close the upgraded connection (WebSocket) within "
                f"{self._idleTimeout:g}s of silence after the client closed its side"
            )
        elif self._headReceived:
            message = f"backend sent nothing for {self._idleTimeout:g}s in the middle of the response body"
        else:
            message = f"backend sent no response head within {self._timeout:g}s of the request"
        self._fail(BackendTimeout(message))
