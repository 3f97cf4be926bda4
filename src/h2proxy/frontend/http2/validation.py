"""Checking HTTP/2 requests before anything acts on them: pure functions, no I/O.

h2 is configured with ``validate_inbound_headers=False`` because its own checks raise
out of ``receive_data`` as a *connection* error, which would take every other stream
of the connection down with one bad request (and drop the events of the other frames
of the same read). The checks live here instead, and their outcome is one of three:

1. **Malformed** (RFC 9113 8.1.1, 8.2, 8.3): L{MalformedRequest}. The request breaks
   HTTP/2's own rules, so it is a *stream error*: the connection answers RST_STREAM
   PROTOCOL_ERROR and the request never reaches a handler. This covers every field
   that an HTTP/1.1 backend could read two ways:

   - a field name that is empty, has uppercase letters, or is not an RFC 9110 token
     (pseudo-header names aside);
   - a field value with NUL, CR or LF anywhere, or with leading/trailing SP or HTAB;
   - connection-specific fields: ``connection``, ``keep-alive``,
     ``proxy-connection``, ``transfer-encoding``, ``upgrade``; ``te`` other than
     ``trailers``;
   - pseudo-headers that are unknown (``:protocol`` included unless RFC 8441 is
     advertised, see below), duplicated, after a regular field, or response-only
     (``:status``); ``:protocol`` on a method other than CONNECT;
   - missing ``:method``; missing ``:scheme`` or ``:path`` (except plain CONNECT,
     which must carry ``:authority`` and neither of those); an empty ``:path``;
   - ``content-length`` that is not a plain decimal integer, several that differ, or
     one that is non-zero on a request whose HEADERS ended the stream (a mismatch
     found later, against the DATA actually received, is checked by the stream);
   - in trailers: any pseudo-header, and the field rules above.

2. **Unusable** (L{UnusableRequest}): well-formed HTTP/2 that makes no sense as an
   HTTP request to forward. The connection answers on that stream with a short text
   response (the stream ends normally, the connection keeps serving others):

   - 431 when the decoded header list is larger than the advertised
     SETTINGS_MAX_HEADER_LIST_SIZE (RFC 9113 6.5.2 accounting: name + value + 32
     per field, pseudo-headers included);
   - 400 for: a ``:method`` that is not a token (spaces, controls); a ``:path`` with
     bytes outside visible ASCII or a ``#``, or not starting with ``/`` (``*`` is
     allowed for OPTIONS only); a ``:scheme`` other than ``http``/``https``; no
     authority at all (neither ``:authority`` nor ``host``); an authority with
     userinfo (``@``), characters outside RFC 3986's host syntax or a bad port; a
     ``host`` field that differs from ``:authority``, or several ``host`` fields;
     plain CONNECT (no TCP tunnelling here); an extended CONNECT whose
     ``:protocol`` is not ``websocket``; a field value with a control character
     other than HTAB (RFC 9110 5.5: invalid, and HTTP/1.1 backends disagree on
     what to do with one; in trailers it is a stream error instead).

Extended CONNECT (RFC 8441 section 4, only with C{extended_connect}, i.e. when
SETTINGS_ENABLE_CONNECT_PROTOCOL was advertised): ``:method CONNECT`` with
``:protocol websocket`` and the usual ``:scheme``, ``:path`` and ``:authority`` is
acceptable; its L{RequestHead} keeps ``method=CONNECT`` and ``protocol=websocket``,
and once answered with a 2xx the stream's DATA are the tunnel's bytes both ways.

3. **Acceptable**: L{parse_request} returns a L{ParsedRequest} whose
   L{RequestHead} is what the handler sees. The hop-by-hop fields HTTP/2 allows
   (``te: trailers``, ``trailer``, ``proxy-authorization``, ``proxy-authenticate``,
   ``http2-settings``: L{h2proxy.fields.HOP_BY_HOP}) are left out of it, as the
   HTTP/1.1 front end leaves them out, so a handler gets the same fields from both. ``expect: 100-continue`` stays in it
   (normalised to lowercase) when a body follows, so that the backend decides whether
   it wants the body and its 100 is relayed; with C{localContinue}, or without a
   body, it is removed (the front end then answers the 100 itself;
   L{ParsedRequest.expectsContinue}).

Response fields from the bridge are checked too (L{response_fields},
L{trailer_fields}): an invalid field raises L{InvalidResponseField} before anything is
HPACK-encoded, because h2 encodes lazily and an error half-way through a header block
would leave the client's HPACK table out of step with ours.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence

from h2proxy.fields import CONNECTION_SPECIFIC, HOP_BY_HOP, TCHARS, UNSAFE_VALUE_BYTES
from h2proxy.message import Headers, RequestHead, ResponseHead

Field = tuple[bytes, bytes]

#: RFC 9113 6.5.2: each field costs its name, its value and 32 octets of overhead.
FIELD_OVERHEAD = 32

#: RFC 9113 8.3.1: the request pseudo-headers we understand.
REQUEST_PSEUDO = frozenset({b":method", b":scheme", b":authority", b":path"})
#: ... and with RFC 8441 extended CONNECT advertised.
EXTENDED_CONNECT_PSEUDO = REQUEST_PSEUDO | {b":protocol"}
#: The ``:protocol`` values an extended CONNECT may ask for (the bridge speaks these).
TUNNEL_PROTOCOLS = frozenset({b"websocket"})

#: Longest content-length we parse: 19 digits already exceed any real body.
MAX_CONTENT_LENGTH_DIGITS = 19

#: Hop-by-hop fields HTTP/2 allows in a request (``te`` aside, which must say
#: ``trailers``): checked like any field, then left out of the head handed on.
_ALLOWED_HOP_BY_HOP = HOP_BY_HOP - CONNECTION_SPECIFIC - {b"te"}
#: HTTP/2 field names: lowercase tokens (RFC 9113 8.2.1).
_NAME_CHARS = frozenset(c for c in TCHARS if not (0x41 <= c <= 0x5A))
#: Control characters other than HTAB, and DEL: RFC 9110 5.5 calls them invalid in a
#: field value, and an HTTP/1.1 backend may reject or mangle them; a request that
#: carries one is answered 400 (CR, LF and NUL are already malformed in HTTP/2).
_CONTROLS = frozenset([*range(0x20), 0x7F]) - frozenset(b"\t")
_EDGE_WHITESPACE = frozenset(b" \t")
_PATH_CHARS = frozenset(range(0x21, 0x7F)) - frozenset(b"#")
_HOST_CHARS = frozenset(
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~%!$&'()*+,;="
)
_IP_LITERAL_CHARS = _HOST_CHARS | frozenset(b":")
_DIGITS = frozenset(b"0123456789")
#: In values joined with LF: a control character other than HTAB and LF, or
#: whitespace at the edge of a value. A match sends the fields to the one-by-one checks.
_SUSPECT_VALUES = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]|[ \t]\n|\n[ \t]|\A[ \t]|[ \t]\Z")
#: Names and authorities a L{KnownGood} remembers of each kind, at most: clients
#: send the same few names, backends answer with the same few, a proxy serves few
#: authorities.
MAX_GOOD_NAMES = 1024
MAX_GOOD_AUTHORITIES = 1024
#: Accepted request field blocks a L{KnownGood} remembers with their outcome, at most
#: (forgotten all at once when full), and the largest block remembered (RFC 9113 6.5.2
#: size): clients repeat the same few requests, and the memory stays near 1 MiB at most.
MAX_GOOD_REQUESTS = 256
MAX_GOOD_REQUEST_SIZE = 4096


class KnownGood:
    """What earlier checks found valid, so that the common request is checked in one
    pass: request field names (lowercase tokens, not connection-specific, not te or
    content-length), authorities, and response field names already sent (valid and
    not connection-specific). Each set stops growing at its cap, so memory is
    bounded whatever names the peers make up. Whole accepted requests are
    remembered too (L{parse_request}'s outcome is a function of its arguments), so
    a repeated request is not checked again; that memory is emptied when full, so
    that it follows what clients send now.

    One shared instance (L{SHARED_KNOWN_GOOD}) serves every connection of a worker
    by default; a test or a connection may be given its own.
    """

    __slots__ = ("maxNames", "maxAuthorities", "maxRequests", "requestNames", "authorities", "responseNames", "requests")

    def __init__(
        self,
        maxNames: int = MAX_GOOD_NAMES,
        maxAuthorities: int = MAX_GOOD_AUTHORITIES,
        maxRequests: int = MAX_GOOD_REQUESTS,
    ) -> None:
        self.maxNames = maxNames
        self.maxAuthorities = maxAuthorities
        self.maxRequests = maxRequests
        self.requestNames: set[bytes] = set()
        self.authorities: set[bytes] = set()
        self.responseNames: set[bytes] = set()
        self.requests: dict[RequestKey, ParsedRequest] = {}

    def addRequestName(self, name: bytes) -> None:
        if len(self.requestNames) < self.maxNames:
            self.requestNames.add(name)

    def addAuthority(self, authority: bytes) -> None:
        if len(self.authorities) < self.maxAuthorities:
            self.authorities.add(authority)

    def addResponseName(self, name: bytes) -> None:
        if len(self.responseNames) < self.maxNames:
            self.responseNames.add(name)

    def addRequest(self, key: RequestKey, parsed: ParsedRequest) -> None:
        """Remember an accepted request; when full, start again empty (unlike the
        name sets, so that the memory follows what clients send now)."""
        if not self.maxRequests:
            return
        if len(self.requests) >= self.maxRequests:
            self.requests.clear()
        self.requests[key] = parsed


#: The instance every check uses unless given another.
SHARED_KNOWN_GOOD = KnownGood()


class MalformedRequest(ValueError):
    """The request breaks RFC 9113's rules: answer RST_STREAM PROTOCOL_ERROR."""


class UnusableRequest(ValueError):
    """The request is valid HTTP/2 but cannot be served: answer C{status} politely.

    @ivar status: 400 or 431.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


#: Longest method, path or authority kept from a refused request for the access log.
REFUSED_FIELD_LIMIT = 1024


def refused_head(fields: Iterable[Field]) -> RequestHead:
    """What the access log can say of a request refused with an L{UnusableRequest}:
    its C{:method}, C{:path} and C{:authority} as received (each cut at
    L{REFUSED_FIELD_LIMIT} bytes), empty when absent."""
    pseudo = {name: value[:REFUSED_FIELD_LIMIT] for name, value in fields if name[:1] == b":"}
    return RequestHead(
        method=pseudo.get(b":method", b""),
        scheme=pseudo.get(b":scheme", b""),
        authority=pseudo.get(b":authority", b""),
        path=pseudo.get(b":path", b""),
    )


class InvalidResponseField(ValueError):
    """A response field the bridge asked to send cannot be sent on HTTP/2."""


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    """An acceptable request.

    @ivar head: what the handler is given.
    @ivar expectsContinue: the client sent ``expect: 100-continue``.
    @ivar localContinue: the front end owes the 100 itself (C{localContinue} was
        asked for, the client expects it and a body follows).
    """

    head: RequestHead
    expectsContinue: bool
    localContinue: bool = False


def header_list_size(fields: Iterable[Field]) -> int:
    """The RFC 9113 6.5.2 size of a decoded field list."""
    return sum(len(name) + len(value) + FIELD_OVERHEAD for name, value in fields)


#: What an accepted request is remembered by: its fields and L{parse_request}'s flags.
RequestKey = tuple[tuple[Field, ...], bool, int, bool, bool]


def parse_request(
    fields: Sequence[Field],
    *,
    end_stream: bool,
    max_header_list_size: int,
    extended_connect: bool = False,
    localContinue: bool = False,
    knownGood: KnownGood = SHARED_KNOWN_GOOD,
) -> ParsedRequest:
    """Check a decoded request field block and build the head handed on; a request
    accepted before with the same fields and flags gets the same (immutable) outcome
    without the checks.

    @param extended_connect: RFC 8441 was advertised: accept ``:protocol``.
    @param localContinue: the front end answers ``expect: 100-continue`` itself,
        so the field is not handed on.
    @param knownGood: names, authorities and requests already found valid (and
        remembered here when found valid now).

    @raise UnusableRequest: for a polite 431/400 (see the module docstring).
    @raise MalformedRequest: for RST_STREAM PROTOCOL_ERROR.
    """
    key = (tuple(fields), end_stream, max_header_list_size, extended_connect, localContinue)
    parsed = knownGood.requests.get(key)
    if parsed is None:
        parsed = _checked_request(
            fields,
            end_stream=end_stream,
            max_header_list_size=max_header_list_size,
            extended_connect=extended_connect,
            localContinue=localContinue,
            knownGood=knownGood,
        )
        if header_list_size(fields) <= MAX_GOOD_REQUEST_SIZE:
            knownGood.addRequest(key, parsed)
    return parsed


def _checked_request(
    fields: Sequence[Field],
    *,
    end_stream: bool,
    max_header_list_size: int,
    extended_connect: bool,
    localContinue: bool,
    knownGood: KnownGood,
) -> ParsedRequest:
    """Every check of L{parse_request}, and the outcome built."""
    known = EXTENDED_CONNECT_PSEUDO if extended_connect else REQUEST_PSEUDO
    checked = _fields_at_once(fields, max_header_list_size, known, knownGood)
    if checked is None:
        pseudo, regular, contentLength = _fields_one_by_one(fields, max_header_list_size, known)
        regular = [item for item in regular if item[0] not in HOP_BY_HOP]
    else:
        pseudo, regular, contentLength = checked
    if end_stream and contentLength:
        raise MalformedRequest("content-length announces a body but HEADERS ended the stream")
    method = _required(pseudo, b":method")
    protocol = pseudo.get(b":protocol")
    if protocol is not None:
        _check_extended_connect(method, protocol)
    elif method == b"CONNECT":
        _check_connect(pseudo)
    scheme = _required(pseudo, b":scheme")
    path = _required(pseudo, b":path")
    if not path:
        raise MalformedRequest(":path is empty")
    authority = _authority(pseudo.get(b":authority"), regular, knownGood)
    _check_method(method)
    _check_path(method, path)
    if scheme not in (b"http", b"https"):
        raise UnusableRequest(400, "unsupported :scheme")
    expectsContinue = any(
        name == b"expect" and value.lower() == b"100-continue" for name, value in regular
    )
    if expectsContinue:
        regular = [(n, v) for n, v in regular if n != b"expect"]
        if not (end_stream or localContinue):
            regular.append((b"expect", b"100-continue"))
    head = RequestHead(
        method=method,
        scheme=scheme,
        authority=authority,
        path=path,
        headers=tuple(regular),
        protocol=protocol,
        content_length=contentLength,
        end_stream=end_stream,
    )
    return ParsedRequest(head, expectsContinue, localContinue and expectsContinue and not end_stream)


Checked = tuple[dict[bytes, bytes], list[Field], "int | None"]


def _fields_one_by_one(fields: Sequence[Field], limit: int, known: frozenset[bytes]) -> Checked:
    """Every field check in order, raising the first problem found: size, then the
    pseudo-headers, then each regular field, then content-length."""
    size = header_list_size(fields)
    if size > limit:
        raise UnusableRequest(431, f"request header fields total {size} bytes, over the limit of {limit}")
    pseudo, regular = _split_pseudo(fields, known)
    for name, value in regular:
        _check_regular_field(name, value)
    return pseudo, regular, _content_length(regular)


def _fields_at_once(
    fields: Sequence[Field], limit: int, known: frozenset[bytes], knownGood: KnownGood
) -> Checked | None:
    """The same checks as L{_fields_one_by_one} for the common case, in one pass
    and one search over all values; C{None} at the first sign of any problem (or
    anything unusual), and the caller then runs the checks one by one, which find
    it and say what it is. Never accepts what L{_fields_one_by_one} refuses; its
    regular fields are theirs without the hop-by-hop ones, which are dropped here
    rather than in a second pass."""
    size = 0
    pseudo: dict[bytes, bytes] = {}
    regular: list[Field] = []
    values: list[bytes] = []
    lengths: list[bytes] = []
    goodNames = knownGood.requestNames
    for item in fields:
        name, value = item
        size += len(name) + len(value) + FIELD_OVERHEAD
        values.append(value)
        if name in goodNames:
            regular.append(item)
        elif name[:1] == b":":
            if len(pseudo) != len(values) - 1 or name not in known or name in pseudo:
                # a pseudo-header after a regular field (one left out included)
                return None
            pseudo[name] = value
        elif name == b"content-length":
            lengths.append(value)
            regular.append(item)
        elif name == b"te":
            if value != b"trailers":
                return None
        elif name in _ALLOWED_HOP_BY_HOP:
            pass  # valid in HTTP/2 but for this hop only: not handed on
        elif name and _NAME_CHARS.issuperset(name) and name not in CONNECTION_SPECIFIC:
            knownGood.addRequestName(name)
            regular.append(item)
        else:
            return None
    if size > limit:
        return None
    joined = b"\n".join(values)
    if joined.count(b"\n") != len(values) - 1 or _SUSPECT_VALUES.search(joined):
        return None
    if not lengths:
        return pseudo, regular, None
    first = lengths[0]
    if any(value != first for value in lengths) or not (
        0 < len(first) <= MAX_CONTENT_LENGTH_DIGITS and _DIGITS.issuperset(first)
    ):
        return None
    return pseudo, regular, int(first)


def request_trailers(fields: Sequence[Field]) -> Headers:
    """Check a request's trailer block (RFC 9113 8.1: no pseudo-headers).

    @raise MalformedRequest: for RST_STREAM PROTOCOL_ERROR.
    """
    for name, value in fields:
        if name.startswith(b":"):
            raise MalformedRequest(f"pseudo-header {_show(name)} in trailers")
        _check_regular_field(name, value, inTrailers=True)
    return tuple(fields)


def content_length_mismatch(declared: int | None, received: int, ended: bool) -> str | None:
    """Why the DATA received so far contradicts ``content-length`` (RFC 9113 8.1.1),
    or C{None} when it does not (yet)."""
    if declared is None:
        return None
    if received > declared:
        return f"received {received} body bytes, more than content-length {declared}"
    if ended and received != declared:
        return f"stream ended after {received} body bytes, content-length said {declared}"
    return None


def response_fields(head: ResponseHead, knownGood: KnownGood = SHARED_KNOWN_GOOD) -> list[Field]:
    """The field list to encode for a response head (final or 1xx).

    Connection-specific fields are dropped (they mean nothing on HTTP/2).

    @raise InvalidResponseField: for a field that cannot be sent.
    """
    if not 100 <= head.status <= 999:
        raise InvalidResponseField(f"status {head.status} is not a three-digit code")
    return [(b":status", b"%d" % head.status), *_outbound_regular(head.headers, knownGood)]


def trailer_fields(headers: Headers, knownGood: KnownGood = SHARED_KNOWN_GOOD) -> list[Field]:
    """The field list to encode as response trailers.

    @raise InvalidResponseField: for a pseudo-header or a field that cannot be sent.
    """
    for name, _ in headers:
        if name.startswith(b":"):
            raise InvalidResponseField(f"pseudo-header {_show(name)} in trailers")
    return _outbound_regular(headers, knownGood)


def _outbound_regular(headers: Headers, knownGood: KnownGood) -> list[Field]:
    """The fields to send: the checks of L{_outbound_checked}, done at once when every
    name was already sent (so valid and kept), no value has edge whitespace, and
    no CR, LF or NUL is among all the values joined; a backend repeats the same few
    names on every response."""
    good = knownGood.responseNames
    values = []
    for name, value in headers:
        if name not in good or (value and (value[0] in _EDGE_WHITESPACE or value[-1] in _EDGE_WHITESPACE)):
            return _outbound_checked(headers, knownGood)
        values.append(value)
    if not UNSAFE_VALUE_BYTES.isdisjoint(b"".join(values)):
        return _outbound_checked(headers, knownGood)
    return list(headers)


def _outbound_checked(headers: Headers, knownGood: KnownGood) -> list[Field]:
    """Field by field: connection-specific fields and TE dropped, bad names and
    values refused; names found good are remembered (up to L{MAX_GOOD_NAMES})."""
    fields: list[Field] = []
    for name, value in headers:
        if name in CONNECTION_SPECIFIC or name == b"te":
            continue
        if not name or not _NAME_CHARS.issuperset(name):
            raise InvalidResponseField(f"invalid field name {_show(name)}")
        if not _value_ok(value):
            raise InvalidResponseField(f"invalid value for field {_show(name)}")
        fields.append((name, value))
        knownGood.addResponseName(name)
    return fields


def _split_pseudo(fields: Sequence[Field], known: frozenset[bytes]) -> tuple[dict[bytes, bytes], list[Field]]:
    """Separate pseudo-headers (which must come first, once each) from the rest."""
    pseudo: dict[bytes, bytes] = {}
    regular: list[Field] = []
    for name, value in fields:
        if not name.startswith(b":"):
            regular.append((name, value))
            continue
        if regular:
            raise MalformedRequest(f"pseudo-header {_show(name)} after a regular field")
        if name not in known:
            raise MalformedRequest(f"unknown or response-only pseudo-header {_show(name)}")
        if name in pseudo:
            raise MalformedRequest(f"duplicated pseudo-header {_show(name)}")
        if not _value_ok(value):
            raise MalformedRequest(f"invalid value for {_show(name)}")
        pseudo[name] = value
    return pseudo, regular


def _check_regular_field(name: bytes, value: bytes, inTrailers: bool = False) -> None:
    if not name or not _NAME_CHARS.issuperset(name):
        raise MalformedRequest(f"invalid field name {_show(name)}")
    if not _value_ok(value):
        raise MalformedRequest(f"invalid value for field {_show(name)}")
    if not _CONTROLS.isdisjoint(value):
        message = f"control character in the value of field {_show(name)}"
        if inTrailers:
            raise MalformedRequest(message)
        raise UnusableRequest(400, message)
    if name in CONNECTION_SPECIFIC:
        raise MalformedRequest(f"connection-specific field {_show(name)}")
    if name == b"te" and value.strip().lower() != b"trailers":
        raise MalformedRequest("te other than trailers")


def _value_ok(value: bytes) -> bool:
    if not value:
        return True
    if value[0] in _EDGE_WHITESPACE or value[-1] in _EDGE_WHITESPACE:
        return False
    return UNSAFE_VALUE_BYTES.isdisjoint(value)


def _content_length(regular: list[Field]) -> int | None:
    values = {value for name, value in regular if name == b"content-length"}
    if not values:
        return None
    if len(values) > 1:
        raise MalformedRequest("several content-length fields that differ")
    (value,) = values
    if not value or len(value) > MAX_CONTENT_LENGTH_DIGITS or not _DIGITS.issuperset(value):
        raise MalformedRequest("content-length is not a decimal integer")
    return int(value)


def _required(pseudo: dict[bytes, bytes], name: bytes) -> bytes:
    try:
        return pseudo[name]
    except KeyError:
        raise MalformedRequest(f"missing {_show(name)}") from None


def _check_connect(pseudo: dict[bytes, bytes]) -> None:
    """RFC 9113 8.5: CONNECT names only an authority. Well-formed, it is still refused."""
    if b":scheme" in pseudo or b":path" in pseudo:
        raise MalformedRequest("CONNECT with :scheme or :path")
    if b":authority" not in pseudo:
        raise MalformedRequest("CONNECT without :authority")
    raise UnusableRequest(400, "CONNECT is not supported by this proxy")


def _check_extended_connect(method: bytes, protocol: bytes) -> None:
    """RFC 8441 4: ``:protocol`` only on CONNECT; we tunnel only the protocols the
    bridge knows."""
    if method != b"CONNECT":
        raise MalformedRequest(":protocol on a method other than CONNECT")
    if protocol not in TUNNEL_PROTOCOLS:
        raise UnusableRequest(400, "extended CONNECT supports only :protocol websocket")


def _check_method(method: bytes) -> None:
    if not method or not TCHARS.issuperset(method):
        raise UnusableRequest(400, ":method is not a valid token")


def _check_path(method: bytes, path: bytes) -> None:
    if not _PATH_CHARS.issuperset(path):
        raise UnusableRequest(400, ":path has characters outside visible ASCII, or a fragment")
    if path == b"*":
        if method != b"OPTIONS":
            raise UnusableRequest(400, ":path * is only for OPTIONS")
        return
    if not path.startswith(b"/"):
        raise UnusableRequest(400, ":path must start with /")


def _authority(authority: bytes | None, regular: list[Field], knownGood: KnownGood) -> bytes:
    """The request's authority: ``:authority``, else the single ``host`` field."""
    hosts = [value for name, value in regular if name == b"host"]
    if len(hosts) > 1:
        raise UnusableRequest(400, "several host fields")
    if authority is None:
        if not hosts:
            raise UnusableRequest(400, "no :authority and no host")
        authority = hosts[0]
    elif hosts and hosts[0].lower() != authority.lower():
        raise UnusableRequest(400, "host differs from :authority")
    if authority not in knownGood.authorities:
        _check_authority(authority)
        knownGood.addAuthority(authority)
    return authority


def _check_authority(authority: bytes) -> None:
    """RFC 3986 3.2 ``host [ ":" port ]``, without userinfo."""
    if b"@" in authority:
        raise UnusableRequest(400, "authority with userinfo")
    if authority.startswith(b"["):
        end = authority.find(b"]")
        host, rest = authority[1:end], authority[end + 1 :]
        hostOk = end > 1 and _IP_LITERAL_CHARS.issuperset(host)
    else:
        host, colon, port = authority.partition(b":")
        rest = colon + port
        hostOk = bool(host) and _HOST_CHARS.issuperset(host)
    if not hostOk:
        raise UnusableRequest(400, "invalid host in authority")
    if rest and not (rest[:1] == b":" and 1 <= len(rest) - 1 <= 5 and _DIGITS.issuperset(rest[1:])):
        raise UnusableRequest(400, "invalid port in authority")


def _show(name: bytes) -> str:
    """A field name for a message: printable, never long."""
    return repr(name[:40])[1:]
