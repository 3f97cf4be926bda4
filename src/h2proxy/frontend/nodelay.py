"""Nagle's algorithm off on client sockets (TCP_NODELAY), as nginx does.

Both front ends already batch their writes (the HTTP/2 send loop writes once per
pass, the HTTP/1.1 writer once per turn), so the kernel holding a small segment back
only adds delay: with Nagle, a small write after one the client has not acknowledged
yet (a response head after a WINDOW_UPDATE, the end of a streamed body) waited for
the client's delayed ACK, up to 40 ms, while a client waiting for that very response
sends nothing that would carry the ACK. Measured on uploads: the worker sat idle
350-411 ms of every 2.1-2.6 s run.
"""

from __future__ import annotations


def disableNagle(transport: object) -> None:
    """Set TCP_NODELAY on the TCP socket under C{transport} (TLS and PROXY protocol
    wrappers pass the call down). Transports without the option (tests', UNIX
    sockets') are left alone, and a socket already gone is ignored: connectionLost
    follows."""
    setTcpNoDelay = getattr(transport, "setTcpNoDelay", None)
    if setTcpNoDelay is None:
        return
    try:
        setTcpNoDelay(True)
    except OSError:
        return
