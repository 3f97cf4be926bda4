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
- the boot message: a L{WorkerBoot}, carrying the text the supervisor validated
  (not only its path, so a file edited in the middle of a reload cannot split a
  generation), which the worker parses again with its own code. On the wire: a
  fixed header (L{BOOT_HEADER}: magic, format version, the length of the sender's
  h2proxy version, the length of the body), the sender's version in ASCII, then a
  JSON body. The header's layout never changes, so a worker from another release
  can always say which format and which h2proxy sent what it cannot read; it then
  exits with L{EX_CONFIG}, which the supervisor takes for a refusal, not a crash;
- the report lines a worker writes, one word first (L{Report}); a C{metrics}
  line carries one JSON object (the worker's metrics snapshot, see
  L{h2proxy.observability.metrics}), written once a second and once more on exit.

Standard library only: the supervisor imports this, and the supervisor must not
import HTTP code.
"""

from __future__ import annotations

import datetime
import enum
import json
import os
import struct
from dataclasses import dataclass

from h2proxy import __version__

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

#: The boot message's fixed header: magic, format version, length of the sender's
#: h2proxy version (the ASCII bytes right after the header), length of the JSON body
#: (after the version). This layout is the same in every format version.
BOOT_HEADER = struct.Struct(">4sHHQ")
#: The first bytes of every boot message.
BOOT_MAGIC = b"H2PB"
#: The body's format, raised whenever its fields change meaning.
BOOT_FORMAT = 1
#: Longest sender version read (a version string, not a document).
MAX_VERSION_BYTES = 64
#: Largest boot body a worker accepts: the config text is capped at 1 MiB on
#: reading; JSON escapes may grow it, this guards against a bad pipe's garbage.
MAX_BOOT_BYTES = 8 * 1024 * 1024
#: The exit status of a worker that refuses its boot message (sysexits' EX_CONFIG):
#: restarting it at once would be refused the same way.
EX_CONFIG = 78
#: Longest report line the supervisor keeps; longer ones are cut here (and a cut
#: metrics line is refused as malformed). A metrics snapshot is a few KiB per
#: route, upstream and server; the config's own caps keep it far below this.
MAX_REPORT_LINE = 4 * 1024 * 1024


class BootError(Exception):
    """The boot message could not be read: another release's format, a supervisor
    that died half-way, or garbage.

    @ivar senderVersion: the h2proxy version of the sender, when the header was read.
    """

    def __init__(self, message: str, senderVersion: str | None = None) -> None:
        super().__init__(message)
        self.senderVersion = senderVersion


@dataclass(frozen=True, slots=True)
class ConfigSource:
    """The configuration as the supervisor validated it.

    @ivar text: the YAML text, as read once for the whole generation.
    @ivar path: the file it was read from (anchors relative paths, names it in messages).
    @ivar validatedAt: when it was validated (aware, UTC): a worker checks the
        certificates against the same instant, so it accepts what the supervisor did.
    """

    text: str
    path: str
    validatedAt: datetime.datetime


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
    @ivar source: the configuration text of that generation.
    @ivar listeners: the inherited sockets, one per configured listener.
    @ivar senderVersion: the h2proxy version of the supervisor that sent it.
    """

    generation: int
    slot: int
    source: ConfigSource
    listeners: tuple[InheritedListener, ...]
    senderVersion: str = __version__

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
    body = json.dumps({
        "generation": boot.generation,
        "slot": boot.slot,
        "config": {"text": boot.source.text, "path": boot.source.path,
                   "validatedAt": boot.source.validatedAt.isoformat()},
        "listeners": [[listener.name, listener.fd, listener.family] for listener in boot.listeners],
    }, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    version = boot.senderVersion.encode("ascii")
    return BOOT_HEADER.pack(BOOT_MAGIC, BOOT_FORMAT, len(version), len(body)) + version + body


def read_boot(fd: int = BOOT_FD) -> WorkerBoot:
    """Read the boot message from C{fd}, blocking until all of it has arrived.

    @raise BootError: the message is not one this worker can read, saying why.
    """
    magic, version, versionLength, bodyLength = BOOT_HEADER.unpack(_read_exactly(fd, BOOT_HEADER.size))
    if magic != BOOT_MAGIC:
        raise BootError(f"not a boot message (starts with {magic!r}, expected {BOOT_MAGIC!r})")
    if versionLength > MAX_VERSION_BYTES:
        raise BootError(f"sender version of {versionLength} bytes exceeds {MAX_VERSION_BYTES}")
    sender = _read_exactly(fd, versionLength).decode("ascii", "replace")
    if version != BOOT_FORMAT:
        raise BootError(f"boot message format {version}; this worker reads format {BOOT_FORMAT}",
                        sender)
    if bodyLength > MAX_BOOT_BYTES:
        raise BootError(f"boot message of {bodyLength} bytes exceeds {MAX_BOOT_BYTES}", sender)
    return _decode_body(_read_exactly(fd, bodyLength), sender)


def _decode_body(body: bytes, sender: str) -> WorkerBoot:
    """The body's JSON as a L{WorkerBoot}; any missing or mistyped field is a L{BootError}."""
    try:
        fields = json.loads(body)
        config = fields["config"]
        validatedAt = datetime.datetime.fromisoformat(config["validatedAt"])
        if validatedAt.tzinfo is None:
            raise ValueError("validatedAt has no time zone")
        source = ConfigSource(_typed(config["text"], str), _typed(config["path"], str), validatedAt)
        listeners = tuple(
            InheritedListener(_typed(name, str), _typed(fd, int), _typed(family, int))
            for name, fd, family in fields["listeners"]
        )
        return WorkerBoot(_typed(fields["generation"], int), _typed(fields["slot"], int), source,
                          listeners, sender)
    except (ValueError, KeyError, TypeError) as problem:
        raise BootError(f"malformed boot message body: {problem!r}", sender) from None


def _typed(value: object, kind: type) -> object:
    if type(value) is not kind:
        raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
    return value


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
