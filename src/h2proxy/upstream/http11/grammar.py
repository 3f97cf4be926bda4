"""The HTTP/1.1 message syntax the upstream client checks, beyond the field grammar
every side shares (L{h2proxy.fields}), and the field names it has already found
valid (L{FieldNameCache}). Plain data; no I/O, no Twisted."""

from __future__ import annotations

import re

from h2proxy.fields import HOP_BY_HOP

#: Field names remembered as valid, per direction, by one L{FieldNameCache}.
MAX_GOOD_NAMES = 1024
#: Response fields that decide the framing or the connection's reuse, or that are
#: never forwarded.
FRAMING_AND_HOP = HOP_BY_HOP | {b"content-length"}
#: Methods whose requests carry a body by nature: they get ``content-length: 0`` when empty.
BODY_METHODS = frozenset({b"POST", b"PUT", b"PATCH"})
#: Request fields the client owns (framing and connection management): refused if given.
CLIENT_OWNED = frozenset({b"content-length", b"transfer-encoding", b"connection"})
#: Methods that need no token check.
GOOD_METHODS = frozenset({b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"TRACE"})
#: A request target may hold no space, control or DEL (RFC 9112 3.2).
BAD_TARGET = re.compile(rb"[\x00-\x20\x7f]")
#: The HTTP-version of a status line (RFC 9112 2.3).
VERSION = re.compile(rb"HTTP/1\.[0-9]")
#: Status-line versions that need no pattern match.
COMMON_VERSIONS = frozenset({b"HTTP/1.1", b"HTTP/1.0"})
#: The size of a chunk (RFC 9112 7.1), at most 16 hex digits.
CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")
#: Most digits of a content-length: more could not fit in 63 bits.
MAX_LENGTH_DIGITS = 19
CONTENT_LENGTH = re.compile(rb"[0-9]{1,%d}" % MAX_LENGTH_DIGITS)
#: The Connection options of a message that has none.
NO_TOKENS: frozenset[bytes] = frozenset()


class FieldNameCache:
    """Field names already found valid, so that the next message with the same names
    skips the token pattern: a proxy sees the same few names over and over, and a
    set or dict lookup is much cheaper than a regex. Each direction holds at most
    L{MAX_GOOD_NAMES}, so a client or backend inventing names cannot grow it.

    One per pool, handed to the request serialiser and to each connection's parser;
    tests make their own.

    @ivar request: request field names that are tokens the client does not own.
    @ivar response: response field names that are tokens, as received -> lowercase.
    """

    __slots__ = ("request", "response")

    def __init__(self) -> None:
        self.request: set[bytes] = set()
        self.response: dict[bytes, bytes] = {}

    def rememberRequest(self, name: bytes) -> None:
        """C{name} was checked: a token the client does not own."""
        if len(self.request) < MAX_GOOD_NAMES:
            self.request.add(name)

    def rememberResponse(self, name: bytes, lowered: bytes) -> None:
        """C{name} was checked: a token, C{lowered} in lowercase."""
        if len(self.response) < MAX_GOOD_NAMES:
            self.response[name] = lowered
