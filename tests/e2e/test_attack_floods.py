"""HTTP/2 floods against the real daemon (CVE-2023-44487 rapid reset, the 2024
CONTINUATION flood, HPACK bombs, the 2019 family CVE-2019-9511..9518): each attack is
run by h2proxy_tools.audit over TLS, bounded in count and time, and must end as
docs/security.md says (GOAWAY ENHANCE_YOUR_CALM, or the connection dropped), after
which the daemon serves a new connection at once, stayed under the memory bound, and
its backend saw nothing the attack should not have produced."""

from __future__ import annotations

from typing import Callable

import pytest

from h2proxy_tools import audit
from h2proxy_tools.audit import ENHANCE_YOUR_CALM, Outcome, Target
from tests.hardening.daemon import LARGE, Attacked, start_attacked

#: attack -> (what to run, the paths its requests may legitimately leave in the backend log).
FLOODS: dict[str, tuple[Callable[[Target], Outcome], set[str]]] = {
    "continuation-flood": (audit.continuationFlood, set()),
    "header-block-size": (audit.headerBlockSize, set()),
    "hpack-bomb": (audit.hpackBomb, set()),
    "data-dribble": (audit.dataDribble, {LARGE}),
    "settings-flood": (audit.settingsFlood, set()),
    "priority-churn": (audit.priorityChurn, set()),
    "reset-flood": (audit.resetFlood, set()),
    "zero-length-headers": (audit.zeroLengthHeaders, set()),
    "empty-frames": (audit.emptyFrames, {"/attack/empty-frames"}),
}


@pytest.fixture(scope="module")
def daemon(workdir, origin, certificate):
    attacked = start_attacked(workdir / "floods", origin, certificate)
    yield attacked
    attacked.proxy.stop()


@pytest.mark.parametrize("name", FLOODS)
def test_flood_ends_in_enhance_your_calm(daemon: Attacked, name: str):
    """When a client floods the daemon with frames that cost work and serve no request, it gets GOAWAY ENHANCE_YOUR_CALM; the daemon then serves at once, within its memory bound, and the backend saw nothing of the flood."""
    attack, allowed = FLOODS[name]
    mark = daemon.mark()
    outcome = attack(daemon.target(path=f"/attack/{name}"))
    assert outcome.goaway == ENHANCE_YOUR_CALM, outcome
    daemon.assertSurvived(mark, allowed)


@pytest.mark.parametrize("listener", ["tls", "h2c"])
def test_rapid_reset_with_the_default_budget(daemon: Attacked, listener: str):
    """When a client sends HEADERS+RST_STREAM pairs in bulk, it gets GOAWAY ENHANCE_YOUR_CALM after about reset_budget of them, and the backend sees fewer than 1% of them."""
    mark = daemon.mark()
    outcome = audit.rapidReset(daemon.target(listener, path="/attack/rapid-reset"), pairs=20_000)
    assert outcome.goaway == ENHANCE_YOUR_CALM or outcome.closed, outcome
    leaked = daemon.requestsSince(mark).count("/attack/rapid-reset")
    assert leaked < 0.01 * outcome.sent, f"{leaked} of {outcome.sent} reset requests reached the backend"
    daemon.assertSurvived(mark, {"/attack/rapid-reset"}, listener)


def test_ping_flood_without_reading_is_dropped(daemon: Attacked):
    """When a client sends PINGs and never reads the ACKs, the daemon drops it once max_control_buffer bytes of ACKs are waiting, and keeps serving."""
    mark = daemon.mark()
    outcome = audit.pingFlood(daemon.target(path="/attack/ping-flood"))
    assert outcome.closed and outcome.sent < 2_000_000, outcome
    daemon.assertSurvived(mark)


def test_an_oversized_header_list_gets_431_before_the_backend(daemon: Attacked):
    """When a request's decoded header list is over max_header_list_size (but not a bomb), it gets 431 on its stream, the connection serves on, and the backend never sees it."""
    mark = daemon.mark()
    connection = audit.connect(daemon.target("tls"))
    try:
        streamID = connection.streamID()
        fields = connection.requestFields("/attack/431", extra=[(b"x-big-%d" % i, b"v" * 1000) for i in range(80)])
        connection.send(audit.blockFrames(streamID, connection.encoder.encode(fields)))
        connection.waitFor(lambda: connection.finished(streamID), 10)
        assert connection.statuses.get(streamID) == 431 and connection.goaway is None
        follow = connection.request("/after-431")
        connection.waitFor(lambda: follow in connection.ended, 10)
        assert connection.statuses.get(follow) == 200
    finally:
        connection.close()
    daemon.assertSurvived(mark, {"/after-431"})
