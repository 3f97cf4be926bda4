"""A lean HTTP/1.1 client for one backend connection.

Why our own rather than C{twisted.web.client.Agent}: a proxy needs per-chunk push
backpressure in both directions (the client's HTTP/2 stream pauses the backend socket
and the backend socket pauses the stream), exact control of the bytes that go out
(no header the bridge did not ask for, refusal of anything that could be read two
ways), the early-response case, and a reuse decision it can explain. Agent's
C{IBodyProducer}/C{IResponse.deliverBody} pair gives none of that without wrapping
private classes. See docs/_upstream_section.md.

Parts, each testable alone:

  - L{grammar}: the HTTP/1.1 syntax checked here and the L{FieldNameCache} of
    names already found valid;
  - L{request}: L{serialize_request_head} and the body writers (L{NoBody},
    L{LengthBody}, L{ChunkedBody}): what goes to the backend, validated;
  - L{response}: L{ResponseParser}, a sans-I/O pull parser, and its events;
  - L{peers}: what a connection reports to (its owner, the exchange);
  - L{continuation}: a request body held until the backend's 100 Continue;
  - L{protocol}: L{HTTP11ClientProtocol}, one connection, one exchange at a time.

This package re-exports the names the rest of the proxy uses.
"""

from h2proxy.upstream.http11.continuation import CONTINUE_TIMEOUT, MAX_HELD_BODY
from h2proxy.upstream.http11.grammar import MAX_GOOD_NAMES, FieldNameCache
from h2proxy.upstream.http11.peers import ConnectionOwner, ExchangeListener
from h2proxy.upstream.http11.protocol import (
    MAX_BUFFERED_WHILE_PAUSED,
    TUNNEL_CLOSE_TIMEOUT,
    TUNNEL_IDLE_TIMEOUT,
    ClientState,
    HTTP11ClientProtocol,
)
from h2proxy.upstream.http11.request import (
    ChunkedBody,
    LengthBody,
    NoBody,
    RequestRefused,
    body_writer,
    expects_continue,
    serialize_request_head,
)
from h2proxy.upstream.http11.response import (
    MAX_CHUNK_LINE,
    MAX_HEAD_SIZE,
    Body,
    Complete,
    Event,
    FinalHead,
    Informational,
    ResponseParser,
)
from h2proxy.upstream.transport import BACKEND_READ_SIZE

__all__ = [
    "BACKEND_READ_SIZE",
    "CONTINUE_TIMEOUT",
    "MAX_BUFFERED_WHILE_PAUSED",
    "MAX_CHUNK_LINE",
    "MAX_GOOD_NAMES",
    "MAX_HEAD_SIZE",
    "MAX_HELD_BODY",
    "TUNNEL_CLOSE_TIMEOUT",
    "TUNNEL_IDLE_TIMEOUT",
    "Body",
    "ChunkedBody",
    "ClientState",
    "Complete",
    "ConnectionOwner",
    "Event",
    "ExchangeListener",
    "FieldNameCache",
    "FinalHead",
    "HTTP11ClientProtocol",
    "Informational",
    "LengthBody",
    "NoBody",
    "RequestRefused",
    "ResponseParser",
    "body_writer",
    "expects_continue",
    "serialize_request_head",
]
