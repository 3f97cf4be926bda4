"""The foreground command the README and docs/operations.md give: one command in both,
and it leaves nothing behind in the working directory."""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

from tests.e2e.harness import ProcessOutput, stop_process, write_config

ROOT = Path(__file__).resolve().parents[2]
FOREGROUND = re.compile(r"^(twistd -n\b.*h2proxy -c \S+)", re.MULTILINE)


def documented_foreground(path: Path) -> str:
    """The one foreground command C{path} documents (a line starting ``twistd -n``)."""
    commands = {match.strip() for match in FOREGROUND.findall(path.read_text())}
    assert len(commands) == 1, f"{path.name}: {commands}"
    return commands.pop()


def test_readme_and_operations_give_the_same_foreground_command():
    """When the README and docs/operations.md are read, they give the same foreground command."""
    assert documented_foreground(ROOT / "README.md") == documented_foreground(ROOT / "docs" / "operations.md")


def test_the_documented_foreground_command_leaves_nothing_behind(tmp_path, origin):
    """When the documented command runs in an empty directory (with its config path
    swapped for one there), it serves and logs on standard output without writing any
    file there, neither while it runs (a twistd.pid would be left behind by a crash and
    block the next start) nor once stopped with SIGTERM (exit 0)."""
    words = shlex.split(documented_foreground(ROOT / "README.md"))
    config = write_config(tmp_path, {
        "listeners": [{"name": "h2c", "address": "127.0.0.1", "port": 0}],
        "upstreams": {"app": {"servers": [{"address": f"127.0.0.1:{origin.port}"}]}},
        "routes": [{"upstream": "app"}],
    })
    before = set(tmp_path.iterdir())
    words[0] = str(Path(sys.executable).with_name("twistd"))
    words[words.index("-c") + 1] = str(config)
    process = subprocess.Popen(words, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path)
    output = ProcessOutput(process)
    try:
        output.wait_for(r"generation 1 serving")
        running = set(tmp_path.iterdir())
    finally:
        process.send_signal(signal.SIGTERM)
        code = stop_process(process)
    assert running == before, sorted(p.name for p in running)
    assert code == 0, output.text()
    assert set(tmp_path.iterdir()) == before, sorted(p.name for p in tmp_path.iterdir())
