"""The upstream pool's decisions with fake endpoints on a fake clock: which server a
request goes to, the priority queue in front of full servers, passive ejection and
re-admission, retries on another server and when they are refused, max_requests,
per-upstream timeouts, and https connections waiting for their handshake."""

from __future__ import annotations

from OpenSSL import SSL
from twisted.internet.error import ConnectionLost, ConnectionRefusedError
from twisted.python.failure import Failure

from twisted.internet.testing import MemoryReactorClock

from h2proxy.config.upstreams import (
    HealthCheckConfig,
    PassiveHealthConfig,
    QueueConfig,
    ServerConfig,
    UpstreamConfig,
    UpstreamTimeoutsConfig,
)
from h2proxy.errors import (
    BackendClosed,
    BackendConnectTimeout,
    BackendRefused,
    BackendTimeout,
    BackendTLSError,
    NoHealthyBackend,
)
from h2proxy.message import UpstreamRequest
from h2proxy.upstream.exchange import MAX_REPLAY_BODY
from h2proxy.upstream.pool import UpstreamPool
from tests.upstream.helpers import OK, FakeEndpoint, Producer, Receiver, get, make_pool, reset

QUEUE = QueueConfig(size=10, timeout=30)


def request_line(transport) -> bytes:
    return transport.value().split(b"\r\n", 1)[0]


# -- choosing a server ---------------------------------------------------------------


def test_weights_are_honoured():
    """When servers have weights 3 and 1, they get three and one of every four requests."""
    pool, clock, endpoints = make_pool(servers=2, weights=(3, 1))
    for _ in range(8):
        pool.request(get(), Receiver())
    assert [e.pending for e in endpoints] == [6, 2]


def test_least_conn_sends_new_requests_away_from_a_busy_server():
    """When one server holds a slow request, least_conn sends every new request to the other
    while that one keeps answering."""
    pool, clock, endpoints = make_pool(servers=2, policy="least_conn")
    pool.request(get(b"/slow"), Receiver())
    endpoints[0].succeed()
    fast = None
    for _ in range(10):
        receiver = Receiver()
        pool.request(get(b"/fast"), receiver)
        if endpoints[1].pending:
            fast, _ = endpoints[1].succeed()
        fast.dataReceived(OK)
        assert receiver.outcome == ("end", ())
    assert len(endpoints[0].attempts) == 1 and len(endpoints[1].attempts) == 1


def test_random_two_through_the_pool_avoids_the_loaded_server():
    """When one of two servers holds a slow request, random_two sends the other requests to the free one."""
    import random

    pool, clock, endpoints = make_pool(servers=2, policy="random_two", rng=random.Random(5))
    fast = None
    for _ in range(20):
        receiver = Receiver()
        slow = len(endpoints[0].attempts)
        pool.request(get(), receiver)
        if len(endpoints[0].attempts) > slow:
            continue  # went to server 0: left unanswered
        if endpoints[1].pending:
            fast, _ = endpoints[1].succeed()
        fast.dataReceived(OK)
        assert receiver.outcome == ("end", ())
    assert len(endpoints[0].attempts) == 1


def test_a_full_server_is_passed_over_while_another_has_room():
    """When round robin would pick a server at max_connections, the request goes to one with a free slot."""
    pool, clock, endpoints = make_pool(servers=2, max_connections=1, queue=QUEUE)
    pool.request(get(), Receiver())
    endpoints[0].succeed()
    pool.request(get(), Receiver())
    pool.request(get(), Receiver())
    assert endpoints[1].pending == 1 and pool.waitingCount == 1


# -- the queue -----------------------------------------------------------------------


