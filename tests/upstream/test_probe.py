"""Active health checks with fake endpoints on a fake clock: what a check sends, how its
outcome is judged (status range, timeout, connect failure), how verdicts take a server
out of rotation and back, and that stopping leaves nothing scheduled."""

from __future__ import annotations

from twisted.internet.error import ConnectionRefusedError

from h2proxy.config.upstreams import HealthCheckConfig
from h2proxy.errors import NoHealthyBackend
from tests.upstream.helpers import OK, Receiver, get, make_pool

CHECK = HealthCheckConfig(
    path="/health", expected_status="200-299", interval=5, timeout=1, healthy_threshold=2, unhealthy_threshold=2
)


def answer_check(endpoint, response: bytes):
    """Complete the pending check's connection and answer it; return its transport."""
    protocol, transport = endpoint.succeed()
    protocol.dataReceived(response)
    return transport


def test_a_check_is_a_get_of_the_path_on_its_own_connection():
    """When a check runs, it connects, sends GET path with the server as Host and a
    recognisable User-Agent, and closes the connection after the answer."""
    pool, clock, [endpoint] = make_pool(health_check=CHECK)
    clock.advance(0)
    protocol, transport = endpoint.succeed()
    assert transport.value() == (
        b"GET /health HTTP/1.1\r\nhost: 127.0.0.1:8000\r\nuser-agent: h2proxy-health-check\r\n\r\n"
    )
    protocol.dataReceived(OK)
    assert transport.disconnecting and pool.idleCount == 0 and pool.probes[0].checks == 1


def test_checks_repeat_at_the_interval():
    """When a check has ended, the next one starts one interval later."""
    pool, clock, [endpoint] = make_pool(health_check=CHECK)
    clock.advance(0)
    answer_check(endpoint, OK)
    clock.advance(4.9)
    assert endpoint.pending == 0
    clock.advance(0.1)
    assert endpoint.pending == 1 and pool.probes[0].checks == 2


def test_failed_checks_take_a_server_out_and_passed_ones_bring_it_back():
    """When checks fail unhealthy_threshold times the server gets no requests; after
    healthy_threshold passes it gets them again."""
    pool, clock, endpoints = make_pool(servers=2, health_check=CHECK)
    clock.advance(0)
    answer_check(endpoints[1], OK)
    for _ in range(2):
        answer_check(endpoints[0], b"HTTP/1.1 503 Busy\r\ncontent-length: 0\r\n\r\n")
        clock.advance(5)
        answer_check(endpoints[1], OK)
    assert not pool.servers[0].available() and pool.servers[1].available()
    for _ in range(4):
        pool.request(get(), Receiver())
    assert endpoints[0].pending == 1 and endpoints[1].pending == 4  # a check on 0, the requests on 1
    answer_check(endpoints[0], OK)
    assert not pool.servers[0].available()
    clock.advance(5)
    answer_check(endpoints[0], OK)
    assert pool.servers[0].available()


def test_a_server_marked_down_has_its_idle_connections_closed():
    """When checks mark a server down, its pooled connections are closed (they are likely dead)."""
    pool, clock, [endpoint] = make_pool(health_check=CHECK)
    pool.request(get(), Receiver())
    protocol, transport = endpoint.succeed()
    protocol.dataReceived(OK)
    assert pool.idleCount == 1
    clock.advance(0)
    endpoint.fail(ConnectionRefusedError())
    clock.advance(5)
    endpoint.fail(ConnectionRefusedError())
    assert pool.idleCount == 0 and transport.disconnecting


def test_every_server_down_answers_503_with_a_retry_after_from_the_checks():
    """When checks mark the only server down, requests fail with 503 at once; Retry-After is
    interval x healthy_threshold."""
    pool, clock, [endpoint] = make_pool(health_check=CHECK)
    for step in range(2):
        clock.advance(0 if step == 0 else 5)
        endpoint.fail(ConnectionRefusedError())
    receiver = Receiver()
    pool.request(get(), receiver)
    clock.advance(0)
    assert isinstance(receiver.error, NoHealthyBackend) and receiver.error.retry_after == 10
    assert "1 marked down by health checks" in str(receiver.error)


def test_a_check_without_an_answer_in_time_fails_and_its_connection_is_aborted():
    """When a check gets no complete answer within its timeout, it counts as failed and its connection is aborted."""
    pool, clock, [endpoint] = make_pool(health_check=CHECK)
    clock.advance(0)
    protocol, transport = endpoint.succeed()
    clock.advance(1)
    assert transport.disconnecting
    clock.advance(5)
    endpoint.fail(ConnectionRefusedError())
    assert not pool.servers[0].available()


def test_a_check_that_cannot_connect_in_time_is_cancelled():
    """When connecting for a check takes longer than its timeout, the attempt is cancelled."""
    pool, clock, [endpoint] = make_pool(health_check=CHECK)
    clock.advance(0)
    clock.advance(1)
    assert endpoint.cancelled == 1 and pool.servers[0].health.up


def test_a_status_outside_the_range_fails():
    """When a check answers with a status outside expected_status (here 302 for 200-299), it fails."""
    pool, clock, [endpoint] = make_pool(health_check=CHECK)
    found = b"HTTP/1.1 302 Found\r\nlocation: /x\r\ncontent-length: 0\r\n\r\n"
    for step in range(2):
        clock.advance(0 if step == 0 else 5)
        answer_check(endpoint, found)
    assert not pool.servers[0].available()


def test_closing_the_pool_stops_the_checks():
    """When the pool closes, the check under way is abandoned and no other is scheduled."""
    pool, clock, [endpoint] = make_pool(health_check=CHECK)
    clock.advance(0)
    protocol, transport = endpoint.succeed()
    fired = []
    pool.close().addCallback(fired.append)
    assert transport.disconnecting and fired == [None]
    assert clock.getDelayedCalls() == []
