"""H2Connection behind a listener's TLS layer: a close it decides on (idle timeout,
connection error) sends GOAWAY, then close_notify and TCP's half-close at once (the
connection used to stay registered as the transport's producer, so TLS never started
its close, and the half-close went around TLS to TCP: the client saw a truncation),
and the lost connection logs nothing."""

from __future__ import annotations

from hyperframe.frame import GoAwayFrame
from twisted.internet.testing import MemoryReactorClock

from h2proxy.config.model import Http2Config
from h2proxy.frontend.http2.connection import H2Connection
from h2proxy.frontend.http2.lifecycle import LINGER
from tests.frontend.frames import FrameFactory, framesFromBytes
from tests.frontend.support import RecordingHandler
from tests.frontend.tlspair import clientReceives, listenerTLS

IDLE = 5.0


def _errors(events: list[dict]) -> list[dict]:
    return [e for e in events if e.get("log_level") is not None and e["log_level"].name in ("error", "critical")]


def _overTLS(tmp_path):
    clock = MemoryReactorClock()
    connection = H2Connection(
        reactor=clock, handlerFactory=RecordingHandler, settings=Http2Config(),
        idleTimeout=IDLE, abortTimeout=120.0, secure=True,
    )
    server, transport, client = listenerTLS(tmp_path, connection)
    frames = FrameFactory()
    client.send(frames.preamble() + frames.settings().serialize())
    server.dataReceived(client.bio_read(65536))
    clientReceives(client, transport)
    return connection, server, transport, client, clock


def _goaways(data: bytes) -> list[GoAwayFrame]:
    return [frame for frame in framesFromBytes(data) if isinstance(frame, GoAwayFrame)]


def test_idle_timeout_sends_goaway_then_close_notify_and_lingers(tmp_path, capture_logs):
    """When the connection idles out, the client gets GOAWAY then close_notify at once,
    TCP's write side is shut, and the socket closes when the linger ends (not at the
    abort timer), with nothing logged at error level."""
    connection, server, transport, client, clock = _overTLS(tmp_path)
    clock.advance(IDLE)
    data, closeNotify = clientReceives(client, transport)
    assert len(_goaways(data)) == 1 and closeNotify
    assert transport.writeClosed
    clock.advance(LINGER)
    assert transport.lost
    assert _errors(capture_logs) == []


def test_connection_error_sends_goaway_then_close_notify(tmp_path, capture_logs):
    """When the client breaks the protocol, it gets GOAWAY PROTOCOL_ERROR then
    close_notify; its own close_notify then ends the connection cleanly."""
    connection, server, transport, client, clock = _overTLS(tmp_path)
    client.send(b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x")  # DATA on stream 0
    server.dataReceived(client.bio_read(65536))
    data, closeNotify = clientReceives(client, transport)
    assert [frame.error_code for frame in _goaways(data)] == [1] and closeNotify
    try:
        client.shutdown()
    except Exception:
        pass
    server.dataReceived(client.bio_read(65536))
    assert transport.lost and connection.transport is None
    assert connection.getHost() is not None
    assert _errors(capture_logs) == []
