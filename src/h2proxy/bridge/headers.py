"""Header translation between the front ends and HTTP/1.1 backends. Pure.

The front ends have already refused malformed requests (RFC 9113 8.1.1, RFC 9112),
so what arrives here is well-formed; this module decides what the backend and the
client see. The request to the backend is rebuilt from validated fields in one pass
over the client's fields:

  - ``Host`` is ``:authority``; a ``host`` field that says otherwise is refused
    (L{UnforwardableRequest}), never forwarded;
  - connection-specific (hop-by-hop) fields and ``content-length`` are dropped (the
    upstream side writes the framing itself);
  - split ``cookie`` fields are joined with ``; `` (RFC 9113 8.2.3);
  - forwarding fields (``X-Forwarded-*``, ``Forwarded``, ``X-Real-IP``,
    ``X-Request-Id``) are believed and extended only when the peer is a trusted
    proxy (L{ForwardingPolicy.trusts}); otherwise they are dropped and replaced by
    what this proxy saw;
  - ``Via`` gets this proxy appended;
  - ``X-Forwarded-Client-Cert`` is never taken from a client: it is dropped on every
    listener, and set (Envoy's ``Hash=...;Subject="..."``) only from the certificate
    the client presented on a mutual TLS listener;
  - the route's own edits (remove, set, add) come last, so an operator's
    configuration has the final word.

Responses lose their connection-specific fields and get lowercase names (HTTP/2
requires them), the route's edits, ``Via`` and ``X-Request-Id``.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass

from h2proxy.config.model import ForwardingConfig, HeaderEditsConfig
from h2proxy.errors import H2ProxyError
from h2proxy.fields import HOP_BY_HOP, TOKEN
from h2proxy.message import Headers, RequestHead, ResponseHead, UpstreamRequest

#: What this proxy calls itself in Via (RFC 9110 7.6.3 allows a pseudonym).
VIA_PSEUDONYM = b"h2proxy"

#: Largest X-Request-Id accepted from a trusted proxy, and its characters: enough for
#: UUIDs, ULIDs and base64 ids, nothing that needs quoting in a log or Proxy-Status.
REQUEST_ID = re.compile(rb"[A-Za-z0-9._:+/=-]{1,128}")

# What each special request field is, for the one-pass translation.
_DROP, _HOST, _COOKIE, _XFF, _XFP, _XFH, _FORWARDED, _REAL_IP, _REQUEST_ID, _VIA, _PRIORITY = range(11)

_SPECIAL_REQUEST_FIELDS: dict[bytes, int] = {
    **{name: _DROP for name in HOP_BY_HOP},
    b"content-length": _DROP,
    b"host": _HOST,
    b"cookie": _COOKIE,
    b"x-forwarded-for": _XFF,
    b"x-forwarded-proto": _XFP,
    b"x-forwarded-host": _XFH,
    b"forwarded": _FORWARDED,
    b"x-real-ip": _REAL_IP,
    b"x-request-id": _REQUEST_ID,
    b"via": _VIA,
    b"priority": _PRIORITY,
    b"x-forwarded-client-cert": _DROP,
}

#: RFC 9218 4.1: the urgency of a request that says nothing about it.
DEFAULT_URGENCY = 3


def urgency_of(priority: bytes) -> int:
    """The urgency (0 most urgent .. 7) of an RFC 9218 ``priority`` field value, e.g.
    ``u=1, i``; anything unreadable counts as the default, since the field is only
    advice."""
    for member in priority.split(b","):
        key, _, value = member.strip().partition(b"=")
        if key == b"u" and len(value) == 1 and value in b"01234567":
            return value[0] - 48
    return DEFAULT_URGENCY

#: Trailer fields never forwarded to a backend: framing, routing and connection fields.
_TRAILERS_DROPPED = HOP_BY_HOP | {b"content-length", b"host", b"expect"}


class UnforwardableRequest(H2ProxyError):
    """A request that must not reach a backend as it is (answered with 400).

    @cvar status: the status answered.
    @cvar reason: the RFC 9209 error type for Proxy-Status.
    """

    status = 400
    reason = "http_request_error"


@dataclass(frozen=True, slots=True)
class HeaderEdits:
    """A route's header edits, ready to apply: every name to drop (removed and set
    names), then the fields to append (set, then add).

    @ivar drop: names whose fields are removed.
    @ivar append: fields appended after the kept ones.
    """

    drop: frozenset[bytes] = frozenset()
    append: Headers = ()

    @classmethod
    def fromConfig(cls, config: HeaderEditsConfig) -> "HeaderEdits":
        """Compile the operator's remove/set/add lists (names already lowercase)."""
        sets = tuple((name.encode("ascii"), value.encode("ascii")) for name, value in config.set)
        adds = tuple((name.encode("ascii"), value.encode("ascii")) for name, value in config.add)
        drop = frozenset(name.encode("ascii") for name in config.remove) | {name for name, _ in sets}
        return cls(drop=drop, append=sets + adds)

    def __bool__(self) -> bool:
        return bool(self.drop or self.append)

    def apply(self, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """C{headers} with the edits made (a new list when anything is dropped)."""
        if self.drop:
            headers = [item for item in headers if item[0] not in self.drop]
        headers.extend(self.append)
        return headers


NO_EDITS = HeaderEdits()

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class ForwardingPolicy:
    """What one listener tells backends about its clients, compiled from a
    L{ForwardingConfig}.

    The default instance is the bridge's behaviour before forwarding was
    configurable (X-Forwarded-For and -Proto only, nobody trusted); the worker
    always builds the policy from the listener's configuration.

    @ivar xForwarded: set X-Forwarded-For and X-Forwarded-Proto.
    @ivar xForwardedHost: set X-Forwarded-Host.
    @ivar forwarded: set the RFC 7239 Forwarded field.
    @ivar via: append this proxy to Via, both ways.
    @ivar requestId: send X-Request-Id to backends and return it on responses.
    @ivar trusted: networks whose peers' forwarding fields are believed.
    """

    xForwarded: bool = True
    xForwardedHost: bool = False
    forwarded: bool = False
    via: bool = False
    requestId: bool = False
    trusted: tuple[IPNetwork, ...] = ()

    @classmethod
    def fromConfig(cls, config: ForwardingConfig) -> "ForwardingPolicy":
        return cls(
            xForwarded=config.x_forwarded,
            xForwardedHost=config.x_forwarded,
            forwarded=config.forwarded,
            via=config.via,
            requestId=config.request_id,
            trusted=tuple(ipaddress.ip_network(text) for text in config.trusted_proxies),
        )

    def trusts(self, address: str) -> bool:
        """Whether the peer at C{address} (as L{client_address} gives it) is a trusted proxy."""
        if not self.trusted:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted)


