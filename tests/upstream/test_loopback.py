"""Issue 5's acceptance at the pool, against real origins on 127.0.0.1 (one private
reactor in this process; see tests/upstream/origins.py): shares per policy,
connection reuse and caps, the queue under a burst, failover, ejection and
re-admission, active checks, and which failed requests are retried."""

from __future__ import annotations

import socket
import pytest

from h2proxy.config.upstreams import (
    HealthCheckConfig,
    PassiveHealthConfig,
    QueueConfig,
    ServerConfig,
    UpstreamConfig,
)
from h2proxy.errors import BackendClosed, QueueFull
from h2proxy.message import UpstreamRequest
from h2proxy.upstream.connector import Connector, default_endpoint_factory
from h2proxy.upstream.http11 import ClientState, HTTP11ClientProtocol, serialize_request_head
from h2proxy.upstream.pool import UpstreamPool
from h2proxy.upstream.transport import ImmediateWriteClient, WritePath
from tests.upstream.helpers import Receiver
from tests.upstream.origins import Origin, drive, loopback_reactor, run_for, run_until


def GET(target: bytes = b"/", urgency: int = 3) -> UpstreamRequest:
    return UpstreamRequest(b"GET", target, ((b"host", b"app.test"),), urgency=urgency)


def free_port() -> int:
    """A loopback port nobody listens on (bound, read, closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def env():
    with loopback_reactor() as (reactor, pools, origins):

        def origin() -> Origin:
            started = Origin(reactor).listen()
            origins.append(started)
            return started

        def pool(ports: list[int], weights: list[int] | None = None, **options) -> UpstreamPool:
            config = UpstreamConfig(
                name="app",
                servers=tuple(
                    ServerConfig(host="127.0.0.1", port=port, weight=(weights or [1] * len(ports))[i])
                    for i, port in enumerate(ports)
                ),
                **options,
            )
            made = UpstreamPool(reactor=reactor, config=config, connectTimeout=2, responseTimeout=5)
            pools.append(made)
            return made

        yield reactor, origin, pool


def ended(receivers) -> bool:
    return all(r.outcome == ("end", ()) for r in receivers)


# -- 1. shares ---------------------------------------------------------------------


def test_round_robin_gives_each_of_three_backends_its_share_over_3000_requests(env):
    """When 3000 requests go through round robin to 3 backends, each serves 1000 (within 5%)."""
    reactor, origin, pool = env
    origins = [origin() for _ in range(3)]
    upstream = pool([o.portNumber for o in origins])
    receivers = drive(reactor, upstream, [GET() for _ in range(3000)], concurrency=30)
    assert ended(receivers)
    assert all(950 <= o.requests <= 1050 for o in origins), [o.requests for o in origins]


def test_weights_are_honoured(env):
    """When weights are 3, 2 and 1, the backends serve 1/2, 1/3 and 1/6 of 1200 requests (within 5%)."""
    reactor, origin, pool = env
    origins = [origin() for _ in range(3)]
    upstream = pool([o.portNumber for o in origins], weights=[3, 2, 1])
    assert ended(drive(reactor, upstream, [GET() for _ in range(1200)], concurrency=12))
    for served, expected in zip((o.requests for o in origins), (600, 400, 200)):
        assert abs(served - expected) <= 0.05 * expected, [o.requests for o in origins]


def test_least_conn_sends_new_requests_away_from_a_backend_holding_slow_requests(env):
    """When one backend answers slowly, least_conn gives it far fewer requests than round robin's half."""
    reactor, origin, pool = env
    slow, fast = origin(), origin()
    slow.delay = 0.2
    upstream = pool([slow.portNumber, fast.portNumber], policy="least_conn")
    assert ended(drive(reactor, upstream, [GET() for _ in range(200)], concurrency=4))
    assert slow.requests < 0.15 * 200 and fast.requests + slow.requests == 200


# -- 2. reuse ----------------------------------------------------------------------


def test_sequential_and_concurrent_requests_reuse_connections(env):
    """When 1000 requests run with 8 in flight and max_connections 4, the backend accepts at most 4 connections."""
    reactor, origin, pool = env
    backend = origin()
    upstream = pool([backend.portNumber], max_connections=4, queue=QueueConfig(size=100, timeout=5))
    assert ended(drive(reactor, upstream, [GET() for _ in range(1000)], concurrency=8))
    assert backend.requests == 1000 and backend.accepted <= 4


# -- 3. caps and the queue ---------------------------------------------------------


def test_max_connections_two_holds_twenty_slow_requests_to_two_at_once(env):
    """When 20 slow requests arrive at once with max_connections 2, the backend never sees more
    than 2 at a time and every request completes after waiting its turn."""
    reactor, origin, pool = env
    backend = origin()
    upstream = pool([backend.portNumber], max_connections=2, queue=QueueConfig(size=100, timeout=10))
    receivers = drive(reactor, upstream, [GET(b"/slow?ms=20") for _ in range(20)], concurrency=20)
    assert ended(receivers)
    assert backend.peak == 2 and backend.accepted == 2


def test_a_small_queue_answers_the_overflow_with_503_and_retry_after(env):
    """When 20 slow requests meet max_connections 2 and a queue of 3 with a short deadline, 2 are
    served, the queue's 3 time out and the other 15 are refused at once, all with Retry-After."""
    reactor, origin, pool = env
    backend = origin()
    upstream = pool([backend.portNumber], max_connections=2, queue=QueueConfig(size=3, timeout=0.1))
    receivers = drive(reactor, upstream, [GET(b"/slow?ms=400") for _ in range(20)], concurrency=20)
    errors = [r.error for r in receivers if r.error is not None]
    assert sum(1 for r in receivers if r.outcome == ("end", ())) == 2 and len(errors) == 18
    assert all(isinstance(e, QueueFull) and e.status == 503 and e.retry_after == 1 for e in errors)
    assert sum("within 0.1s" in str(e) for e in errors) == 3


