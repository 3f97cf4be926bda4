"""The send loop and both directions of backpressure: priority interleaving, pass sizes,
transport pauses, flow-control windows, producers paused and resumed, window credit
only for consumed request data."""

from __future__ import annotations

import pytest

from h2.settings import SettingCodes
from hyperframe.frame import DataFrame, WindowUpdateFrame

from h2proxy.config.model import Http2Config
from h2proxy.frontend.http2.sendloop import SEND_PASS_BYTES
from h2proxy.frontend.http2.stream import STREAM_HIGH_WATER, STREAM_LOW_WATER
from h2proxy.message import ResponseHead
from tests.frontend.frames import framesFromBytes, requestHeaders
from tests.frontend.support import Client, FakeProducer, RecordingHandler, Server, connected

BIG = 2**31 - 1
CHUNK = 16 * 1024


def bigWindowClient(server: Server) -> Client:
    """A client that lets the server send as much as it likes."""
    client = Client(server, settings={SettingCodes.INITIAL_WINDOW_SIZE: BIG})
    client.conn.increment_flow_control_window(BIG - 65535)
    client.flush()
    return client


def runOneTurn(clock) -> None:
    """Run the calls due now, leaving those they schedule for the next turn
    (C{Clock.advance(0)} would run those too)."""
    due = [call for call in clock.getDelayedCalls() if call.getTime() <= clock.seconds()]
    for call in due:
        clock.calls.remove(call)
        call.called = 1
        call.func(*call.args, **call.kw)


def dataFrames(frames, streamID=None):
    return [f for f in frames if isinstance(f, DataFrame) and (streamID is None or f.stream_id == streamID)]


def openStream(client: Client, server: Server, **priority) -> int:
    streamID = client.conn.get_next_available_stream_id()
    client.conn.send_headers(streamID, requestHeaders(), end_stream=True, **priority)
    client.flush()
    stream = server.handlers[streamID].stream
    stream.writeHeaders(ResponseHead(200))
    return streamID


def test_frames_are_interleaved_by_priority_weight():
    """When two streams have data and windows, one pass interleaves their DATA frames in proportion to their weights."""
    server = Server()
    client = bigWindowClient(server)
    heavy = openStream(client, server, priority_weight=192)
    light = openStream(client, server, priority_weight=64)
    server.output()
    for streamID in (heavy, light):
        server.handlers[streamID].stream.write(b"x" * (1 << 20))
    runOneTurn(server.clock)
    order = [f.stream_id for f in dataFrames(server.frames())]
    assert len(order) == SEND_PASS_BYTES // CHUNK
    assert order.count(heavy) == 3 * order.count(light)
    assert order[:4].count(light) == 1  # interleaved, not one stream after the other


def test_dependent_stream_waits_for_its_parent():
    """When a stream depends exclusively on another that has data, it is sent nothing until the parent is blocked."""
    server = Server()
    client = bigWindowClient(server)
    parent = openStream(client, server)
    child = openStream(client, server, priority_depends_on=parent, priority_exclusive=True)
    server.output()
    server.handlers[child].stream.write(b"c" * 40000)
    server.handlers[parent].stream.write(b"p" * 40000)
    server.clock.advance(0)
    order = [f.stream_id for f in dataFrames(server.frames())]
    assert order == [parent] * 3 + [child] * 3


def test_one_scheduled_pass_per_reactor_turn():
    """When a stream writes many chunks outside a read, one callLater(0) is pending, not one per chunk, and that pass sends them all."""
    server, client = connected()
    streamID = openStream(client, server)
    server.output()
    stream = server.handlers[streamID].stream
    for _ in range(10):
        stream.write(b"y" * 1000)
    assert [call.getTime() for call in server.clock.getDelayedCalls()] == [0]
    server.clock.advance(0)
    assert b"".join(f.data for f in dataFrames(server.frames())) == b"y" * 10000
    assert server.clock.getDelayedCalls() == []