def client_address(host: str | None) -> str:
    """The client's address as backends see it: IPv4-mapped IPv6 addresses (a dual-stack
    ``::`` listener) become plain IPv4; no address (a UNIX socket) is ``unknown``."""
    if not host:
        return "unknown"
    if host.startswith("::ffff:"):
        try:
            mapped = ipaddress.IPv6Address(host).ipv4_mapped
        except ValueError:
            return host
        if mapped is not None:
            return str(mapped)
    return host


def incoming_request_id(headers: Headers) -> bytes | None:
    """The first X-Request-Id among C{headers} if it is acceptable, else None."""
    for name, value in headers:
        if name == b"x-request-id":
            return value if REQUEST_ID.fullmatch(value) else None
    return None


@dataclass(slots=True)
class RequestFacts:
    """What the proxy knows about one request's client, beyond its head.

    @ivar peer: the client's address (L{client_address}); behind the PROXY protocol,
        the address the load balancer reported.
    @ivar secure: the client connection is TLS.
    @ivar protocol: the protocol version the request came in with, for Via
        (``b"2"``, ``b"1.1"``).
    @ivar trusted: the peer is a trusted proxy.
    @ivar requestId: this request's id.
    @ivar clientCert: the ``x-forwarded-client-cert`` value of the client's verified
        certificate (L{client_cert_field}); empty when it presented none.
    """

    peer: str
    secure: bool
    protocol: bytes
    trusted: bool
    requestId: bytes
    clientCert: bytes = b""


