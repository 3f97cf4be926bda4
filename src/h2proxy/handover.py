"""What the supervisor hands a worker process, and what a worker reports back.

The two processes share three things, all defined here so that neither side
guesses the other's format:

- the child's file descriptors: the boot message arrives on C{BOOT_FD} (the
  child's stdin, kept open afterwards: its end of file tells the worker that the
  supervisor is gone); the child's stdout is the supervisor's own (so an access
  log on C{-} is written as is, by every process, to the same place); its daemon
  messages go out on C{LOG_FD} for the supervisor to relay under its name;
  reports go out on C{REPORT_FD}; the listening sockets sit from
  C{FIRST_LISTENER_FD} on;
- the boot message: a L{WorkerBoot} (the validated config itself, not its path, so
  a file edited in the middle of a reload cannot split the generations), pickled
  behind an 8-byte length;
- the report lines a worker writes, one word first (L{Report}); a C{metrics}
  line carries one JSON object (the worker's metrics snapshot, see
  L{h2proxy.observability.metrics}), written once a second and once more on exit.

Standard library and the plain-data config model only: the supervisor imports
this, and the supervisor must not import HTTP code.
"""

from __future__ import annotations

import enum
import json
import os
import pickle
import struct
from dataclasses import dataclass

from h2proxy.config.model import Config

#: The child's stdin: the boot message, then nothing until the supervisor goes away.
BOOT_FD = 0
#: The child's stdout: the supervisor's own standard output, shared as is.
STDOUT_FD = 1
#: The child's stderr: its daemon messages (and any traceback), relayed by the supervisor.
LOG_FD = 2
#: Where a worker writes its L{Report} lines.
REPORT_FD = 3
#: The first listening socket; the others follow in the boot message's order.
FIRST_LISTENER_FD = 4

#: The boot message's length prefix: an unsigned 64-bit big-endian integer.
_LENGTH = struct.Struct(">Q")
#: Largest boot message a worker accepts (a config is a few KiB; this guards a bad pipe).
MAX_BOOT_BYTES = 16 * 1024 * 1024
#: Longest report line the supervisor keeps; longer ones are cut here (and a cut
#: metrics line is refused as malformed). A metrics snapshot is a few KiB per
#: route, upstream and server; the config's own caps keep it far below this.
MAX_REPORT_LINE = 4 * 1024 * 1024


class BootError(Exception):
    """The boot message could not be read: the supervisor died or wrote garbage."""


@dataclass(frozen=True, slots=True)
class InheritedListener:
    """One listening socket a worker adopts.

    @ivar name: the listener's name in the config.
    @ivar fd: the descriptor number in the worker.
    @ivar family: C{socket.AF_INET} or C{socket.AF_INET6}.
    """

    name: str
    fd: int
    family: int


@dataclass(frozen=True, slots=True)
class WorkerBoot:
    """Everything a worker needs to start serving.

    @ivar generation: the config generation this worker belongs to (1, 2, ...).
    @ivar slot: the worker's index within its generation (0 .. workers-1).
    @ivar config: the validated configuration of that generation.
    @ivar listeners: the inherited sockets, one per configured listener.
    """

    generation: int
    slot: int
    config: Config
    listeners: tuple[InheritedListener, ...]

    @property
    def name(self) -> str:
        """The worker's name in logs: generation and slot, e.g. C{2.0}."""
        return f"{self.generation}.{self.slot}"


class Report(enum.Enum):
    """The first word of a line a worker writes on C{REPORT_FD}.

    - C{READY}: every listener is adopted; the worker accepts connections.
    - C{DRAINING}: the worker stopped accepting and is finishing its streams.
    - C{STREAMS}: followed by a count, the streams still open while draining.
    - C{METRICS}: followed by a JSON object, the worker's metrics snapshot.
    """

    READY = "ready"
    DRAINING = "draining"
    STREAMS = "streams"
    METRICS = "metrics"


def encode_boot(boot: WorkerBoot) -> bytes:
    """The boot message as written on the child's stdin."""
    payload = pickle.dumps(boot, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(payload)) + payload


def read_boot(fd: int = BOOT_FD) -> WorkerBoot:
    """Read the boot message from C{fd}, blocking until all of it has arrived.

    The supervisor is trusted (it is our parent and wrote this pipe), so unpickling
    is safe here; the size cap only protects against a broken pipe's garbage.
    """
    header = _read_exactly(fd, _LENGTH.size)
    (length,) = _LENGTH.unpack(header)
    if length > MAX_BOOT_BYTES:
        raise BootError(f"boot message of {length} bytes exceeds {MAX_BOOT_BYTES}")
    boot = pickle.loads(_read_exactly(fd, length))
    if not isinstance(boot, WorkerBoot):
        raise BootError(f"boot message is a {type(boot).__name__}, not a WorkerBoot")
    return boot


def _read_exactly(fd: int, count: int) -> bytes:
    chunks: list[bytes] = []
    remaining = count
    while remaining:
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            raise BootError(f"end of file after {count - remaining} of {count} bytes")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def parse_report(line: str) -> tuple[Report, int | dict | None]:
    """A report line as (kind, value): a count for C{STREAMS}, a dict for
    C{METRICS}, None for the others.

    @raise ValueError: the line is not a known report, or its value is malformed.
    """
    word, _, rest = line.strip().partition(" ")
    kind = Report(word)
    if kind is Report.STREAMS:
        return kind, int(rest)
    if kind is Report.METRICS:
        payload = json.loads(rest)
        if not isinstance(payload, dict):
            raise ValueError("a metrics report must be a JSON object")
        return kind, payload
    return kind, None


def format_report(kind: Report, number: int | None = None) -> bytes:
    """The bytes a worker writes for one report."""
    text = kind.value if number is None else f"{kind.value} {number}"
    return text.encode("ascii") + b"\n"


def format_metrics(payload: dict) -> bytes:
    """The bytes a worker writes for one metrics report (compact JSON, one line)."""
    return f"{Report.METRICS.value} {json.dumps(payload, separators=(',', ':'))}\n".encode("ascii")
