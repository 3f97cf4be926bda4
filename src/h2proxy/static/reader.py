"""Reading files without blocking the reactor: where blocking calls run
(L{BlockingIO}: a bounded thread pool in the worker, inline in tests), the open
files they hold (L{OpenFile}, L{OpenFiles}), and the push producer that sends a
byte range of one file to a consumer in chunks (L{FileSender}).

One read is in flight per sender, so a paused consumer costs one chunk of memory
at most, and a file is never closed while a thread may still read it: a stop
during a read closes the file when that read returns.
"""

from __future__ import annotations

import enum
import os
import stat
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

T = TypeVar("T")

#: Bytes read at once: large enough to keep the thread hops rare, small enough
#: that a paused stream holds little.
CHUNK_SIZE = 128 * 1024

#: Threads of a worker's file reading pool: bounds the files read at once.
READ_THREADS = 4


class BlockingIO(Protocol):
    """Runs a blocking call somewhere it cannot stall the reactor."""

    files: "OpenFiles"

    def call(self, function: Callable[..., T], *args: Any) -> "defer.Deferred[T]": ...


class Writer(Protocol):
    """Where a L{FileSender} puts what it read (the stream, through a counter)."""

    def write(self, data: bytes) -> None: ...


class FileShrank(Exception):
    """The file ended before the bytes announced in Content-Length were read (it was
    truncated while being sent): the stream is reset rather than cut short."""


class OpenFile:
    """An open file descriptor and what fstat said of it when opened. Closing is
    idempotent and takes the file out of its L{OpenFiles}."""

    def __init__(self, fd: int, size: int, mtime: float, owner: "OpenFiles") -> None:
        self.fd = fd
        self.size = size
        self.mtime = mtime
        self._owner = owner

    @property
    def closed(self) -> bool:
        return self.fd < 0

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            self._owner.discard(self)
            os.close(fd)


class OpenFiles:
    """The files a worker has open for static responses, so that stopping the worker
    closes whatever a response still held."""

    def __init__(self) -> None:
        self._files: set[OpenFile] = set()

    def __len__(self) -> int:
        return len(self._files)

    def open(self, path: bytes) -> OpenFile:
        """Open C{path} for reading (blocking); C{OSError} when it cannot be, or is
        not a regular file any more. Non-blocking, so that a FIFO put in the file's
        place after the lookup is refused at once rather than waiting for a writer
        (reads of a regular file ignore the flag)."""
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            status = os.fstat(fd)
            if not stat.S_ISREG(status.st_mode):
                raise IsADirectoryError(f"not a regular file: {os.fsdecode(path)}")
        except BaseException:
            os.close(fd)
            raise
        opened = OpenFile(fd, status.st_size, status.st_mtime, self)
        self._files.add(opened)
        return opened

    def discard(self, opened: OpenFile) -> None:
        self._files.discard(opened)

    def closeAll(self) -> None:
        """Close every file still open (no read may be in flight: stop the pool first)."""
        for opened in list(self._files):
            opened.close()


class InlineIO:
    """Runs blocking calls at once, in the caller's thread: for tests."""

    def __init__(self) -> None:
        self.files = OpenFiles()

    def call(self, function: Callable[..., T], *args: Any) -> "defer.Deferred[T]":
        return defer.maybeDeferred(function, *args)


class ThreadedIO:
    """Runs blocking calls on a worker-owned pool of L{READ_THREADS} threads, started
    on first use; L{stop} joins the threads, then closes the files left open."""

    def __init__(self, reactor: Any, threads: int = READ_THREADS) -> None:
        self.files = OpenFiles()
        self._reactor = reactor
        self._pool = ThreadPool(minthreads=0, maxthreads=threads, name="h2proxy-static")

    def call(self, function: Callable[..., T], *args: Any) -> "defer.Deferred[T]":
        if not self._pool.started:
            self._pool.start()
        return deferToThreadPool(self._reactor, self._pool, function, *args)

    def stop(self) -> None:
        self._pool.stop()
        self.files.closeAll()


class SenderState(enum.Enum):
    """A L{FileSender}'s life: sending, held back by its consumer, or over (all sent,
    failed, or stopped); once over, its file is closed or closes when the read in
    flight returns."""

    RUNNING = "running"
    PAUSED = "paused"
    OVER = "over"


class FileSender:
    """A push producer of C{length} bytes of an open file from C{offset}, in chunks
    read through a L{BlockingIO}. It owns the file and closes it on every ending.

    @param ended: called once when every byte went to the consumer.
    @param failed: called once with the reason when the file could not be read
        whole (L{FileShrank}, an C{OSError}).
    """

    def __init__(
        self,
        *,
        io: BlockingIO,
        opened: OpenFile,
        offset: int,
        length: int,
        consumer: Writer,
        ended: Callable[[], None],
        failed: Callable[[Failure], None],
        chunkSize: int = CHUNK_SIZE,
    ) -> None:
        self.state = SenderState.RUNNING
        self._io = io
        self._file = opened
        self._offset = offset
        self._remaining = length
        self._consumer = consumer
        self._ended = ended
        self._failed = failed
        self._chunkSize = chunkSize
        self._reading: defer.Deferred[bytes] | None = None
        self._pumping = False

    def start(self) -> None:
        self._pump()

    def pauseProducing(self) -> None:
        if self.state is SenderState.RUNNING:
            self.state = SenderState.PAUSED

    def resumeProducing(self) -> None:
        if self.state is SenderState.PAUSED:
            self.state = SenderState.RUNNING
            self._pump()

    def stopProducing(self) -> None:
        """The consumer is gone: no more reads; the file closes now, or when the read
        in flight returns."""
        self._over()

    def _pump(self) -> None:
        """Read the next chunk unless one is in flight; a loop rather than recursion,
        since an inline reader answers at once."""
        if self._pumping:
            return
        self._pumping = True
        try:
            while self.state is SenderState.RUNNING and self._reading is None:
                if self._remaining == 0:
                    self._over()
                    self._ended()
                    return
                reading = self._io.call(os.pread, self._file.fd, min(self._chunkSize, self._remaining), self._offset)
                self._reading = reading
                reading.addCallbacks(self._read, self._readFailed)
        finally:
            self._pumping = False

    def _read(self, data: bytes) -> None:
        self._reading = None
        if self.state is SenderState.OVER:
            self._file.close()
            return
        if not data:
            self._fail(Failure(FileShrank(f"the file ended {self._remaining} bytes early: it shrank while being sent")))
            return
        data = data[: self._remaining]
        self._offset += len(data)
        self._remaining -= len(data)
        self._consumer.write(data)
        self._pump()

    def _readFailed(self, reason: Failure) -> None:
        self._reading = None
        if self.state is SenderState.OVER:
            self._file.close()
            return
        self._fail(reason)

    def _fail(self, reason: Failure) -> None:
        self._over()
        self._failed(reason)

    def _over(self) -> None:
        self.state = SenderState.OVER
        if self._reading is None:
            self._file.close()
