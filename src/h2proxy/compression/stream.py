"""A client stream that encodes the response body written through it.

On a compressing route the bridge writes the response through a
L{NegotiatingStream}: the head it writes decides (L{CompressionPolicy.decide})
whether the body is encoded, whatever wrote it (a backend's response relayed by the
bridge, a static file, an error the proxy makes itself, which is never eligible).
From then on every body chunk is encoded and flushed on its way to the real
stream (HTTP/2 or HTTP/1.1: the front end frames the encoded body as it framed the
plain one, chunked on HTTP/1.1 since the head has no Content-Length), and the
coding's end goes out before the trailers or the end of the response. Everything
else (producer registration and pause/resume, resets, the connection's facts)
passes straight through, so backpressure works as it does without compression.

Should an encoder fail, the body cannot be completed: the stream is reset (the
client sees the response cut short, as when a backend fails mid-body), one error
line says why, and what the writer sends after that is dropped.
"""

from __future__ import annotations

import weakref
from enum import Enum
from typing import Any, Protocol

from twisted.internet.interfaces import IAddress
from twisted.logger import Logger

from h2proxy.compression.encoders import CODING_ERRORS, Encoder, EncoderBudget
from h2proxy.compression.policy import CompressionPolicy, with_vary
from h2proxy.fields import field_values
from h2proxy.frontend.clientcert import ClientCertificate
from h2proxy.frontend.handler import ClientStream, ResetReason
from h2proxy.message import Headers, ResponseHead


class CodingTally(Protocol):
    """Where the coding and the body's sizes before and after encoding are counted
    (the request's record, read by the access log and the metrics), and why the
    stream was reset, when an encoder failed."""

    coding: str | None
    codingIn: int
    codingOut: int
    error: str | None
    reset: bool


#: The access log's reason for a stream reset because its encoder failed.
COMPRESSION_FAILED = "compression_error"


log = Logger()


class _Body(Enum):
    """Where the response body written through a L{CompressingStream} stands."""

    #: Body bytes go on to the real stream (encoded or as they are).
    OPEN = "open"
    #: The encoder failed and the stream was reset: the rest is dropped.
    BROKEN = "broken"


