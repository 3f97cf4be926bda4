"""CompressingStream over a fake client stream: body chunks are encoded and flushed
one by one, the coding's end precedes the trailers or the end, everything else
passes through; and the bridge swaps it in on a compressing route."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure

from h2proxy.bridge.bridge import BridgeContext, RequestIds, StreamBridge
from h2proxy.bridge.routing import Router
from h2proxy.compression.encoders import EncoderBudget, GzipEncoder
from h2proxy.compression.stream import CompressingStream
from h2proxy.config.compression import CompressionConfig
from h2proxy.config.model import RouteConfig
from h2proxy.frontend.handler import ClientStream, ResetReason
from h2proxy.message import RequestHead, ResponseHead
from h2proxy.observability.accesslog import RequestRecord, format_combined, format_json
from tests.bridge.test_bridge import FakePool, FakeStream
from tests.bridge.test_redirects import Recorder


@dataclass
class Tally:
    coding: str | None = None
    codingIn: int = 0
    codingOut: int = 0
    error: str | None = None
    reset: bool = False


def wrapped():
    inner, tally = FakeStream(), Tally()
    return inner, tally, CompressingStream(inner, GzipEncoder(6), tally)


def decoded(calls) -> bytes:
    gunzip = zlib.decompressobj(16 + zlib.MAX_WBITS)
    return b"".join(gunzip.decompress(c[1]) for c in calls if c[0] == "data")


def test_it_is_a_client_stream():
    assert isinstance(wrapped()[2], ClientStream)


def test_each_chunk_goes_out_at_once_and_decodes_to_itself():
    inner, _, stream = wrapped()
    gunzip = zlib.decompressobj(16 + zlib.MAX_WBITS)
    for event in (b"data: one\n\n", b"data: two\n\n"):
        stream.write(event)
        assert gunzip.decompress(inner.calls[-1][1]) == event


def test_finish_writes_the_coding_end_then_finishes():
    inner, tally, stream = wrapped()
    stream.write(b"x" * 5000)
    stream.finish()
    assert inner.calls[-1] == ("finish",) and inner.calls[-2][0] == "data"
    assert zlib.decompress(b"".join(c[1] for c in inner.calls if c[0] == "data"), 16 + zlib.MAX_WBITS) == b"x" * 5000
    assert tally.codingIn == 5000 and tally.codingOut == sum(len(c[1]) for c in inner.calls if c[0] == "data")


def test_trailers_come_after_the_coding_end():
    inner, _, stream = wrapped()
    stream.write(b"body")
    stream.writeTrailers(((b"x-checksum", b"1"),))
    assert [c[0] for c in inner.calls] == ["data", "data", "trailers"]
    assert decoded(inner.calls) == b"body"


class Holding:
    """An encoder with nothing to flush yet (brotli may say nothing for a tiny chunk)."""

    coding = "test"

    def compress(self, data: bytes) -> bytes:
        return b""

    def finish(self) -> bytes:
        return b"end"


def test_an_empty_flush_writes_nothing():
    inner, tally = FakeStream(), Tally()
    stream = CompressingStream(inner, Holding(), tally)
    stream.write(b"abc")
    assert inner.calls == [] and tally.codingIn == 3
    stream.finish()
    assert inner.calls == [("data", b"end"), ("finish",)]


def test_producers_pause_resume_and_resets_pass_through():
    inner, _, stream = wrapped()
    producer = object()
    stream.registerProducer(producer, True)
    assert inner.producer is producer
    stream.pauseProducing()
    assert inner.paused
    stream.resumeProducing()
    assert not inner.paused
    stream.unregisterProducer()
    assert inner.producer is None
    stream.reset(ResetReason.CANCEL)
    assert inner.calls[-1] == ("reset", ResetReason.CANCEL)
    assert (stream.streamID, stream.getPeer(), stream.isSecure(), stream.clientCertificate()) == (
        1, inner.peer, True, None)


# -- in the bridge -----------------------------------------------------------------------

ROUTES = (
    RouteConfig(upstream="app", host="*", path="/", compress=CompressionConfig()),
    RouteConfig(upstream="app", host="*", path="/plain"),
)


def bridge_for(path=b"/", method=b"GET", accept=b"gzip"):
    pool, observer, stream = FakePool(), Recorder(), FakeStream()
    context = BridgeContext(router=Router(ROUTES), pools={"app": pool}, requestIds=RequestIds(b"0000beef"),
                            observer=observer)
    bridge = StreamBridge(stream, context)
    fields = ((b"accept-encoding", accept),) if accept else ()
    bridge.requestReceived(RequestHead(method=method, scheme=b"https", authority=b"a", path=path,
                                       headers=fields, end_stream=True))
    return bridge, stream, pool.exchanges[0], observer


HTML = ResponseHead(200, ((b"content-type", b"text/html"), (b"content-length", b"4000"), (b"etag", b'"v1"')))


def test_a_compressing_route_encodes_the_body_and_records_the_coding():
    bridge, stream, exchange, observer = bridge_for()
    exchange.receiver.responseHeadReceived(HTML)
    exchange.receiver.responseDataReceived(b"<p>hi</p>" * 400)
    exchange.receiver.responseEnded(())
    status, fields = stream.calls[0][1], stream.calls[0][2]
    assert status == 200 and fields[b"content-encoding"] == b"gzip" and b"content-length" not in fields
    assert fields[b"etag"] == b'W/"v1"' and fields[b"vary"] == b"Accept-Encoding"
    assert decoded(stream.calls) == b"<p>hi</p>" * 400 and stream.calls[-1] == ("finish",)
    record = observer.finished[0]
    assert (record.coding, record.codingIn) == ("gzip", 3600) and 0 < record.codingOut < 3600
    assert " coding=gzip " in format_combined(record) and '"coding":"gzip"' in format_json(record)


def test_the_response_producer_reaches_the_real_stream():
    bridge, stream, exchange, _ = bridge_for()
    exchange.receiver.responseHeadReceived(HTML)
    assert stream.producer is exchange


def test_a_client_without_accept_encoding_gets_the_body_as_it_came():
    bridge, stream, exchange, observer = bridge_for(accept=None)
    exchange.receiver.responseHeadReceived(HTML)
    exchange.receiver.responseDataReceived(b"plain")
    exchange.receiver.responseEnded(())
    assert b"content-encoding" not in stream.calls[0][2] and stream.calls[0][2][b"vary"] == b"Accept-Encoding"
    assert stream.calls[1] == ("data", b"plain") and observer.finished[0].coding == ""


def test_a_route_without_compress_is_untouched():
    bridge, stream, exchange, _ = bridge_for(path=b"/plain")
    exchange.receiver.responseHeadReceived(HTML)
    sent = stream.calls[0][2]
    assert sent.items() >= dict(HTML.headers).items() and b"vary" not in sent and b"content-encoding" not in sent


def test_a_head_request_gets_the_encoded_head_and_no_coding_end():
    bridge, stream, exchange, observer = bridge_for(method=b"HEAD")
    exchange.receiver.responseHeadReceived(HTML)
    exchange.receiver.responseEnded(())
    assert stream.calls[0][2][b"content-encoding"] == b"gzip" and b"content-length" not in stream.calls[0][2]
    assert stream.calls[1:] == [("finish",)]
    assert observer.finished[0].codingIn == 0


def test_metrics_count_bytes_in_and_out_per_coding():
    from h2proxy.observability.accesslog import RequestObserver
    from h2proxy.observability.metrics import WorkerMetrics

    metrics = WorkerMetrics()
    observer = RequestObserver(metrics=metrics, accessLog=None, clock=lambda: 0.0)
    record = RequestRecord(start=0.0, client="c", protocol="h2", method="GET", authority="a", path="/",
                           streamID=1, coding="br", codingIn=1000, codingOut=120)
    observer.requestFinished(record)
    text = metrics.registry.render()
    assert 'h2proxy_compression_bytes_total{coding="br",side="in"} 1000' in text
    assert 'h2proxy_compression_bytes_total{coding="br",side="out"} 120' in text


class Failing:
    """An encoder whose library fails (zlib, brotli and zstd raise their own error)."""

    coding = "gzip"

    def __init__(self, at: str) -> None:
        self.at = at

    def compress(self, data: bytes) -> bytes:
        if self.at == "compress":
            raise zlib.error("Error -2 while compressing data: inconsistent stream state")
        return b"enc"

    def finish(self) -> bytes:
        raise zlib.error("Error -2 while flushing: inconsistent stream state")


def test_an_encoder_failing_mid_body_resets_the_stream_with_one_log_line(logged_errors):
    """A body that cannot be encoded cannot be completed: the stream is reset (no
    coding end, no end of response), one error line names the coding and the
    cause, and no traceback escapes to the backend's connection."""
    for at, end in (("compress", "finish"), ("finish", "finish"), ("finish", "trailers")):
        inner, tally = FakeStream(), Tally()
        stream = CompressingStream(inner, Failing(at), tally)
        stream.write(b"first")
        if end == "trailers":
            stream.writeTrailers(((b"x-checksum", b"1"),))
        else:
            stream.finish()
        assert ("reset", ResetReason.INTERNAL_ERROR) in inner.calls
        assert not {"finish", "trailers"} & {c[0] for c in inner.calls}
        lines = logged_errors.take("cannot encode the response body in gzip.*inconsistent stream state")
        assert len(lines) == 1 and "Traceback" not in lines[0]
        assert (tally.error, tally.reset) == ("compression_error", True)


