"""The short path for received DATA frames gives exactly what h2's own path gives."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from hpack import Encoder
from hyperframe.frame import DataFrame, GoAwayFrame, HeadersFrame, RstStreamFrame
from hypothesis import given, settings, strategies as st

from h2proxy.config.model import Http2Config
from h2proxy.frontend.http2.codec.framebuffer import PlainData, PlainHeaders
from h2proxy.frontend.http2.codec.machine import ServerConnection
from tests.frontend.frames import FrameFactory, requestHeaders
from tests.frontend.support import Server

#: Stream 1: a POST still sending its body; stream 3: a GET that ended; stream 5:
#: a POST the client reset; stream 7: never opened.
_STREAMS = [1, 3, 5, 7]


def _server(shortPaths: bool = True) -> ServerConnection:
    """A server after the client preface and three requests; with
    C{shortPaths=False}, one that takes h2's own paths only."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    client.send_headers(1, requestHeaders(b"/up", b"POST"), end_stream=False)
    client.send_headers(3, requestHeaders(b"/", b"GET"), end_stream=True)
    client.send_headers(5, requestHeaders(b"/up", b"POST"), end_stream=False)
    client.reset_stream(5)
    server = ServerConnection(local_settings={}, header_list_hard_limit=65536, shortPaths=shortPaths)
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    server.data_to_send()
    return server


_frames = st.lists(
    st.tuples(
        st.sampled_from(_STREAMS),
        st.integers(min_value=0, max_value=20000),
        st.one_of(st.none(), st.integers(min_value=0, max_value=255)),
        st.booleans(),
    ),
    min_size=1,
    max_size=10,
)


def _wire(frames: list[tuple]) -> bytes:
    """DATA frames as a client would serialize them (the big ones over the 16 KiB
    frame size the server allows)."""
    out = b""
    for stream, size, padding, end in frames:
        frame = DataFrame(stream, b"d" * size, flags=["END_STREAM"] if end else [])
        if padding is not None:
            frame.flags.add("PADDED")
            frame.pad_length = padding
        out += frame.serialize()
    return out


def _run(data: bytes, chunk: int, shortPaths: bool = True) -> list:
    """Feed C{data} in reads of C{chunk} bytes; what came out, read by read."""
    server = _server(shortPaths)
    record: list = []
    for start in range(0, len(data), chunk):
        try:
            events = server.receive_data(data[start : start + chunk])
        except h2.exceptions.ProtocolError as e:
            record.append(("error", type(e).__name__, server.data_to_send()))
            return record
        record.append([_describe(event) for event in _joinData(events)])
        record.append(server.data_to_send())
        record.append((server.inbound_flow_control_window, server.open_inbound_streams))
        for stream in _STREAMS:
            machine = server.streams.get(stream)
            record.append(machine.state_machine.state if machine else None)
            record.append(machine.inbound_flow_control_window if machine else None)
    return record


def _joinData(events: list) -> list:
    """Events with consecutive DataReceived of one stream joined into one (data
    concatenated, flow-controlled lengths added, the last one's stream_ended): the
    short path hands a run of DATA frames over as one event, which is what a handler
    of h2's per-frame events sees too."""
    joined: list = []
    for event in events:
        previous = joined[-1] if joined else None
        if (
            isinstance(event, h2.events.DataReceived)
            and isinstance(previous, h2.events.DataReceived)
            and previous.stream_id == event.stream_id
            and previous.stream_ended is None
        ):
            joined[-1] = h2.events.DataReceived(
                stream_id=event.stream_id,
                data=previous.data + event.data,
                flow_controlled_length=previous.flow_controlled_length + event.flow_controlled_length,
                stream_ended=event.stream_ended,
            )
        else:
            joined.append(event)
    return joined


def _describe(event: object) -> tuple:
    return (type(event).__name__, *sorted((k, repr(v)) for k, v in vars(event).items()))


@settings(max_examples=200, deadline=None)
@given(frames=_frames, chunk=st.sampled_from([7, 4096, 65536, 1 << 20]))
def test_received_data_matches_h2s_path(frames, chunk):
    """When DATA frames of any size, padding and END_STREAM arrive on open, ended,
    reset and idle streams, in reads of any size, the events, output, windows,
    stream states and errors are those of h2's own receive path."""
    data = _wire(frames)
    assert _run(data, chunk) == _withoutShortPaths(_run, data, chunk)


