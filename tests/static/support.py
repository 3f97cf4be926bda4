"""Fakes for the static tests: a stream that records what it is sent, and a
blocking-call runner whose calls wait until the test runs them."""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet import defer
from twisted.internet.address import IPv4Address

from h2proxy.bridge.bridge import BridgeContext, StreamBridge
from h2proxy.bridge.routing import Router
from h2proxy.config.model import RouteConfig
from h2proxy.config.static import StaticConfig
from h2proxy.frontend.handler import ResetReason
from h2proxy.message import RequestHead
from h2proxy.static.reader import OpenFiles


class RecordingStream:
    """A ClientStream that records the response and the producer registered on it."""

    streamID = 1

    def __init__(self) -> None:
        self.status: int | None = None
        self.headers: dict[bytes, bytes] = {}
        self.body = b""
        self.ended = False
        self.resetWith: ResetReason | None = None
        self.producer: Any = None

    def getPeer(self):
        return IPv4Address("TCP", "192.0.2.7", 40000)

    def isSecure(self) -> bool:
        return True

    def clientCertificate(self):
        return None

    def pauseProducing(self) -> None: ...
    def resumeProducing(self) -> None: ...
    def stopProducing(self) -> None: ...
    def writeInformational(self, head) -> None: ...

    def writeHeaders(self, head, endStream=False) -> None:
        self.status, self.headers, self.ended = head.status, dict(head.headers), endStream

    def write(self, data: bytes) -> None:
        self.body += data

    def writeTrailers(self, headers) -> None:
        self.ended = True

    def finish(self) -> None:
        self.ended = True

    def reset(self, reason=ResetReason.INTERNAL_ERROR) -> None:
        self.resetWith = reason

    def registerProducer(self, producer, streaming) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None


class HeldIO:
    """Blocking calls wait in a queue until L{runOne} or L{runAll}: a read in flight
    can be observed, paused around, or abandoned."""

    def __init__(self) -> None:
        self.files = OpenFiles()
        self.pending: list[tuple[Callable, tuple, defer.Deferred]] = []

    def call(self, function: Callable, *args: Any) -> defer.Deferred:
        waiting: defer.Deferred = defer.Deferred()
        self.pending.append((function, args, waiting))
        return waiting

    def runOne(self) -> None:
        function, args, waiting = self.pending.pop(0)
        try:
            result = function(*args)
        except Exception as error:  # handed to the caller, as a thread would
            waiting.errback(error)
        else:
            waiting.callback(result)

    def runAll(self) -> None:
        while self.pending:
            self.runOne()


def static_context(root: str, io, path: str = "/static", **options: Any) -> BridgeContext:
    route = RouteConfig(path=path, static=StaticConfig(root=root, **options))
    return BridgeContext(router=Router((route,)), pools={}, staticIO=io)


def request(context: BridgeContext, path: bytes, method: bytes = b"GET", headers=()) -> tuple[RecordingStream, StreamBridge]:
    stream = RecordingStream()
    bridge = context.handlerFactory(stream)
    bridge.requestReceived(
        RequestHead(method=method, scheme=b"https", authority=b"example.org", path=path, headers=tuple(headers),
                    end_stream=True))
    return stream, bridge
