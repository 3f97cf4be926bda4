"""Static responses through the real bridge, with a recording stream and a
blocking-call runner the test drives: statuses, fields, conditionals, ranges,
precompressed siblings, backpressure, and the file closed on every path."""

from __future__ import annotations

import email.utils
import errno
import gzip
import os
import threading

import pytest
from twisted.python.failure import Failure

from h2proxy.frontend.handler import ResetReason
from h2proxy.observability.accesslog import NullObserver
from h2proxy.static.reader import InlineIO, OpenFiles
from h2proxy.static.validators import Validators
from tests.static.support import HeldIO, request, static_context

BODY = bytes(range(256)) * 4096  # 1 MiB: several chunks


class Finished(NullObserver):
    def __init__(self) -> None:
        super().__init__()
        self.records = []

    def requestFinished(self, record) -> None:
        super().requestFinished(record)
        self.records.append(record)


@pytest.fixture
def root(tmp_path):
    site = tmp_path / "site"
    (site / "css").mkdir(parents=True)
    (site / "docs").mkdir()
    (site / "empty").mkdir()
    (site / "css" / "a.css").write_bytes(b"body{}")
    (site / "css" / "a.css.gz").write_bytes(gzip.compress(b"body{}"))
    (site / "docs" / "index.html").write_bytes(b"<h1>docs</h1>")
    (site / "big.bin").write_bytes(BODY)
    (site / ".hidden").write_bytes(b"dot")
    (tmp_path / "secret").write_bytes(b"SECRET")
    os.symlink(tmp_path / "secret", site / "link-out")
    return str(site)


def serve(root, path, method=b"GET", headers=(), io=None, **options):
    io = io or InlineIO()
    context = static_context(root, io, **options)
    context.observer = Finished()
    stream, bridge = request(context, path, method, headers)
    return stream, bridge, context.observer, io


def test_a_file_is_sent_with_its_fields(root):
    stream, _, observer, io = serve(root, b"/static/css/a.css?v=3", max_age=3600)
    stat = os.stat(os.path.join(root, "css", "a.css"))
    assert (stream.status, stream.body, stream.ended) == (200, b"body{}", True)
    h = stream.headers
    assert h[b"content-type"] == b"text/css; charset=utf-8"
    assert h[b"content-length"] == b"6"
    assert h[b"etag"] == Validators.of(6, stat.st_mtime).etag
    assert h[b"accept-ranges"] == b"bytes" and h[b"cache-control"] == b"max-age=3600"
    assert h[b"vary"] == b"accept-encoding" and b"last-modified" in h and b"x-request-id" in h
    [record] = observer.records
    assert (record.status, record.responseBytes, record.upstream) == (200, 6, "")
    assert len(io.files) == 0


@pytest.mark.parametrize("method, headers, status", [
    (b"GET", (), 200), (b"HEAD", (), 200), (b"GET", ((b"range", b"bytes=0-0"),), 206),
    (b"GET", ((b"if-none-match", b"*"),), 304), (b"GET", ((b"range", b"bytes=-0"),), 416),
    (b"POST", (), 405),
])
def test_every_response_has_a_date(root, method, headers, status):
    """RFC 9110 section 6.6.1: an origin server with a clock sends Date; without it
    a client cannot tell a strong Last-Modified (for If-Range) from a weak one."""
    stream, *_ = serve(root, b"/static/css/a.css", method=method, headers=headers)
    assert stream.status == status
    date = stream.headers[b"date"]
    assert date.endswith(b" GMT") and email.utils.parsedate_to_datetime(date.decode()).tzinfo is not None


@pytest.mark.parametrize("ahead", [24 * 3600, 10**13])
def test_a_modification_time_in_the_future_is_sent_as_now(root, monkeypatch, ahead):
    """RFC 9110 section 8.8.2.1: Last-Modified is never later than Date; a file
    stamped in the future (a build host's clock ahead, or a year past 9999 that no
    HTTP date can spell) says the response's time instead."""
    path = os.path.join(root, "css", "a.css")
    future = os.stat(path).st_mtime + ahead
    real_fstat = os.fstat

    def fstat(fd):  # ext4 caps times at 2446: report the far future as btrfs would
        found = real_fstat(fd)
        return os.stat_result((*found[:8], int(future), int(future)))

    monkeypatch.setattr("h2proxy.static.reader.os.fstat", fstat)
    stream, *_ = serve(root, b"/static/css/a.css")
    assert stream.status == 200
    sent = email.utils.parsedate_to_datetime(stream.headers[b"last-modified"].decode())
    assert sent <= email.utils.parsedate_to_datetime(stream.headers[b"date"].decode())
    assert stream.headers[b"etag"] == Validators.of(6, future, now=future).etag


