"""WaitQueue alone: most urgent first, oldest first within an urgency, removal and
passing over waiters a server may not take."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from h2proxy.message import UpstreamRequest
from h2proxy.upstream.waitqueue import WaitQueue


class Waiter:
    """Just what the queue reads of an exchange."""

    def __init__(self, index: int, urgency: int) -> None:
        self.index = index
        self.request = UpstreamRequest(b"GET", b"/", urgency=urgency)


@given(st.lists(st.integers(-2, 10), max_size=40), st.sets(st.integers(0, 39)))
def test_waiters_leave_by_urgency_then_age(urgencies, removed):
    """When waiters of any urgency (out-of-range ones clamped to 0..7) are queued and some
    removed, the rest leave most urgent first, then in arrival order."""
    queue = WaitQueue()
    waiters = [Waiter(i, u) for i, u in enumerate(urgencies)]
    for waiter in waiters:
        queue.push(waiter)
    for index in removed:
        if index < len(waiters):
            assert queue.remove(waiters[index]) is True
            assert queue.remove(waiters[index]) is False
    left = [w for w in waiters if w.index not in removed]
    assert len(queue) == len(left)
    order = []
    while (waiter := queue.takeFirst(lambda w: True)) is not None:
        order.append(waiter)
    assert order == sorted(left, key=lambda w: (min(max(w.request.urgency, 0), 7), w.index))
    assert len(queue) == 0


def test_take_first_passes_over_waiters_that_are_not_accepted():
    """When the first waiter may not take the freed server, the next acceptable one leaves and the first stays."""
    queue = WaitQueue()
    first, second = Waiter(0, 0), Waiter(1, 5)
    queue.push(first)
    queue.push(second)
    assert queue.takeFirst(lambda w: w is not first) is second
    assert list(queue) == [first] and len(queue) == 1
