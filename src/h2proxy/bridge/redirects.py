"""Redirects the proxy answers itself: where they point. Pure, no I/O, no Twisted.

Two kinds: a route's fixed redirect (L{Redirect}, its Location as configured) and a
listener's redirect to HTTPS (L{https_location}, built from the request's host,
path and query). The bridge sends the response (L{h2proxy.bridge.bridge.redirect_response}).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from h2proxy.config.model import RedirectConfig

#: The port an https:// URL implies, left out of the Location.
HTTPS_PORT = 443

#: An authority whose host can be put in a URL as is: a registered name or IPv4
#: address (unreserved characters only), or a bracketed IPv6 literal, with an
#: optional port. Anything else (an empty Host, sub-delimiters, percent-escapes)
#: is not a usable host to redirect to.
_AUTHORITY = re.compile(rb"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~-]+)(?::[0-9]*)?")


@dataclass(frozen=True, slots=True)
class Redirect:
    """A route's redirect, ready to send.

    @ivar status: 301, 302, 303, 307 or 308.
    @ivar location: the Location field's value, as configured.
    """

    status: int
    location: bytes

    @classmethod
    def fromConfig(cls, config: RedirectConfig) -> "Redirect":
        return cls(status=config.status, location=config.location.encode("ascii"))


def https_location(authority: bytes, path: bytes, port: int) -> bytes | None:
    """``https://<host>[:<port>]<path>`` for a request to C{authority} and C{path}
    (query included): the host as sent without its port, C{port} left out when it
    is 443, the path byte for byte. C{None} when the request names no usable host
    or has no origin-form path (``OPTIONS *``): there is nothing to redirect to."""
    match = _AUTHORITY.fullmatch(authority)
    if match is None or not path.startswith(b"/"):
        return None
    host = match.group(1)
    if port == HTTPS_PORT:
        return b"https://" + host + path
    return b"https://%s:%d%s" % (host, port, path)
