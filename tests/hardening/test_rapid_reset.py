"""Rapid reset (CVE-2023-44487) against the front end, in memory: a stream reset in
the read that opened it never reaches a handler, later resets cancel the handler at
once, and the reset budget closes the connection with ENHANCE_YOUR_CALM."""

from __future__ import annotations

from h2.errors import ErrorCodes

from h2proxy.frontend.http2.codec import MAX_FRAMES_PER_TURN
from tests.hardening.support import Attacker, calmedDown, goaways, settings

E = ErrorCodes


def pair(attacker: Attacker) -> bytes:
    streamID = attacker.nextStream
    return attacker.request() + attacker.frames.rstStream(streamID, E.CANCEL).serialize()


def test_headers_and_reset_in_one_read_never_reach_a_handler():
    """When HEADERS and RST_STREAM of a stream arrive in the same read, no handler is built for it: no backend work starts."""
    attacker = Attacker()
    attacker.feed(*(pair(attacker) for _ in range(50)))
    assert attacker.server.handlers == {}
    attacker.server.assertNoLeftovers()


def test_requests_in_the_read_still_open_at_its_end_are_started():
    """When a read carries reset pairs and one normal request, only the normal request reaches a handler."""
    attacker = Attacker()
    attacker.feed(pair(attacker), pair(attacker), attacker.request(b"/kept"), pair(attacker))
    assert [h.head.path for h in attacker.server.handlers.values()] == [b"/kept"]


def test_a_reset_in_a_later_read_aborts_the_started_handler():
    """When the reset arrives after the read that started the handler, the handler is told at once (so it cancels its backend request)."""
    attacker = Attacker()
    attacker.feed(attacker.request())
    handler = attacker.server.handlers[1]
    attacker.feed(attacker.frames.rstStream(1, E.CANCEL).serialize())
    assert [f.value.byPeer for f in handler.aborted] == [True]


def test_data_arriving_with_the_headers_is_delivered_once_the_handler_starts():
    """When a request's HEADERS and DATA arrive in the same read, the handler gets the body after requestReceived, in order."""
    attacker = Attacker()
    headers = attacker.request(end=False)
    attacker.feed(headers, attacker.frames.data(1, b"body", flags=["END_STREAM"]).serialize())
    handler = attacker.server.handlers[1]
    assert handler.calls == ["requestReceived", "requestDataReceived", "requestEnded"]
    assert handler.body == b"body"


def test_resets_over_the_budget_close_the_connection_with_enhance_your_calm():
    """When a client resets more streams before their response than reset_budget allows, it gets GOAWAY ENHANCE_YOUR_CALM and the connection closes."""
    attacker = Attacker(settings=settings(reset_budget=100, glitch_budget=0))
    frames = attacker.feed(*(pair(attacker) for _ in range(101)))
    assert calmedDown(attacker, frames)
    assert goaways(frames)[0][1] == 201  # the last stream accepted
    attacker.server.assertNoLeftovers()


def test_resets_within_the_budget_leave_the_connection_open():
    """When a client resets streams at a rate the budget allows, the connection serves on."""
    attacker = Attacker(settings=settings(reset_budget=100, budget_window=10.0, glitch_budget=0))
    for _ in range(10):
        frames = attacker.feed(*(pair(attacker) for _ in range(90)))
        assert goaways(frames) == []
        attacker.server.clock.advance(10)
    assert not attacker.server.transport.disconnecting


def test_a_reset_after_the_response_completed_is_not_counted():
    """When a client resets a stream whose response is complete, it costs nothing against the reset budget."""
    attacker = Attacker(settings=settings(reset_budget=1, glitch_budget=0))
    for _ in range(5):
        streamID = attacker.nextStream
        attacker.feed(attacker.request())
        attacker.server.handlers[streamID].respond(200, b"ok")
        attacker.server.clock.advance(0)  # the response goes out
        attacker.feed(attacker.frames.rstStream(streamID, E.CANCEL).serialize())
    assert not attacker.server.transport.disconnecting
    assert attacker.connection._resets.spent == 0


def test_budget_zero_disables_the_reset_limit():
    """When reset_budget and glitch_budget are 0, even thousands of resets leave the connection open (and still start no handler)."""
    attacker = Attacker(settings=settings(reset_budget=0, glitch_budget=0))
    frames = attacker.feed(*(pair(attacker) for _ in range(5000)))
    assert goaways(frames) == [] and attacker.server.handlers == {}


def test_a_read_of_many_frames_is_handled_a_turn_at_a_time():
    """When one read holds more frames than MAX_FRAMES_PER_TURN, a turn's worth is handled, reading pauses, and the rest is handled at the next reactor turn, after which reading resumes."""
    attacker = Attacker(settings=settings(reset_budget=0, glitch_budget=0))
    pairs = MAX_FRAMES_PER_TURN  # two frames each
    attacker.server.feed(b"".join(pair(attacker) for _ in range(pairs)) + attacker.request(b"/last"))
    transport = attacker.server.transport
    assert transport.producerState == "paused"
    assert attacker.server.handlers == {}  # nothing starts before the read is all handled
    attacker.server.clock.advance(0)
    assert transport.producerState == "producing"
    assert [h.head.path for h in attacker.server.handlers.values()] == [b"/last"]
