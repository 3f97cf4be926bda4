"""The ``upstreams`` part of the configuration schema: backend server groups, their
servers, health checks, passive health, queue, TLS to the backends and timeouts.

Plain data like the rest of the schema (L{h2proxy.config.model}, which names
L{UpstreamConfig}); split out so that each schema module stays readable.
"""

from __future__ import annotations

from dataclasses import dataclass

from h2proxy.config.httpkinds import PATH_PREFIX
from h2proxy.config.spec import (
    Boolean,
    Choice,
    Context,
    Duration,
    FilePath,
    Integer,
    ListOf,
    Pattern,
    Section,
    ServerAddress,
    option,
)
from h2proxy.config.units import DAY, HOUR

#: The most servers one upstream may list.
MAX_SERVERS = 256


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """One backend server of an upstream."""

    host: str = option(
        ServerAddress(),
        "Where the server listens: host:port, [v6]:port, or https://host[:port] for TLS to the backend.",
        key="address",
        fills=("host", "port", "scheme"),
    )
    port: int
    scheme: str = "http"
    weight: int = option(Integer(1, 1000), "Share of requests relative to the other servers.", default=1)
    max_connections: int | None = option(
        Integer(0, 100_000),
        "This server's own cap on connections per worker (when its worker slots differ); null = the upstream's.",
        default=None,
        nullable=True,
    )


@dataclass(frozen=True, slots=True)
class StatusRange(Pattern):
    """A status range like ``200-399``; a single status may be written unquoted (``204``)."""

    def convert(self, value: object, context: Context) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        return Pattern.convert(self, value, context)


#: An expected status range for health checks.
STATUS_RANGE = StatusRange(r"[1-5][0-9]{2}(-[1-5][0-9]{2})?", "a status or a range of statuses like 200-399")


@dataclass(frozen=True, slots=True)
class HealthCheckConfig:
    """Active health checks: a GET to each server; a server that fails is taken out
    of rotation until it passes again. An explicit failed check is honoured even for
    the only server of an upstream (503 with Retry-After until it passes again; a
    short interval makes a restarted application come back sooner)."""

    path: str = option(PATH_PREFIX, "Path requested (GET, on a new connection each time).", default="/")
    expected_status: str = option(
        STATUS_RANGE, "Statuses that count as healthy: low-high (inclusive) or a single status.", default="200-399"
    )
    interval: float = option(Duration(1.0, HOUR), "Time between two checks of one server.", default=10.0)
    timeout: float = option(Duration(0.1, 300.0), "A check not answered within this counts as failed.", default=2.0)
    healthy_threshold: int = option(
        Integer(1, 100), "Consecutive passed checks that put a server back in rotation.", default=2
    )
    unhealthy_threshold: int = option(
        Integer(1, 100), "Consecutive failed checks that take a server out of rotation.", default=3
    )

    @property
    def status_range(self) -> tuple[int, int]:
        """C{expected_status} as an inclusive (low, high) pair, whichever way it was written."""
        low, _, high = self.expected_status.partition("-")
        first, last = int(low), int(high or low)
        return min(first, last), max(first, last)


@dataclass(frozen=True, slots=True)
class PassiveHealthConfig:
    """Ejection of a server that keeps failing real requests (refused, reset or timed
    out), without any extra traffic. After the back-off the server is tried again; one
    more failure then ejects it again for twice as long (up to max_backoff), a success
    makes it whole. The last available server of an upstream (the only one, or the
    only one left) is never ejected: its requests fail fast and the first one after
    the application is back succeeds. When no server is available at all (the others
    marked down by health checks), requests go to the ejected server whose back-off
    ends first rather than failing with 503."""

    failures: int = option(
        Integer(0, 1000), "Consecutive failures that eject a server; 0 = never eject.", default=5
    )
    backoff: float = option(Duration(0.1, HOUR), "How long a first ejection lasts.", default=10.0)
    max_backoff: float = option(
        Duration(0.1, DAY), "Longest ejection, however often the server failed again.", default=300.0
    )


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """Requests waiting for a connection when every healthy server is at
    max_connections; the most urgent (HTTP/2 priority) leave first."""

    size: int = option(
        Integer(0, 100_000),
        "Requests of this upstream that may wait, per worker; beyond it, 503 at once. 0 = no waiting.",
        default=0,
    )
    timeout: float = option(
        Duration(0.0, 300.0), "Longest wait in the queue before a 503; 0 = until a connection is free.", default=5.0
    )


