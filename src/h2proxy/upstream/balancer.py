# -*- test-case-name: tests.upstream.test_pool -*-
"""Which server of an upstream gets the next request. Pure: no I/O, no clock.

For now only round robin. This module is the seam for issue 5 (weights, least_conn,
random_two, health state): the pool asks C{balancer.pick()} for a server pool and
never orders servers itself, so a new policy is a new class here with the same
C{pick} method, chosen by L{make_balancer}.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar

from twisted.logger import Logger

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

log = Logger()

#: Policies this version implements; the others fall back to round robin (issue 5).
IMPLEMENTED_POLICIES = frozenset({"round_robin"})


class Balancer(Protocol[T_co]):
    """Picks a server for each request; C{None} when there is none."""

    def pick(self) -> T_co | None: ...


class RoundRobin(Generic[T]):
    """Each server in turn, in configuration order."""

    def __init__(self, servers: Sequence[T]) -> None:
        self._servers = tuple(servers)
        self._next = 0

    def pick(self) -> T | None:
        if not self._servers:
            return None
        server = self._servers[self._next]
        self._next = (self._next + 1) % len(self._servers)
        return server


def make_balancer(policy: str, servers: Sequence[T], upstream: str = "") -> RoundRobin[T]:
    """The balancer for C{policy}; unimplemented policies log once and use round robin."""
    if policy not in IMPLEMENTED_POLICIES:
        log.warn(
            "upstream {upstream}: policy {policy} is not implemented yet; using round_robin",
            upstream=upstream,
            policy=policy,
        )
    return RoundRobin(servers)
