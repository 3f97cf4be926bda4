# -*- test-case-name: tests.frontend_http1 -*-
"""The HTTP/1.1 front end: HTTP/1.x clients served through the same bridge as HTTP/2.

L{NegotiationFactory} hands a connection to L{HTTP1Factory} when TLS negotiated
``http/1.1`` or a cleartext client did not start with the HTTP/2 preface. Each
request becomes an L{HTTP1Stream}, which offers the handler the surface of an
C{H2Stream} (request-body push producer, response consumer, C{writeHeaders},
C{writeTrailers}, C{finish}, C{reset}), so the bridge cannot tell the two apart.

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

from typing import Callable

from twisted.internet import defer
from twisted.internet.error import ConnectionAborted, ConnectionDone, TimeoutError
from twisted.internet.interfaces import IAddress, IConsumer, IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from zope.interface import implementer

from h2proxy.frontend.handler import DRAIN_TIMEOUT, REQUEST_ERROR, StreamCut, StreamHandler
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
from h2proxy.frontend.http1.write import (
    LAST_CHUNK,
    Framing,
    ResponseStart,
    chunk_header,
    error_response,
    informational,
    last_chunk,
    start_response,
    switching_protocols,
)
from h2proxy.frontend.nodelay import disableNagle
from h2proxy.message import Headers, RequestHead, ResponseHead, Trailers

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


@implementer(IPushProducer, IConsumer)
class HTTP1Stream:
    """One request/response exchange of an HTTP/1.1 connection, shaped like an H2Stream.

    Request side (C{IPushProducer}): C{pauseProducing} stops reading the socket,
    C{resumeProducing} reads on (sending C{100 Continue} first if the client waits
    for it and the factory answers it locally; otherwise the handler relays the
    backend's 100 through C{writeInformational}), C{stopProducing} means "no more body, thanks": the rest is read and
    discarded. Response side (C{IConsumer}): C{writeHeaders}, C{write},
    C{writeTrailers}/C{finish}; the registered producer is paused while the client's
    socket is full. C{reset} closes the connection (HTTP/1.1 has no other way to end
    a response early; the client sees a truncated body).

    Once the response is finished or the stream is aborted, the handler hears
    nothing more; writes after an abort are ignored.

    WebSocket (C{head.protocol} set by the parser): the request's end is not
    delivered at first. A C{101} from the handler is written with
    ``Connection: upgrade``/``Upgrade`` and turns the connection into a pipe:
    client bytes go to C{requestDataReceived} (same pause/resume), C{write} sends
    bytes as they are, C{finish} closes the connection, and the client's clean
    close is C{requestEnded} (any other loss, C{streamAborted}). Any other answer
    is an ordinary response after which the connection closes.

    @ivar streamID: 1, 2, 3... in request order on the connection.
    @ivar head: the request head handed to the handler.
    @ivar connection: the L{HTTP11ServerProtocol} the request came on.
    """

    def __init__(self, connection: "HTTP11ServerProtocol", streamID: int, request: ParsedRequest) -> None:
        self.connection = connection
        self.streamID = streamID
        self.head: RequestHead = request.head
        self._request = request
        #: the handler, until the response is finished or the stream aborted.
        self._handler: StreamHandler | None = None
        #: the handler still wants request-body bytes.
        self._bodyWanted = not request.head.end_stream
        #: the handler paused the request body.
        self._paused = False
        #: 100 Continue is owed before the client sends its body.
        self._continuePending = request.expectContinue
        #: the connection must close once this response is done.
        self.closeAfter = not request.keepAlive
        self._producer: IPushProducer | None = None
        self._start: ResponseStart | None = None
        self._remaining = 0
        self._finished = False
        self._aborted = False

    # -- request side: IPushProducer ----------------------------------------

    def pauseProducing(self) -> None:
        """The handler cannot take more body now: stop reading the socket."""
        if self._handler is None or not self._bodyWanted:
            return
        self._paused = True
        self.connection._readingChanged()

    def resumeProducing(self) -> None:
        """The handler takes body again: hand on what is buffered, then read on."""
        if self._handler is None or not self._bodyWanted:
            return
        self._paused = False
        self._sendContinue()
        self.connection._readingChanged()

    def stopProducing(self) -> None:
        """The handler wants no more of the body; it is read and discarded (within
        L{MAX_DISCARD}), and the response side carries on."""
        if self._handler is None:
            return
        self._bodyWanted = False
        self._paused = False
        self.connection._readingChanged()

    # -- response side: IConsumer -------------------------------------------

    def registerProducer(self, producer: IPushProducer, streaming: bool) -> None:
        """Attach the response-body producer; it is paused while the client's socket is full."""
        if not streaming:
            raise ValueError("HTTP1Stream takes streaming (push) producers only")
        if self._aborted or self._finished:
            return
        if self._producer is not None:
            raise RuntimeError(f"stream {self.streamID} already has a producer")
        self._producer = producer
        if self.connection._writePaused:
            producer.pauseProducing()

    def unregisterProducer(self) -> None:
        self._producer = None

    def writeInformational(self, head: ResponseHead) -> None:
        """Send a 1xx such as 103 Early Hints. Dropped for HTTP/1.0 clients (RFC 9110
        15.2) and after the final head. A 100 goes out only to a client still waiting
        for it, and only when the backend decides (not C{localContinue}): once, since
        it is the client's cue to send the body."""
        if self._aborted or self._start is not None or self._request.http10:
            return
        if head.status == 100:
            if not self._continuePending or self.connection.factory.localContinue:
                return
            self._continuePending = False
        self.connection._write(informational(head))

    def writeHeaders(self, head: ResponseHead, endStream: bool = False) -> None:
        """Send the final response head; its framing is chosen here (see L{start_response})."""
        if self._aborted or self._finished:
            return
        if self._start is not None:
            raise RuntimeError(f"stream {self.streamID}: response head already sent")
        if self.head.protocol is not None:
            if head.status == 101:
                self._switch(head, self.head.protocol)
                return
            self.closeAfter = True
        # A client still waiting for 100 Continue may or may not send its body now:
        # the connection cannot be reused safely (RFC 9110 10.1.1).
        close = self.closeAfter or self._continuePending or self.connection.draining
        self._continuePending = False
        start = start_response(
            head, method=self.head.method, http10=self._request.http10, close=close, endStream=endStream
        )
        self._start = start
        self._remaining = start.length or 0
        self.closeAfter = start.close
        if start.dropped:
            self.connection._logDropped(start.dropped)
        self.connection._write(start.data)
        if endStream:
            self.finish()

    def write(self, data: bytes) -> None:
        """Send response body bytes, framed as the head promised."""
        if self._aborted or self._finished or not data:
            return
        start = self._started()
        if start.framing is Framing.CHUNKED:
            self.connection._writeSequence([chunk_header(len(data)), data, b"\r\n"])
        elif start.framing is Framing.LENGTH:
            if len(data) > self._remaining:
                log.warn(
                    "stream {stream}: handler wrote past its Content-Length; closing",
                    stream=self.streamID,
                )
                self.reset()
                return
            self._remaining -= len(data)
            self.connection._write(data)
        elif start.framing is Framing.CLOSE:
            self.connection._write(data)

    def writeTrailers(self, headers: Headers) -> None:
        """End the response with trailers; they only exist on a chunked response and
        are dropped otherwise."""
        if self._aborted or self._finished:
            return
        if self._started().framing is not Framing.CHUNKED:
            self.finish()
            return
        data, dropped = last_chunk(headers)
        if dropped:
            self.connection._logDropped(dropped)
        self.connection._write(data)
        self._complete()

    def finish(self) -> None:
        """The response is complete. A Content-Length body that is short cannot be
        completed honestly: the connection is closed so the client sees it truncated."""
        if self._aborted or self._finished:
            return
        start = self._started()
        if start.framing is Framing.CHUNKED:
            self.connection._write(LAST_CHUNK)
        elif start.framing is Framing.LENGTH and self._remaining:
            log.warn(
                "stream {stream}: response ended {n} bytes short of its Content-Length; closing",
                stream=self.streamID,
                n=self._remaining,
            )
            self.reset()
            return
        self._complete()

    def reset(self, errorCode: object = None) -> None:
        """End the exchange abnormally. HTTP/1.1 can only close the connection; an
        incomplete response then reads as truncated."""
        if self._aborted or self._finished:
            return
        self.connection._resetStream(self)

    # -- connection facts -----------------------------------------------------

    def getPeer(self) -> IAddress:
        return self.connection.getPeer()

    def getHost(self) -> IAddress:
        return self.connection.getHost()

    def isSecure(self) -> bool:
        return self.connection.factory.secure

    # -- used by the connection -----------------------------------------------

    @property
    def finished(self) -> bool:
        """The response was written completely."""
        return self._finished

    @property
    def wantsBody(self) -> bool:
        """Body bytes go to the handler (rather than being discarded)."""
        return self._handler is not None and self._bodyWanted

    @property
    def paused(self) -> bool:
        return self._paused

    def _started(self) -> ResponseStart:
        if self._start is None:
            raise RuntimeError(f"stream {self.streamID}: body written before writeHeaders()")
        return self._start

    def _sendContinue(self) -> None:
        """With C{localContinue}, tell a client waiting on ``Expect: 100-continue`` to
        send its body: done the first time the handler is ready to read it, so that a
        handler that answers at once (404, 413...) never invites a body it will not
        read. Otherwise the backend's 100 is awaited (L{writeInformational})."""
        if self._continuePending and self.connection.factory.localContinue:
            self._continuePending = False
            self.connection._write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _switch(self, head: ResponseHead, protocol: bytes) -> None:
        """The upgrade was accepted: write the 101, then the connection is a pipe."""
        start = switching_protocols(head, protocol)
        self._start = start
        self.closeAfter = True
        self._bodyWanted = True
        if start.dropped:
            self.connection._logDropped(start.dropped)
        self.connection._write(start.data)
        self.connection._startTunnel()

    def _endTunnel(self) -> None:
        """The client closed the tunnel cleanly: the end of its side of it."""
        self._aborted = True
        handler = self._detach()
        if handler is not None and not self._finished:
            handler.requestEnded(())

    def _complete(self) -> None:
        self._finished = True
        self._detach()
        self.connection._responseFinished(self)

    def _detach(self) -> StreamHandler | None:
        """Forget the handler and the producer; return the handler if it was attached."""
        handler, self._handler = self._handler, None
        self._producer = None
        self._bodyWanted = False
        self._paused = False
        return handler

    def _abort(self, reason: Failure) -> None:
        """Tell the handler, once, that the exchange is over without completing."""
        self._aborted = True
        handler = self._detach()
        if handler is not None and not self._finished:
            handler.streamAborted(reason)


@implementer(IPushProducer)
class HTTP11ServerProtocol(Protocol, TimeoutMixin):
    """One HTTP/1.x client connection: reads requests one at a time, writes responses.

    States (from the attributes): waiting for a head (C{_stream is None}); reading a
    body (C{_body} set; bytes go to the handler unless it paused or stopped them, in
    which case they are discarded); waiting for the response (C{_body is None}; the
    socket is read only to notice a close, and paused as soon as bytes of a next
    request arrive); closing (C{_gone}: nothing more is read or written).

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
        self._gone = False
        self._lost = False
        self._processing = False
        self._again = False
        self._tunnel = False
        self._abortTimer: IDelayedCall | None = None
        self._peer: IAddress | None = None
        self._host: IAddress | None = None

    def callLater(self, period: float, func: Callable[[], object]) -> IDelayedCall:
        """TimeoutMixin's clock: the injected reactor, never the global one."""
        return self._reactor.callLater(period, func)

    @property
    def draining(self) -> bool:
        return self.factory.draining

    # -- IProtocol ----------------------------------------------------------

    def connectionMade(self) -> None:
        self.factory.connections.add(self)
        self._host = self.transport.getHost()
        disableNagle(self.transport)
        self.transport.registerProducer(self, True)
        self._updateTimer()

    def dataReceived(self, data: bytes) -> None:
        if self._gone:
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
        self._gone = self._lost = True
        self.setTimeout(None)
        if self._abortTimer is not None and self._abortTimer.active():
            self._abortTimer.cancel()
        self._abortTimer = None
        stream, self._stream = self._stream, None
        if stream is not None and self._tunnel and reason.check(ConnectionDone):
            stream._endTunnel()
        elif stream is not None:
            stream._abort(reason)
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
        stream._abort(Failure(TimeoutError("HTTP/1.1 client timed out")))
        self._abortConnection()

    # -- IPushProducer: the transport's write side --------------------------

    def pauseProducing(self) -> None:
        """The client's socket is full: pause the response producer."""
        self._writePaused = True
        producer = self._stream._producer if self._stream is not None else None
        if producer is not None:
            producer.pauseProducing()
        self._updateTimer()

    def resumeProducing(self) -> None:
        """The client's socket drained: resume the response producer."""
        self._writePaused = False
        producer = self._stream._producer if self._stream is not None else None
        if producer is not None:
            producer.resumeProducing()
        self.resetTimeout()
        self._updateTimer()

    def stopProducing(self) -> None:
        """The transport is going away; C{connectionLost} follows with the reason."""
        self._gone = True

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
            while not self._gone:
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
            stream.closeAfter = True
        self._stream = stream
        self._body = body_decoder(request, self.factory.maxHeaderBytes)
        self._discarded = 0
        handler = self.factory.handlerFactory(stream)
        stream._handler = handler
        handler.requestReceived(request.head)
        if self._stream is not stream or stream._handler is None:
            return
        if self._body is None:
            if request.head.protocol is None:
                handler.requestEnded(())
        elif stream.wantsBody and not stream.paused:
            stream._sendContinue()

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
            handler = stream._handler
            if stream.wantsBody and handler is not None:
                handler.requestEnded(event.headers)
            self._maybeEndExchange()
            return True
        handler = stream._handler
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
        stream._abort(Failure(StreamCut(REQUEST_ERROR, rejected.message, rejected.status)))
        if stream._start is not None:
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
        self._write(error_response(rejected.status, rejected.message))
        self._close()

    # -- the end of an exchange -----------------------------------------------

    def _responseFinished(self, stream: HTTP1Stream) -> None:
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

    def _startTunnel(self) -> None:
        """After a 101: every client byte, buffered or to come, is tunnel data."""
        self._tunnel = True
        self._body = TunnelDecoder()
        self._readingChanged()

    def _resetStream(self, stream: HTTP1Stream) -> None:
        """A handler reset its (current) stream: close the connection, flushing what
        was written."""
        self._stream = self._body = None
        stream._abort(Failure(ConnectionAborted("stream reset by its handler")))
        self._close()

    # -- writing and closing --------------------------------------------------

    def _write(self, data: bytes) -> None:
        if not self._gone:
            self.transport.write(data)

    def _writeSequence(self, data: list[bytes]) -> None:
        if not self._gone:
            self.transport.writeSequence(data)

    def _logDropped(self, names: tuple[bytes, ...]) -> None:
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
        if self._gone:
            return
        self._gone = True
        self.setTimeout(None)
        self.transport.unregisterProducer()
        self.transport.loseConnection()
        if self.factory.abortTimeout is not None:
            self._abortTimer = self._reactor.callLater(self.factory.abortTimeout, self.transport.abortConnection)

    def _abortConnection(self) -> None:
        """Drop the connection at once, unflushed writes and all."""
        if self._lost:
            return
        self._gone = True
        self.setTimeout(None)
        self.transport.abortConnection()

    def drain(self) -> None:
        """Graceful stop: an idle connection closes now; a busy one answers its current
        request with ``Connection: close`` (or closes right after it)."""
        if self._stream is None and not self._buffer:
            self._close()
        elif self._stream is not None:
            self._stream.closeAfter = True

    def isIdle(self) -> bool:
        """Between requests with nothing buffered: closing now loses no request
        (the worker's connection cap closes such connections first)."""
        return self._stream is None and not self._buffer and not self._gone

    def closeIdle(self) -> None:
        """Close an idle connection to make room for another."""
        if self.isIdle():
            log.info("closing idle HTTP/1.1 connection from {peer} to make room for a new one", peer=self.getPeer())
            self._close()

    def abort(self) -> None:
        """Drop the connection now (the drain window ran out)."""
        stream, self._stream = self._stream, None
        if stream is not None:
            stream._abort(Failure(StreamCut(DRAIN_TIMEOUT, "the drain window ran out")))
        self._abortConnection()

    # -- flow control ---------------------------------------------------------

    def _readingChanged(self) -> None:
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
        if self._gone:
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
        if self._gone:
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


class HTTP1Factory(Factory):
    """Builds an L{HTTP11ServerProtocol} per HTTP/1.x client connection.

    @ivar reactor: the clock for idle and abort timers.
    @ivar handlerFactory: C{handlerFactory(stream) -> StreamHandler}, as for HTTP/2.
    @ivar idleTimeout: seconds a connection may wait on its client (between
        requests, for a head, for body bytes, for it to read); C{None}: forever.
    @ivar secure: connections arrive over TLS (scheme ``https``).
    @ivar maxHeaderBytes: cap on a request head and on a trailer section (431).
    @ivar maxPipelined: requests answered in a row from bytes that were already
        waiting when the previous response ended; the last of them says
        ``Connection: close``. Bounds the work one burst can queue.
    @ivar abortTimeout: seconds a closing connection may take to flush before it
        is aborted; C{None}: wait forever.
    @ivar localContinue: answer ``Expect: 100-continue`` with a 100 when the handler
        first reads the body, and keep Expect from the handler; by default the handler
        gets it and relays the backend's 100.
    @ivar connections: the live connections.
    @ivar draining: a drain started; every response now closes its connection.
    """

    def __init__(
        self,
        *,
        reactor: IReactorTime,
        handlerFactory: Callable[[HTTP1Stream], StreamHandler],
        idleTimeout: float | None,
        secure: bool,
        maxHeaderBytes: int = 64 * 1024,
        maxPipelined: int = 16,
        abortTimeout: float | None = 15.0,
        localContinue: bool = False,
    ) -> None:
        self.reactor = reactor
        self.handlerFactory = handlerFactory
        self.idleTimeout = idleTimeout
        self.secure = secure
        self.maxHeaderBytes = maxHeaderBytes
        self.maxPipelined = maxPipelined
        self.abortTimeout = abortTimeout
        self.localContinue = localContinue
        self.connections: set[HTTP11ServerProtocol] = set()
        self.draining = False
        self._drainWaiters: list[defer.Deferred] = []
        self._drainTimer: IDelayedCall | None = None

    def buildProtocol(self, addr: IAddress) -> HTTP11ServerProtocol:
        return HTTP11ServerProtocol(self)

    def drain(self, timeout: float) -> defer.Deferred:
        """Finish in-flight requests (their responses close the connection), close
        idle connections now, and abort whatever is left after C{timeout} seconds.
        The Deferred fires once every connection is gone."""
        self.draining = True
        waiter: defer.Deferred = defer.Deferred()
        self._drainWaiters.append(waiter)
        for connection in list(self.connections):
            connection.drain()
        if self.connections and self._drainTimer is None:
            self._drainTimer = self.reactor.callLater(timeout, self._abortLeftovers)
        self._checkDrained()
        return waiter

    def _abortLeftovers(self) -> None:
        self._drainTimer = None
        log.info("drain window over: aborting {n} HTTP/1.1 connection(s)", n=len(self.connections))
        for connection in list(self.connections):
            connection.abort()

    def _connectionLost(self, connection: HTTP11ServerProtocol) -> None:
        self.connections.discard(connection)
        self._checkDrained()

    def _checkDrained(self) -> None:
        if not self.draining or self.connections:
            return
        if self._drainTimer is not None and self._drainTimer.active():
            self._drainTimer.cancel()
        self._drainTimer = None
        waiters, self._drainWaiters = self._drainWaiters, []
        for waiter in waiters:
            waiter.callback(None)
