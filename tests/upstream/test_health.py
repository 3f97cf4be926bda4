"""ServerHealth alone: passive ejection after consecutive failures, doubling back-off,
half-open trials and recovery; active rise/fall counts; how the two combine."""

from __future__ import annotations

from h2proxy.config.upstreams import HealthCheckConfig, PassiveHealthConfig
from h2proxy.upstream.health import ServerHealth

PASSIVE = PassiveHealthConfig(failures=3, backoff=10.0, max_backoff=35.0)
ACTIVE = HealthCheckConfig(healthy_threshold=2, unhealthy_threshold=3)


def test_consecutive_failures_eject_for_the_backoff():
    """When a server fails `failures` times in a row, it is ejected for `backoff` seconds, then available again."""
    health = ServerHealth(PASSIVE)
    assert health.requestFailed(0) is None and health.requestFailed(1) is None
    assert health.requestFailed(2) == 10.0
    assert not health.available(2) and not health.available(11.9)
    assert health.availableIn(5) == 7.0
    assert health.available(12)


def test_a_success_resets_the_count():
    """When a success comes between failures, they are not consecutive and nothing is ejected."""
    health = ServerHealth(PASSIVE)
    health.requestFailed(0)
    health.requestFailed(0)
    health.requestSucceeded()
    assert health.requestFailed(0) is None and health.requestFailed(0) is None and health.available(0)


def test_failures_while_ejected_change_nothing():
    """When requests that were under way fail during an ejection, the ejection is not extended."""
    health = ServerHealth(PASSIVE)
    for _ in range(3):
        health.requestFailed(0)
    assert health.requestFailed(5) is None and health.ejectedUntil == 10.0


def test_after_an_ejection_one_failure_ejects_again_for_twice_as_long_up_to_the_cap():
    """When the back-off ends and the server fails its trial, it is ejected again at once for
    twice as long, capped by max_backoff."""
    health = ServerHealth(PASSIVE)
    for _ in range(3):
        health.requestFailed(0)
    assert health.requestFailed(10) == 20.0
    assert health.requestFailed(30) == 35.0
    assert health.requestFailed(65) == 35.0


def test_a_success_on_trial_makes_the_server_whole():
    """When the server answers after an ejection, it is reported recovered and needs `failures` failures again."""
    health = ServerHealth(PASSIVE)
    for _ in range(3):
        health.requestFailed(0)
    assert health.requestSucceeded() is True
    assert health.requestSucceeded() is False
    assert health.requestFailed(10) is None and health.requestFailed(10) is None
    assert health.requestFailed(10) == 10.0


def test_zero_failures_never_ejects():
    """When passive_health.failures is 0, no number of failures ejects the server."""
    health = ServerHealth(PassiveHealthConfig(failures=0))
    for _ in range(100):
        assert health.requestFailed(0) is None
    assert health.available(0)


def test_checks_mark_down_after_the_unhealthy_threshold_and_up_after_the_healthy_one():
    """When checks fail `unhealthy_threshold` times in a row the server is down; `healthy_threshold` passes bring it up."""
    health = ServerHealth(PASSIVE, ACTIVE)
    assert health.checkFailed() is False and health.checkFailed() is False
    assert health.checkFailed() is True
    assert not health.available(0) and health.availableIn(0) is None
    assert health.checkPassed(0) is False and not health.available(0)
    assert health.checkPassed(0) is True and health.available(0)


def test_a_pass_between_failed_checks_resets_the_fall_count():
    """When a check passes between failed ones, the failures are not consecutive."""
    health = ServerHealth(PASSIVE, ACTIVE)
    health.checkFailed()
    health.checkFailed()
    health.checkPassed(0)
    assert health.checkFailed() is False and health.up


def test_a_passed_check_ends_a_passive_ejection():
    """When a server ejected by failures passes a health check, it is available at once."""
    health = ServerHealth(PASSIVE, ACTIVE)
    for _ in range(3):
        health.requestFailed(0)
    assert health.checkPassed(1) is True and health.available(1)
    assert health.checkPassed(2) is False


def test_without_active_checks_failed_checks_do_nothing():
    """When no health_check is configured, check results cannot mark the server down."""
    health = ServerHealth(PASSIVE)
    for _ in range(5):
        assert health.checkFailed() is False
    assert health.available(0)


def test_the_last_available_server_is_not_ejected_but_its_failures_count():
    """When a failure would eject the upstream's last available server, nothing is
    ejected; once another server is available again, the next failure ejects it."""
    health = ServerHealth(PASSIVE)
    for when in range(5):
        assert health.requestFailed(when, lastAvailable=True) is None
    assert health.available(5)
    assert health.requestFailed(6) == 10.0


def test_an_answer_ends_a_running_ejection():
    """When an ejected server answers (a last-resort request, or one under way), it is
    available again at once rather than at the end of its back-off."""
    health = ServerHealth(PASSIVE)
    for _ in range(3):
        health.requestFailed(0)
    assert not health.available(1)
    assert health.requestSucceeded() is True
    assert health.available(1) and health.availableIn(1) == 0.0