def test_a_pass_is_bounded_and_the_next_one_follows_on_the_next_turn():
    """When more than a pass worth of data is ready, a pass sends SEND_PASS_BYTES in one write and the rest follows on later turns."""
    server = Server()
    client = bigWindowClient(server)
    streamID = openStream(client, server)
    server.output()
    server.handlers[streamID].stream.write(b"z" * (1 << 20))
    sizes = []
    while server.clock.getDelayedCalls():
        runOneTurn(server.clock)
        sizes.append(sum(len(f.data) for f in dataFrames(server.frames())))
    assert sizes == [SEND_PASS_BYTES] * 4


def test_paused_transport_stops_the_loop_and_resume_restarts_it():
    """When the transport pauses the connection, nothing is sent, and on resume the queued data goes out."""
    server, client = connected()
    streamID = openStream(client, server)
    server.output()
    server.connection.pauseProducing()
    server.handlers[streamID].stream.write(b"q" * 5000)
    server.clock.advance(0)
    assert server.output() == b""
    server.connection.resumeProducing()
    server.clock.advance(0)
    assert b"".join(f.data for f in dataFrames(server.frames())) == b"q" * 5000


def writeWhileProducing(stream, producer, limit=40):
    """A backend that writes 16 KiB chunks for as long as it is not paused."""
    written = 0
    for _ in range(limit):
        if producer.state != "producing":
            break
        stream.write(b"b" * CHUNK)
        written += CHUNK
    return written


def test_exhausted_window_pauses_the_producer_and_window_update_resumes_it():
    """When the client's window is exhausted, the stream's queue fills to the high-water mark and pauses the backend; the client's WINDOW_UPDATE drains it and resumes the backend."""
    server, client = connected(autoAck=False)
    streamID = openStream(client, server)
    stream = server.handlers[streamID].stream
    producer = FakeProducer()
    stream.registerProducer(producer, True)
    written = writeWhileProducing(stream, producer)
    assert producer.state == "paused" and written == STREAM_HIGH_WATER + CHUNK
    client.flush()
    received = sum(len(e.data) for e in client.events if hasattr(e, "data") and getattr(e, "stream_id", 0) == streamID)
    assert received == 65535
    assert producer.state == "paused" and stream.queued == written - 65535
    assert server.clock.getDelayedCalls() == []  # waiting for window costs nothing
    client.conn.increment_flow_control_window(1 << 20, streamID)
    client.conn.increment_flow_control_window(1 << 20)
    client.flush()
    assert producer.state == "producing" and producer.resumes == 1
    assert stream.queued < STREAM_LOW_WATER
    assert written - stream.queued == sum(len(e.data) for e in client.events if hasattr(e, "data") and getattr(e, "stream_id", 0) == streamID)


def test_paused_transport_reaches_every_producer():
    """When the transport is paused, every writing stream's producer is paused at its high-water mark, whatever the windows; on resume they drain and resume."""
    server = Server()
    client = bigWindowClient(server)
    streams = [openStream(client, server) for _ in range(3)]
    server.output()
    server.connection.pauseProducing()
    producers = []
    for streamID in streams:
        stream = server.handlers[streamID].stream
        producer = FakeProducer()
        stream.registerProducer(producer, True)
        writeWhileProducing(stream, producer)
        producers.append(producer)
    server.clock.advance(0)
    assert server.output() == b""
    assert [p.state for p in producers] == ["paused"] * 3
    server.connection.resumeProducing()
    while server.clock.getDelayedCalls():
        server.clock.advance(0)
    assert [p.state for p in producers] == ["producing"] * 3
    assert all(server.handlers[s].stream.queued == 0 for s in streams)


def test_pull_producer_is_asked_for_more_while_the_queue_is_low():
    """When a pull producer is registered, it is asked for a chunk whenever the queue is below the low-water mark, until it finishes."""
    server, client = connected()
    streamID = openStream(client, server)
    stream = server.handlers[streamID].stream

    class Pull:
        sent = 0

        def resumeProducing(self):
            if self.sent >= 10 * CHUNK:
                stream.unregisterProducer()
                stream.finish()
                return
            self.sent += CHUNK
            stream.write(b"p" * CHUNK)

        def stopProducing(self):
            pass

    stream.registerProducer(Pull(), False)
    client.flush()
    response = client.response(streamID)
    assert response["body"] == b"p" * 10 * CHUNK and response["ended"]


