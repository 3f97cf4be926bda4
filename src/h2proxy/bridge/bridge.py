"""StreamBridge: one client stream <-> one upstream exchange.

The only place where the front ends (HTTP/2 and HTTP/1.1) and the HTTP/1.1 upstream
side meet. A L{StreamBridge} is the front end's L{StreamHandler} for one stream and
the upstream side's L{ResponseReceiver} for the matching exchange. It wires the two
producer/consumer pairs described in DESIGN.md:

  - request body: the stream (producer) is registered with the exchange
    (consumer), which pauses it while the backend socket is full or not yet
    connected; the stream returns HTTP/2 window credit only for bytes handed on.
    On a route with ``request_body: buffer``, a body of unknown length is read
    whole first (L{BodyBuffer}: memory, then a temporary file) without pausing the
    stream, and then sent with a Content-Length by a L{BufferedBodySender}.
  - response body: the exchange (producer) is registered with the stream
    (consumer), which pauses it while the client's window or socket is full.

Every request gets an id (L{RequestIds}, or a trusted proxy's X-Request-Id). Failures
before the response head answer with a short body, the id, and an RFC 9209
``Proxy-Status`` naming the reason (404 no route, 400 refused, 413 body over the
limit, 403 a client a route's networks refuse, 429 a client over a route's rate limit, 502/503/504 from the upstream side); after the head they reset the stream,
since HTTP/2 has no other way to say "this body is incomplete". Redirects (a route's,
or a listener's to HTTPS) are answered the same way, by the proxy itself: a status
and a Location, no body, no backend asked.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import tempfile
from collections.abc import Callable
from typing import IO, Protocol

from twisted.logger import Logger
from twisted.python.failure import Failure

from h2proxy.observability.accesslog import NO_OBSERVER, NullObserver, RequestRecord
from h2proxy.bridge import headers as translate
from h2proxy.bridge import websocket
from h2proxy.bridge.access import client_of
from h2proxy.bridge.body import BUFFER_IN_MEMORY, BodyBuffer, BodyTooLarge, BufferedBodySender
from h2proxy.bridge.headers import ForwardingPolicy, RequestFacts, UnforwardableRequest
from h2proxy.bridge.redirects import https_location
from h2proxy.bridge.routing import Route, Router
from h2proxy.bridge.websocket import TunnelState
from h2proxy.compression.encoders import EncoderBudget
from h2proxy.compression.stream import NegotiatingStream
from h2proxy.errors import UpstreamError
from h2proxy.frontend.clientcert import ClientCertificate
from h2proxy.frontend.handler import REQUEST_ERROR, ClientStream, ResetReason, StreamCut
from h2proxy.httpdate import DateField
from h2proxy.message import Headers, RequestHead, ResponseHead, UpstreamRequest
from h2proxy.observability.metrics import route_label
from h2proxy.static.reader import BlockingIO, InlineIO
from h2proxy.static.responder import Answers, StaticResponder
from h2proxy.upstream.interfaces import Exchange, ResponseReceiver

log = Logger()

#: The access log's reason for a stream whose client went away.
CLIENT_CLOSED_REASON = "client_closed"

#: The RFC 9209 error type of a request a route's allow or deny refuses (403): the
#: intermediary refused the request.
ACCESS_DENIED = "http_request_denied"
#: ... and of a request over its route's rate limit (429, with Retry-After).
RATE_LIMITED = "http_request_denied"

#: The protocol version Via names for requests from the HTTP/2 front end.
HTTP2 = b"2"
#: ... and from the HTTP/1.1 front end.
HTTP11 = b"1.1"

_STATUS_MESSAGES = {
    400: "bad request",
    403: "forbidden",
    404: "not found",
    413: "content too large",
    429: "too many requests",
    500: "internal error",
    502: "bad gateway",
    503: "service unavailable",
    504: "gateway timeout",
}


class BridgeState(enum.Enum):
    """A bridge's life: waiting for the response head, relaying the response, done
    (either side finished for good; nothing more is relayed)."""

    AWAITING_RESPONSE = "awaiting_response"
    RESPONDING = "responding"
    DONE = "done"


# Members as module globals: a lookup on the enum class costs about 0.1 µs on
# Python 3.11, and a bridge checks its state on every callback.
_AWAITING_RESPONSE, _RESPONDING, _DONE = BridgeState
_NO_TUNNEL, _HANDSHAKE, _TUNNEL_OPEN = TunnelState


class UpstreamPoolLike(Protocol):
    """What the bridge needs of an upstream pool (see h2proxy.upstream.pool)."""

    def request(self, req: UpstreamRequest, receiver: ResponseReceiver) -> Exchange: ...


class RequestIds:
    """Request ids of one worker: a random prefix per process and a counter, 16 hex
    digits in all. Unique enough to find one request in the logs of a fleet, and
    cheaper than reading the system's random source per request."""

    def __init__(self, prefix: bytes | None = None) -> None:
        self._prefix = prefix if prefix is not None else os.urandom(4).hex().encode("ascii")
        self._counter = 0

    def next(self) -> bytes:
        self._counter = (self._counter + 1) & 0xFFFFFFFF
        return self._prefix + b"%08x" % self._counter


