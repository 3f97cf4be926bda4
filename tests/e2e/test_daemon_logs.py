"""logging.error_log on the real daemon: every process's messages in one file, which
SIGUSR1 reopens after logrotate moved it away."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

from tests.e2e.conftest import base_config
from tests.e2e.harness import children_of, kill_leftovers, poll_until, stop_process, write_config


def wait_in_file(path: Path, pattern: str, timeout: float = 20.0) -> re.Match:
    """The first match of C{pattern} in C{path}, polling until C{timeout}."""
    regex = re.compile(pattern)
    return poll_until(lambda: path.exists() and regex.search(path.read_text()), timeout, f"{pattern!r} in {path}")


def test_usr1_reopens_the_error_log_in_every_process(tmp_path, origin, certificate):
    """When logrotate moves the error log away and sends SIGUSR1, the supervisor writes to
    a new file and every worker says it reopened its logs there."""
    log_path = tmp_path / "error.log"
    config = base_config(origin.port, certificate, workers=2,
                         logging={"error_log": str(log_path), "level": "info"})
    path = write_config(tmp_path, config)
    twistd = Path(sys.executable).with_name("twistd")
    process = subprocess.Popen([str(twistd), "-n", "--pidfile=", "h2proxy", "-c", str(path)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    workers = []
    try:
        wait_in_file(log_path, r"generation 1 serving")
        workers = children_of(process.pid)
        log_path.rename(tmp_path / "error.log.1")
        process.send_signal(signal.SIGUSR1)
        wait_in_file(log_path, r"\[h2proxy\.supervisor[.\w]*#info\] reopened log files; telling 2 worker")
        for name in ("1.0", "1.1"):
            wait_in_file(log_path, rf"worker {re.escape(name)}\[\d+\]: reopening log files")
        assert "generation 1 serving" in (tmp_path / "error.log.1").read_text()
        assert "generation 1 serving" not in log_path.read_text()
    finally:
        assert stop_process(process) == 0
        kill_leftovers(workers)