def test_more_urgent_requests_leave_the_queue_first():
    """When requests of several urgencies wait, freed connections serve the most urgent first,
    oldest first within one urgency."""
    pool, clock, [endpoint] = make_pool(max_connections=1, queue=QUEUE)
    pool.request(get(b"/running"), Receiver())
    protocol, transport = endpoint.succeed()
    for name, urgency in ((b"/u5", 5), (b"/u1a", 1), (b"/u3", 3), (b"/u1b", 1), (b"/u7", 7)):
        pool.request(UpstreamRequest(b"GET", name, ((b"host", b"x"),), urgency=urgency), Receiver())
    served = []
    for _ in range(5):
        transport.clear()
        protocol.dataReceived(OK)
        served.append(request_line(transport).split(b" ")[1])
    assert served == [b"/u1a", b"/u1b", b"/u3", b"/u5", b"/u7"]


def test_queue_timeout_zero_waits_until_a_slot_frees():
    """When queue.timeout is 0, a waiting request has no deadline and is served when a connection frees."""
    pool, clock, [endpoint] = make_pool(max_connections=1, queue=QueueConfig(size=1, timeout=0), responseTimeout=0)
    pool.request(get(), Receiver())
    protocol, transport = endpoint.succeed()
    waiting = Receiver()
    pool.request(get(b"/later"), waiting)
    clock.advance(3600)
    assert waiting.outcome is None
    protocol.dataReceived(OK)
    protocol.dataReceived(OK)
    assert waiting.outcome == ("end", ())


def test_a_waiter_takes_a_slot_on_any_server_it_may_use():
    """When every server is full, a queued request takes the first slot freed on any of them."""
    pool, clock, endpoints = make_pool(servers=2, max_connections=1, queue=QUEUE)
    pool.request(get(), Receiver())
    pool.request(get(), Receiver())
    first, _ = endpoints[0].succeed()
    second, transport = endpoints[1].succeed()
    waiting = Receiver()
    pool.request(get(b"/w"), waiting)
    transport.clear()
    second.dataReceived(OK)
    assert request_line(transport) == b"GET /w HTTP/1.1"


# -- passive health ------------------------------------------------------------------


def test_a_refusing_server_is_ejected_and_its_requests_served_elsewhere():
    """When a server refuses connections, idempotent requests are retried on the other server
    with no failure seen, and after `failures` refusals the server gets no more attempts."""
    pool, clock, endpoints = make_pool(servers=2, passive_health=PassiveHealthConfig(failures=2, backoff=10))
    receivers = []
    fast = None
    for _ in range(6):
        receiver = Receiver()
        receivers.append(receiver)
        pool.request(get(), receiver)
        if endpoints[0].pending:
            endpoints[0].fail(ConnectionRefusedError())
        if endpoints[1].pending:
            fast, _ = endpoints[1].succeed()
        fast.dataReceived(OK)
    assert [r.outcome for r in receivers] == [("end", ())] * 6
    assert len(endpoints[0].attempts) == 2
    assert not pool.servers[0].available() and pool.servers[0].health.ejections == 1


def test_an_ejected_server_is_tried_again_after_the_backoff_and_readmitted_when_it_answers():
    """When the back-off has passed, requests go to the ejected server again, and a
    response puts it back in rotation for good."""
    pool, clock, endpoints = make_pool(servers=2, passive_health=PassiveHealthConfig(failures=1, backoff=10), retries=0)
    pool.request(get(), Receiver())
    endpoints[0].fail(ConnectionRefusedError())
    assert pool.servers[0].health.ejected(clock.seconds())
    clock.advance(10)
    receivers = [Receiver(), Receiver()]
    for receiver in receivers:
        pool.request(get(), receiver)
    protocol, _ = endpoints[0].succeed()
    protocol.dataReceived(OK)
    assert receivers[0].outcome == ("end", ()) or receivers[1].outcome == ("end", ())
    assert pool.servers[0].health.ejections == 0 and pool.servers[0].available()


