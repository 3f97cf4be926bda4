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

On the way in, pyOpenSSL's C{recv} costs a buffer allocation, a copy into a new
bytes object and several Python calls per 16 KiB record, and joining the records
of one read copies them again. Where pyOpenSSL's internals allow it, records are
decrypted straight into one process-wide buffer (L{_PlaintextBuffer}) and copied
out once per delivery: on an upload that was about a fifth of the TLS receive
cost. Otherwise the public C{recv} is used.

On the way out, pyOpenSSL's C{bio_read} allocates a buffer and copies the records
into a new bytes object, which Twisted's TCP transport queues and sends on the
reactor's next turn (at most 128 KiB per C{send}). Where pyOpenSSL's internals
allow it, the send BIO is read into one process-wide buffer (L{_CiphertextBuffer})
and, when the TCP transport holds nothing unsent, handed to the socket straight
from there: only what the kernel does not take is copied and queued, behind which
Twisted's ordering, backpressure and error handling work as before.

Closing is changed too (L{BatchingTLSProtocol.loseConnection},
L{BatchingTLSProtocol.loseWriteConnection}): Twisted sends close_notify and then
keeps the TCP connection open until the peer answers with its own, so a client that
never answers (or a protocol still registered as producer) held every close the
proxy decided on until the abort timer reset it. Here the TCP connection is closed
as soon as our close_notify is flushed, as on cleartext: TLS does not require the
side that closes to wait for the answer (RFC 8446 6.1, RFC 5246 7.2.1). And
nothing touches OpenSSL once the connection is lost: Twisted drops its
C{SSL.Connection} in C{connectionLost}, which can run inside a read (the peer's
close_notify arriving after our TCP half-close), before the send BIO is flushed.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from OpenSSL.SSL import Connection, Error, WantReadError, ZeroReturnError
from twisted.internet import tcp
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

#: Bytes asked of the client's TCP socket per read (Twisted's default is 64 KiB): an
#: upload then arrives in half the reads, and each read's fixed costs (TLS and
#: HTTP/2 passes, one write to the backend) are paid half as often. It is also the
#: TCP transport's write buffer above which the protocol is paused. Not larger: with
#: 256 KiB, the buffers each read allocates and frees made glibc move the heap's
#: top (a brk pair per read) and the page faults cost more than the calls saved.
CLIENT_READ_SIZE = 128 * 1024

#: Plaintext delivered to the protocol per C{dataReceived}, at most: a socket read
#: (L{CLIENT_READ_SIZE}) decrypts to less, so this only bounds a pathological BIO.
TLS_DELIVER_LIMIT = 256 * 1024


class _PlaintextBuffer:
    """One buffer that C{SSL_read} decrypts into, shared by every connection of the
    process: the reactor is single-threaded, and the buffer never holds bytes while
    application code runs (they are copied out before each delivery), so a nested
    read cannot overwrite anything. Uses pyOpenSSL's private C{_ssl},
    C{_raise_ssl_error} and its cffi bindings; L{available} is C{False} (and the
    public C{recv} is used) when a pyOpenSSL release no longer has them."""

    def __init__(self, size: int) -> None:
        self.size = size
        try:
            from OpenSSL._util import ffi, lib

            self._read = lib.SSL_read
            self._copy = ffi.buffer
            self._memory = ffi.new("char[]", size)
        except (ImportError, AttributeError):
            self.available = False
            return
        self.available = hasattr(Connection, "_raise_ssl_error")

    def read(self, connection: Any, filled: int) -> int:
        """Decrypt the next record after the C{filled} bytes already held; return
        how many bytes it added, or raise pyOpenSSL's error (C{WantReadError}: no
        complete record left)."""
        ssl = connection._ssl
        result = self._read(ssl, self._memory + filled, self.size - filled)
        if result <= 0:
            connection._raise_ssl_error(ssl, result)
        return result

    def take(self, filled: int) -> bytes:
        """The first C{filled} bytes, copied out."""
        return self._copy(self._memory, filled)[:]


_PLAINTEXT = _PlaintextBuffer(TLS_DELIVER_LIMIT)


class _CiphertextBuffer:
    """One buffer the send BIO is read into, shared by every connection of the
    process: the reactor is single-threaded and the buffer holds bytes only within
    one L{flush}, which calls no application code. Uses pyOpenSSL's private
    C{_from_ssl} and its cffi bindings, and Twisted's private C{_tempDataLen} and
    C{_writeDisconnected} of the TCP transport (to know that it holds no unsent
    bytes), each named by a canary in tests/test_private_names.py; L{available} is
    C{False} (and C{bio_read} with C{transport.write} is used) when a pyOpenSSL
    release no longer has its cffi bindings."""

    def __init__(self, size: int) -> None:
        self.size = size
        try:
            from OpenSSL._util import ffi, lib

            self._read = lib.BIO_read
            self._memory = ffi.new("char[]", size)
        except (ImportError, AttributeError):
            self.available = False
            return
        self._bytes = ffi.buffer(self._memory)
        self._view = memoryview(self._bytes)
        self.available = True

    def flush(self, connection: Any, transport: Any) -> None:
        """Move everything in C{connection}'s send BIO to C{transport}: sent from
        the buffer when the transport allows it (L{_sendNow}), the rest copied and
        written."""
        bio = connection._from_ssl
        while True:
            filled = self._read(bio, self._memory, self.size)
            if filled <= 0:
                return
            sent = self._sendNow(transport, filled)
            if sent < filled:
                transport.write(self._bytes[sent:filled])
            if filled < self.size:
                return

    def _sendNow(self, transport: Any, filled: int) -> int:
        """How many of the first C{filled} bytes the socket took at once: none
        unless C{transport} is an open TCP connection holding no unsent bytes (so
        nothing can be reordered), and none on any socket error, which Twisted's
        own write then meets and reports as it always did."""
        if (
            not isinstance(transport, tcp.Connection)
            or not transport.connected
            or transport.disconnecting
            or transport._writeDisconnected
            or transport._tempDataLen
            or len(transport.dataBuffer) != transport.offset
        ):
            return 0
        try:
            return transport.socket.send(self._view[:filled])  # type: ignore[no-any-return]
        except OSError:
            return 0


