"""HTTP1Stream: one request/response exchange of an HTTP/1.1 connection.

The stream offers a handler the L{ClientStream} surface (request-body push
producer, response consumer, C{writeHeaders}, C{writeTrailers}, C{finish},
C{reset}), so the bridge cannot tell it from an C{H2Stream}. It frames the
response (L{h2proxy.frontend.http1.write}) and writes it through its
L{HTTP11ServerProtocol}, which owns the socket and the read loop.

Two small state machines: L{ExchangeState} (open, then finished or aborted, never
both) and L{BodyState} (whether request body bytes flow to the handler, wait, or are
read and discarded).
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from twisted.internet.interfaces import IAddress, IConsumer, IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from h2proxy.frontend.clientcert import ClientCertificate
from h2proxy.frontend.handler import ResetReason, StreamHandler
from h2proxy.frontend.http1.parse import ParsedRequest
from h2proxy.frontend.http1.write import (
    LAST_CHUNK,
    Framing,
    ResponseStart,
    chunk_header,
    informational,
    last_chunk,
    start_response,
    switching_protocols,
)
from h2proxy.message import Headers, RequestHead, ResponseHead

if TYPE_CHECKING:
    from h2proxy.frontend.http1.protocol import HTTP11ServerProtocol

log = Logger()


class ExchangeState(enum.Enum):
    """An exchange's life: L{OPEN} until its response is complete (L{FINISHED}) or
    it ends otherwise (L{ABORTED}: reset, connection lost, tunnel closed); the two
    ends are final and exclusive, so the handler hears exactly one of them."""

    OPEN = "open"
    FINISHED = "finished"
    ABORTED = "aborted"


class BodyState(enum.Enum):
    """Where request body bytes go: to the handler (L{FLOWING}), nowhere yet while
    the handler paused it (L{PAUSED}: the socket is not read), or read and thrown
    away (L{UNWANTED}: no body, the handler stopped it, or the exchange is over)."""

    FLOWING = "flowing"
    PAUSED = "paused"
    UNWANTED = "unwanted"


# Members as module globals: a lookup on the enum class costs about 0.1 µs on
# Python 3.11, and an exchange checks its state on every write.
_OPEN, _FINISHED, _ABORTED = ExchangeState
_FLOWING, _PAUSED, _UNWANTED = BodyState


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
        self._body = _UNWANTED if request.head.end_stream else _FLOWING
        #: 100 Continue is owed before the client sends its body.
        self._continuePending = request.expectContinue
        #: the connection must close once this response is done.
        self.closeAfter = not request.keepAlive
        self._producer: IPushProducer | None = None
        self._start: ResponseStart | None = None
        self._remaining = 0
        self.state = _OPEN

    # -- request side: IPushProducer ----------------------------------------

    def pauseProducing(self) -> None:
        """The handler cannot take more body now: stop reading the socket."""
        if self._handler is None or self._body is _UNWANTED:
            return
        self._body = _PAUSED
        self.connection.readingChanged()

    def resumeProducing(self) -> None:
        """The handler takes body again: hand on what is buffered, then read on."""
        if self._handler is None or self._body is _UNWANTED:
            return
        self._body = _FLOWING
        self.sendContinue()
        self.connection.readingChanged()

    def stopProducing(self) -> None:
        """The handler wants no more of the body; it is read and discarded (within
        L{h2proxy.frontend.http1.protocol.MAX_DISCARD}), and the response side carries on."""
        if self._handler is None:
            return
        self._body = _UNWANTED
        self.connection.readingChanged()

    # -- response side: IConsumer -------------------------------------------

    def registerProducer(self, producer: IPushProducer, streaming: bool) -> None:
        """Attach the response-body producer; it is paused while the client's socket is full."""
        if not streaming:
            raise ValueError("HTTP1Stream takes streaming (push) producers only")
        if self.state is not _OPEN:
            return
        if self._producer is not None:
            raise RuntimeError(f"stream {self.streamID} already has a producer")
        self._producer = producer
        if self.connection.writePaused:
            producer.pauseProducing()

    def unregisterProducer(self) -> None:
        self._producer = None

    def writeInformational(self, head: ResponseHead) -> None:
        """Send a 1xx such as 103 Early Hints. Dropped for HTTP/1.0 clients (RFC 9110
        15.2) and after the final head. A 100 goes out only to a client still waiting
        for it, and only when the backend decides (not C{localContinue}): once, since
        it is the client's cue to send the body."""
        if self.state is _ABORTED or self._start is not None or self._request.http10:
            return
        if head.status == 100:
            if not self._continuePending or self.connection.factory.localContinue:
                return
            self._continuePending = False
        self.connection.send(informational(head))

    def writeHeaders(self, head: ResponseHead, endStream: bool = False) -> None:
        """Send the final response head; its framing is chosen here (see L{start_response})."""
        if self.state is not _OPEN:
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
            self.connection.logDropped(start.dropped)
        self.connection.send(start.data)
        if endStream:
            self.finish()

    def write(self, data: bytes) -> None:
        """Send response body bytes, framed as the head promised."""
        if self.state is not _OPEN or not data:
            return
        start = self._started()
        if start.framing is Framing.CHUNKED:
            self.connection.sendSequence([chunk_header(len(data)), data, b"\r\n"])
        elif start.framing is Framing.LENGTH:
            if len(data) > self._remaining:
                log.warn(
                    "stream {stream}: handler wrote past its Content-Length; closing",
                    stream=self.streamID,
                )
                self.reset()
                return
            self._remaining -= len(data)
            self.connection.send(data)
        elif start.framing is Framing.CLOSE:
            self.connection.send(data)

    def writeTrailers(self, headers: Headers) -> None:
        """End the response with trailers; they only exist on a chunked response and
        are dropped otherwise."""
        if self.state is not _OPEN:
            return
        if self._started().framing is not Framing.CHUNKED:
            self.finish()
            return
        data, dropped = last_chunk(headers)
        if dropped:
            self.connection.logDropped(dropped)
        self.connection.send(data)
        self._complete()

    def finish(self) -> None:
        """The response is complete. A Content-Length body that is short cannot be
        completed honestly: the connection is closed so the client sees it truncated."""
        if self.state is not _OPEN:
            return
        start = self._started()
        if start.framing is Framing.CHUNKED:
            self.connection.send(LAST_CHUNK)
        elif start.framing is Framing.LENGTH and self._remaining:
            log.warn(
                "stream {stream}: response ended {n} bytes short of its Content-Length; closing",
                stream=self.streamID,
                n=self._remaining,
            )
            self.reset()
            return
        self._complete()

    def reset(self, reason: ResetReason = ResetReason.INTERNAL_ERROR) -> None:
        """End the exchange abnormally, whatever the C{reason}: HTTP/1.1 can only
        close the connection; an incomplete response then reads as truncated."""
        if self.state is not _OPEN:
            return
        self.connection.resetStream(self)

    # -- connection facts -----------------------------------------------------

    def getPeer(self) -> IAddress:
        return self.connection.getPeer()

    def getHost(self) -> IAddress:
        return self.connection.getHost()

    def isSecure(self) -> bool:
        return self.connection.factory.secure

    def clientCertificate(self) -> ClientCertificate | None:
        return self.connection.clientCertificate

    # -- used by the connection -----------------------------------------------

    def closeAfterResponse(self) -> None:
        """The connection closes once this response is done (the response says
        ``Connection: close`` if its head has not gone out yet)."""
        self.closeAfter = True

    def attach(self, handler: StreamHandler) -> None:
        """The handler this exchange drives, until it is finished or aborted."""
        self._handler = handler

    @property
    def handler(self) -> StreamHandler | None:
        """The attached handler; C{None} once the exchange is over."""
        return self._handler

    @property
    def producer(self) -> IPushProducer | None:
        """The response body's registered producer, if any."""
        return self._producer

    @property
    def responseStarted(self) -> bool:
        """The final response head (or the 101) went out."""
        return self._start is not None

    @property
    def finished(self) -> bool:
        """The response was written completely."""
        return self.state is _FINISHED

    @property
    def wantsBody(self) -> bool:
        """Body bytes go to the handler (rather than being discarded)."""
        return self._handler is not None and self._body is not _UNWANTED

    @property
    def paused(self) -> bool:
        return self._body is _PAUSED

    def _started(self) -> ResponseStart:
        if self._start is None:
            raise RuntimeError(f"stream {self.streamID}: body written before writeHeaders()")
        return self._start

    def sendContinue(self) -> None:
        """With C{localContinue}, tell a client waiting on ``Expect: 100-continue`` to
        send its body: done the first time the handler is ready to read it, so that a
        handler that answers at once (404, 413...) never invites a body it will not
        read. Otherwise the backend's 100 is awaited (L{writeInformational})."""
        if self._continuePending and self.connection.factory.localContinue:
            self._continuePending = False
            self.connection.send(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _switch(self, head: ResponseHead, protocol: bytes) -> None:
        """The upgrade was accepted: write the 101, then the connection is a pipe."""
        start = switching_protocols(head, protocol)
        self._start = start
        self.closeAfter = True
        if self._body is _UNWANTED:
            self._body = _FLOWING
        if start.dropped:
            self.connection.logDropped(start.dropped)
        self.connection.send(start.data)
        self.connection.startTunnel()

    def endTunnel(self) -> None:
        """The client closed the tunnel cleanly: the end of its side of it."""
        if self._end(_ABORTED):
            handler = self._detach()
            if handler is not None:
                handler.requestEnded(())

    def _complete(self) -> None:
        self.state = _FINISHED
        self._detach()
        self.connection.responseFinished(self)

    def _detach(self) -> StreamHandler | None:
        """Forget the handler and the producer; return the handler if it was attached."""
        handler, self._handler = self._handler, None
        self._producer = None
        self._body = _UNWANTED
        return handler

    def abort(self, reason: Failure) -> None:
        """Tell the handler, once, that the exchange is over without completing."""
        if self._end(_ABORTED):
            handler = self._detach()
            if handler is not None:
                handler.streamAborted(reason)
        else:
            self._detach()

    def _end(self, state: ExchangeState) -> bool:
        """Move an open exchange to C{state}; return whether it was open."""
        if self.state is not _OPEN:
            return False
        self.state = state
        return True
