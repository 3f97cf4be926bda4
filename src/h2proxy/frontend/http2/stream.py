"""H2Stream: one HTTP/2 request/response exchange as the bridge sees it.

A stream is two things at once (see L{h2proxy.frontend.handler} for the contract):

- the C{IPushProducer} of the request body: received DATA goes to the handler
  unless the handler paused the stream, in which case it waits here; HTTP/2 window
  credit (L{H2Connection.openStreamWindow}) is returned only for chunks handed to
  the handler, after that call returned, so a paused stream holds the client back
  by flow control and its buffer never exceeds the window we advertised;
- the C{IConsumer} of the response body: bytes written wait in a queue of chunks
  until the connection's send loop turns them into DATA frames, as windows and
  the transport allow. While more than L{STREAM_HIGH_WATER} bytes are queued the
  registered producer is paused, and it is resumed once the queue drains below
  L{STREAM_LOW_WATER}: memory per stream is bounded whatever the window size, and
  a full transport or a closed window reaches the backend.

A stream is accepted when its request headers arrive, but its handler is started
only at the end of that read (see L{H2Connection}); DATA and the end of the request
that arrive before L{H2Stream.start} wait in the stream, exactly as while paused.

The stream owns its queues and its states (L{StreamState}, L{RequestState},
L{ResponseState}, L{ProducerState}); the connection (which owns the h2 state
machine, the priority tree and the transport) drives them through the stream's
operations and never writes a stream's fields: it queues heads, body bytes and ends
(C{queueHeaders}, C{queueData}, C{queueEnd}...) and its send loop asks the stream
to put its next frames on the codec (L{H2Stream.emit}). Once a stream is gone (complete,
reset by either side, or its connection lost), every call on it is a no-op, and its
handler has received exactly one C{streamAborted} if it did not complete normally.
"""

from __future__ import annotations

import enum
from collections import deque
from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IAddress, IConsumer, IPushProducer
from zope.interface import implementer

from h2proxy.frontend.clientcert import ClientCertificate
from h2proxy.frontend.handler import ResetReason
from h2proxy.frontend.http2.codec import ErrorCodes
from h2proxy.frontend.http2.validation import Field, content_length_mismatch
from h2proxy.message import Headers, RequestHead, ResponseHead

if TYPE_CHECKING:
    from h2proxy.frontend.http2.codec.machine import ServerConnection
    from h2proxy.frontend.http2.connection import H2Connection
    from h2proxy.frontend.handler import StreamHandler

#: Queued response bytes above which the stream pauses its producer: one backend
#: read (the upstream side reads 256 KiB at a time), so that a bulk response is not
#: paused and resumed on every read.
STREAM_HIGH_WATER = 256 * 1024

#: Queued response bytes below which a paused producer is resumed.
STREAM_LOW_WATER = 64 * 1024

#: The RST_STREAM code each handler reset reason is sent with.
RESET_CODES: dict[ResetReason, ErrorCodes] = {
    ResetReason.CANCEL: ErrorCodes.CANCEL,
    ResetReason.INTERNAL_ERROR: ErrorCodes.INTERNAL_ERROR,
}


class StreamResetError(Exception):
    """The reason a stream's handler gets when the stream was reset.

    @ivar errorCode: the RST_STREAM error code.
    @ivar byPeer: C{True} when the client sent the RST_STREAM.
    """

    def __init__(self, errorCode: ErrorCodes | int, byPeer: bool, message: str = "") -> None:
        self.errorCode = errorCode
        self.byPeer = byPeer
        who = "client" if byPeer else "proxy"
        super().__init__(f"stream reset by the {who} with {_codeName(errorCode)}" + (f": {message}" if message else ""))


class ResponseCompletedEarly(Exception):
    """The response was complete before the request body was: the rest of the
    request is not delivered (and the client is told to stop sending it with
    RST_STREAM NO_ERROR, RFC 9113 8.1)."""


class _End:
    """Marker: END_STREAM goes on the last DATA frame (or an empty one)."""


END_AFTER_DATA = _End()


class StreamState(enum.Enum):
    """A stream's life on its connection: L{ACCEPTED} when its request headers are
    in, L{STARTED} once its handler has the request (end of that read), L{CLOSED}
    once it is gone (complete, reset by either side, or its connection lost)."""

    ACCEPTED = "accepted"
    STARTED = "started"
    CLOSED = "closed"


