"""BodyBuffer (memory, then a temporary file, under a limit) and BufferedBodySender
(the push producer that feeds a complete body to the exchange)."""

from __future__ import annotations

import io

import pytest
from twisted.internet.interfaces import IPushProducer

from h2proxy.bridge.body import SEND_CHUNK, BodyBuffer, BodyTooLarge, BufferedBodySender


class TrackedFile(io.BytesIO):
    """A temporary file stand-in that remembers every instance, to check closing."""

    opened: list["TrackedFile"] = []

    def __init__(self) -> None:
        super().__init__()
        TrackedFile.opened.append(self)


@pytest.fixture(autouse=True)
def fresh_files():
    TrackedFile.opened = []


class FakeExchange:
    """Records writes; pauses its producer after C{pauseAfter} writes, like a full socket."""

    def __init__(self, pauseAfter: int | None = None, held: bool = False) -> None:
        self.written: list[bytes] = []
        self.producer = None
        self.finished = None
        self.pauseAfter = pauseAfter
        self.held = held
        self.onWrite = None

    def registerProducer(self, producer, streaming):
        self.producer = producer
        if self.held:
            producer.pauseProducing()

    def unregisterProducer(self):
        self.producer = None

    def write(self, data):
        self.written.append(data)
        if self.onWrite is not None:
            self.onWrite()
        if self.pauseAfter is not None and len(self.written) % self.pauseAfter == 0 and self.producer:
            self.producer.pauseProducing()

    def finishRequest(self, trailers=()):
        self.finished = trailers


def filled(size: int, memoryLimit: int = 1024, limit: int = 10**9) -> BodyBuffer:
    buffer = BodyBuffer(limit=limit, memoryLimit=memoryLimit, openFile=TrackedFile)
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    for start in range(0, size, 1000):
        buffer.write(data[start : start + 1000])
    return buffer


def test_small_body_stays_in_memory():
    """When a body fits the in-memory threshold, no temporary file is opened."""
    buffer = filled(1000)
    assert not buffer.spilled and TrackedFile.opened == []
    buffer.rewind()
    assert buffer.read(600) + buffer.read(600) == bytes(range(256)) * 3 + bytes(232)
    assert buffer.read(10) == b""


def test_large_body_spills_to_a_file_and_reads_back_whole():
    """When a body outgrows memory, it moves to a temporary file and reads back byte for byte."""
    buffer = filled(5000)
    assert buffer.spilled and len(TrackedFile.opened) == 1
    buffer.rewind()
    out = b"".join(iter(lambda: buffer.read(777), b""))
    assert out == bytes(range(256)) * 19 + bytes(136) and buffer.size == 5000
    buffer.close()
    assert TrackedFile.opened[0].closed


def test_over_the_limit_raises():
    """When the body grows past the limit, the write raises BodyTooLarge."""
    buffer = BodyBuffer(limit=10, memoryLimit=4, openFile=TrackedFile)
    buffer.write(b"0123456789")
    with pytest.raises(BodyTooLarge):
        buffer.write(b"x")


def test_close_is_idempotent_and_empties_reads():
    """When a buffer is closed twice, nothing fails and reads return nothing."""
    buffer = filled(3000)
    buffer.close()
    buffer.close()
    assert buffer.read(10) == b""


def test_sender_waits_while_held_then_sends_in_order_and_finishes():
    """When the exchange holds the sender until connected, nothing is sent; resumed, the body goes out whole and the request ends."""
    buffer = filled(3 * SEND_CHUNK + 5, memoryLimit=SEND_CHUNK)
    exchange = FakeExchange(held=True)
    sender = BufferedBodySender(buffer, exchange, onError=pytest.fail)
    assert IPushProducer.providedBy(sender)
    sender.start()
    assert exchange.written == [] and exchange.finished is None
    sender.resumeProducing()
    assert [len(c) for c in exchange.written] == [SEND_CHUNK] * 3 + [5]
    assert exchange.finished == () and exchange.producer is None
    assert TrackedFile.opened[0].closed


def test_sender_stops_when_the_backend_socket_is_full():
    """When the exchange pauses the sender, writing stops until it is resumed."""
    buffer = filled(4 * SEND_CHUNK, memoryLimit=1024)
    exchange = FakeExchange(pauseAfter=1)
    sender = BufferedBodySender(buffer, exchange, onError=pytest.fail)
    sender.start()
    assert len(exchange.written) == 1
    sender.resumeProducing()
    assert len(exchange.written) == 2 and exchange.finished is None


def test_sender_ignores_resume_after_stop():
    """When the exchange resumes the sender after it was stopped (an early response), nothing is read or written."""
    buffer = filled(2 * SEND_CHUNK, memoryLimit=1024)
    exchange = FakeExchange(held=True)
    sender = BufferedBodySender(buffer, exchange, onError=pytest.fail)
    sender.start()
    sender.stopProducing()
    sender.resumeProducing()
    assert exchange.written == [] and TrackedFile.opened[0].closed


def test_sender_stopped_inside_a_write_stops_at_once():
    """When a write makes the exchange fail and stop the sender, no further chunk is read."""
    buffer = filled(3 * SEND_CHUNK, memoryLimit=1024)
    exchange = FakeExchange()
    sender = BufferedBodySender(buffer, exchange, onError=pytest.fail)
    exchange.onWrite = sender.stopProducing
    sender.start()
    assert len(exchange.written) == 1 and exchange.finished is None


def test_sender_reports_read_errors():
    """When the temporary file cannot be read, the error is reported and the buffer closed."""

    class Broken(TrackedFile):
        def read(self, size=-1):
            raise OSError(5, "Input/output error")

    buffer = BodyBuffer(limit=10**6, memoryLimit=4, openFile=Broken)
    buffer.write(b"0123456789")
    errors: list[OSError] = []
    sender = BufferedBodySender(buffer, FakeExchange(), onError=errors.append)
    sender.start()
    assert [e.errno for e in errors] == [5] and TrackedFile.opened[0].closed
