# -*- test-case-name: tests.upstream.test_transport -*-
"""Backend TCP transports that write at once when nothing is queued.

Twisted's C{FileDescriptor.write} only queues: it registers for writability (an
``epoll_ctl``), the reactor's next turn calls C{doWrite}, which sends and, the
buffer empty, unregisters (another ``epoll_ctl``), each event wrapped in the
reactor's logging context. For a small request head on an idle keep-alive
connection that is three system calls and a reactor dispatch where one ``send``
does. L{ImmediateWriteMixin} sends right away when the transport has nothing
queued and no producer registered, and hands whatever the kernel did not take to
the ordinary queued path, so Twisted's semantics are kept:

  - partial writes: the rest is queued and written by C{doWrite} as before;
  - errors: a failed C{send} (would block, reset, broken pipe) queues the bytes
    unsent; C{doWrite} meets the same condition and reports the lost connection
    through C{connectionLost} as it always did; C{write} itself never raises;
  - producers (a request body being streamed): a write is sent at once only when
    nothing is queued; what the kernel does not take is queued, and the producer is
    paused when the queue passes C{bufferSize} and resumed when it drains, exactly
    as before. (Queuing every body write instead cost an ``epoll_ctl`` pair per
    reactor turn: 5,530 against 1,086 per 256 MiB uploaded.);
  - no reentrancy: the fast path calls neither the protocol nor a producer.

Twisted gives no hook to choose the transport class of C{connectTCP} short of
re-implementing its endpoints (C{HostnameEndpoint}'s happy eyeballs included), so
the connection protocol converts its own transport once connected
(L{writeImmediately}): the class of a plain C{tcp.Client} is switched to
L{ImmediateWriteClient}, a subclass that adds nothing but this C{write}. Any other
transport (a test's, a UNIX socket's) is left alone.
"""

from __future__ import annotations

from twisted.internet import tcp


class ImmediateWriteMixin:
    """C{write} that sends at once when nothing is queued; for C{tcp.Connection}
    subclasses (it uses their C{socket}, C{dataBuffer} and C{_tempDataBuffer})."""

    def write(self, data: bytes) -> None:
        if (
            not self.dataBuffer  # type: ignore[attr-defined]
            and not self._tempDataBuffer  # type: ignore[attr-defined]
            and type(data) is bytes
            and data
            and self.connected  # type: ignore[attr-defined]
            and not self.disconnecting  # type: ignore[attr-defined]
            and not self._writeDisconnecting  # type: ignore[attr-defined]
        ):
            try:
                sent = self.socket.send(data)  # type: ignore[attr-defined]
            except OSError:
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
        super().write(data)  # type: ignore[misc]


class ImmediateWriteClient(ImmediateWriteMixin, tcp.Client):
    """A TCP client transport with L{ImmediateWriteMixin}'s C{write}."""


def writeImmediately(transport: object) -> bool:
    """Give a plain C{tcp.Client} the immediate write (see the module docstring);
    whether it was one."""
    if type(transport) is tcp.Client:
        transport.__class__ = ImmediateWriteClient
        return True
    return False
