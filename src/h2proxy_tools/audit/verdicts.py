"""How an attack's outcome is judged: what the connection saw when it ended, whether
the server stopped the abuse, and whether a normal request is still served."""

from __future__ import annotations

import select
import socket
import time

from h2proxy_tools.audit.client import (
    BATCH_BYTES,
    ENHANCE_YOUR_CALM,
    ERROR_NAMES,
    HEALTH_TIMEOUT,
    Outcome,
    RawConnection,
    Target,
    connect,
)


def settled(target: Target) -> RawConnection:
    """A connection whose server SETTINGS are read and acknowledged, so that no
    ACK of ours can land inside a header block the attack leaves open."""
    connection = connect(target)
    connection.waitFor(lambda: connection.serverSettings, target.timeout)
    return connection


#: How long a flood waits for the server's verdict (GOAWAY or close) once it has written
#: everything: a busy server may still be working through what it read.
VERDICT_WAIT = 5.0


def ended(outcome: Outcome, connection: RawConnection, started: float, awaitEnd: float = 0.0) -> Outcome:
    """Copy what the connection saw into the outcome. With C{awaitEnd}, first read for
    up to that many seconds until the server sends GOAWAY or closes (a flood's verdict
    may come several reads after the last frame was written)."""
    if awaitEnd:
        connection.waitFor(lambda: connection.goaway is not None or connection.closed, awaitEnd)
    connection.poll(0.2)
    outcome.goaway = connection.goaway.error_code if connection.goaway is not None else None
    outcome.closed = connection.closed
    outcome.statuses = dict(connection.statuses)
    outcome.resets = dict(connection.resets)
    outcome.elapsed = time.monotonic() - started
    connection.close()
    return outcome


def describeEnd(outcome: Outcome) -> str:
    if outcome.goaway is not None:
        return f"GOAWAY {ERROR_NAMES.get(outcome.goaway, hex(outcome.goaway))}"
    if outcome.closed:
        return "connection closed"
    return "connection still open"


def stoppedByServer(outcome: Outcome, unit: str, count: int, expectCalm: bool = True) -> Outcome:
    """The usual verdict of a flood: the server ended the connection (with GOAWAY
    ENHANCE_YOUR_CALM when C{expectCalm} and it sent a GOAWAY at all)."""
    stopped = outcome.goaway is not None or outcome.closed
    if expectCalm and outcome.goaway is not None:
        stopped = outcome.goaway == ENHANCE_YOUR_CALM
    outcome.passed = stopped
    outcome.observed = f"{describeEnd(outcome)}; {outcome.sent} of {count} {unit} written"
    return outcome


def streamVerdict(outcome: Outcome, streamID: int) -> str:
    if streamID in outcome.statuses:
        return f"status {outcome.statuses[streamID]}"
    if streamID in outcome.resets:
        return f"stream reset with {ERROR_NAMES.get(outcome.resets[streamID], outcome.resets[streamID])}"
    return describeEnd(outcome)


def floodWithoutReading(connection: RawConnection, piece: bytes, count: int) -> int:
    """Write C{count} copies of C{piece} and never read; stop when the server drops us."""
    batch = piece * max(1, BATCH_BYTES // len(piece))
    per = len(batch) // len(piece)
    sent = 0
    while sent < count:
        if not connection.send(batch):
            break
        sent += per
    return min(sent, count)


#: Linux TCP_INFO's first byte: the connection's state; 1 is ESTABLISHED.
_TCP_ESTABLISHED = 1


def peerGone(connection: RawConnection) -> bool:
    """Whether the server closed or reset the connection, found without reading a
    byte (the kernel's TCP state: anything but ESTABLISHED means the server is
    gone). Where TCP_INFO is missing, whether a read finds the end."""
    tcpInfo = getattr(socket, "TCP_INFO", None)
    if tcpInfo is not None:
        try:
            return connection.sock.getsockopt(socket.IPPROTO_TCP, tcpInfo, 8)[0] != _TCP_ESTABLISHED
        except OSError:
            return True
    connection.poll(0)
    return connection.closed


def waitClosed(sock: socket.socket, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        readable, _, _ = select.select([sock], [], [], min(0.5, max(0.0, deadline - time.monotonic())))
        if readable:
            try:
                if not sock.recv(65536):
                    return True
            except OSError:
                return True
    return False


def healthCheck(target: Target) -> bool:
    """A normal GET on a new connection is answered (any status below 500) in time."""
    try:
        connection = connect(target)
    except OSError:
        return False
    try:
        streamID = connection.request()
        connection.waitFor(lambda: streamID in connection.ended or connection.finished(streamID), HEALTH_TIMEOUT)
        status = connection.statuses.get(streamID)
        return status is not None and status < 500 and streamID in connection.ended
    finally:
        connection.close()