def test_the_only_server_is_never_ejected():
    """When the only server of an upstream fails, requests fail (502) but it is not
    ejected: the next request is sent to it at once, and once the application is back
    (restarted) it is answered, with no 503 for a back-off."""
    pool, clock, [endpoint] = make_pool(passive_health=PassiveHealthConfig(failures=1, backoff=10), retries=0)
    for _ in range(3):
        failed = Receiver()
        pool.request(get(), failed)
        endpoint.fail(ConnectionRefusedError())
        assert isinstance(failed.error, BackendRefused)
        assert pool.servers[0].available()
    clock.advance(0.1)
    receiver = Receiver()
    pool.request(get(), receiver)
    protocol, _ = endpoint.succeed()
    protocol.dataReceived(OK)
    assert receiver.outcome == ("end", ()) and len(endpoint.attempts) == 4


def test_the_last_available_server_is_not_ejected():
    """When one of two servers is ejected and the other then fails too, the other stays
    in rotation: an upstream never ejects its last available server."""
    pool, clock, endpoints = make_pool(servers=2, passive_health=PassiveHealthConfig(failures=1, backoff=10), retries=0)
    pool.request(get(), Receiver())
    pool.request(get(), Receiver())
    endpoints[0].fail(ConnectionRefusedError())
    endpoints[1].fail(ConnectionRefusedError())
    now = clock.seconds()
    assert pool.servers[0].health.ejected(now) and pool.servers[1].available()
    receiver = Receiver()
    pool.request(get(), receiver)
    assert endpoints[1].pending == 1 and endpoints[0].pending == 0


def test_with_every_server_out_the_one_whose_backoff_ends_first_is_tried():
    """When every server is out of rotation (one ejected, the other marked down by its
    health checks), a request goes to the ejected one rather than failing with 503 for
    the whole back-off; its answer re-admits it."""
    check = HealthCheckConfig(interval=60, timeout=1, healthy_threshold=1, unhealthy_threshold=1)
    pool, clock, endpoints = make_pool(
        servers=2, passive_health=PassiveHealthConfig(failures=1, backoff=100), retries=0, health_check=check
    )
    clock.advance(0)
    for endpoint in endpoints:
        endpoint.succeed()[0].dataReceived(OK)  # both checks pass
    pool.request(get(), Receiver())
    pool.request(get(), Receiver())
    endpoints[0].fail(ConnectionRefusedError())  # server 0 ejected (server 1 is available)
    endpoints[1].succeed()[0].dataReceived(OK)
    clock.advance(60)
    endpoints[1].fail(ConnectionRefusedError())  # server 1's check: marked down
    assert not any(server.available() for server in pool.servers)
    receiver = Receiver()
    pool.request(get(), receiver)
    clock.advance(0)
    assert receiver.error is None and endpoints[0].pending == 2  # its check and the request
    endpoints[0].succeed()[0].dataReceived(OK)
    assert receiver.outcome == ("end", ()) and pool.servers[0].available()


def test_a_server_marked_down_is_not_a_last_resort():
    """When the only server is marked down by its health checks, requests fail with 503 at
    once (an explicit failed check is honoured), rather than going to it."""
    check = HealthCheckConfig(interval=60, timeout=1, healthy_threshold=1, unhealthy_threshold=1)
    pool, clock, [endpoint] = make_pool(retries=0, health_check=check)
    clock.advance(0)
    endpoint.fail(ConnectionRefusedError())
    receiver = Receiver()
    pool.request(get(), receiver)
    clock.advance(0)
    assert isinstance(receiver.error, NoHealthyBackend) and endpoint.pending == 0


def test_a_stale_pooled_connection_does_not_count_against_the_server():
    """When a pooled connection turns out closed (the keep-alive race), the server's failure count is unchanged."""
    pool, clock, [endpoint] = make_pool(passive_health=PassiveHealthConfig(failures=1))
    pool.request(get(), Receiver())
    protocol, _ = endpoint.succeed()
    protocol.dataReceived(OK)
    receiver = Receiver()
    pool.request(get(method=b"POST", body_length=0), receiver)
    protocol.connectionLost(reset())
    assert isinstance(receiver.error, BackendClosed)
    assert pool.servers[0].available() and pool.servers[0].health.consecutiveFailures == 0


