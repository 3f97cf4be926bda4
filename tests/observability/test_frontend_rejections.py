"""The front end counts what its limits and budgets refuse, for the metrics snapshot."""

from __future__ import annotations

from h2.errors import ErrorCodes

from h2proxy.config.model import Http2Config
from h2proxy.frontend.http2.factory import ConnectionOptions, H2Factory
from tests.frontend.frames import FrameFactory
from tests.frontend.support import Server, connected


def factory() -> H2Factory:
    return H2Factory(reactor=None, handlerFactory=None,
                     options=ConnectionOptions(settings=Http2Config(), idleTimeout=None, abortTimeout=None, secure=False))


def test_a_spent_reset_budget_is_counted_on_the_factory():
    """When a client resets more streams than http2.reset_budget allows, the factory counts one reset_budget rejection."""
    server, client = connected(settings=Http2Config(reset_budget=3, glitch_budget=1000))
    tracker = server.connection.tracker = factory()
    for _ in range(5):
        stream = client.request(end=False)
        client.conn.reset_stream(stream, ErrorCodes.CANCEL)
        client.flush()
        if server.transport.disconnecting:
            break
    assert tracker.rejections == {"reset_budget": 1}


def test_streams_after_the_final_goaway_are_counted_as_refused():
    """When a client opens a stream above the final GOAWAY's last stream id, it is refused and counted."""
    server = Server()
    frames = FrameFactory()
    server.handshake(frames)
    tracker = server.connection.tracker = factory()
    server.feed(frames.headers(1, flags=("END_HEADERS",)).serialize())
    server.connection.gracefulShutdown()
    server.clock.advance(5)
    server.feed(frames.headers(3, flags=("END_HEADERS", "END_STREAM")).serialize())
    assert tracker.rejections == {"refused_stream": 1}
