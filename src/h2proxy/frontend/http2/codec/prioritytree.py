"""The RFC 7540 priority tree: flat round-robin until priorities are used, then
the library's tree with a cheap stream removal.

Most clients never send RFC 7540 priority information (h2load, curl, and browsers
that moved to RFC 9218's headers). For them every stream depends on stream 0 with
weight 16, and the library's tree is a heap of equal siblings that costs Python
C{__lt__}/C{__eq__} calls on every insert, schedule and removal: about 5 % of a
worker's CPU with 100 streams in flight on one connection. While every stream was
inserted with the defaults and nothing was reprioritised, L{PriorityTree} keeps
the streams in O(1) structures and schedules the unblocked ones round-robin (equal
weights, equal shares, as in the library; only the order among them may differ).
The first non-default insert or any reprioritisation builds the library's tree
from that state (same streams, same blocked/unblocked states) and delegates to
it from then on.

In tree mode, C{priority.PriorityTree.remove_stream} rebuilds the parent's whole
child heap by popping and pushing every entry, so removing one of N streams costs
O(N log N) Python calls. L{PriorityTree.remove_stream} removes the one entry and
restores the heap around it instead: O(N) identity checks and O(log N)
comparisons. The heap entries (level, stream) are totally ordered (stream ids are
unique), so every later pop returns exactly what the library's own removal would.

Both are short paths (L{shortpaths}): with them off, the tree is the library's
from the first stream and removes streams the library's way.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NoReturn, Optional

import priority
from priority.priority import DeadlockError, DuplicateStreamError, MissingStreamError, PseudoStreamError, Stream, TooManyStreamsError

from h2proxy.frontend.http2.codec import internals, shortpaths

DEFAULT_WEIGHT = 16


class PriorityTree(priority.PriorityTree):
    """C{priority.PriorityTree}, flat while no stream uses priorities.

    @ivar _flat: in flat mode, every stream in the tree (insertion order);
        C{None} once the library's tree holds them.
    @ivar _turns: in flat mode, the unblocked streams in the order they get their
        next turn: the first is scheduled and moves to the end.
    @ivar shortPaths: whether flat mode and the cheap removal are used.
    """

    def __init__(self, maximum_streams: int = 1000, *, shortPaths: bool = shortpaths.ENABLED) -> None:
        super().__init__(maximum_streams)
        self.shortPaths = shortPaths
        self._flat: Optional[dict[int, None]] = {} if shortPaths else None
        self._turns: OrderedDict[int, None] = OrderedDict()
        self._nodes = internals.treeStreams(self)
        self._maximum = internals.treeMaximum(self)

    def insert_stream(self, stream_id: int, depends_on: Optional[int] = None, weight: int = DEFAULT_WEIGHT, exclusive: bool = False) -> None:
        flat = self._flat
        if flat is None or depends_on or exclusive or type(weight) is not int or weight != DEFAULT_WEIGHT:
            self._useTree()
            super().insert_stream(stream_id, depends_on, weight, exclusive)
            return
        if stream_id in flat or stream_id == 0:
            raise DuplicateStreamError("Stream %d already in tree" % stream_id)
        if len(flat) + 2 > self._maximum:  # the library counts stream 0 too
            raise TooManyStreamsError("Refusing to insert %d streams into priority tree at once" % (self._maximum + 1))
        flat[stream_id] = None
        self._turns[stream_id] = None  # the library's streams start unblocked

    def reprioritize(self, stream_id: int, depends_on: Optional[int] = None, weight: int = DEFAULT_WEIGHT, exclusive: bool = False) -> None:
        self._useTree()
        super().reprioritize(stream_id, depends_on, weight, exclusive)

    def remove_stream(self, stream_id: int) -> None:
        flat = self._flat
        if flat is not None:
            if stream_id not in flat:
                _refuse(stream_id, "remove")
            del flat[stream_id]
            self._turns.pop(stream_id, None)
            return
        child = self._nodes.get(stream_id) if stream_id and self.shortPaths else None
        if child is None:
            super().remove_stream(stream_id)  # the library's way, or its error
            return
        del self._nodes[stream_id]
        parent = child.parent
        assert parent is not None
        _remove_child(parent, child)

    def block(self, stream_id: int) -> None:
        flat = self._flat
        if flat is None:
            super().block(stream_id)
            return
        if stream_id not in flat:
            _refuse(stream_id, "block")
        self._turns.pop(stream_id, None)

    def unblock(self, stream_id: int) -> None:
        flat = self._flat
        if flat is None:
            super().unblock(stream_id)
            return
        if stream_id not in flat:
            _refuse(stream_id, "unblock")
        turns = self._turns
        if stream_id not in turns:
            turns[stream_id] = None

    def __next__(self) -> int:
        if self._flat is None:
            return super().__next__()
        turns = self._turns
        if not turns:
            raise DeadlockError("No unblocked streams to schedule.")
        stream_id = next(iter(turns))
        turns.move_to_end(stream_id)
        return stream_id

    def _useTree(self) -> None:
        """Leave flat mode: the library's tree gets the same streams (all
        depending on stream 0 with the default weight) in the same states."""
        flat = self._flat
        if flat is None:
            return
        self._flat = None
        turns, self._turns = self._turns, OrderedDict()
        for stream_id in flat:
            super().insert_stream(stream_id)
            if stream_id not in turns:
                super().block(stream_id)


def _refuse(stream_id: int, verb: str) -> NoReturn:
    """The library's refusal of an operation on a stream that the flat tree lacks."""
    if stream_id == 0:
        raise PseudoStreamError("Cannot %s stream 0" % verb)
    raise MissingStreamError("Stream %d not in tree" % stream_id)


def _remove_child(parent: Stream, child: Stream) -> None:
    """C{Stream.remove_child(child)} (children moved up to C{parent}), without
    rebuilding the heap."""
    _remove_identical(parent.children, child)
    queue = parent.child_queue
    for index, entry in enumerate(queue):
        if entry[1] is child:
            break
    else:
        raise AssertionError(f"{child!r} is not in its parent's queue")
    last = queue.pop()
    if index < len(queue):
        queue[index] = last
        internals.restoreHeapAt(queue, index)
    for grandchild in child.children:
        parent.add_child(grandchild)


def _remove_identical(items: list[Stream], item: Stream) -> None:
    for index, candidate in enumerate(items):
        if candidate is item:
            del items[index]
            return
    raise ValueError(f"{item!r} not in list")
