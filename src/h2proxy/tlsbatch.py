"""Twisted's TLS protocol with fewer Python calls per byte on bulk transfers.

C{TLSMemoryBIOProtocol} hands OpenSSL at most 16 KiB per C{SSL_write}, then reads
the send BIO (at most 32 KiB) and writes the result to the transport: five Python
calls and a copy per TLS record, whatever the size of the write. On the way in it
delivers each record's plaintext to the protocol in a separate C{dataReceived}. On
a download through the proxy that was a third of the worker's CPU time.

L{BatchingTLSProtocol} changes only the batching, not what goes on the wire:
OpenSSL cuts a larger C{SSL_write} into the same 16 KiB records itself, the send
BIO is drained with one read per write, and the plaintext of one socket read goes
to the protocol in one call. Error handling is Twisted's, in the same order.
"""

from __future__ import annotations

from OpenSSL.SSL import Error, WantReadError, ZeroReturnError
from twisted.protocols.policies import ProtocolWrapper
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure

#: Plaintext bytes given to OpenSSL per C{SSL_write} (it makes 16 KiB records of them).
TLS_WRITE_CHUNK = 256 * 1024

#: Bytes read from the send BIO per read: one write's records and their overhead
#: (about 30 bytes per record) fit, so one read drains it.
TLS_BIO_READ = TLS_WRITE_CHUNK + 64 * 1024

#: Plaintext bytes asked of OpenSSL per C{SSL_read} (one record is at most 16 KiB).
TLS_READ = 2**15

#: Plaintext delivered to the protocol per C{dataReceived}, at most: a socket read
#: (64 KiB) decrypts to less, so this only bounds a pathological BIO.
TLS_DELIVER_LIMIT = 256 * 1024


class BatchingTLSProtocol(TLSMemoryBIOProtocol):
    """C{TLSMemoryBIOProtocol} with batched record writes and reads (see the module)."""

    def _write(self, data: bytes) -> None:
        """Twisted's C{_write}, with L{TLS_WRITE_CHUNK} bytes per C{SSL_write} and
        the send BIO flushed once at the end."""
        if self._lostTLSConnection:
            return
        view = memoryview(data)
        sent = 0
        total = len(view)
        while sent < total:
            try:
                sent += self._tlsConnection.send(view[sent : sent + TLS_WRITE_CHUNK])
            except WantReadError:
                self._flushSendBIO()
                self._bufferedWrite(bytes(view[sent:]))
                return
            except Error:
                failure = Failure()
                self._flushSendBIO()
                self._tlsShutdownFinished(failure)
                return
        self._flushSendBIO()

    def _flushSendBIO(self) -> None:
        """Write everything in the send BIO to the transport, in as few reads as it takes."""
        while True:
            try:
                data = self._tlsConnection.bio_read(TLS_BIO_READ)
            except WantReadError:
                return
            self.transport.write(data)
            if len(data) < TLS_BIO_READ:
                return

    def _flushReceiveBIO(self) -> None:
        """Twisted's C{_flushReceiveBIO}, delivering the plaintext of all the records
        available in one C{dataReceived} (at most L{TLS_DELIVER_LIMIT} bytes each)."""
        pending: list[bytes] = []
        size = 0
        while not self._lostTLSConnection:
            try:
                data = self._tlsConnection.recv(TLS_READ)
            except WantReadError:
                break
            except ZeroReturnError:
                self._deliver(pending)
                pending, size = [], 0
                self._shutdownTLS()
                self._tlsShutdownFinished(None)
            except Error:
                failure = Failure()
                self._deliver(pending)
                pending, size = [], 0
                self._tlsShutdownFinished(failure)
            else:
                pending.append(data)
                size += len(data)
                if size >= TLS_DELIVER_LIMIT:
                    self._deliver(pending)
                    pending, size = [], 0
        self._deliver(pending)
        self._flushSendBIO()

    def _deliver(self, pending: list[bytes]) -> None:
        if pending and not self._aborted:
            ProtocolWrapper.dataReceived(self, pending[0] if len(pending) == 1 else b"".join(pending))