class PausingHandler(RecordingHandler):
    """Pauses its stream as soon as the request arrives (a backend not connected yet)."""

    def requestReceived(self, head):
        super().requestReceived(head)
        self.stream.pauseProducing()


@pytest.mark.short_paths  # the frames of one read arrive as one chunk
def test_paused_stream_returns_no_credit_until_data_is_consumed():
    """When a stream is paused, received DATA is buffered without window credit (the client is held back), and credit returns only as the handler consumes it."""
    settings = Http2Config(initial_window_size=65535, connection_window_size=1 << 20)
    server, client = connected(handlerClass=PausingHandler, settings=settings)
    streamID = client.request(b"/up", b"POST", body=b"u" * 65535, end=False)
    handler = server.handlers[streamID]
    assert handler.chunks == []
    assert client.conn.local_flow_control_window(streamID) == 0
    order = []
    credit = server.connection.openStreamWindow

    def spy(sid, increment):
        order.append(("credit", increment))
        credit(sid, increment)

    server.connection.openStreamWindow = spy
    original = handler.requestDataReceived
    handler.requestDataReceived = lambda data: (order.append(("data", len(data))), original(data))
    server.output()
    handler.stream.resumeProducing()
    frames = framesFromBytes(server.output())
    assert handler.body == b"u" * 65535
    assert order == [("data", 65535), ("credit", 65535)]  # the frames of one read are one chunk
    updates = [f for f in frames if isinstance(f, WindowUpdateFrame)]
    assert {f.stream_id for f in updates} == {streamID}
    credited = sum(f.window_increment for f in updates)
    assert credited >= 65535 // 2  # h2 batches the increments
    client.conn.receive_data(b"".join(f.serialize() for f in frames))
    assert client.conn.local_flow_control_window(streamID) == credited


def test_handler_pausing_mid_buffer_stops_delivery():
    """When the handler pauses again while buffered chunks are handed over, delivery stops there and resumes later."""
    settings = Http2Config(initial_window_size=65535)
    server, client = connected(handlerClass=PausingHandler, settings=settings)
    streamID = client.request(b"/up", b"POST", body=b"v" * 40000)
    handler = server.handlers[streamID]
    stream = handler.stream
    handler.requestDataReceived = lambda data: (handler.chunks.append(data), stream.pauseProducing())
    stream.resumeProducing()
    assert len(handler.chunks) == 1 and handler.calls == ["requestReceived"]
    while handler.calls[-1] != "requestEnded":
        stream.resumeProducing()
    assert handler.body == b"v" * 40000


def test_remaining_outbound_window_counts_queued_data():
    """When data is queued, remainingOutboundWindow is the flow-control window minus what is queued."""
    server, client = connected(autoAck=False)
    streamID = openStream(client, server)
    stream = server.handlers[streamID].stream
    assert server.connection.remainingOutboundWindow(streamID) == 65535
    stream.write(b"r" * 100000)
    assert server.connection.remainingOutboundWindow(streamID) == 65535 - 100000
    client.flush()
    assert server.connection.remainingOutboundWindow(streamID) == 0 - (100000 - 65535)


def test_large_write_is_sliced_without_copying_the_rest():
    """When one large chunk is queued, frames are cut from it with memoryview slices of the original bytes."""
    server, client = connected(autoAck=False)
    streamID = openStream(client, server)
    stream = server.handlers[streamID].stream
    big = b"m" * 200000
    stream.write(big)
    client.flush()
    head = stream.queue[0]
    assert isinstance(head, memoryview) and head.obj is big
    assert len(stream.queue) == 1 and stream.queued == 200000 - 65535
