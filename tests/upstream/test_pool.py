"""UpstreamPool and UpstreamExchange with fake endpoints on a fake clock: connecting in
the background, reuse, idle expiry, caps and queueing, stale-connection retries,
connect failures, cancel, request-body buffering and backpressure, shutdown."""

from __future__ import annotations

import pytest
from twisted.internet.error import ConnectionRefusedError, DNSLookupError
from twisted.internet.error import TimeoutError as TwistedTimeoutError

from h2proxy.config.upstreams import QueueConfig, ServerConfig, UpstreamConfig
from h2proxy.errors import (
    BackendClosed,
    BackendConnectTimeout,
    BackendRefused,
    BackendTimeout,
    NoHealthyBackend,
    QueueFull,
)
from h2proxy.upstream.exchange import MAX_EARLY_BODY, ExchangeState
from h2proxy.upstream.http11 import RequestRefused
from h2proxy.upstream.pool import UpstreamPool, default_endpoint_factory
from tests.upstream.helpers import OK, Producer, Receiver, closed_cleanly, get, make_pool, reset


def test_request_returns_at_once_and_connects_in_the_background():
    """When a request is made, the exchange comes back before any connection exists; the
    request goes out once the connection is up, and the connection is pooled after."""
    pool, clock, [endpoint] = make_pool()
    receiver = Receiver()
    exchange = pool.request(get(b"/a"), receiver)
    assert exchange.state is ExchangeState.WAITING and endpoint.pending == 1
    protocol, transport = endpoint.succeed()
    assert transport.value().startswith(b"GET /a HTTP/1.1\r\n")
    assert pool.activeCount == 1 and pool.connectionsOpened == 1
    protocol.dataReceived(OK)
    assert receiver.events == [("head", 200, ((b"content-length", b"2"),)), ("data", b"ok"), ("end", ())]
    assert pool.idleCount == 1 and pool.activeCount == 0


def test_idle_connection_is_reused_without_connecting():
    """When an idle connection exists, the next request is written on it at once."""
    pool, clock, [endpoint] = make_pool()
    pool.request(get(), Receiver())
    protocol, transport = endpoint.succeed()
    protocol.dataReceived(OK)
    transport.clear()
    receiver = Receiver()
    pool.request(get(b"/again"), receiver)
    assert endpoint.pending == 0 and transport.value().startswith(b"GET /again ")
    protocol.dataReceived(OK)
    assert receiver.outcome == ("end", ()) and pool.connectionsOpened == 1


def test_reuse_is_lifo():
    """When several connections are idle, the most recently returned one is used first."""
    pool, clock, [endpoint] = make_pool()
    pool.request(get(), Receiver())
    pool.request(get(), Receiver())
    first, t1 = endpoint.succeed(0)
    second, t2 = endpoint.succeed(0)
    first.dataReceived(OK)
    second.dataReceived(OK)
    t1.clear()
    t2.clear()
    pool.request(get(b"/lifo"), Receiver())
    assert t2.value().startswith(b"GET /lifo") and t1.value() == b""


def test_idle_connections_are_capped_by_keepalive():
    """When more connections finish than keepalive allows, the oldest idle ones are closed."""
    pool, clock, [endpoint] = make_pool(keepalive=1)
    for _ in range(2):
        pool.request(get(), Receiver())
    first, t1 = endpoint.succeed(0)
    second, t2 = endpoint.succeed(0)
    first.dataReceived(OK)
    second.dataReceived(OK)
    assert pool.idleCount == 1 and t1.disconnecting and not t2.disconnecting


def test_keepalive_zero_closes_after_each_exchange():
    """When keepalive is 0, a finished connection is closed rather than pooled."""
    pool, clock, [endpoint] = make_pool(keepalive=0)
    pool.request(get(), Receiver())
    protocol, transport = endpoint.succeed()
    protocol.dataReceived(OK)
    assert transport.disconnecting and pool.idleCount == 0


