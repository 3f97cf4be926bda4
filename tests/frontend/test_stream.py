"""H2Stream's API rules: ordering of heads, body and end; what misuse raises; what is
silently ignored once the stream is gone."""

from __future__ import annotations

import pytest
from h2.errors import ErrorCodes
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IConsumer, IPushProducer
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from h2proxy.frontend.handler import ResetReason
from h2proxy.frontend.http2.stream import STREAM_HIGH_WATER
from h2proxy.message import ResponseHead
from tests.frontend.support import FakeProducer, connected


def openStream(**kw):
    server, client = connected(**kw)
    streamID = client.request(end=False)
    return server, client, server.handlers[streamID].stream, streamID


def test_stream_provides_producer_and_consumer_interfaces():
    """When a stream is built, it provides IPushProducer (request body) and IConsumer (response body)."""
    _, _, stream, _ = openStream()
    assert verifyObject(IPushProducer, stream) and verifyObject(IConsumer, stream)
    assert stream.head.method == b"GET" and stream.connection is not None


def test_write_before_headers_and_after_finish_raise():
    """When the bridge writes before the head or after finishing, the mistake raises RuntimeError."""
    _, _, stream, _ = openStream()
    with pytest.raises(RuntimeError):
        stream.write(b"early")
    with pytest.raises(RuntimeError):
        stream.finish()
    stream.writeHeaders(ResponseHead(200))
    with pytest.raises(RuntimeError):
        stream.writeHeaders(ResponseHead(200))
    with pytest.raises(RuntimeError):
        stream.writeInformational(ResponseHead(103))
    stream.finish()
    with pytest.raises(RuntimeError):
        stream.write(b"late")
    with pytest.raises(RuntimeError):
        stream.writeTrailers(((b"x", b"y"),))


def test_wrong_statuses_raise():
    """When a 1xx is passed as the final head, or a final status or 101 as informational, ValueError is raised."""
    _, _, stream, _ = openStream()
    with pytest.raises(ValueError):
        stream.writeHeaders(ResponseHead(100))
    with pytest.raises(ValueError):
        stream.writeInformational(ResponseHead(200))
    with pytest.raises(ValueError):
        stream.writeInformational(ResponseHead(101))


def test_invalid_response_field_resets_the_stream(capture_logs, logged_errors):
    """When the bridge passes a response field that cannot be sent, the stream is reset INTERNAL_ERROR and the error logged; HPACK state is untouched."""
    server, client, stream, streamID = openStream()
    stream.writeHeaders(ResponseHead(200, ((b"x-ok", b"1"), (b"x-bad", b"a\r\nb"))))
    client.flush()
    assert client.response(streamID)["reset"] == ErrorCodes.INTERNAL_ERROR
    assert any("x-bad" in str(e.get("error", "")) for e in capture_logs)
    other = client.request()
    server.handlers[other].respond(200, b"fine", ((b"x-ok", b"1"),))
    client.flush()
    assert client.response(other)["body"] == b"fine"
    assert logged_errors.take(r"invalid value for field 'x-bad'; resetting it")


def test_calls_after_connection_lost_are_ignored():
    """When the connection is gone, every stream call is a silent no-op and the handler was aborted once."""
    server, client, stream, streamID = openStream()
    server.connection.connectionLost(Failure(ConnectionLost()))
    stream.writeHeaders(ResponseHead(200))
    stream.write(b"x")
    stream.writeTrailers(((b"a", b"b"),))
    stream.finish()
    stream.reset()
    stream.pauseProducing()
    stream.resumeProducing()
    assert len(server.handlers[streamID].aborted) == 1
    assert server.transport.value() == b""


def test_registering_two_producers_raises():
    """When a second producer is registered without unregistering the first, RuntimeError is raised."""
    _, _, stream, _ = openStream()
    stream.registerProducer(FakeProducer(), True)
    with pytest.raises(RuntimeError):
        stream.registerProducer(FakeProducer(), True)
    stream.unregisterProducer()
    stream.registerProducer(FakeProducer(), True)


def test_producer_registered_after_a_big_write_is_paused_at_once():
    """When a producer registers while the queue is already over the high-water mark, it is paused immediately."""
    server, client, stream, _ = openStream(autoAck=False)
    stream.writeHeaders(ResponseHead(200))
    stream.write(b"x" * (3 * STREAM_HIGH_WATER))
    producer = FakeProducer()
    stream.registerProducer(producer, True)
    assert producer.state == "paused"


def test_reset_drops_queued_data_and_releases_the_producer():
    """When a stream with queued data is reset, nothing more is sent for it and its producer is released."""
    server, client, stream, streamID = openStream(autoAck=False)
    stream.writeHeaders(ResponseHead(200))
    producer = FakeProducer()
    stream.registerProducer(producer, True)
    stream.write(b"x" * 200000)
    client.flush()
    stream.reset(ResetReason.CANCEL)
    client.flush()
    assert client.response(streamID)["reset"] == ErrorCodes.CANCEL
    assert stream.queued == 0 and stream._producer is None
    server.assertNoLeftovers()