class BridgeContext:
    """Everything the bridges of one worker share, built once per config.

    @ivar router: picks the route of each request.
    @ivar pools: upstream name -> pool.
    @ivar maxRequestBody: largest request body accepted (0 = no limit); over it, 413.
    @ivar forwarding: the policy of L{handlerFactory} (listeners get their own
        through L{handlersFor}).
    @ivar requestIds: where request ids come from.
    @ivar openFile: makes the temporary file a buffered request body spills to.
    @ivar bufferInMemory: bytes of a buffered request body kept in memory before it spills.
    @ivar observer: told about each request (access log, metrics; see
        L{h2proxy.observability.accesslog.RequestObserver}).
    @ivar staticIO: where static routes' blocking file calls run (the worker's
        thread pool; inline by default, for tests).
    @ivar encoders: how many responses the worker compresses at once.
    @ivar dates: the Date value the proxy's own responses carry, and forwarded ones
        that came without one.
    @ivar active: the live bridges (for drain bookkeeping, metrics and leak tests).
    """

    def __init__(
        self,
        *,
        router: Router,
        pools: dict[str, "UpstreamPoolLike"],
        maxRequestBody: int = 0,
        forwarding: ForwardingPolicy | None = None,
        requestIds: RequestIds | None = None,
        openFile: Callable[[], IO[bytes]] = tempfile.TemporaryFile,
        bufferInMemory: int = BUFFER_IN_MEMORY,
        observer: NullObserver = NO_OBSERVER,
        staticIO: BlockingIO | None = None,
        encoders: EncoderBudget | None = None,
        dates: DateField | None = None,
    ) -> None:
        self.router = router
        self.pools = pools
        self.maxRequestBody = maxRequestBody
        self.forwarding = forwarding or ForwardingPolicy()
        self.requestIds = requestIds or RequestIds()
        self.openFile = openFile
        self.bufferInMemory = bufferInMemory
        self.observer = observer
        self.staticIO = staticIO if staticIO is not None else InlineIO()
        self.encoders = encoders if encoders is not None else EncoderBudget()
        self.dates = dates if dates is not None else DateField()
        self.active: set[StreamBridge] = set()

    def handlerFactory(self, stream: ClientStream) -> "StreamBridge":
        """A front end's C{handlerFactory}: one bridge per stream, with this
        context's forwarding policy, for HTTP/2."""
        return StreamBridge(stream, self, self.forwarding, HTTP2)

    def handlersFor(
        self, forwarding: ForwardingPolicy, protocol: bytes, redirectHttps: int | None = None
    ) -> "ListenerHandlers":
        """The handler factory for one listener's front end."""
        return ListenerHandlers(self, forwarding, protocol, redirectHttps)


class ListenerHandlers:
    """The C{handlerFactory} of one listener's front end: the shared context plus
    what differs per listener (its forwarding policy, its redirect to HTTPS) and per
    front end (the protocol version Via names)."""

    def __init__(
        self, context: BridgeContext, forwarding: ForwardingPolicy, protocol: bytes, redirectHttps: int | None = None
    ) -> None:
        self.context = context
        self.forwarding = forwarding
        self.protocol = protocol
        self.redirectHttps = redirectHttps

    def handlerFactory(self, stream: ClientStream) -> "StreamBridge":
        return StreamBridge(stream, self.context, self.forwarding, self.protocol, self.redirectHttps)


