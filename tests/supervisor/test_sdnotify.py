"""systemd's notify protocol over a local datagram socket."""

from __future__ import annotations

import os
import socket

import pytest

from h2proxy.supervisor.sdnotify import MAX_STATUS, Notifier


@pytest.fixture
def systemd(tmp_path):
    """A datagram socket standing in for systemd's, and its path."""
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    yield sock, path
    sock.close()


def fields(sock: socket.socket) -> dict[str, str]:
    return dict(line.split("=", 1) for line in sock.recv(4096).decode().split("\n"))


def test_ready_sends_ready_and_status(systemd):
    """When the daemon is ready, systemd receives READY=1 with the status line."""
    sock, path = systemd
    assert Notifier(path).ready("generation 1: 2/2 workers serving")
    assert fields(sock) == {"READY": "1", "STATUS": "generation 1: 2/2 workers serving"}


def test_reloading_carries_the_monotonic_timestamp(systemd):
    """When a reload starts, systemd receives RELOADING=1 with MONOTONIC_USEC, as
    Type=notify-reload requires."""
    sock, path = systemd
    Notifier(path).reloading("reloading")
    import time

    received = fields(sock)
    now = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert received["RELOADING"] == "1"
    assert 0 < now - int(received["MONOTONIC_USEC"]) < 5_000_000


def test_stopping_and_status(systemd):
    """When the daemon stops or changes state, systemd receives STOPPING=1 or STATUS=."""
    sock, path = systemd
    notifier = Notifier(path)
    notifier.stopping("stopping")
    assert fields(sock) == {"STOPPING": "1", "STATUS": "stopping"}
    notifier.status("a\nb" + "x" * 1000)
    status = fields(sock)["STATUS"]
    assert status.startswith("a b") and len(status) == MAX_STATUS


def test_abstract_namespace_address():
    """When NOTIFY_SOCKET starts with @, the datagram goes to Linux's abstract namespace."""
    name = f"h2proxy-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(5)
    try:
        assert Notifier.fromEnvironment({"NOTIFY_SOCKET": "@" + name}).status("hi")
        assert fields(sock) == {"STATUS": "hi"}
    finally:
        sock.close()


def test_without_systemd_nothing_is_sent():
    """When NOTIFY_SOCKET is not set, notifications do nothing and report success."""
    notifier = Notifier.fromEnvironment({})
    assert notifier.address is None
    assert notifier.ready("x")


def test_an_unreachable_socket_is_reported_not_raised(tmp_path):
    """When the notify socket does not exist, the call returns False with the error kept."""
    notifier = Notifier(str(tmp_path / "absent"))
    assert notifier.ready("x") is False
    assert isinstance(notifier.lastError, OSError)