_CIPHERTEXT = _CiphertextBuffer(TLS_BIO_READ)


class WriteSide(Enum):
    """Where the write side of a TLS connection stands."""

    #: Application data may be written.
    OPEN = "open"
    #: close_notify sent and TCP half-closed: reading goes on (a lingering close).
    CLOSED = "closed"


class BatchingTLSProtocol(TLSMemoryBIOProtocol):
    """C{TLSMemoryBIOProtocol} with batched record writes and reads and a close that
    does not wait for the peer (see the module)."""

    _writeSide = WriteSide.OPEN

    def makeConnection(self, transport: Any) -> None:
        """Twisted's, reading L{CLIENT_READ_SIZE} per read of a TCP transport."""
        if isinstance(transport, tcp.Connection):
            transport.bufferSize = CLIENT_READ_SIZE
        super().makeConnection(transport)

    def handshakeEnded(self) -> None:
        """Called once the TLS handshake has completed; for subclasses (Twisted offers
        no public hook for the handshake's end)."""

    @property
    def tlsFailure(self) -> Failure | None:
        """Why TLS itself stopped the connection (an alert, a protocol error), or
        C{None}: Twisted's own record of it, which it keeps private."""
        return self._reason

    def _checkHandshakeStatus(self) -> None:
        done = self._handshakeDone
        super()._checkHandshakeStatus()
        if self._handshakeDone and not done:
            self.handshakeEnded()

    def loseConnection(self) -> None:
        """Send close_notify and close the TCP connection once it is flushed (see
        L{_shutdownTLS}); after L{loseWriteConnection}, end the lingering close.

        As with Twisted's, the close waits while a producer is registered (it may
        still write): a protocol that registered itself for its whole life must
        unregister before it closes."""
        if self._writeSide is WriteSide.CLOSED:
            self.transport.loseConnection()
            return
        super().loseConnection()

    def loseWriteConnection(self) -> None:
        """Send close_notify, then half-close TCP once it is flushed; what the peer
        still sends is read (and decrypted for the protocol, which may drop it) until
        L{loseConnection}, its close_notify or its FIN. Without a completed handshake,
        with a producer registered or with application bytes OpenSSL could not take
        yet, this is L{loseConnection}, which handles those cases."""
        if self.disconnecting or not self.connected:
            return
        if not self._handshakeDone or self._producer is not None or self._appSendBuffer or self._lostTLSConnection:
            self.loseConnection()
            return
        self.disconnecting = True
        self._writeSide = WriteSide.CLOSED
        self._sendCloseNotify()
        self.transport.loseWriteConnection()

    def _shutdownTLS(self) -> None:
        """Send close_notify, then close TCP once it is flushed, without waiting for
        the peer's close_notify (Twisted's waits for it, or for the abort timer). An
        abort closes TCP itself, at once."""
        if self._tlsConnection is None:
            return
        self._sendCloseNotify()
        if not self._aborted:
            self.transport.loseConnection()

    def _sendCloseNotify(self) -> None:
        """Twisted's C{_shutdownTLS} without its TCP close: C{SSL_shutdown} (once
        both sides sent close_notify it reports success; mid-handshake it fails, and
        there is nothing to send), then the send BIO to the transport."""
        try:
            self._tlsConnection.shutdown()
        except Error:
            pass
        self._flushSendBIO()

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
        """Write everything in the send BIO to the transport, in as few reads as it
        takes (through L{_CIPHERTEXT} where it can be used); nothing once the
        connection is lost (the BIO is gone with it)."""
        if self._tlsConnection is None:
            return
        if _CIPHERTEXT.available:
            _CIPHERTEXT.flush(self._tlsConnection, self.transport)
            return
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
        if _PLAINTEXT.available:
            self._flushIntoBuffer()
        else:
            self._flushByRecv()
        self._flushSendBIO()

    def _flushIntoBuffer(self) -> None:
        """Records decrypted into L{_PLAINTEXT}, delivered when it is full, before
        an error or shutdown is handled, and at the end."""
        connection = self._tlsConnection
        filled = 0
        while not self._lostTLSConnection:
            try:
                filled += _PLAINTEXT.read(connection, filled)
            except WantReadError:
                break
            except ZeroReturnError:
                filled = self._deliverBuffered(filled)
                self._shutdownTLS()
                self._tlsShutdownFinished(None)
            except Error:
                failure = Failure()
                filled = self._deliverBuffered(filled)
                self._tlsShutdownFinished(failure)
            else:
                if filled == TLS_DELIVER_LIMIT:
                    filled = self._deliverBuffered(filled)
        self._deliverBuffered(filled)

    def _deliverBuffered(self, filled: int) -> int:
        """Deliver what L{_PLAINTEXT} holds; return the new fill level (0)."""
        if filled and not self._aborted:
            ProtocolWrapper.dataReceived(self, _PLAINTEXT.take(filled))
        return 0

    def _flushByRecv(self) -> None:
        """The same with pyOpenSSL's public C{recv}: one bytes object per record,
        joined per delivery."""
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

    def _deliver(self, pending: list[bytes]) -> None:
        if pending and not self._aborted:
            ProtocolWrapper.dataReceived(self, pending[0] if len(pending) == 1 else b"".join(pending))