def test_urgent_requests_leave_the_queue_first(env):
    """When requests of several urgencies wait for the one connection, the backend gets them most urgent first."""
    reactor, origin, pool = env
    backend = origin()
    upstream = pool([backend.portNumber], max_connections=1, queue=QueueConfig(size=10, timeout=5))
    requests = [GET(b"/slow?ms=50")] + [GET(b"/u%d" % u, urgency=u) for u in (6, 2, 4, 0, 2)]
    assert ended(drive(reactor, upstream, requests, concurrency=6))
    assert [target for _, target in backend.log] == [b"/slow?ms=50", b"/u0", b"/u2", b"/u2", b"/u4", b"/u6"]


# -- 4. a backend that is down -----------------------------------------------------


def test_a_down_backend_is_invisible_to_idempotent_requests_ejected_and_readmitted(env):
    """When one of three backends is down, every GET still succeeds (retried elsewhere), the down
    one is ejected, and once it is back and the back-off passed it serves again."""
    reactor, origin, pool = env
    up = [origin(), origin()]
    down = free_port()
    upstream = pool(
        [up[0].portNumber, down, up[1].portNumber],
        passive_health=PassiveHealthConfig(failures=2, backoff=0.3),
    )
    assert ended(drive(reactor, upstream, [GET() for _ in range(30)], concurrency=3))
    assert not upstream.servers[1].available()
    revived = Origin(reactor).listen(down)
    try:
        run_for(reactor, 0.35)
        assert ended(drive(reactor, upstream, [GET() for _ in range(30)], concurrency=3))
        assert revived.requests >= 5 and upstream.servers[1].available()
    finally:
        revived.stop()


def test_active_checks_mark_a_backend_down_and_up(env):
    """When a backend's health endpoint starts failing, checks take it out of rotation; when it
    recovers, they bring it back."""
    reactor, origin, pool = env
    sick, well = origin(), origin()
    check = HealthCheckConfig(path="/health", interval=1, timeout=0.5, healthy_threshold=1, unhealthy_threshold=1)
    upstream = pool([sick.portNumber, well.portNumber], health_check=check)
    run_until(reactor, lambda: all(p.checks >= 1 for p in upstream.probes))
    sick.healthy = False
    run_until(reactor, lambda: not upstream.servers[0].available(), timeout=3)
    before = sick.requests
    assert ended(drive(reactor, upstream, [GET() for _ in range(10)], concurrency=2))
    assert sick.requests == before
    sick.healthy = True
    run_until(reactor, lambda: upstream.servers[0].available(), timeout=3)
    assert ended(drive(reactor, upstream, [GET() for _ in range(10)], concurrency=2))
    assert sick.requests > before


# -- 5. what is retried ------------------------------------------------------------


def test_a_post_reset_after_part_of_its_body_is_not_retried(env):
    """When the backend resets the connection after reading part of a POST body, the client gets
    502 and the other backend never sees the request."""
    reactor, origin, pool = env
    first, second = origin(), origin()
    upstream = pool([first.portNumber, second.portNumber])
    post = UpstreamRequest(b"POST", b"/reset-after/1000", ((b"host", b"app.test"),), body_length=100_000)
    receiver = Receiver()
    exchange = upstream.request(post, receiver)
    run_until(reactor, lambda: upstream.activeCount == 1)
    exchange.write(b"x" * 50_000)
    run_until(reactor, lambda: receiver.outcome is not None)
    assert isinstance(receiver.error, BackendClosed) and receiver.error.status == 502
    assert first.resets == 1 and second.requests == 0


def test_a_get_to_a_refused_port_is_retried_on_another_server(env):
    """When the first server refuses the connection, the GET is answered by the next one."""
    reactor, origin, pool = env
    backend = origin()
    upstream = pool([free_port(), backend.portNumber])
    [receiver] = drive(reactor, upstream, [GET()], concurrency=1)
    assert receiver.outcome == ("end", ()) and backend.requests == 1



# -- the transport -----------------------------------------------------------------


def test_backend_connections_are_made_as_immediate_write_transports(env):
    """When the pool's default endpoints connect to a real backend, the connection's transport is the immediate-write client, and a request on it is answered."""
    reactor, origin, _ = env
    backend = origin()
    server = ServerConfig(host="127.0.0.1", port=backend.portNumber)
    connector = Connector(reactor=reactor, server=server, endpoint=default_endpoint_factory(reactor, 2)(server), name="origin")
    protocol = HTTP11ClientProtocol(reactor=reactor, responseTimeout=5)
    connected: list[HTTP11ClientProtocol] = []
    connector.connect(protocol, 2).addCallback(connected.append)
    run_until(reactor, lambda: bool(connected))
    assert type(protocol.transport) is ImmediateWriteClient
    receiver = Receiver()
    protocol.sendRequest(GET(), serialize_request_head(GET()), receiver)
    run_until(reactor, lambda: receiver.outcome is not None)
    assert receiver.outcome == ("end", ())
    protocol.close()
    assert protocol.transport.writePath is WritePath.CLOSED
    run_until(reactor, lambda: protocol.state is ClientState.CLOSED and not protocol.transport.connected)
