"""The priority tree with cheap removal schedules exactly as priority's own."""

from __future__ import annotations

import priority
from hypothesis import given, settings, strategies as st

from h2proxy.frontend.prioritytree import PriorityTree

_ops = st.lists(
    st.tuples(
        st.sampled_from(["insert", "remove", "block", "unblock", "reprioritize", "next"]),
        st.integers(min_value=1, max_value=12),
        st.integers(min_value=0, max_value=12),
        st.integers(min_value=1, max_value=256),
        st.booleans(),
    ),
    max_size=120,
)


def _apply(tree, op, stream, parent, weight, exclusive):
    """One operation; its result or the type of error it raised."""
    try:
        if op == "insert":
            return tree.insert_stream(stream, depends_on=parent or None, weight=weight, exclusive=exclusive)
        if op == "remove":
            return tree.remove_stream(stream)
        if op == "block":
            return tree.block(stream)
        if op == "unblock":
            return tree.unblock(stream)
        if op == "reprioritize":
            return tree.reprioritize(stream, depends_on=parent or None, weight=weight, exclusive=exclusive)
        return next(tree)
    except (priority.PriorityError, StopIteration) as e:  # the library's own refusals
        return type(e)
    except Exception as e:  # noqa: BLE001 - the same unexpected error on both sides
        return type(e)


@settings(max_examples=300, deadline=None)
@given(ops=_ops)
def test_same_schedule_as_the_library(ops):
    """When any sequence of inserts, removals, blocks and reprioritisations is applied
    to both trees, every result, scheduled stream and error is the same."""
    ours, theirs = PriorityTree(), priority.PriorityTree()
    for op in ops:
        assert _apply(ours, *op) == _apply(theirs, *op)
    assert set(ours._streams) == set(theirs._streams)


def test_removing_many_streams_keeps_round_robin():
    """When most of 100 sibling streams are removed one by one, the rest are still
    scheduled in turn."""
    tree = PriorityTree()
    for stream in range(1, 201, 2):
        tree.insert_stream(stream)
    for stream in range(1, 181, 2):
        tree.remove_stream(stream)
    assert sorted(next(tree) for _ in range(10)) == list(range(181, 201, 2))