class RequestState(enum.Enum):
    """The request body: L{RECEIVING} until the client's END_STREAM (L{ENDED}), then
    L{DELIVERED} once the handler has had it all. L{ABANDONED}: the proxy stopped
    waiting for the body (it timed out); a late END_STREAM still ends it."""

    RECEIVING = "receiving"
    ABANDONED = "abandoned"
    ENDED = "ended"
    DELIVERED = "delivered"


class ResponseState(enum.Enum):
    """The response: L{AWAITING_HEAD} (informational heads may be queued),
    L{HEAD_QUEUED} (body bytes may follow), L{FINISHING} (its end is queued: no more
    writes), L{ENDED} (END_STREAM went out)."""

    AWAITING_HEAD = "awaiting_head"
    HEAD_QUEUED = "head_queued"
    FINISHING = "finishing"
    ENDED = "ended"


class ProducerState(enum.Enum):
    """The response body's producer: none, a pull producer (asked for more whenever
    the queue is low), or a push producer running or paused by the queue's
    watermarks."""

    NONE = "none"
    PULL = "pull"
    STREAMING = "streaming"
    PAUSED = "paused"


# The members as module globals: looking a member up on its enum class costs about
# 0.1 µs on Python 3.11, and a stream checks its states several times per frame.
_S_ACCEPTED, _S_STARTED, _S_CLOSED = StreamState
_REQ_RECEIVING, _REQ_ABANDONED, _REQ_ENDED, _REQ_DELIVERED = RequestState
_RESP_AWAITING_HEAD, _RESP_HEAD_QUEUED, _RESP_FINISHING, _RESP_ENDED = ResponseState
_PROD_NONE, _PROD_PULL, _PROD_STREAMING, _PROD_PAUSED = ProducerState

#: A response write after its end.
_FINISHED = (_RESP_FINISHING, _RESP_ENDED)


