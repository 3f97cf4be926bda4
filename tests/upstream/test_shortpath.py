"""The whole-response short path of HTTP11ClientProtocol (head, buffered body and end
delivered at once) against the event-by-event path it stands beside."""

from __future__ import annotations

from contextlib import nullcontext
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.testing import MemoryReactorClock, StringTransport

from h2proxy.message import ResponseHead
from h2proxy.upstream.http11 import HTTP11ClientProtocol, ResponseParser, serialize_request_head

from .helpers import Listener, Owner, closed_cleanly, get, reset


class ActingListener(Listener):
    """A Listener that pauses, resumes or abandons from inside its callbacks."""

    def __init__(self, protocol: HTTP11ClientProtocol, onHead: str, onData: str) -> None:
        super().__init__()
        self.protocol, self.onHead, self.onDataAction = protocol, onHead, onData

    def responseHeadReceived(self, head: ResponseHead) -> None:
        super().responseHeadReceived(head)
        self._act(self.onHead)

    def responseDataReceived(self, data: bytes) -> None:
        super().responseDataReceived(data)
        self._act(self.onDataAction)

    def _act(self, action: str) -> None:
        if action == "pause":
            self.protocol.pauseResponse()
        elif action == "bounce":
            self.protocol.pauseResponse()
            self.protocol.resumeResponse()
        elif action == "abandon":
            self.protocol.abandon()


@st.composite
def responses(draw) -> bytes:
    """A response (1xx heads first, sometimes), well or badly framed, with or without
    its whole body and with bytes after it, sometimes."""
    out = b""
    for status in draw(st.lists(st.sampled_from([100, 103]), max_size=2)):
        out += b"HTTP/1.1 %d Info\r\nlink: </a>\r\n\r\n" % status
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0"]))
    status = draw(st.sampled_from([200, 200, 204, 304, 404, 500]))
    body = draw(st.binary(max_size=40))
    framing = draw(st.sampled_from(["length", "length", "short", "chunked", "none", "bad"]))
    fields = [b"server: origin"]
    if draw(st.booleans()):
        fields.append(b"connection: " + draw(st.sampled_from([b"close", b"keep-alive", b"x-hop"])))
    if framing == "length":
        fields.append(b"content-length: %d" % len(body))
    elif framing == "short":
        fields.append(b"content-length: %d" % (len(body) + 5))
    elif framing == "chunked":
        fields.append(b"transfer-encoding: chunked")
        body = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
    elif framing == "bad":
        fields.append(b"content-length: 1, 2")
    out += b"%s %d OK\r\n%s\r\n\r\n%s" % (version, status, b"\r\n".join(fields), body)
    return out + draw(st.sampled_from([b"", b"", b"HTTP/1.1 200 OK\r\n"]))


def run(data: bytes, cuts: list[int], method: bytes, onHead: str, onData: str, end: str, short: bool) -> list:
    """Feed C{data} in pieces, one second apart, and record what anyone outside sees."""
    clock = MemoryReactorClock()
    owner = Owner()
    protocol = HTTP11ClientProtocol(reactor=clock, responseTimeout=10, idleTimeout=4, owner=owner)
    transport = StringTransport()
    protocol.makeConnection(transport)
    listener = ActingListener(protocol, onHead, onData)
    request = get(method=method)
    patch = nullcontext() if short else mock.patch.object(ResponseParser, "wholeBodyBuffered", return_value=False)
    with patch:
        protocol.sendRequest(request, serialize_request_head(request), listener)
        seen: list = []
        pieces = [data[a:b] for a, b in zip([0, *sorted(cuts)], [*sorted(cuts), len(data)])]
        for piece in pieces:
            clock.advance(1)
            protocol.dataReceived(piece)
            seen.append(observe(protocol, transport, clock, owner, listener))
        if end != "open":
            protocol.connectionLost(closed_cleanly() if end == "clean" else reset())
            seen.append(observe(protocol, transport, clock, owner, listener))
        protocol.resumeResponse()
        seen.append(observe(protocol, transport, clock, owner, listener))
        clock.advance(100)
        seen.append(observe(protocol, transport, clock, owner, listener))
    return seen


def observe(protocol, transport, clock, owner, listener) -> tuple:
    events = [(e[0], type(e[1]).__name__, str(e[1])) if e[0] == "failed" else e for e in listener.events]
    return (
        events,
        protocol.state,
        protocol.responseBytes,
        transport.disconnecting,
        transport.disconnected,
        transport.producerState,
        len(owner.idle),
        len(owner.gone),
        sorted(call.getTime() for call in clock.getDelayedCalls()),
    )


@settings(max_examples=400, deadline=None)
@given(
    data=responses(),
    cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=4),
    method=st.sampled_from([b"GET", b"GET", b"HEAD"]),
    onHead=st.sampled_from(["none", "none", "pause", "bounce", "abandon"]),
    onData=st.sampled_from(["none", "none", "pause", "bounce", "abandon"]),
    end=st.sampled_from(["open", "open", "clean", "reset"]),
)
def test_short_path_is_seen_as_the_event_path(data, cuts, method, onHead, onData, end):
    """When any response arrives in any split, with the listener pausing, resuming or abandoning from its callbacks, everyone outside sees the same with and without the short path."""
    cuts = [min(cut, len(data)) for cut in cuts]
    assert run(data, cuts, method, onHead, onData, end, short=True) == run(
        data, cuts, method, onHead, onData, end, short=False
    )


def test_a_whole_small_response_takes_the_short_path():
    """When head and body arrive together, the parser's body and end events are not used and the timer is gone at the end."""
    clock = MemoryReactorClock()
    owner = Owner()
    protocol = HTTP11ClientProtocol(reactor=clock, responseTimeout=10, owner=owner)
    protocol.makeConnection(StringTransport())
    listener = Listener()
    request = get()
    protocol.sendRequest(request, serialize_request_head(request), listener)
    with mock.patch.object(ResponseParser, "next_event", wraps=protocol._parser.next_event) as nextEvent:
        protocol.dataReceived(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello")
    assert listener.events == [("head", 200, ((b"content-length", b"5"),)), ("data", b"hello"), ("end", ())]
    assert nextEvent.call_count == 1 and owner.idle == [protocol] and clock.getDelayedCalls() == []
