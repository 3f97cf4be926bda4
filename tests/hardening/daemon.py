"""Helpers of the end-to-end attack tests (tests/e2e/test_attack_*.py): the real
daemon with a chosen config, and the three checks every attack ends with.

After each attack: a normal request on a new connection succeeds at once; the
daemon's processes stayed under L{RSS_BOUND_MIB} of resident memory at their peak
(VmHWM, so a spike between two samples is not missed); and the backend's request log
holds no request the client did not legitimately send.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

from h2proxy_tools.audit import Target, healthCheck
from tests.e2e.conftest import base_config
from tests.e2e.harness import Origin, Proxy, start_proxy, write_config

#: The bound on the peak resident memory of any process of the daemon during the
#: attack suite. A worker starts near 55 MiB; the attacks are bounded by the
#: proxy's caps (control buffer, stream queues, windows, header limits), so none
#: should add more than a few MiB.
RSS_BOUND_MIB = 96

#: The path of the request that checks the daemon still serves after an attack.
AFTER = "/after-attack"

#: How long that request may take: "at once".
AFTER_TIMEOUT = 2.0

#: A response large enough to keep windows and queues full for a whole attack.
LARGE = "/bytes/100000000"


@dataclass
class Attacked:
    """A daemon under attack, the origin behind it, and the checks."""

    proxy: Proxy
    origin: Origin

    def target(self, listener: str = "tls", **changes) -> Target:
        target = Target.fromURL(self.proxy.url(listener, AFTER), largePath=LARGE, timeout=10.0, hold=30.0)
        return replace(target, **changes)

    def mark(self) -> int:
        """A position in the backend's request log."""
        return len(self.origin.requests())

    def requestsSince(self, mark: int) -> list[str]:
        """The request targets the backend logged since C{mark}."""
        return [entry["target"] for entry in self.origin.requests()[mark:]]

    def assertSurvived(self, mark: int, allowed: set[str] = frozenset(), listener: str = "tls") -> None:
        """The three checks of every attack test (see the module docstring)."""
        started = time.monotonic()
        assert healthCheck(self.target(listener)), "a normal request failed after the attack"
        assert time.monotonic() - started < AFTER_TIMEOUT, "the normal request was slow after the attack"
        peak = self.proxy.peak_rss_kib() / 1024
        assert peak < RSS_BOUND_MIB, f"a daemon process peaked at {peak:.0f} MiB"
        unexpected = [t for t in self.requestsSince(mark) if t not in allowed | {AFTER}]
        assert unexpected == [], f"the backend saw requests the client did not send: {unexpected[:5]}"


def start_attacked(directory: Path, origin: Origin, certificate: tuple[str, str], **overrides) -> Attacked:
    """The daemon (TLS listener ``tls``, cleartext ``h2c``) with C{overrides} over the
    base config, in C{directory}."""
    directory.mkdir(parents=True, exist_ok=True)
    config = base_config(origin.port, certificate, **overrides)
    proxy = start_proxy(write_config(directory, config), ["tls", "h2c"])
    return Attacked(proxy, origin)
