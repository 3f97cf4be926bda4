"""What one bench run is asked to do: rounds, durations, sizes, peers and workloads."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Settings:
    rounds: int = 3
    duration: float = 10.0         # W1/W2/W8 measured seconds (after 1 s warm-up)
    downloads: int = 2             # W3/W7: 64 MiB requests per client (4 clients)
    uploads: int = 4               # W4: 16 MiB requests per client (4 clients)
    slow_seconds: float = 8.0      # W5: how long the slow clients read
    slow_rate: float = 2e6         # W5: bytes/s per client
    ttfb_repeat: int = 3           # W6: drip requests per run
    idle_count: int = 5000         # idle connections opened
    check_duration: float = 3.0    # origin check with h2load --h1
    peers: tuple[str, ...] = ("h2proxy", "nginx", "twisted")
    workloads: tuple[str, ...] = ("W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8", "idle")
    http2: dict = field(default_factory=dict)   # h2proxy http2: overrides (tuning runs)
    overrides: dict = field(default_factory=dict)   # h2proxy config "dotted.path": value (tuning runs)
    keep_workdir: bool = False
    workers: int = 1               # 1: the pinned one-core comparison; more: the whole-machine run

    @property
    def pinned(self) -> bool:
        """One worker per proxy is compared on one pinned core; more workers get the whole machine."""
        return self.workers == 1


QUICK = dict(rounds=1, duration=3.0, downloads=1, uploads=2, slow_seconds=4.0, ttfb_repeat=1,
             idle_count=1000, check_duration=2.0)
