"""Real application servers as backends: gunicorn running a Flask app and uvicorn
running a Starlette app (tests/e2e/apps), on ports the kernel picks, with
readiness read from their own log lines."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.harness import ProcessOutput, children_of, kill_leftovers, stop_process

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

#: How each server is started and the line that says where it listens.
SERVERS = {
    "gunicorn": (
        [str(BIN / "gunicorn"), "-w", "1", "--threads", "8", "-b", "127.0.0.1:0", "--no-control-socket",
         "--graceful-timeout", "1", "tests.e2e.apps.flask_app:app"],
        r"Listening at: http://127\.0\.0\.1:(\d+)",
    ),
    "uvicorn": (
        [str(BIN / "uvicorn"), "--host", "127.0.0.1", "--port", "0", "--no-access-log",
         "tests.e2e.apps.starlette_app:app"],
        r"Uvicorn running on http://127\.0\.0\.1:(\d+)",
    ),
}


@dataclass
class AppServer:
    """One running application server."""

    kind: str
    process: subprocess.Popen
    output: ProcessOutput
    port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def serving_pids(self) -> list[int]:
        """The processes that run the application: gunicorn's worker, or uvicorn itself."""
        if self.kind == "gunicorn":
            return children_of(self.process.pid)
        return [self.process.pid]

    def kill_serving(self) -> None:
        """SIGKILL the processes running the application, as a crash or the OOM killer would."""
        for pid in self.serving_pids():
            os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        workers = children_of(self.process.pid) if self.process.poll() is None else []
        stop_process(self.process, timeout=10)
        kill_leftovers(workers)


def start_app_server(kind: str) -> AppServer:
    """Start C{kind} ("gunicorn" or "uvicorn") and wait until it listens."""
    command, ready = SERVERS[kind]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    output = ProcessOutput(process)
    match = output.wait_for(ready)
    if kind == "gunicorn":
        output.wait_for(r"Booting worker with pid")
    return AppServer(kind, process, output, int(match.group(1)))