def to_upstream(
    head: RequestHead,
    *,
    target: bytes,
    facts: RequestFacts,
    policy: ForwardingPolicy,
    edits: HeaderEdits = NO_EDITS,
    body_length: int | None,
) -> UpstreamRequest:
    """Build the HTTP/1.1 request for C{head} (see the module docstring).

    @param target: the request-target to send (the path, perhaps with a prefix stripped).
    @raise UnforwardableRequest: a ``host`` field that differs from ``:authority``.
    """
    authority = head.authority
    headers: list[tuple[bytes, bytes]] = [(b"host", authority)]
    cookies: list[bytes] = []
    vias: list[bytes] = []
    seen: dict[int, list[bytes]] = {}
    trusted = facts.trusted
    urgency = DEFAULT_URGENCY
    special = _SPECIAL_REQUEST_FIELDS
    for item in head.headers:
        kind = special.get(item[0])
        if kind is None:
            headers.append(item)
        elif kind == _COOKIE:
            cookies.append(item[1])
        elif kind == _HOST:
            if item[1].lower() != authority.lower():
                raise UnforwardableRequest("the host field differs from :authority")
        elif kind == _VIA:
            vias.append(item[1])
        elif kind == _REAL_IP:
            if trusted:
                headers.append(item)
        elif kind == _PRIORITY:
            headers.append(item)
            urgency = urgency_of(item[1])
        elif kind != _DROP and trusted:
            seen.setdefault(kind, []).append(item[1])
    if cookies:
        headers.append((b"cookie", b"; ".join(cookies)))
    _add_forwarding(headers, head, facts, policy, seen)
    if policy.via:
        vias.append(facts.protocol + b" " + VIA_PSEUDONYM)
    if vias:
        headers.append((b"via", b", ".join(vias)))
    if facts.clientCert:
        headers.append((b"x-forwarded-client-cert", facts.clientCert))
    if edits:
        headers = edits.apply(headers)
    return UpstreamRequest(
        method=head.method, target=target, headers=tuple(headers), body_length=body_length, urgency=urgency
    )


def _add_forwarding(
    headers: list[tuple[bytes, bytes]],
    head: RequestHead,
    facts: RequestFacts,
    policy: ForwardingPolicy,
    seen: dict[int, list[bytes]],
) -> None:
    """Append the forwarding fields. C{seen} holds a trusted peer's incoming values
    by kind (empty when the peer is not trusted): a field this proxy sets extends
    or keeps them; a field it does not set passes them on unchanged."""
    peer = facts.peer.encode("ascii", "replace")
    scheme = b"https" if facts.secure else b"http"
    xff, xfp, xfh = seen.get(_XFF), seen.get(_XFP), seen.get(_XFH)
    forwarded, requestId = seen.get(_FORWARDED), seen.get(_REQUEST_ID)
    if policy.xForwarded:
        headers.append((b"x-forwarded-for", b", ".join([*(xff or ()), peer])))
        headers.append((b"x-forwarded-proto", xfp[0] if xfp else scheme))
    else:
        _pass_on(headers, b"x-forwarded-for", xff)
        _pass_on(headers, b"x-forwarded-proto", xfp)
    if policy.xForwardedHost:
        headers.append((b"x-forwarded-host", xfh[0] if xfh else head.authority))
    else:
        _pass_on(headers, b"x-forwarded-host", xfh)
    if policy.forwarded:
        element = forwarded_element(facts.peer, head.authority, scheme)
        headers.append((b"forwarded", b", ".join([*(forwarded or ()), element])))
    else:
        _pass_on(headers, b"forwarded", forwarded)
    if policy.requestId:
        headers.append((b"x-request-id", facts.requestId))
    else:
        _pass_on(headers, b"x-request-id", requestId)