class FailingBudget(EncoderBudget):
    """Hands out encoders that fail on their first chunk."""

    def encoder(self, coding, level):
        made = super().encoder(coding, level)
        return (Failing("compress"), made[1]) if made is not None else None


def test_an_encoder_failure_through_the_bridge_is_logged_as_such_and_frees_everything(logged_errors):
    """When the encoder fails mid-body on a real bridge, the stream is reset, the
    backend exchange is cancelled when the front end reports the reset back, the
    encoder's place is free again, and the access record blames compression, not
    the client."""
    pool, observer, stream = FakePool(), Recorder(), FakeStream()
    budget = FailingBudget()
    context = BridgeContext(router=Router(ROUTES), pools={"app": pool}, requestIds=RequestIds(b"0000beef"),
                            observer=observer, encoders=budget)
    bridge = StreamBridge(stream, context)
    bridge.requestReceived(RequestHead(method=b"GET", scheme=b"https", authority=b"a", path=b"/",
                                       headers=((b"accept-encoding", b"gzip"),), end_stream=False))
    exchange = pool.exchanges[0]
    exchange.receiver.responseHeadReceived(HTML)
    exchange.receiver.responseDataReceived(b"<p>hi</p>" * 400)
    assert ("reset", ResetReason.INTERNAL_ERROR) in stream.calls
    bridge.streamAborted(Failure(ConnectionDone("reset by the proxy")))
    assert exchange.cancelled and budget.live == 0
    record = observer.finished[0]
    assert (record.error, record.reset) == ("compression_error", True)
    assert len(logged_errors.take("cannot encode the response body in gzip")) == 1
