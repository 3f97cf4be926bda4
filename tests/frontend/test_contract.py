"""Both front ends' streams keep the L{ClientStream} contract, and the bridge behaves
the same through either: the same answers, and each front end says a reset its own way."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from h2.errors import ErrorCodes
from twisted.internet.testing import MemoryReactorClock, StringTransport

from h2proxy.bridge.bridge import BridgeContext
from h2proxy.bridge.routing import Router
from h2proxy.config.model import RouteConfig
from h2proxy.errors import BackendClosed
from h2proxy.frontend.handler import ClientStream, ResetReason
from h2proxy.frontend.http1.factory import HTTP1Factory
from h2proxy.frontend.http1.stream import HTTP1Stream
from h2proxy.frontend.http2.stream import H2Stream
from h2proxy.message import ResponseHead
from tests.frontend.support import connected
from tests.frontend_http1.test_with_bridge import FakePool

STREAM_CLASSES = (H2Stream, HTTP1Stream)

#: The contract's methods (its attributes, like streamID, are checked on instances).
CONTRACT_METHODS = sorted(
    name for name, value in vars(ClientStream).items() if inspect.isfunction(value) and not name.startswith("_")
)


def _parameters(function: Any) -> list[tuple[str, Any]]:
    return [(p.name, p.default) for p in inspect.signature(function).parameters.values()]


@pytest.mark.parametrize("cls", STREAM_CLASSES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", CONTRACT_METHODS)
def test_stream_methods_have_the_contract_signature(cls: type, name: str) -> None:
    """Every contract method exists on both stream classes with the same parameters and defaults."""
    assert _parameters(getattr(cls, name)) == _parameters(getattr(ClientStream, name))


def test_contract_covers_what_the_bridge_calls() -> None:
    """The contract names the reset, the response calls and the request producer calls."""
    assert {"reset", "writeHeaders", "write", "finish", "pauseProducing", "registerProducer"} <= set(CONTRACT_METHODS)


class _Bridged:
    """One client request through the real bridge and a fake pool, on either front end."""

    def __init__(self, protocol: str) -> None:
        self.pool = FakePool()
        self.context = BridgeContext(
            router=Router((RouteConfig(upstream="app", host="example.org", path="/"),)), pools={"app": self.pool}
        )
        self.protocol = protocol
        self.streams: list[Any] = []

        def handlerFactory(stream: Any) -> Any:
            self.streams.append(stream)
            return self.context.handlerFactory(stream)

        if protocol == "h2":
            self.server, self.client = connected(handlerClass=handlerFactory)
            self.streamID = self.client.request(b"/")
        else:
            factory = HTTP1Factory(reactor=MemoryReactorClock(), handlerFactory=handlerFactory, idleTimeout=30, secure=True)
            self.connection = factory.buildProtocol(None)
            self.transport = StringTransport()
            self.connection.makeConnection(self.transport)
            self.connection.dataReceived(b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n")
        self.exchange = self.pool.exchanges[0]

    def flush(self) -> None:
        if self.protocol == "h2":
            self.client.flush()

    def body(self) -> bytes:
        if self.protocol == "h2":
            return self.client.response(self.streamID)["body"]
        return self.transport.value().split(b"\r\n\r\n", 1)[1]


@pytest.fixture(params=["h2", "http1"])
def bridged(request: pytest.FixtureRequest) -> _Bridged:
    return _Bridged(request.param)


def test_both_streams_are_client_streams(bridged: _Bridged) -> None:
    """The stream each front end hands the bridge is a ClientStream at run time."""
    assert len(bridged.streams) == 1 and isinstance(bridged.streams[0], ClientStream)


def test_a_response_goes_through_either_front_end_the_same(bridged: _Bridged) -> None:
    """A backend response (head, body, end) reaches the client whole and the bridge is done."""
    bridged.exchange.receiver.responseHeadReceived(ResponseHead(200, ((b"content-length", b"5"),)))
    bridged.exchange.receiver.responseDataReceived(b"hello")
    bridged.exchange.receiver.responseEnded(())
    bridged.flush()
    assert bridged.body() == b"hello"
    assert bridged.context.active == set() and not bridged.exchange.cancelled


def test_a_failure_after_the_head_resets_in_each_front_ends_words(bridged: _Bridged) -> None:
    """A backend failure after the head is ResetReason.INTERNAL_ERROR: RST_STREAM
    INTERNAL_ERROR on HTTP/2, a closed connection on HTTP/1.1."""
    bridged.exchange.receiver.responseHeadReceived(ResponseHead(200, ((b"content-length", b"10"),)))
    bridged.exchange.receiver.responseDataReceived(b"abc")
    bridged.flush()
    bridged.exchange.receiver.responseFailed(BackendClosed("backend went away"))
    bridged.flush()
    if bridged.protocol == "h2":
        assert bridged.client.response(bridged.streamID)["reset"] == ErrorCodes.INTERNAL_ERROR
    else:
        assert bridged.transport.disconnecting
    assert bridged.body() == b"abc" and bridged.context.active == set()


def test_a_cancel_reset_maps_to_cancel_on_http2() -> None:
    """ResetReason.CANCEL is RST_STREAM CANCEL on the HTTP/2 wire."""
    server, client = connected()
    streamID = client.request(b"/", end=False)
    server.handlers[streamID].stream.reset(ResetReason.CANCEL)
    client.flush()
    assert client.response(streamID)["reset"] == ErrorCodes.CANCEL
