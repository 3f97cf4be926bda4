"""ServerConnection keeps its count of open streams instead of scanning them, and
agrees with h2's own scan (and its pruning of closed streams) at every step."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.exceptions
from h2.errors import ErrorCodes
from h2.stream import H2StreamStateMachine, StreamInputs
from hypothesis import given, settings, strategies as st

from h2proxy.frontend.http2.codec.machine import ServerConnection
from h2proxy.frontend.http2.codec.streams import CountingStateMachine
from tests.frontend.frames import requestHeaders


def _server(shortPaths: bool = True) -> ServerConnection:
    """A server after its preface; with C{shortPaths=False}, the reference that
    counts with h2's own scan."""
    conn = ServerConnection(
        local_settings={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 4},
        header_list_hard_limit=65536,
        shortPaths=shortPaths,
    )
    conn.initiate_connection()
    conn.data_to_send()
    return conn


def _feed(conn: ServerConnection, data: bytes) -> list[str] | str:
    """The events of some bytes received, or the connection error they caused (the
    client side is only a frame writer: it never hears the server's answers)."""
    try:
        return [type(event).__name__ for event in conn.receive_data(data)]
    except h2.exceptions.ProtocolError as e:
        return type(e).__name__


_actions = st.lists(
    st.tuples(
        st.sampled_from(["open", "open_end", "client_end", "client_reset", "respond_end", "server_reset"]),
        st.integers(min_value=0, max_value=7),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(actions=_actions)
def test_open_count_and_pruning_match_h2(actions):
    """When a client opens, ends and resets streams and the server answers or resets
    them in any order, the open-stream count, the stream table, the closed-stream memory
    and the bytes sent are those of h2's own scan."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    ours, theirs = _server(), _server(shortPaths=False)
    opened: list[int] = []
    for action, pick in actions:
        server_action = action in ("respond_end", "server_reset")
        try:
            if action in ("open", "open_end"):
                stream_id = client.get_next_available_stream_id()
                client.send_headers(stream_id, requestHeaders(b"/", b"POST"), end_stream=action == "open_end")
                opened.append(stream_id)
            elif not opened:
                continue
            elif action == "client_end":
                client.end_stream(opened[pick % len(opened)])
            elif action == "client_reset":
                client.reset_stream(opened[pick % len(opened)], ErrorCodes.CANCEL)
        except h2.exceptions.ProtocolError:
            continue
        if not server_action:
            data = client.data_to_send()
            outcomes = [_feed(conn, data) for conn in (ours, theirs)]
        else:
            stream_id = opened[pick % len(opened)]
            outcomes = []
            for conn in (ours, theirs):
                try:
                    if action == "respond_end":
                        conn.send_headers(stream_id, [(b":status", b"200")], end_stream=True)
                    else:
                        conn.reset_stream(stream_id, ErrorCodes.CANCEL)
                    outcomes.append(None)
                except h2.exceptions.ProtocolError as e:
                    outcomes.append(type(e).__name__)
        assert outcomes[0] == outcomes[1]
        assert ours.open_inbound_streams == theirs.open_inbound_streams
        assert list(ours.streams) == list(theirs.streams)
        assert dict(ours._closed_streams) == dict(theirs._closed_streams)
        assert ours.data_to_send() == theirs.data_to_send()


def test_refused_stream_does_not_count():
    """When a stream is refused over the limit, the count stays at the limit and the
    refused stream is pruned at the next opening."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    conn = _server()
    for _ in range(5):
        client.send_headers(client.get_next_available_stream_id(), requestHeaders(), end_stream=True)
    conn.receive_data(client.data_to_send())
    assert conn.open_inbound_streams == 4
    assert 9 not in conn.streams


@settings(max_examples=300, deadline=None)
@given(inputs=st.lists(st.sampled_from(list(StreamInputs)), max_size=12))
def test_stream_transitions_match_h2s_state_machine(inputs):
    """When any sequence of inputs is given to a stream's state machine, the states,
    the events (and their attributes) and the errors are those of h2's own machine,
    and every state change is reported to the connection."""
    reported: list[tuple] = []

    class Recorder:
        def streamStateChanged(self, stream_id, before, after):
            reported.append((before, after))

    recorder = Recorder()
    ours, theirs = CountingStateMachine(1, recorder), H2StreamStateMachine(1)
    changes = []
    for input_ in inputs:
        results = []
        for machine in (ours, theirs):
            before = machine.state
            try:
                events = machine.process_input(input_)
                results.append([(type(e).__name__, sorted(vars(e).items())) for e in events])
            except h2.exceptions.ProtocolError as e:
                results.append(type(e).__name__)
            if machine is theirs and machine.state is not before:
                changes.append((before, machine.state))
        assert results[0] == results[1]
        assert ours.state is theirs.state
        assert vars(ours).keys() - {"listener"} == vars(theirs).keys()
        assert all(getattr(ours, k) == v for k, v in vars(theirs).items())
    assert reported == changes