# -- retries -------------------------------------------------------------------------


def test_a_post_refused_before_it_was_written_goes_to_another_server_with_its_body():
    """When connecting for a POST is refused, nothing was sent, so it goes to the next server,
    body included."""
    pool, clock, endpoints = make_pool(servers=2)
    receiver = Receiver()
    exchange = pool.request(get(b"/form", method=b"POST", body_length=5), receiver)
    producer = Producer()
    exchange.registerProducer(producer, True)
    exchange.write(b"hello")
    exchange.finishRequest()
    endpoints[0].fail(ConnectionRefusedError())
    protocol, transport = endpoints[1].succeed()
    assert transport.value().startswith(b"POST /form ") and transport.value().endswith(b"\r\n\r\nhello")
    protocol.dataReceived(OK)
    assert receiver.outcome == ("end", ())


def test_a_post_reset_after_it_was_written_is_not_retried():
    """When the backend resets the connection after reading part of a POST body, the client
    gets 502 and no other server sees the request."""
    pool, clock, endpoints = make_pool(servers=2)
    receiver = Receiver()
    exchange = pool.request(get(b"/form", method=b"POST", body_length=10), receiver)
    exchange.registerProducer(Producer(), True)
    protocol, _ = endpoints[0].succeed()
    exchange.write(b"hello")
    protocol.connectionLost(reset())
    assert isinstance(receiver.error, BackendClosed) and receiver.error.status == 502
    assert endpoints[1].attempts == []


def test_an_idempotent_request_with_a_small_body_is_replayed_whole_on_another_server():
    """When a PUT fails before any response byte, the body written so far is sent again to the
    next server, followed by the rest."""
    pool, clock, endpoints = make_pool(servers=2)
    receiver = Receiver()
    exchange = pool.request(get(b"/doc", method=b"PUT", body_length=10), receiver)
    exchange.registerProducer(Producer(), True)
    protocol, _ = endpoints[0].succeed()
    exchange.write(b"hello")
    protocol.connectionLost(reset())
    assert receiver.outcome is None
    other, transport = endpoints[1].succeed()
    exchange.write(b"world")
    exchange.finishRequest()
    assert transport.value().endswith(b"\r\n\r\nhelloworld")
    other.dataReceived(OK)
    assert receiver.outcome == ("end", ())


def test_an_idempotent_request_with_a_large_body_is_not_retried():
    """When more than MAX_REPLAY_BODY bytes of an idempotent request were written, a failure is final."""
    pool, clock, endpoints = make_pool(servers=2)
    receiver = Receiver()
    size = MAX_REPLAY_BODY + 1
    exchange = pool.request(get(b"/doc", method=b"PUT", body_length=size), receiver)
    protocol, _ = endpoints[0].succeed()
    exchange.write(b"x" * size)
    exchange.finishRequest()
    protocol.connectionLost(reset())
    assert isinstance(receiver.error, BackendClosed) and endpoints[1].attempts == []


