# -*- test-case-name: tests.upstream.test_pool -*-
"""Opening a connection to one server: TCP, or TLS up to a verified handshake, within
a deadline, every failure turned into the L{UpstreamError} the client will see.

Shared by the pool (connections for requests) and the active health checks, so both
see a server exactly the same way.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet import defer
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    wrapClientTLS,
)
from twisted.internet.error import ConnectError
from twisted.internet.error import TimeoutError as ConnectTimeoutError
from twisted.internet.interfaces import IAddress, IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure

from h2proxy.config.upstreams import ServerConfig
from h2proxy.errors import BackendConnectTimeout, BackendRefused, UpstreamError
from h2proxy.upstream.http11 import HTTP11ClientProtocol
from h2proxy.upstream.tlsclient import BackendTLS
from h2proxy.upstream.transport import immediateWriteReactor

EndpointFactory = Callable[[ServerConfig], IStreamClientEndpoint]

#: Connect timeout of the endpoints when the configured one is 0 (the pool's own
#: deadline is then off, but the kernel's attempt must still end).
FALLBACK_CONNECT_TIMEOUT = 30


def default_endpoint_factory(
    reactor: object, connectTimeout: float, tls: BackendTLS | None = None
) -> EndpointFactory:
    """Endpoints for servers: TCP4/TCP6 for IP literals, HostnameEndpoint (resolving,
    happy eyeballs) for names; wrapped in TLS for https:// servers. Their TCP
    transports write at once when nothing is queued (L{immediateWriteReactor})."""
    tcpReactor = immediateWriteReactor(reactor)

    def endpoint(server: ServerConfig) -> IStreamClientEndpoint:
        host = server.host.strip("[]")
        timeout = connectTimeout if connectTimeout > 0 else FALLBACK_CONNECT_TIMEOUT
        tcp: IStreamClientEndpoint
        if isIPAddress(host):
            tcp = TCP4ClientEndpoint(tcpReactor, host, server.port, timeout=timeout)
        elif isIPv6Address(host):
            tcp = TCP6ClientEndpoint(tcpReactor, host, server.port, timeout=timeout)
        else:
            tcp = HostnameEndpoint(tcpReactor, host, server.port, timeout=timeout)
        if server.scheme != "https":
            return tcp
        if tls is None:
            raise ValueError(f"server {server.host}:{server.port} is https:// but no TLS settings were given")
        return wrapClientTLS(tls.creatorFor(server), tcp, clock=reactor)

    return endpoint


class _OneConnectionFactory(Factory):
    """Builds the one protocol prepared for a connection attempt."""

    noisy = False

    def __init__(self, protocol: HTTP11ClientProtocol) -> None:
        self._protocol = protocol

    def buildProtocol(self, addr: IAddress) -> HTTP11ClientProtocol:
        return self._protocol


class Connector:
    """Connects protocols to one server.

    @ivar server: the server.
    @ivar name: how messages name it (``upstream app server 10.0.0.1:8000``).
    """

    def __init__(
        self,
        *,
        reactor: IReactorTime,
        server: ServerConfig,
        endpoint: IStreamClientEndpoint,
        name: str,
        tls: BackendTLS | None = None,
    ) -> None:
        self.server = server
        self.name = name
        self._reactor = reactor
        self._endpoint = endpoint
        self._tls = tls

    def connect(self, protocol: HTTP11ClientProtocol, timeout: float) -> defer.Deferred[HTTP11ClientProtocol]:
        """Connect C{protocol}; fires with it once usable (TLS: handshake done and
        verified), or fails with an L{UpstreamError} (C{CancelledError} if the caller
        cancelled). C{timeout} (0 = none) covers the TLS handshake too."""
        attempt: defer.Deferred[HTTP11ClientProtocol] = defer.maybeDeferred(
            self._endpoint.connect, _OneConnectionFactory(protocol)
        )
        if self.server.scheme == "https":
            attempt.addCallback(self._secure)
        if timeout > 0:
            attempt.addTimeout(timeout, self._reactor)
        attempt.addErrback(self._mapError, timeout)
        return attempt

    def _secure(self, protocol: HTTP11ClientProtocol) -> defer.Deferred[HTTP11ClientProtocol]:
        secured = protocol.whenSecured()
        secured.addErrback(self._handshakeFailed, protocol)
        return secured

    def _handshakeFailed(self, failure: Failure, protocol: HTTP11ClientProtocol) -> Failure:
        """Runs synchronously inside C{connectionLost}, while the TLS transport still
        holds the peer's chain: explain the failure now."""
        if failure.check(defer.CancelledError) or self._tls is None:
            return failure
        handle = getattr(protocol.transport, "getHandle", lambda: None)()
        return Failure(self._tls.explain(failure, handle, self.server))

    def _mapError(self, failure: Failure, timeout: float) -> Failure:
        if failure.check(UpstreamError, defer.CancelledError):
            return failure
        if failure.check(defer.TimeoutError, ConnectTimeoutError):
            return Failure(BackendConnectTimeout(f"connecting to {self.name} took longer than {timeout:g}s"))
        if failure.check(ConnectError):
            return Failure(BackendRefused(f"cannot connect to {self.name}: {failure.getErrorMessage()}"))
        return Failure(
            BackendRefused(f"cannot connect to {self.name}: {failure.type.__name__}: {failure.getErrorMessage()}")
        )
