"""twistd integration: ``twistd h2proxy -c conf.yaml`` runs the supervisor,
``twistd h2proxy -c conf.yaml --check`` validates and exits, like ``nginx -t``, and
``twistd h2proxy --version`` names the versions a bug report needs. A config with
problems prints them alone (file:line:col each) and exits 1, whether checked or started.

The plugin line lives in twisted/plugins/h2proxy_plugin.py; the work is here, as
Twisted's own web plugin does it. The process twistd starts is the supervisor
(L{h2proxy.supervisor.service}); it serves nothing itself and runs the workers
(L{h2proxy.worker.process}).

Start-up order, which is what makes port 443 work without running as root:
  1. C{Options.postOptions}: read and validate the config (and load every TLS
     certificate and key, as a worker will);
  2. C{privilegedStartService}: bind every listener and the admin listener, then
     drop to the config's C{user}/C{group} when started as root (twistd's
     C{-u}/C{-g} do the same, right after this step);
  3. once the reactor runs: install the signal handlers, spawn the workers.

On stop, the admin listener stays up while the workers drain (its C{/healthz}
says C{draining}, so a load balancer stops sending), and closes last.
"""

from __future__ import annotations

import grp
import os
import pwd
import signal
import sys
from functools import partial
from importlib import metadata

import twisted
import yaml
from OpenSSL import SSL
from twisted.application import service
from twisted.internet import defer, error
from twisted.logger import (
    ILogObserver,
    Logger,
    LogLevel,
    formatEventAsClassicLogText,
    globalLogPublisher,
)
from twisted.python import usage
from zope.interface import implementer

from h2proxy.supervisor.admin import AdminServer
from h2proxy.config.load import load_config
from h2proxy.config.model import Config
from h2proxy.errors import ConfigError, ConfigProblem
from h2proxy.supervisor.sdnotify import Notifier
from h2proxy.supervisor.service import Supervisor
from h2proxy.supervisor.sockets import ListenError, ListenerSockets, activated_sockets
from h2proxy.tls.server import ServerTLS

log = Logger()

DEFAULT_CONFIG = "/etc/h2proxy/h2proxy.yaml"

#: The signals the supervisor owns once the reactor runs.
HANDLED_SIGNALS = (signal.SIGHUP, signal.SIGUSR1, signal.SIGTERM, signal.SIGINT)


def check_tls(config: Config, path: str) -> None:
    """Build every TLS listener's contexts exactly as a worker will.

    The config loader already checks that each certificate matches its key; this
    catches whatever else OpenSSL refuses (a chain file it cannot parse, a cipher
    list it does not know), so that C{--check} and a reload fail before a worker does.

    @raise ConfigError: naming each listener whose TLS setup fails.
    """
    problems = []
    for index, listener in enumerate(config.listeners):
        if listener.tls is None:
            continue
        try:
            ServerTLS(listener.tls)
        except (SSL.Error, OSError, ValueError) as problem:
            problems.append(
                ConfigProblem(path, None, None, f"listeners[{index}].tls",
                              f"listener {listener.name}: cannot set up TLS: {problem}")
            )
    if problems:
        raise ConfigError(problems)


#: The C{logging} options that may name standard output (C{-}).
STDOUT_LOGS = ("access_log", "error_log")


def _line_of(path: str, section: str, key: str) -> tuple[int | None, int | None]:
    """Where C{section.key} is written in the YAML file C{path} (1-based line and
    column), if it can be found: the config model keeps values, not places."""
    try:
        with open(path, encoding="utf-8") as handle:
            root = yaml.compose(handle)
    except (OSError, yaml.YAMLError):
        return None, None
    value = _mapping_value(_mapping_value(root, section), key)
    if value is None:
        return None, None
    return value.start_mark.line + 1, value.start_mark.column + 1


def _mapping_value(node: yaml.Node | None, key: str) -> yaml.Node | None:
    """The value node of C{key} in a YAML mapping node, or None."""
    if not isinstance(node, yaml.MappingNode):
        return None
    return next((value for name, value in node.value if getattr(name, "value", None) == key), None)


