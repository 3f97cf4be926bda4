"""RFC 9113 (sections 3-8) and RFC 7541 error handling, case by case, in the spirit of
h2spec: each case asserts the exact RST_STREAM or GOAWAY (error code and last stream
id) and, for connection errors, that the connection closes after the GOAWAY."""

from __future__ import annotations

from typing import Callable

import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import DataFrame, GoAwayFrame, PingFrame, RstStreamFrame, SettingsFrame

from h2proxy.config.model import Http2Config
from h2proxy.message import ResponseHead
from tests.frontend.frames import PREFACE, FrameFactory, rawFrame, requestHeaders
from tests.frontend.support import EchoHandler, RecordingHandler, Server

E = ErrorCodes
Build = Callable[[FrameFactory], bytes]


def headers(f: FrameFactory, streamID: int = 1, end: bool = False, endHeaders: bool = True) -> bytes:
    flags = (["END_HEADERS"] if endHeaders else []) + (["END_STREAM"] if end else [])
    return f.headers(streamID, requestHeaders(), flags=flags).serialize()


def session(build: Build, handshake: bool = True, settings: Http2Config | None = None, handlerClass=RecordingHandler):
    server = Server(settings=settings, handlerClass=handlerClass)
    factory = FrameFactory()
    if handshake:
        server.handshake(factory)
    server.feed(build(factory))
    return server, server.frames()


def assertConnectionError(server: Server, frames, code: ErrorCodes, lastStreamID: int = 0) -> None:
    goaways = [f for f in frames if isinstance(f, GoAwayFrame)]
    assert [(g.error_code, g.last_stream_id) for g in goaways] == [(code, lastStreamID)]
    assert frames[-1] is goaways[0]  # nothing after the GOAWAY
    assert server.transport.disconnecting
    server.assertNoLeftovers()


def assertStreamError(server: Server, frames, streamID: int, code: ErrorCodes) -> None:
    resets = [(f.stream_id, f.error_code) for f in frames if isinstance(f, RstStreamFrame)]
    assert resets == [(streamID, code)]
    assert not [f for f in frames if isinstance(f, GoAwayFrame)]
    assert not server.transport.disconnecting
    # The connection still answers: a PING gets its ACK.
    server.feed(FrameFactory().ping(b"stillok!").serialize())
    assert [p.opaque_data for p in server.frames() if isinstance(p, PingFrame)] == [b"stillok!"]


