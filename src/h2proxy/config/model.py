"""The configuration schema: frozen dataclasses, one documented option per field.

This module is the single definition of every option: its YAML key, kind (with its
bounds), default and one-line description sit on the field itself (see
L{h2proxy.config.spec.option}). The loader (load.py) validates against these fields
and docs/configuration.md is rendered from them (docs.py), so the three cannot
drift. A field without an option marker (a server's host, an upstream's name) is
filled in by the loader.

Durations are ``float`` seconds and sizes ``int`` bytes here; the loader turns the
operator's ``30s`` and ``64KiB`` into these. Plain data: no Twisted, no I/O.

Renaming an option needs a reason and a migration note in docs/configuration.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from h2proxy.config.spec import (
    Boolean,
    Choice,
    Duration,
    FilePath,
    Integer,
    IntegerChoice,
    IpAddress,
    ListOf,
    LogPath,
    MapOf,
    Pattern,
    Section,
    Size,
    SystemAccount,
    Text,
    Workers,
    option,
)
from h2proxy.config.access import RateLimitConfig
from h2proxy.config.compression import CompressionConfig
from h2proxy.config.httpkinds import PATH_PREFIX, HeaderField, HeaderName, Network, RedirectLocation
from h2proxy.config.static import StaticConfig
from h2proxy.config.units import DAY, GiB, HOUR
from h2proxy.config.upstreams import UpstreamConfig
from h2proxy.config.tlsclientauth import ClientAuthConfig

#: Caps on how many of each thing one file may declare (a config is not a database).
MAX_WORKERS = 256
MAX_LISTENERS = 64
MAX_CERTIFICATES = 256
MAX_UPSTREAMS = 1024
MAX_ROUTES = 10_000
MAX_CIPHERS_LENGTH = 4096
MAX_HEADER_EDITS = 64
MAX_TRUSTED_NETWORKS = 1024
MAX_ACCESS_NETWORKS = 1024


#: Names of listeners and upstreams: they appear in logs and metrics.
NAME = Pattern(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", "a name of letters, digits, '_', '.', '-' (at most 64)")
#: A route's host: exact, one leading wildcard label, or everything.
HOST_PATTERN = Pattern(
    r"\*|(\*\.)?[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*",
    "an exact host, *.example.org or *",
    lower=True,
)

#: What a cleartext listener may speak: HTTP/2 with prior knowledge, HTTP/1.1.
H2C_PROTOCOL = "h2c"
HTTP11_PROTOCOL = "http/1.1"
CLEARTEXT_PROTOCOLS = (H2C_PROTOCOL, HTTP11_PROTOCOL)

#: TLS 1.2 suites: AEAD with forward secrecy only (TLS 1.3 suites are OpenSSL's own).
DEFAULT_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
)


@dataclass(frozen=True, slots=True)
class CertificateConfig:
    """One certificate chain and its private key; SNI picks it by the names it carries."""

    cert: str = option(FilePath(), "PEM certificate chain, leaf first (relative to the config file).")
    key: str = option(FilePath(), "PEM private key of the leaf, unencrypted (keep it mode 0600).")


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """TLS of a listener. Omit the section for cleartext HTTP/2 (h2c, prior knowledge)."""

    certificates: tuple[CertificateConfig, ...] = option(
        ListOf(Section(CertificateConfig), 1, MAX_CERTIFICATES),
        "Certificates served; SNI selects by name, the first is the default.",
    )
    min_version: str = option(Choice(("1.2", "1.3")), "Oldest TLS version accepted.", default="1.2")
    alpn: tuple[str, ...] = option(
        ListOf(Choice(("h2", "http/1.1")), 1, 2, unique=True),
        "Protocols offered by ALPN, in order of preference.",
        default=("h2", "http/1.1"),
    )
    ciphers: str = option(
        Text(MAX_CIPHERS_LENGTH),
        "OpenSSL cipher string for TLS 1.2 (TLS 1.3 suites are always OpenSSL's defaults).",
        default=DEFAULT_CIPHERS,
    )
    session_tickets: bool = option(
        Boolean(),
        "Offer session tickets, so returning clients skip the full handshake (keys are per worker: see docs/security.md).",
        default=True,
    )
    ticket_key_rotation: float = option(
        Duration(60.0, DAY),
        "How long a worker encrypts session tickets with one key before it makes a new one.",
        default=HOUR,
    )
    client_auth: ClientAuthConfig | None = option(
        Section(ClientAuthConfig),
        "Ask clients for a certificate (mutual TLS); null = no client certificates.",
        default=None,
        nullable=True,
    )


@dataclass(frozen=True, slots=True)
class Http2Config:
    """Local HTTP/2 SETTINGS and per-connection protocol limits. A listener may
    override any of them in its own ``http2`` section."""

    max_concurrent_streams: int = option(
        Integer(1, 10_000), "Streams a client may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS).", default=100
    )
    initial_window_size: int = option(
        Size(1024, GiB),
        "Flow-control window per request stream (SETTINGS_INITIAL_WINDOW_SIZE): request-body bytes buffered per stream.",
        default=1024 * 1024,
    )
    connection_window_size: int = option(
        Size(64 * 1024, GiB),
        "Flow-control window for all request bodies of one connection together.",
        default=16 * 1024 * 1024,
    )
    max_frame_size: int = option(
        Size(16 * 1024, 16 * 1024 * 1024 - 1), "Largest frame payload accepted (SETTINGS_MAX_FRAME_SIZE).", default=16 * 1024
    )
    max_header_list_size: int = option(
        Size(1024, 16 * 1024 * 1024),
        "Largest request header list accepted (SETTINGS_MAX_HEADER_LIST_SIZE); over it, 431.",
        default=64 * 1024,
    )
    max_streams_per_connection: int = option(
        Integer(0, 1_000_000_000),
        "Streams served on one connection before a graceful GOAWAY; 0 = unlimited.",
        default=0,
    )
    max_control_buffer: int = option(
        Size(16 * 1024, 64 * 1024 * 1024),
        "Control frames (SETTINGS/PING acks, resets) buffered for a client that does not read; over it, the connection is dropped.",
        default=1024 * 1024,
    )
    reset_budget: int = option(
        Integer(0, 1_000_000),
        "Streams a client may reset before their response is complete, per budget_window (rapid reset, "
        "CVE-2023-44487); over it, GOAWAY ENHANCE_YOUR_CALM and close. 0 = no limit.",
        default=200,
    )
    glitch_budget: int = option(
        Integer(0, 1_000_000),
        "Suspicious frames a client may send per budget_window (stream errors, early resets, empty frames, tiny "
        "WINDOW_UPDATEs, PRIORITY, repeated SETTINGS, unknown frames); over it, GOAWAY ENHANCE_YOUR_CALM and close. 0 = no limit.",
        default=1000,
    )
    budget_window: float = option(
        Duration(0.1, HOUR), "Time over which the reset and glitch budgets refill completely.", default=10.0
    )
    max_continuation_frames: int = option(
        Integer(1, 1000),
        "CONTINUATION frames accepted in one header block; more is a flood: GOAWAY ENHANCE_YOUR_CALM.",
        default=32,
    )
    enable_connect_protocol: bool = option(
        Boolean(),
        "Advertise SETTINGS_ENABLE_CONNECT_PROTOCOL and accept RFC 8441 extended CONNECT with :protocol websocket "
        "(WebSockets over HTTP/2, bridged to an HTTP/1.1 Upgrade to the backend).",
        default=True,
    )


@dataclass(frozen=True, slots=True)
class ForwardingConfig:
    """What the proxy tells backends about the client. Forwarding fields a client
    sent (X-Forwarded-*, Forwarded, X-Real-IP, X-Request-Id) are kept only from a
    peer inside trusted_proxies, and dropped otherwise. A listener may override any
    of these options in its own ``forwarding`` section."""

    x_forwarded: bool = option(
        Boolean(), "Set X-Forwarded-For, X-Forwarded-Proto and X-Forwarded-Host.", default=True
    )
    forwarded: bool = option(Boolean(), "Set the standard Forwarded header (RFC 7239).", default=False)
    via: bool = option(
        Boolean(), "Add a Via field naming this proxy to requests and responses (RFC 9110 7.6.3).", default=True
    )
    trusted_proxies: tuple[str, ...] = option(
        ListOf(Network(), 0, MAX_TRUSTED_NETWORKS, unique=True),
        "Peers whose forwarding fields are believed and extended (their X-Forwarded-For is appended to); empty = nobody.",
        default=(),
    )
    request_id: bool = option(
        Boolean(),
        "Send X-Request-Id to backends (a trusted proxy's valid one is kept, else a new one) and return it on every response.",
        default=True,
    )
    expect_continue: str = option(
        Choice(("forward", "local")),
        "Expect: 100-continue: forward = the backend decides (its 100 is relayed, a final answer like 417 or 401 "
        "means the client never sends the body); local = the proxy answers 100 itself and the backend never sees Expect.",
        default="forward",
    )


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    """One listening socket, shared by every worker."""

    name: str = option(NAME, "Name used in logs and metrics; unique among listeners.")
    address: str = option(IpAddress(), "IPv4 or IPv6 address to listen on (0.0.0.0 or :: for all).")
    port: int = option(Integer(0, 65535), "TCP port; 0 lets the kernel choose one (for tests).")
    tls: TlsConfig | None = option(
        Section(TlsConfig), "TLS settings; omit for cleartext h2c (prior knowledge) and HTTP/1.1.", default=None
    )
    protocols: tuple[str, ...] = option(
        ListOf(Choice(CLEARTEXT_PROTOCOLS), 1, len(CLEARTEXT_PROTOCOLS), unique=True),
        "Cleartext listeners only: what the port speaks. h2c alone: anything but the HTTP/2 preface gets GOAWAY "
        "PROTOCOL_ERROR; http/1.1 alone: the preface gets 505. Not for TLS listeners: there tls.alpn says what is offered.",
        default=CLEARTEXT_PROTOCOLS,
    )
    http2: Http2Config | None = option(
        Section(Http2Config, inherits=True),
        "Overrides of the top-level http2 options for this listener; options left out keep the top-level values.",
        default=None,
    )
    proxy_protocol: bool = option(
        Boolean(),
        "Expect a PROXY protocol (v1 or v2) header first, as sent by a load balancer in front; the client address comes from it.",
        default=False,
    )
    forwarding: ForwardingConfig | None = option(
        Section(ForwardingConfig, inherits=True),
        "Overrides of the top-level forwarding options for this listener; options left out keep the top-level values.",
        default=None,
    )
    redirect_https: int | None = option(
        Integer(1, 65535),
        "Answer every request on this listener with 308 to the same host, path and query over https:// on this "
        "port (left out of the URL when 443); routes are not consulted and no backend is asked. A request "
        "without a usable host gets 400. null = serve the routes.",
        default=None,
        nullable=True,
    )


@dataclass(frozen=True, slots=True)
class HeaderEditsConfig:
    """Changes to header fields, in this order: remove, then set, then add. Host,
    Content-Length and connection-specific fields belong to the proxy and cannot be
    named. (The base of the request and response sections below.)"""

    remove: tuple[str, ...] = option(
        ListOf(HeaderName(), 0, MAX_HEADER_EDITS, unique=True), "Field names removed.", default=()
    )
    set: tuple[tuple[str, str], ...] = option(
        ListOf(HeaderField(), 0, MAX_HEADER_EDITS),
        'Fields written "name: value" that replace every field of that name.',
        default=(),
    )
    add: tuple[tuple[str, str], ...] = option(
        ListOf(HeaderField(), 0, MAX_HEADER_EDITS),
        'Fields written "name: value" added after the existing ones.',
        default=(),
    )


@dataclass(frozen=True, slots=True)
class RequestHeadersConfig(HeaderEditsConfig):
    """Changes a route makes to the request's header fields, after the forwarding
    fields are set: remove, then set, then add. Host, Content-Length and
    connection-specific fields belong to the proxy and cannot be named."""


@dataclass(frozen=True, slots=True)
class ResponseHeadersConfig(HeaderEditsConfig):
    """Changes a route makes to the header fields of the backend's final response:
    remove, then set, then add. Host, Content-Length and connection-specific fields
    belong to the proxy and cannot be named."""


#: The statuses a route may redirect with: permanent (301, 308) or not (302, 303,
#: 307); 307 and 308 keep the method and body, 303 makes the client GET.
REDIRECT_STATUSES = (301, 302, 303, 307, 308)


@dataclass(frozen=True, slots=True)
class RedirectConfig:
    """A redirect the proxy answers itself, instead of asking an upstream."""

    location: str = option(
        RedirectLocation(),
        "Where the client is sent: an absolute URL (https://example.org/new) or a path on the same host (/new); "
        "sent as the Location field exactly as written.",
    )
    status: int = option(
        IntegerChoice(REDIRECT_STATUSES),
        "Redirect status: 301 or 308 permanent, 302, 303 or 307 temporary (307 and 308 keep the method and body).",
        default=301,
    )


@dataclass(frozen=True, slots=True)
class RouteConfig:
    """Which upstream serves a host and path, and how the request gets there. Host
    patterns are tried from the most specific (exact, then the longest ``*.``
    wildcard, then ``*``); among a host's routes an exact path match wins, then the
    longest matching path prefix. A host with no matching route falls through to
    the next pattern; a route with ``host: "*"`` and ``path: /`` is the default. No
    match at all: 404. A route has exactly one of an upstream, a redirect or static files."""

    upstream: str | None = option(
        NAME, "Name of the upstream that serves matching requests (a route without one has a redirect or static files).", default=None
    )
    redirect: RedirectConfig | None = option(
        Section(RedirectConfig),
        "Answer matching requests with a redirect from the proxy itself, instead of an upstream.",
        default=None,
    )
    static: StaticConfig | None = option(
        Section(StaticConfig),
        "Serve matching requests from files in a directory, instead of an upstream.",
        default=None,
    )
    allow: tuple[str, ...] | None = option(
        ListOf(Network(), 1, MAX_ACCESS_NETWORKS, unique=True),
        "Only clients in these networks are served; others get 403. Not set: every client. "
        "The address checked is the client's (see docs/operations.md, Access control).",
        default=None,
    )
    deny: tuple[str, ...] = option(
        ListOf(Network(), 0, MAX_ACCESS_NETWORKS, unique=True),
        "Clients in these networks get 403; deny wins over allow.",
        default=(),
    )
    rate_limit: RateLimitConfig | None = option(
        Section(RateLimitConfig),
        "Limit how often each client address may use the route; over it, 429 with Retry-After.",
        default=None,
    )
    compress: CompressionConfig | None = option(
        Section(CompressionConfig, switch=True),
        "Compress responses (br, zstd, gzip) for clients that accept it: true for the defaults, or a mapping.",
        default=None,
    )
    host: str = option(HOST_PATTERN, "Host matched against :authority (port ignored).", default="*")
    path: str = option(
        PATH_PREFIX, "Path prefix matched on a segment boundary: /api matches /api and /api/x, not /apix.", default="/"
    )
    exact: bool = option(
        Boolean(), "Match the path exactly (the query string aside) instead of as a prefix.", default=False
    )
    strip_prefix: bool = option(
        Boolean(), "Remove the matched path from the request path before forwarding: /api/x becomes /x.", default=False
    )
    request_headers: RequestHeadersConfig = option(
        Section(RequestHeadersConfig),
        "Changes to the request's fields, made after the forwarding fields are set.",
        default_factory=RequestHeadersConfig,
    )
    response_headers: ResponseHeadersConfig = option(
        Section(ResponseHeadersConfig),
        "Changes to the fields of the backend's final response.",
        default_factory=ResponseHeadersConfig,
    )
    request_body: str = option(
        Choice(("stream", "buffer")),
        "stream: pass the body on as it arrives; buffer: read a body of unknown length whole first "
        "(spilling to a temporary file) so the backend gets a Content-Length.",
        default="stream",
    )
    buffer_limit: int = option(
        Size(1024, 1024 * GiB),
        "Largest body request_body: buffer reads; over it, 413 and the backend sees nothing.",
        default=64 * 1024 * 1024,
    )


@dataclass(frozen=True, slots=True)
class TimeoutsConfig:
    """Every timer of the proxy. 0 disables the timers that say so."""

    idle: float = option(
        Duration(0.0, DAY),
        "A client connection with no request in progress that sends nothing for this long is closed with GOAWAY "
        "(H2Connection.timeOut); a stream waiting on its backend does not count as idle. 0 disables.",
        default=60.0,
    )
    abort: float = option(
        Duration(0.0, HOUR),
        "After that GOAWAY, how long the client gets to close before the connection is aborted (H2Connection.abortTimeout); 0 disables.",
        default=15.0,
    )
    handshake: float = option(
        Duration(0.1, 300.0),
        "From the TCP accept, longest wait for a TLS handshake to complete or, on a cleartext listener, for the "
        "client's first byte; then the connection is dropped (a client that says nothing is not held).",
        default=10.0,
        former=("tls_handshake",),
    )
    request_header: float = option(
        Duration(0.1, 600.0),
        "Longest time a new connection may take, once TLS is up (from the accept on cleartext), to send its preface "
        "and first complete request headers.",
        default=30.0,
    )
    request_body: float = option(
        Duration(0.0, HOUR),
        "Longest silence of a client while the proxy waits for more of its request body (not while the proxy holds "
        "it back); then 408, or a stream reset once the response started. 0 disables.",
        default=60.0,
    )
    send: float = option(
        Duration(0.0, HOUR),
        "Longest time a client may leave response bytes unaccepted: its socket unread (the connection is closed) "
        "or a stream's flow-control window shut (the stream is reset). 0 disables.",
        default=60.0,
    )
    backend_connect: float = option(
        Duration(0.1, 300.0), "Longest wait for a backend connection; then 504 (or the next server, see retries).", default=5.0
    )
    backend_response: float = option(
        Duration(0.1, HOUR), "Longest wait for a backend's response headers once the request is sent; then 504.", default=60.0
    )
    backend_idle: float = option(
        Duration(0.0, HOUR),
        "Longest pause while reading a backend's response body; then the stream is reset. 0 disables.",
        default=60.0,
    )
    tunnel_idle: float = option(
        Duration(0.0, DAY),
        "Longest silence, both ways, of a WebSocket tunnel (after the backend's 101) before both sides are closed; "
        "replaces backend_idle, request_body and idle for tunnels. 0 disables.",
        default=HOUR,
    )
    drain: float = option(
        Duration(0.0, HOUR),
        "On reload or stop, how long in-flight streams get to finish before their connections are closed.",
        default=30.0,
    )


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """Limits per request and per worker (HTTP/2 protocol limits are under http2)."""

    max_request_body: int = option(
        Size(0, 1024 * GiB), "Largest request body forwarded; over it, 413. 0 = no limit.", default=0
    )
    max_connections: int = option(
        Integer(0, 1_000_000),
        "Client connections each worker holds at once, all listeners together; at the cap the longest idle one is "
        "closed to make room, else the new one is refused (HTTP/2 GOAWAY, HTTP/1.1 503). 0 = no limit.",
        default=10_000,
    )


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    """Where the daemon's own messages and the one-line-per-request access log go."""

    error_log: str | None = option(
        LogPath(), "File for the daemon's messages; - = standard output; null = twistd's log.", default=None, nullable=True
    )
    access_log: str | None = option(
        LogPath(), "File for one line per request; - = standard output; null = no access log.", default=None, nullable=True
    )
    format: str = option(
        Choice(("combined", "json")), "Access log line format: Apache/nginx combined, or one JSON object.", default="combined"
    )
    level: str = option(
        Choice(("debug", "info", "warn", "error")), "Least severe daemon message written.", default="info"
    )


