"""BatchingTLSProtocol's close: close_notify, then TCP closed without waiting for the
peer; a lingering close over TLS; and nothing touching OpenSSL once the connection
is lost (Twisted drops its SSL.Connection then)."""

from __future__ import annotations

from OpenSSL import SSL
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from tests.frontend.support import FakeProducer
from tests.frontend.tlspair import clientReceives, listenerTLS


class Sink(Protocol):
    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.lost: list[Failure] = []

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)

    def connectionLost(self, reason: Failure) -> None:
        self.lost.append(reason)


def _errors(events: list[dict]) -> list[dict]:
    return [e for e in events if e.get("log_level") is not None and e["log_level"].name in ("error", "critical")]


def test_close_sends_close_notify_and_closes_tcp_without_waiting(tmp_path):
    """When the application closes, the client gets its last bytes and a close_notify,
    and the TCP connection is closed at once (not after the peer's close_notify)."""
    sink = Sink()
    server, transport, client = listenerTLS(tmp_path, sink)
    server.write(b"last")
    server.loseConnection()
    assert clientReceives(client, transport) == (b"last", True)
    assert transport.disconnecting


def test_close_waits_for_a_registered_producer_then_closes(tmp_path):
    """When a producer is still registered, the close waits for it to unregister (it
    may still write), then sends close_notify and closes TCP."""
    server, transport, client = listenerTLS(tmp_path, Sink())
    server.registerProducer(FakeProducer(), True)
    server.loseConnection()
    server.write(b"more")
    assert not transport.disconnecting
    server.unregisterProducer()
    assert clientReceives(client, transport) == (b"more", True)
    assert transport.disconnecting


def test_lingering_close_sends_close_notify_then_half_closes(tmp_path):
    """When the application half-closes (GOAWAY then linger), the client gets a
    close_notify, TCP's write side is shut, what the client still sends is read, and
    the later full close closes TCP."""
    sink = Sink()
    server, transport, client = listenerTLS(tmp_path, sink)
    server.loseWriteConnection()
    assert clientReceives(client, transport) == (b"", True)
    assert transport.writeClosed and not transport.disconnecting
    server.write(b"dropped")
    assert transport.value() == b""
    client.send(b"late")
    server.dataReceived(client.bio_read(65536))
    assert sink.chunks == [b"late"]
    server.loseConnection()
    assert transport.lost and len(sink.lost) == 1


def test_peer_close_notify_after_the_half_close_ends_cleanly(tmp_path, capture_logs):
    """When the client answers our close_notify with its own after TCP's write side
    was shut (so the connection is lost inside that read), nothing raises or logs an
    error: the send BIO is not flushed after OpenSSL's connection is gone."""
    sink = Sink()
    server, transport, client = listenerTLS(tmp_path, sink)
    server.loseWriteConnection()
    clientReceives(client, transport)
    try:
        client.shutdown()
    except SSL.Error:
        pass
    server.dataReceived(client.bio_read(65536))
    assert transport.lost and len(sink.lost) == 1
    assert _errors(capture_logs) == []


def test_calls_after_the_connection_is_lost_do_nothing(tmp_path, capture_logs):
    """When the connection is lost, later writes, flushes and closes (late callbacks)
    neither raise nor log an error, and write nothing."""
    server, transport, client = listenerTLS(tmp_path, Sink())
    server.connectionLost(Failure(ConnectionDone()))
    transport.clear()
    server._flushSendBIO()
    server.write(b"late")
    server.writeSequence([b"late"])
    server.loseWriteConnection()
    server.loseConnection()
    server.abortConnection()
    assert transport.value() == b""
    assert _errors(capture_logs) == []
