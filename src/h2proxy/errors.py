"""The typed exception tree of h2proxy.

Every error an operator or a client can see is one of these, with a message that
says what went wrong and, where it applies, what to change.
"""

from __future__ import annotations


class H2ProxyError(Exception):
    """Base class of every error raised by h2proxy."""


class ConfigError(H2ProxyError):
    """One or more problems in a configuration file.

    @ivar problems: every problem found, each a L{ConfigProblem}; a file is checked
        completely so that the operator sees all its errors at once.
    """

    def __init__(self, problems: "list[ConfigProblem]") -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class ConfigProblem:
    """One problem at one place in a configuration file.

    Rendered as ``file:line:col: key.path: message`` (h2o's and compilers' habit), so
    editors and operators can jump to it.
    """

    __slots__ = ("path", "line", "column", "key", "message", "warning")

    def __init__(
        self,
        path: str,
        line: int | None,
        column: int | None,
        key: str,
        message: str,
        warning: bool = False,
    ) -> None:
        self.path = path
        self.line = line
        self.column = column
        self.key = key
        self.message = message
        self.warning = warning

    def __str__(self) -> str:
        where = self.path
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        key = f" {self.key}:" if self.key else ""
        kind = " warning:" if self.warning else ""
        return f"{where}:{kind}{key} {self.message}"

    def __repr__(self) -> str:
        return f"ConfigProblem({str(self)!r})"


class UpstreamError(H2ProxyError):
    """A failure talking to a backend, carrying the HTTP status the client gets.

    @cvar status: the status answered when no response header has gone out yet.
    @cvar reason: a short token for logs and the Proxy-Status header (RFC 9209).
    """

    status = 502
    reason = "proxy_internal_error"


class BackendRefused(UpstreamError):
    """The backend refused or could not be reached (connect failed)."""

    status = 502
    reason = "connection_refused"


class BackendConnectTimeout(UpstreamError):
    """Connecting to the backend took longer than ``timeouts.backend_connect``."""

    status = 504
    reason = "connection_timeout"


class BackendTimeout(UpstreamError):
    """The backend did not answer (or stalled mid-body) within its timeout."""

    status = 504
    reason = "http_response_timeout"


class BackendProtocolError(UpstreamError):
    """The backend sent something that is not valid HTTP/1.1."""

    status = 502
    reason = "http_protocol_error"


class BackendClosed(UpstreamError):
    """The backend closed or reset the connection before the response was complete."""

    status = 502
    reason = "connection_terminated"


class BackendTLSError(UpstreamError):
    """The TLS handshake with an https:// backend failed (no common protocol or cipher,
    not TLS at all, the server refused our client certificate)."""

    status = 502
    reason = "tls_protocol_error"


class BackendCertificateError(BackendTLSError):
    """An https:// backend's certificate failed verification; the message says what did
    not match (name, validity dates, issuer) and against what."""

    reason = "tls_certificate_error"


class NoHealthyBackend(UpstreamError):
    """No server of the upstream can take the request now: every one is down or
    ejected, or the upstream has none, or it is shutting down.

    @ivar retry_after: whole seconds after which trying again may succeed, for the
        client's ``Retry-After`` header; None when there is no sensible guess.
    """

    status = 503
    reason = "destination_unavailable"

    def __init__(self, message: str = "", retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QueueFull(NoHealthyBackend):
    """Every healthy server is at max_connections and the request could not wait: the
    upstream's queue is full, or its deadline passed."""

    reason = "connection_limit_reached"
