"""Running and measuring the bench's processes: where they run, how they are started and
stopped, and what they cost (CPU seconds and memory, read from /proc).

Everything started here runs in its own process group, recorded in the file bench/run
names (or WORKDIR/pgids), so that bench/run can kill what is left even if the
orchestrator is killed.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

PROXY_CPU = "0"
LOAD_CPU = "1"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

#: Seconds a server may take to say it is listening.
START_TIMEOUT = 30.0
#: Seconds a process group gets between SIGTERM and SIGKILL.
STOP_GRACE = 5.0
#: How often RSS is sampled during a workload (seconds).
SAMPLE_INTERVAL = 0.02
#: Where bench/run wants every process group id written (its exit trap kills them).
PGID_FILE = Path(os.environ["H2PROXY_BENCH_PGIDS"]) if os.environ.get("H2PROXY_BENCH_PGIDS") else None
#: Lines of a failed process's log quoted in an error.
LOG_TAIL = 15

class BenchError(Exception):
    """A workload or a server could not be run; the message says what to look at."""


#: What a process is to the placement: a proxy under test, or the origin and load side.
Role = Literal["proxy", "load"]


@dataclass(frozen=True)
class Placement:
    """The CPU the proxies run on and the one the origin and load run on; None = unpinned."""

    proxy: str | None
    load: str | None

    def argv(self, role: Role, argv: list[str]) -> list[str]:
        """C{argv} prefixed with taskset for C{role} ("proxy" or "load"), unchanged if unpinned."""
        cpu = self.proxy if role == "proxy" else self.load
        return ["taskset", "-c", cpu, *argv] if cpu is not None else list(argv)

    def describe(self, role: Role) -> str:
        cpu = self.proxy if role == "proxy" else self.load
        return f"CPU {cpu}" if cpu is not None else "any CPU"


PINNED = Placement(PROXY_CPU, LOAD_CPU)
UNPINNED = Placement(None, None)
#: Where everything runs: set once by the orchestrator from --workers (see use_placement).
placement = PINNED


def use_placement(chosen: Placement) -> None:
    """Where every process started from now on runs (the whole-machine run is unpinned)."""
    global placement
    placement = chosen


def on_cpu(role: Role, argv: list[str]) -> list[str]:
    """C{argv} run where C{role} runs under the current placement."""
    return placement.argv(role, argv)


def describe(role: Role) -> str:
    """Where C{role} runs under the current placement, in words."""
    return placement.describe(role)


# ---- processes --------------------------------------------------------------------------


@dataclass
class Child:
    name: str
    process: subprocess.Popen
    log: Path

    def tail(self) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-LOG_TAIL:])
        return ""


class Launcher:
    """Starts servers pinned to a CPU, each in its own process group, and stops them all."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.children: list[Child] = []
        self.pgid_file = PGID_FILE or workdir / "pgids"

    def start(self, name: str, argv: list[str], role: Role, ready: Callable[[str], re.Match | bool | None],
              cwd: Path | None = None) -> tuple[Child, re.Match | bool]:
        """Run C{argv} where C{role} ("proxy" or "load") runs; wait until C{ready(log text)} is
        true or fail with the log."""
        log = self.workdir / f"{name}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(on_cpu(role, argv), stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, cwd=cwd, start_new_session=True)
        child = Child(name, process, log)
        self.children.append(child)
        record_group(process.pid, self.pgid_file)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            found = ready(log.read_text(errors="replace"))
            if found:
                return child, found
            if process.poll() is not None:
                raise BenchError(f"{name} exited with {process.returncode} before it was ready:\n{child.tail()}")
            time.sleep(0.05)
        raise BenchError(f"{name} was not ready within {START_TIMEOUT:.0f}s:\n{child.tail()}")

    def stop(self, child: Child) -> None:
        if child.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.process.pid, signal.SIGTERM)
            try:
                child.process.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError):   # stragglers of the group
            os.killpg(child.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.process.wait(STOP_GRACE)
        if child in self.children:
            self.children.remove(child)

    def stop_all(self) -> None:
        for child in reversed(list(self.children)):
            self.stop(child)


def record_group(pgid: int, path: Path | None = None) -> None:
    """Note a process group for bench/run's exit trap (the safety net if we are killed)."""
    path = path or PGID_FILE
    if path is not None:
        with open(path, "a") as handle:
            handle.write(f"{pgid}\n")


def run_client(argv: list[str], timeout: float, role: Role = "load") -> tuple[str, float]:
    """Run a load client where C{role} runs, to completion; its output and the CPU seconds it used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    process = subprocess.Popen(on_cpu(role, argv), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    record_group(process.pid)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise BenchError(f"{Path(argv[0]).name} did not finish within {timeout:.0f}s")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    text = output.decode(errors="replace")
    if process.returncode != 0:
        raise BenchError(f"{' '.join(argv[:3])}… exited {process.returncode}:\n{text[-2000:]}")
    return text, cpu_used


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# ---- memory and CPU of a process tree ---------------------------------------------------


def children_map() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                tree.setdefault(ppid, []).append(int(entry))
    return tree


def leaf_pids(root: int) -> list[int]:
    """The processes that do the work: the leaves under C{root} (past taskset/twistd/nginx master)."""
    tree = children_map()
    leaves, todo = [], [root]
    while todo:
        pid = todo.pop()
        kids = tree.get(pid, [])
        if kids:
            todo.extend(kids)
        else:
            leaves.append(pid)
    return leaves


def status_kib(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise BenchError(f"no {name} in /proc/{pid}/status")


def rss_kib(pids: list[int]) -> int:
    return sum(status_kib(pid, "VmRSS") for pid in pids)


def reset_peak(pids: list[int]) -> bool:
    """Reset VmHWM (peak RSS) so it covers only what follows; False where the kernel refuses."""
    try:
        for pid in pids:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


class RssSampler:
    """Samples the summed VmRSS of some processes on a thread while a workload runs."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        start = time.monotonic()
        while not self._stop.is_set():
            with contextlib.suppress(OSError, BenchError):
                self.samples.append((time.monotonic() - start, rss_kib(self.pids)))
            self._stop.wait(SAMPLE_INTERVAL)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_kib(self) -> int:
        return max((rss for _, rss in self.samples), default=0)


def machine_busy_seconds() -> float:
    """CPU seconds all cores have spent busy since boot (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]   # idle + iowait
    return (sum(fields[:8]) - idle) / CLOCK_TICKS