def _withoutShortPaths(run, *args):  # type: ignore[no-untyped-def]
    """C{run(*args)} with every frame taking h2's own path."""
    return run(*args, shortPaths=False)


def test_plain_data_frames_take_the_short_path():
    """When an unpadded DATA frame arrives whole, h2's hyperframe parsing is skipped
    and the body arrives as bytes."""
    server = _server()
    buffer = server.incoming_buffer
    buffer.add_data(DataFrame(1, b"body").serialize())
    buffer.turnFrames = 0
    frame = next(buffer)
    assert type(frame) is PlainData
    assert (frame.stream_id, frame.data, frame.end_stream) == (1, b"body", False)
    assert type(frame.data) is bytes


def test_data_after_reset_by_client_is_answered_as_before():
    """When body arrives for a stream the client reset, the server answers
    RST_STREAM STREAM_CLOSED and still counts it against the connection window."""
    server = _server()
    window = server.inbound_flow_control_window
    server.receive_data(DataFrame(5, b"x" * 100).serialize())
    out = server.data_to_send()
    assert RstStreamFrame(5, error_code=h2.errors.ErrorCodes.STREAM_CLOSED).serialize() in out
    assert server.inbound_flow_control_window == window - 100


@settings(max_examples=100, deadline=None)
@given(acks=st.lists(st.tuples(st.sampled_from(_STREAMS), st.integers(min_value=0, max_value=40000)), max_size=12))
def test_acknowledgements_match_h2(acks):
    """When received bytes are acknowledged on open, ended, reset and idle streams,
    the WINDOW_UPDATE frames, the windows and the errors are those of h2's own
    acknowledge_received_data."""
    ours, theirs = _server(), _server(shortPaths=False)
    body = _wire([(1, 16000, None, False)] * 3)
    ours.receive_data(body)
    theirs.receive_data(body)
    for stream, size in acks:
        outcomes = []
        for server, acknowledge in (
            (ours, ours.acknowledge_received_data),
            (theirs, lambda size, stream: h2.connection.H2Connection.acknowledge_received_data(theirs, size, stream)),
        ):
            try:
                acknowledge(size, stream)
                outcomes.append(None)
            except (h2.exceptions.ProtocolError, ValueError) as e:
                outcomes.append(type(e))
        assert outcomes[0] == outcomes[1]
        assert ours.data_to_send() == theirs.data_to_send()
        assert ours.inbound_flow_control_window == theirs.inbound_flow_control_window
        assert _streamWindows(ours) == _streamWindows(theirs)


def _streamWindows(server: ServerConnection) -> list[int | None]:
    return [server.streams[s].inbound_flow_control_window if s in server.streams else None for s in _STREAMS]


_headerFrames = st.lists(
    st.tuples(
        st.sampled_from(["new", "same", "trailers", "data", "zero"]),
        st.booleans(),  # END_STREAM
        st.booleans(),  # PRIORITY flag
        st.one_of(st.none(), st.integers(min_value=0, max_value=20)),  # padding
    ),
    min_size=1,
    max_size=12,
)


def _headersWire(steps: list[tuple]) -> bytes:
    """HEADERS (new streams, repeated ids, trailers, stream 0) and DATA frames as a
    client serializes them, field blocks from one client encoder."""
    encoder = Encoder()
    out = b""
    stream = 7
    for kind, end, priority, padding in steps:
        if kind == "data":
            out += DataFrame(stream, b"d" * 10, flags=["END_STREAM"] if end else []).serialize()
            continue
        if kind == "new":
            stream += 2
        target = 0 if kind == "zero" else (1 if kind == "trailers" else stream)
        fields = [(b"x-trailer", b"1")] if kind == "trailers" else requestHeaders(b"/p", b"POST")
        frame = HeadersFrame(target if target else 1, encoder.encode(fields), flags=["END_HEADERS"])
        frame.stream_id = target
        if end:
            frame.flags.add("END_STREAM")
        if priority:
            frame.flags.add("PRIORITY")
            frame.depends_on, frame.stream_weight = 0, 15
        if padding is not None:
            frame.flags.add("PADDED")
            frame.pad_length = padding
        out += frame.serialize()
    return out


