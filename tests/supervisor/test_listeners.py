"""Listening sockets: bound once, kept across reloads, released when unused."""

from __future__ import annotations

import os
import socket

import pytest
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.python.failure import Failure

from h2proxy.config.model import ListenerConfig
from h2proxy.supervisor.sockets import (
    ListenError,
    ListenerSockets,
    activated_sockets,
    bind_listener,
    socket_key,
)
from h2proxy.supervisor.workers import LineBuffer, describe_exit
from tests.supervisor.fakes import FakeBinder


def listener(name: str, port: int = 0, address: str = "127.0.0.1") -> ListenerConfig:
    return ListenerConfig(name=name, address=address, port=port)


def test_a_fixed_port_is_known_by_address_and_port_and_port_zero_by_name():
    """When a listener has a fixed port its socket survives a rename; a port 0 listener's
    socket is known by its name (each port 0 listener gets its own ephemeral port)."""
    assert socket_key(listener("a", 443)) == socket_key(listener("b", 443))
    assert socket_key(listener("a")) != socket_key(listener("b"))


def test_acquire_binds_only_what_is_not_open_yet(logged):
    """When listeners are acquired twice, the second time binds only the new ones, and each
    acquisition logs every listener with its real address."""
    binder = FakeBinder()
    sockets = ListenerSockets(bind=binder)
    first, fresh = sockets.acquire([listener("a", 8080)])
    assert len(fresh) == 1
    second, fresh = sockets.acquire([listener("renamed", 8080), listener("b", 8081)])
    assert second["renamed"] is first["a"]
    assert fresh == [("127.0.0.1", 8081)]
    assert logged.matching("listener b on 127.0.0.1:8081 (cleartext)")


def test_acquire_closes_what_it_bound_when_one_fails():
    """When one listener cannot be bound, those bound by the same call are closed and the
    error propagates; sockets open before are untouched."""
    binder = FakeBinder()
    sockets = ListenerSockets(bind=binder)
    sockets.acquire([listener("old", 1)])
    binder.refuse = {"bad"}
    with pytest.raises(ListenError):
        sockets.acquire([listener("old", 1), listener("new", 2), listener("bad", 3)])
    assert binder.sockets["new"].closed
    assert not binder.sockets["old"].closed


def test_retain_only_closes_the_unused():
    """When the serving config no longer has a listener, its socket is closed."""
    binder = FakeBinder()
    sockets = ListenerSockets(bind=binder)
    sockets.acquire([listener("a", 1), listener("b", 2)])
    sockets.retainOnly([listener("a", 1)])
    assert binder.sockets["b"].closed and not binder.sockets["a"].closed


def test_bind_listener_makes_a_non_blocking_listening_socket():
    """When a loopback listener with port 0 is bound, the socket listens, does not block,
    and has a kernel-chosen port."""
    sock = bind_listener(listener("t"))
    try:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        assert sock.getblocking() is False
        assert sock.getsockname()[1] > 0
    finally:
        sock.close()


def test_bind_listener_says_why_it_cannot_bind():
    """When the port is taken, ListenError names the listener, address, port and reason."""
    taken = bind_listener(listener("first"))
    try:
        port = taken.getsockname()[1]
        with pytest.raises(ListenError, match=rf"cannot listen for second on 127.0.0.1 port {port}: "
                                               "Address already in use"):
            bind_listener(listener("second", port))
    finally:
        taken.close()


def test_bind_listener_handles_ipv6():
    """When the address is an IPv6 literal, the socket is an AF_INET6 one."""
    try:
        sock = bind_listener(listener("v6", address="::1"))
    except ListenError as problem:
        pytest.skip(f"no IPv6 loopback here: {problem}")
    try:
        assert sock.family == socket.AF_INET6
    finally:
        sock.close()


def test_describe_exit_names_the_status_or_the_signal():
    """When a process ends, its reason reads as an exit status or a named signal."""
    assert describe_exit(Failure(ProcessDone(0))) == "exited with status 0"
    assert describe_exit(Failure(ProcessTerminated(exitCode=3))) == "exited with status 3"
    assert describe_exit(Failure(ProcessTerminated(signal=9))) == "killed by signal 9 (SIGKILL)"


def test_line_buffer_joins_pieces_and_cuts_long_lines():
    """When output arrives in pieces, whole lines come out; a line over the cap is cut at
    the cap and the rest of it, up to its newline, is dropped."""
    buffer = LineBuffer(limit=8)
    assert buffer.feed(b"ab") == []
    assert buffer.feed(b"c\nde\r\nf") == ["abc", "de"]
    assert buffer.feed(b"0123456789") == ["f0123456"]
    assert buffer.feed(b"abc\nxy\n") == ["xy"]


@pytest.fixture
def passed_by_systemd():
    """Two listening sockets at consecutive descriptors, as systemd passes them."""
    first, second = bind_listener(listener("x")), bind_listener(listener("y"))
    start = 900
    os.dup2(first.fileno(), start)
    os.dup2(second.fileno(), start + 1)
    ports = [first.getsockname()[1], second.getsockname()[1]]
    first.close()
    second.close()
    yield start, ports
    for fd in (start, start + 1):
        try:
            os.close(fd)
        except OSError:
            pass


def test_activated_sockets_are_found_by_address(passed_by_systemd):
    """When LISTEN_PID is ours and LISTEN_FDS counts two sockets, both are taken, known
    by their address and port, and made non-blocking."""
    start, ports = passed_by_systemd
    found = activated_sockets({"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "2"}, os.getpid(), start)
    assert sorted(found) == sorted([("127.0.0.1", ports[0]), ("127.0.0.1", ports[1])])
    assert all(sock.getblocking() is False for sock in found.values())
    for sock in found.values():
        sock.detach()


def test_activated_sockets_meant_for_another_process_are_ignored():
    """When LISTEN_PID names another process, no descriptor is touched."""
    assert activated_sockets({"LISTEN_PID": "1", "LISTEN_FDS": "2"}, os.getpid(), 900) == {}


def test_a_listener_uses_the_socket_systemd_passed(logged):
    """When systemd passed a socket for a listener's address and port, it is used instead of
    binding, and it goes back to the pool rather than being closed when unused."""
    binder = FakeBinder()
    passed = FakeSocketFor(("127.0.0.1", 443))
    sockets = ListenerSockets(bind=binder, activated={("127.0.0.1", 443): passed})
    got, _ = sockets.acquire([listener("public", 443), listener("other", 8080)])
    assert got["public"] is passed
    assert set(binder.sockets) == {"other"}
    assert logged.matching("listener public uses the socket systemd passed")
    sockets.retainOnly([listener("other", 8080)])
    assert not passed.closed
    again, _ = sockets.acquire([listener("public", 443)])
    assert again["public"] is passed


class FakeSocketFor:
    def __init__(self, address) -> None:
        self.address = address
        self.closed = False

    def getsockname(self):
        return self.address

    def close(self) -> None:
        self.closed = True
