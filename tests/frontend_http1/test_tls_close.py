"""The HTTP/1.1 front end behind a listener's TLS layer: a close it decides on sends
close_notify and closes TCP at once (it used to stay registered as the transport's
producer, so TLS never started its close and the abort timer reset the connection),
and losing the connection over a TCP-like transport logs nothing."""

from __future__ import annotations

from typing import Iterator

import pytest
from twisted.logger import globalLogPublisher

from h2proxy.message import ResponseHead
from tests.frontend.tlspair import clientReceives, listenerTLS
from tests.frontend_http1.harness import make_factory


@pytest.fixture
def capture_logs() -> Iterator[list[dict]]:
    """Every Twisted log event emitted during the test."""
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        yield events
    finally:
        globalLogPublisher.removeObserver(events.append)


def _errors(events: list[dict]) -> list[dict]:
    return [e for e in events if e.get("log_level") is not None and e["log_level"].name in ("error", "critical")]


def _overTLS(tmp_path, **options):
    factory, handlers, clock = make_factory(secure=True, **options)
    protocol = factory.buildProtocol(None)
    server, transport, client = listenerTLS(tmp_path, protocol)
    return protocol, handlers, clock, transport, client


def _request(client, transport, server_protocol, raw: bytes) -> None:
    client.send(raw)
    server_protocol.transport.dataReceived(client.bio_read(65536))


def test_body_of_unknown_length_to_http10_ends_with_close_notify(tmp_path):
    """When an HTTP/1.0 client gets a body of unknown length (ended by the close), it
    receives the whole body and then close_notify, and TCP is closed, at once."""
    protocol, handlers, clock, transport, client = _overTLS(tmp_path)
    _request(client, transport, protocol, b"GET / HTTP/1.0\r\nHost: a\r\n\r\n")
    stream = handlers[0].stream
    stream.writeHeaders(ResponseHead(status=200, headers=()))
    stream.write(b"streamed body")
    stream.finish()
    data, closeNotify = clientReceives(client, transport)
    assert data.endswith(b"\r\n\r\nstreamed body") and closeNotify
    assert transport.disconnecting


UPGRADE = (
    b"GET /chat HTTP/1.1\r\nHost: example.test\r\nConnection: keep-alive, Upgrade\r\n"
    b"Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
SWITCH = ResponseHead(101, ((b"sec-websocket-accept", b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),))


@pytest.mark.parametrize("why", ["connection close", "idle timeout", "handler reset", "tunnel end"])
def test_every_close_sends_close_notify_and_closes_tcp(tmp_path, why):
    """When the front end closes (Connection: close, the idle timeout, a handler
    resetting mid-body as when the backend dies, the backend ending a WebSocket
    tunnel), the client gets close_notify and TCP is closed without waiting for the
    abort timer."""
    protocol, handlers, clock, transport, client = _overTLS(tmp_path, idleTimeout=5.0)
    if why == "connection close":
        _request(client, transport, protocol, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        handlers[0].respond()
    elif why == "idle timeout":
        _request(client, transport, protocol, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        handlers[0].respond()
        clock.advance(5.0)
    elif why == "tunnel end":
        _request(client, transport, protocol, UPGRADE)
        handlers[0].stream.writeHeaders(SWITCH)
        handlers[0].stream.write(b"from the backend")
        handlers[0].stream.finish()
    else:
        _request(client, transport, protocol, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        stream = handlers[0].stream
        stream.writeHeaders(ResponseHead(status=200, headers=((b"content-length", b"100"),)))
        stream.write(b"partial")
        stream.reset()
    _, closeNotify = clientReceives(client, transport)
    assert closeNotify
    assert transport.disconnecting


def test_lost_connection_on_a_tcp_like_transport_logs_nothing(tmp_path, capture_logs):
    """When a connection that served a request is lost on a transport that, like
    tcp.Server, no longer knows its local address by then, nothing raises or logs an
    error, and the addresses still answer."""
    protocol, handlers, clock, transport, client = _overTLS(tmp_path)
    _request(client, transport, protocol, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    handlers[0].respond()
    host, peer = protocol.getHost(), protocol.getPeer()
    transport.connectionLost()
    assert protocol.transport is None
    assert (protocol.getHost(), protocol.getPeer()) == (host, peer)
    assert _errors(capture_logs) == []
