"""A bounded HTTP/2 load client that behaves like a browser across a graceful GOAWAY.

h2load counts every request it had not sent yet as failed when a GOAWAY arrives;
browsers instead stop opening streams on that connection, let the streams the
server accepted (id <= the GOAWAY's last stream id) finish, and send the others
again on a new connection (RFC 9113 section 6.8). This client does the same, so a
reload test can demand zero failures.

Each of C{connections} threads keeps up to C{concurrency} GETs in flight on its
own connection. Everything is bounded: the number of threads and streams, every
read (a deadline per response), and the whole run (C{stop} or C{max_requests}).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import h2.connection
import h2.errors
import h2.events

from tests.e2e.h2client import H2Client

#: A response not finished within this many seconds is a failure.
RESPONSE_DEADLINE = 30.0
#: How many times a request that was not processed (above a GOAWAY's last id) is sent again.
MAX_REISSUES = 5


@dataclass
class LoadResults:
    """What the load saw, added up over every connection.

    @ivar completed: responses read to their end with the expected status and size.
    @ivar failures: one line per request that failed (status, size, reset, lost).
    @ivar resets: RST_STREAM frames received, by error code name.
    @ivar goaways: GOAWAY frames received.
    @ivar reissued: requests sent again because the server had not processed them.
    @ivar connections: connections opened.
    """

    completed: int = 0
    failures: list[str] = field(default_factory=list)
    resets: dict[str, int] = field(default_factory=dict)
    goaways: int = 0
    reissued: int = 0
    connections: int = 0

    def summary(self) -> str:
        return (f"{self.completed} completed, {len(self.failures)} failed, resets {self.resets}, "
                f"{self.goaways} GOAWAY, {self.reissued} reissued, {self.connections} connections")


class _Stream:
    __slots__ = ("path", "status", "size", "started", "tries")

    def __init__(self, path: str, tries: int = 0) -> None:
        self.path = path
        self.status: int | None = None
        self.size = 0
        self.started = time.monotonic()
        self.tries = tries


class LoadClient:
    """Keeps a daemon busy with small GETs until stopped.

    @param port: the listener's port.
    @param tls: whether the listener speaks TLS.
    @param path: what every request asks for.
    @param expect_size: the body size every response must have.
    """

    def __init__(self, port: int, tls: bool, path: str, expect_size: int, connections: int = 4,
                 concurrency: int = 4, max_requests: int = 1_000_000) -> None:
        self.port = port
        self.tls = tls
        self.path = path
        self.expect_size = expect_size
        self.concurrency = concurrency
        self.max_requests = max_requests
        self.results = LoadResults()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._issued = 0
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(connections)]

    def start(self) -> "LoadClient":
        for thread in self._threads:
            thread.start()
        return self

    def completed(self) -> int:
        with self._lock:
            return self.results.completed

    def stop(self, timeout: float = 60.0) -> LoadResults:
        """Stop issuing, let every in-flight request finish, and return the results."""
        self._stopping.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(thread.is_alive() for thread in self._threads):
            self._fail("load threads did not finish in time")
        return self.results

    # One thread: a sequence of connections.

    def _run(self) -> None:
        backlog: list[_Stream] = []
        while not self._stopping.is_set() or backlog:
            try:
                backlog = self._connection(backlog)
            except OSError as problem:
                self._fail(f"connection error: {problem!r}")
                return

    def _connection(self, backlog: list[_Stream]) -> list[_Stream]:
        """Serve requests on one new connection until it is told to go away or the load
        stops; return the requests to send again on the next connection."""
        client = H2Client(self.port, tls=self.tls, window=16 * 1024 * 1024)
        with self._lock:
            self.results.connections += 1
        streams: dict[int, _Stream] = {}
        goaway_last: int | None = None
        try:
            while True:
                if goaway_last is None:
                    self._fill(client, streams, backlog)
                if not streams:
                    return backlog
                self._expire(streams)
                if client.closed:
                    for sid, stream in streams.items():
                        if goaway_last is not None and sid > goaway_last:
                            backlog.append(self._again(stream))
                        else:
                            self._fail(f"{stream.path}: connection closed before the response")
                    return backlog
                for event in client.receive(0.5):
                    goaway_last = self._handle(client, event, streams, goaway_last, backlog)
        finally:
            client.close()

    def _fill(self, client: H2Client, streams: dict[int, _Stream], backlog: list[_Stream]) -> None:
        while len(streams) < self.concurrency:
            if backlog:
                stream = backlog.pop()
            elif self._stopping.is_set() or not self._take():
                return
            else:
                stream = _Stream(self.path)
            streams[client.request("GET", stream.path)] = stream

    def _take(self) -> bool:
        with self._lock:
            if self._issued >= self.max_requests:
                return False
            self._issued += 1
            return True

    def _again(self, stream: _Stream) -> _Stream:
        with self._lock:
            self.results.reissued += 1
        if stream.tries >= MAX_REISSUES:
            self._fail(f"{stream.path}: not processed after {MAX_REISSUES} tries")
        return _Stream(stream.path, stream.tries + 1)

    def _handle(self, client, event, streams, goaway_last, backlog):
        """Account for one h2 event; returns the GOAWAY last stream id seen so far."""
        if isinstance(event, h2.events.ConnectionTerminated):
            with self._lock:
                self.results.goaways += 1
            if event.error_code != h2.errors.ErrorCodes.NO_ERROR:
                self._fail(f"GOAWAY with {event.error_code!r}")
            last = event.last_stream_id
            for sid in [sid for sid in streams if sid > last]:
                backlog.append(self._again(streams.pop(sid)))
            return last if goaway_last is None else min(goaway_last, last)
        sid = getattr(event, "stream_id", None)
        stream = streams.get(sid)
        if stream is None:
            return goaway_last
        if isinstance(event, h2.events.ResponseReceived):
            stream.status = int(dict(event.headers)[b":status"])
        elif isinstance(event, h2.events.DataReceived):
            stream.size += len(event.data)
            client.conn.acknowledge_received_data(event.flow_controlled_length, sid)
            client.flush()
        elif isinstance(event, h2.events.StreamEnded):
            del streams[sid]
            if stream.status == 200 and stream.size == self.expect_size:
                with self._lock:
                    self.results.completed += 1
            else:
                self._fail(f"{stream.path}: status {stream.status}, {stream.size} bytes")
        elif isinstance(event, h2.events.StreamReset):
            del streams[sid]
            name = getattr(event.error_code, "name", str(event.error_code))
            with self._lock:
                self.results.resets[name] = self.results.resets.get(name, 0) + 1
            self._fail(f"{stream.path}: stream reset with {name}")
        return goaway_last

    def _expire(self, streams: dict[int, _Stream]) -> None:
        now = time.monotonic()
        for sid in [sid for sid, s in streams.items() if now - s.started > RESPONSE_DEADLINE]:
            self._fail(f"{streams.pop(sid).path}: no complete response in {RESPONSE_DEADLINE}s")

    def _fail(self, why: str) -> None:
        with self._lock:
            self.results.failures.append(why)
