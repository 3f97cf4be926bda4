# -*- test-case-name: tests.frontend_http1 -*-
"""The HTTP/1.1 front end: HTTP/1.x clients served through the same bridge as HTTP/2.

L{NegotiationFactory} hands a connection to L{HTTP1Factory}
(L{h2proxy.frontend.http1.factory}) when TLS negotiated ``http/1.1`` or a cleartext
client did not start with the HTTP/2 preface; this module is the connection,
L{HTTP11ServerProtocol}. Each request becomes an L{HTTP1Stream}
(L{h2proxy.frontend.http1.stream}), the L{ClientStream} the bridge drives.

Unlike C{twisted.web.http}, nothing here buffers a whole request body: body bytes go
to the handler as they arrive, and a handler that pauses the stream pauses the
socket (C{transport.pauseProducing}), so the client is held back by TCP.

One exchange at a time (pipelining handled safely): the next request is parsed only
once the current request's body has been read and its response written, so
responses go out in order and a pipelined request can never be confused with the
body before it. Bytes that arrive early are kept, and the socket is paused until the
current exchange is over.

Parsing and serialising are sans-I/O (L{h2proxy.frontend.http1.parse},
L{h2proxy.frontend.http1.write}); this module is the Twisted shell around them.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Callable

from twisted.internet.error import ConnectionAborted, ConnectionDone, TimeoutError
from twisted.internet.interfaces import IAddress, IDelayedCall, IPushProducer
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from zope.interface import implementer

from h2proxy.frontend.clientcert import ClientCertificate, client_certificate
from h2proxy.frontend.handler import DRAIN_TIMEOUT, REQUEST_ERROR, StreamCut
from h2proxy.frontend.http1.parse import (
    BodyDecoder,
    ParsedRequest,
    RequestRejected,
    TunnelDecoder,
    body_decoder,
    find_head_end,
    parse_request,
    refused_head,
    skip_empty_lines,
)
from h2proxy.frontend.http1.stream import HTTP1Stream
from h2proxy.frontend.http1.write import error_response
from h2proxy.frontend.nodelay import disableNagle
from h2proxy.message import RequestHead, Trailers

if TYPE_CHECKING:
    from h2proxy.frontend.http1.factory import HTTP1Factory

log = Logger()

#: Bytes accepted from a client while its socket is paused, on top of
#: C{maxHeaderBytes}: one read of a TCP or TLS transport fits; more means the
#: transport ignored the pause, and the connection is aborted.
READ_AHEAD_LIMIT = 256 * 1024

#: Request-body bytes read and thrown away after the response is complete (or after
#: the handler said it wants no more) before the connection is closed instead.
#: Reading a little keeps the connection usable and avoids the TCP reset that
#: closing on unread data causes (RFC 9112 9.6).
MAX_DISCARD = 1024 * 1024

#: Empty lines tolerated before a request line (RFC 9112 2.2 says to ignore "at least one").
MAX_EMPTY_LINES = 8


class ProtocolState(enum.Enum):
    """An HTTP/1.x connection's life: L{OPEN}; L{CLOSING} once it closes or aborts
    its transport (or the transport stops taking data): nothing more is read or
    written; L{CLOSED} once the transport is gone."""

    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


# Members as module globals: a lookup on the enum class costs about 0.1 µs on
# Python 3.11, and the read loop checks the state on every step.
_OPEN, _CLOSING, _CLOSED = ProtocolState


@implementer(IPushProducer)
class HTTP11ServerProtocol(Protocol, TimeoutMixin):
    """One HTTP/1.x client connection: reads requests one at a time, writes responses.

    States (from the attributes): waiting for a head (C{_stream is None}); reading a
    body (C{_body} set; bytes go to the handler unless it paused or stopped them, in
    which case they are discarded); waiting for the response (C{_body is None}; the
    socket is read only to notice a close, and paused as soon as bytes of a next
    request arrive). Its L{ProtocolState} says whether it still reads and writes.

    The idle timeout runs while the connection waits on the client (for a head, for
    body bytes, or for it to read what was written) and stops while it waits on the
    handler. Body bytes and drained writes restart it; head bytes do not, so a whole
    head must arrive within one timeout of the previous exchange's end.

    @ivar factory: the L{HTTP1Factory} (settings, live connections, drain state).
    """

    def __init__(self, factory: "HTTP1Factory") -> None:
        self.factory = factory
        self._reactor = factory.reactor
        self._buffer = bytearray()
        self._searchFrom = 0
        self._emptyLines = 0
        self._stream: HTTP1Stream | None = None
        self._body: BodyDecoder | None = None
        self._discarded = 0
        self._streams = 0
        self._pipelinedRun = 0
        self._readingPaused = False
        self._writePaused = False
        self._state = _OPEN
        self._processing = False
        self._again = False
        self._tunnel = False
        self._abortTimer: IDelayedCall | None = None
        self._peer: IAddress | None = None
        self._host: IAddress | None = None
        self.clientCertificate: ClientCertificate | None = None

    def callLater(self, period: float, func: Callable[[], object]) -> IDelayedCall:
        """TimeoutMixin's clock: the injected reactor, never the global one."""
        return self._reactor.callLater(period, func)

    @property
    def draining(self) -> bool:
        return self.factory.draining

    @property
    def writePaused(self) -> bool:
        """The client's socket is full (the transport paused this protocol)."""
        return self._writePaused

    # -- IProtocol ----------------------------------------------------------

    def connectionMade(self) -> None:
        self.factory.connections.add(self)
        self._host = self.transport.getHost()
        self.clientCertificate = client_certificate(self.transport)
        disableNagle(self.transport)
        self.transport.registerProducer(self, True)
        self._updateTimer()

    def dataReceived(self, data: bytes) -> None:
        if self._state is not _OPEN:
            return
        self._buffer += data
        if self._readingPaused and len(self._buffer) > self.factory.maxHeaderBytes + READ_AHEAD_LIMIT:
            log.warn(
                "HTTP/1.1 client {peer} sent {n} bytes while paused (limit {limit}); aborting",
                peer=self.getPeer(),
                n=len(self._buffer),
                limit=self.factory.maxHeaderBytes + READ_AHEAD_LIMIT,
            )
            self._abortConnection()
            return
        if self._stream is not None:
            # Body bytes are progress; head bytes are not, so a head that trickles
            # in (slowloris) still has to be complete within one idle timeout.
            self.resetTimeout()
        self._process()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._state = _CLOSED
        self.setTimeout(None)
        if self._abortTimer is not None and self._abortTimer.active():
            self._abortTimer.cancel()
        self._abortTimer = None
        stream, self._stream = self._stream, None
        if stream is not None and self._tunnel and reason.check(ConnectionDone):
            stream.endTunnel()
        elif stream is not None:
            stream.abort(reason)
        self._body = None
        self._buffer.clear()
        self.factory._connectionLost(self)
        self._releaseTransport()

    def _releaseTransport(self) -> None:
        """Let go of the transport once lost (its addresses kept for late callers):
        it holds this protocol as its producer, and the reference cycle left every
        closed connection to the cyclic collector. The peer's address is still known
        to a lost TCP transport; the local one is not (it asks the socket, which is
        gone by now), so it was read in C{connectionMade}."""
        transport = self.transport
        if transport is not None:
            self._peer = transport.getPeer()
            self.transport = None

    def getPeer(self) -> IAddress:
        transport = self.transport
        return transport.getPeer() if transport is not None else self._peer  # type: ignore[return-value]

    def getHost(self) -> IAddress:
        return self._host  # type: ignore[return-value]

    def timeoutConnection(self) -> None:
        """The client stalled: between requests, mid-head, mid-body or not reading."""
        log.info("HTTP/1.1 client {peer} timed out; closing", peer=self.getPeer())
        stream, self._stream = self._stream, None
        if stream is None:
            self._close()
            return
        stream.abort(Failure(TimeoutError("HTTP/1.1 client timed out")))
        self._abortConnection()

    # -- IPushProducer: the transport's write side --------------------------

    def pauseProducing(self) -> None:
        """The client's socket is full: pause the response producer."""
        self._writePaused = True
        producer = self._stream.producer if self._stream is not None else None
        if producer is not None:
            producer.pauseProducing()
        self._updateTimer()

    def resumeProducing(self) -> None:
        """The client's socket drained: resume the response producer."""
        self._writePaused = False
        producer = self._stream.producer if self._stream is not None else None
        if producer is not None:
            producer.resumeProducing()
        self.resetTimeout()
        self._updateTimer()

    def stopProducing(self) -> None:
        """The transport is going away; C{connectionLost} follows with the reason."""
        self._closing()

    # -- reading ------------------------------------------------------------

    def _process(self) -> None:
        """Run the read loop until it can make no progress.

        Handlers may call back into the stream (finish, pause, reset) from inside
        the loop; such calls only flag C{_again}, and the loop itself moves on, so
        there is never more than one loop on the stack.
        """
        if self._processing:
            self._again = True
            return
        self._processing = True
        try:
            while self._state is _OPEN:
                self._again = False
                if not self._step() and not self._again:
                    break
        finally:
            self._processing = False
        self._updateReading()
        self._updateTimer()

    def _step(self) -> bool:
        """Do one piece of work; return whether anything moved."""
        stream = self._stream
        if stream is None:
            return self._readHead()
        if self._body is None:
            return False
        if stream.wantsBody:
            if stream.paused:
                return False
        elif self._discarded > MAX_DISCARD:
            return False
        return self._readBody(stream, self._body)

    def _readHead(self) -> bool:
        buf = self._buffer
        if not buf:
            return False
        raw: bytes | None = None
        try:
            if buf.startswith(b"\r\n"):
                self._emptyLines += skip_empty_lines(buf)
                if self._emptyLines > MAX_EMPTY_LINES:
                    raise RequestRejected(400, "too many empty lines before the request line")
            end = find_head_end(buf, self._searchFrom)
            if end < 0:
                if len(buf) > self.factory.maxHeaderBytes:
                    raise RequestRejected(431, "request head too large")
                self._searchFrom = max(len(buf) - 3, 0)
                return False
            if end > self.factory.maxHeaderBytes:
                raise RequestRejected(431, "request head too large")
            raw = bytes(buf[:end])
            del buf[:end]
            self._searchFrom = self._emptyLines = 0
            request = parse_request(raw, secure=self.factory.secure, localContinue=self.factory.localContinue)
        except RequestRejected as rejected:
            self._refuse(rejected, refused_head(bytes(buf[:READ_AHEAD_LIMIT]) if raw is None else raw))
            return False
        self._startExchange(request)
        return True

    def _startExchange(self, request: ParsedRequest) -> None:
        self.setTimeout(None)
        self._streams += 1
        stream = HTTP1Stream(self, self._streams, request)
        if self.draining or self._pipelinedRun >= self.factory.maxPipelined:
            stream.closeAfterResponse()
        self._stream = stream
        self._body = body_decoder(request, self.factory.maxHeaderBytes)
        self._discarded = 0
        handler = self.factory.handlerFactory(stream)
        stream.attach(handler)
        handler.requestReceived(request.head)
        if self._stream is not stream or stream.handler is None:
            return
        if self._body is None:
            if request.head.protocol is None:
                handler.requestEnded(())
        elif stream.wantsBody and not stream.paused:
            stream.sendContinue()

    def _readBody(self, stream: HTTP1Stream, decoder: BodyDecoder) -> bool:
        try:
            event = decoder.step(self._buffer)
        except RequestRejected as rejected:
            self._bodyFailed(stream, rejected)
            return False
        if event is None:
            return False
        if isinstance(event, Trailers):
            self._body = None
            handler = stream.handler
            if stream.wantsBody and handler is not None:
                handler.requestEnded(event.headers)
            self._maybeEndExchange()
            return True
        handler = stream.handler
        if stream.wantsBody and handler is not None:
            handler.requestDataReceived(event)
            return True
        self._discarded += len(event)
        if self._discarded > MAX_DISCARD and stream.finished:
            self._close()
        return True

    def _bodyFailed(self, stream: HTTP1Stream, rejected: RequestRejected) -> None:
        """Bad body framing: the handler's exchange is aborted; the client gets the
        error if no response started, else a truncated response; the connection ends."""
        log.info(
            "HTTP/1.1 client {peer}: bad request body: {reason}",
            peer=self.getPeer(),
            reason=rejected.message,
        )
        self._stream = self._body = None
        stream.abort(Failure(StreamCut(REQUEST_ERROR, rejected.message, rejected.status)))
        if stream.responseStarted:
            self._close()
        else:
            self._reject(rejected)

    def _refuse(self, rejected: RequestRejected, head: RequestHead) -> None:
        """A request refused before it was parsed: answer it, and let a handler
        record it (L{StreamHandler.requestRefused}: its access log line)."""
        self._streams += 1
        stream = HTTP1Stream(self, self._streams, ParsedRequest(head=head, http10=False, keepAlive=False, chunked=False, expectContinue=False))
        try:
            self.factory.handlerFactory(stream).requestRefused(head, rejected.status)
        except Exception:
            log.failure("recording the refused request from {peer} failed", peer=self.getPeer())
        self._reject(rejected)

    def _reject(self, rejected: RequestRejected) -> None:
        """Answer a request the front end refuses with a short error, then close."""
        log.info(
            "HTTP/1.1 client {peer}: {status} {reason}",
            peer=self.getPeer(),
            status=rejected.status,
            reason=rejected.message,
        )
        self.send(error_response(rejected.status, rejected.message))
        self._close()

    # -- the end of an exchange -----------------------------------------------

    def responseFinished(self, stream: HTTP1Stream) -> None:
        """The response is complete; the exchange ends once the request body is read."""
        if self._body is not None and (stream.closeAfter or self._discarded > MAX_DISCARD):
            self._close()
            return
        self._maybeEndExchange()
        self._process()

    def _maybeEndExchange(self) -> None:
        stream = self._stream
        if stream is None or not stream.finished or self._body is not None:
            return
        self._stream = None
        self.setTimeout(None)
        if stream.closeAfter or self.draining:
            self._close()
            return
        self._pipelinedRun = self._pipelinedRun + 1 if self._buffer else 0

    def startTunnel(self) -> None:
        """After a 101: every client byte, buffered or to come, is tunnel data."""
        self._tunnel = True
        self._body = TunnelDecoder()
        self.readingChanged()

    def resetStream(self, stream: HTTP1Stream) -> None:
        """A handler reset its (current) stream: close the connection, flushing what
        was written."""
        self._stream = self._body = None
        stream.abort(Failure(ConnectionAborted("stream reset by its handler")))
        self._close()

    # -- writing and closing --------------------------------------------------

    def send(self, data: bytes) -> None:
        if self._state is _OPEN:
            self.transport.write(data)

    def sendSequence(self, data: list[bytes]) -> None:
        if self._state is _OPEN:
            self.transport.writeSequence(data)

    def logDropped(self, names: tuple[bytes, ...]) -> None:
        log.warn(
            "HTTP/1.1 response to {peer}: dropped invalid field(s) {names}",
            peer=self.getPeer(),
            names=[n.decode("latin-1") for n in names],
        )

    def _close(self) -> None:
        """Close after what was written is flushed; abort if the client never reads it.

        This protocol stops being the transport's producer first: a TLS transport
        does not start its close (close_notify) while a producer is registered, so
        every close waited for the abort timer and ended in a reset."""
        if self._state is not _OPEN:
            return
        self._state = _CLOSING
        self.setTimeout(None)
        self.transport.unregisterProducer()
        self.transport.loseConnection()
        if self.factory.abortTimeout is not None:
            self._abortTimer = self._reactor.callLater(self.factory.abortTimeout, self.transport.abortConnection)

    def _abortConnection(self) -> None:
        """Drop the connection at once, unflushed writes and all."""
        if self._state is _CLOSED:
            return
        self._closing()
        self.setTimeout(None)
        self.transport.abortConnection()

    def _closing(self) -> None:
        """Nothing more is read or written (unless the transport is already gone)."""
        if self._state is _OPEN:
            self._state = _CLOSING

    def drain(self) -> None:
        """Graceful stop: an idle connection closes now; a busy one answers its current
        request with ``Connection: close`` (or closes right after it)."""
        if self._stream is None and not self._buffer:
            self._close()
        elif self._stream is not None:
            self._stream.closeAfterResponse()

    def isIdle(self) -> bool:
        """Between requests with nothing buffered: closing now loses no request
        (the worker's connection cap closes such connections first)."""
        return self._stream is None and not self._buffer and self._state is _OPEN

    def closeIdle(self) -> None:
        """Close an idle connection to make room for another."""
        if self.isIdle():
            log.info("closing idle HTTP/1.1 connection from {peer} to make room for a new one", peer=self.getPeer())
            self._close()

    def abort(self) -> None:
        """Drop the connection now (the drain window ran out)."""
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.abort(Failure(StreamCut(DRAIN_TIMEOUT, "the drain window ran out")))
        self._abortConnection()

    # -- flow control ---------------------------------------------------------

    def readingChanged(self) -> None:
        """A stream paused, resumed or stopped its body: read (or not) accordingly."""
        self._process()

    def _wantReading(self) -> bool:
        stream = self._stream
        if stream is None:
            return True
        if self._body is not None:
            if stream.wantsBody:
                return not stream.paused
            return self._discarded <= MAX_DISCARD
        return not self._buffer

    def _updateReading(self) -> None:
        if self._state is not _OPEN:
            return
        want = self._wantReading()
        if want == (not self._readingPaused):
            return
        self._readingPaused = not want
        if want:
            self.transport.resumeProducing()
        else:
            self.transport.pauseProducing()

    def _waitingOnClient(self) -> bool:
        if self._state is not _OPEN:
            return False
        if self._writePaused:
            return True
        if self._tunnel:
            return False  # a quiet WebSocket is not idle: the tunnel idle timeout covers it
        return self._wantReading() and (self._stream is None or self._body is not None)

    def _updateTimer(self) -> None:
        if self.factory.idleTimeout is None:
            return
        want = self._waitingOnClient()
        if want and self.timeOut is None:
            self.setTimeout(self.factory.idleTimeout)
        elif not want and self.timeOut is not None:
            self.setTimeout(None)
