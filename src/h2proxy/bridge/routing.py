"""Choosing a route for a request: pure, no I/O, no Twisted.

A route matches a host pattern and a path. Hosts are tried from the most specific
pattern to the least (exact name, then ``*.suffix`` wildcards by longest suffix,
then ``*``); among the routes of one host pattern, an exact path route wins over
prefixes, and among prefixes the longest one matching on a segment boundary wins.
When no route of a host pattern matches the path, the next pattern is tried, so a
``host: "*"``, ``path: /`` route is the default for everything. The table is built
once per config, so matching is a dictionary lookup plus a short scan of prefixes.

Paths are matched as the client sent them (no percent-decoding or dot-segment
removal): the path sent to the backend is the path that was matched.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from h2proxy.bridge.access import AccessRule
from h2proxy.bridge.headers import HeaderEdits
from h2proxy.bridge.ratelimit import RateLimiter
from h2proxy.bridge.redirects import Redirect
from h2proxy.compression.policy import CompressionPolicy, compression_policy
from h2proxy.config.model import RouteConfig
from h2proxy.static.responder import StaticSite

#: Authorities whose candidate route tables a L{Router} remembers by default (clients
#: name few; past this many, new ones are worked out each time).
MAX_CACHED_AUTHORITIES = 1024


def host_without_port(authority: bytes) -> str:
    """The lowercase host part of an ``:authority``, without a trailing dot (IPv6
    literals keep their brackets)."""
    text = authority.decode("ascii", "replace").lower()
    if text.startswith("["):
        end = text.find("]")
        return text[: end + 1] if end != -1 else text
    host = text.rpartition(":")[0] if ":" in text else text
    return host[:-1] if host.endswith(".") else host


def path_matches(prefix: str, path: str) -> bool:
    """True when ``path`` (without its query) is under ``prefix`` on a segment
    boundary (``/api`` matches ``/api`` and ``/api/x`` but not ``/apix``)."""
    if prefix == "/" or path == prefix:
        return True
    if not path.startswith(prefix):
        return False
    return prefix.endswith("/") or path[len(prefix)] == "/"


@dataclass(frozen=True, slots=True)
class Route:
    """One route, compiled for the bridge.

    @ivar config: the route as configured.
    @ivar upstream: the upstream's name; C{None} on a route that redirects or serves files.
    @ivar redirect: the redirect the proxy answers with, instead of an upstream.
    @ivar static: the files the proxy answers from, instead of an upstream.
    @ivar access: the networks that may use the route; C{None} when it is open to all.
    @ivar limiter: how often each client may use the route; C{None} without a limit.
    @ivar compression: which responses are compressed; C{None} on a route that
        does not compress.
    @ivar requestEdits: header edits for the request.
    @ivar responseEdits: header edits for the final response.
    @ivar buffer: a body of unknown length is read whole before the backend is asked.
    @ivar bufferLimit: the largest body read that way.
    """

    config: RouteConfig
    upstream: str | None
    redirect: Redirect | None
    static: StaticSite | None
    access: AccessRule | None
    limiter: RateLimiter | None
    compression: CompressionPolicy | None
    requestEdits: HeaderEdits
    responseEdits: HeaderEdits
    buffer: bool
    bufferLimit: int

    @classmethod
    def fromConfig(cls, config: RouteConfig, clock: Callable[[], float] = time.monotonic) -> "Route":
        """The compiled route; C{clock} (seconds) paces its rate limit, if any."""
        return cls(
            config=config,
            upstream=config.upstream,
            redirect=Redirect.fromConfig(config.redirect) if config.redirect is not None else None,
            static=StaticSite.fromConfig(config.path, config.static) if config.static is not None else None,
            access=AccessRule.fromConfig(config),
            limiter=RateLimiter.fromConfig(config.rate_limit, clock) if config.rate_limit is not None else None,
            compression=compression_policy(config.compress) if config.compress is not None else None,
            requestEdits=HeaderEdits.fromConfig(config.request_headers),
            responseEdits=HeaderEdits.fromConfig(config.response_headers),
            buffer=config.request_body == "buffer",
            bufferLimit=config.buffer_limit,
        )

    def target(self, path: bytes) -> bytes:
        """The request-target for the backend: C{path}, or with C{strip_prefix} the
        path without the matched prefix (always starting with ``/``)."""
        if not self.config.strip_prefix or path == b"*":
            return path or b"/"
        cut = len(self.config.path.rstrip("/"))
        rest = path[cut:]
        return rest if rest[:1] == b"/" else b"/" + rest


class _HostRoutes:
    """The routes of one host pattern: exact paths by path, prefixes longest first."""

    def __init__(self) -> None:
        self.exact: dict[str, Route] = {}
        self.prefixes: list[Route] = []

    def add(self, route: Route) -> None:
        """Add a route; call L{ready} once all are added."""
        if route.config.exact:
            self.exact.setdefault(route.config.path, route)
        else:
            self.prefixes.append(route)

    def ready(self) -> None:
        self.prefixes.sort(key=lambda r: -len(r.config.path))

    def find(self, path: str) -> Route | None:
        route = self.exact.get(path)
        if route is not None:
            return route
        for route in self.prefixes:
            if path_matches(route.config.path, path):
                return route
        return None


class Router:
    """Matches ``(authority, path)`` to the L{Route} that serves it.

    It owns a cache of the route tables to try per authority, bounded by
    C{maxCachedAuthorities}, so that memory stays fixed whatever hosts clients name.
    C{clock} paces the routes' rate limits (the worker passes C{reactor.seconds}); a
    new Router, built on reload, starts every client's bucket full.
    """

    def __init__(
        self,
        routes: tuple[RouteConfig, ...],
        maxCachedAuthorities: int = MAX_CACHED_AUTHORITIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.maxCachedAuthorities = maxCachedAuthorities
        self._exact: dict[str, _HostRoutes] = {}
        wildcards: dict[str, _HostRoutes] = {}
        self._default = _HostRoutes()
        for config in routes:
            route = Route.fromConfig(config, clock)
            host = config.host.lower()
            if host == "*":
                self._default.add(route)
            elif host.startswith("*."):
                wildcards.setdefault(host[1:], _HostRoutes()).add(route)
            else:
                self._exact.setdefault(host, _HostRoutes()).add(route)
        self._wildcards = sorted(wildcards.items(), key=lambda item: -len(item[0]))
        for table in (*self._exact.values(), *wildcards.values(), self._default):
            table.ready()
        self._byAuthority: dict[bytes, tuple[_HostRoutes, ...]] = {}

    def match(self, authority: bytes, path: bytes) -> Route | None:
        """The route for this request, or ``None`` (the caller answers 404)."""
        tables = self._byAuthority.get(authority)
        if tables is None:
            tables = self._tablesFor(authority)
        text = path.decode("latin-1")
        query = text.find("?")
        if query != -1:
            text = text[:query]
        for table in tables:
            route = table.find(text)
            if route is not None:
                return route
        return None

    def _tablesFor(self, authority: bytes) -> tuple[_HostRoutes, ...]:
        """The tables to try for C{authority}, most specific first, remembered (up to
        C{maxCachedAuthorities}): the table is fixed per config and every request
        of a connection names the same authority, so the host is parsed once."""
        tables = tuple(self._candidates(host_without_port(authority)))
        if len(self._byAuthority) < self.maxCachedAuthorities:
            self._byAuthority[authority] = tables
        return tables

    def _candidates(self, host: str) -> Iterator[_HostRoutes]:
        exact = self._exact.get(host)
        if exact is not None:
            yield exact
        for suffix, table in self._wildcards:
            if host.endswith(suffix) and len(host) > len(suffix):
                yield table
        yield self._default
