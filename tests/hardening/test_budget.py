"""The leaky bucket behind the reset and glitch budgets."""

from __future__ import annotations

from twisted.internet.task import Clock

from h2proxy.frontend.http2.budget import Budget


def test_a_burst_up_to_the_capacity_is_allowed_and_one_more_is_not():
    """When a client spends its whole capacity at once it is within budget; one unit more exceeds it."""
    budget = Budget(10, 10.0, Clock())
    assert not any(budget.charge() for _ in range(10))
    assert budget.charge()


def test_the_bucket_drains_over_the_window():
    """When the window has passed, the whole capacity is available again."""
    clock = Clock()
    budget = Budget(10, 10.0, clock)
    for _ in range(10):
        budget.charge()
    clock.advance(10)
    assert not any(budget.charge() for _ in range(10))


def test_a_steady_rate_under_capacity_per_window_is_never_over():
    """When charges come at less than capacity per window, the budget is never exceeded, however long it goes on."""
    clock = Clock()
    budget = Budget(10, 10.0, clock)
    for _ in range(1000):
        assert not budget.charge()
        clock.advance(1.1)


def test_a_steady_rate_over_capacity_per_window_is_caught():
    """When charges come faster than capacity per window, the budget is exceeded eventually."""
    clock = Clock()
    budget = Budget(10, 10.0, clock)
    over = False
    for _ in range(200):
        over = over or budget.charge()
        clock.advance(0.5)
    assert over


def test_zero_capacity_disables_the_budget():
    """When the capacity is 0, no amount of charges exceeds it."""
    budget = Budget(0, 10.0, Clock())
    assert not any(budget.charge(1000) for _ in range(1000))


def test_spent_counts_every_unit():
    """When units are charged, spent adds them up for the log line."""
    budget = Budget(100, 10.0, Clock())
    budget.charge(3)
    budget.charge()
    assert budget.spent == 4
