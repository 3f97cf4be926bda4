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


class NoHealthyBackend(UpstreamError):
    """Every server of the upstream is down or the queue is full."""

    status = 503
    reason = "destination_unavailable"


class RequestCancelled(UpstreamError):
    """The client went away; the upstream request was abandoned on purpose."""

    status = 499
    reason = "client_cancelled"
