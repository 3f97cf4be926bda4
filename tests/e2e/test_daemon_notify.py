"""The real daemon speaks systemd's notify protocol: READY=1 once the workers serve,
RELOADING=1 then READY=1 around a reload, STOPPING=1 on stop, STATUS= lines between."""

from __future__ import annotations

import signal
import socket
import time

from tests.e2e.conftest import base_config
from tests.e2e.harness import start_proxy, write_config


class FakeSystemd:
    """A datagram socket standing in for $NOTIFY_SOCKET, collecting what arrives."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.messages: list[dict[str, str]] = []

    def until(self, key: str, timeout: float = 20.0) -> dict[str, str]:
        """Read notifications until one carries C{key}; return it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(4096).decode()
            except TimeoutError:
                break
            message = dict(line.split("=", 1) for line in data.split("\n") if line)
            self.messages.append(message)
            if key in message:
                return message
        raise AssertionError(f"no {key} in {self.messages}")

    def close(self) -> None:
        self.sock.close()


def test_readiness_reload_and_stop_are_notified(tmp_path, origin, certificate):
    """When the daemon runs under a notify socket, systemd hears READY=1 with a status
    naming the generation, RELOADING=1 then READY=1 for a reload, and STOPPING=1."""
    systemd = FakeSystemd(str(tmp_path / "notify"))
    path = write_config(tmp_path, base_config(origin.port, certificate, workers=2))
    proxy = start_proxy(path, ["tls", "h2c"], env={"NOTIFY_SOCKET": systemd.path})
    try:
        ready = systemd.until("READY")
        assert ready["STATUS"] == "generation 1: 2/2 workers serving"
        proxy.process.send_signal(signal.SIGHUP)
        reloading = systemd.until("RELOADING")
        assert reloading["MONOTONIC_USEC"].isdigit()
        ready = systemd.until("READY")
        assert ready["STATUS"].startswith("generation 2: 2/2 workers serving")
        proxy.process.send_signal(signal.SIGTERM)
        assert systemd.until("STOPPING")["STOPPING"] == "1"
        assert proxy.process.wait(30) == 0
    finally:
        proxy.stop()
        systemd.close()
