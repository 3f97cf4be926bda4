"""Checks that look at more than one value: within a section once it is built
(L{check_section}), and across the whole file (L{cross_check}).

Each check reports into the L{Report} with the key path of the value to change, so
the message lands on the line the operator must edit. Checks only see values that
converted cleanly; where a check could be misled by a value missing because it was
invalid, it stays quiet (the operator fixes the error first, then sees the rest).
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Callable, Mapping
from typing import Any

from h2proxy.config import tlscheck
from h2proxy.config.model import (
    AdminConfig,
    CertificateConfig,
    ForwardingConfig,
    Http2Config,
    ListenerConfig,
    RouteConfig,
    TlsConfig,
)
from h2proxy.config.upstreams import HealthCheckConfig, UpstreamConfig, UpstreamTlsConfig
from h2proxy.config.report import Report, child
from h2proxy.config.spec import did_you_mean
from h2proxy.config.tlsclientauth import ClientAuthConfig
from h2proxy.config.units import format_duration, format_size

PathOf = Callable[[object], str]


def check_section(value: object, path: str, report: Report, now: datetime.datetime) -> None:
    """Checks within one section that converted without errors."""
    check = _SECTION_CHECKS.get(type(value))
    if check is not None:
        check(value, path, report, now)


def _certificate(cert: CertificateConfig, path: str, report: Report, now: datetime.datetime) -> None:
    for finding in tlscheck.check_pair(cert.cert, cert.key, now):
        add = report.warning if finding.warning else report.error
        add(child(path, finding.field), finding.message)


def _tls(tls: TlsConfig, path: str, report: Report, now: datetime.datetime) -> None:
    problem = tlscheck.cipher_problem(tls.ciphers)
    if problem is not None:
        report.error(child(path, "ciphers"), problem)
    served: set[str] = set()
    for index, cert in enumerate(tls.certificates):
        names = tlscheck.dns_names(cert.cert)
        if index and names and set(names) <= served:
            report.warning(
                f"{path}.certificates[{index}]",
                f"every name it carries ({', '.join(names)}) is served by an earlier certificate; SNI never selects it",
            )
        served.update(names)


def _client_auth(client_auth: ClientAuthConfig, path: str, report: Report, now: datetime.datetime) -> None:
    problem = tlscheck.client_ca_problem(client_auth.ca_file)
    if problem is not None:
        report.error(child(path, "ca_file"), problem)


def _listener(listener: ListenerConfig, path: str, report: Report, now: datetime.datetime) -> None:
    key = child(path, "protocols")
    if listener.tls is not None and report.written(key):
        report.error(
            key,
            "applies to cleartext listeners only; on a TLS listener, list what it offers in tls.alpn (h2, http/1.1)",
        )
    if listener.tls is not None and listener.redirect_https == listener.port:
        report.error(
            child(path, "redirect_https"),
            f"redirects this TLS listener to its own port {listener.port}: every request would loop",
        )


def _http2(http2: Http2Config, path: str, report: Report, now: datetime.datetime) -> None:
    if http2.connection_window_size < http2.initial_window_size:
        report.warning(
            child(path, "connection_window_size"),
            f"{format_size(http2.connection_window_size)} is smaller than initial_window_size "
            f"({format_size(http2.initial_window_size)}): one stream can never use its whole window",
        )


def _health_check(check: HealthCheckConfig, path: str, report: Report, now: datetime.datetime) -> None:
    if check.timeout >= check.interval:
        report.error(
            child(path, "timeout"),
            f"must be shorter than interval ({format_duration(check.interval)}), or checks overlap",
        )


#: Route options that only matter when a request is forwarded to an upstream.
_FORWARDING_ONLY = ("strip_prefix", "request_headers", "response_headers", "request_body", "buffer_limit")

#: What a route does with a request: exactly one is set.
_ROUTE_TARGETS = ("upstream", "redirect", "static")


def _route(route: RouteConfig, path: str, report: Report, now: datetime.datetime) -> None:
    targets = [key for key in _ROUTE_TARGETS if getattr(route, key) is not None]
    if targets == ["upstream", "redirect"]:
        report.error(
            child(path, "redirect"),
            "a route has either an upstream or a redirect, not both; remove one of them",
        )
        return
    if len(targets) > 1:
        report.error(
            child(path, "static"),
            f"a route has exactly one of upstream, redirect or static, not {' and '.join(targets)}; "
            "remove all but one",
        )
        return
    if not targets:
        report.error(path, "a route needs an upstream (to forward to), a redirect (to answer with) or static (files to serve)")
        return
    if route.static is not None and route.exact:
        report.error(
            child(path, "exact"),
            "a static route serves the files under its path, and exact: true matches the path alone (the root "
            "directory itself); remove exact, or give the route the path of the directory that holds the file",
        )
        return
    if route.redirect is not None or route.static is not None:
        doing = "redirects" if route.redirect is not None else "serves static files"
        for key in _FORWARDING_ONLY:
            if report.written(child(path, key)):
                report.warning(child(path, key), f"has no effect on a route that {doing}")
        if route.redirect is not None and route.compress is not None:
            report.warning(child(path, "compress"), "has no effect on a route that redirects (a redirect has no body)")
        return
    if route.strip_prefix and route.path == "/":
        report.warning(child(path, "strip_prefix"), "stripping the path / changes nothing")
    if route.request_body == "stream" and route.buffer_limit != _DEFAULT_ROUTE.buffer_limit:
        report.warning(child(path, "buffer_limit"), "has no effect unless request_body is buffer")


_DEFAULT_ROUTE = RouteConfig(upstream="default")


def _forwarding(forwarding: ForwardingConfig, path: str, report: Report, now: datetime.datetime) -> None:
    for index, network in enumerate(forwarding.trusted_proxies):
        if network.endswith("/0"):
            report.warning(
                f"{child(path, 'trusted_proxies')}[{index}]",
                f"{network} trusts every client: anyone can forge X-Forwarded-For and the other forwarding fields",
            )


def _upstream(upstream: UpstreamConfig, path: str, report: Report, now: datetime.datetime) -> None:
    first: dict[tuple[str, int, str], int] = {}
    for index, server in enumerate(upstream.servers):
        where = (server.host, server.port, server.scheme)
        if where in first:
            report.error(
                f"{path}.servers[{index}].address",
                f"same server as servers[{first[where]}]; use weight to give a server a larger share",
            )
        first.setdefault(where, index)
    if upstream.queue.size and not upstream.max_connections:
        report.warning(child(path, "queue.size"), "has no effect unless max_connections is set")
    has_https = any(s.scheme == "https" for s in upstream.servers)
    if upstream.tls != UpstreamTlsConfig() and not has_https:
        report.warning(child(path, "tls"), "no server of this upstream uses https://, so this section has no effect")


_SECTION_CHECKS: dict[type, Callable[[Any, str, Report, datetime.datetime], None]] = {
    CertificateConfig: _certificate,
    TlsConfig: _tls,
    ClientAuthConfig: _client_auth,
    ListenerConfig: _listener,
    Http2Config: _http2,
    HealthCheckConfig: _health_check,
    UpstreamConfig: _upstream,
    RouteConfig: _route,
    ForwardingConfig: _forwarding,
}


# -- across the file -----------------------------------------------------------


def cross_check(draft: Mapping[str, Any], declared: Mapping[str, tuple[str, ...]], path_of: PathOf, report: Report) -> None:
    """Checks between sections, on the top-level values that converted.

    @param declared: key path of a mapping-of-names -> every name written there.
    @param path_of: the key path a section object was read from.
    """
    listeners: tuple[ListenerConfig, ...] = draft.get("listeners", ())
    _listener_names(listeners, path_of, report)
    _bind_conflicts(listeners, draft.get("admin"), path_of, report)
    routes: tuple[RouteConfig, ...] = draft.get("routes", ())
    _routes_needed(listeners, routes, report)
    _route_targets(routes, declared.get("upstreams", ()), path_of, report)
    _route_duplicates(routes, path_of, report)
    _body_limit(draft, listeners, path_of, report)
    if not report.error_count:
        _unused_upstreams(draft.get("upstreams", {}), routes, report)


def _listener_names(listeners: tuple[ListenerConfig, ...], path_of: PathOf, report: Report) -> None:
    first: dict[str, str] = {}
    for listener in listeners:
        where = path_of(listener)
        if listener.name in first:
            report.error(child(where, "name"), f"'{listener.name}' is already the name of {first[listener.name]}")
        first.setdefault(listener.name, where)


def _bind_conflicts(listeners: tuple[ListenerConfig, ...], admin: AdminConfig | None, path_of: PathOf, report: Report) -> None:
    """Two sockets that cannot both be bound: same address and port, or a wildcard
    address covering the other (``::`` covers IPv4 too: Linux binds it dual-stack)."""
    bound: list[tuple[str, str, int]] = []
    sockets = [(path_of(l), l.address, l.port) for l in listeners]
    if admin is not None:
        sockets.append(("admin", admin.address, admin.port))
    for where, address, port in sockets:
        for other, other_address, other_port in bound:
            if port and port == other_port and _covers_either(address, other_address):
                note = " (:: also accepts IPv4 connections)" if "::" in (address, other_address) and address != other_address else ""
                report.error(
                    child(where, "port"),
                    f"{_show(address, port)} conflicts with {other} ({_show(other_address, other_port)}){note}",
                )
                break
        bound.append((where, address, port))


def _covers_either(a: str, b: str) -> bool:
    first, second = ipaddress.ip_address(a), ipaddress.ip_address(b)
    return first == second or _covers(first, second) or _covers(second, first)


def _covers(wide: ipaddress.IPv4Address | ipaddress.IPv6Address, other: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return wide.is_unspecified and (wide.version == other.version or wide.version == 6)


def _show(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _routes_needed(listeners: tuple[ListenerConfig, ...], routes: tuple[RouteConfig, ...], report: Report) -> None:
    """A listener that serves requests (one that does not send everything to HTTPS)
    needs at least one route; a config of redirecting listeners needs none. (Routes
    that were written but refused are already reported.)"""
    if routes or any(problem.key.startswith("routes") for problem in report.problems):
        return
    serving = [listener for listener in listeners if listener.redirect_https is None]
    if serving:
        names = ", ".join(repr(listener.name) for listener in serving)
        report.error("routes", f"listener {names} serves requests but no route is declared; add a route "
                     "(host, path and an upstream, redirect or static root)")


def _route_targets(routes: tuple[RouteConfig, ...], names: tuple[str, ...], path_of: PathOf, report: Report) -> None:
    for route in routes:
        if route.upstream is not None and route.upstream not in names:
            hint = did_you_mean(route.upstream, names) or (
                f"; defined: {', '.join(names)}" if names else ""
            )
            report.error(child(path_of(route), "upstream"), f"no upstream named '{route.upstream}'{hint}")


def _route_duplicates(routes: tuple[RouteConfig, ...], path_of: PathOf, report: Report) -> None:
    first: dict[tuple[str, str, bool], str] = {}
    for route in routes:
        where = path_of(route)
        match = (route.host, route.path, route.exact)
        if match in first:
            exact = " (exact)" if route.exact else ""
            report.error(
                child(where, "path"),
                f"host '{route.host}' and path '{route.path}'{exact} are already routed by {first[match]}; this route is never used",
            )
        first.setdefault(match, where)


def _body_limit(draft: Mapping[str, Any], listeners: tuple[ListenerConfig, ...], path_of: PathOf, report: Report) -> None:
    """A request-body limit below a stream window lets a client send a window's
    worth of body that is then refused: the window should not exceed the limit."""
    limits, http2 = draft.get("limits"), draft.get("http2")
    if limits is None or http2 is None or not limits.max_request_body:
        return
    windows = [("http2.initial_window_size", http2.initial_window_size)]
    windows += [
        (f"{path_of(l)}.http2.initial_window_size", l.http2.initial_window_size)
        for l in listeners
        if l.http2 is not None and l.http2.initial_window_size != http2.initial_window_size
    ]
    limit = limits.max_request_body
    for name, window in windows:
        if limit < window:
            report.error(
                "limits.max_request_body",
                f"{format_size(limit)} is smaller than {name} ({format_size(window)}); "
                f"lower that window to {format_size(limit)} or less, or raise this limit",
            )


def _unused_upstreams(upstreams: Mapping[str, UpstreamConfig], routes: tuple[RouteConfig, ...], report: Report) -> None:
    used = {route.upstream for route in routes}
    for name in upstreams:
        if name not in used:
            report.warning(f"upstreams.{name}", "no route uses this upstream")
