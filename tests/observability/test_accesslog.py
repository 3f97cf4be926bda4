"""Access log records: the combined and JSON formats, the writer and the observer."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import re

import pytest
from twisted.internet.testing import MemoryReactorClock

from h2proxy.observability.accesslog import (
    CLIENT_CLOSED,
    MAX_BACKLOG,
    MAX_PENDING,
    RECENT_ERRORS,
    AccessLogFile,
    NullObserver,
    Output,
    RequestObserver,
    RequestRecord,
    format_combined,
    format_json,
)
from h2proxy.message import RequestHead
from h2proxy.observability.metrics import WorkerMetrics

#: The usual combined-format regex (as log tools use it; not anchored at the end).
COMBINED = re.compile(
    r'^(?P<host>\S+) (?P<ident>\S+) (?P<user>\S+) \[(?P<time>[^\]]+)\] '
    r'"(?P<method>[A-Z]+) (?P<path>\S+) (?P<proto>HTTP/[0-9.]+)" (?P<status>\d{3}) (?P<bytes>\d+|-) '
    r'"(?P<referer>[^"]*)" "(?P<agent>[^"]*)"'
)


def record(**overrides) -> RequestRecord:
    fields = dict(start=1_700_000_000.25, client="192.0.2.7", protocol="h2", method="GET",
                  authority="example.org", path="/a?b=c", streamID=3, requestId="abc-1",
                  userAgent="curl/8", status=200, requestBytes=0, responseBytes=42, duration=0.0125,
                  firstByte=0.01, route="example.org/", upstream="app", server="127.0.0.1:8000")
    fields.update(overrides)
    return RequestRecord(**fields)


def extras(line: str) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in line[COMBINED.match(line).end():].split())


def test_combined_line_matches_the_standard_regex():
    """When a record is formatted as combined, the standard regex reads its fields."""
    line = format_combined(record())
    match = COMBINED.match(line)
    assert match is not None, line
    assert match["host"] == "192.0.2.7"
    assert match["path"] == "/a?b=c"
    assert match["proto"] == "HTTP/2.0"
    assert match["status"] == "200"
    assert match["bytes"] == "42"
    assert match["agent"] == "curl/8"
    assert match["referer"] == "-"
    assert re.fullmatch(r"\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}", match["time"])
    fields = extras(line)
    assert fields["rt"] == "0.013" or fields["rt"] == "0.012"
    assert fields["upstream"] == "app" and fields["server"] == "127.0.0.1:8000"
    assert fields["id"] == "abc-1" and fields["stream"] == "3" and fields["error"] == "-"


def test_combined_escapes_quotes_and_control_characters():
    """When the path or user agent hold quotes, spaces or control bytes, the line stays one parseable line."""
    line = format_combined(record(path='/x"y\\z', userAgent='evil" \n agent', protocol="http/1.1"))
    assert "\n" not in line
    match = COMBINED.match(line)
    assert match["path"] == "/x\\x22y\\x5Cz"
    assert match["agent"] == "evil\\x22 \\x0A agent"
    assert match["proto"] == "HTTP/1.1"


def test_combined_proxy_error_carries_its_reason():
    """When the proxy generated a 502, the combined line has the status and the error reason."""
    line = format_combined(record(status=502, error="connection_refused", server="", firstByte=None))
    assert COMBINED.match(line)["status"] == "502"
    fields = extras(line)
    assert fields["error"] == "connection_refused"
    assert fields["uht"] == "-" and fields["server"] == "-"


def test_client_gone_before_a_response_is_logged_as_499():
    """When no status was sent (the client left), both formats say 499."""
    gone = record(status=0, error="client_closed", reset=True)
    assert COMBINED.match(format_combined(gone))["status"] == str(CLIENT_CLOSED)
    assert json.loads(format_json(gone))["status"] == CLIENT_CLOSED


def test_json_line_has_every_field():
    """When a record is formatted as JSON, json.loads gives every field with its type."""
    data = json.loads(format_json(record(error="", retries=1)))
    assert data["time"] == "2023-11-14T22:13:20.250+00:00"
    assert data["client"] == "192.0.2.7"
    assert data["protocol"] == "h2"
    assert (data["method"], data["authority"], data["path"]) == ("GET", "example.org", "/a?b=c")
    assert data["status"] == 200
    assert (data["request_bytes"], data["response_bytes"]) == (0, 42)
    assert data["duration"] == pytest.approx(0.0125)
    assert data["upstream_first_byte"] == pytest.approx(0.01)
    assert (data["route"], data["upstream"], data["server"]) == ("example.org/", "app", "127.0.0.1:8000")
    assert (data["retries"], data["stream_id"], data["request_id"]) == (1, 3, "abc-1")
    assert data["error"] is None and data["reset"] is False


class FakeOutput:
    """An output that takes at most C{room} bytes per write, or fails with C{error}."""

    def __init__(self) -> None:
        self.data = b""
        self.room: int | None = None
        self.error: OSError | None = None
        self.closed = False

    def write(self, data: bytes) -> int:
        if self.error is not None:
            raise self.error
        taken = data if self.room is None else data[: self.room]
        if self.room is not None:
            self.room -= len(taken)
        self.data += taken
        return len(taken)

    def close(self) -> None:
        self.closed = True


def make_log(outputs: list, fmt: str = "json") -> tuple[AccessLogFile, MemoryReactorClock]:
    clock = MemoryReactorClock()

    def opener(path: str):
        output = outputs.pop(0)
        if isinstance(output, OSError):
            raise output
        return output

    return AccessLogFile("/var/log/x.log", format=fmt, clock=clock, opener=opener), clock


def lines(output: FakeOutput) -> list[str]:
    return output.data.decode().splitlines()


def test_records_are_written_once_per_reactor_turn():
    """When two records are logged in one turn, nothing is written until the turn ends, then both at once."""
    output = FakeOutput()
    accessLog, clock = make_log([output])
    accessLog.log(record(streamID=1))
    accessLog.log(record(streamID=3))
    assert output.data == b""
    clock.advance(0)
    assert [json.loads(line)["stream_id"] for line in lines(output)] == [1, 3]


def test_a_full_disk_drops_and_counts_lines_without_raising(logged_errors):
    """When the write fails with ENOSPC, the lines are counted as lost and logging goes on afterwards."""
    output = FakeOutput()
    accessLog, clock = make_log([output])
    output.error = OSError(errno.ENOSPC, "No space left on device")
    accessLog.log(record())
    accessLog.log(record())
    clock.advance(0)
    assert accessLog.lost == 2
    output.error = None
    accessLog.log(record(streamID=9))
    clock.advance(0)
    assert [json.loads(line)["stream_id"] for line in lines(output)] == [9]
    assert accessLog.lost == 2
    assert logged_errors.take(r"no space left on the device; request lines are dropped")


def test_an_unopenable_file_counts_lines_and_is_retried(logged_errors):
    """When the file cannot be opened, lines are lost and counted, and a later flush opens it again."""
    output = FakeOutput()
    accessLog, clock = make_log([PermissionError(errno.EACCES, "Permission denied"), output])
    accessLog.log(record())
    clock.advance(0)
    assert accessLog.lost == 1
    clock.advance(1)
    accessLog.log(record(streamID=5))
    clock.advance(0)
    assert [json.loads(line)["stream_id"] for line in lines(output)] == [5]
    assert logged_errors.take(r"Permission denied; request lines are dropped")


def test_a_full_output_keeps_a_backlog_and_writes_it_later():
    """When the output takes only part of a batch, the rest is written on a retry, in order, none lost."""
    output = FakeOutput()
    accessLog, clock = make_log([output])
    output.room = 50
    for stream in (1, 3, 5):
        accessLog.log(record(streamID=stream))
    clock.advance(0)
    assert len(output.data) == 50
    output.room = None
    clock.advance(1)
    assert [json.loads(line)["stream_id"] for line in lines(output)] == [1, 3, 5]
    assert accessLog.lost == 0


def test_a_backlog_over_its_cap_drops_whole_lines_but_finishes_the_half_written_one():
    """When the output stays full past MAX_BACKLOG, lines are dropped and counted, and the next line starts clean."""
    output = FakeOutput()
    accessLog, clock = make_log([output])
    output.room = 10
    count = MAX_BACKLOG // 300 + 50
    for stream in range(count):
        accessLog.log(record(streamID=stream, path="/" + "p" * 250))
    clock.advance(0)
    assert accessLog.lost == count - 1
    output.room = None
    accessLog.log(record(streamID=99999))
    clock.advance(1)
    written = lines(output)
    assert json.loads(written[0])["stream_id"] == 0
    assert json.loads(written[-1])["stream_id"] == 99999


def test_pending_records_are_capped():
    """When more than MAX_PENDING records arrive in one turn, the extra ones are counted as lost."""
    output = FakeOutput()
    accessLog, clock = make_log([output])
    for _ in range(MAX_PENDING + 3):
        accessLog.log(record())
    assert accessLog.lost == 3


def test_reopen_writes_pending_lines_to_the_old_file_then_switches():
    """When reopened, pending lines go to the old output, which is closed, and later ones to the new one."""
    old, new = FakeOutput(), FakeOutput()
    accessLog, clock = make_log([old, new])
    accessLog.log(record(streamID=1))
    accessLog.reopen()
    accessLog.log(record(streamID=3))
    clock.advance(0)
    assert old.closed
    assert [json.loads(line)["stream_id"] for line in lines(old)] == [1]
    assert [json.loads(line)["stream_id"] for line in lines(new)] == [3]


def test_real_file_is_appended_and_reopened_after_a_move(tmp_path):
    """When the log file is moved away and the log reopened, new lines go to a fresh file at the path."""
    path = tmp_path / "access.log"
    clock = MemoryReactorClock()
    accessLog = AccessLogFile(str(path), format="combined", clock=clock)
    accessLog.log(record(streamID=1))
    clock.advance(0)
    os.rename(path, tmp_path / "access.log.1")
    accessLog.reopen()
    accessLog.log(record(streamID=3))
    accessLog.close()
    assert "stream=1 " in (tmp_path / "access.log.1").read_text()
    assert "stream=3 " in path.read_text()


def test_output_to_a_full_pipe_does_not_block(tmp_path):
    """When standard output is a pipe nobody reads, writes return short instead of blocking."""
    read_end, write_end = os.pipe()
    saved = os.dup(1)
    try:
        os.dup2(write_end, 1)
        output = Output.open("-")
        written = output.write((b"y" * 99 + b"\n") * 20000)
        output.close()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(write_end)
        os.close(read_end)
    assert 0 < written < 100 * 20000
    assert written % 100 == 0


def test_observer_counts_metrics_logs_and_remembers_errors():
    """When requests finish, the observer feeds the metrics, the access log and the recent errors."""
    metrics = WorkerMetrics()
    output = FakeOutput()
    accessLog, clock = make_log([output])
    observer = RequestObserver(metrics=metrics, accessLog=accessLog, clock=lambda: 1_700_000_000.75)
    observer.requestFinished(record(requestBytes=10))
    observer.requestFinished(record(status=502, error="connection_refused", firstByte=None))
    observer.requestFinished(record(status=0, error="client_closed", reset=True, route="", upstream=""))
    clock.advance(0)
    assert metrics.requests.values == {
        ("example.org/", "app", "2xx"): 1, ("example.org/", "app", "5xx"): 1, ("", "", "4xx"): 1,
    }
    assert metrics.proxyErrors.values == {("502", "connection_refused"): 1}
    assert metrics.resets.values == {("client_closed",): 1}
    assert metrics.requestBytes.values == {("example.org/",): 10}
    assert sum(metrics.firstByte.values[("app",)][:-1]) == 1
    assert metrics.duration.values[("example.org/",)][-1] == 1.0  # 2 x 0.5 s
    assert len(lines(output)) == 3
    assert [entry["error"] for entry in observer.recent] == ["connection_refused", "client_closed"]


def test_recent_errors_are_capped():
    """When many requests fail, only the last RECENT_ERRORS are remembered."""
    observer = RequestObserver(metrics=WorkerMetrics(), accessLog=None)
    for stream in range(RECENT_ERRORS + 5):
        observer.requestFinished(record(status=503, error="destination_unavailable", streamID=stream))
    assert len(observer.recent) == RECENT_ERRORS


def test_record_from_a_head_reads_like_one_decoded_up_front():
    """When a record is made from a request head, its strings read as the latin-1 (request id: ASCII) decodings of the head's bytes, and its fields and lines equal those of the eagerly built record."""
    head = RequestHead(
        method=b"GET", scheme=b"https", authority=b"h\xe9.example:8443", path=b"/caf\xe9?x=1",
        headers=((b"accept", b"*/*"), (b"user-agent", b"agent/\xff"), (b"referer", b"https://r/"),
                 (b"user-agent", b"second")),
        end_stream=True,
    )
    record = NullObserver(clock=lambda: 5.0).requestStarted(
        head=head, client="192.0.2.7", protocol=b"2", streamID=3, requestId=b"id-\xff")
    eager = RequestRecord(start=5.0, client="192.0.2.7", protocol="h2", method="GET",
                          authority="h\xe9.example:8443", path="/caf\xe9?x=1", streamID=3,
                          requestId="id-\ufffd", userAgent="agent/\xff", referer="https://r/")
    assert dataclasses.asdict(record) == dataclasses.asdict(eager)
    assert format_combined(record) == format_combined(eager) and format_json(record) == format_json(eager)


def test_record_from_a_head_without_agent_or_referer_has_empty_ones():
    """When the head has no user-agent or referer and an unknown protocol version, the record reads empty strings and the version as given."""
    head = RequestHead(method=b"POST", scheme=b"http", authority=b"a", path=b"/", headers=(), end_stream=False)
    record = NullObserver().requestStarted(head=head, client="unknown", protocol=b"3", streamID=1, requestId=b"x")
    assert (record.userAgent, record.referer, record.protocol, record.method) == ("", "", "3", "POST")
    assert record.status == record.requestBytes == record.retries == 0 and record.firstByte is None
