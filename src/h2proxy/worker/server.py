"""One worker's proxy: the listeners' factories and the upstream pools, built from
one validated config.

This is wiring only: it builds the front end (H2Factory behind ALPN/preface
negotiation and, on TLS listeners, TLSMemoryBIOFactory), the bridge context and the
upstream pools, and knows how to drain them. It parses no HTTP.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.interfaces import IProtocolFactory, IReactorTime
from twisted.logger import Logger
from twisted.protocols.haproxy._wrapper import HAProxyWrappingFactory

from h2proxy.bridge.bridge import HTTP2, HTTP11, BridgeContext
from h2proxy.static.reader import ThreadedIO
from h2proxy.bridge.headers import ForwardingPolicy
from h2proxy.bridge.routing import Router
from h2proxy.config.model import H2C_PROTOCOL, HTTP11_PROTOCOL, Config, ListenerConfig
from h2proxy.frontend.http2.factory import ConnectionOptions, H2Factory
from h2proxy.frontend.http1.factory import HTTP1Factory
from h2proxy.frontend.limits import ConnectionLimiter
from h2proxy.frontend.negotiation import NegotiationFactory
from h2proxy.worker.observe import WorkerObservability
from h2proxy.tls.server import ServerConnectionCreator, ServerTLS
from h2proxy.upstream.pool import UpstreamPool

log = Logger()


class ProxyServer:
    """Everything one worker serves with, for one config generation.

    @ivar h2Factories: listener name -> the H2Factory behind it (for draining).
    @ivar context: the bridges' shared state (router, pools, live bridges).
    @ivar observability: metrics, access log and request observer (L{h2proxy.worker.observe}).
    """

    def __init__(self, config: Config, reactor: IReactorTime) -> None:
        self.config = config
        self.reactor = reactor
        timeouts = config.timeouts
        self.pools = {
            name: UpstreamPool(
                reactor=reactor,
                config=upstream,
                connectTimeout=timeouts.backend_connect,
                responseTimeout=timeouts.backend_response,
                idleTimeout=timeouts.backend_idle,
                tunnelIdleTimeout=timeouts.tunnel_idle,
            )
            for name, upstream in config.upstreams.items()
        }
        self.observability = WorkerObservability(config, reactor)
        self.staticIO = ThreadedIO(reactor)
        reactor.addSystemEventTrigger("during", "shutdown", self.staticIO.stop)
        self.context = BridgeContext(
            router=Router(config.routes, clock=reactor.seconds),
            pools=self.pools,
            maxRequestBody=config.limits.max_request_body,
            observer=self.observability.observer,
            staticIO=self.staticIO,
        )
        self.h2Factories: dict[str, H2Factory] = {}
        self.http1Factories: dict[str, HTTP1Factory] = {}

    def factoryFor(self, listener: ListenerConfig) -> IProtocolFactory:
        """The protocol factory to listen with for C{listener}.

        From the socket inwards: the PROXY protocol header (when the listener
        expects one: Twisted's wrapper reads it and makes C{getPeer} return the
        client address it carries, so everything above sees the real client), then
        TLS, then the choice between HTTP/2 and HTTP/1.1. Each front end gets a
        handler factory with the listener's forwarding policy, and answers
        ``Expect: 100-continue`` itself only with C{forwarding.expect_continue:
        local}; on a listener with C{redirect_https}, the handlers answer every
        request with a redirect instead of routing it. A cleartext listener that leaves a protocol out of C{protocols}
        negotiates without its factory (both are still built, so the metrics and
        draining treat every listener alike). Every listener of the worker shares
        one connection cap (C{limits.max_connections}).
        """
        timeouts = self.config.timeouts
        limiter = getattr(self, "connectionLimiter", None)
        if limiter is None and self.config.limits.max_connections:
            limiter = self.connectionLimiter = ConnectionLimiter(self.config.limits.max_connections)
        forwarding = ForwardingPolicy.fromConfig(self.config.forwarding_for(listener))
        localContinue = self.config.forwarding_for(listener).expect_continue == "local"
        h2 = H2Factory(
            reactor=self.reactor,
            handlerFactory=self.context.handlersFor(forwarding, HTTP2, listener.redirect_https).handlerFactory,
            options=ConnectionOptions(
                settings=self.config.http2_for(listener),
                idleTimeout=timeouts.idle or None,
                abortTimeout=timeouts.abort or None,
                secure=listener.tls is not None,
                requestHeaderTimeout=timeouts.request_header,
                requestBodyTimeout=timeouts.request_body or None,
                sendTimeout=timeouts.send or None,
                localContinue=localContinue,
            ),
        )
        self.h2Factories[listener.name] = h2
        http1 = HTTP1Factory(
            reactor=self.reactor,
            handlerFactory=self.context.handlersFor(forwarding, HTTP11, listener.redirect_https).handlerFactory,
            idleTimeout=timeouts.idle or None,
            secure=listener.tls is not None,
            maxHeaderBytes=self.config.http2_for(listener).max_header_list_size,
            abortTimeout=timeouts.abort or None,
            localContinue=localContinue,
        )
        self.http1Factories[listener.name] = http1
        factory: IProtocolFactory = NegotiationFactory(
            reactor=self.reactor,
            h2Factory=h2 if H2C_PROTOCOL in listener.protocols or listener.tls is not None else None,
            http1Factory=http1 if HTTP11_PROTOCOL in listener.protocols else None,
            deadline=timeouts.request_header,
            handshakeTimeout=timeouts.handshake,
            limiter=limiter,
        )
        if listener.tls is not None:
            factory = self.observability.tlsFactory(
                listener.name, ServerConnectionCreator(ServerTLS(listener.tls, clock=self.reactor)), factory
            )
        if listener.proxy_protocol:
            # proxyEndpoint() wraps an endpoint; our sockets are adopted, so the
            # wrapping factory it uses is applied directly.
            factory = HAProxyWrappingFactory(factory)
        return factory

    def reopenLogs(self) -> None:
        """SIGUSR1: reopen the access log (logrotate moved it)."""
        self.observability.reopenLogs()

    def closeLogs(self) -> None:
        """The worker exits: write what the access log still holds."""
        self.observability.closeLogs()

    def metricsSnapshot(self) -> dict:
        """What the worker reports to the supervisor every second (L{h2proxy.worker.observe})."""
        return self.observability.snapshot(
            h2Factories=self.h2Factories,
            http1Factories=self.http1Factories,
            pools=self.pools,
            inFlight=len(self.context.active),
            limiter=getattr(self, "connectionLimiter", None),
        )

    def drain(self, timeout: float) -> defer.Deferred:
        """Graceful stop: every connection gets the two-step GOAWAY and its streams
        up to C{timeout} seconds to finish; then the pools close."""
        log.info(
            "draining {n} listener(s), up to {timeout}s", n=len(self.h2Factories), timeout=timeout
        )
        factories = [*self.h2Factories.values(), *self.http1Factories.values()]
        drains = [factory.drain(timeout) for factory in factories]
        done = defer.DeferredList(drains, consumeErrors=True)
        done.addCallback(lambda _: defer.DeferredList([p.close() for p in self.pools.values()]))
        return done
