"""Properties of the connection as a whole: how bytes are split never changes what the handler sees."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.frontend_http1.harness import connect

REQUESTS = [
    b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n",
    b"POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: 1\r\n\r\n",
    b"\r\nHEAD /d HTTP/1.1\r\nHost: h\r\nX: y\r\n\r\n",
]


def run(wire: bytes, cuts: list[int]) -> tuple[list, bytes]:
    """Feed C{wire} cut at C{cuts}, answering each request once it ended; return what
    each handler saw (path, body, kinds of events, last event) and the bytes written."""
    h = connect(maxPipelined=100)
    points = sorted({c % (len(wire) + 1) for c in cuts}) + [len(wire)]
    last = 0
    for point in points:
        h.feed(wire[last:point])
        last = point
        for handler in h.handlers:
            if handler.kinds()[-1] == "end" and not handler.stream.finished:
                handler.respond(body=handler.head.path)
    events = [(x.head.path, x.body(), [k for k in x.kinds() if k != "data"], x.events[-1]) for x in h.handlers]
    return events, h.output()


@settings(max_examples=60, deadline=None)
@given(
    order=st.lists(st.sampled_from(range(len(REQUESTS))), min_size=1, max_size=5),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=10),
)
def test_splitting_pipelined_requests_does_not_change_the_result(order, cuts):
    """When pipelined requests arrive split at arbitrary points, the handlers see the same events and the client gets the same bytes."""
    wire = b"".join(REQUESTS[i] for i in order)
    whole = run(wire, [])
    assert run(wire, cuts) == whole
    assert len(whole[0]) == len(order)
