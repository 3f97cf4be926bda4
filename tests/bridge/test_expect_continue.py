"""Expect: 100-continue across the bridge: forwarded to the backend, whose 100 is relayed;
answered by the proxy on a buffering route; and forwarding.expect_continue reaching
both front ends of a listener through ProxyServer.factoryFor."""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock

from h2proxy.config.load import load_config_text
from h2proxy.message import ResponseHead
from h2proxy.worker.server import ProxyServer
from tests.bridge.test_bridge import request, setup

EXPECT = ((b"expect", b"100-continue"),)

CONFIG = """
listeners:
  - name: relay
    address: 127.0.0.1
    port: 0
  - name: local
    address: 127.0.0.1
    port: 0
    forwarding:
      expect_continue: local
upstreams:
  app:
    servers:
      - address: 127.0.0.1:9
routes:
  - upstream: app
"""


def test_expect_is_forwarded_and_the_backends_100_relayed():
    """When a streamed request expects 100-continue, the backend gets expect and its 100 reaches the stream before the final head."""
    context, bridge, stream, pool = setup()
    bridge.requestReceived(request(headers=EXPECT))
    exchange = pool.exchanges[0]
    assert dict(exchange.request.headers)[b"expect"] == b"100-continue"
    assert stream.calls == []
    exchange.receiver.responseInformational(ResponseHead(100))
    exchange.receiver.responseHeadReceived(ResponseHead(200))
    assert [call[:2] for call in stream.calls] == [("informational", 100), ("headers", 200)]


def test_buffering_route_answers_100_itself():
    """When a buffering route gets a request expecting 100-continue, the proxy sends the 100 at once and the backend gets the body without expect."""
    context, bridge, stream, pool = setup()
    bridge.requestReceived(request(path=b"/wsgi/up", headers=EXPECT + ((b"x-a", b"1"),)))
    assert stream.calls == [("informational", 100)]
    bridge.requestDataReceived(b"abc")
    bridge.requestEnded(())
    sent = dict(pool.exchanges[0].request.headers)
    assert b"expect" not in sent and sent[b"x-a"] == b"1"


def test_buffering_route_without_expect_sends_no_100():
    """When a buffering route gets a request without expect, no 100 is sent."""
    context, bridge, stream, pool = setup()
    bridge.requestReceived(request(path=b"/wsgi/up"))
    assert stream.calls == []


def test_expect_continue_option_reaches_both_front_ends_of_its_listener():
    """When a listener says expect_continue: local, its HTTP/2 and HTTP/1.1 factories answer locally, and the other listener's forward."""
    config = load_config_text(CONFIG, "/nonexistent/h2proxy.yaml")
    server = ProxyServer(config, MemoryReactorClock())
    for listener in config.listeners:
        server.factoryFor(listener)
    assert server.h2Factories["local"].options.localContinue and server.http1Factories["local"].localContinue
    assert not server.h2Factories["relay"].options.localContinue and not server.http1Factories["relay"].localContinue
    assert server.h2Factories["local"].buildProtocol(None).localContinue
