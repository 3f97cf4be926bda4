"""Choosing a route for a request: pure, no I/O, no Twisted.

A route matches a host pattern and a path prefix. Hosts are tried from the most
specific pattern to the least (exact name, then ``*.suffix`` wildcards by longest
suffix, then ``*``); among the routes of the chosen host, the longest matching path
prefix wins. The table is built once per config, so matching is a dictionary
lookup plus a short scan of that host's prefixes.
"""

from __future__ import annotations

from h2proxy.config.model import RouteConfig


def host_without_port(authority: bytes) -> str:
    """The lowercase host part of an ``:authority`` (IPv6 literals keep brackets)."""
    text = authority.decode("ascii", "replace").lower()
    if text.startswith("["):
        end = text.find("]")
        return text[: end + 1] if end != -1 else text
    return text.rpartition(":")[0] if ":" in text else text


def path_matches(prefix: str, path: str) -> bool:
    """True when ``path`` is under ``prefix`` on a segment boundary (``/api`` matches
    ``/api``, ``/api/x`` and ``/api?q`` but not ``/apix``)."""
    if prefix == "/" or path == prefix:
        return True
    if not path.startswith(prefix):
        return False
    if prefix.endswith("/"):
        return True
    return path[len(prefix)] in "/?"


class Router:
    """Matches ``(authority, path)`` to the L{RouteConfig} that serves it."""

    def __init__(self, routes: tuple[RouteConfig, ...]) -> None:
        self._exact: dict[str, list[RouteConfig]] = {}
        self._wildcards: list[tuple[str, list[RouteConfig]]] = []
        self._default: list[RouteConfig] = []
        wildcards: dict[str, list[RouteConfig]] = {}
        for route in routes:
            host = route.host.lower()
            if host == "*":
                self._default.append(route)
            elif host.startswith("*."):
                wildcards.setdefault(host[1:], []).append(route)
            else:
                self._exact.setdefault(host, []).append(route)
        self._wildcards = sorted(wildcards.items(), key=lambda item: -len(item[0]))
        for table in (*self._exact.values(), *wildcards.values(), self._default):
            table.sort(key=lambda r: -len(r.path))

    def match(self, authority: bytes, path: bytes) -> RouteConfig | None:
        """The route for this request, or ``None`` (the caller answers 404)."""
        host = host_without_port(authority)
        text_path = path.decode("latin-1")
        for candidates in self._candidates(host):
            for route in candidates:
                if path_matches(route.path, text_path):
                    return route
        return None

    def _candidates(self, host: str):
        exact = self._exact.get(host)
        if exact:
            yield exact
        for suffix, routes in self._wildcards:
            if host.endswith(suffix) and len(host) > len(suffix):
                yield routes
        yield self._default
