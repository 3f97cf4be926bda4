"""Request bodies read whole before they are forwarded (a route's ``request_body: buffer``).

Many WSGI servers cannot read a chunked request body, and an HTTP/2 client need not
say how long its body is. For such routes the bridge reads the whole body first,
then asks the backend with a Content-Length. Memory stays bounded: the first
L{BUFFER_IN_MEMORY} bytes are kept in memory, the rest goes to an anonymous
temporary file (C{tempfile.TemporaryFile}: unlinked at once, so nothing is left on
disk even if the process dies). The stream is never paused while buffering, so its
window credit keeps flowing and the client is only held back by the body limit.

L{BodyBuffer} holds the body; L{BufferedBodySender} is the push producer that
feeds it to the upstream exchange as the backend socket takes it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from typing import IO

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from h2proxy.errors import H2ProxyError
from h2proxy.upstream.interfaces import Exchange

#: Request-body bytes one buffering request keeps in memory; beyond, a temporary file.
BUFFER_IN_MEMORY = 64 * 1024

#: Bytes read from the buffer per write to the backend (the backend transport pauses
#: the sender once its own buffer is full, so this only sets the read size).
SEND_CHUNK = 64 * 1024


class BodyTooLarge(H2ProxyError):
    """The body grew past the buffering limit (answered with 413)."""


class BodyBuffer:
    """One request body, in memory up to C{memoryLimit}, then in a temporary file.

    Written while the body arrives, then read once from the start. L{close} releases
    the file; it is safe to call at any time and more than once.

    @ivar size: bytes written so far.
    """

    def __init__(
        self,
        *,
        limit: int,
        memoryLimit: int = BUFFER_IN_MEMORY,
        openFile: Callable[[], IO[bytes]] = tempfile.TemporaryFile,
    ) -> None:
        self.size = 0
        self._limit = limit
        self._memoryLimit = memoryLimit
        self._openFile = openFile
        self._memory = bytearray()
        self._file: IO[bytes] | None = None
        self._readOffset = 0
        self._closed = False

    @property
    def spilled(self) -> bool:
        """The body outgrew memory and lives in a temporary file."""
        return self._file is not None

    def write(self, data: bytes) -> None:
        """Add body bytes.

        @raise BodyTooLarge: the body is now over the limit (nothing more is kept).
        @raise OSError: the temporary file could not be created or written.
        """
        self.size += len(data)
        if self.size > self._limit:
            raise BodyTooLarge(f"request body over the {self._limit}-byte buffering limit")
        if self._file is None and len(self._memory) + len(data) <= self._memoryLimit:
            self._memory += data
            return
        if self._file is None:
            self._file = self._openFile()
            self._file.write(self._memory)
            self._memory = bytearray()
        self._file.write(data)

    def rewind(self) -> None:
        """The body is complete: reading starts from its beginning."""
        if self._file is not None:
            self._file.seek(0)

    def read(self, size: int) -> bytes:
        """The next C{size} bytes of the body (fewer at its end, C{b""} after it)."""
        if self._closed:
            return b""
        if self._file is not None:
            return self._file.read(size)
        start = self._readOffset
        self._readOffset = start + size
        return bytes(self._memory[start : start + size])

    def close(self) -> None:
        """Release the memory and the temporary file."""
        self._closed = True
        self._memory = bytearray()
        file, self._file = self._file, None
        if file is not None:
            file.close()


@implementer(IPushProducer)
class BufferedBodySender:
    """Feeds a complete L{BodyBuffer} to the exchange as a push producer.

    Registered with the exchange, which keeps it paused until the backend connection
    is ready and pauses it whenever the backend socket is full; while resumed it
    writes chunks. At the end of the body it finishes the request and closes the
    buffer. A read error is reported to C{onError} (the bridge fails the request).
    After L{stopProducing} (or the end) every call is a no-op, including the
    C{resumeProducing} an exchange makes after an early response.
    """

    def __init__(self, buffer: BodyBuffer, exchange: Exchange, onError: Callable[[OSError], None]) -> None:
        self._buffer = buffer
        self._exchange = exchange
        self._onError = onError
        self._paused = False
        self._sending = False
        self._done = False

    def start(self) -> None:
        """Register with the exchange and send at once if it is ready."""
        self._buffer.rewind()
        self._exchange.registerProducer(self, True)
        if not self._paused:
            self.resumeProducing()

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        if self._sending or self._done:
            return
        self._sending = True
        try:
            self._send()
        finally:
            self._sending = False

    def stopProducing(self) -> None:
        self._done = True
        self._buffer.close()

    def _send(self) -> None:
        while not self._paused and not self._done:
            try:
                chunk = self._buffer.read(SEND_CHUNK)
            except OSError as error:
                self.stopProducing()
                self._onError(error)
                return
            if not chunk:
                self._done = True
                self._buffer.close()
                self._exchange.unregisterProducer()
                self._exchange.finishRequest(())
                return
            self._exchange.write(chunk)
