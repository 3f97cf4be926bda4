"""The real daemon's processes: one supervisor and its workers sharing the sockets,
a killed worker restarted without disturbing the other, a crash loop backing off."""

from __future__ import annotations

import os
import re
import signal
import time

import h2.events
import pytest

from tests.e2e.conftest import base_config
from tests.e2e.h2client import H2Client
from tests.e2e.harness import alive, cmdline, poll_until, run, socket_owner, start_proxy, write_config

#: Connections opened one after the other to see both workers accept.
SPREAD_CONNECTIONS = 40


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, origin, certificate):
    workdir = tmp_path_factory.mktemp("processes")
    config = base_config(origin.port, certificate, workers=2)
    proxy = start_proxy(write_config(workdir, config), ["tls", "h2c"])
    yield proxy
    proxy.stop()


def slot_pid(proxy, slot: int) -> int:
    (pid,) = [p for p in proxy.worker_pids() if f"--slot={slot}" in cmdline(p)]
    return pid


def connection_on(proxy, pid: int, port: int, tls: bool = False) -> H2Client:
    """A connection (with one answered request) that worker C{pid} accepted."""
    for _ in range(SPREAD_CONNECTIONS):
        client = H2Client(port, tls=tls)
        status, _, _, _ = client.response(client.request("GET", "/"))
        assert status == 200
        if socket_owner(client.sock, [pid]) == pid:
            return client
        client.close()
    raise AssertionError(f"no connection landed on worker {pid}")


def test_ps_shows_one_supervisor_and_two_workers(daemon):
    """When workers: 2, ps shows the supervisor (twistd) with exactly two worker children."""
    supervisor = run(["ps", "-ww", "-o", "args=", "-p", str(daemon.pid)]).stdout.decode()
    assert "twistd" in supervisor and "h2proxy" in supervisor
    children = run(["ps", "-ww", "-o", "pid=,args=", "--ppid", str(daemon.pid)]).stdout.decode().splitlines()
    workers = [line for line in children if "h2proxy.worker.process" in line]
    assert len(workers) == 2, children
    assert {re.search(r"--slot=(\d)", line).group(1) for line in workers} == {"0", "1"}


def test_connections_land_on_both_workers(daemon):
    """When many clients connect one after the other, both workers accept some of them."""
    pids = daemon.worker_pids()
    owners: dict[int | None, int] = {}
    clients = []
    try:
        for index in range(SPREAD_CONNECTIONS):
            client = H2Client(daemon.ports["tls" if index % 2 else "h2c"], tls=bool(index % 2))
            clients.append(client)
            status, _, body, _ = client.response(client.request("GET", "/"))
            assert status == 200 and body.startswith(b"hello")
            owner = socket_owner(client.sock, pids)
            owners[owner] = owners.get(owner, 0) + 1
    finally:
        for client in clients:
            client.close()
    print(f"\nconnections per worker: {owners}")
    assert set(owners) == set(pids)


def test_a_killed_worker_is_restarted_and_the_other_is_unaffected(daemon):
    """When one worker is killed with SIGKILL, the supervisor logs it and starts a new one,
    while a response streaming from the other worker completes untouched."""
    daemon.expect_log(r"worker 1\.0 \(pid \d+\) died: killed by signal 9")
    victim, survivor = slot_pid(daemon, 0), slot_pid(daemon, 1)
    client = connection_on(daemon, survivor, daemon.ports["h2c"])
    try:
        start = daemon.mark()
        stream = client.request("GET", "/drip?chunks=20&interval=0.1")
        client.run_until(lambda: any(isinstance(e, h2.events.DataReceived) for e in client.events))
        os.kill(victim, signal.SIGKILL)
        daemon.wait_for(rf"worker 1\.0 \(pid {victim}\) died: killed by signal 9 \(SIGKILL\); "
                        r"restarting in \d+s", start=start)
        _, _, rest, reset = client.response(stream, timeout=30)
        assert reset is None and rest.endswith(b"chunk 19\n")
        replacement = poll_until(lambda: [p for p in daemon.worker_pids() if p not in (victim, survivor)],
                                 what="a replacement worker")
        daemon.wait_for(rf"worker 1\.0 \(pid {replacement[0]}\) is ready", start=start)
        assert survivor in daemon.worker_pids() and not alive(victim)
        again, _, _, _ = client.response(client.request("GET", "/"))
        assert again == 200
    finally:
        client.close()


def test_a_crash_loop_backs_off(daemon):
    """When the same worker is killed each time it comes back, each restart waits twice as
    long as the one before instead of spinning, and the other worker keeps its pid."""
    # Slot 1 has not been killed yet: its first death restarts at once (it ran for a
    # while) or after 1 s (it is younger than the threshold); then the waits double.
    survivor = slot_pid(daemon, 0)
    daemon.expect_log(r"worker 1\.1 \(pid \d+\) died: killed by signal 9")
    delays = []
    for _ in range(3):
        victim = slot_pid(daemon, 1)
        start = daemon.mark()
        killed = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        match = daemon.wait_for(rf"worker 1\.1 \(pid {victim}\) died: .*; restarting in (\d+)s",
                                start=start)
        delays.append(int(match.group(1)))
        daemon.wait_for(r"worker 1\.1 \(pid \d+\) is ready", start=start, timeout=30)
        assert time.monotonic() - killed >= delays[-1]
    print(f"\ncrash loop restart delays: {delays}")
    assert delays[0] in (0, 1)
    assert delays[1] == max(1, 2 * delays[0])
    assert delays[2] == 2 * delays[1]
    assert slot_pid(daemon, 0) == survivor


def test_a_restarted_worker_starts_from_the_text_its_generation_validated(tmp_path_factory, origin,
                                                                         certificate):
    """When the config file is broken on disk (and no reload asked for) and a worker is
    killed, its replacement starts from the text the supervisor validated and handed it,
    not from the file, and serves."""
    workdir = tmp_path_factory.mktemp("boot-text")
    path = write_config(workdir, base_config(origin.port, certificate, workers=1))
    proxy = start_proxy(path, ["tls", "h2c"])
    try:
        proxy.expect_log(r"worker 1\.0 \(pid \d+\) died: killed by signal 9")
        path.write_text("listeners: [this is not the validated text\n")
        (victim,) = proxy.worker_pids()
        start = proxy.mark()
        os.kill(victim, signal.SIGKILL)
        proxy.wait_for(r"worker 1\.0 \(pid \d+\) is ready", start=start, timeout=30)
        client = H2Client(proxy.ports["h2c"])
        try:
            status, _, _, _ = client.response(client.request("GET", "/"))
        finally:
            client.close()
        assert status == 200
    finally:
        proxy.stop()
