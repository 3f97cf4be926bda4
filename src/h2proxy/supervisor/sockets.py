"""The listening sockets: bound once in the supervisor, kept open for as long as a
config uses them, and handed to every generation of workers.

A socket outlives the generations using it, so no connection waiting in a kernel
accept queue is lost while generations change hands. Sockets systemd passed by
socket activation are used instead of binding, and are never closed here.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Mapping

from twisted.logger import Logger

from h2proxy.config.model import ListenerConfig
from h2proxy.errors import H2ProxyError

log = Logger()

#: Connections the kernel queues per listener while no worker accepts.
LISTEN_BACKLOG = 1024
#: The first descriptor systemd passes by socket activation (sd_listen_fds(3)).
SD_LISTEN_FDS_START = 3
#: Most sockets taken from systemd (a listener count, not a fd table).
MAX_ACTIVATED_SOCKETS = 64


class ListenError(H2ProxyError):
    """A listener's address could not be bound (in use, not local, not permitted)."""


def _kind(listener: ListenerConfig) -> str:
    return "tls" if listener.tls is not None else "cleartext"


def socket_key(listener: ListenerConfig) -> tuple:
    """What identifies a listener's socket across reloads.

    A fixed port is its address and port (renaming a listener keeps its socket); a
    port 0 listener (an ephemeral port, in tests) is known by its name instead.
    """
    if listener.port:
        return (listener.address, listener.port)
    return (listener.address, 0, listener.name)


def bind_listener(listener: ListenerConfig, backlog: int = LISTEN_BACKLOG) -> socket.socket:
    """A non-blocking listening TCP socket for C{listener}.

    @raise ListenError: the address cannot be bound, with the reason from the kernel.
    """
    family = socket.AF_INET6 if ":" in listener.address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((listener.address, listener.port))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as problem:
        sock.close()
        raise ListenError(
            f"cannot listen for {listener.name} on {listener.address} port {listener.port}: "
            f"{problem.strerror or problem}"
        ) from problem
    return sock


def describe_address(sock: socket.socket) -> str:
    """C{host:port}, with brackets around an IPv6 host."""
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _address_key(host: str, port: int) -> tuple[str, int]:
    """An address as the kernel reports it, so C{::0} and C{::} compare equal."""
    return (str(ipaddress.ip_address(host.split("%", 1)[0])), port)


def activated_sockets(environ: Mapping[str, str], pid: int,
                      start: int = SD_LISTEN_FDS_START) -> dict[tuple[str, int], socket.socket]:
    """The listening TCP sockets systemd passed by socket activation, by (address, port).

    sd_listen_fds(3): C{$LISTEN_FDS} descriptors from fd 3 on, meant for us only if
    C{$LISTEN_PID} is our pid. Descriptors that are not TCP listening sockets are
    left alone.
    """
    if environ.get("LISTEN_PID") != str(pid):
        return {}
    try:
        count = min(int(environ.get("LISTEN_FDS", "0")), MAX_ACTIVATED_SOCKETS)
    except ValueError:
        return {}
    found: dict[tuple[str, int], socket.socket] = {}
    for fd in range(start, start + count):
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            continue
        if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM:
            sock.detach()
            continue
        sock.setblocking(False)
        found[_address_key(*sock.getsockname()[:2])] = sock
    return found


class ListenerSockets:
    """The listening sockets, bound once and kept open for as long as a config uses them.

    @ivar bind: makes one listening socket (injected so tests need no sockets).
    @ivar activated: sockets systemd passed (socket activation), by (address, port);
        a listener with that address and port uses one instead of binding, and it
        returns here rather than being closed when no config uses it any more.
    """

    def __init__(self, bind: Callable[[ListenerConfig], socket.socket] = bind_listener,
                 activated: Mapping[tuple[str, int], socket.socket] | None = None) -> None:
        self.bind = bind
        self.activated = dict(activated or {})
        self._open: dict[tuple, socket.socket] = {}
        self._fromSystemd: dict[tuple, tuple[str, int]] = {}

    def acquire(self, listeners: Iterable[ListenerConfig]) -> tuple[dict[str, socket.socket], list]:
        """The socket of every listener, binding the ones not open yet.

        @return: (listener name -> socket, keys of the sockets bound by this call).
        @raise ListenError: one could not be bound; those bound by this call are closed.
        """
        sockets: dict[str, socket.socket] = {}
        fresh: list = []
        try:
            for listener in listeners:
                key = socket_key(listener)
                if key not in self._open:
                    self._open[key] = self._activatedFor(listener, key) or self.bind(listener)
                    fresh.append(key)
                sockets[listener.name] = self._open[key]
                log.info(
                    "listener {name} on {address} ({kind})",
                    name=listener.name,
                    address=describe_address(sockets[listener.name]),
                    kind=_kind(listener),
                )
        except ListenError:
            self.release(fresh)
            raise
        return sockets, fresh

    def _activatedFor(self, listener: ListenerConfig, key: tuple) -> socket.socket | None:
        address = _address_key(listener.address, listener.port)
        sock = self.activated.pop(address, None)
        if sock is not None:
            self._fromSystemd[key] = address
            log.info("listener {name} uses the socket systemd passed", name=listener.name)
        return sock

    def release(self, keys: Iterable) -> None:
        """Close the sockets of C{keys} (systemd's go back to C{activated} instead)."""
        for key in keys:
            sock = self._open.pop(key, None)
            if sock is None:
                continue
            address = self._fromSystemd.pop(key, None)
            if address is not None:
                self.activated[address] = sock
            else:
                sock.close()

    def retainOnly(self, listeners: Iterable[ListenerConfig]) -> None:
        """Close every socket C{listeners} no longer use (workers keep their own copies)."""
        wanted = {socket_key(listener) for listener in listeners}
        self.release([key for key in self._open if key not in wanted])

    def closeAll(self) -> None:
        self.release(list(self._open))
        for sock in self.activated.values():
            sock.close()
        self.activated.clear()