@settings(max_examples=200, deadline=None)
@given(steps=_headerFrames, chunk=st.sampled_from([5, 4096, 1 << 20]))
def test_received_headers_match_h2s_path(steps, chunk):
    """When HEADERS frames arrive (new streams, reused ids, trailers with and without
    END_STREAM, priority, padding, stream 0) among DATA frames, in reads of any size,
    the events, output, windows, stream states and errors are those of the path
    through hyperframe's frames."""
    data = _headersWire(steps)
    assert _run(data, chunk) == _withoutShortPaths(_run, data, chunk)


def test_plain_headers_take_the_short_path():
    """When a HEADERS frame carries a whole block without padding or priority, it is
    handed over without hyperframe's object."""
    server = _server()
    buffer = server.incoming_buffer
    buffer.add_data(HeadersFrame(9, b"\x82", flags=["END_HEADERS", "END_STREAM"]).serialize())
    buffer.turnFrames = 0
    frame = next(buffer)
    assert type(frame) is PlainHeaders
    assert (frame.stream_id, frame.data, sorted(frame.flags)) == (9, b"\x82", ["END_HEADERS", "END_STREAM"])


_runs = st.lists(
    st.tuples(
        st.sampled_from([1, 1, 1, 1, 3, 5]),
        st.integers(min_value=0, max_value=16384),
        st.just(None),
        st.integers(min_value=0, max_value=5).map(lambda n: n == 0),  # END_STREAM now and then
    ),
    min_size=2,
    max_size=16,
)


@settings(max_examples=200, deadline=None)
@given(frames=_runs, chunk=st.sampled_from([100, 16393, 65536, 1 << 20]))
def test_runs_of_data_frames_match_h2s_path(frames, chunk):
    """When many DATA frames follow each other on one stream (some empty, some with
    END_STREAM, past the stream's window, interleaved with other streams), the
    joined body, windows, states, output and errors are those of h2's per-frame path."""
    data = _wire(frames)
    assert _run(data, chunk) == _withoutShortPaths(_run, data, chunk)


def test_a_read_of_consecutive_frames_is_one_event():
    """When one read carries four DATA frames of one open stream, h2proxy gets one
    DataReceived with the four payloads in order and their total length."""
    server = _server()
    server.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
    frames = [(1, 1000, None, False), (1, 2000, None, False), (1, 3000, None, False), (1, 4000, None, True)]
    body = b"".join(DataFrame(1, bytes([65 + n]) * size, flags=["END_STREAM"] if end else []).serialize()
                    for n, (_, size, _, end) in enumerate(frames))
    events = server.receive_data(body)
    data = [event for event in events if isinstance(event, h2.events.DataReceived)]
    assert len(data) == 1
    assert data[0].data == b"A" * 1000 + b"B" * 2000 + b"C" * 3000 + b"D" * 4000
    assert data[0].flow_controlled_length == 10000 and data[0].stream_ended is not None


def test_empty_frames_are_not_joined_into_a_run():
    """When empty DATA frames follow a non-empty one, each stays its own event, so
    the front end can still charge each to the glitch budget."""
    server = _server()
    body = DataFrame(1, b"x").serialize() + DataFrame(1, b"").serialize() * 2
    events = [event for event in server.receive_data(body) if isinstance(event, h2.events.DataReceived)]
    assert [event.data for event in events] == [b"x", b"", b""]


def test_empty_frames_after_body_in_one_read_still_cost_glitches():
    """When a read carries body and then a flood of empty DATA frames, the front end
    closes the connection with ENHANCE_YOUR_CALM once the glitch budget is spent."""
    settings = Http2Config(glitch_budget=5)
    server = Server(settings=settings)
    factory = FrameFactory()
    server.handshake(factory)
    server.feed(factory.headers(1, requestHeaders(b"/up", b"POST")).serialize())
    server.output()
    server.feed(factory.data(1, b"body").serialize() + b"".join(factory.data(1, b"").serialize() for _ in range(10)))
    assert [f.error_code for f in server.frames() if isinstance(f, GoAwayFrame)] == [11]