def test_no_retry_once_response_bytes_arrived():
    """When the backend sent part of a response before failing, the GET is not sent again."""
    pool, clock, endpoints = make_pool(servers=2)
    receiver = Receiver()
    pool.request(get(), receiver)
    protocol, _ = endpoints[0].succeed()
    protocol.dataReceived(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
    protocol.connectionLost(reset())
    assert isinstance(receiver.error, BackendClosed) and endpoints[1].attempts == []


def test_retries_are_bounded():
    """When every server refuses, a request is tried on 1 + retries servers, then fails with the last error."""
    pool, clock, endpoints = make_pool(servers=4, retries=2)
    receiver = Receiver()
    pool.request(get(), receiver)
    for endpoint in endpoints[:3]:
        endpoint.fail(ConnectionRefusedError())
    assert isinstance(receiver.error, BackendRefused) and "8002" in str(receiver.error)
    assert endpoints[3].attempts == []


def test_a_retry_never_goes_back_to_a_server_that_failed_the_request():
    """When the only other server also failed the request, it fails rather than retrying the first."""
    pool, clock, endpoints = make_pool(servers=2, retries=5)
    receiver = Receiver()
    pool.request(get(), receiver)
    endpoints[0].fail(ConnectionRefusedError())
    endpoints[1].fail(ConnectionRefusedError())
    assert isinstance(receiver.error, BackendRefused)
    assert [len(e.attempts) for e in endpoints] == [1, 1]


def test_no_retry_after_the_retry_deadline():
    """When the first try took longer than retry_timeout, its failure is final."""
    pool, clock, endpoints = make_pool(servers=2, connectTimeout=3, retry_timeout=2)
    receiver = Receiver()
    pool.request(get(), receiver)
    clock.advance(3)
    assert isinstance(receiver.error, BackendConnectTimeout) and endpoints[1].attempts == []


def test_a_response_timeout_before_any_byte_is_retried_for_an_idempotent_request():
    """When a GET gets no response head within the response timeout (and within the retry
    deadline), it goes to another server."""
    pool, clock, endpoints = make_pool(servers=2, responseTimeout=1, retry_timeout=10)
    receiver = Receiver()
    pool.request(get(), receiver)
    endpoints[0].succeed()
    clock.advance(1)
    assert receiver.outcome is None
    protocol, _ = endpoints[1].succeed()
    protocol.dataReceived(OK)
    assert receiver.outcome == ("end", ())


def test_a_cancelled_request_between_attempts_leaves_nothing_behind():
    """When the client cancels while a retry is connecting, the attempt is cancelled and nothing is delivered."""
    pool, clock, endpoints = make_pool(servers=2)
    receiver = Receiver()
    exchange = pool.request(get(), receiver)
    endpoints[0].fail(ConnectionRefusedError())
    exchange.cancel()
    assert endpoints[1].cancelled == 1 and receiver.events == [] and clock.getDelayedCalls() == []


# -- connections ---------------------------------------------------------------------


def test_a_connection_is_retired_after_max_requests():
    """When a connection has carried max_requests requests, it is closed instead of pooled."""
    pool, clock, [endpoint] = make_pool(max_requests=2)
    transports = []
    for _ in range(3):
        pool.request(get(), Receiver())
        if endpoint.pending:
            protocol, transport = endpoint.succeed()
            transports.append(transport)
        protocol.dataReceived(OK)
    assert len(transports) == 2 and transports[0].disconnecting and not transports[1].disconnecting


def test_upstream_timeouts_override_the_global_ones():
    """When the upstream sets its own connect, response and idle timeouts, they replace the pool's arguments."""
    timeouts = UpstreamTimeoutsConfig(connect=1, response=2, idle=0.5)
    pool, clock, [endpoint] = make_pool(connectTimeout=5, responseTimeout=60, timeouts=timeouts)
    connecting = Receiver()
    pool.request(get(), connecting)
    clock.advance(1)
    assert isinstance(connecting.error, BackendConnectTimeout) and "1s" in str(connecting.error)
    waiting = Receiver()
    pool.request(get(), waiting)
    endpoint.succeed()
    clock.advance(2)
    assert isinstance(waiting.error, BackendTimeout) and "2s" in str(waiting.error)
    reading = Receiver()
    pool.request(get(), reading)
    protocol, _ = endpoint.succeed()
    protocol.dataReceived(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
    clock.advance(0.5)
    assert isinstance(reading.error, BackendTimeout) and "0.5s" in str(reading.error)


def test_idle_timeout_applies_between_body_reads():
    """When the pool is given an idle timeout, a response body may pause that long, however long the response timeout."""
    pool, clock, [endpoint] = make_pool(responseTimeout=60, idleTimeout=2)
    receiver = Receiver()
    pool.request(get(), receiver)
    protocol, _ = endpoint.succeed()
    clock.advance(59)
    protocol.dataReceived(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
    clock.advance(1.9)
    protocol.dataReceived(b"def")
    clock.advance(1.9)
    assert receiver.outcome is None
    clock.advance(0.1)
    assert isinstance(receiver.error, BackendTimeout)


# -- https ---------------------------------------------------------------------------


def test_an_https_connection_is_used_only_after_its_handshake():
    """When the server is https, nothing is written until the TLS handshake completed."""
    pool, clock, [endpoint] = make_pool(scheme="https")
    receiver = Receiver()
    pool.request(get(b"/secure"), receiver)
    protocol, transport = endpoint.succeed()
    assert transport.value() == b"" and pool.activeCount == 0
    protocol.handshakeCompleted()
    assert transport.value().startswith(b"GET /secure ")
    protocol.dataReceived(OK)
    assert receiver.outcome == ("end", ())


def test_a_failed_handshake_is_a_502_that_says_why(logged_errors):
    """When the connection is lost during the handshake, the request fails with a TLS error naming the server."""
    pool, clock, [endpoint] = make_pool(scheme="https")
    receiver = Receiver()
    pool.request(get(), receiver)
    protocol, transport = endpoint.succeed()
    protocol.connectionLost(Failure(SSL.Error([("SSL routines", "", "wrong version number")])))
    assert isinstance(receiver.error, BackendTLSError) and receiver.error.status == 502
    assert "127.0.0.1:8000" in str(receiver.error) and "wrong version number" in str(receiver.error)
    assert logged_errors.take(r"TLS handshake failed: wrong version number")


def test_the_connect_timeout_covers_the_handshake():
    """When the handshake does not finish within the connect timeout, the connection is aborted and the request gets 504."""
    pool, clock, [endpoint] = make_pool(scheme="https", connectTimeout=2)
    receiver = Receiver()
    pool.request(get(), receiver)
    protocol, transport = endpoint.succeed()
    clock.advance(2)
    assert isinstance(receiver.error, BackendConnectTimeout) and transport.disconnecting
    protocol.connectionLost(Failure(ConnectionLost()))
    assert clock.getDelayedCalls() == [] and pool.servers[0].quiet


# -- shutdown ------------------------------------------------------------------------


def test_close_serves_queued_requests_before_firing():
    """When the pool closes with requests in the queue, they are still served, and the Deferred
    fires once the last one is done and its connection closed."""
    pool, clock, [endpoint] = make_pool(max_connections=1, queue=QUEUE)
    pool.request(get(), Receiver())
    queued = Receiver()
    pool.request(get(b"/queued"), queued)
    protocol, transport = endpoint.succeed()
    fired = []
    pool.close().addCallback(fired.append)
    protocol.dataReceived(OK)
    assert b"/queued" in transport.value() and fired == []
    protocol.dataReceived(OK)
    assert queued.outcome == ("end", ()) and fired == [None] and transport.disconnecting


def test_a_server_can_have_its_own_connection_cap():
    """When one server sets its own max_connections, it caps that server while the upstream's caps the others."""
    endpoints = []

    def factory(server):
        endpoints.append(FakeEndpoint(server))
        return endpoints[-1]

    config = UpstreamConfig(
        name="app",
        servers=(ServerConfig(host="127.0.0.1", port=8000, max_connections=1), ServerConfig(host="127.0.0.1", port=8001)),
        max_connections=3,
        queue=QUEUE,
    )
    pool = UpstreamPool(reactor=MemoryReactorClock(), config=config, connectTimeout=1, responseTimeout=1,
                        endpointFactory=factory)
    for _ in range(5):
        pool.request(get(), Receiver())
    assert [e.pending for e in endpoints] == [1, 3] and pool.waitingCount == 1
    assert [s.maxConnections for s in pool.servers] == [1, 3]