def stdout_log_problems(config: Config, path: str, *, warning: bool) -> list[ConfigProblem]:
    """The C{logging} options set to C{-} (standard output), for a daemon that detaches:
    twistd points a daemon's standard output at /dev/null, so every line written there
    is lost without a word. As errors (starting, or reloading, without C{-n}), or as
    warnings (C{--check} without C{-n}: a check is often run with other options than
    the daemon's, so it only warns)."""
    problems = []
    for key in STDOUT_LOGS:
        if getattr(config.logging, key) != "-":
            continue
        line, column = _line_of(path, "logging", key)
        problems.append(ConfigProblem(
            path, line, column, f"logging.{key}",
            "- (standard output) is lost when twistd runs as a daemon (without -n): "
            "run in the foreground (twistd -n) or give a file path", warning=warning))
    return sorted(problems, key=lambda problem: problem.line or 0)


def load_checked(path: str, *, daemon: bool = False) -> Config:
    """Read, validate and TLS-check a config file (the loader of start, reload and --check).

    @param daemon: the daemon detaches from its terminal (twistd without C{-n}), so a log
        on standard output is an error.
    @raise ConfigError: with every problem found.
    """
    config = load_config(path)
    check_tls(config, path)
    if daemon and (problems := stdout_log_problems(config, path, warning=False)):
        raise ConfigError(problems)
    return config


def versions() -> str:
    """What C{twistd h2proxy --version} prints: h2proxy's version and those of what it
    runs on (the lines a bug report needs)."""
    openssl = SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode("ascii", "replace")
    return "\n".join([
        f"h2proxy {metadata.version('h2proxy')}",
        f"Twisted {twisted.__version__}",
        f"h2 {metadata.version('h2')}",
        f"pyOpenSSL {metadata.version('pyOpenSSL')} ({openssl})",
        f"Python {sys.version.split()[0]}",
    ])


class Options(usage.Options):
    """Command line of ``twistd h2proxy``."""

    optParameters = [["config", "c", DEFAULT_CONFIG, "Path to the YAML configuration file."]]
    optFlags = [
        ["check", None, "Validate the configuration (certificates and keys included) and exit "
                        "0 if it is valid, 1 with every error if not, like nginx -t."]
    ]

    def opt_version(self) -> None:
        """Print the versions of h2proxy, Twisted, h2, pyOpenSSL and OpenSSL, and exit."""
        sys.stdout.write(f"{versions()}\n")
        raise SystemExit(0)

    def daemonizes(self) -> bool:
        """Whether twistd will detach (no C{-n} before C{h2proxy})."""
        return self.parent is not None and not self.parent.get("nodaemon", True)

    def postOptions(self) -> None:
        """Load the config; on a problem print the problems alone (not twistd's usage
        text, which says nothing about a config file) and exit 1."""
        self["config"] = os.path.abspath(self["config"])
        path = self["config"]
        try:
            self.loaded = load_checked(path, daemon=self.daemonizes() and not self["check"])
        except ConfigError as error:
            verdict = "configuration is invalid" if self["check"] else "configuration is invalid; not starting"
            sys.stderr.write(f"{error}\n{path}: {verdict}\n")
            raise SystemExit(1)
        warnings = list(self.loaded.warnings)
        if self["check"] and self.daemonizes():
            warnings += [str(p) for p in stdout_log_problems(self.loaded, path, warning=True)]
        for warning in warnings:
            sys.stderr.write(f"{warning}\n")
        if self["check"]:
            sys.stdout.write(f"{path}: configuration is valid\n")
            raise SystemExit(0)


def drop_privileges(user: str | None, group: str | None) -> None:
    """Become C{user}/C{group} when running as root; do nothing otherwise.

    Called after the listeners are bound and before any worker starts, so the
    workers (and the supervisor from then on) never run as root. Under systemd the
    unit's C{User=} already did this and C{AmbientCapabilities=CAP_NET_BIND_SERVICE}
    allows low ports, so there is nothing to drop.

    @raise SystemExit: the user or group does not exist.
    """
    if os.getuid() != 0 or not (user or group):
        return
    try:
        entry = pwd.getpwnam(user) if user else None
        gid = grp.getgrnam(group).gr_gid if group else (entry.pw_gid if entry else os.getgid())
    except KeyError as problem:
        log.error("cannot drop privileges: no such user or group {name}", name=problem.args[0])
        raise SystemExit(1)
    if entry is not None:
        os.initgroups(entry.pw_name, gid)
    else:
        os.setgroups([gid])
    os.setgid(gid)
    if entry is not None:
        os.setuid(entry.pw_uid)
    log.info("running as uid {uid} gid {gid}", uid=os.getuid(), gid=os.getgid())


