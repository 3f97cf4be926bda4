"""twistd integration: ``twistd h2proxy -c conf.yaml`` and ``--check``.

The plugin line lives in twisted/plugins/h2proxy_plugin.py; the work is here, as
Twisted's own web plugin does it.
"""

from __future__ import annotations

import sys

from twisted.application import service
from twisted.internet import defer, endpoints
from twisted.logger import Logger
from twisted.python import usage

from h2proxy.config.load import load_config
from h2proxy.config.model import Config, ListenerConfig
from h2proxy.errors import ConfigError

log = Logger()

DEFAULT_CONFIG = "/etc/h2proxy/h2proxy.yaml"

#: Connections waiting in the kernel's accept queue per listener.
LISTEN_BACKLOG = 1024


class Options(usage.Options):
    """Command line of ``twistd h2proxy``."""

    optParameters = [["config", "c", DEFAULT_CONFIG, "Path to the YAML configuration file."]]
    optFlags = [["check", None, "Validate the configuration (and its files) and exit, like nginx -t."]]

    def postOptions(self) -> None:
        try:
            self.loaded = load_config(self["config"])
        except ConfigError as error:
            if self["check"]:
                sys.stderr.write(f"{error}\n{self['config']}: configuration is invalid\n")
                raise SystemExit(1)
            raise usage.UsageError(f"invalid configuration:\n{error}")
        for warning in getattr(self.loaded, "warnings", ()):
            sys.stderr.write(f"{warning}\n")
        if self["check"]:
            sys.stdout.write(f"{self['config']}: configuration is valid\n")
            raise SystemExit(0)


def listen_endpoint(reactor, listener: ListenerConfig):
    """A server endpoint for a listener's IPv4 or IPv6 literal address."""
    cls = endpoints.TCP6ServerEndpoint if ":" in listener.address else endpoints.TCP4ServerEndpoint
    return cls(reactor, listener.port, backlog=LISTEN_BACKLOG, interface=listener.address)


class ProxyService(service.Service):
    """Serves one config in this process: listens, and drains on stop."""

    def __init__(self, config: Config, reactor) -> None:
        self.config = config
        self.reactor = reactor
        self.server = None
        self.ports: list = []

    def privilegedStartService(self) -> None:
        """Listen before twistd drops privileges, so low ports work."""
        from h2proxy.worker import ProxyServer

        self.server = ProxyServer(self.config, self.reactor)
        for listener in self.config.listeners:
            factory = self.server.factoryFor(listener)
            port = listen_endpoint(self.reactor, listener).listen(factory)
            port.addCallback(self._listening, listener)
            port.addErrback(self._listenFailed, listener)
        service.Service.privilegedStartService(self)

    def _listening(self, port, listener: ListenerConfig):
        self.ports.append(port)
        address = port.getHost()
        log.info(
            "listener {name} on {host}:{port} ({kind})",
            name=listener.name,
            host=address.host,
            port=address.port,
            kind="tls" if listener.tls else "cleartext",
        )
        return port

    def _listenFailed(self, failure, listener: ListenerConfig):
        log.failure("cannot listen for {name}", failure, name=listener.name)
        self.reactor.callLater(0, self.reactor.stop)

    @defer.inlineCallbacks
    def stopService(self):
        service.Service.stopService(self)
        yield defer.DeferredList([defer.maybeDeferred(p.stopListening) for p in self.ports])
        if self.server is not None:
            yield self.server.drain(self.config.timeouts.drain)


def makeService(options: Options) -> service.IService:
    from twisted.internet import reactor

    return ProxyService(options.loaded, reactor)
