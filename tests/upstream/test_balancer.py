"""The balancers alone: shares and smoothness of weighted round robin, least_conn's
choice by load per weight, random_two's choice of the less loaded of two; all three
pick only eligible servers."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from h2proxy.upstream.balancer import (
    LeastConnections,
    PowerOfTwoChoices,
    WeightedRoundRobin,
    make_balancer,
)


@dataclass(eq=False)
class Server:
    name: str
    weight: int = 1
    load: int = 0


def weight(server: Server) -> int:
    return server.weight


def load(server: Server) -> int:
    return server.load


def anyone(server: Server) -> bool:
    return True


def servers(*weights: int) -> list[Server]:
    return [Server("abcdefghij"[i], w) for i, w in enumerate(weights)]


def test_round_robin_cycles_in_order_with_equal_weights():
    """When every weight is 1, round robin picks each server in configuration order."""
    balancer = WeightedRoundRobin(servers(1, 1, 1), weight)
    assert "".join(balancer.pick(anyone).name for _ in range(7)) == "abcabca"


def test_round_robin_is_smooth():
    """When weights are 5, 1, 1, the heavy server's picks are spread out (nginx's sequence)."""
    balancer = WeightedRoundRobin(servers(5, 1, 1), weight)
    assert "".join(balancer.pick(anyone).name for _ in range(7)) == "aabacaa"


@given(st.lists(st.integers(1, 20), min_size=1, max_size=8), st.integers(1, 5))
def test_round_robin_gives_exact_shares_over_whole_rounds(weights, rounds):
    """When the picks cover whole rounds (the sum of the weights), each server gets exactly its weight's share."""
    pool = servers(*weights)
    balancer = WeightedRoundRobin(pool, weight)
    counts = Counter(balancer.pick(anyone).name for _ in range(sum(weights) * rounds))
    assert counts == Counter({s.name: s.weight * rounds for s in pool})


def test_round_robin_skips_ineligible_servers():
    """When a server is not eligible, the others share the picks; with none eligible the pick is None."""
    pool = servers(1, 1, 1)
    balancer = WeightedRoundRobin(pool, weight)
    assert {balancer.pick(lambda s: s.name != "b").name for _ in range(6)} == {"a", "c"}
    assert balancer.pick(lambda s: False) is None
    assert WeightedRoundRobin([], weight).pick(anyone) is None


def test_least_conn_picks_the_least_loaded():
    """When one server holds more requests in flight, least_conn sends the next request elsewhere."""
    pool = servers(1, 1, 1)
    pool[0].load, pool[1].load, pool[2].load = 5, 0, 3
    assert LeastConnections(pool, weight, load).pick(anyone) is pool[1]


def test_least_conn_weighs_load_by_weight():
    """When weights differ, least_conn compares load per unit of weight (4 of 4 beats 2 of 1)."""
    pool = servers(4, 1)
    pool[0].load, pool[1].load = 3, 1
    assert LeastConnections(pool, weight, load).pick(anyone) is pool[0]


def test_least_conn_breaks_ties_in_turn():
    """When loads are equal, least_conn goes round the servers rather than always taking the first."""
    balancer = LeastConnections(servers(1, 1, 1), weight, load)
    assert "".join(balancer.pick(anyone).name for _ in range(6)) == "abcabc"


def test_least_conn_only_considers_eligible_servers():
    """When the least loaded server is not eligible, the next least loaded is picked."""
    pool = servers(1, 1)
    pool[0].load = 9
    assert LeastConnections(pool, weight, load).pick(lambda s: s.name == "a") is pool[0]
    assert LeastConnections(pool, weight, load).pick(lambda s: False) is None


def test_random_two_prefers_the_less_loaded_of_two():
    """When one of two servers is loaded, random_two always picks the other."""
    pool = servers(1, 1)
    pool[0].load = 10
    balancer = PowerOfTwoChoices(pool, weight, load, random.Random(7))
    assert {balancer.pick(anyone).name for _ in range(50)} == {"b"}


def test_random_two_avoids_the_most_loaded_server():
    """When one server of several is heavily loaded, random_two never picks it (it loses every comparison)."""
    pool = servers(1, 1, 1, 1)
    pool[2].load = 100
    balancer = PowerOfTwoChoices(pool, weight, load, random.Random(3))
    picks = Counter(balancer.pick(anyone).name for _ in range(400))
    assert picks["c"] == 0 and set(picks) == {"a", "b", "d"}


def test_random_two_draws_by_weight():
    """When loads are equal, random_two's picks follow the weights (9:1 gives the heavy one about 90%)."""
    pool = servers(9, 1)
    balancer = PowerOfTwoChoices(pool, weight, load, random.Random(11))
    picks = Counter(balancer.pick(anyone).name for _ in range(1000))
    assert 850 < picks["a"] < 950


def test_random_two_with_one_or_no_eligible_server():
    """When only one server is eligible it is picked; with none, the pick is None."""
    pool = servers(1, 1)
    balancer = PowerOfTwoChoices(pool, weight, load, random.Random(1))
    assert balancer.pick(lambda s: s.name == "b") is pool[1]
    assert balancer.pick(lambda s: False) is None


@pytest.mark.parametrize(
    "policy, kind",
    [("round_robin", WeightedRoundRobin), ("least_conn", LeastConnections), ("random_two", PowerOfTwoChoices)],
)
def test_make_balancer_by_policy(policy, kind):
    """When a policy is named, make_balancer builds its class."""
    assert isinstance(make_balancer(policy, servers(1), weight=weight, load=load), kind)


def test_make_balancer_refuses_unknown_policies():
    """When a policy is unknown (the config loader should have refused it), make_balancer raises."""
    with pytest.raises(ValueError, match="unknown balancing policy 'fastest'"):
        make_balancer("fastest", servers(1), weight=weight, load=load)
