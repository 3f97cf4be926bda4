"""StreamBridge: one client stream <-> one upstream exchange.

The only place where the HTTP/2 front end and the HTTP/1.1 upstream side meet. A
L{StreamBridge} is the front end's L{StreamHandler} for one stream and the upstream
side's L{ResponseReceiver} for the matching exchange. It wires the two
producer/consumer pairs described in DESIGN.md:

  - request body: the H2Stream (producer) is registered with the exchange
    (consumer), which pauses it while the backend socket is full or not yet
    connected; the stream returns HTTP/2 window credit only for bytes handed on.
  - response body: the exchange (producer) is registered with the H2Stream
    (consumer), which pauses it while the client's window or socket is full.

Failures before the response head answer with the error's status and a short body
(502/503/504, 404 for no route, 413 for an over-long body); after the head they reset
the stream, since HTTP/2 has no other way to say "this body is incomplete".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from h2.errors import ErrorCodes
from twisted.logger import Logger
from twisted.python.failure import Failure

from h2proxy.bridge import headers as translate
from h2proxy.bridge.routing import Router
from h2proxy.errors import UpstreamError
from h2proxy.message import Headers, RequestHead, ResponseHead, UpstreamRequest
from h2proxy.upstream.interfaces import Exchange, ResponseReceiver

if TYPE_CHECKING:
    from h2proxy.frontend.stream import H2Stream

log = Logger()


class UpstreamPoolLike(Protocol):
    """What the bridge needs of an upstream pool (see h2proxy.upstream.pool)."""

    def request(self, req: UpstreamRequest, receiver: ResponseReceiver) -> Exchange: ...


class BridgeContext:
    """Everything the bridges of one worker share, built once per config.

    @ivar router: picks the route of each request.
    @ivar pools: upstream name -> pool.
    @ivar maxRequestBody: largest request body accepted (0 = no limit); over it, 413.
    @ivar active: the live bridges (for drain bookkeeping, metrics and leak tests).
    """

    def __init__(self, *, router: Router, pools: dict[str, "UpstreamPoolLike"], maxRequestBody: int = 0) -> None:
        self.router = router
        self.pools = pools
        self.maxRequestBody = maxRequestBody
        self.active: set[StreamBridge] = set()

    def handlerFactory(self, stream: "H2Stream") -> "StreamBridge":
        """The front end's C{handlerFactory}: one bridge per stream."""
        return StreamBridge(stream, self)


def error_response(stream: "H2Stream", status: int, reason: str, message: str) -> None:
    """Answer a request with a proxy-generated error: short text body and an RFC 9209
    ``Proxy-Status`` field naming the reason."""
    body = f"{status} {message}\n".encode()
    head = ResponseHead(
        status=status,
        headers=(
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            (b"proxy-status", f"h2proxy; error={reason}".encode()),
        ),
    )
    stream.writeHeaders(head)
    stream.write(body)
    stream.finish()


class StreamBridge:
    """One request's journey: stream -> route -> exchange -> stream.

    States: C{_exchange is None} until a route is found; C{_responseStarted} once the
    response head went to the client; C{_done} once either side finished for good.
    """

    def __init__(self, stream: "H2Stream", context: BridgeContext) -> None:
        self.stream = stream
        self.context = context
        self._exchange: Exchange | None = None
        self._responseStarted = False
        self._requestComplete = False
        self._done = False
        self._bodyReceived = 0
        context.active.add(self)

    # -- StreamHandler: the client side --------------------------------------

    def requestReceived(self, head: RequestHead) -> None:
        route = self.context.router.match(head.authority, head.path)
        if route is None:
            self._fail(404, "no_route", "no route for this host and path")
            return
        limit = self.context.maxRequestBody
        if limit and head.content_length is not None and head.content_length > limit:
            self._fail(413, "request_body_too_large", "request body too large")
            return
        upstream = translate.to_upstream(
            head,
            client_address=_peer_host(self.stream),
            secure=self.stream.isSecure(),
            body_length=translate.request_body_length(head),
        )
        self._exchange = self.context.pools[route.upstream].request(upstream, self)
        if not head.end_stream:
            self._exchange.registerProducer(self.stream, True)

    def requestDataReceived(self, data: bytes) -> None:
        if self._done or self._exchange is None:
            return
        self._bodyReceived += len(data)
        limit = self.context.maxRequestBody
        if limit and self._bodyReceived > limit:
            self._abandon()
            if self._responseStarted:
                self.stream.reset(ErrorCodes.CANCEL)
            else:
                self._fail(413, "request_body_too_large", "request body too large")
            return
        self._exchange.write(data)

    def requestEnded(self, trailers: Headers) -> None:
        self._requestComplete = True
        if self._done or self._exchange is None:
            return
        self._exchange.unregisterProducer()
        self._exchange.finishRequest(trailers)

    def streamAborted(self, reason: Failure) -> None:
        self._abandon()

    # -- ResponseReceiver: the backend side ----------------------------------

    def responseInformational(self, head: ResponseHead) -> None:
        if not self._done:
            self.stream.writeInformational(translate.to_client(head))

    def responseHeadReceived(self, head: ResponseHead) -> None:
        if self._done:
            return
        self._responseStarted = True
        self.stream.writeHeaders(translate.to_client(head))
        if self._exchange is not None:
            self.stream.registerProducer(self._exchange, True)

    def responseDataReceived(self, data: bytes) -> None:
        if not self._done:
            self.stream.write(data)

    def responseEnded(self, trailers: Headers) -> None:
        if self._done:
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
        if self._done:
            return
        log.info(
            "upstream failure for stream {stream}: {reason}: {error}",
            stream=self.stream.streamID,
            reason=error.reason,
            error=str(error) or type(error).__name__,
        )
        if self._responseStarted:
            self.stream.reset(ErrorCodes.INTERNAL_ERROR)
            self._finish()
        else:
            self._fail(error.status, error.reason, _status_message(error))

    # -- internals -----------------------------------------------------------

    def _fail(self, status: int, reason: str, message: str) -> None:
        """Answer with a proxy-generated error and stop the exchange, if any."""
        exchange, self._exchange = self._exchange, None
        if exchange is not None:
            exchange.cancel()
        error_response(self.stream, status, reason, message)
        self._finish()

    def _abandon(self) -> None:
        """The client side is gone or refused: cancel the backend work."""
        exchange, self._exchange = self._exchange, None
        if exchange is not None:
            exchange.cancel()
        self._finish()

    def _finish(self) -> None:
        self._done = True
        self.context.active.discard(self)


def _peer_host(stream: "H2Stream") -> str:
    peer = stream.getPeer()
    return getattr(peer, "host", "") or "unknown"


def _status_message(error: UpstreamError) -> str:
    messages = {502: "bad gateway", 503: "service unavailable", 504: "gateway timeout"}
    return messages.get(error.status, "upstream error")
