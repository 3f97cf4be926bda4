"""The boot message and report lines between the supervisor and a worker."""

from __future__ import annotations

import os
import socket

import pytest

from h2proxy import __version__
from h2proxy.handover import (
    BOOT_FORMAT,
    BOOT_HEADER,
    BOOT_MAGIC,
    MAX_BOOT_BYTES,
    BootError,
    InheritedListener,
    Report,
    WorkerBoot,
    encode_boot,
    format_report,
    parse_report,
    read_boot,
)
from tests.supervisor.fakes import make_source


def through_pipe(data: bytes) -> WorkerBoot:
    read, write = os.pipe()
    try:
        os.write(write, data)
        os.close(write)
        return read_boot(read)
    finally:
        os.close(read)


def message(body: bytes, version: int = BOOT_FORMAT, sender: bytes = b"9.9.9",
            magic: bytes = BOOT_MAGIC, length: int | None = None) -> bytes:
    """A boot message built by hand, to say what no encoder of ours would."""
    size = len(body) if length is None else length
    return BOOT_HEADER.pack(magic, version, len(sender), size) + sender + body


def sample_boot() -> WorkerBoot:
    return WorkerBoot(generation=4, slot=1, source=make_source("listeners: [] # é ☃\n"),
                      listeners=(InheritedListener("a", 4, socket.AF_INET),
                                 InheritedListener("b", 5, socket.AF_INET6)))


def test_a_boot_message_survives_the_pipe():
    """When a boot message is encoded and read back, it is equal to the original,
    text, path, validation time and sender version included."""
    boot = sample_boot()
    back = through_pipe(encode_boot(boot))
    assert back == boot
    assert back.senderVersion == __version__
    assert boot.name == "4.1"


def test_the_header_names_the_format_and_the_sender():
    """When a boot message is encoded, its fixed header carries the magic, the format,
    and the lengths of the sender's version and of the body that follow it."""
    data = encode_boot(sample_boot())
    magic, version, versionLength, bodyLength = BOOT_HEADER.unpack_from(data)
    assert (magic, version) == (BOOT_MAGIC, BOOT_FORMAT)
    assert data[BOOT_HEADER.size:BOOT_HEADER.size + versionLength] == __version__.encode()
    assert BOOT_HEADER.size + versionLength + bodyLength == len(data)


@pytest.mark.parametrize("cut", [3, BOOT_HEADER.size + 2, -3])
def test_a_truncated_boot_message_is_an_error(cut):
    """When the pipe ends inside the header, the version or the body, read_boot raises
    BootError saying where it ended."""
    data = encode_boot(sample_boot())
    with pytest.raises(BootError, match="end of file"):
        through_pipe(data[:cut])


def test_a_message_with_the_wrong_magic_is_refused():
    """When the first bytes are not the boot magic (an old pickled message, garbage),
    read_boot refuses it without reading further."""
    with pytest.raises(BootError, match="not a boot message") as refused:
        through_pipe(b"\x80\x05" + encode_boot(sample_boot())[2:])
    assert refused.value.senderVersion is None


def test_a_future_format_is_refused_naming_the_sender():
    """When the format version is one this worker does not read, read_boot refuses it
    and still knows the sender's version (the header's layout never changes)."""
    with pytest.raises(BootError, match=f"format {BOOT_FORMAT + 1}; this worker reads format "
                                        f"{BOOT_FORMAT}") as refused:
        through_pipe(message(b"{}", version=BOOT_FORMAT + 1, sender=b"2.0.0"))
    assert refused.value.senderVersion == "2.0.0"


def test_an_oversized_body_is_refused_unread():
    """When the body length exceeds the cap, the body is not read (none follows here)."""
    with pytest.raises(BootError, match="exceeds") as refused:
        through_pipe(message(b"", length=MAX_BOOT_BYTES + 1))
    assert refused.value.senderVersion == "9.9.9"


def test_an_oversized_sender_version_is_refused():
    """When the sender's version claims more than its cap, nothing more is read."""
    with pytest.raises(BootError, match="sender version of 65 bytes"):
        through_pipe(message(b"{}", sender=b"x" * 65))


@pytest.mark.parametrize("body", [
    b"not json",
    b"[]",
    b'{"generation": 1}',
    b'{"generation": "1", "slot": 0, "listeners": [], "config": {"text": "", "path": "p", '
    b'"validatedAt": "2026-12-06T05:00:00+00:00"}}',
    b'{"generation": 1, "slot": 0, "listeners": [], "config": {"text": "", "path": "p", '
    b'"validatedAt": "2026-12-06T05:00:00"}}',
    b'{"generation": 1, "slot": 0, "listeners": [["a", 4]], "config": {"text": "", "path": "p", '
    b'"validatedAt": "2026-12-06T05:00:00+00:00"}}',
])
def test_a_malformed_body_is_refused(body):
    """When the body is not JSON, lacks a field, mistypes one, or gives a time without a
    zone, read_boot raises BootError naming the sender."""
    with pytest.raises(BootError, match="malformed boot message body") as refused:
        through_pipe(message(body))
    assert refused.value.senderVersion == "9.9.9"


def test_reports_round_trip():
    """When a worker formats a report, the supervisor parses the same kind and number."""
    assert parse_report(format_report(Report.READY).decode()) == (Report.READY, None)
    assert parse_report(format_report(Report.STREAMS, 12).decode()) == (Report.STREAMS, 12)
    with pytest.raises(ValueError):
        parse_report("bogus")
