"""A finished exchange is freed by reference counting alone: the stream lets go of
its handler when it is removed, so no stream <-> bridge <-> exchange cycle is left
for the cyclic garbage collector."""

from __future__ import annotations

import gc
import weakref

import h2.errors

from tests.integration.test_proxy_inmemory import Proxy


def _collectorOff(test):
    def run():
        gc.collect()
        gc.disable()
        try:
            test()
        finally:
            gc.enable()

    run.__doc__ = test.__doc__
    return run


@_collectorOff
def test_completed_exchange_freed_without_collector():
    """When a request is answered in full, its stream, bridge and exchange are freed
    without a garbage collection."""
    proxy = Proxy()
    streamID = proxy.client.request(b"/hello")
    bridge = proxy.server.handlers.pop(streamID)
    stream, exchange = weakref.ref(bridge.stream), weakref.ref(bridge._exchange)
    bridge = weakref.ref(bridge)
    protocol, _ = proxy.backend()
    protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
    proxy.client.flush()
    assert proxy.client.response(streamID)["ended"]
    assert (stream(), bridge(), exchange()) == (None, None, None)


@_collectorOff
def test_reset_exchange_freed_without_collector():
    """When the client resets a stream mid-response, its stream and bridge are freed
    without a garbage collection."""
    proxy = Proxy()
    streamID = proxy.client.request(b"/big")
    bridge = proxy.server.handlers.pop(streamID)
    stream, bridge = weakref.ref(bridge.stream), weakref.ref(bridge)
    protocol, _ = proxy.backend()
    protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nxx")
    proxy.client.flush()
    proxy.client.conn.reset_stream(streamID, h2.errors.ErrorCodes.CANCEL)
    proxy.client.flush()
    assert (stream(), bridge()) == (None, None)