def error_response(
    stream: ClientStream,
    status: int,
    reason: str,
    requestId: bytes,
    *,
    bodyless: bool = False,
    retryAfter: int | None = None,
    date: bytes = b"",
) -> None:
    """Answer a request with a proxy-generated error: a short text body, the request
    id, the C{date} (the proxy is this response's origin), and an RFC 9209
    ``Proxy-Status`` field naming the reason. C{bodyless} (a HEAD request) sends the
    same head without the body."""
    rid = requestId.decode("ascii")
    body = f"{status} {_STATUS_MESSAGES.get(status, 'error')} (request id {rid})\n".encode()
    head = ResponseHead(
        status=status,
        headers=(
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"%d" % len(body)),
            (b"proxy-status", f'h2proxy; error={reason}; details="request id {rid}"'.encode()),
            (b"x-request-id", requestId),
            *(((b"retry-after", b"%d" % retryAfter),) if retryAfter is not None else ()),
            *(((b"date", date),) if date else ()),
        ),
    )
    if bodyless:
        stream.writeHeaders(head, endStream=True)
        return
    stream.writeHeaders(head)
    stream.write(body)
    stream.finish()


def redirect_response(
    stream: ClientStream, status: int, location: bytes, requestId: bytes, date: bytes = b""
) -> None:
    """Answer a request with a redirect the proxy makes itself: the status, the
    Location, the request id and the C{date}, without a body (clients follow the
    Location; the HTTP/1.1 front end frames it with ``Content-Length: 0``)."""
    fields = ((b"location", location), (b"x-request-id", requestId), *(((b"date", date),) if date else ()))
    stream.writeHeaders(ResponseHead(status=status, headers=fields), endStream=True)