@dataclass(frozen=True, slots=True)
class ClientCertificateConfig:
    """The certificate this proxy presents to backends that ask for one (mutual TLS)."""

    cert: str = option(FilePath(), "PEM certificate chain, leaf first (relative to the config file).")
    key: str = option(FilePath(), "PEM private key of the leaf, unencrypted (keep it mode 0600).")


@dataclass(frozen=True, slots=True)
class UpstreamTlsConfig:
    """How https:// servers are verified."""

    verify: bool = option(Boolean(), "Verify the server's certificate and name; false only for tests.", default=True)
    ca_file: str | None = option(
        FilePath(), "PEM bundle of trusted CAs; null = the system's trust store.", default=None, nullable=True
    )
    server_name: str | None = option(
        Pattern(r"[A-Za-z0-9.-]{1,253}", "a DNS name"),
        "Name sent in SNI and checked in the certificate; null = each server's host.",
        default=None,
        nullable=True,
    )
    client_certificate: ClientCertificateConfig | None = option(
        Section(ClientCertificateConfig),
        "Certificate and key this proxy presents to servers that ask for one (mutual TLS).",
        default=None,
        nullable=True,
    )


@dataclass(frozen=True, slots=True)
class UpstreamTimeoutsConfig:
    """Timers of this upstream's servers; an option left out (or null) takes the value
    of the top-level timeouts section."""

    connect: float | None = option(
        Duration(0.1, 300.0),
        "Longest wait to connect (TLS handshake included); then 504 or the next server.",
        default=None,
        nullable=True,
    )
    response: float | None = option(
        Duration(0.1, HOUR),
        "Longest wait for the response head once the request is sent; then 504.",
        default=None,
        nullable=True,
    )
    idle: float | None = option(
        Duration(0.0, HOUR),
        "Longest silence between two reads of a response body; then the stream is reset. 0 disables.",
        default=None,
        nullable=True,
    )


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    """A named group of backend servers that routes send requests to."""

    name: str
    servers: tuple[ServerConfig, ...] = option(
        ListOf(Section(ServerConfig), 1, MAX_SERVERS), "The backend servers."
    )
    policy: str = option(
        Choice(("round_robin", "least_conn", "random_two")),
        "How a server is chosen: in turn (by weight), fewest open requests (by weight), or the less loaded of two at random.",
        default="round_robin",
    )
    max_connections: int = option(
        Integer(0, 100_000),
        "Connections each worker may open to each server (its worker count, typically); 0 = no limit.",
        default=0,
    )
    keepalive: int = option(
        Integer(0, 10_000),
        "Idle connections each worker keeps open to each server for reuse. Only connections a load peak "
        "needed are ever idle, and each closes after keepalive_idle unused; below the requests in flight, "
        "connections are opened and closed at the request rate.",
        default=1024,
    )
    keepalive_idle: float = option(
        Duration(1.0, HOUR), "A kept-alive connection idle this long is closed.", default=60.0
    )
    max_requests: int = option(
        Integer(0, 1_000_000),
        "Requests one connection carries before it is closed (as nginx's keepalive_requests); 0 = no limit.",
        default=1000,
    )
    retries: int = option(
        Integer(0, 10),
        "Other servers tried after a failure before any response byte: for any request when the connection "
        "failed before the request was written, else only for an idempotent one whose body is small enough "
        "to be kept (64KiB).",
        default=1,
    )
    retry_timeout: float = option(
        Duration(0.0, 600.0),
        "No retry starts later than this after the first try; 0 = no deadline (retries still caps the count).",
        default=10.0,
    )
    queue: QueueConfig = option(
        Section(QueueConfig), "Waiting for a free connection when max_connections is reached.", default_factory=QueueConfig
    )
    health_check: HealthCheckConfig | None = option(
        Section(HealthCheckConfig), "Active health checks; omit to rely on connection failures only.", default=None
    )
    passive_health: PassiveHealthConfig = option(
        Section(PassiveHealthConfig),
        "Ejection of servers whose requests fail, counted by each worker.",
        default_factory=PassiveHealthConfig,
    )
    timeouts: UpstreamTimeoutsConfig = option(
        Section(UpstreamTimeoutsConfig),
        "Per-upstream connect, response and idle timers (default: the top-level timeouts).",
        default_factory=UpstreamTimeoutsConfig,
    )
    tls: UpstreamTlsConfig = option(
        Section(UpstreamTlsConfig), "Verification of https:// servers.", default_factory=UpstreamTlsConfig
    )
