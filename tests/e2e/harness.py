"""Running the real daemon and a real origin for end-to-end tests.

Processes are started with their output on a pipe; readiness is the log line that
says a port is bound (read with a deadline), never a sleep. Everything runs on
127.0.0.1 with ports chosen by the kernel.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.logcheck import unexpected_lines

READY_TIMEOUT = 20.0


class ProcessOutput:
    """Collects a child's combined output on a thread, so its pipe never fills."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._pump, args=(process,), daemon=True)
        self._thread.start()

    def _pump(self, process: subprocess.Popen) -> None:
        for raw in process.stdout:
            with self._cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self.lines.append("<eof>")
            self._cond.notify_all()

    def wait_for(self, pattern: str, timeout: float = READY_TIMEOUT, start: int = 0) -> re.Match:
        """The first line from index C{start} matching C{pattern}; fails after C{timeout}."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        index = start
        with self._cond:
            while True:
                while index < len(self.lines):
                    match = regex.search(self.lines[index])
                    if match:
                        return match
                    if self.lines[index] == "<eof>":
                        raise AssertionError(f"process exited before {pattern!r}:\n" + self.text())
                    index += 1
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out waiting for {pattern!r}:\n" + self.text())
                self._cond.wait(remaining)

    def text(self) -> str:
        return "\n".join(self.lines[-200:])

    def wait_closed(self, timeout: float = 10.0) -> None:
        """Wait until the child's output has been read to its end, so that nothing
        it logged while stopping is missed."""
        self._thread.join(timeout)


@dataclass
class Origin:
    process: subprocess.Popen
    port: int
    log_path: Path
    output: ProcessOutput

    def requests(self) -> list[dict]:
        import json

        if not self.log_path.exists():
            return []
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line]

    def stop(self) -> None:
        stop_process(self.process)


def start_origin(tmp: Path) -> Origin:
    log_path = tmp / "origin-requests.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-m", "h2proxy_tools.origin", "--port", "0", "--log", str(log_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output = ProcessOutput(process)
    match = output.wait_for(r"origin listening on http://[\d.]+:(\d+)")
    return Origin(process, int(match.group(1)), log_path, output)


@dataclass
class Proxy:
    """The daemon: the supervisor process twistd runs, and its worker processes."""

    process: subprocess.Popen
    output: ProcessOutput
    config_path: Path
    ports: dict[str, int] = field(default_factory=dict)
    expected_errors: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    def url(self, listener: str, path: str = "/") -> str:
        scheme = "https" if listener.startswith("tls") else "http"
        return f"{scheme}://127.0.0.1:{self.ports[listener]}{path}"

    def worker_pids(self) -> list[int]:
        """The live worker processes of this daemon (children running h2proxy.worker.process)."""
        return [pid for pid in children_of(self.pid) if "h2proxy.worker.process" in cmdline(pid)]

    def daemon_pids(self) -> list[int]:
        return [self.pid, *self.worker_pids()]

    def peak_rss_kib(self) -> int:
        """The largest VmHWM (peak resident set size) of the supervisor and each live
        worker, in KiB: what one process of the daemon held at its peak."""
        return max(_status_field(pid, "VmHWM") for pid in self.daemon_pids())

    def rss_kib(self) -> int:
        """VmRSS of the supervisor and its live workers together, in KiB."""
        return sum(_status_field(pid, "VmRSS") for pid in self.daemon_pids())

    def mark(self) -> int:
        """A position in the output, for waiting on lines logged after it."""
        return len(self.output.lines)

    def wait_for(self, pattern: str, timeout: float = READY_TIMEOUT, start: int = 0) -> re.Match:
        return self.output.wait_for(pattern, timeout, start)

    def reload(self, timeout: float = READY_TIMEOUT) -> re.Match:
        """Send SIGHUP and wait until the reload has succeeded or failed; the match's
        group 1 is the new generation's number, or None when the reload failed."""
        start = self.mark()
        self.process.send_signal(signal.SIGHUP)
        return self.wait_for(r"generation (\d+) serving|(reload failed)", timeout, start)

    def expect_log(self, *patterns: str) -> None:
        """Declare error lines this test provokes on purpose (regular expressions):
        an error event of the daemon's log that matches one passes L{check_log}."""
        self.expected_errors.extend(patterns)

    def unexpected_errors(self) -> list[str]:
        """The error events in the daemon's output so far that no test expected."""
        return unexpected_lines(list(self.output.lines), self.expected_errors)

    def check_log(self) -> None:
        """Fail if the daemon logged an error, a traceback or a critical line that
        the test did not declare with L{expect_log} (as trial fails a test that
        logged an error)."""
        found = self.unexpected_errors()
        if found:
            shown = "\n---\n".join(_summary(block) for block in found[:5])
            raise AssertionError(f"the daemon logged {len(found)} unexpected error(s):\n{shown}")

    def stop(self, check: bool = True) -> None:
        """Stop the daemon (SIGTERM, then SIGKILL for anything left) and, with
        C{check}, fail on unexpected errors in its log (L{check_log})."""
        workers = self.worker_pids() if self.process.poll() is None else []
        stop_process(self.process)
        kill_leftovers(workers)
        if check:
            self.output.wait_closed()
            self.check_log()