def _pass_on(headers: list[tuple[bytes, bytes]], name: bytes, values: list[bytes] | None) -> None:
    if values:
        headers.append((name, b", ".join(values)))


@functools.lru_cache(maxsize=1024)
def client_cert_field(sha256: str, subject: str) -> bytes:
    """Envoy's ``x-forwarded-client-cert`` element for a verified client certificate:
    ``Hash=<hex SHA-256 of the DER leaf>;Subject="<RFC 4514 subject>"``. Inside the
    quotes, a quote or backslash gets a backslash and a control character becomes
    ``\\xHH``, so no subject can end the value or the field. Cached: every request
    of a connection carries the same certificate."""
    quoted = "".join(_quoted_char(char) for char in subject)
    return f'Hash={sha256};Subject="{quoted}"'.encode("utf-8")


def _quoted_char(char: str) -> str:
    if char in '"\\':
        return "\\" + char
    if ord(char) < 0x20 or ord(char) == 0x7F:
        return f"\\x{ord(char):02X}"
    return char


def forwarded_element(peer: str, authority: bytes, scheme: bytes) -> bytes:
    """One RFC 7239 ``Forwarded`` element: ``for=...;host=...;proto=...``. IPv6
    addresses are bracketed and quoted (section 6); a host with a port is quoted."""
    node = f'"[{peer}]"' if ":" in peer else peer
    host = authority if TOKEN.fullmatch(authority) else b'"' + authority.replace(b'"', b"") + b'"'
    return b"for=" + node.encode("ascii", "replace") + b";host=" + host + b";proto=" + scheme


def request_body_length(head: RequestHead) -> int | None:
    """How the backend is told the body's length: 0, a Content-Length, or chunked."""
    if head.end_stream:
        return 0
    return head.content_length


def trailers_to_upstream(trailers: Headers) -> Headers:
    """Request trailers a backend may see as chunked trailers (no framing or routing fields)."""
    return tuple(item for item in trailers if item[0] not in _TRAILERS_DROPPED)


def to_client(
    head: ResponseHead,
    *,
    policy: ForwardingPolicy | None = None,
    edits: HeaderEdits = NO_EDITS,
    requestId: bytes = b"",
    date: bytes = b"",
) -> ResponseHead:
    """The response head the client gets: names lowercased (HTTP/2 requires it),
    connection-specific fields dropped, then the route's edits, Via, X-Request-Id
    (unless the backend sent one) and Date (unless the backend sent one: RFC 9110
    6.6.1 has a proxy add it). Without a policy (1xx heads) only the cleaning is
    done, and C{head} itself comes back when it was already clean."""
    kept = [(name.lower(), value) for name, value in head.headers]
    kept = [item for item in kept if item[0] not in HOP_BY_HOP]
    if policy is None and not edits and len(kept) == len(head.headers) and tuple(kept) == head.headers:
        return head
    if edits:
        kept = edits.apply(kept)
    if policy is not None:
        if policy.via:
            kept.append((b"via", b"1.1 " + VIA_PSEUDONYM))
        if policy.requestId and requestId and not _has(kept, b"x-request-id"):
            kept.append((b"x-request-id", requestId))
        if date and not _has(kept, b"date"):
            kept.append((b"date", date))
    return ResponseHead(status=head.status, headers=tuple(kept))


def _has(headers: list[tuple[bytes, bytes]], name: bytes) -> bool:
    for item in headers:
        if item[0] == name:
            return True
    return False


def trailers_to_client(trailers: Headers) -> Headers:
    """Trailer fields safe to send in HTTP/2 (no pseudo or connection-specific ones),
    with lowercase names."""
    lowered = ((name.lower(), value) for name, value in trailers)
    return tuple(item for item in lowered if item[0] not in HOP_BY_HOP and not item[0].startswith(b":"))
