"""H2Connection: one client's HTTP/2 connection, on h2's state machine and a priority tree.

Its public names and duties are those shared/spec/H2Connection.txt specifies (the
shape of Twisted web's own HTTP/2 connection class, which nothing here imports),
without that class's defects. The class is built
from four modules, each owning one part:

- this one: the protocol (reads, h2 events, accepting and removing streams, what
  streams and handlers call);
- L{h2proxy.frontend.http2.sendloop}: the priority-ordered send loop, output and
  the transport's backpressure;
- L{h2proxy.frontend.http2.defences}: budgets, timeouts and the watchdog against
  hostile clients;
- L{h2proxy.frontend.http2.lifecycle}: the L{ConnectionState}, the L{Timers}, and
  the GOAWAY and close sequencing.

B{Errors.} Connection errors (h2's ProtocolError) send GOAWAY with the error code
and the last accepted stream id, then close after the GOAWAY is flushed. Stream
errors send RST_STREAM and the connection goes on. Malformed requests are stream
errors, unusable ones get a polite 400/431 (see L{h2proxy.frontend.http2.validation}).
No exception leaves C{dataReceived}: a handler that raises has its stream reset with
INTERNAL_ERROR (and logged); anything else unexpected becomes GOAWAY INTERNAL_ERROR.

B{Shutdown.} L{gracefulShutdown} is h2o's two-step GOAWAY; a client GOAWAY lets the
streams already opened finish; the idle timeout sends GOAWAY NO_ERROR and closes,
and whenever we close, C{abortTimeout} later the transport is aborted if it is
still there.

B{Reads.} A request reaches its handler only at the end of the read that completed
its headers, and only if the stream is still open then: a HEADERS and RST_STREAM
pair in one read (rapid reset) never starts backend work. One read is handled a turn
at a time (at most MAX_FRAMES_PER_TURN frames, a few milliseconds): past that,
reading stops and the rest waits for the next reactor turn, so a flooding
connection cannot starve the others. The idle timeout runs only while no stream is
open (a stream waiting on its backend is governed by the backend timeouts), and is
reset by reads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from twisted.internet.interfaces import IAddress, IDelayedCall, IProtocol, IPushProducer, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from zope.interface import implementer

from h2proxy.config.model import Http2Config
from h2proxy.frontend.clientcert import ClientCertificate, client_certificate
from h2proxy.frontend.http2.budget import Budget
from h2proxy.frontend.http2.codec import (
    ConnectionTerminated,
    DataReceived,
    ErrorCodes,
    PingAckReceived,
    PingReceived,
    PriorityError,
    PriorityUpdated,
    ProtocolError,
    RemoteSettingsChanged,
    RequestReceived,
    SettingCodes,
    SettingsAcknowledged,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    UnknownFrameReceived,
    WindowUpdated,
)
from h2proxy.frontend.http2.codec.machine import ServerConnection
from h2proxy.frontend.http2.codec.prioritytree import PriorityTree
from h2proxy.frontend.http2.defences import DISCARD, TINY_WINDOW_UPDATE, Defences
from h2proxy.frontend.http2.lifecycle import CLOSED, CLOSING, ConnectionState, Lifecycle, Timer, Timers
from h2proxy.frontend.http2.sendloop import SendLoop
from h2proxy.frontend.http2.stream import H2Stream, ResponseCompletedEarly, StreamResetError
from h2proxy.frontend.http2.validation import (
    InvalidResponseField,
    MalformedRequest,
    UnusableRequest,
    parse_request,
    refused_head,
    request_trailers,
    response_fields,
    trailer_fields,
)
from h2proxy.frontend.nodelay import disableNagle
from h2proxy.message import Headers, RequestHead, ResponseHead

if TYPE_CHECKING:
    from h2proxy.frontend.handler import HandlerFactory

log = Logger()

#: The hard limit on a decoded header list is this many times the advertised
#: SETTINGS_MAX_HEADER_LIST_SIZE: between the two the client gets a polite 431, above
#: it the header block is treated as an attack (ENHANCE_YOUR_CALM).
HEADER_LIST_HARD_LIMIT_FACTOR = 4

#: RFC 9113 6.9.2: every window starts at 65,535 octets.
DEFAULT_WINDOW = 65535

_REASONS = {400: "Bad Request", 408: "Request Timeout", 431: "Request Header Fields Too Large"}

#: The one timer every request looks at, as a module global (an enum member looked
#: up on its class costs about 0.1 µs on Python 3.11).
_REQUEST_HEADER = Timer.REQUEST_HEADER


class ConnectionTracker:
    """What L{H2Connection} tells its factory about its life (see L{H2Factory})."""

    def connectionOpened(self, connection: "H2Connection") -> None:
        """The connection is up and has sent its preface."""

    def connectionClosed(self, connection: "H2Connection") -> None:
        """The connection is gone."""

    def rejected(self, reason: str) -> None:
        """A stream was refused, or the connection closed, by a limit or budget named
        C{reason} (counted for the metrics; a rare event, never per frame)."""


@implementer(IProtocol, IPushProducer)
class H2Connection(SendLoop, Defences, Lifecycle, Protocol, TimeoutMixin):
    """A server-side HTTP/2 connection.

    @ivar conn: the h2 state machine (L{ServerConnection}).
    @ivar streams: stream id -> L{H2Stream}, for every stream not yet complete.
    @ivar priority: the C{priority.PriorityTree}; holds exactly the live streams,
        unblocked when they can send now.
    @ivar abortTimeout: seconds between closing the transport ourselves and
        aborting it if it has not gone away; C{None} waits forever.
    @ivar timeOut: the running idle timeout (L{TimeoutMixin}): C{idleTimeout} while
        no stream is open, reset by received frames; C{None} while streams are open.
    @ivar idleTimeout: the configured idle timeout.
    @ivar requestHeaderTimeout: seconds from C{connectionMade} to the first complete
        request headers, else GOAWAY and close; C{None}: no deadline. The protocol
        negotiation may lower it before the connection is made (time already spent).
    @ivar requestBodyTimeout: longest silence of a client whose request body a
        handler is waiting for; C{None}: none.
    @ivar sendTimeout: longest time the transport may stay paused, or a stream with
        queued response bytes may wait for window; C{None}: none.
    @ivar secure: whether the transport is TLS.
    @ivar localContinue: answer ``expect: 100-continue`` with a 100 at once and
        strip it; by default it goes to the handler, whose relayed 100
        (C{writeInformational}) is the client's cue to send the body.
    @ivar tracker: told when the connection opens and closes (the factory).
    """

    def __init__(
        self,
        *,
        reactor: IReactorTime,
        handlerFactory: "HandlerFactory",
        settings: Http2Config,
        idleTimeout: float | None,
        abortTimeout: float | None,
        secure: bool,
        requestHeaderTimeout: float | None = None,
        requestBodyTimeout: float | None = None,
        sendTimeout: float | None = None,
        localContinue: bool = False,
    ) -> None:
        self._reactor = reactor
        self._handlerFactory = handlerFactory
        self._settings = settings
        self.timeOut = idleTimeout
        self.idleTimeout = idleTimeout
        self.requestHeaderTimeout = requestHeaderTimeout
        self.requestBodyTimeout = requestBodyTimeout
        self.sendTimeout = sendTimeout
        self.abortTimeout = abortTimeout
        self.secure = secure
        self.localContinue = localContinue
        self.tracker: ConnectionTracker | None = None
        self.conn = ServerConnection(
            local_settings={
                SettingCodes.ENABLE_PUSH: 0,
                SettingCodes.MAX_CONCURRENT_STREAMS: settings.max_concurrent_streams,
                SettingCodes.INITIAL_WINDOW_SIZE: settings.initial_window_size,
                SettingCodes.MAX_FRAME_SIZE: settings.max_frame_size,
                SettingCodes.MAX_HEADER_LIST_SIZE: settings.max_header_list_size,
                SettingCodes.ENABLE_CONNECT_PROTOCOL: int(settings.enable_connect_protocol),
            },
            header_list_hard_limit=settings.max_header_list_size * HEADER_LIST_HARD_LIMIT_FACTOR,
            max_continuation_frames=settings.max_continuation_frames,
        )
        self.streams: dict[int, H2Stream] = {}
        self.priority = PriorityTree(maximum_streams=2 * settings.max_concurrent_streams + 1)
        self._ready: set[int] = set()
        self._windowBlocked: dict[int, float] = {}
        self._transportPaused = False
        self._controlBuffer: list[bytes] = []
        self._controlBuffered = 0
        self._inRead = False
        self._inSend = False
        self._timers = Timers(reactor)
        self._state = ConnectionState.OPEN
        self._finalGoAwayID: int | None = None
        self._peerGoingAway = False
        self._acceptedStreams = 0
        self._starting: list[H2Stream] = []
        self._resets = Budget(settings.reset_budget, settings.budget_window, reactor)
        self._glitches = Budget(settings.glitch_budget, settings.budget_window, reactor)
        self._settingsFrames = 0
        self._peerAddress: IAddress | None = None
        self._hostAddress: IAddress | None = None
        self.clientCertificate: ClientCertificate | None = None
        self._readingPaused = False

    # -- IProtocol --------------------------------------------------------------

    def callLater(self, period: float, func: Callable[[], None]) -> IDelayedCall:  # type: ignore[override]
        """L{TimeoutMixin}'s timer, on the injected reactor."""
        return self._reactor.callLater(period, func)

    def connectionMade(self) -> None:
        """Send our SETTINGS, raise the connection window, start the idle timer."""
        self._hostAddress = self.transport.getHost()
        self.clientCertificate = client_certificate(self.transport)
        disableNagle(self.transport)
        self.transport.registerProducer(self, True)
        self.conn.initiate_connection()
        extra = self._settings.connection_window_size - DEFAULT_WINDOW
        if extra > 0:
            self.conn.increment_flow_control_window(extra)
        self._flushOutput()
        self.setTimeout(self.idleTimeout)
        if self.requestHeaderTimeout is not None:
            self._timers.arm(Timer.REQUEST_HEADER, self.requestHeaderTimeout, self._requestHeaderTimedOut)
        if self.tracker is not None:
            self.tracker.connectionOpened(self)

    def dataReceived(self, data: bytes) -> None:
        """Feed h2, dispatch its events, start the handlers of the requests that are
        still open, then send what all that produced in one write."""
        if self._state >= CLOSING:
            return
        self.resetTimeout()
        self._receive(data)

    def _receive(self, data: bytes) -> None:
        """One turn of input: h2 handles at most a turn's worth of frames
        (L{MAX_FRAMES_PER_TURN}); if it left some, reading stops and the rest is fed
        at the next reactor turn, so that other connections get their turn first.
        Handlers start once the input is all handled."""
        self._inRead = True
        try:
            try:
                events = self.conn.receive_data(data)
            except ProtocolError as e:
                self._connectionError(e)
                return
            glitches = self.conn.takeGlitches()
            if glitches:
                self._glitch(self.conn.lastGlitch, glitches)
            for event in events:
                if self._state >= CLOSING:
                    return
                self._dispatch(event)
            if self.conn.inputPending:
                self._deferInput()
            else:
                self._startHandlers()
        except Exception:
            self._internalError(Failure())
            return
        finally:
            self._inRead = False
        self._sendPass()  # what the read made ready leaves with its control frames

    def _deferInput(self) -> None:
        """Stop reading; go on with the buffered frames at the next turn."""
        if not self._timers.armed(Timer.INPUT):
            self._timers.arm(Timer.INPUT, 0, self._resumeInput)
        if not self._readingPaused:
            self._readingPaused = True
            self.transport.pauseProducing()

    def _resumeInput(self) -> None:
        if self._state >= CLOSING:
            return
        self._receive(b"")
        if self._readingPaused and not self.conn.inputPending and self._state < CLOSING:
            self._readingPaused = False
            self.transport.resumeProducing()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Abort every open stream with C{reason}, cancel every timer, clear all state."""
        if self._state is CLOSED:
            return
        self._enter(CLOSED)
        self._timers.cancelAll()
        self.setTimeout(None)
        self._abortAllStreams(reason)
        self._starting.clear()
        self._discardControl()
        if self.tracker is not None:
            self.tracker.connectionClosed(self)
        self._releaseTransport()

    def _releaseTransport(self) -> None:
        """Let go of the transport once the connection is lost (its addresses kept
        for late callers). The transport holds this connection as its producer and
        this connection held the transport: a reference cycle that only the cyclic
        collector could free, so closed connections, with all their stream and
        HPACK state, waited for its rare full passes (about 1.5 MiB more per 40,000
        requests on 32 connections). A lost TCP transport still knows the peer's
        address but not the local one (it asks the socket, gone by now), so that
        one was read in C{connectionMade}."""
        transport = self.transport
        if transport is None:
            return
        if self._peerAddress is None:
            self._peerAddress = transport.getPeer()
        self.transport = None

    # -- what streams call -------------------------------------------------------

    def writeHeaders(self, streamID: int, head: ResponseHead, endStream: bool = False) -> None:
        """Queue the final response head of a stream (not Twisted's signature: the
        head is a L{ResponseHead}); C{endStream} when there is no body."""
        stream = self._liveStream(streamID)
        if stream is None:
            return
        stream.checkFinalHead(head.status)
        try:
            fields = response_fields(head)
        except InvalidResponseField as e:
            self._invalidResponse(stream, e)
            return
        stream.queueHeaders(fields, endStream)
        self._streamChanged(stream)

    def writeInformational(self, streamID: int, head: ResponseHead) -> None:
        """Queue a 1xx head (not 101) before the final one."""
        stream = self._liveStream(streamID)
        if stream is None:
            return
        stream.checkInformational(head.status)
        try:
            fields = response_fields(head)
        except InvalidResponseField as e:
            self._invalidResponse(stream, e)
            return
        stream.queueInformational(fields)
        self._streamChanged(stream)

    def writeDataToStream(self, streamID: int, data: bytes) -> None:
        """Queue response body bytes on a stream; the send loop frames them."""
        stream = self._liveStream(streamID)
        if stream is None:
            return
        stream.queueData(data)
        if data:
            self._streamChanged(stream)

    def writeTrailers(self, streamID: int, headers: Headers) -> None:
        """End the response with trailers, sent after the queued body."""
        stream = self._liveStream(streamID)
        if stream is None:
            return
        stream.checkFinishable()
        try:
            fields = trailer_fields(headers)
        except InvalidResponseField as e:
            self._invalidResponse(stream, e)
            return
        if not fields:
            self.endRequest(streamID)
            return
        stream.queueTrailers(fields)
        self._streamChanged(stream)

    def endRequest(self, streamID: int) -> None:
        """End the response once its queued body is sent (END_STREAM)."""
        stream = self._liveStream(streamID)
        if stream is None:
            return
        stream.checkFinishable()
        stream.queueEnd()
        self._streamChanged(stream)

    def abortRequest(self, streamID: int, errorCode: ErrorCodes | int = ErrorCodes.INTERNAL_ERROR) -> None:
        """Reset a stream now: RST_STREAM, queued data dropped, handler told."""
        stream = self._liveStream(streamID)
        if stream is None:
            return
        self.conn.reset_stream(streamID, errorCode)
        self._abortStream(stream, Failure(StreamResetError(errorCode, byPeer=False)))
        self._outputReady()

    def remainingOutboundWindow(self, streamID: int) -> int:
        """What the stream may still send under flow control, minus what it has
        queued (negative when more is queued than the windows allow)."""
        stream = self.streams[streamID]
        return self.conn.local_flow_control_window(streamID) - stream.queued

    def openStreamWindow(self, streamID: int, increment: int) -> None:
        """Give back C{increment} flow-controlled bytes (padding included) of a
        stream, once they have been handed on; h2 batches the WINDOW_UPDATEs."""
        if self._state >= CLOSING or increment <= 0:
            return
        self.conn.acknowledge_received_data(increment, streamID)
        self._outputReady()

    def getPeer(self) -> IAddress:
        """The client's address, asked of the transport once: every request of the
        connection wants it, and a TCP transport builds a new address object per
        call. By the first request any PROXY protocol header has been read, so the
        address is final."""
        peer = self._peerAddress
        if peer is None:
            peer = self._peerAddress = self.transport.getPeer()
        return peer

    def getHost(self) -> IAddress:
        """The local address, read when the connection was made."""
        return self._hostAddress  # type: ignore[return-value]

    # -- used by H2Stream --------------------------------------------------------

    def callHandler(self, stream: H2Stream, method: Callable[..., None], *args: Any) -> None:
        """Call a handler method; if it raises, log it and reset the stream."""
        try:
            method(*args)
        except Exception:
            log.failure(
                "handler {method} raised for stream {stream} from {peer}; resetting the stream",
                method=getattr(method, "__qualname__", method),
                stream=stream.streamID,
                peer=self._peer(),
            )
            self.abortRequest(stream.streamID, ErrorCodes.INTERNAL_ERROR)

    def streamProtocolError(self, stream: H2Stream, message: str) -> None:
        """A stream error found by the stream itself (content-length, trailers)."""
        log.info("malformed request on stream {stream} from {peer}: {message}", stream=stream.streamID, peer=self._peer(), message=message)
        self.conn.reset_stream(stream.streamID, ErrorCodes.PROTOCOL_ERROR)
        self._abortStream(stream, Failure(StreamResetError(ErrorCodes.PROTOCOL_ERROR, byPeer=False, message=message)))
        self._outputReady()
        self._glitch(f"malformed request body: {message}")

    def bodyWaitStarted(self, stream: H2Stream) -> None:
        """The stream's handler waits for request body bytes again (started or
        resumed): make sure the watchdog looks at it C{requestBodyTimeout} later."""
        if self.requestBodyTimeout is not None and self._state < CLOSING:
            self._watch(stream.lastBodyProgress + self.requestBodyTimeout)

    def now(self) -> float:
        """The injected clock's time (streams stamp their progress with it)."""
        return self._reactor.seconds()

    def requestDelivered(self, stream: H2Stream) -> None:
        """The handler has the whole request; complete the stream if the response is sent."""
        if stream.alive and stream.responseSent:
            self._removeStream(stream)

    # -- h2 events ---------------------------------------------------------------

    def _dispatch(self, event: Any) -> None:
        name = _EVENT_HANDLERS.get(type(event))
        if name is None:
            raise AssertionError(f"Unexpected event: {event!r}")
        getattr(self, name)(event)

    def _ignoreEvent(self, event: Any) -> None:
        """Events that need nothing from us (h2 already answered PINGs and SETTINGS)."""

    def _requestReceived(self, event: RequestReceived) -> None:
        """Validate a request and accept its stream; its handler starts at the end
        of this read (L{_startHandlers}), if the stream is still open then."""
        streamID = event.stream_id
        if self._timers.armed(_REQUEST_HEADER):
            self._timers.cancel(_REQUEST_HEADER)
        if self._refusing(streamID):
            self.conn.reset_stream(streamID, ErrorCodes.REFUSED_STREAM)
            self._rejected("refused_stream")
            return
        try:
            parsed = parse_request(
                event.headers,
                end_stream=event.stream_ended is not None,
                max_header_list_size=self._settings.max_header_list_size,
                extended_connect=self._settings.enable_connect_protocol,
                localContinue=self.localContinue,
            )
        except MalformedRequest as e:
            log.info("malformed request on stream {stream} from {peer}: {message}", stream=streamID, peer=self._peer(), message=str(e))
            self.conn.reset_stream(streamID, ErrorCodes.PROTOCOL_ERROR)
            self._rejected("malformed_request")
            self._glitch(f"malformed request: {e}")
            return
        except UnusableRequest as e:
            self._answerDirectly(streamID, e.status, str(e), event.headers)
            self._rejected(f"refused_{e.status}")
            self._glitch(f"request refused with {e.status}: {e}")
            return
        stream = self._accept(streamID, parsed.head)
        if parsed.localContinue:
            stream.queueInformational([(b":status", b"100")])
            self._streamChanged(stream)
        self._starting.append(stream)

    def _startHandlers(self) -> None:
        """End of a read: hand the requests it completed to their handlers, except
        those the client has reset meanwhile (rapid reset: no backend work at all)."""
        if not self._starting:
            return
        starting, self._starting = self._starting, []
        for stream in starting:
            if self._state >= CLOSING:
                return
            if stream.alive:
                self._startHandler(stream)

    def _startHandler(self, stream: H2Stream) -> None:
        try:
            stream.attach(self._handlerFactory(stream))
        except Exception:
            log.failure("handler factory failed for stream {stream} from {peer}", stream=stream.streamID, peer=self._peer())
            self.abortRequest(stream.streamID, ErrorCodes.INTERNAL_ERROR)
            return
        self.callHandler(stream, stream.handler.requestReceived, stream.head)
        if stream.alive:
            stream.start()

    def _requestDataReceived(self, event: DataReceived) -> None:
        """Body for a stream: consecutive DATA frames of an open stream in one read
        already arrive as one event (L{h2proxy.frontend.http2.codec.machine}), with one credit."""
        if not event.data and event.stream_ended is None:
            self._glitch("empty DATA frame")
            if self._state >= CLOSING:
                return
        stream = self.streams.get(event.stream_id)
        if stream is None:
            # Reset earlier in this read: the bytes still count on the connection window.
            self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            return
        stream.dataReceived(event.data, event.flow_controlled_length)

    def _trailersReceived(self, event: TrailersReceived) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is None:
            return
        try:
            trailers = request_trailers(event.headers)
        except MalformedRequest as e:
            self.streamProtocolError(stream, str(e))
            return
        stream.trailersReceived(trailers)

    def _streamEnded(self, event: StreamEnded) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            stream.endReceived()

    def _streamReset(self, event: StreamReset) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is None:
            return
        if event.remote_reset:
            log.debug("client reset stream {stream} with {code}", stream=event.stream_id, code=event.error_code)
        else:
            log.info("stream error on stream {stream} from {peer}: {code}", stream=event.stream_id, peer=self._peer(), code=event.error_code)
        self._abortStream(stream, Failure(StreamResetError(event.error_code, byPeer=event.remote_reset)))
        if event.remote_reset:
            self._prematureReset()

    def _windowUpdated(self, event: WindowUpdated) -> None:
        streamID = event.stream_id
        if streamID:
            stream = self.streams.get(streamID)
            if stream is None:
                return
            if event.delta < TINY_WINDOW_UPDATE and streamID in self._windowBlocked:
                self._glitch("tiny WINDOW_UPDATE")
                if self._state >= CLOSING:
                    return
            self._streamChanged(stream)
        else:
            if event.delta < TINY_WINDOW_UPDATE and self._windowBlocked:
                self._glitch("tiny WINDOW_UPDATE")
                if self._state >= CLOSING:
                    return
            self._windowsChanged(self._windowBlocked)

    def _remoteSettingsChanged(self, event: RemoteSettingsChanged) -> None:
        self._settingsFrames += 1
        if self._settingsFrames > 1:
            self._glitch("SETTINGS frame after the first")
            if self._state >= CLOSING:
                return
        if SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
            self._windowsChanged(self.streams)

    def _unknownFrame(self, event: UnknownFrameReceived) -> None:
        """Extension frames are ignored (RFC 9113 5.5), but a flood of them is not free."""
        self._glitch("frame of an unknown type")

    def _priorityUpdated(self, event: PriorityUpdated) -> None:
        """RFC 7540 priorities, for live streams only: a dependency on a stream we
        do not hold (idle or closed) becomes a dependency on the root, so the tree
        never holds anything but live streams."""
        if event.stream_id not in self.streams:
            return
        dependsOn = event.depends_on if event.depends_on in self.streams else 0
        try:
            self.priority.reprioritize(event.stream_id, dependsOn or None, event.weight, event.exclusive)
        except PriorityError as e:
            log.debug("priority update ignored for stream {stream}: {error}", stream=event.stream_id, error=str(e))

    def _peerGoAway(self, event: ConnectionTerminated) -> None:
        """The client will open no more streams; those it opened still complete."""
        self._peerGoingAway = True
        if event.error_code != ErrorCodes.NO_ERROR:
            log.info("client {peer} sent GOAWAY {code}: {data!r}", peer=self._peer(), code=event.error_code, data=event.additional_data)
        self._maybeClose()

    # -- accepting, answering and removing streams --------------------------------

    def _accept(self, streamID: int, head: Any) -> H2Stream:
        stream = H2Stream(streamID=streamID, head=head, connection=self)
        self.streams[streamID] = stream
        if len(self.streams) == 1:
            self.setTimeout(None)
        self.priority.insert_stream(streamID)
        self.priority.block(streamID)
        self.conn.last_accepted_stream_id = streamID
        self._acceptedStreams += 1
        limit = self._settings.max_streams_per_connection
        if limit and self._acceptedStreams >= limit and self._finalGoAwayID is None:
            self._sendFinalGoAway()
        return stream

    def _answerDirectly(self, streamID: int, status: int, message: str, fields: Any) -> None:
        """A polite error response for a request no handler should see; a handler
        only records it (L{StreamHandler.requestRefused}: the access log line)."""
        log.info("refusing request on stream {stream} from {peer} with {status}: {message}", stream=streamID, peer=self._peer(), status=status, message=message)
        stream = self._accept(streamID, None)
        stream.attach(DISCARD)
        stream.start()
        self._reportRefused(stream, refused_head(fields), status)
        self._writeErrorResponse(streamID, status, message)

    def _reportRefused(self, stream: H2Stream, head: RequestHead, status: int) -> None:
        try:
            self._handlerFactory(stream).requestRefused(head, status)
        except Exception:
            log.failure("recording the refused request on stream {stream} from {peer} failed", stream=stream.streamID, peer=self._peer())

    def _writeErrorResponse(self, streamID: int, status: int, message: str) -> None:
        """A short text response written by the front end itself."""
        body = f"{status} {_REASONS.get(status, 'Error')}: {message}\n".encode()
        head = ResponseHead(
            status=status,
            headers=((b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"%d" % len(body))),
        )
        self.writeHeaders(streamID, head)
        self.writeDataToStream(streamID, body)
        self.endRequest(streamID)

    def _responseComplete(self, stream: H2Stream) -> None:
        """END_STREAM went out. If the request is not all delivered, it never will be:
        RST_STREAM NO_ERROR asks the client to stop sending (RFC 9113 8.1)."""
        if stream.requestDelivered:
            self._removeStream(stream)
            return
        machine = self.conn.streams.get(stream.streamID)
        if machine is not None and machine.open:
            self.conn.reset_stream(stream.streamID, ErrorCodes.NO_ERROR)
        self._abortStream(stream, Failure(ResponseCompletedEarly(f"stream {stream.streamID}: response complete before the request body")))

    def _abortStream(self, stream: H2Stream, reason: Failure) -> None:
        """Remove a stream that did not complete normally and tell its handler once."""
        handler = stream.handler
        self._removeStream(stream)
        if handler is None:
            return
        try:
            handler.streamAborted(reason)
        except Exception:
            log.failure("streamAborted raised for stream {stream} from {peer}", stream=stream.streamID, peer=self._peer())

    def _removeStream(self, stream: H2Stream) -> None:
        """Forget a stream everywhere; undelivered request bytes are credited back
        to the connection window (the stream's own window no longer matters)."""
        streamID = stream.streamID
        undelivered = stream.undeliveredFlowLength()
        stream.discard()
        del self.streams[streamID]
        self.priority.remove_stream(streamID)
        self._ready.discard(streamID)
        self._windowBlocked.pop(streamID, None)
        if undelivered and self._state < CLOSING:
            self.conn.acknowledge_received_data(undelivered, streamID)
        if not self.streams and self._state < CLOSING:
            self.setTimeout(self.idleTimeout)
        self._maybeClose()

    def _abortAllStreams(self, reason: Failure) -> None:
        for stream in list(self.streams.values()):
            self._abortStream(stream, reason)

    def _liveStream(self, streamID: int) -> H2Stream | None:
        if self._state >= CLOSING:
            return None
        return self.streams.get(streamID)

    def _invalidResponse(self, stream: H2Stream, error: InvalidResponseField) -> None:
        """A field from upstream cannot go on the wire: log it and reset the stream."""
        log.error("cannot send response on stream {stream} from {peer}: {error}; resetting it", stream=stream.streamID, peer=self._peer(), error=str(error))
        self.abortRequest(stream.streamID, ErrorCodes.INTERNAL_ERROR)

    def _peer(self) -> str:
        transport = self.transport
        if transport is None and self._peerAddress is None:
            return "<not connected>"
        peer = self.getPeer()
        host = getattr(peer, "host", None)
        return f"{host}:{peer.port}" if host is not None else str(peer)


#: h2 event type -> the name of the H2Connection method that handles it. Names, not
#: bound methods: a table of bound methods in every connection took about 1.4 KiB of
#: each idle connection's memory.
_EVENT_HANDLERS: dict[type, str] = {
    RequestReceived: "_requestReceived",
    DataReceived: "_requestDataReceived",
    TrailersReceived: "_trailersReceived",
    StreamEnded: "_streamEnded",
    StreamReset: "_streamReset",
    WindowUpdated: "_windowUpdated",
    PriorityUpdated: "_priorityUpdated",
    RemoteSettingsChanged: "_remoteSettingsChanged",
    ConnectionTerminated: "_peerGoAway",
    UnknownFrameReceived: "_unknownFrame",
    SettingsAcknowledged: "_ignoreEvent",
    PingReceived: "_ignoreEvent",
    PingAckReceived: "_ignoreEvent",
}