@implementer(IPushProducer, IConsumer)
class H2Stream:
    """One stream of an L{H2Connection}.

    @ivar streamID: the HTTP/2 stream id.
    @ivar head: the validated request, or C{None} for a request the front end
        answers itself (a polite 400/431) without a handler.
    @ivar connection: the L{H2Connection} the stream belongs to.
    @ivar handler: the L{StreamHandler} driven by this stream (see L{attach}).
    @ivar state: the stream's L{StreamState}.
    @ivar request: the request body's L{RequestState}.
    @ivar response: the response's L{ResponseState}.
    @ivar producer: the response producer's L{ProducerState}.
    @ivar lastBodyProgress: when the handler last got request body bytes, or
        started or resumed waiting for them (the connection's clock).
    @ivar queued: response body bytes queued and not yet framed.

    Whether the handler paused the request body is a switch it flips at will, not a
    stage of the stream's life, so it stays a flag (C{_paused}).
    """

    def __init__(self, *, streamID: int, head: RequestHead | None, connection: "H2Connection") -> None:
        self.streamID = streamID
        self.head = head
        self.connection = connection
        self.handler: StreamHandler | None = None
        self.state = _S_ACCEPTED
        #: C{state is not CLOSED}, kept as an attribute: the connection asks on
        #: every event, and a property costs a call each time.
        self.alive = True
        # Request side.
        self.request = _REQ_RECEIVING
        self.lastBodyProgress = 0.0
        self._paused = False
        self._inbound: deque[tuple[bytes, int]] = deque()
        self._received = 0
        self._requestTrailers: Headers = ()
        # Response side: queued here, taken by the connection's send loop.
        self.response = _RESP_AWAITING_HEAD
        self._heads: deque[tuple[list[Field], bool]] = deque()
        self._end: _End | list[Field] | None = None
        #: A head, or the end with no body left before it, is queued: something
        #: to send that needs no flow-control window. Kept up to date by the
        #: queue operations and L{emit} (the send loop asks on every write).
        self.sendableWithoutWindow = False
        self.queue: deque[bytes | memoryview] = deque()
        self.queued = 0
        self.producer = _PROD_NONE
        self._producer: Any = None

    def __repr__(self) -> str:
        return f"<H2Stream {self.streamID} {self.state.value}>"

    # -- request body: IPushProducer ------------------------------------------

    def pauseProducing(self) -> None:
        """Stop handing request DATA to the handler (and returning its credit)."""
        self._paused = True

    def resumeProducing(self) -> None:
        """Hand buffered request DATA on, then the end of the request, if due."""
        wasWaiting = self.awaitingBody
        self._paused = False
        if self.state is not _S_STARTED:
            return
        self._deliver()
        if self.awaitingBody and not wasWaiting:
            self._bodyWaitStarted()

    def stopProducing(self) -> None:
        """The request body's consumer is gone for good: reset with CANCEL."""
        self.reset(ResetReason.CANCEL)

    # -- response: IConsumer and heads ----------------------------------------

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        """Register the response body's producer (the backend side).

        A push producer (C{streaming=True}) is paused and resumed by queue
        watermarks; a pull producer is asked for more whenever the queue is low.
        """
        if self._producer is not None:
            raise RuntimeError(f"stream {self.streamID} already has a producer registered")
        if not self.alive:
            return
        self._producer = producer
        self.producer = _PROD_STREAMING if streaming else _PROD_PULL
        self.afterSend()
        if streaming and self.queued > STREAM_HIGH_WATER:
            self._pauseProducer()

    def unregisterProducer(self) -> None:
        self._producer = None
        self.producer = _PROD_NONE

    def write(self, data: bytes) -> None:
        """Queue response body bytes; they go out as windows and the transport allow."""
        self.connection.writeDataToStream(self.streamID, data)

    def writeInformational(self, head: ResponseHead) -> None:
        """Send a 1xx head (e.g. 103 Early Hints) before the final one."""
        self.connection.writeInformational(self.streamID, head)

    def writeHeaders(self, head: ResponseHead, endStream: bool = False) -> None:
        """Send the final response head; C{endStream} when there is no body."""
        self.connection.writeHeaders(self.streamID, head, endStream)

    def writeTrailers(self, headers: Headers) -> None:
        """Send trailers after the queued body; this ends the response."""
        self.connection.writeTrailers(self.streamID, headers)

    def finish(self) -> None:
        """End the response once the queued body has been sent."""
        self.connection.endRequest(self.streamID)

    def reset(self, reason: ResetReason = ResetReason.INTERNAL_ERROR) -> None:
        """Reset the stream now: RST_STREAM with the code C{reason} maps to,
        dropping whatever is queued."""
        self.connection.abortRequest(self.streamID, RESET_CODES[reason])

    def getPeer(self) -> IAddress:
        return self.connection.getPeer()

    def getHost(self) -> IAddress:
        return self.connection.getHost()

    def isSecure(self) -> bool:
        return self.connection.secure

    def clientCertificate(self) -> ClientCertificate | None:
        return self.connection.clientCertificate

    # -- driven by the connection: request side -------------------------------

    def attach(self, handler: StreamHandler) -> None:
        """The handler this stream drives from now on."""
        self.handler = handler

    def replaceHandler(self, handler: StreamHandler) -> StreamHandler | None:
        """Drive C{handler} from now on; return the one it replaces."""
        previous, self.handler = self.handler, handler
        return previous

    def start(self) -> None:
        """The handler has its request: deliver what arrived meanwhile (unless it
        paused the stream already) and start waiting for the rest of the body."""
        self.state = _S_STARTED
        if not self._paused:
            self._deliver()
        if self.awaitingBody:
            self._bodyWaitStarted()

    @property
    def awaitingBody(self) -> bool:
        """The handler is waiting for request body bytes that only the client can
        send: started, not paused, body still coming (what C{requestBodyTimeout}
        watches). Never for a tunnel (extended CONNECT): a quiet WebSocket is not a
        stalled upload; the bridge's tunnel idle timeout covers it."""
        return (
            self.state is _S_STARTED
            and self.request is _REQ_RECEIVING
            and not self._paused
            and not self.isTunnel
            and self.head is not None
            and not self.head.end_stream
        )

    @property
    def isTunnel(self) -> bool:
        """An RFC 8441 extended CONNECT: after a 2xx, DATA both ways are tunnel bytes
        and END_STREAM closes the tunnel."""
        return self.head is not None and self.head.protocol is not None

    def abandonBody(self) -> None:
        """Stop waiting for the request body (it timed out); later DATA is dropped."""
        if self.request is _REQ_RECEIVING:
            self.request = _REQ_ABANDONED

    def dataReceived(self, data: bytes, flowLength: int) -> None:
        """One DATA frame's payload and its flow-controlled length (with padding)."""
        self._received += len(data)
        problem = content_length_mismatch(self._declaredLength(), self._received, False)
        if problem is not None:
            self.connection.streamProtocolError(self, problem)
            self.connection.openStreamWindow(self.streamID, flowLength)
            return
        if self._paused or self._inbound or self.state is not _S_STARTED:
            self._inbound.append((data, flowLength))
        else:
            self.lastBodyProgress = self.connection.now()
            self._handOver(data, flowLength)

    def trailersReceived(self, trailers: Headers) -> None:
        self._requestTrailers = trailers

    def endReceived(self) -> None:
        """The client's END_STREAM arrived."""
        problem = content_length_mismatch(self._declaredLength(), self._received, True)
        if problem is not None:
            self.connection.streamProtocolError(self, problem)
            return
        self.request = _REQ_ENDED
        self._maybeDeliverEnd()

    @property
    def requestDelivered(self) -> bool:
        """The handler has been given the whole request, end included."""
        return self.request is _REQ_DELIVERED

    def undeliveredFlowLength(self) -> int:
        """Flow-controlled bytes received but never credited back (for cleanup)."""
        return sum(flowLength for _, flowLength in self._inbound)

    def _declaredLength(self) -> int | None:
        return None if self.head is None else self.head.content_length

    def _deliver(self) -> None:
        """Hand buffered request DATA on, then the end of the request, if due."""
        while self._inbound and not self._paused and self.alive:
            data, flowLength = self._inbound.popleft()
            self._handOver(data, flowLength)
        self._maybeDeliverEnd()

    def _bodyWaitStarted(self) -> None:
        self.lastBodyProgress = self.connection.now()
        self.connection.bodyWaitStarted(self)

    def _handOver(self, data: bytes, flowLength: int) -> None:
        if data and self.handler is not None:
            self.connection.callHandler(self, self.handler.requestDataReceived, data)
        self.connection.openStreamWindow(self.streamID, flowLength)

    def _maybeDeliverEnd(self) -> None:
        if (
            self.request is not _REQ_ENDED
            or self._inbound
            or self._paused
            or self.state is not _S_STARTED
        ):
            return
        self.request = _REQ_DELIVERED
        if self.handler is not None:
            self.connection.callHandler(self, self.handler.requestEnded, self._requestTrailers)
        self.connection.requestDelivered(self)

    # -- the response queue: filled through the connection's write methods ----

    def checkFinalHead(self, status: int) -> None:
        """Refuse a second final head, or a 1xx given as the final one."""
        if self.response is not _RESP_AWAITING_HEAD:
            raise RuntimeError(f"stream {self.streamID}: response head already written")
        if status < 200:
            raise ValueError(f"stream {self.streamID}: use writeInformational for status {status}")

    def checkInformational(self, status: int) -> None:
        """Refuse a 1xx after the final head, or a status that is not a 1xx (or is 101)."""
        if self.response is not _RESP_AWAITING_HEAD:
            raise RuntimeError(f"stream {self.streamID}: informational head after the final one")
        if not 100 <= status < 200 or status == 101:
            raise ValueError(f"stream {self.streamID}: {status} is not an informational status")

    def checkFinishable(self) -> None:
        """Refuse to end a response twice, or before its head."""
        if self.response in _FINISHED:
            raise RuntimeError(f"stream {self.streamID}: response already finished")
        if self.response is _RESP_AWAITING_HEAD:
            raise RuntimeError(f"stream {self.streamID}: response finished before its head")

    @property
    def hasFinalHead(self) -> bool:
        """The final response head is queued (or sent)."""
        return self.response is not _RESP_AWAITING_HEAD

    @property
    def responseSent(self) -> bool:
        """END_STREAM went out: the response is all on the wire."""
        return self.response is _RESP_ENDED

    def queueInformational(self, fields: list[Field]) -> None:
        self._heads.append((fields, False))
        self.sendableWithoutWindow = True

    def queueHeaders(self, fields: list[Field], endStream: bool) -> None:
        """Queue the final head (checked by L{checkFinalHead})."""
        self._heads.append((fields, endStream))
        self.sendableWithoutWindow = True
        self.response = _RESP_FINISHING if endStream else _RESP_HEAD_QUEUED

    def queueData(self, data: bytes) -> None:
        """Queue body bytes, pausing the producer above the high-water mark."""
        if self.response in _FINISHED:
            raise RuntimeError(f"stream {self.streamID}: write after the response was finished")
        if self.response is _RESP_AWAITING_HEAD:
            raise RuntimeError(f"stream {self.streamID}: write before the response head")
        if not data:
            return
        self.queue.append(data)
        self.queued += len(data)
        if self.queued > STREAM_HIGH_WATER and self.producer is _PROD_STREAMING:
            self._pauseProducer()

    def queueTrailers(self, fields: list[Field]) -> None:
        """End the response with trailers, after the queued body (checked by L{checkFinishable})."""
        self.response = _RESP_FINISHING
        self._end = fields
        self.sendableWithoutWindow = bool(self._heads) or not self.queued

    def queueEnd(self) -> None:
        """End the response after the queued body (checked by L{checkFinishable}):
        on the head itself when it is still queued with no body after it."""
        self.response = _RESP_FINISHING
        if self._heads and not self.queued:
            fields, _ = self._heads.pop()
            self._heads.append((fields, True))
        else:
            self._end = END_AFTER_DATA
            self.sendableWithoutWindow = bool(self._heads) or not self.queued

    # -- the response queue: taken by the send loop ----------------------------

    def emit(self, machine: "ServerConnection") -> int:
        """Put what this stream can send now on the connection's codec C{machine}:
        its heads, then one DATA frame of at most what the windows and the frame
        size allow, then its end once the body is all out. Returns the body bytes
        framed; the response is L{ResponseState.ENDED} if END_STREAM went."""
        streamID = self.streamID
        ended = False
        heads = self._heads
        if heads:
            self._heads = deque()
            for fields, endStream in heads:
                machine.send_headers(streamID, fields, end_stream=endStream)
                ended = endStream
        size = 0
        if self.queued:
            size = min(machine.local_flow_control_window(streamID), machine.max_outbound_frame_size, self.queued)
            if size > 0:
                queue = self.queue
                if len(queue[0]) == size:
                    chunk = queue.popleft()
                    self.queued -= size
                else:
                    chunk = self._takeData(size)
                ended = not self.queued and self._end is END_AFTER_DATA
                if ended:
                    self._end = None
                machine.send_data(streamID, chunk, end_stream=ended)
            else:
                size = 0
        end = self._end
        if end is not None and not ended and not self.queued:
            self._end = None
            if end is END_AFTER_DATA:
                machine.end_stream(streamID)
            else:
                machine.send_headers(streamID, end, end_stream=True)
            ended = True
        if ended:
            self.response = _RESP_ENDED
        self.sendableWithoutWindow = self._end is not None and not self.queued
        return size

    def _takeData(self, size: int) -> bytes | memoryview:
        """Remove and return the next C{size} queued bytes (C{size <= queued}),
        slicing a large chunk with a memoryview instead of copying what remains."""
        queue = self.queue
        first = queue[0]
        if len(first) > size:
            view = first if isinstance(first, memoryview) else memoryview(first)
            queue[0] = view[size:]
            chunk: bytes | memoryview = view[:size]
        elif len(first) == size:
            chunk = queue.popleft()
        else:
            parts = []
            need = size
            while need:
                part = queue[0]
                if len(part) <= need:
                    parts.append(queue.popleft())
                    need -= len(part)
                else:
                    view = memoryview(part)
                    parts.append(view[:need])
                    queue[0] = view[need:]
                    need = 0
            chunk = b"".join(parts)
        self.queued -= size
        return chunk

    def afterSend(self) -> None:
        """The queue shrank: let the producer go on if it is low enough."""
        if self._producer is None or self.queued >= STREAM_LOW_WATER:
            return
        if self.producer is _PROD_PULL:
            self._producer.resumeProducing()
        elif self.producer is _PROD_PAUSED:
            self.producer = _PROD_STREAMING
            self._producer.resumeProducing()

    def discard(self) -> None:
        """The stream is gone: forget queues, producer and handler. Dropping the
        handler breaks the stream <-> handler cycle, so reference counting frees
        both (and what the handler holds) at once instead of the cyclic collector."""
        self.state = _S_CLOSED
        self.alive = False
        self.handler = None
        self.queue.clear()
        self.queued = 0
        self._heads.clear()
        self.sendableWithoutWindow = False
        self._inbound.clear()
        self._producer = None
        self.producer = _PROD_NONE

    def _pauseProducer(self) -> None:
        self.producer = _PROD_PAUSED
        self._producer.pauseProducing()


def _codeName(code: ErrorCodes | int) -> str:
    return code.name if isinstance(code, ErrorCodes) else f"error code {code}"