CONNECTION_ERRORS: list[tuple[str, Build, ErrorCodes]] = [
    # 3.4 connection preface
    ("3.4-invalid-preface", lambda f: b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", E.PROTOCOL_ERROR),
    ("3.4-preface-not-followed-by-settings", lambda f: PREFACE + f.ping().serialize(), E.PROTOCOL_ERROR),
    # 4.2 frame size
    ("4.2-data-over-max-frame-size", lambda f: headers(f) + f.data(1, b"x" * 16385).serialize(), E.FRAME_SIZE_ERROR),
    ("4.2-headers-over-max-frame-size", lambda f: f.headers(1, requestHeaders(extra=[(b"x-a", b"~" * 17000)])).serialize(), E.FRAME_SIZE_ERROR),
    # 4.3 / RFC 7541 header compression
    ("4.3-undecodable-field-block", lambda f: f.headers(1, block=b"\xff\xff\xff\xff\xff\xff").serialize(), E.COMPRESSION_ERROR),
    ("7541-2.3.3-index-beyond-the-tables", lambda f: f.headers(1, block=b"\x82\x86\xbf").serialize(), E.COMPRESSION_ERROR),
    ("7541-6.1-index-zero", lambda f: f.headers(1, block=b"\x80").serialize(), E.COMPRESSION_ERROR),
    ("7541-4.2-table-size-update-over-the-limit", lambda f: f.headers(1, block=b"\x3f\xe2\x1f" + f.encode(requestHeaders())).serialize(), E.COMPRESSION_ERROR),
    ("7541-4.2-table-size-update-after-a-field", lambda f: f.headers(1, block=f.encode(requestHeaders()) + b"\x20").serialize(), E.COMPRESSION_ERROR),
    ("7541-5.2-huffman-padding-not-eos", lambda f: f.headers(1, block=b"\x82\x86\x84\x41\x81\x00").serialize(), E.COMPRESSION_ERROR),
    ("7541-5.2-string-longer-than-block", lambda f: f.headers(1, block=b"\x82\x86\x84\x41\x7f\x00abc").serialize(), E.COMPRESSION_ERROR),
    ("7541-6.2-literal-name-index-beyond-the-tables", lambda f: f.headers(1, block=b"\x82\x86\x84\x7f\x0a\x01a").serialize(), E.COMPRESSION_ERROR),
    ("7541-5.2-huffman-padding-over-7-bits", lambda f: f.headers(1, block=b"\x82\x86\x84\x41\x82\x1f\xff").serialize(), E.COMPRESSION_ERROR),
    ("7541-5.2-huffman-eos-symbol", lambda f: f.headers(1, block=b"\x82\x86\x84\x41\x84\xff\xff\xff\xff").serialize(), E.COMPRESSION_ERROR),
    ("4.3-priority-inside-header-block", lambda f: headers(f, endHeaders=False) + f.priority(1).serialize(), E.PROTOCOL_ERROR),
    ("4.3-headers-for-another-stream-inside-header-block", lambda f: headers(f, endHeaders=False) + headers(f, 3), E.PROTOCOL_ERROR),
    ("7541-5.1-integer-overflow", lambda f: f.headers(1, block=b"\x82\xff" + b"\xff" * 10 + b"\x01").serialize(), E.COMPRESSION_ERROR),
    # 5.1 stream states: idle
    ("5.1-idle-data", lambda f: f.data(1, b"x").serialize(), E.PROTOCOL_ERROR),
    ("5.1-idle-rst-stream", lambda f: f.rstStream(1, E.CANCEL).serialize(), E.PROTOCOL_ERROR),
    ("5.1-idle-window-update", lambda f: f.windowUpdate(1, 100).serialize(), E.PROTOCOL_ERROR),
    ("5.1-idle-continuation", lambda f: f.continuation(1, f.encode(requestHeaders())).serialize(), E.PROTOCOL_ERROR),
    # 5.1.1 stream identifiers
    ("5.1.1-even-stream-id", lambda f: headers(f, streamID=2), E.PROTOCOL_ERROR),
    # 5.5 extensions
    ("5.5-unknown-frame-inside-header-block", lambda f: headers(f, endHeaders=False) + rawFrame(0x20, 0, 0, b"x"), E.PROTOCOL_ERROR),
    # 6.1 DATA
    ("6.1-data-on-stream-0", lambda f: rawFrame(0x0, 0, 0, b"x"), E.PROTOCOL_ERROR),
    ("6.1-data-padding-too-long", lambda f: headers(f) + rawFrame(0x0, 0x8, 1, b"\x05ab"), E.PROTOCOL_ERROR),
    # 6.2 HEADERS
    ("6.2-headers-on-stream-0", lambda f: rawFrame(0x1, 0x4, 0, f.encode(requestHeaders())), E.PROTOCOL_ERROR),
    ("6.2-headers-padding-too-long", lambda f: rawFrame(0x1, 0x4 | 0x8, 1, b"\xff" + f.encode(requestHeaders())), E.PROTOCOL_ERROR),
    ("6.2-data-inside-header-block", lambda f: headers(f, endHeaders=False) + f.data(1, b"x").serialize(), E.PROTOCOL_ERROR),
    # 6.3 PRIORITY
    ("6.3-priority-on-stream-0", lambda f: rawFrame(0x2, 0, 0, b"\0\0\0\1\x05"), E.PROTOCOL_ERROR),
    # 6.4 RST_STREAM
    ("6.4-rst-stream-on-stream-0", lambda f: rawFrame(0x3, 0, 0, b"\0\0\0\x08"), E.PROTOCOL_ERROR),
    ("6.4-rst-stream-length-not-4", lambda f: headers(f) + rawFrame(0x3, 0, 1, b"\0\0\x08"), E.FRAME_SIZE_ERROR),
    # 6.5 SETTINGS
    ("6.5-settings-ack-with-payload", lambda f: rawFrame(0x4, 0x1, 0, b"\0\x03\0\0\0\x01"), E.FRAME_SIZE_ERROR),
    ("6.5-settings-on-a-stream", lambda f: rawFrame(0x4, 0, 1, b""), E.PROTOCOL_ERROR),
    ("6.5-settings-length-not-multiple-of-6", lambda f: rawFrame(0x4, 0, 0, b"\0\x03\0"), E.FRAME_SIZE_ERROR),
    ("6.5.2-enable-push-not-0-or-1", lambda f: f.settings({0x2: 2}).serialize(), E.PROTOCOL_ERROR),
    ("6.5.2-initial-window-size-over-2^31-1", lambda f: f.settings({0x4: 2**31}).serialize(), E.FLOW_CONTROL_ERROR),
    ("6.5.2-max-frame-size-below-16384", lambda f: f.settings({0x5: 16383}).serialize(), E.PROTOCOL_ERROR),
    ("6.5.2-max-frame-size-over-2^24-1", lambda f: f.settings({0x5: 2**24}).serialize(), E.PROTOCOL_ERROR),
    # 6.7 PING
    ("6.7-ping-on-a-stream", lambda f: rawFrame(0x6, 0, 1, b"12345678"), E.PROTOCOL_ERROR),
    ("6.7-ping-length-not-8", lambda f: rawFrame(0x6, 0, 0, b"1234567"), E.FRAME_SIZE_ERROR),
    # 6.8 GOAWAY
    ("6.8-goaway-on-a-stream", lambda f: rawFrame(0x7, 0, 1, b"\0" * 8), E.PROTOCOL_ERROR),
    # 6.9 WINDOW_UPDATE
    ("6.9-window-update-of-0-on-the-connection", lambda f: f.windowUpdate(0, 0).serialize(), E.PROTOCOL_ERROR),
    ("6.9-window-update-length-not-4", lambda f: rawFrame(0x8, 0, 0, b"\0\0\x01"), E.FRAME_SIZE_ERROR),
    ("6.9.1-connection-window-over-2^31-1", lambda f: f.windowUpdate(0, 2**31 - 1).serialize(), E.FLOW_CONTROL_ERROR),
    ("6.9.1-data-beyond-the-advertised-window", lambda f: headers(f) + b"".join(f.data(1, b"x" * 16384).serialize() for _ in range(5)), E.FLOW_CONTROL_ERROR),
    (
        "6.9.2-initial-window-change-overflowing-a-stream-window",
        lambda f: headers(f) + f.windowUpdate(1, 2**31 - 1 - 65535).serialize() + f.settings({0x4: 65536}).serialize(),
        E.FLOW_CONTROL_ERROR,
    ),
    # 6.10 CONTINUATION
    ("6.10-continuation-after-end-headers", lambda f: headers(f) + f.continuation(1, b"").serialize(), E.PROTOCOL_ERROR),
    ("6.10-continuation-on-another-stream", lambda f: headers(f, endHeaders=False) + f.continuation(3, b"").serialize(), E.PROTOCOL_ERROR),
    ("6.10-continuation-after-end-stream-half-closed", lambda f: headers(f, end=True) + f.continuation(1, b"").serialize(), E.PROTOCOL_ERROR),
    # 8.4 server push
    ("8.4-push-promise-from-a-client", lambda f: headers(f) + rawFrame(0x5, 0x4, 1, b"\0\0\0\x02" + f.encode(requestHeaders())), E.PROTOCOL_ERROR),
]


@pytest.mark.parametrize("case, build, code", CONNECTION_ERRORS, ids=[c[0] for c in CONNECTION_ERRORS])
def test_connection_errors(case, build, code):
    """When the client commits a connection error of the given RFC section, the server sends GOAWAY with that code and last stream id 0, then closes."""
    settings = Http2Config(initial_window_size=65535)
    server, frames = session(build, handshake=not case.startswith("3.4"), settings=settings)
    assertConnectionError(server, frames, code)


STREAM_ERRORS: list[tuple[str, Build, ErrorCodes]] = [
    # 5.1 half-closed (remote) and closed after the client's RST_STREAM
    ("5.1-half-closed-remote-data", lambda f: headers(f, end=True) + f.data(1, b"x").serialize(), E.STREAM_CLOSED),
    ("5.1-half-closed-remote-headers", lambda f: headers(f, end=True) + headers(f, end=True), E.STREAM_CLOSED),
    ("5.1-closed-by-rst-data", lambda f: headers(f) + f.rstStream(1, E.CANCEL).serialize() + f.data(1, b"x").serialize(), E.STREAM_CLOSED),
    ("5.1-closed-by-rst-headers", lambda f: headers(f) + f.rstStream(1, E.CANCEL).serialize() + headers(f, end=True), E.STREAM_CLOSED),
    # 5.1.2 concurrency: refused, retryable
    ("5.1.2-over-max-concurrent-streams", lambda f: headers(f, 1) + headers(f, 3) + headers(f, 5), E.REFUSED_STREAM),
    # 5.3.1 dependencies
    ("5.3.1-headers-depending-on-itself", lambda f: f.headers(1, dependsOn=1).serialize(), E.PROTOCOL_ERROR),
    ("5.3.1-priority-depending-on-itself", lambda f: f.priority(1, dependsOn=1).serialize(), E.PROTOCOL_ERROR),
    # 6.3 PRIORITY size
    ("6.3-priority-length-not-5", lambda f: rawFrame(0x2, 0, 1, b"\0\0\0\0"), E.FRAME_SIZE_ERROR),
    # 6.9 WINDOW_UPDATE
    ("6.9-window-update-of-0-on-a-stream", lambda f: headers(f) + f.windowUpdate(1, 0).serialize(), E.PROTOCOL_ERROR),
    ("6.9.1-stream-window-over-2^31-1", lambda f: headers(f) + f.windowUpdate(1, 2**31 - 1).serialize(), E.FLOW_CONTROL_ERROR),
    # 8.1 trailers
    ("8.1-trailers-without-end-stream", lambda f: headers(f) + f.headers(1, [(b"x-a", b"1")]).serialize(), E.PROTOCOL_ERROR),
    ("8.1-pseudo-header-in-trailers", lambda f: headers(f) + f.headers(1, [(b":path", b"/")], flags=["END_HEADERS", "END_STREAM"]).serialize(), E.PROTOCOL_ERROR),
    # 8.1.1 content-length
    (
        "8.1.1-content-length-above-data-in-several-frames",
        lambda f: f.headers(1, requestHeaders(b"/", b"POST", [(b"content-length", b"10")])).serialize()
        + f.data(1, b"1234").serialize()
        + f.data(1, b"5678", flags=["END_STREAM"]).serialize(),
        E.PROTOCOL_ERROR,
    ),
]


@pytest.mark.parametrize("case, build, code", STREAM_ERRORS, ids=[c[0] for c in STREAM_ERRORS])
def test_stream_errors(case, build, code):
    """When the client commits a stream error of the given RFC section, the server resets that stream with that code and the connection goes on."""
    settings = Http2Config(max_concurrent_streams=2)
    server, frames = session(build, settings=settings)
    streamID = 5 if case.startswith("5.1.2") else 1
    assertStreamError(server, frames, streamID, code)
    assert streamID not in server.connection.streams


MALFORMED: list[tuple[str, list[tuple[bytes, bytes]]]] = [
    ("8.2-uppercase-field-name", requestHeaders(extra=[(b"X-Upper", b"1")])),
    ("8.2.1-cr-lf-in-a-value", requestHeaders(extra=[(b"x-a", b"1\r\nx-b: 2")])),
    ("8.2.1-nul-in-a-value", requestHeaders(extra=[(b"x-a", b"1\x002")])),
    ("8.2.1-leading-whitespace-in-a-value", requestHeaders(extra=[(b"x-a", b" 1")])),
    ("8.2.2-connection-field", requestHeaders(extra=[(b"connection", b"keep-alive")])),
    ("8.2.2-transfer-encoding-field", requestHeaders(extra=[(b"transfer-encoding", b"chunked")])),
    ("8.2.2-te-not-trailers", requestHeaders(extra=[(b"te", b"gzip")])),
    ("8.3-pseudo-header-after-a-regular-field", [(b"accept", b"*/*")] + requestHeaders()),
    ("8.3-unknown-pseudo-header", requestHeaders(extra=[(b":foo", b"bar")])),
    ("8.3-response-pseudo-header", [(b":status", b"200")] + requestHeaders()),
    ("8.3-duplicated-pseudo-header", [(b":method", b"GET")] + requestHeaders()),
    ("8.3.1-missing-path", [h for h in requestHeaders() if h[0] != b":path"]),
    ("8.3.1-missing-method", [h for h in requestHeaders() if h[0] != b":method"]),
    ("8.3.1-missing-scheme", [h for h in requestHeaders() if h[0] != b":scheme"]),
    ("8.3.1-empty-path", requestHeaders(b"")),
    ("8.1.1-content-length-not-a-number", requestHeaders(extra=[(b"content-length", b"ten")])),
]


@pytest.mark.parametrize("case, fields", MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_requests_are_stream_errors(case, fields):
    """When a request is malformed under the given RFC section, it gets RST_STREAM PROTOCOL_ERROR, never reaches a handler, and the connection goes on."""
    server, frames = session(lambda f: f.headers(1, fields, flags=["END_HEADERS", "END_STREAM"]).serialize())
    assertStreamError(server, frames, 1, E.PROTOCOL_ERROR)
    assert server.handlers == {}


def test_connection_error_names_the_last_accepted_stream_and_aborts_open_streams():
    """When a connection error follows accepted streams, GOAWAY's last stream id is the highest accepted one (RFC 9113 6.8) and their handlers are aborted."""
    server = Server()
    factory = FrameFactory()
    server.handshake(factory)
    server.feed(headers(factory, 1) + headers(factory, 3))
    server.output()
    server.feed(rawFrame(0x6, 0, 0, b"short"))
    assertConnectionError(server, server.frames(), E.FRAME_SIZE_ERROR, lastStreamID=3)
    assert [len(server.handlers[s].aborted) for s in (1, 3)] == [1, 1]


def test_nothing_is_read_after_a_connection_error():
    """When a connection error was sent, later bytes from the client produce nothing."""
    server, frames = session(lambda f: rawFrame(0x6, 0, 1, b"12345678"))
    server.feed(FrameFactory().ping().serialize())
    assert server.output() == b""


def test_closed_stream_frames_after_both_ends_are_connection_errors():
    """When DATA or HEADERS arrive on a stream both sides ended, it is a connection error STREAM_CLOSED (RFC 9113 5.1)."""
    for late in (lambda f: f.data(1, b"x").serialize(), lambda f: headers(f, end=True)):
        server = Server(handlerClass=EchoHandler)
        factory = FrameFactory()
        server.handshake(factory)
        server.feed(headers(factory, end=True))
        assert "END_STREAM" in server.frames()[-1].flags
        server.feed(late(factory))
        assertConnectionError(server, server.frames(), E.STREAM_CLOSED, lastStreamID=1)


def test_decreasing_stream_id_is_a_connection_error():
    """When a stream id is lower than one already opened, it is a connection error PROTOCOL_ERROR (RFC 9113 5.1.1)."""
    server = Server()
    factory = FrameFactory()
    server.handshake(factory)
    server.feed(headers(factory, 5))
    server.output()
    server.feed(headers(factory, 3))
    assertConnectionError(server, server.frames(), E.PROTOCOL_ERROR, lastStreamID=5)


def test_absurd_header_list_is_enhance_your_calm():
    """When a header list is far beyond max_header_list_size (an HPACK bomb), it is a connection error ENHANCE_YOUR_CALM (RFC 9113 10.5.1)."""
    settings = Http2Config(max_header_list_size=4096, max_frame_size=1 << 20)
    big = requestHeaders(extra=[(b"x-h%d" % i, b"v" * 1000) for i in range(20)])
    server, frames = session(lambda f: f.settings().serialize() + f.headers(1, big).serialize(), settings=settings)
    assertConnectionError(server, frames, E.ENHANCE_YOUR_CALM)


def test_unknown_frames_and_settings_are_ignored():
    """When the client sends an unknown frame type, unknown flags or an unknown setting, they are ignored (RFC 9113 4.1, 5.5, 6.5.2)."""
    server, frames = session(
        lambda f: rawFrame(0x20, 0, 0, b"abc") + rawFrame(0x6, 0xF0, 0, b"12345678") + f.settings({0xFF: 1}).serialize()
    )
    assert [type(f) for f in frames] == [PingFrame, SettingsFrame]
    assert "ACK" in frames[0].flags and "ACK" in frames[1].flags
    assert not server.transport.disconnecting


def test_ping_is_acknowledged_and_ping_ack_is_not():
    """When the client sends PING, the server answers PING ACK with the same payload; a PING ACK gets no answer (RFC 9113 6.7)."""
    server, frames = session(lambda f: f.ping(b"abcdefgh").serialize() + f.ping(b"zzzzzzzz", ack=True).serialize())
    assert [(p.opaque_data, "ACK" in p.flags) for p in frames] == [(b"abcdefgh", True)]


def test_settings_are_acknowledged():
    """When the client sends SETTINGS, the server acknowledges them (RFC 9113 6.5.3)."""
    server = Server()
    server.output()
    server.feed(FrameFactory().preamble())
    acks = [f for f in server.frames() if isinstance(f, SettingsFrame) and "ACK" in f.flags]
    assert len(acks) == 1


def test_refused_stream_header_block_is_still_decoded():
    """When a stream is refused, its field block is still decoded, so a later request that uses the dynamic table decodes right (RFC 9113 4.3)."""
    server = Server(settings=Http2Config(max_concurrent_streams=1))
    factory = FrameFactory()
    server.handshake(factory)
    server.feed(headers(factory, 1))
    refused = requestHeaders(extra=[(b"x-new", b"indexed-value")])
    server.feed(factory.headers(3, refused, flags=["END_HEADERS", "END_STREAM"]).serialize())
    assert [(f.stream_id, f.error_code) for f in server.frames() if isinstance(f, RstStreamFrame)] == [(3, E.REFUSED_STREAM)]
    server.handlers[1].respond(204)
    server.feed(factory.data(1, b"", flags=["END_STREAM"]).serialize())
    block = factory.encode(refused)
    assert len(block) < 10  # all from the dynamic table
    server.feed(factory.headers(5, block=block, flags=["END_HEADERS", "END_STREAM"]).serialize())
    assert server.handlers[5].head.headers == ((b"x-new", b"indexed-value"),)


def test_concurrency_slot_is_freed_when_a_stream_completes():
    """When a stream was refused for concurrency, a new one is accepted once a slot frees up (RFC 9113 5.1.2)."""
    server = Server(settings=Http2Config(max_concurrent_streams=1), handlerClass=EchoHandler)
    factory = FrameFactory()
    server.handshake(factory)
    server.feed(headers(factory, 1) + headers(factory, 3, end=True))
    assert [(f.stream_id, f.error_code) for f in server.frames() if isinstance(f, RstStreamFrame)] == [(3, E.REFUSED_STREAM)]
    server.feed(factory.data(1, b"", flags=["END_STREAM"]).serialize())
    server.feed(headers(factory, 5, end=True))
    assert sorted(server.handlers) == [1, 5]


def test_header_block_split_over_continuations_is_assembled():
    """When a field block is split over HEADERS and CONTINUATION frames, the request is decoded whole (RFC 9113 6.10)."""
    server = Server()
    factory = FrameFactory()
    server.handshake(factory)
    block = factory.encode(requestHeaders(b"/split", extra=[(b"x-long", b"l" * 100)]))
    server.feed(
        factory.headers(1, block=block[:10], flags=[]).serialize()
        + factory.continuation(1, block[10:50], flags=[]).serialize()
        + factory.continuation(1, block[50:], flags=["END_HEADERS"]).serialize()
    )
    assert server.handlers[1].head.path == b"/split"


def test_reduced_initial_window_makes_windows_negative_then_recover():
    """When SETTINGS_INITIAL_WINDOW_SIZE shrinks after data was sent, the stream waits with a negative window and resumes once WINDOW_UPDATE makes it positive (RFC 9113 6.9.2)."""
    server = Server()
    factory = FrameFactory()
    server.handshake(factory)
    server.feed(headers(factory, 1, end=True))
    stream = server.handlers[1].stream
    stream.writeHeaders(ResponseHead(200))
    stream.write(b"w" * 100000)
    server.clock.advance(0)
    assert sum(len(f.data) for f in server.frames() if isinstance(f, DataFrame)) == 65535
    server.feed(factory.settings({0x4: 1000}).serialize() + factory.windowUpdate(0, 1 << 20).serialize())
    server.clock.advance(0)
    assert not [f for f in server.frames() if isinstance(f, DataFrame)]
    assert server.connection.conn.local_flow_control_window(1) == 1000 - 65535
    server.feed(factory.windowUpdate(1, 65535).serialize())
    server.clock.advance(0)
    assert sum(len(f.data) for f in server.frames() if isinstance(f, DataFrame)) == 1000


ACCEPTED: list[tuple[str, Build]] = [
    ("5.1-priority-on-an-idle-stream", lambda f: f.priority(9, dependsOn=0, weight=200).serialize()),
    ("5.1-window-update-on-half-closed-remote", lambda f: headers(f, end=True) + f.windowUpdate(1, 10).serialize()),
    ("5.1-priority-on-half-closed-remote", lambda f: headers(f, end=True) + f.priority(1, weight=1).serialize()),
    ("5.3-priority-depending-on-an-unknown-stream", lambda f: f.headers(1, dependsOn=7, weight=100, flags=["END_HEADERS", "END_STREAM"]).serialize()),
    ("6.1-padded-data", lambda f: headers(f) + f.data(1, b"abc", flags=["END_STREAM"], padLength=10).serialize()),
    ("6.2-padded-headers", lambda f: rawFrame(0x1, 0x4 | 0x1 | 0x8, 1, b"\x03" + f.encode(requestHeaders()) + b"\0\0\0")),
    ("6.5.3-several-initial-window-values", lambda f: f.settings({0x4: 100}).serialize() + f.settings({0x4: 1}).serialize() + headers(f, end=True)),
]


@pytest.mark.parametrize("case, build", ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_allowed_frames_cause_no_error(case, build):
    """When the client sends frames the given RFC section allows, no RST_STREAM or GOAWAY follows and the connection stays open."""
    server, frames = session(build)
    assert not [f for f in frames if isinstance(f, (RstStreamFrame, GoAwayFrame))]
    assert not server.transport.disconnecting


def test_initial_window_of_1_gets_one_byte_frames():
    """When the client sets SETTINGS_INITIAL_WINDOW_SIZE to 1, the server sends a DATA frame of exactly 1 byte (RFC 9113 6.9.1)."""
    server = Server()
    factory = FrameFactory()
    server.handshake(factory)
    server.feed(factory.settings({0x4: 1}).serialize() + headers(factory, end=True))
    server.handlers[1].respond(200, b"abc")
    server.clock.advance(0)
    assert [len(f.data) for f in server.frames() if isinstance(f, DataFrame)] == [1]


def test_padded_data_is_credited_with_its_padding():
    """When DATA is padded, the window credit returned includes the padding and the pad-length octet (RFC 9113 6.1, 6.9.1)."""
    server = Server(settings=Http2Config(initial_window_size=65535, connection_window_size=65535))
    factory = FrameFactory()
    server.handshake(factory)
    server.feed(headers(factory))
    body = b"".join(factory.data(1, b"d" * 16000, padLength=255).serialize() for _ in range(3))
    server.feed(body)
    credited = sum(f.window_increment for f in server.frames() if getattr(f, "window_increment", 0) and f.stream_id == 1)
    assert credited == 3 * (16000 + 255 + 1)
    assert server.handlers[1].body == b"d" * 48000