def test_idle_connection_expires():
    """When a connection stays idle for keepalive_idle seconds, it is closed and its timer is gone."""
    pool, clock, [endpoint] = make_pool(keepalive_idle=30.0)
    pool.request(get(), Receiver())
    protocol, transport = endpoint.succeed()
    protocol.dataReceived(OK)
    clock.advance(29)
    assert pool.idleCount == 1 and not transport.disconnecting
    clock.advance(1)
    assert pool.idleCount == 0 and transport.disconnecting
    assert clock.getDelayedCalls() == []


def test_reuse_cancels_the_idle_timer():
    """When an idle connection is reused, its expiry timer no longer runs."""
    pool, clock, [endpoint] = make_pool(keepalive_idle=30.0, responseTimeout=100)
    pool.request(get(), Receiver())
    protocol, transport = endpoint.succeed()
    protocol.dataReceived(OK)
    pool.request(get(), Receiver())
    clock.advance(31)
    assert not transport.disconnecting and pool.activeCount == 1


def test_backend_closing_an_idle_connection_removes_it():
    """When the backend closes an idle connection, the pool forgets it and the next request connects anew."""
    pool, clock, [endpoint] = make_pool()
    pool.request(get(), Receiver())
    protocol, transport = endpoint.succeed()
    protocol.dataReceived(OK)
    protocol.connectionLost(closed_cleanly())
    assert pool.idleCount == 0 and clock.getDelayedCalls() == []
    pool.request(get(), Receiver())
    assert endpoint.pending == 1


QUEUE = QueueConfig(size=10, timeout=5)


def test_max_connections_queues_and_hands_over():
    """When max_connections is reached, a request waits and gets the first connection freed."""
    pool, clock, [endpoint] = make_pool(max_connections=1, queue=QUEUE)
    first, second = Receiver(), Receiver()
    pool.request(get(b"/1"), first)
    pool.request(get(b"/2"), second)
    assert endpoint.pending == 1 and pool.waitingCount == 1
    protocol, transport = endpoint.succeed()
    transport.clear()
    protocol.dataReceived(OK)
    assert transport.value().startswith(b"GET /2 ")
    protocol.dataReceived(OK)
    assert first.outcome == second.outcome == ("end", ())
    assert pool.connectionsOpened == 1


