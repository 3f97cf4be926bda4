"""Smuggling on the HTTP/2 -> HTTP/1.1 downgrade, in memory: every vector is refused
by the front end before any handler runs, and, with the real bridge and upstream
behind it, whatever a client sends (fuzzed by hypothesis), the backend only ever
receives well-formed HTTP/1.1 and exactly the body length it was told."""

from __future__ import annotations

import pytest
from h2.errors import ErrorCodes
from hypothesis import HealthCheck, event, given, settings, strategies as st
from twisted.internet import defer
from twisted.internet.testing import StringTransport

from h2proxy_tools.audit import SMUGGLING_VECTORS, smugglingFields
from h2proxy.bridge.bridge import BridgeContext
from h2proxy.bridge.routing import Router
from h2proxy.config.model import RouteConfig
from h2proxy.config.upstreams import ServerConfig, UpstreamConfig
from h2proxy.upstream.http11 import CONTINUE_TIMEOUT
from h2proxy.upstream.pool import UpstreamPool
from tests.frontend.frames import requestHeaders
from tests.hardening.strict_http1 import read_request
from tests.hardening.support import Attacker, resets

E = ErrorCodes


class _Request:
    """What audit.smugglingFields needs to build a request: the normal fields."""

    def requestFields(self, extra=()):
        return requestHeaders(extra=extra)


@pytest.mark.parametrize("name", SMUGGLING_VECTORS)
def test_every_smuggling_vector_is_refused_before_any_handler(name):
    """When a request carries a field an HTTP/1.1 backend could read two ways, it is refused (RST_STREAM PROTOCOL_ERROR or 400) and no handler ever sees it (a 400 is only recorded, for the access log)."""
    attacker = Attacker()
    streamID = attacker.streamID()
    fields = smugglingFields(_Request(), SMUGGLING_VECTORS[name])
    answer = attacker.feed(attacker.block(streamID, attacker.frames.encode(fields)))
    refused = resets(answer) == [(streamID, E.PROTOCOL_ERROR)] or attacker.statuses(answer) == {streamID: 400}
    assert refused, (resets(answer), attacker.statuses(answer))
    assert all(h.calls == ["requestRefused"] for h in attacker.server.handlers.values())  # a 400's access log line only
    assert not attacker.server.transport.disconnecting


# -- the whole path: front end, bridge, upstream ------------------------------------------------


class Backend:
    """The pool's connections land on StringTransports: what a backend would read."""

    def __init__(self) -> None:
        self.transports: list[StringTransport] = []

    def connect(self, factory):
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.transports.append(transport)
        return defer.succeed(protocol)


class Proxy:
    """Front end, bridge and pool in memory; the client writes raw frames (so it can
    send what a client library would refuse to)."""

    def __init__(self) -> None:
        self.backend = Backend()
        self.attacker = Attacker(handlerClass=lambda stream: self.context.handlerFactory(stream))
        pool = UpstreamPool(
            reactor=self.attacker.server.clock,
            config=UpstreamConfig(name="app", servers=(ServerConfig(host="127.0.0.1", port=9),)),
            connectTimeout=5.0,
            responseTimeout=30.0,
            endpointFactory=lambda server: self.backend,
        )
        self.context = BridgeContext(router=Router((RouteConfig(upstream="app"),)), pools={"app": pool})


def check_backend(proxy: Proxy, declared: int | None) -> None:
    """Every byte written to a backend is one well-formed request, whose body is the
    length it announced, or cut short with the connection closed."""
    for transport in proxy.backend.transports:
        data = transport.value()
        if not data:
            continue
        request, rest = read_request(data)
        assert rest == b"", f"bytes after the request: {rest[:100]!r}"
        if not request.complete:
            assert transport.disconnecting, "a request cut short left its connection open"
        if declared is not None:
            assert len(request.body) <= declared


#: Mostly valid names and values (so that many requests reach the backend and the
#: translation is exercised), mixed with arbitrary bytes and known troublemakers.
TOKENS = st.from_regex(rb"[a-z0-9!#$%&'*+.^_`|~-]{1,12}", fullmatch=True)
NAMES = st.one_of(
    TOKENS,
    TOKENS,
    TOKENS,
    st.binary(max_size=12),
    st.sampled_from([b"transfer-encoding", b"content-length", b"host", b"connection", b"te", b"upgrade",
                     b"keep-alive", b"proxy-connection", b"X-Upper", b"a b", b"a:b", b"a\r\nb", b":path",
                     b":method", b":authority", b"trailer", b"expect", b"cookie", b"x-forwarded-for",
                     b"via", b"forwarded", b"x-request-id"]),
)
PRINTABLE = st.from_regex(rb"[\x21-\x7e]([\x20-\x7e]{0,22}[\x21-\x7e])?", fullmatch=True)
VALUES = st.one_of(
    PRINTABLE,
    PRINTABLE,
    PRINTABLE,
    st.from_regex(rb"[\x21-\x7e]{0,8}", fullmatch=True),
    st.binary(max_size=24),
    st.sampled_from([b"chunked", b"0", b"5", b"trailers", b"close", b"1\r\n\r\nGET /x HTTP/1.1", b"a\x00b",
                     b" lead", b"trail ", b"100-continue", b"evil.example", b"\r\n", b"gzip, chunked", b"\x7f"]),
)


VALID_PATHS = st.from_regex(rb"/[\x21-\x7e]{0,16}", fullmatch=True).filter(lambda p: b"#" not in p)
PATHS = st.one_of(
    VALID_PATHS,
    VALID_PATHS,
    VALID_PATHS,
    st.sampled_from([b"/", b"/a?b=c", b"/a b", b"*", b"/\r\nx", b"//x", b"/%0d%0a", b"/a\x00"]),
)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    extra=st.lists(st.tuples(NAMES, VALUES), max_size=4),
    body=st.one_of(st.none(), st.binary(max_size=64)),
    length=st.one_of(st.just("none"), st.just("match"), st.integers(min_value=0, max_value=80)),
    path=PATHS,
)
def test_backends_only_ever_receive_well_formed_http11(extra, body, length, path):
    """When a client sends any fields, path, body and content-length at all, every backend receives only well-formed HTTP/1.1, one request, with no more body than announced."""
    proxy = Proxy()
    attacker = proxy.attacker
    fields = list(extra)
    declared = None if length == "none" else len(body or b"") if length == "match" else length
    if declared is not None:
        fields.append((b"content-length", b"%d" % declared))
    headers = requestHeaders(path, b"POST" if body is not None else b"GET", fields)
    streamID = attacker.streamID()
    chunks = [attacker.block(streamID, attacker.frames.encode(headers), end=body is None)]
    if body is not None:
        chunks.append(attacker.frames.data(streamID, body, flags=["END_STREAM"]).serialize())
    attacker.feed(*chunks)
    # A body announced with expect: 100-continue is held until the backend's 100 or
    # the upstream's wait runs out; let the wait run out so the whole request is out.
    attacker.server.clock.advance(CONTINUE_TIMEOUT)
    reached = any(t.value() for t in proxy.backend.transports)
    event("reached the backend" if reached else "refused by the front end")
    check_backend(proxy, declared)
