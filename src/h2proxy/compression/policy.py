"""Whether a response on a compressing route is compressed, in which coding, and how
its head changes. Pure: no I/O, no Twisted.

A response is *eligible* when compressing it cannot change what it means: a final
200 (not a range, not a revalidation, not an empty 204), of a compressible media
type, not already encoded, not marked ``Cache-Control: no-transform``, without a
digest of its bytes (RFC 9530 ``Content-Digest``/``Repr-Digest``, which encoding
would falsify), and not known to be shorter than the route's ``min_length``. An eligible response gets
``Vary: Accept-Encoding`` whether or not this client accepts a coding, so that
caches keep the encoded and the plain variant apart. It is compressed when the
request's Accept-Encoding accepts one of the route's codings
(L{h2proxy.compression.negotiate}); its head then names the coding, loses its
Content-Length and Accept-Ranges (the encoded length is not known in advance, and
ranges of the encoded body are not offered) and its ETag is weakened (the bytes
differ from the identity's). A HEAD gets the head a GET would, with nothing to
encode. A 304 that revalidates an encoded variant the client holds (its
If-None-Match lists the weak form of the 304's strong ETag) gets the weak ETag and
the Vary the encoded 200 had, as a 304 must (RFC 9110, section 15.4.5).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from h2proxy.compression.negotiate import negotiate
from h2proxy.config.compression import CompressionConfig
from h2proxy.fields import entity_tags
from h2proxy.message import Headers, ResponseHead

_VARY_VALUE = b"Accept-Encoding"
#: Fields whose presence alone keeps a response as it is: a range of the identity,
#: and digests of the bytes as the backend sent them (RFC 9530).
_BLOCKING_FIELDS = frozenset({b"content-range", b"content-digest", b"repr-digest"})

@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with one response.

    @ivar head: the head to send (changed as the module says, or as it came).
    @ivar coding: the coding the head names; C{None} when the body goes as it is.
    @ivar encode: whether there is a body to encode (false for a HEAD's response).
    """

    head: ResponseHead
    coding: str | None
    encode: bool


@dataclass(frozen=True, slots=True)
class CompressionPolicy:
    """A route's compression settings, compiled.

    @ivar types: lowercase media types (without parameters) that are compressed.
    @ivar minLength: a response whose Content-Length is below this is sent as it is.
    @ivar level: gzip's level.
    @ivar codings: the codings offered, in the server's order of preference.
    """

    types: frozenset[str]
    minLength: int
    level: int
    codings: tuple[str, ...]

    def decide(self, head: ResponseHead, acceptEncoding: Sequence[bytes], bodyless: bool) -> Decision:
        """The decision for C{head}, the client-bound head of a response to a request
        whose Accept-Encoding field values are C{acceptEncoding}; C{bodyless} for
        the response to a HEAD."""
        if not self.eligible(head):
            return Decision(head, None, False)
        coding = negotiate(acceptEncoding, self.codings)
        if coding is None:
            return Decision(ResponseHead(head.status, with_vary(head.headers)), None, False)
        return Decision(ResponseHead(head.status, encoded_headers(head.headers, coding)), coding, not bodyless)

    def revalidated(self, head: ResponseHead, acceptEncoding: Sequence[bytes], ifNoneMatch: Sequence[bytes]) -> ResponseHead:
        """The head of C{head}, a 304, to send: the backend compared the client's
        weak tag weakly and answers with its strong ETag, but the 200 the client
        holds was encoded here, with the weak ETag and Vary: a 304 must carry the
        ETag and Vary that 200 would (RFC 9110, section 15.4.5), else the client's
        cache cannot match it to the stored response. Unchanged when the client
        holds no weakened tag of it or accepts none of the route's codings."""
        etag = next((value.strip() for name, value in head.headers if name == b"etag"), None)
        if etag is None or etag.startswith(b"W/") or negotiate(acceptEncoding, self.codings) is None:
            return head
        held = set(entity_tags(ifNoneMatch))
        if weak_etag(etag) not in held:
            return head
        fields = tuple((name, weak_etag(value) if name == b"etag" else value) for name, value in head.headers)
        return ResponseHead(head.status, with_vary(fields))

    def eligible(self, head: ResponseHead) -> bool:
        """Whether compressing C{head}'s body keeps its meaning (see the module)."""
        if head.status != 200:
            return False
        mediaType = ""
        for name, value in head.headers:
            if name == b"content-type" and not mediaType:
                mediaType = media_type(value)
            elif name == b"content-encoding" and value.strip().lower() != b"identity":
                return False
            elif name == b"cache-control" and b"no-transform" in value.lower():
                return False
            elif name in _BLOCKING_FIELDS:
                return False
            elif name == b"content-length" and _shorter(value, self.minLength):
                return False
        return mediaType in self.types


def compression_policy(config: CompressionConfig) -> CompressionPolicy:
    """A route's C{compress} section, compiled."""
    return CompressionPolicy(
        types=frozenset(config.types), minLength=config.min_length, level=config.level, codings=config.codings
    )


def media_type(value: bytes) -> str:
    """The media type of a Content-Type value, lowercase, without parameters."""
    return value.partition(b";")[0].strip().lower().decode("latin-1")


def _shorter(value: bytes, length: int) -> bool:
    """Whether a Content-Length value says fewer than C{length} bytes."""
    text = value.strip()
    return text.isdigit() and int(text) < length


def with_vary(headers: Headers) -> Headers:
    """C{headers} whose Vary names Accept-Encoding: added to the first Vary field,
    or as a new one; unchanged when a Vary already names it or ``*``."""
    for name, value in headers:
        if name == b"vary":
            listed = {item.strip().lower() for item in value.split(b",")}
            if b"accept-encoding" in listed or b"*" in listed:
                return headers
    merged: list[tuple[bytes, bytes]] = []
    added = False
    for name, value in headers:
        if name == b"vary" and not added:
            value, added = (value + b", " + _VARY_VALUE if value.strip() else _VARY_VALUE), True
        merged.append((name, value))
    if not added:
        merged.append((b"vary", _VARY_VALUE))
    return tuple(merged)


def weak_etag(value: bytes) -> bytes:
    """An ETag value made weak (``W/"x"``); a weak one stays as it is."""
    value = value.strip()
    return value if value.startswith(b"W/") else b"W/" + value


def encoded_headers(headers: Headers, coding: str) -> Headers:
    """The head fields of a response sent in C{coding}: Content-Encoding named,
    Content-Length, Accept-Ranges and an identity Content-Encoding dropped, the
    ETag weakened, Vary naming Accept-Encoding."""
    kept: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        if name in (b"content-length", b"accept-ranges", b"content-encoding"):
            continue
        kept.append((name, weak_etag(value) if name == b"etag" else value))
    kept.append((b"content-encoding", coding.encode("ascii")))
    return with_vary(tuple(kept))