def test_freed_slot_starts_the_next_waiting_request():
    """When a capped connection closes instead of being reused, a waiting request connects anew."""
    pool, clock, [endpoint] = make_pool(max_connections=1, queue=QUEUE)
    first, second = Receiver(), Receiver()
    pool.request(get(), first)
    pool.request(get(), second)
    protocol, transport = endpoint.succeed()
    protocol.dataReceived(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n")
    assert endpoint.pending == 1
    other, _ = endpoint.succeed()
    other.dataReceived(OK)
    assert second.outcome == ("end", ())


def test_failed_connect_starts_the_next_waiting_request():
    """When a connect fails at the cap, the freed slot goes to the next waiting request."""
    pool, clock, [endpoint] = make_pool(max_connections=1, queue=QUEUE)
    first, second = Receiver(), Receiver()
    pool.request(get(), first)
    pool.request(get(), second)
    endpoint.fail(ConnectionRefusedError())
    assert isinstance(first.error, BackendRefused) and endpoint.pending == 1


def test_waiting_too_long_is_503():
    """When a request waits for a free connection longer than queue.timeout, it fails with 503 and a Retry-After."""
    pool, clock, [endpoint] = make_pool(max_connections=1, queue=QueueConfig(size=10, timeout=2))
    pool.request(get(), Receiver())
    endpoint.succeed()
    waiting = Receiver()
    pool.request(get(), waiting)
    clock.advance(1.9)
    assert waiting.outcome is None
    clock.advance(0.1)
    assert isinstance(waiting.error, QueueFull) and waiting.error.status == 503
    assert waiting.error.retry_after == 1 and "within 2s" in str(waiting.error)
    assert pool.waitingCount == 0


def test_wait_queue_is_bounded():
    """When the wait queue is full, a further request fails on the next turn with 503 and a Retry-After."""
    pool, clock, [endpoint] = make_pool(max_connections=1, queue=QueueConfig(size=2, timeout=5))
    receivers = [Receiver() for _ in range(4)]
    for receiver in receivers:
        pool.request(get(), receiver)
    assert [r.outcome for r in receivers] == [None, None, None, None]
    clock.advance(0)
    assert [r.outcome for r in receivers[:3]] == [None, None, None]
    assert isinstance(receivers[3].error, QueueFull) and receivers[3].error.retry_after == 1
    assert "2 requests already wait" in str(receivers[3].error)


def test_no_queue_by_default():
    """When max_connections is reached and queue.size is left at 0, a further request gets 503 at once."""
    pool, clock, [endpoint] = make_pool(max_connections=1)
    pool.request(get(), Receiver())
    refused = Receiver()
    pool.request(get(), refused)
    clock.advance(0)
    assert isinstance(refused.error, QueueFull) and "queue.size is 0" in str(refused.error)


def test_round_robin_over_servers():
    """When an upstream has several servers, requests go to each in turn."""
    pool, clock, endpoints = make_pool(servers=3)
    for _ in range(6):
        pool.request(get(), Receiver())
    assert [e.pending for e in endpoints] == [2, 2, 2]



# -- connect failures ------------------------------------------------------------


@pytest.mark.parametrize(
    "error, kind, status",
    [
        (ConnectionRefusedError(), BackendRefused, 502),
        (DNSLookupError("no such host"), BackendRefused, 502),
        (OSError("weird"), BackendRefused, 502),
        (TwistedTimeoutError(), BackendConnectTimeout, 504),
    ],
)
def test_connect_errors_map_to_upstream_errors(error, kind, status):
    """When connecting fails, the exchange fails once with the matching typed error and status."""
    pool, clock, [endpoint] = make_pool()
    receiver = Receiver()
    pool.request(get(), receiver)
    endpoint.fail(error)
    assert isinstance(receiver.error, kind) and receiver.error.status == status
    assert "127.0.0.1:8000" in str(receiver.error)
    assert clock.getDelayedCalls() == []


def test_connect_timeout_on_the_injected_clock():
    """When connecting takes longer than the connect timeout, the attempt is cancelled and the exchange gets 504."""
    pool, clock, [endpoint] = make_pool(connectTimeout=3)
    receiver = Receiver()
    pool.request(get(), receiver)
    clock.advance(2.9)
    assert receiver.outcome is None
    clock.advance(0.1)
    assert isinstance(receiver.error, BackendConnectTimeout) and endpoint.cancelled == 1
    assert clock.getDelayedCalls() == [] and pool.servers[0].connectingCount == 0


def test_connection_lost_before_handover_is_refused():
    """When the new connection is already closed by the time the attempt succeeds, the exchange fails with 502."""
    pool, clock, [endpoint] = make_pool()
    receiver = Receiver()
    pool.request(get(), receiver)
    factory, attempt = endpoint.attempts[0]
    protocol = factory.buildProtocol(None)
    from twisted.internet.testing import StringTransport

    protocol.makeConnection(StringTransport())
    protocol.connectionLost(reset())
    attempt.callback(protocol)
    assert isinstance(receiver.error, BackendRefused) and pool.activeCount == 0


# -- stale-connection retries ----------------------------------------------------


def pooled_connection(**config):
    """A pool whose one server has one idle connection that served a request."""
    pool, clock, [endpoint] = make_pool(**config)
    pool.request(get(), Receiver())
    protocol, transport = endpoint.succeed()
    protocol.dataReceived(OK)
    return pool, clock, endpoint, protocol, transport


def test_stale_idle_connection_is_retried_once_for_an_idempotent_request():
    """When a reused connection closes before any response byte, a GET is sent again on a fresh connection."""
    pool, clock, endpoint, stale, _ = pooled_connection()
    receiver = Receiver()
    exchange = pool.request(get(b"/retry"), receiver)
    stale.connectionLost(closed_cleanly())
    assert receiver.events == [] and endpoint.pending == 1 and exchange.retried
    fresh, transport = endpoint.succeed()
    assert transport.value().startswith(b"GET /retry ")
    fresh.dataReceived(OK)
    assert receiver.events[-1] == ("end", ())


@pytest.mark.parametrize(
    "request_kw",
    [
        dict(method=b"POST", body_length=0),
        dict(method=b"POST", body_length=3),
        dict(method=b"PUT", body_length=3),
        dict(method=b"PATCH", body_length=0),
        dict(method=b"GET", body_length=None),
    ],
)
def test_stale_connection_is_not_retried_for_unsafe_requests(request_kw):
    """When the request has a body or a non-idempotent method, a stale connection fails it without retry."""
    pool, clock, endpoint, stale, _ = pooled_connection()
    receiver = Receiver()
    pool.request(get(**request_kw), receiver)
    stale.connectionLost(closed_cleanly())
    assert isinstance(receiver.error, BackendClosed) and endpoint.pending == 0


def test_no_retry_after_a_response_byte():
    """When the backend had sent part of a response before closing, the request is not retried."""
    pool, clock, endpoint, stale, _ = pooled_connection()
    receiver = Receiver()
    pool.request(get(), receiver)
    stale.dataReceived(b"HTTP/1.1 2")
    stale.connectionLost(reset())
    assert isinstance(receiver.error, BackendClosed) and endpoint.pending == 0


def test_no_retry_on_a_fresh_connection():
    """When a freshly opened connection closes before answering, the failure is delivered, not retried."""
    pool, clock, [endpoint] = make_pool()
    receiver = Receiver()
    pool.request(get(), receiver)
    protocol, _ = endpoint.succeed()
    protocol.connectionLost(closed_cleanly())
    assert isinstance(receiver.error, BackendClosed) and endpoint.pending == 0


def test_no_retry_on_timeout():
    """When a reused connection times out, the failure is delivered, not retried."""
    pool, clock, endpoint, stale, _ = pooled_connection(keepalive_idle=1000.0)
    receiver = Receiver()
    pool.request(get(), receiver)
    clock.advance(30)
    assert isinstance(receiver.error, BackendTimeout) and endpoint.pending == 0


def test_retry_happens_only_once():
    """When the retried request's connection also dies, the failure is delivered."""
    pool, clock, endpoint, stale, _ = pooled_connection()
    receiver = Receiver()
    exchange = pool.request(get(), receiver)
    stale.connectionLost(closed_cleanly())
    fresh, _ = endpoint.succeed()
    fresh.connectionLost(closed_cleanly())
    assert isinstance(receiver.error, BackendClosed) and endpoint.pending == 0
    assert exchange.state is ExchangeState.DONE and pool.activeCount == 0


# -- cancel ------------------------------------------------------------------------


def test_cancel_while_connecting_cancels_the_attempt():
    """When the exchange is cancelled while connecting, the attempt is cancelled and nothing is delivered."""
    pool, clock, [endpoint] = make_pool()
    receiver = Receiver()
    exchange = pool.request(get(), receiver)
    exchange.cancel()
    assert endpoint.cancelled == 1 and receiver.events == []
    assert pool.servers[0].connectingCount == 0 and clock.getDelayedCalls() == []


def test_cancel_while_queued_leaves_the_queue():
    """When a queued exchange is cancelled, it leaves the queue and never gets a connection."""
    pool, clock, [endpoint] = make_pool(max_connections=1, queue=QUEUE)
    pool.request(get(), Receiver())
    receiver = Receiver()
    exchange = pool.request(get(b"/q"), receiver)
    exchange.cancel()
    assert pool.waitingCount == 0
    protocol, transport = endpoint.succeed()
    protocol.dataReceived(OK)
    assert b"/q" not in transport.value() and receiver.events == []
    assert clock.getDelayedCalls()[0].getTime() > 0  # only the idle timer is left


def test_cancel_mid_response_aborts_the_connection():
    """When the exchange is cancelled mid-response, its connection is aborted and not pooled."""
    pool, clock, [endpoint] = make_pool()
    receiver = Receiver()
    exchange = pool.request(get(), receiver)
    protocol, transport = endpoint.succeed()
    protocol.dataReceived(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nab")
    exchange.cancel()
    protocol.dataReceived(b"cd")
    assert transport.disconnected and pool.activeCount == pool.idleCount == 0
    assert [e[0] for e in receiver.events] == ["head", "data"]
    assert clock.getDelayedCalls() == []


def test_cancel_after_completion_keeps_the_pooled_connection():
    """When the exchange is cancelled after its response completed, the pooled connection is left alone."""
    pool, clock, [endpoint] = make_pool()
    exchange = pool.request(get(), Receiver())
    protocol, transport = endpoint.succeed()
    protocol.dataReceived(OK)
    exchange.cancel()
    exchange.stopProducing()
    exchange.pauseProducing()
    assert not transport.disconnecting and pool.idleCount == 1
    assert transport.producerState == "producing"


# -- request body --------------------------------------------------------------------


def test_body_producer_is_paused_until_connected_then_resumed():
    """When the producer registers before the connection is up, it is paused until the head is written."""
    pool, clock, [endpoint] = make_pool()
    exchange = pool.request(get(method=b"POST", body_length=None), Receiver())
    producer = Producer()
    exchange.registerProducer(producer, True)
    assert producer.paused
    endpoint.succeed()
    assert not producer.paused and producer.resumes == 1


def test_body_producer_follows_backend_socket_backpressure():
    """When the backend transport pauses and resumes, the request-body producer is paused and resumed."""
    pool, clock, [endpoint] = make_pool()
    exchange = pool.request(get(method=b"POST", body_length=None), Receiver())
    producer = Producer()
    exchange.registerProducer(producer, True)
    protocol, transport = endpoint.succeed()
    transport.producer.pauseProducing()
    assert producer.paused
    transport.producer.resumeProducing()
    assert not producer.paused
    exchange.write(b"abc")
    exchange.unregisterProducer()
    exchange.finishRequest()
    assert transport.value().endswith(b"3\r\nabc\r\n0\r\n\r\n") and transport.producer is None


def test_socket_full_before_producer_registered_pauses_it_on_registration():
    """When the backend socket is already full as the producer registers, it starts paused."""
    pool, clock, endpoint, protocol, transport = pooled_connection()
    exchange = pool.request(get(method=b"POST", body_length=None), Receiver())
    transport.producer.pauseProducing()
    producer = Producer()
    exchange.registerProducer(producer, True)
    assert producer.paused
    transport.producer.resumeProducing()
    assert not producer.paused


def test_body_written_before_connection_is_sent_after_the_head():
    """When body bytes and the end arrive before the connection, they follow the head in order."""
    pool, clock, [endpoint] = make_pool()
    exchange = pool.request(get(method=b"POST", body_length=5), Receiver())
    exchange.write(b"he")
    exchange.write(b"llo")
    exchange.finishRequest()
    protocol, transport = endpoint.succeed()
    assert transport.value().endswith(b"content-length: 5\r\n\r\nhello")
    assert protocol.state.value == "waiting"


def test_early_body_is_capped():
    """When a producer ignores the pause and writes over the cap before connecting, the exchange fails."""
    pool, clock, [endpoint] = make_pool()
    receiver = Receiver()
    exchange = pool.request(get(method=b"POST", body_length=None), receiver)
    exchange.write(b"x" * MAX_EARLY_BODY)
    assert receiver.outcome is None
    exchange.write(b"x")
    assert receiver.error is not None and "before the backend connection" in str(receiver.error)
    assert endpoint.cancelled == 1 and pool.servers[0].connectingCount == 0


def test_early_body_over_the_cap_leaves_the_queue():
    """When a queued exchange's producer writes over the cap, the exchange fails and leaves the queue."""
    pool, clock, [endpoint] = make_pool(max_connections=1, queue=QUEUE)
    pool.request(get(), Receiver())
    receiver = Receiver()
    exchange = pool.request(get(method=b"POST", body_length=None), receiver)
    assert len(clock.getDelayedCalls()) == 2  # the first request's connect, this one's wait
    exchange.write(b"x" * (MAX_EARLY_BODY + 1))
    assert receiver.error is not None and pool.waitingCount == 0
    assert len(clock.getDelayedCalls()) == 1


def test_body_over_length_fails_through_the_exchange():
    """When the body runs past its content-length, the exchange fails with 400 and the connection is aborted."""
    pool, clock, [endpoint] = make_pool()
    receiver = Receiver()
    exchange = pool.request(get(method=b"POST", body_length=2), receiver)
    protocol, transport = endpoint.succeed()
    exchange.write(b"abc")
    assert isinstance(receiver.error, RequestRefused) and receiver.error.status == 400
    assert transport.disconnected and pool.activeCount == 0


def test_early_response_resumes_the_paused_body_producer_after_the_outcome():
    """When the backend answers completely while the producer is held paused, the producer is
    resumed after the receiver heard the end, and further writes go nowhere."""
    pool, clock, [endpoint] = make_pool()
    order: list[str] = []
    receiver = Receiver()
    receiver.responseEnded = lambda trailers: order.append("ended")
    exchange = pool.request(get(method=b"POST", body_length=100), receiver)
    producer = Producer()
    resume = producer.resumeProducing
    producer.resumeProducing = lambda: (order.append("resumed"), resume())
    exchange.registerProducer(producer, True)
    protocol, transport = endpoint.succeed()
    order.clear()
    transport.producer.pauseProducing()
    protocol.dataReceived(b"HTTP/1.1 413 Too Large\r\ncontent-length: 0\r\n\r\n")
    assert order == ["ended", "resumed"]
    size = len(transport.value())
    exchange.write(b"more")
    assert len(transport.value()) == size and transport.disconnecting


def test_response_paused_before_attach_is_paused_on_the_connection():
    """When the response side is paused before a connection is attached, the connection starts paused."""
    pool, clock, [endpoint] = make_pool()
    exchange = pool.request(get(), Receiver())
    exchange.pauseProducing()
    protocol, transport = endpoint.succeed()
    assert transport.producerState == "paused"
    exchange.resumeProducing()
    assert transport.producerState == "producing"


def test_unregister_without_register_is_harmless():
    """When the bridge unregisters a producer it never registered and finishes, nothing breaks."""
    pool, clock, [endpoint] = make_pool()
    receiver = Receiver()
    exchange = pool.request(get(), receiver)
    exchange.unregisterProducer()
    exchange.finishRequest(())
    protocol, transport = endpoint.succeed()
    protocol.dataReceived(OK)
    assert receiver.outcome == ("end", ())


# -- refusals and shutdown ---------------------------------------------------------------


def test_invalid_request_is_refused_on_the_next_turn():
    """When the request has an injected header, the exchange fails with 400 on the next reactor turn, never sent."""
    pool, clock, [endpoint] = make_pool()
    receiver = Receiver()
    exchange = pool.request(get(headers=((b"x", b"a\r\nb: c"),)), receiver)
    producer = Producer()
    exchange.registerProducer(producer, True)
    assert receiver.events == [] and endpoint.attempts == []
    clock.advance(0)
    assert isinstance(receiver.error, RequestRefused) and not producer.paused


def test_upstream_without_servers_is_503():
    """When the upstream has no servers, requests fail with NoHealthyBackend."""
    clock_pool, clock, _ = make_pool()
    pool = UpstreamPool(
        reactor=clock, config=UpstreamConfig(name="none", servers=()), connectTimeout=1, responseTimeout=1
    )
    receiver = Receiver()
    pool.request(get(), receiver)
    clock.advance(0)
    assert isinstance(receiver.error, NoHealthyBackend)


def test_close_drains_in_flight_and_refuses_new():
    """When the pool closes, idle connections close, new requests are refused, and the Deferred
    fires only when the in-flight exchange is done; its connection is then closed, not pooled."""
    pool, clock, endpoint, idle, idleTransport = pooled_connection()
    busy = Receiver()
    pool.request(get(), busy)
    assert pool.idleCount == 0
    pool.request(get(), Receiver())
    protocol, transport = endpoint.succeed()
    done = pool.close()
    fired: list[object] = []
    done.addCallback(fired.append)
    late = Receiver()
    pool.request(get(), late)
    clock.advance(0)
    assert isinstance(late.error, NoHealthyBackend) and fired == []
    idle.dataReceived(OK)
    assert idleTransport.disconnecting and fired == []
    protocol.dataReceived(OK)
    assert transport.disconnecting and fired == [None]
    assert pool.idleCount == pool.activeCount == 0 and clock.getDelayedCalls() == []


def test_close_with_nothing_in_flight_fires_at_once():
    """When the pool closes with only idle connections, they close and the Deferred fires at once."""
    pool, clock, endpoint, idle, transport = pooled_connection()
    fired: list[object] = []
    pool.close().addCallback(fired.append)
    assert fired == [None] and transport.disconnecting and clock.getDelayedCalls() == []


def test_connect_failing_at_once_is_reported_on_the_next_turn():
    """When the endpoint fails synchronously (e.g. an invalid host name), the failure
    reaches the receiver only on the next reactor turn, after request() returned."""
    from twisted.internet import defer

    class BrokenEndpoint:
        def connect(self, factory):
            return defer.fail(ValueError("invalid host name"))

    clock_pool, clock, _ = make_pool()
    config = UpstreamConfig(name="bad", servers=(ServerConfig(host="bad..name", port=80),))
    pool = UpstreamPool(
        reactor=clock, config=config, connectTimeout=1, responseTimeout=1, endpointFactory=lambda s: BrokenEndpoint()
    )
    receiver = Receiver()
    pool.request(get(), receiver)
    assert receiver.events == []
    clock.advance(0)
    assert isinstance(receiver.error, BackendRefused) and "invalid host name" in str(receiver.error)
    assert pool.servers[0].connectingCount == 0


def test_default_endpoint_factory_picks_endpoint_by_address():
    """When servers are IPv4, IPv6 or names, the matching Twisted endpoint is built on the given reactor."""
    from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
    from twisted.internet.testing import MemoryReactorClock

    factory = default_endpoint_factory(MemoryReactorClock(), 5)
    assert isinstance(factory(ServerConfig(host="127.0.0.1", port=1)), TCP4ClientEndpoint)
    assert isinstance(factory(ServerConfig(host="[::1]", port=1)), TCP6ClientEndpoint)
    assert isinstance(factory(ServerConfig(host="::1", port=1)), TCP6ClientEndpoint)
    assert isinstance(factory(ServerConfig(host="backend.internal", port=1)), HostnameEndpoint)


def test_a_request_made_as_a_response_ends_reuses_its_connection():
    """When the receiver makes the next request from inside responseEnded, it gets the
    connection that just finished, even at max_connections 1 with no queue."""
    pool, clock, [endpoint] = make_pool(max_connections=1)
    first, second = Receiver(), Receiver()
    ended = first.responseEnded

    def chain(trailers):
        ended(trailers)
        pool.request(get(b"/next"), second)

    first.responseEnded = chain
    pool.request(get(), first)
    protocol, transport = endpoint.succeed()
    transport.clear()
    protocol.dataReceived(OK)
    assert transport.value().startswith(b"GET /next ") and endpoint.pending == 0
    protocol.dataReceived(OK)
    assert second.outcome == ("end", ()) and pool.connectionsOpened == 1


def test_idle_connections_expire_each_at_its_own_deadline():
    """When connections become idle at different times, each is closed keepalive_idle
    after its own start, and no timer is left once none is idle."""
    pool, clock, [endpoint] = make_pool(keepalive_idle=30.0)
    for _ in range(2):
        pool.request(get(), Receiver())
    first, t1 = endpoint.succeed(0)
    second, t2 = endpoint.succeed(0)
    first.dataReceived(OK)
    clock.advance(10)
    second.dataReceived(OK)
    clock.advance(20)
    assert t1.disconnecting and not t2.disconnecting and pool.idleCount == 1
    clock.advance(9.5)
    assert not t2.disconnecting
    clock.advance(0.5)
    assert t2.disconnecting and pool.idleCount == 0
    assert clock.getDelayedCalls() == []
