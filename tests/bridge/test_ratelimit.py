"""A route's rate limit, on a fake clock: the token bucket (burst, then refill, the
seconds to wait), the bounded table of clients, and the 429 the bridge answers."""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock

from h2proxy.bridge.bridge import HTTP2, BridgeContext, RequestIds
from h2proxy.bridge.headers import ForwardingPolicy
from h2proxy.bridge.ratelimit import MAX_CLIENTS, RateLimiter
from h2proxy.bridge.routing import Router
from h2proxy.config.access import RateLimitConfig, RequestRate
from h2proxy.config.model import RouteConfig
from h2proxy.message import RequestHead
from h2proxy.observability.accesslog import format_combined
from tests.bridge.test_bridge import FakePool, FakeStream
from tests.bridge.test_redirects import Recorder


def limiter(rate: float = 2.0, burst: int = 3, maxClients: int = MAX_CLIENTS) -> tuple[RateLimiter, Clock]:
    clock = Clock()
    return RateLimiter(rate=rate, burst=burst, clock=clock.seconds, maxClients=maxClients), clock


# -- the bucket ------------------------------------------------------------------------------


def test_a_burst_then_the_wait_for_the_next_token():
    """When a client spends its burst at once, the next request waits for a token: 1/rate seconds, rounded up."""
    bucket, _ = limiter(rate=2.0, burst=3)
    assert [bucket.take("192.0.2.1") for _ in range(4)] == [0, 0, 0, 1]


def test_tokens_refill_at_the_rate_up_to_the_burst():
    """When time passes, tokens come back at the rate, never beyond the burst."""
    bucket, clock = limiter(rate=2.0, burst=3)
    for _ in range(3):
        bucket.take("c")
    clock.advance(0.5)
    assert bucket.take("c") == 0 and bucket.take("c") == 1
    clock.advance(60)
    assert [bucket.take("c") for _ in range(4)] == [0, 0, 0, 1]


def test_retry_after_counts_whole_seconds_until_a_token():
    """When the rate is slow (6/m), the wait is the seconds until the next token, rounded up."""
    bucket, clock = limiter(rate=0.1, burst=1)
    assert bucket.take("c") == 0
    assert bucket.take("c") == 10
    clock.advance(2.5)
    assert bucket.take("c") == 8
    clock.advance(7.5)
    assert bucket.take("c") == 0


def test_clients_have_buckets_of_their_own():
    """When one client is over its limit, another is not affected."""
    bucket, _ = limiter(rate=1.0, burst=1)
    assert bucket.take("a") == 0 and bucket.take("a") == 1
    assert bucket.take("b") == 0


def test_a_clock_going_back_adds_no_tokens():
    """When the clock reads earlier than before, no tokens are added or taken."""
    bucket, clock = limiter(rate=1.0, burst=1)
    clock.advance(10)
    bucket.take("c")
    clock.rightNow = 5.0
    assert bucket.take("c") == 1


def test_the_table_of_clients_is_bounded_least_recently_seen_first():
    """When more clients arrive than the table holds, the least recently seen is forgotten (and comes back with a full bucket)."""
    bucket, _ = limiter(rate=1.0, burst=1, maxClients=3)
    for client in ("a", "b", "c"):
        bucket.take(client)
    bucket.take("a")  # seen again: now the most recent
    bucket.take("d")
    assert len(bucket) == 3
    assert bucket.take("a") == 1  # remembered, still empty
    assert bucket.take("b") == 0  # forgotten: a full bucket again


def test_a_flood_of_addresses_stays_within_the_bound():
    """When a hundred thousand addresses each make one request, the table holds MAX_CLIENTS."""
    bucket, _ = limiter(rate=1.0, burst=1)
    for index in range(100_000):
        bucket.take(f"10.{index >> 16}.{(index >> 8) & 255}.{index & 255}")
    assert len(bucket) == MAX_CLIENTS == 10_000


def test_from_config_reads_the_rate_per_second():
    """When the rate is 30/m, tokens come at one every two seconds."""
    clock = Clock()
    bucket = RateLimiter.fromConfig(RateLimitConfig(rate=RequestRate(30, 60), burst=1), clock.seconds)
    assert bucket.take("c") == 0 and bucket.take("c") == 2


# -- the bridge ---------------------------------------------------------------------------------

ROUTES = (
    RouteConfig(upstream="app", path="/"),
    RouteConfig(upstream="app", path="/api", rate_limit=RateLimitConfig(rate=RequestRate(1, 1), burst=2)),
    RouteConfig(upstream="app", path="/admin", allow=("10.0.0.0/8",), rate_limit=RateLimitConfig(RequestRate(1, 60))),
)


class Proxy:
    """A bridge context on a fake clock, with a fake pool and a recording observer."""

    def __init__(self) -> None:
        self.clock, self.pool, self.observer = Clock(), FakePool(), Recorder()
        self.context = BridgeContext(
            router=Router(ROUTES, clock=self.clock.seconds), pools={"app": self.pool},
            requestIds=RequestIds(b"feedf00d"), observer=self.observer,
        )

    def send(self, path: bytes, host: str = "192.0.2.7") -> FakeStream:
        stream = FakeStream(IPv4Address("TCP", host, 5000))
        head = RequestHead(method=b"GET", scheme=b"http", authority=b"example.org", path=path, end_stream=True)
        self.context.handlersFor(ForwardingPolicy(), HTTP2).handlerFactory(stream).requestReceived(head)
        return stream


def test_over_the_limit_a_client_gets_429_with_retry_after():
    """When a client spends its burst, the next request gets 429 with Retry-After and Proxy-Status, and no backend is asked."""
    proxy = Proxy()
    assert [proxy.send(b"/api").calls for _ in range(2)] == [[], []]
    stream = proxy.send(b"/api/x")
    status, fields = stream.calls[0][1:3]
    assert status == 429 and fields[b"retry-after"] == b"1"
    assert fields[b"proxy-status"] == b'h2proxy; error=http_request_denied; details="request id feedf00d00000003"'
    assert stream.calls[1] == ("data", b"429 too many requests (request id feedf00d00000003)\n")
    assert len(proxy.pool.exchanges) == 2 and stream.calls[-1] == ("finish",)
    line = format_combined(proxy.observer.finished[-1])
    assert '"GET /api/x HTTP/2.0" 429 ' in line and "error=http_request_denied" in line


def test_after_the_wait_the_client_is_served_again():
    """When the clock passes Retry-After, the client's next request is forwarded."""
    proxy = Proxy()
    for _ in range(3):
        proxy.send(b"/api")
    proxy.clock.advance(1)
    assert proxy.send(b"/api").calls == [] and len(proxy.pool.exchanges) == 3


def test_other_clients_and_routes_are_not_limited():
    """When one client is limited on a route, another client and the other routes still pass."""
    proxy = Proxy()
    for _ in range(3):
        proxy.send(b"/api")
    assert proxy.send(b"/api", host="192.0.2.8").calls == []
    assert proxy.send(b"/other").calls == []


def test_a_refused_client_spends_no_tokens():
    """When access control refuses a client, it gets 403 every time, not 429: refusals take no tokens."""
    proxy = Proxy()
    assert [proxy.send(b"/admin").calls[0][1] for _ in range(3)] == [403, 403, 403]
    assert proxy.send(b"/admin", host="10.0.0.1").calls == []
    assert proxy.send(b"/admin", host="10.0.0.1").calls[0][2][b"retry-after"] == b"60"
