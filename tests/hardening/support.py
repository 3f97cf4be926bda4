"""Helpers of the in-memory hardening tests: a server with chosen limits, frames as a
hostile client writes them, and what the server answered, decoded."""

from __future__ import annotations

import dataclasses
from typing import Any

from h2.errors import ErrorCodes
from hyperframe.frame import GoAwayFrame, RstStreamFrame

from h2proxy.config.model import Http2Config
from tests.frontend.frames import FrameFactory, ResponseDecoder, requestHeaders
from tests.frontend.support import RecordingHandler, Server

E = ErrorCodes


def settings(**changes: Any) -> Http2Config:
    """Http2Config with C{changes} over the defaults."""
    return dataclasses.replace(Http2Config(), **changes)


class Attacker:
    """A server on fake transport and clock, and a client that writes raw frames."""

    def __init__(self, handlerClass=RecordingHandler, **serverKw: Any) -> None:
        self.server = Server(handlerClass=handlerClass, **serverKw)
        self.frames = FrameFactory()
        self.decoder = ResponseDecoder()
        self.server.handshake(self.frames)
        self.nextStream = 1

    @property
    def connection(self):
        return self.server.connection

    def streamID(self) -> int:
        streamID = self.nextStream
        self.nextStream += 2
        return streamID

    def request(self, path: bytes = b"/", end: bool = True, extra=()) -> bytes:
        """The HEADERS frame of a new request, as bytes (not sent)."""
        flags = ["END_HEADERS", "END_STREAM"] if end else ["END_HEADERS"]
        return self.frames.headers(self.streamID(), requestHeaders(path, extra=extra), flags=flags).serialize()

    def block(self, streamID: int, block: bytes, end: bool = True, size: int = 16384) -> bytes:
        """A header block as HEADERS and CONTINUATION frames of at most C{size} bytes."""
        pieces = [block[i : i + size] for i in range(0, len(block), size)] or [b""]
        frames = []
        for index, piece in enumerate(pieces):
            last = ["END_HEADERS"] if index == len(pieces) - 1 else []
            if index == 0:
                frames.append(self.frames.headers(streamID, block=piece, flags=last + (["END_STREAM"] if end else [])))
            else:
                frames.append(self.frames.continuation(streamID, piece, flags=last))
        return b"".join(frame.serialize() for frame in frames)

    def statuses(self, frames) -> dict[int, int]:
        """Stream -> status of the response heads among C{frames}."""
        return {streamID: int(dict(fields)[b":status"]) for streamID, fields, _ in self.decoder.feed(frames)}

    def feed(self, *chunks: bytes) -> list:
        """Write C{chunks} in one read; return the frames the server answered."""
        self.server.feed(b"".join(chunks))
        self.server.clock.advance(0)
        return self.server.frames()


def goaways(frames) -> list[tuple[int, int]]:
    return [(f.error_code, f.last_stream_id) for f in frames if isinstance(f, GoAwayFrame)]


def resets(frames) -> list[tuple[int, int]]:
    return [(f.stream_id, f.error_code) for f in frames if isinstance(f, RstStreamFrame)]


def calmedDown(attacker: Attacker, frames) -> bool:
    """The server said GOAWAY ENHANCE_YOUR_CALM and is closing the connection."""
    return [code for code, _ in goaways(frames)] == [E.ENHANCE_YOUR_CALM] and attacker.server.transport.disconnecting