class StreamBridge:
    """One request's journey: stream -> route -> exchange -> stream.

    The bridge's L{BridgeState}: L{BridgeState.AWAITING_RESPONSE} until the response
    head goes to the client (L{BridgeState.RESPONDING}), L{BridgeState.DONE} once either
    side finished for good (the buffer, if any, is closed then); a failure before
    the head is answered with an error response, after it with a reset. Within
    those: C{_route is None} until a route is found; while a buffering route reads
    the body, C{_buffer} holds it and C{_exchange is None}. A WebSocket handshake
    has its own L{websocket.TunnelState}.

    @ivar state: the L{BridgeState}.
    @ivar tunnel: the L{websocket.TunnelState}.
    @ivar redirectHttps: on a listener that sends everything to HTTPS, the port to
        send it to (every request is answered 308, without routing); else C{None}.

    @ivar requestId: this request's id (set when the request arrives).
    @ivar record: what happened to the request, for the observer (set when the
        request arrives, handed over once when it is done).
    """

    def __init__(
        self,
        stream: ClientStream,
        context: BridgeContext,
        forwarding: ForwardingPolicy | None = None,
        protocol: bytes = HTTP2,
        redirectHttps: int | None = None,
    ) -> None:
        self.stream = stream
        self.context = context
        self.forwarding = forwarding or context.forwarding
        self.protocol = protocol
        self.redirectHttps = redirectHttps
        self.requestId = b""
        self.record: RequestRecord | None = None
        self._route: Route | None = None
        self._exchange: Exchange | None = None
        self._buffer: BodyBuffer | None = None
        self._pending: UpstreamRequest | None = None
        self._sender: BufferedBodySender | None = None
        self._static: StaticResponder | None = None
        self.state = _AWAITING_RESPONSE
        self._bodyless = False
        self._bodyReceived = 0
        self.tunnel = _NO_TUNNEL
        # The proxy's Sec-WebSocket-Key for an HTTP/2 client's handshake.
        self._tunnelKey: bytes | None = None
        context.active.add(self)

    # -- StreamHandler: the client side --------------------------------------

    def requestReceived(self, head: RequestHead) -> None:
        self._bodyless = head.method == b"HEAD"
        certificate = self.stream.clientCertificate()
        facts = self._facts(head, certificate)
        self.requestId = facts.requestId
        self.record = self.context.observer.requestStarted(
            head=head, client=facts.peer, protocol=self.protocol, streamID=self.stream.streamID,
            requestId=facts.requestId)
        if certificate is not None:
            self.record.clientCert = certificate.subject
        if self.redirectHttps is not None:
            self._redirectToHttps(head, self.redirectHttps)
            return
        route = self.context.router.match(head.authority, head.path)
        if route is None:
            self._fail(404, "destination_not_found")
            return
        self._route = route
        self.record.route, self.record.upstream = route_label(route.config), route.upstream or ""
        handshake = websocket.is_websocket(head)
        if route.compression is not None and not handshake:
            self.stream = NegotiatingStream(
                self.stream, route.compression, head.headers, self._bodyless, self.record, self.context.encoders)
        if route.access is not None or route.limiter is not None:
            client = client_of(facts.peer, head.headers, self.forwarding)
            if route.access is not None and not route.access.permits(client):
                self._fail(403, ACCESS_DENIED)
                return
            wait = route.limiter.take(client) if route.limiter is not None else 0
            if wait:
                self._fail(429, RATE_LIMITED, retryAfter=wait)
                return
        if route.redirect is not None:
            self._redirect(route.redirect.status, route.redirect.location)
            return
        if route.static is not None:
            self._static = StaticResponder(
                stream=self.stream, head=head, site=route.static, io=self.context.staticIO,
                answers=Answers(fail=self._fail, redirect=self._redirect, done=self._finish),
                record=self.record, requestId=self.requestId, dates=self.context.dates)
            self._static.start()
            return
        limit = self.context.maxRequestBody
        if limit and head.content_length is not None and head.content_length > limit:
            self._fail(413, "http_request_denied")
            return
        if handshake:
            self.tunnel = _HANDSHAKE
        try:
            upstream = translate.to_upstream(
                websocket.backend_head(head) if self.tunnel is _HANDSHAKE else head,
                target=route.target(head.path),
                facts=facts,
                policy=self.forwarding,
                edits=route.requestEdits,
                body_length=0 if self.tunnel is _HANDSHAKE else translate.request_body_length(head),
            )
        except UnforwardableRequest as refused:
            log.info("request {id} refused: {why}", id=self.requestId, why=str(refused))
            self._fail(refused.status, refused.reason)
            return
        if route.buffer and upstream.body_length is None:
            self._buffer = BodyBuffer(
                limit=min(route.bufferLimit, limit) if limit else route.bufferLimit,
                memoryLimit=self.context.bufferInMemory,
                openFile=self.context.openFile,
            )
            self._pending = self._continueLocally(upstream)
            return
        if self.tunnel is _HANDSHAKE:
            self._startTunnel(route, upstream, head)
            return
        self._exchange = self.context.pools[route.upstream].request(upstream, self)
        if not head.end_stream:
            self._exchange.registerProducer(self.stream, True)

    def requestDataReceived(self, data: bytes) -> None:
        if self.state is _DONE:
            return
        self.record.requestBytes += len(data)
        if self._buffer is not None:
            self._bufferData(data)
            return
        if self._exchange is None:
            return
        self._bodyReceived += len(data)
        limit = self.context.maxRequestBody
        if limit and self._bodyReceived > limit and self.tunnel is _NO_TUNNEL:
            if self.state is _RESPONDING:
                self._resetReason("http_request_denied")
                self._abandon()
                self.stream.reset(ResetReason.CANCEL)
            else:
                self._fail(413, "http_request_denied")
            return
        self._exchange.write(data)

    def requestEnded(self, trailers: Headers) -> None:
        if self.state is _DONE:
            return
        if self._buffer is not None:
            self._sendBuffered()
            return
        if self._exchange is None:
            return
        self._exchange.unregisterProducer()
        self._exchange.finishRequest(translate.trailers_to_upstream(trailers))

    def requestRefused(self, head: RequestHead, status: int) -> None:
        """The front end answered the request itself before routing (400, 431...):
        one access log line for it, nothing else."""
        self.record = self.context.observer.requestStarted(
            head=head, client=self._peer(), protocol=self.protocol, streamID=self.stream.streamID,
            requestId=self.context.requestIds.next())
        self.record.status, self.record.error = status, REQUEST_ERROR
        self._finish()

    def streamAborted(self, reason: Failure) -> None:
        """The stream is gone: the client went away, unless the proxy cut it for a
        cause of its own (L{StreamCut}: drain window, request body timeout, bad body
        framing); a cut that left the client without an answer is a warning."""
        cut = reason.value if isinstance(reason.value, StreamCut) else None
        if cut is None:
            self._resetReason(CLIENT_CLOSED_REASON)
        else:
            self._cut(cut)
        self._abandon()

    # -- ResponseReceiver: the backend side ----------------------------------

    def responseInformational(self, head: ResponseHead) -> None:
        if self.state is not _DONE:
            self.stream.writeInformational(translate.to_client(head))

    def responseHeadReceived(self, head: ResponseHead) -> None:
        if self.state is _DONE:
            return
        if self.tunnel is _HANDSHAKE:
            switched = self._tunnelHead(head)
            if switched is None:
                return
            head = switched
        self.state = _RESPONDING
        self.context.observer.responseStarted(self.record, head.status)
        self.context.observer.exchangeUsed(self.record, self._exchange)
        route = self._route
        clientHead = translate.to_client(
            head,
            policy=self.forwarding,
            edits=route.responseEdits if route is not None else translate.NO_EDITS,
            requestId=self.requestId,
            date=self.context.dates.value(),
        )
        self.stream.writeHeaders(clientHead)
        if self._exchange is not None:
            self.stream.registerProducer(self._exchange, True)
            if self.tunnel is _TUNNEL_OPEN:
                self._exchange.registerProducer(self.stream, True)
                self.stream.resumeProducing()

    def responseDataReceived(self, data: bytes) -> None:
        if self.state is not _DONE:
            self.record.responseBytes += len(data)
            self.stream.write(data)

    def responseEnded(self, trailers: Headers) -> None:
        if self.state is _DONE:
            return
        self.stream.unregisterProducer()
        trailers = translate.trailers_to_client(trailers)
        if trailers:
            self.stream.writeTrailers(trailers)
        else:
            self.stream.finish()
        # On an early response (the request body still arriving), the rest of the
        # body is read and dropped: the stream keeps returning window credit.
        self._finish()

    def responseFailed(self, error: UpstreamError) -> None:
        if self.state is _DONE:
            return
        log.info(
            "request {id}: upstream failure on stream {stream}: {reason}: {error}",
            id=self.requestId,
            stream=self.stream.streamID,
            reason=error.reason,
            error=str(error) or type(error).__name__,
        )
        if self.state is _RESPONDING:
            self._resetReason(error.reason)
            self.stream.reset(ResetReason.CANCEL if self.tunnel is _TUNNEL_OPEN else ResetReason.INTERNAL_ERROR)
            self._finish()
        else:
            self._fail(error.status, error.reason, getattr(error, "retry_after", None))

    # -- internals -----------------------------------------------------------

    def _peer(self) -> str:
        return translate.client_address(getattr(self.stream.getPeer(), "host", None))

    def _facts(self, head: RequestHead, certificate: ClientCertificate | None) -> RequestFacts:
        """Who sent the request (and with which verified certificate), whether to
        believe its forwarding fields, its id."""
        peer = self._peer()
        trusted = self.forwarding.trusts(peer)
        requestId = translate.incoming_request_id(head.headers) if trusted else None
        return RequestFacts(
            peer=peer,
            secure=self.stream.isSecure(),
            protocol=self.protocol,
            trusted=trusted,
            requestId=requestId or self.context.requestIds.next(),
            clientCert=b"" if certificate is None else translate.client_cert_field(certificate.sha256, certificate.subject),
        )

    def _startTunnel(self, route: Route, upstream: UpstreamRequest, head: RequestHead) -> None:
        """A WebSocket handshake: ask the backend to upgrade. The client's bytes wait
        (the stream stays paused, so an HTTP/2 client gets no window credit) until
        the backend has switched."""
        if websocket.is_extended_connect(head):
            self._tunnelKey = websocket.new_key()
        self.stream.pauseProducing()
        request = websocket.upgrade_request(upstream, self._tunnelKey)
        self._exchange = self.context.pools[route.upstream].request(request, self)

    def _tunnelHead(self, head: ResponseHead) -> ResponseHead | None:
        """The backend's answer to a handshake: a 101 opens the tunnel (a 200 with the
        accept checked for an HTTP/2 client), anything else is an ordinary response;
        C{None} when the handshake failed and a 502 went out instead."""
        if head.status != 101:
            return head
        if self._tunnelKey is not None:
            try:
                head = websocket.accepted_for_http2(head, self._tunnelKey)
            except websocket.BadHandshake as bad:
                log.info("request {id}: bad WebSocket handshake from the backend: {why}", id=self.requestId, why=str(bad))
                self._fail(502, "http_protocol_error")
                return None
        self.tunnel = _TUNNEL_OPEN
        return head

    def _bufferData(self, data: bytes) -> None:
        assert self._buffer is not None
        try:
            self._buffer.write(data)
        except BodyTooLarge:
            self._fail(413, "http_request_denied")
        except OSError as error:
            self._bufferFailed(error)

    def _continueLocally(self, upstream: UpstreamRequest) -> UpstreamRequest:
        """A buffering route reads the whole body before asking any backend, so no
        backend can answer ``expect: 100-continue``: the client gets the 100 from
        here and the backend gets the body without the expectation."""
        kept = tuple(f for f in upstream.headers if not (f[0] == b"expect" and f[1].lower() == b"100-continue"))
        if len(kept) == len(upstream.headers):
            return upstream
        self.stream.writeInformational(ResponseHead(100))
        return dataclasses.replace(upstream, headers=kept)

    def _sendBuffered(self) -> None:
        """The buffered body is complete: ask the backend, with its length."""
        assert self._buffer is not None and self._pending is not None and self._route is not None
        request = dataclasses.replace(self._pending, body_length=self._buffer.size)
        self._pending = None
        self._exchange = self.context.pools[self._route.upstream].request(request, self)
        if self.state is _DONE:
            return
        self._sender = BufferedBodySender(self._buffer, self._exchange, self._bufferFailed)
        self._sender.start()

    def _bufferFailed(self, error: OSError) -> None:
        log.error(
            "request {id}: cannot buffer the request body in a temporary file: {error} "
            "(temporary files go to $TMPDIR, else /tmp)",
            id=self.requestId,
            error=error,
        )
        if self.state is _DONE:
            return
        if self.state is _RESPONDING:
            self._resetReason("proxy_internal_error")
            self._abandon()
            self.stream.reset(ResetReason.INTERNAL_ERROR)
        else:
            self._fail(500, "proxy_internal_error")

    def _redirectToHttps(self, head: RequestHead, port: int) -> None:
        """The listener sends everything to HTTPS: 308 (method and body kept) to the
        same host, path and query on C{port}; 400 when the request names no usable host."""
        location = https_location(head.authority, head.path, port)
        if location is None:
            log.info("request {id} refused: no usable host to redirect to HTTPS", id=self.requestId)
            self._fail(400, REQUEST_ERROR)
            return
        self._redirect(308, location)

    def _redirect(self, status: int, location: bytes) -> None:
        """Answer with a redirect the proxy makes itself; no backend is asked."""
        self.record.status = status
        self._finish()
        redirect_response(self.stream, status, location, self.requestId, self.context.dates.value())

    def _fail(self, status: int, reason: str, retryAfter: int | None = None) -> None:
        """Answer with a proxy-generated error and stop the exchange, if any.
        C{retryAfter} (seconds) adds a ``Retry-After`` field, for a 503 whose cause
        is known to pass or a 429 (when the client's next token is due)."""
        exchange, self._exchange = self._exchange, None
        if exchange is not None:
            self.context.observer.exchangeUsed(self.record, exchange)
            exchange.cancel()
        if self.record is not None:
            self.record.status, self.record.error = status, reason
        self._finish()
        error_response(
            self.stream, status, reason, self.requestId, bodyless=self._bodyless, retryAfter=retryAfter,
            date=self.context.dates.value(),
        )

    def _abandon(self) -> None:
        """The client side is gone or refused: cancel the backend work."""
        exchange, self._exchange = self._exchange, None
        if exchange is not None:
            exchange.cancel()
        self._finish()

    def _resetReason(self, reason: str) -> None:
        """The stream ends by a reset, for C{reason}, unless it is already over or a
        cause was already given: the first cause wins (a backend failure resets the
        stream, and that reset must not be logged as the client leaving)."""
        record = self.record
        if record is not None and self.state is not _DONE and not record.error:
            record.error, record.reset = reason, True

    def _cut(self, cut: StreamCut) -> None:
        """The proxy cut the stream (see L{streamAborted})."""
        record = self.record
        if record is None or self.state is _DONE or record.error:
            return
        if cut.status is not None and self.state is _AWAITING_RESPONSE:
            record.status, record.error = cut.status, cut.reason
            return
        self._resetReason(cut.reason)
        if cut.status is None:
            log.warn(
                "request {id} ({method} {path}, stream {stream}) cut by the proxy: {why}",
                id=self.requestId, method=record.method, path=record.path[:200],
                stream=self.stream.streamID, why=str(cut))

    def _finish(self) -> None:
        self.state = _DONE
        self.context.active.discard(self)
        record, self.record = self.record, None
        if record is not None:
            self.context.observer.requestFinished(record)
        sender, self._sender = self._sender, None
        if sender is not None:
            sender.stopProducing()
        buffer, self._buffer = self._buffer, None
        if buffer is not None:
            buffer.close()
        static, self._static = self._static, None
        if static is not None:
            static.stop()
