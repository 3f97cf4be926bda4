"""The glitch budget (CVE-2019-9511..9518 and friends), in memory: each kind of frame
that costs work and serves no request is counted, a flood of any of them closes the
connection with GOAWAY ENHANCE_YOUR_CALM, and well-behaved traffic costs nothing."""

from __future__ import annotations

from typing import Callable

import pytest
from h2.errors import ErrorCodes
from h2.settings import SettingCodes

from h2proxy.message import ResponseHead
from tests.frontend.frames import rawFrame, requestHeaders
from tests.frontend.support import Client, EchoHandler, Server
from tests.hardening.support import Attacker, calmedDown, goaways, settings

E = ErrorCodes
BUDGET = 50


def openStream(attacker: Attacker) -> int:
    streamID = attacker.nextStream
    attacker.feed(attacker.request(end=False))
    return streamID


def emptyData(attacker: Attacker) -> Callable[[], bytes]:
    streamID = openStream(attacker)
    return lambda: attacker.frames.data(streamID, b"").serialize()


def priority(attacker: Attacker) -> Callable[[], bytes]:
    return lambda: attacker.frames.priority(1001, dependsOn=1003, weight=7).serialize()


def settingsFrames(attacker: Attacker) -> Callable[[], bytes]:
    return lambda: attacker.frames.settings({SettingCodes.MAX_FRAME_SIZE: 16384}).serialize()


def unknownFrames(attacker: Attacker) -> Callable[[], bytes]:
    return lambda: rawFrame(0xEE, 0, 0, b"grease")


def malformedRequests(attacker: Attacker) -> Callable[[], bytes]:
    return lambda: attacker.frames.headers(
        attacker.streamID(), requestHeaders(extra=[(b"X-Upper", b"1")]), flags=["END_HEADERS", "END_STREAM"]
    ).serialize()


def refusedRequests(attacker: Attacker) -> Callable[[], bytes]:
    """Requests answered with a polite 400 (a :path not starting with /)."""
    return lambda: attacker.frames.headers(
        attacker.streamID(), requestHeaders(b"nope"), flags=["END_HEADERS", "END_STREAM"]
    ).serialize()


def framesOnClosedStreams(attacker: Attacker) -> Callable[[], bytes]:
    """DATA on a stream the client itself reset."""
    streamID = openStream(attacker)
    attacker.feed(attacker.frames.rstStream(streamID, E.CANCEL).serialize())
    return lambda: attacker.frames.data(streamID, b"x").serialize()


def emptyContinuations(attacker: Attacker) -> Callable[[], bytes]:
    """Empty CONTINUATION frames inside header blocks that do complete."""
    def block() -> bytes:
        streamID = attacker.streamID()
        fields = attacker.frames.encode(requestHeaders())
        return (
            attacker.frames.headers(streamID, block=fields, flags=["END_STREAM"]).serialize()
            + attacker.frames.continuation(streamID, b"", flags=[]).serialize()
            + attacker.frames.continuation(streamID, b"").serialize()
        )
    return block


FLOODS = {
    "empty DATA frames": emptyData,
    "PRIORITY frames": priority,
    "SETTINGS frames": settingsFrames,
    "unknown frame types": unknownFrames,
    "malformed requests": malformedRequests,
    "requests refused with 400": refusedRequests,
    "frames on closed streams": framesOnClosedStreams,
    "empty CONTINUATION frames": emptyContinuations,
}


@pytest.mark.parametrize("name", FLOODS)
def test_a_flood_over_the_glitch_budget_closes_the_connection(name):
    """When a client sends more glitches of one kind than glitch_budget allows, it gets GOAWAY ENHANCE_YOUR_CALM and the connection closes."""
    attacker = Attacker(settings=settings(glitch_budget=BUDGET, reset_budget=0))
    piece = FLOODS[name](attacker)
    frames = attacker.feed(*(piece() for _ in range(BUDGET + 5)))
    assert calmedDown(attacker, frames), goaways(frames)
    attacker.server.assertNoLeftovers()


@pytest.mark.parametrize("name", FLOODS)
def test_the_same_frames_within_the_budget_are_tolerated(name):
    """When a client sends a few of the same frames, the connection serves on."""
    attacker = Attacker(settings=settings(glitch_budget=BUDGET, reset_budget=0))
    piece = FLOODS[name](attacker)
    frames = attacker.feed(*(piece() for _ in range(5)))
    assert goaways(frames) == [] and not attacker.server.transport.disconnecting


def test_tiny_window_updates_on_a_blocked_stream_are_glitches():
    """When a client gives a stream with queued response bytes its window one byte at a time (data dribble), each update is a glitch and a flood closes the connection."""
    server = Server(settings=settings(glitch_budget=BUDGET))
    client = Client(server, autoAck=False, settings={SettingCodes.INITIAL_WINDOW_SIZE: 1})
    streamID = client.request()
    stream = server.handlers[streamID].stream
    stream.writeHeaders(ResponseHead(200))
    stream.write(b"x" * 100_000)
    client.flush()
    updates = 0
    while not server.transport.disconnecting and updates <= BUDGET:
        client.conn.increment_flow_control_window(1, streamID)
        client.flush()
        updates += 1
    assert server.transport.disconnecting
    assert (ErrorCodes.ENHANCE_YOUR_CALM, streamID) in [(e.error_code, e.last_stream_id) for e in client.events if hasattr(e, "last_stream_id")]
    assert server.connection._glitches.spent > BUDGET >= updates - 1


def test_large_window_updates_are_not_glitches():
    """When a client returns window in large increments, as clients do, nothing is counted."""
    server = Server(settings=settings(glitch_budget=BUDGET))
    client = Client(server)
    streamID = client.request()
    handler = server.handlers[streamID]
    handler.respond(200, b"y" * 2_000_000)
    client.flush()
    assert client.response(streamID)["ended"]
    assert server.connection._glitches.spent == 0


def test_ordinary_traffic_spends_no_glitches():
    """When a client makes a hundred requests with bodies, trailers and a PING, not one glitch is counted."""
    server = Server(handlerClass=EchoHandler, settings=settings(glitch_budget=1))
    client = Client(server)
    for index in range(100):
        streamID = client.request(b"/echo", method=b"POST", body=b"z" * (index * 1000))
        assert client.response(streamID)["ended"]
    client.conn.ping(b"12345678")
    client.flush()
    assert server.connection._glitches.spent == 0
    assert not server.transport.disconnecting


def test_a_stream_over_max_concurrent_streams_is_a_glitch():
    """When a client opens more streams than SETTINGS_MAX_CONCURRENT_STREAMS, each refused one is a glitch."""
    attacker = Attacker(settings=settings(max_concurrent_streams=2, glitch_budget=BUDGET))
    frames = attacker.feed(*(attacker.request(end=False) for _ in range(BUDGET + 3)))
    assert calmedDown(attacker, frames)