def test_head_has_the_fields_and_no_body(root):
    stream, *_ = serve(root, b"/static/big.bin", method=b"HEAD")
    assert (stream.status, stream.body, stream.ended) == (200, b"", True)
    assert stream.headers[b"content-length"] == b"%d" % len(BODY)


def test_other_methods_get_405_with_allow(root):
    stream, *_ = serve(root, b"/static/css/a.css", method=b"POST")
    assert (stream.status, stream.headers[b"allow"]) == (405, b"GET, HEAD")


@pytest.mark.parametrize("path, status", [
    (b"/static/docs/", 200), (b"/static/docs", 301), (b"/static/empty/", 404), (b"/static/nothing", 404),
    (b"/static/css/a.css/", 404), (b"/static/link-out", 404), (b"/static/../secret", 404), (b"/static/.hidden", 200),
])
def test_directories_missing_files_and_escapes(root, path, status):
    stream, *_ = serve(root, path)
    assert stream.status == status
    assert b"SECRET" not in stream.body


@pytest.mark.parametrize("path", [b"/static/" + b"n" * 300, b"/static/" + b"d/" * 3000 + b"x", b"/static/loop"])
def test_a_name_too_long_or_a_symlink_loop_is_404_without_a_traceback(root, path):
    """The file system's own refusals (ENAMETOOLONG, ELOOP) are about the request's
    path, not the daemon: 404, and nothing logged as a failure."""
    os.symlink("loop", os.path.join(root, "loop"))
    assert serve(root, path)[0].status == 404


def test_a_directory_without_slash_is_redirected_with_its_query(root):
    stream, *_ = serve(root, b"/static/docs?lang=fr")
    assert (stream.status, stream.headers[b"location"]) == (301, b"/static/docs/?lang=fr")


@pytest.mark.parametrize("path", [b"//evil.example", b"///evil.example?x=1"])
def test_a_directory_redirect_never_names_another_host(root, path):
    """On a route at /, //evil.example names the directory evil.example: the 301
    goes to /evil.example/, not to the protocol-relative //evil.example/ (another
    host, for a browser)."""
    os.mkdir(os.path.join(root, "evil.example"))
    context = static_context(root, InlineIO(), path="/")
    stream, _ = request(context, path)
    assert stream.status == 301
    assert stream.headers[b"location"].startswith(b"/evil.example/")


def test_follow_symlinks_serves_links_out_of_the_root(root):
    stream, *_ = serve(root, b"/static/link-out", follow_symlinks=True)
    assert (stream.status, stream.body) == (200, b"SECRET")


def test_an_unreadable_file_is_403(root, monkeypatch):
    from h2proxy.static.reader import OpenFiles

    def refuse(self, path):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(OpenFiles, "open", refuse)
    assert serve(root, b"/static/big.bin")[0].status == 403


def test_a_fifo_swapped_in_after_the_lookup_is_refused_without_blocking(root):
    """Between the lookup's stat and the open, a FIFO may take the file's place: the
    open must not wait for a writer, which would hold one of the few reading
    threads for ever. The join's bound only keeps a failing run from hanging."""
    fifo = os.path.join(root, "fifo")
    os.mkfifo(fifo)
    outcome: list[BaseException] = []

    def open_it() -> None:
        try:
            OpenFiles().open(fifo.encode())
        except OSError as error:
            outcome.append(error)

    opener = threading.Thread(target=open_it)
    opener.start()
    opener.join(30)
    if opener.is_alive():
        os.close(os.open(fifo, os.O_WRONLY))  # the writer the open waited for
        opener.join()
        pytest.fail("opening a FIFO blocked until a writer came")
    assert len(outcome) == 1 and "not a regular file" in str(outcome[0])


def test_if_none_match_gives_304_with_validators_and_no_body(root):
    first, *_ = serve(root, b"/static/css/a.css")
    stream, *_ = serve(root, b"/static/css/a.css", headers=((b"if-none-match", first.headers[b"etag"]),))
    assert (stream.status, stream.body, stream.ended) == (304, b"", True)
    assert stream.headers[b"etag"] == first.headers[b"etag"] and b"content-length" not in stream.headers


def test_if_modified_since_gives_304(root):
    first, *_ = serve(root, b"/static/css/a.css")
    stream, *_ = serve(root, b"/static/css/a.css", headers=((b"if-modified-since", first.headers[b"last-modified"]),))
    assert stream.status == 304