class CompressingStream:
    """A L{ClientStream} that encodes response body bytes with C{encoder} before
    handing them to C{stream}, counting both sizes into C{tally}; with no encoder,
    the body passes as it is."""

    def __init__(self, stream: ClientStream, encoder: Encoder | None, tally: CodingTally) -> None:
        self._stream = stream
        self._encoder = encoder
        self._tally = tally
        # Gives the encoder's place in its budget back, when it has one.
        self._release: weakref.finalize | None = None
        self._body = _Body.OPEN

    @property
    def streamID(self) -> int:
        return self._stream.streamID

    # -- the request body and the response's producer: passed through --------

    def pauseProducing(self) -> None:
        self._stream.pauseProducing()

    def resumeProducing(self) -> None:
        self._stream.resumeProducing()

    def stopProducing(self) -> None:
        self._stream.stopProducing()

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self._stream.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self._stream.unregisterProducer()

    # -- the response ---------------------------------------------------------

    def writeInformational(self, head: ResponseHead) -> None:
        self._stream.writeInformational(head)

    def writeHeaders(self, head: ResponseHead, endStream: bool = False) -> None:
        self._stream.writeHeaders(head, endStream)

    def write(self, data: bytes) -> None:
        """Encode C{data} and send what the encoder flushed."""
        encoder = self._encoder
        if self._body is _Body.BROKEN:
            return
        if encoder is None:
            self._stream.write(data)
            return
        try:
            encoded = encoder.compress(data)
        except CODING_ERRORS as error:
            self._broken(encoder.coding, error)
            return
        self._send(encoded, len(data))

    def writeTrailers(self, headers: Headers) -> None:
        """End the coding, then the response with C{headers}."""
        if self._endCoding():
            self._stream.writeTrailers(headers)

    def finish(self) -> None:
        """End the coding, then the response."""
        if self._endCoding():
            self._stream.finish()

    def reset(self, reason: ResetReason = ResetReason.INTERNAL_ERROR) -> None:
        self._stream.reset(reason)

    # -- the connection's facts ------------------------------------------------

    def getPeer(self) -> IAddress:
        return self._stream.getPeer()

    def isSecure(self) -> bool:
        return self._stream.isSecure()

    def clientCertificate(self) -> ClientCertificate | None:
        return self._stream.clientCertificate()

    def _endCoding(self) -> bool:
        """Write the coding's end, and let the encoder go; false when the body is
        broken (the stream was reset: the response must not end normally)."""
        encoder = self._encoder
        if encoder is not None and self._body is _Body.OPEN:
            try:
                self._send(encoder.finish(), 0)
            except CODING_ERRORS as error:
                self._broken(encoder.coding, error)
        self._letEncoderGo()
        return self._body is _Body.OPEN

    def _letEncoderGo(self) -> None:
        """Drop the encoder and give its place in the budget back."""
        self._encoder = None
        if self._release is not None:
            self._release()

    def _broken(self, coding: str, error: Exception) -> None:
        """The encoder failed: what went out cannot be completed, so reset the stream."""
        log.error(
            "stream {stream}: cannot encode the response body in {coding}: {error}; the stream is reset. "
            "If this repeats, remove {coding} from the route's compress.codings",
            stream=self._stream.streamID, coding=coding, error=str(error) or type(error).__name__)
        self._body = _Body.BROKEN
        self._letEncoderGo()
        if not self._tally.error:
            # The first cause wins: the reset that follows is not the client leaving.
            self._tally.error, self._tally.reset = COMPRESSION_FAILED, True
        self._stream.reset(ResetReason.INTERNAL_ERROR)

    def _send(self, encoded: bytes, plain: int) -> None:
        """Count and write C{encoded} (an empty flush writes nothing: an empty
        HTTP/2 DATA frame or HTTP/1.1 chunk would say nothing, or end the body)."""
        self._tally.codingIn += plain
        self._tally.codingOut += len(encoded)
        if encoded:
            self._stream.write(encoded)


class NegotiatingStream(CompressingStream):
    """A L{CompressingStream} whose encoder, if any, is chosen by the response head
    written through it: C{policy} decides from the head, the request's fields
    C{request} (Accept-Encoding; If-None-Match for a 304) and whether it answers a
    HEAD (C{bodyless}), and the head goes out as the policy rewrote it. The encoder
    comes from the worker's C{budget}; when it is spent, the body goes as it is."""

    def __init__(
        self,
        stream: ClientStream,
        policy: CompressionPolicy,
        request: Headers,
        bodyless: bool,
        tally: CodingTally,
        budget: EncoderBudget,
    ) -> None:
        super().__init__(stream, None, tally)
        self._policy = policy
        self._acceptEncoding = field_values(request, b"accept-encoding")
        self._ifNoneMatch = field_values(request, b"if-none-match")
        self._bodyless = bodyless
        self._budget = budget

    def writeHeaders(self, head: ResponseHead, endStream: bool = False) -> None:
        if head.status == 304:
            self._stream.writeHeaders(self._policy.revalidated(head, self._acceptEncoding, self._ifNoneMatch), endStream)
            return
        if endStream and not self._bodyless:
            # An empty body (a 304, a 204, an empty file) has nothing to encode and
            # must not claim a coding: a zero-length gzip body does not decode.
            self._stream.writeHeaders(head, endStream)
            return
        decision = self._policy.decide(head, self._acceptEncoding, self._bodyless)
        sent = decision.head
        if decision.encode:
            made = self._budget.encoder(decision.coding, self._policy.level)
            if made is None:
                self._stream.writeHeaders(ResponseHead(head.status, with_vary(head.headers)), endStream)
                return
            self._encoder, self._release = made
        if decision.coding is not None:
            self._tally.coding = decision.coding
        self._stream.writeHeaders(sent, endStream)

