"""The boot message and report lines between the supervisor and a worker."""

from __future__ import annotations

import os
import pickle
import socket
import struct

import pytest

from h2proxy.handover import (
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
from tests.supervisor.fakes import make_config


def through_pipe(data: bytes, close: bool = True) -> WorkerBoot:
    read, write = os.pipe()
    try:
        os.write(write, data)
        os.close(write)
        return read_boot(read)
    finally:
        os.close(read)


def test_a_boot_message_survives_the_pipe():
    """When a boot message is encoded and read back, it is equal to the original."""
    boot = WorkerBoot(generation=4, slot=1, config=make_config("a", "b"),
                      listeners=(InheritedListener("a", 4, socket.AF_INET),
                                 InheritedListener("b", 5, socket.AF_INET6)))
    assert through_pipe(encode_boot(boot)) == boot
    assert boot.name == "4.1"


def test_a_truncated_boot_message_is_an_error():
    """When the pipe ends before the whole message, read_boot raises BootError."""
    data = encode_boot(WorkerBoot(1, 0, make_config(), ()))
    with pytest.raises(BootError, match="end of file"):
        through_pipe(data[:-3])


def test_an_oversized_boot_message_is_refused():
    """When the length prefix exceeds the cap, the payload is not read."""
    with pytest.raises(BootError, match="exceeds"):
        through_pipe(struct.pack(">Q", MAX_BOOT_BYTES + 1))


def test_a_boot_message_of_the_wrong_type_is_refused():
    """When the payload is not a WorkerBoot, read_boot raises BootError."""
    payload = pickle.dumps({"not": "a boot"})
    with pytest.raises(BootError, match="not a WorkerBoot"):
        through_pipe(struct.pack(">Q", len(payload)) + payload)


def test_reports_round_trip():
    """When a worker formats a report, the supervisor parses the same kind and number."""
    assert parse_report(format_report(Report.READY).decode()) == (Report.READY, None)
    assert parse_report(format_report(Report.STREAMS, 12).decode()) == (Report.STREAMS, 12)
    with pytest.raises(ValueError):
        parse_report("bogus")