def _summary(block: str, keep: int = 4) -> str:
    """An error event short enough to read in a test report: its first line and
    the last lines of its traceback, where the exception is named."""
    lines = block.split("\n")
    if len(lines) <= keep + 2:
        return block
    return "\n".join([lines[0], f"  ... {len(lines) - keep - 1} lines ...", *lines[-keep:]])


def children_of(pid: int) -> list[int]:
    """Processes whose parent is C{pid}, from /proc."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(entry.name))
    return children


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    """Whether C{pid} is a live process (not gone, not a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def kill_leftovers(pids: list[int]) -> None:
    """SIGKILL whatever of C{pids} is still running (a test must leave no process behind)."""
    for pid in pids:
        if alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def socket_owner(client: socket.socket, pids: list[int]) -> int | None:
    """Which of C{pids} holds the server end of the TCP connection C{client}."""
    client_port = client.getsockname()[1]
    server_port = client.getpeername()[1]
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if int(local.rsplit(":", 1)[1], 16) == server_port and int(remote.rsplit(":", 1)[1], 16) == client_port:
                inodes.add(f"socket:[{fields[9]}]")
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    if os.readlink(fd) in inodes:
                        return pid
                except OSError:
                    continue
        except OSError:
            continue
    return None


def _status_field(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{name} not in /proc/{pid}/status")


def poll_until(predicate, timeout: float = 20.0, what: str = "the condition", interval: float = 0.05):
    """Watch state that announces nothing (a process table, a file another process
    writes, a counter an origin or the admin listener reports) until C{predicate()}
    returns something truthy, and return it; fail naming C{what} after C{timeout}.

    This is the one place the end-to-end tests wait on such state; anything that
    does announce itself (a log line on a pipe) is waited for with
    L{ProcessOutput.wait_for} instead."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def pattern_digest(count: int) -> str:
    """sha256 of the first C{count} bytes of the origin's /bytes pattern, without
    building them in memory."""
    from h2proxy_tools.origin import PATTERN

    digest = hashlib.sha256()
    whole, rest = divmod(count, len(PATTERN))
    for _ in range(whole):
        digest.update(PATTERN)
    digest.update(PATTERN[:rest])
    return digest.hexdigest()


def upload_pattern(command: list[str], count: int, timeout: float = 300.0) -> bytes:
    """Run a client C{command} that uploads its standard input (curl ``-T -``), feed it
    C{count} bytes of the /bytes pattern (a whole number of pattern blocks) from a
    thread, and return what it printed."""
    from h2proxy_tools.origin import PATTERN

    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def feed() -> None:
        for _ in range(count // len(PATTERN)):
            process.stdin.write(PATTERN)
        process.stdin.close()

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    out = process.stdout.read()
    assert process.wait(timeout) == 0
    feeder.join(10)
    return out


def write_config(tmp: Path, config: dict) -> Path:
    path = tmp / "h2proxy.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def start_proxy(config_path: Path, listeners: list[str], ready: bool = True,
                env: dict[str, str] | None = None) -> Proxy:
    """Start ``twistd -n h2proxy -c CONFIG`` and wait until every listener is bound and,
    with C{ready}, until the first generation of workers serves. C{env} adds to the
    environment (e.g. NOTIFY_SOCKET)."""
    twistd = Path(sys.executable).with_name("twistd")
    process = subprocess.Popen(
        [str(twistd), "-n", "--pidfile=", "--logfile=-", "h2proxy", "-c", str(config_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=config_path.parent,
        env={**os.environ, **(env or {})},
    )
    output = ProcessOutput(process)
    proxy = Proxy(process, output, config_path)
    for name in listeners:
        match = output.wait_for(rf"listener {re.escape(name)} on [^ ]*:(\d+) ")
        proxy.ports[name] = int(match.group(1))
    if ready:
        output.wait_for(r"generation 1 serving")
    return proxy


def stop_process(process: subprocess.Popen, timeout: float = 15.0) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    return process.returncode


def run(args: list[str], timeout: float = 120.0, **kwargs) -> subprocess.CompletedProcess:
    """Run a client command with a deadline, capturing its output."""
    return subprocess.run(args, capture_output=True, timeout=timeout, **kwargs)
