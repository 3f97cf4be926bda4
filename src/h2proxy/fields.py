"""HTTP field grammar and the field sets every side of the proxy agrees on.

One place for what RFC 9110 says about field names and values and which fields
belong to one connection only, so that the HTTP/2 front end, the HTTP/1.1 front
end, the bridge and the upstream client cannot drift apart: a field forwarded by
one path and dropped by another is a smuggling gap. Plain data and compiled
patterns; no I/O, no Twisted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

#: RFC 9110 5.6.2 ``tchar``: the characters of a token (field names, methods,
#: transfer codings, Connection options).
TCHARS = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")

#: A whole token (match with ``fullmatch``).
TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

#: Bytes that may never appear in a field value anywhere the proxy writes one
#: (RFC 9110 5.5: NUL, CR and LF split or end a field on HTTP/1.1).
UNSAFE_VALUE = re.compile(rb"[\x00\r\n]")
#: The same bytes as a set, for ``isdisjoint`` checks on short values.
UNSAFE_VALUE_BYTES = frozenset(b"\x00\r\n")

#: Connection-specific fields (RFC 9110 7.6.1, RFC 9113 8.2.2): they describe one
#: hop, so they are never forwarded in either direction, by either front end.
#: ``proxy-authorization`` and ``proxy-authenticate`` are addressed to this proxy
#: (RFC 9110 11.7) and ``http2-settings`` to the HTTP/1.1 upgrade it does not
#: forward, so they stop here too.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"te",
        b"trailer",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"http2-settings",
    }
)

#: Fields that may not appear at all in an HTTP/2 message (RFC 9113 8.2.2): a
#: request carrying one is malformed, not merely trimmed.
CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)


#: An entity tag (RFC 9110 8.8.3), weak or strong, quotes included; a comma inside
#: the quotes belongs to the tag.
ENTITY_TAG = re.compile(rb'(?:W/)?"[^"]*"')


def field_values(fields: Iterable[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    """The values of every field called C{name} (lowercase) among C{fields}, in order."""
    return [value for key, value in fields if key == name]


def entity_tags(values: Iterable[bytes]) -> list[bytes]:
    """The entity tags an If-Match or If-None-Match field lists (RFC 9110 13.1.1,
    13.1.2), in order, with C{b"*"} for a field that is the wildcard."""
    tags: list[bytes] = []
    for value in values:
        if value.strip() == b"*":
            tags.append(b"*")
        else:
            tags.extend(ENTITY_TAG.findall(value))
    return tags


def list_items(value: bytes) -> Iterator[bytes]:
    """The members of a comma-separated field value (RFC 9110 5.6.1), lower-cased,
    without surrounding whitespace; empty members are skipped as the RFC allows."""
    for item in value.split(b","):
        item = item.strip(b" \t").lower()
        if item:
            yield item