@implementer(ILogObserver)
class ErrorLog:
    """C{logging.error_log}: the daemon's messages, at C{logging.level} or above, in a
    file (reopened on SIGUSR1, for logrotate) or on standard output (C{-}).

    It replaces twistd's own log (C{--logfile}) when set: see
    L{SupervisorService.setServiceParent}.
    """

    def __init__(self, path: str, level: str) -> None:
        self.path = path
        self.level = LogLevel.levelWithName(level)
        self._file = self._open()

    def _open(self):
        if self.path == "-":
            return sys.stdout
        return open(self.path, "a", encoding="utf-8", buffering=1)

    def __call__(self, event: dict) -> None:
        if event.get("log_level", LogLevel.info) < self.level:
            return
        text = formatEventAsClassicLogText(event)
        if text:
            self._file.write(text)
            self._file.flush()

    def reopen(self) -> None:
        """Close and reopen the file, so a file logrotate moved away is let go."""
        if self.path == "-":
            return
        self._file.close()
        self._file = self._open()


class SupervisorService(service.Service):
    """The twistd service around the L{Supervisor}: binds early, spawns once running."""

    def __init__(self, supervisor: Supervisor, reactor, errorLog: ErrorLog | None = None,
                 admin: AdminServer | None = None) -> None:
        self.supervisor = supervisor
        self.reactor = reactor
        self.errorLog = errorLog
        self.admin = admin

    def setServiceParent(self, parent) -> None:
        """Join twistd's application; with an error log, make it the application's log
        observer, which twistd then uses instead of its own log file."""
        service.Service.setServiceParent(self, parent)
        if self.errorLog is not None and hasattr(parent, "setComponent"):
            parent.setComponent(ILogObserver, self.errorLog)

    def privilegedStartService(self) -> None:
        """Bind while still privileged (port 443), then drop to the configured user."""
        try:
            self.supervisor.bindListeners()
        except (ListenError, ConfigError) as problem:
            log.error("{problem}", problem=problem)
            raise SystemExit(1)
        config = self.supervisor.config
        if self.admin is not None:
            self._listenAdmin(config)
        drop_privileges(getattr(config, "user", None), getattr(config, "group", None))
        service.Service.privilegedStartService(self)

    def _listenAdmin(self, config: Config) -> None:
        try:
            self.admin.listen(config.admin)
        except error.CannotListenError as problem:
            log.error("cannot listen for the admin listener on {address} port {port}: {problem}",
                      address=problem.interface, port=problem.port, problem=problem.socketError)
            raise SystemExit(1)

    def startService(self) -> None:
        service.Service.startService(self)
        self.reactor.callWhenRunning(self._running)

    def _running(self) -> None:
        """Take the signals over from Twisted's defaults, then spawn the workers."""
        previousUSR1 = signal.getsignal(signal.SIGUSR1)
        if callable(previousUSR1):
            # twistd's --logfile rotation; keep it working beside ours.
            ownLogs = self.supervisor.reopenOwnLogs
            self.supervisor.reopenOwnLogs = lambda: (ownLogs(), previousUSR1(signal.SIGUSR1, None))
        for signum in HANDLED_SIGNALS:
            signal.signal(signum, self.supervisor.handleSignal)
        self.supervisor.start()

    def stopService(self) -> defer.Deferred:
        """The reactor is shutting down: drain every worker first, then close the
        admin listener."""
        service.Service.stopService(self)
        done = self.supervisor.stop()
        if self.admin is not None:
            done.addBoth(lambda result: self.admin.stop().addCallback(lambda _: result))
        return done


def makeService(options: Options) -> service.IService:
    from twisted.internet import reactor

    logging = options.loaded.logging
    errorLog = ErrorLog(logging.error_log, logging.level) if logging.error_log else None
    supervisor = Supervisor(
        reactor=reactor,
        config=options.loaded,
        configPath=options["config"],
        loader=partial(load_checked, daemon=options.daemonizes()),
        notifier=Notifier.fromEnvironment(),
        listeners=ListenerSockets(activated=activated_sockets(os.environ, os.getpid())),
        stopReactor=reactor.stop,
        reopenOwnLogs=errorLog.reopen if errorLog is not None else lambda: None,
    )
    admin = AdminServer(supervisor=supervisor, reactor=reactor)
    globalLogPublisher.addObserver(admin.recentLog)
    return SupervisorService(supervisor, reactor, errorLog, admin)