@dataclass(frozen=True, slots=True)
class AdminConfig:
    """The admin listener: metrics (/metrics), liveness (/healthz), status page (/).
    Cleartext HTTP/1.1: keep it on a loopback or private address."""

    port: int = option(Integer(0, 65535), "TCP port of the admin listener.")
    address: str = option(IpAddress(), "Address of the admin listener.", default="127.0.0.1")


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration of one daemon.

    @ivar source: the file it was read from (for messages).
    @ivar warnings: problems that do not stop the daemon (a certificate about to
        expire, an unused upstream), each rendered ``file:line:col: warning: ...``;
        print them after a successful load.
    """

    listeners: tuple[ListenerConfig, ...] = option(
        ListOf(Section(ListenerConfig), 1, MAX_LISTENERS), "Sockets to accept clients on."
    )
    upstreams: dict[str, UpstreamConfig] = option(
        MapOf(Section(UpstreamConfig), NAME, 0, MAX_UPSTREAMS),
        "Backend server groups, by name (none when every route redirects or every listener redirects to HTTPS).",
        default_factory=dict,
    )
    routes: tuple[RouteConfig, ...] = option(
        ListOf(Section(RouteConfig), 0, MAX_ROUTES),
        "Which upstream serves each host and path (none only when every listener redirects to HTTPS).",
        default=(),
    )
    workers: int | None = option(
        Workers(MAX_WORKERS), "Worker processes; auto = one per CPU.", default=1
    )
    timeouts: TimeoutsConfig = option(Section(TimeoutsConfig), "Timers.", default_factory=TimeoutsConfig)
    http2: Http2Config = option(
        Section(Http2Config, provides_defaults=True), "HTTP/2 settings of every listener.", default_factory=Http2Config
    )
    limits: LimitsConfig = option(Section(LimitsConfig), "Request and worker limits.", default_factory=LimitsConfig)
    logging: LoggingConfig = option(Section(LoggingConfig), "Logs.", default_factory=LoggingConfig)
    admin: AdminConfig | None = option(
        Section(AdminConfig), "Metrics and status listener; omit to have none.", default=None
    )
    forwarding: ForwardingConfig = option(
        Section(ForwardingConfig, provides_defaults=True),
        "Headers describing the client to backends, for every listener.",
        default_factory=ForwardingConfig,
    )
    user: str | None = option(
        SystemAccount(), "User the workers run as after binding (when started as root); null = unchanged.",
        default=None, nullable=True,
    )
    group: str | None = option(
        SystemAccount(group=True), "Group the workers run as after binding; null = the user's primary group.",
        default=None, nullable=True,
    )
    source: str = "<config>"
    warnings: tuple[str, ...] = field(default=())

    def http2_for(self, listener: ListenerConfig) -> Http2Config:
        """The HTTP/2 settings a listener runs with: its override, else the top level.

        The loader already merges an override over the top-level section, so an
        override is always complete.
        """
        return listener.http2 or self.http2

    def forwarding_for(self, listener: ListenerConfig) -> ForwardingConfig:
        """The forwarding options a listener runs with: its override (already merged
        over the top level by the loader), else the top level."""
        return listener.forwarding or self.forwarding
