"""How long curl waits for the end of a response of unknown length (the backend
answers chunked) when the proxy decides the close: HTTP/1.0 and HTTP/1.1 with
``Connection: close`` over TLS, and HTTP/1.0 on cleartext for comparison. The
abort window is 15 s, so a close that waited for it instead of sending
close_notify shows as 15 s and curl's exit 56.

Run from the repository root: ``.venv/bin/python bench/close_time.py``.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from h2proxy_tools.devcert import make_certificate  # noqa: E402
from tests.e2e.conftest import base_config  # noqa: E402
from tests.e2e.harness import start_origin, start_proxy, write_config  # noqa: E402

CASES = [
    ("tls", ["--http1.0"]),
    ("tls", ["--http1.1", "-H", "Connection: close"]),
    ("h2c", ["--http1.0"]),
]


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="close-time-"))
    origin = start_origin(workdir)
    config = base_config(origin.port, make_certificate(str(workdir / "certs")))
    config["timeouts"] = {"abort": "15s"}
    proxy = start_proxy(write_config(workdir, config), ["tls", "h2c"])
    try:
        for listener, flags in CASES:
            command = ["curl", "-sk", *flags, "-o", "/dev/null", "-w", "%{time_total}",
                       proxy.url(listener, "/bytes/100000?chunked=1")]
            result = subprocess.run(command, capture_output=True, timeout=60)
            print(f"{listener:4} {' '.join(flags):32} curl exit {result.returncode}, "
                  f"{float(result.stdout or 0) * 1000:.1f} ms")
    finally:
        proxy.stop(check=False)
        origin.stop()


if __name__ == "__main__":
    main()
