"""The supervisor side stays free of HTTP code, transitively, and sd_notify needs only
the standard library."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[2] / "src" / "h2proxy"
#: Modules the supervisor process must never load (it parses no HTTP).
HTTP_MODULES = ("h2", "hpack", "hyperframe", "priority", "h2proxy.frontend", "h2proxy.upstream",
                "h2proxy.bridge", "h2proxy.worker.server", "h2proxy.worker.process")


def test_the_supervisor_loads_no_http_code():
    """When h2proxy.supervisor.service (with its parts, handover and sdnotify) is imported
    in a fresh interpreter, no HTTP module gets loaded, not even indirectly."""
    probe = ("import sys, h2proxy.supervisor.service, h2proxy.supervisor.sockets,"
             " h2proxy.supervisor.workers, h2proxy.supervisor.generations,"
             " h2proxy.supervisor.changes, h2proxy.handover, h2proxy.supervisor.sdnotify;"
             "print('\\n'.join(sorted(sys.modules)))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, check=True,
                            timeout=60).stdout.decode().split()
    leaks = [name for name in loaded for banned in HTTP_MODULES
             if name == banned or name.startswith(banned + ".")]
    assert leaks == []


def test_sdnotify_uses_the_standard_library_only():
    """When sdnotify's imports are listed, each is a standard library module."""
    tree = ast.parse((SOURCE / "supervisor" / "sdnotify.py").read_text())
    names = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
             for alias in node.names}
    names |= {node.module.split(".")[0] for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom) and node.module and node.level == 0}
    assert names - {"__future__"} <= set(sys.stdlib_module_names)
