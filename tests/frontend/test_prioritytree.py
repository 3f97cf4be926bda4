"""The priority tree: flat round-robin with the library's refusals while no stream
uses priorities, then exactly priority's own schedule."""

from __future__ import annotations

import priority
from hypothesis import given, settings, strategies as st

from h2proxy.frontend.http2.codec.prioritytree import PriorityTree

_FLAT_OPS = ["insert"] * 4 + ["remove", "block", "unblock", "next"] * 2
_SWITCHING_OPS = ["insert_with", "reprioritize"]


def _ops(names: list[str]) -> st.SearchStrategy:
    return st.lists(
        st.tuples(
            st.sampled_from(names),
            st.integers(min_value=0, max_value=12),
            st.integers(min_value=0, max_value=12),
            st.sampled_from([1, 16, 256]) | st.integers(min_value=0, max_value=257),
            st.booleans(),
        ),
        max_size=120,
    )


def _apply(tree, op, stream, parent, weight, exclusive):
    """One operation; its result or the type of error it raised."""
    try:
        if op == "insert":
            return tree.insert_stream(stream)
        if op == "insert_with":
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


def _states(tree: priority.PriorityTree) -> dict[int, bool]:
    """Each stream of a library tree (not the root) and whether it is unblocked."""
    return {sid: s.active for sid, s in tree._streams.items() if sid}


def _switches(op, parent, weight, exclusive) -> bool:
    return op == "reprioritize" or (op == "insert_with" and bool(parent or exclusive or weight != 16))


def _rebuilt(reference: priority.PriorityTree, maximum: int) -> priority.PriorityTree:
    """A fresh library tree with the reference's streams (all on stream 0, weight 16)
    and states: what the flat mode hands over."""
    tree = priority.PriorityTree(maximum_streams=maximum)
    for sid, active in _states(reference).items():
        tree.insert_stream(sid)
        if not active:
            tree.block(sid)
    return tree


def _compare(ops, maximum: int) -> None:
    """Apply ops to ours and to the library; while ours is flat, every result and error
    is the library's except that a scheduled stream need only be an unblocked one; at the
    switch, the library's tree is rebuilt from the same states; after it, all is equal."""
    ours, theirs = PriorityTree(maximum_streams=maximum, shortPaths=True), priority.PriorityTree(maximum_streams=maximum)
    flat = True
    for op in ops:
        if flat and _switches(*op[:1], *op[2:]):
            flat = False
            theirs = _rebuilt(theirs, maximum)
        if flat and op[0] == "next":
            expected = _states(theirs)
            got = _apply(ours, *op)
            if any(expected.values()):
                assert expected.get(got) is True
            else:
                assert got is priority.DeadlockError
        else:
            assert _apply(ours, *op) == _apply(theirs, *op)
        assert (ours._flat is not None) == flat
        if not flat:
            assert _states(ours) == _states(theirs)
    if flat:
        assert set(ours._flat) == set(_states(theirs))
        assert set(ours._turns) == {sid for sid, active in _states(theirs).items() if active}


@settings(max_examples=300, deadline=None)
@given(ops=_ops(_FLAT_OPS + _SWITCHING_OPS), maximum=st.integers(min_value=1, max_value=14))
def test_same_schedule_as_the_library_once_priorities_are_used(ops, maximum):
    """When any sequence of inserts, removals, blocks and reprioritisations is applied
    to both trees, every result and error is the library's, and so is every scheduled
    stream from the first use of priorities on."""
    _compare(ops, maximum)


@settings(max_examples=300, deadline=None)
@given(ops=_ops(_FLAT_OPS), maximum=st.integers(min_value=1, max_value=14))
def test_flat_mode_refuses_as_the_library(ops, maximum):
    """When no operation uses priorities, the tree stays flat and raises the library's
    errors (duplicate, missing, stream 0, too many, deadlock) for the same operations."""
    _compare(ops, maximum)


@settings(max_examples=300, deadline=None)
@given(ops=_ops(_FLAT_OPS))
def test_flat_mode_is_round_robin(ops):
    """When a stream stays unblocked between two of its turns, every other stream that
    stayed unblocked all that time had a turn in between."""
    tree = PriorityTree(shortPaths=True)
    since: dict[int, int] = {}  # unblocked streams: the step since which they are
    lastTurn: dict[int, int] = {}
    for step, op in enumerate(ops):
        name, stream = op[0], op[1]
        result = _apply(tree, *op)
        if result is not None and not isinstance(result, int):
            continue  # refused: nothing changed
        if name in ("insert", "unblock"):
            since.setdefault(stream, step)
        elif name in ("block", "remove"):
            since.pop(stream, None)
        elif name == "next":
            previous = lastTurn.get(result, -1)
            if previous > since[result]:
                for other, start in since.items():
                    if other != result and start < previous:
                        assert lastTurn.get(other, -1) > previous
            lastTurn[result] = step
    assert tree._flat is not None


def test_switch_keeps_streams_and_states():
    """When a flat tree first sees a priority, the library's tree holds the same
    streams, blocked and unblocked as before, and schedules by the new weights."""
    tree = PriorityTree(shortPaths=True)
    for stream in (1, 3, 5, 7):
        tree.insert_stream(stream)
    tree.block(3)
    next(tree)
    tree.reprioritize(5, weight=256)
    assert tree._flat is None
    assert _states(tree) == {1: True, 3: False, 5: True, 7: True}
    turns = [next(tree) for _ in range(40)]
    assert 3 not in turns and turns.count(5) > turns.count(1) + turns.count(7)


def test_removing_many_streams_keeps_round_robin():
    """When most of 100 sibling streams are removed one by one, the rest are still
    scheduled in turn, flat and in the library's tree alike."""
    for prioritised in (False, True):
        tree = PriorityTree(shortPaths=True)
        for stream in range(1, 201, 2):
            tree.insert_stream(stream)
        if prioritised:
            tree.reprioritize(1)
        for stream in range(1, 181, 2):
            tree.remove_stream(stream)
        assert sorted(next(tree) for _ in range(10)) == list(range(181, 201, 2))