@pytest.mark.parametrize("condition, status", [
    ((b"if-match", b'"other"'), 412),
    ((b"if-match", b"W/{etag}"), 412),
    ((b"if-match", b'"x", {etag}'), 200),
    ((b"if-match", b"*"), 200),
    ((b"if-unmodified-since", b"Thu, 01 Jan 1970 00:00:00 GMT"), 412),
    ((b"if-unmodified-since", b"{date}"), 200),
])
def test_if_match_and_if_unmodified_since_are_evaluated(root, condition, status):
    """RFC 9110 section 13.1.1 and 13.1.4: an origin server evaluates them; a failed
    one is 412 with no body (If-Match compares strongly)."""
    first, *_ = serve(root, b"/static/css/a.css")
    value = condition[1].replace(b"{etag}", first.headers[b"etag"]).replace(b"{date}", first.headers[b"last-modified"])
    stream, *_ = serve(root, b"/static/css/a.css", headers=((condition[0], value),))
    assert (stream.status, stream.ended) == (status, True)
    if status == 412:
        assert (stream.body, stream.headers[b"content-length"]) == (b"", b"0")


def test_if_match_takes_precedence_over_if_unmodified_since(root):
    first, *_ = serve(root, b"/static/css/a.css")
    stream, *_ = serve(root, b"/static/css/a.css", headers=(
        (b"if-match", first.headers[b"etag"]), (b"if-unmodified-since", b"Thu, 01 Jan 1970 00:00:00 GMT")))
    assert stream.status == 200


def test_a_range_gets_206_with_the_bytes(root):
    stream, *_ = serve(root, b"/static/big.bin", headers=((b"range", b"bytes=10-19"),))
    assert (stream.status, stream.body) == (206, BODY[10:20])
    assert stream.headers[b"content-range"] == b"bytes 10-19/%d" % len(BODY)
    assert stream.headers[b"content-length"] == b"10"


def test_an_unsatisfiable_range_gets_416(root):
    stream, *_ = serve(root, b"/static/big.bin", headers=((b"range", b"bytes=99999999-"),))
    assert (stream.status, stream.headers[b"content-range"]) == (416, b"bytes */%d" % len(BODY))


def test_if_range_with_another_etag_sends_the_whole_file(root):
    stream, *_ = serve(root, b"/static/big.bin", headers=((b"range", b"bytes=0-0"), (b"if-range", b'"old"')))
    assert (stream.status, len(stream.body)) == (200, len(BODY))


def test_a_precompressed_sibling_is_sent_when_accepted(root):
    stream, *_ = serve(root, b"/static/css/a.css", headers=((b"accept-encoding", b"br;q=1, gzip;q=0.5"),))
    assert stream.headers[b"content-encoding"] == b"gzip"
    assert gzip.decompress(stream.body) == b"body{}"
    assert stream.headers[b"content-type"] == b"text/css; charset=utf-8"
    assert stream.headers[b"etag"] != serve(root, b"/static/css/a.css")[0].headers[b"etag"]


def test_no_sibling_for_a_range_or_when_disabled(root):
    ranged, *_ = serve(root, b"/static/css/a.css", headers=((b"accept-encoding", b"gzip"), (b"range", b"bytes=0-3")))
    assert (ranged.status, ranged.body, b"content-encoding" in ranged.headers) == (206, b"body", False)
    off, *_ = serve(root, b"/static/css/a.css", headers=((b"accept-encoding", b"gzip"),), precompressed=False)
    assert (off.body, b"vary" in off.headers) == (b"body{}", False)


def test_pause_stops_reads_resume_continues(root):
    io = HeldIO()
    stream, _, _, _ = serve(root, b"/static/big.bin", io=io)
    io.runOne()  # find and open
    io.runOne()  # first chunk
    sender = stream.producer
    sender.pauseProducing()
    io.runAll()
    assert io.pending == [] and len(stream.body) < len(BODY)
    sender.resumeProducing()
    io.runAll()
    assert (stream.body, stream.ended, len(io.files)) == (BODY, True, 0)


def test_a_client_reset_during_a_read_closes_the_file_when_it_returns(root):
    io = HeldIO()
    stream, bridge, observer, _ = serve(root, b"/static/big.bin", io=io)
    io.runOne()
    assert len(io.files) == 1 and len(io.pending) == 1
    bridge.streamAborted(Failure(ConnectionError("gone")))
    assert len(io.files) == 1  # a thread may still be reading it
    io.runAll()
    assert len(io.files) == 0
    assert observer.records[0].error == "client_closed"


