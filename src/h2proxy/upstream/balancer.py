# -*- test-case-name: tests.upstream.test_balancer -*-
"""Which server of an upstream gets the next request. Pure: no I/O, no clock.

The pool asks C{balancer.pick(eligible)} and never orders servers itself; C{eligible}
says which servers may take the request now (healthy, not tried yet, a free
connection slot). Each policy is a small class with that one method, chosen by
L{make_balancer}; a server's weight and its load (requests in flight on it) are read
through the functions given at construction, so the balancers know nothing of pools.

  - L{WeightedRoundRobin} (C{round_robin}): nginx's smooth weighted round robin.
    Over any run of picks each server gets its weight's share, and picks of one
    server are spread out rather than bunched (weights 5,1,1 give a a b a c a a).
  - L{LeastConnections} (C{least_conn}): the server with the fewest requests in
    flight relative to its weight; ties go round in turn, so an idle upstream still
    spreads its load.
  - L{PowerOfTwoChoices} (C{random_two}): two distinct servers drawn at random
    (by weight), the less loaded of the two wins. Nearly as good as least_conn and
    without its herd behaviour when many workers see the same counts.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

Eligible = Callable[[T], bool]


class Balancer(Protocol[T_co]):
    """Picks a server for a request among the eligible ones; None when none is."""

    def pick(self, eligible: Callable[..., bool]) -> T_co | None: ...


def _less_loaded(load_a: int, weight_a: int, load_b: int, weight_b: int) -> bool:
    """Whether load_a/weight_a < load_b/weight_b, in integers."""
    return load_a * weight_b < load_b * weight_a


class WeightedRoundRobin(Generic[T]):
    """Smooth weighted round robin: each pick adds every eligible server's weight to
    its score, takes the highest score, and takes the total off the winner."""

    def __init__(self, servers: Sequence[T], weight: Callable[[T], int]) -> None:
        self._servers = tuple(servers)
        self._weights = [max(1, weight(s)) for s in self._servers]
        self._scores = [0] * len(self._servers)

    def pick(self, eligible: Eligible[T]) -> T | None:
        best = -1
        total = 0
        for index, server in enumerate(self._servers):
            if not eligible(server):
                continue
            self._scores[index] += self._weights[index]
            total += self._weights[index]
            if best < 0 or self._scores[index] > self._scores[best]:
                best = index
        if best < 0:
            return None
        self._scores[best] -= total
        return self._servers[best]


class LeastConnections(Generic[T]):
    """Fewest requests in flight per unit of weight; ties in turn."""

    def __init__(self, servers: Sequence[T], weight: Callable[[T], int], load: Callable[[T], int]) -> None:
        self._servers = tuple(servers)
        self._weight = weight
        self._load = load
        self._start = 0

    def pick(self, eligible: Eligible[T]) -> T | None:
        count = len(self._servers)
        best: T | None = None
        bestIndex = 0
        bestLoad = bestWeight = 0
        for step in range(count):
            index = (self._start + step) % count
            server = self._servers[index]
            if not eligible(server):
                continue
            load, weight = self._load(server), max(1, self._weight(server))
            if best is None or _less_loaded(load, weight, bestLoad, bestWeight):
                best, bestIndex, bestLoad, bestWeight = server, index, load, weight
        if best is not None:
            self._start = (bestIndex + 1) % count
        return best


class PowerOfTwoChoices(Generic[T]):
    """The less loaded (per weight) of two servers drawn at random by weight."""

    def __init__(
        self,
        servers: Sequence[T],
        weight: Callable[[T], int],
        load: Callable[[T], int],
        rng: random.Random,
    ) -> None:
        self._servers = tuple(servers)
        self._weight = weight
        self._load = load
        self._rng = rng

    def pick(self, eligible: Eligible[T]) -> T | None:
        candidates = [s for s in self._servers if eligible(s)]
        if len(candidates) <= 1:
            return candidates[0] if candidates else None
        first = self._draw(candidates)
        candidates.remove(first)
        second = self._draw(candidates)
        if _less_loaded(self._load(second), max(1, self._weight(second)), self._load(first), max(1, self._weight(first))):
            return second
        return first

    def _draw(self, candidates: list[T]) -> T:
        return self._rng.choices(candidates, weights=[max(1, self._weight(s)) for s in candidates])[0]


def make_balancer(
    policy: str,
    servers: Sequence[T],
    *,
    weight: Callable[[T], int],
    load: Callable[[T], int],
    rng: random.Random | None = None,
) -> WeightedRoundRobin[T] | LeastConnections[T] | PowerOfTwoChoices[T]:
    """The balancer for C{policy} (one of the config's choices)."""
    if policy == "least_conn":
        return LeastConnections(servers, weight, load)
    if policy == "random_two":
        return PowerOfTwoChoices(servers, weight, load, rng or random.Random())
    if policy == "round_robin":
        return WeightedRoundRobin(servers, weight)
    raise ValueError(f"unknown balancing policy {policy!r}; expected round_robin, least_conn or random_two")
