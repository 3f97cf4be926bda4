"""The configuration model: frozen dataclasses with defaults. Plain data, no Twisted.

Durations are ``float`` seconds and sizes ``int`` bytes here; the loader turns the
operator's ``30s`` and ``64KiB`` into these. (First cut for the front end issue;
the configuration issue turns this into the single documented schema.)
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class CertificateConfig:
    cert: str
    key: str


@dataclass(frozen=True, slots=True)
class TlsConfig:
    certificates: tuple[CertificateConfig, ...]
    min_version: str = "1.2"
    alpn: tuple[str, ...] = ("h2", "http/1.1")


@dataclass(frozen=True, slots=True)
class Http2Config:
    """Local HTTP/2 SETTINGS and per-connection protocol limits."""

    max_concurrent_streams: int = 100
    initial_window_size: int = 1024 * 1024
    connection_window_size: int = 16 * 1024 * 1024
    max_frame_size: int = 16 * 1024
    max_header_list_size: int = 64 * 1024
    max_streams_per_connection: int = 0
    max_control_buffer: int = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    name: str
    address: str
    port: int
    tls: TlsConfig | None = None


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str
    port: int
    scheme: str = "http"
    weight: int = 1


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    name: str
    servers: tuple[ServerConfig, ...]
    policy: str = "round_robin"
    max_connections: int = 0
    keepalive: int = 32
    keepalive_idle: float = 60.0


@dataclass(frozen=True, slots=True)
class RouteConfig:
    upstream: str
    host: str = "*"
    path: str = "/"


@dataclass(frozen=True, slots=True)
class TimeoutsConfig:
    idle: float = 60.0
    abort: float = 15.0
    backend_connect: float = 5.0
    backend_response: float = 60.0
    drain: float = 30.0


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    max_request_body: int = 0


@dataclass(frozen=True, slots=True)
class Config:
    listeners: tuple[ListenerConfig, ...]
    upstreams: dict[str, UpstreamConfig]
    routes: tuple[RouteConfig, ...]
    workers: int | None = 1
    timeouts: TimeoutsConfig = field(default_factory=TimeoutsConfig)
    http2: Http2Config = field(default_factory=Http2Config)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    source: str = "<config>"