def test_a_client_reset_before_the_file_is_open_closes_it_once_open(root):
    io = HeldIO()
    stream, bridge, _, _ = serve(root, b"/static/big.bin", io=io)
    bridge.streamAborted(Failure(ConnectionError("gone")))
    io.runAll()
    assert (len(io.files), stream.status) == (0, None)


def test_stop_producing_closes_the_file(root):
    io = HeldIO()
    stream, *_ = serve(root, b"/static/big.bin", io=io)
    io.runOne()
    io.runOne()
    sender = stream.producer
    sender.pauseProducing()
    io.runAll()
    assert len(io.files) == 1
    sender.stopProducing()
    assert len(io.files) == 0


def test_worker_stop_closes_what_responses_still_hold(root):
    io = HeldIO()
    stream, *_ = serve(root, b"/static/big.bin", io=io)
    io.runOne()
    io.runOne()
    stream.producer.pauseProducing()
    assert len(io.files) == 1
    io.files.closeAll()
    assert len(io.files) == 0


def test_a_file_that_shrinks_resets_the_stream(root):
    io = HeldIO()
    stream, _, observer, _ = serve(root, b"/static/big.bin", io=io)
    io.runOne()
    with open(os.path.join(root, "big.bin"), "r+b") as f:
        f.truncate(1000)
    io.runAll()
    assert (stream.resetWith, stream.ended, len(io.files)) == (ResetReason.INTERNAL_ERROR, False, 0)
    assert len(stream.body) == 1000
    assert observer.records[0].reset


def test_static_requests_count_in_the_metrics_under_their_route(root):
    from h2proxy.observability.accesslog import RequestObserver
    from h2proxy.observability.metrics import WorkerMetrics

    metrics = WorkerMetrics()
    context = static_context(root, InlineIO())
    context.observer = RequestObserver(metrics=metrics, accessLog=None)
    request(context, b"/static/css/a.css")
    request(context, b"/static/nothing")
    snapshot = metrics.registry.snapshot()
    assert sorted(snapshot["h2proxy_requests_total"]) == [[["*/static", "", "2xx"], 1], [["*/static", "", "4xx"], 1]]
    assert snapshot["h2proxy_upstream_first_byte_seconds"] == []


@pytest.mark.parametrize("where", ["content_type", "_send"])
def test_a_failure_while_answering_is_contained(root, monkeypatch, logged_errors, where):
    """Should deciding the answer for an open file fail (a bug), the client still
    gets an answer (500 before the head, a reset after it), the file is closed, and
    the failure is one logged error, not a hanging stream."""
    import h2proxy.static.responder as responder

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    if where == "content_type":
        monkeypatch.setattr(responder, "content_type", broken)
    else:
        monkeypatch.setattr(responder.StaticResponder, "_send", broken)
    stream, _, observer, io = serve(root, b"/static/big.bin")
    assert len(logged_errors.flush(RuntimeError)) == 1
    if where == "content_type":
        assert stream.status == 500 and stream.ended
    else:
        assert stream.status == 200 and stream.resetWith is ResetReason.INTERNAL_ERROR
    assert len(io.files) == 0 and len(observer.records) == 1


def test_a_worker_out_of_file_descriptors_answers_503_without_a_traceback(root, monkeypatch, logged_errors):
    """Out of descriptors is a capacity problem, not a bug: 503 and one warning
    naming the limit to raise, for every request that meets it."""
    from h2proxy.static.reader import OpenFiles

    def exhausted(self, path):
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(OpenFiles, "open", exhausted)
    stream = serve(root, b"/static/big.bin")[0]
    assert stream.status == 503
    assert logged_errors.flush() == []


def test_the_type_comes_from_the_name_asked_for_not_a_links_target(root):
    """A symbolic link app.js to a file named app.js.txt is served as JavaScript, the
    name the client asked for (nginx's rule); a directory's index gives its own type."""
    site = os.path.dirname(os.path.join(root, "big.bin"))
    with open(os.path.join(site, "build-output.txt"), "wb") as out:
        out.write(b"window.x = 1;")
    os.symlink(os.path.join(site, "build-output.txt"), os.path.join(site, "app.js"))
    stream = serve(root, b"/static/app.js")[0]
    assert stream.headers[b"content-type"].startswith(b"text/javascript") and stream.body == b"window.x = 1;"
    assert serve(root, b"/static/docs/")[0].headers[b"content-type"].startswith(b"text/html")
