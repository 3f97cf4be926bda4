"""Option kinds for HTTP-level settings: paths, trusted networks, header edits and
redirect locations.

Kept apart from spec.py (the generic kinds) because they know a little HTTP: which
field names the proxy owns and an operator may therefore not add, set or remove.
Plain data and pure functions, like the rest of the config package.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from h2proxy.config.spec import Context, Kind, OptionError, Pattern
from h2proxy.fields import HOP_BY_HOP, TOKEN

#: A path prefix a route matches, or a path a health check requests.
PATH_PREFIX = Pattern(r"/[^\s?#]*", "a path prefix starting with / (no spaces, ? or #)")

#: RFC 9110 5.1 field names: tokens (the shared grammar, on text).
_TOKEN = re.compile(TOKEN.pattern.decode("ascii"))
#: Field values an operator may write: visible ASCII, spaces and tabs inside, nothing
#: that could end a line (the value is sent as is to backends or clients).
_VALUE = re.compile(r"[\x21-\x7e]([\x20-\x7e\t]*[\x21-\x7e])?")

#: Hop-by-hop fields a route may still set: credentials for a proxy beyond this one
#: (an upstream reached through another proxy) are the operator's to give.
_OPERATOR_CREDENTIALS = frozenset({b"proxy-authorization", b"proxy-authenticate"})

#: Field names the proxy owns: framing, connection management and Host. Editing them
#: per route would let a backend and the proxy read one message differently.
PROXY_OWNED_FIELDS = {
    "host": "Host comes from :authority",
    "content-length": "message framing is the proxy's",
    "transfer-encoding": "message framing is the proxy's",
    **{
        name.decode("ascii"): "connection-specific fields are the proxy's"
        for name in sorted(HOP_BY_HOP - _OPERATOR_CREDENTIALS - {b"transfer-encoding"})
    },
}


def _field_name(value: object) -> str:
    """A lowercase field name an operator may edit, or an L{OptionError}."""
    if not isinstance(value, str) or _TOKEN.fullmatch(value) is None:
        raise OptionError("expected a header field name (letters, digits and !#$%&'*+-.^_`|~)")
    name = value.lower()
    why = PROXY_OWNED_FIELDS.get(name)
    if why is not None:
        raise OptionError(f"'{name}' cannot be changed by a route: {why}", show_got=False)
    return name


@dataclass(frozen=True, slots=True)
class HeaderName(Kind):
    """A header field name, lowercased; names the proxy owns are refused."""

    what = "field name"

    def convert(self, value: object, context: Context) -> str:
        return _field_name(value)

    def bounds(self) -> str:
        return "a token; not Host, Content-Length or a connection-specific field"


@dataclass(frozen=True, slots=True)
class HeaderField(Kind):
    """A header field written ``"name: value"``; converts to ``(name, value)`` with the
    name lowercased."""

    what = "field"

    def convert(self, value: object, context: Context) -> tuple[str, str]:
        if not isinstance(value, str):
            raise OptionError(
                'expected a header field written "name: value" in quotes '
                "(unquoted, YAML reads name: value as a mapping)"
            )
        name, colon, rest = value.partition(":")
        if not colon:
            raise OptionError('expected a header field written "name: value"')
        text = rest.strip(" \t")
        if _VALUE.fullmatch(text) is None:
            raise OptionError("expected a non-empty value of visible ASCII characters after the colon")
        return _field_name(name.strip(" \t")), text

    def bounds(self) -> str:
        return '"name: value"'

    def format(self, value: Any) -> str:
        return f'"{value[0]}: {value[1]}"'


@dataclass(frozen=True, slots=True)
class Network(Kind):
    """An IPv4 or IPv6 network in CIDR notation (a bare address is a /32 or /128),
    normalised to its text form."""

    what = "network"

    def convert(self, value: object, context: Context) -> str:
        if not isinstance(value, str):
            raise OptionError("expected an IP network like 10.0.0.0/8, 2001:db8::/32 or an address")
        try:
            return str(ipaddress.ip_network(value, strict=True))
        except ValueError:
            pass
        try:
            loose = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise OptionError("expected an IP network like 10.0.0.0/8, 2001:db8::/32 or an address") from None
        raise OptionError(f"'{value}' has host bits set; did you mean {loose}?", show_got=False)

    def bounds(self) -> str:
        return "CIDR network or address"


#: An absolute URL: a scheme, "://", a non-empty authority, then anything.
_ABSOLUTE_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/?#]+.*")
#: What a Location may hold as written: visible ASCII only (no space, CR, LF, NUL
#: or other control character, which could end or split the field).
_VISIBLE = re.compile(r"[\x21-\x7e]+")


@dataclass(frozen=True, slots=True)
class RedirectLocation(Kind):
    """Where a redirect sends the client: an absolute URL or an absolute path, sent
    as the Location field exactly as written."""

    what = "URL or path"

    def convert(self, value: object, context: Context) -> str:
        expected = "expected an absolute URL like https://example.org/new or a path starting with /"
        if not isinstance(value, str) or not value:
            raise OptionError(expected)
        if _VISIBLE.fullmatch(value) is None:
            raise OptionError(
                "a redirect location cannot contain spaces, control characters (CR, LF, NUL) or "
                "non-ASCII characters; percent-encode them (a space is %20)",
                show_got=False,
            )
        if value.startswith("//"):
            raise OptionError(
                "a location starting with // names another host without a scheme; write https://host/...",
                show_got=False,
            )
        if not value.startswith("/") and _ABSOLUTE_URL.fullmatch(value) is None:
            raise OptionError(expected)
        return value

    def bounds(self) -> str:
        return "absolute URL or path starting with /; visible ASCII only"
