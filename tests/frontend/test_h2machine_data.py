"""The short path of ServerConnection.send_data writes exactly what h2 would."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.exceptions
import pytest
from h2.connection import H2Connection
from hypothesis import given, settings, strategies as st

from h2proxy.frontend.http2.codec.machine import ServerConnection
from tests.frontend.frames import requestHeaders


def _pair(cls: type) -> H2Connection:
    """A server state machine of C{cls} with stream 1 open (request without END_STREAM)."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    client.send_headers(1, requestHeaders(b"/", b"POST"), end_stream=False)
    if cls is ServerConnection:
        server: H2Connection = ServerConnection(local_settings={}, header_list_hard_limit=65536, shortPaths=True)
    else:
        server = H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    server.send_headers(1, [(b":status", b"200")])
    server.data_to_send()
    return server


@settings(max_examples=50, deadline=None)
@given(sizes=st.lists(st.integers(min_value=0, max_value=20000), min_size=1, max_size=8), end=st.booleans())
def test_data_frames_match_h2(sizes, end):
    """When DATA frames of any size are sent, with or without END_STREAM, the bytes,
    the windows and the errors are those of h2's own send_data."""
    ours, theirs = _pair(ServerConnection), _pair(H2Connection)
    for index, size in enumerate(sizes):
        last = end and index == len(sizes) - 1
        outcomes = []
        for conn in (ours, theirs):
            try:
                conn.send_data(1, memoryview(b"d" * size), end_stream=last)
                outcomes.append(None)
            except h2.exceptions.ProtocolError as e:
                outcomes.append(type(e))
        assert outcomes[0] == outcomes[1]
        assert ours.data_to_send() == theirs.data_to_send()
        assert ours.local_flow_control_window(1) == theirs.local_flow_control_window(1)
        assert ours.outbound_flow_control_window == theirs.outbound_flow_control_window
        if outcomes[0] is not None or last:
            break


def test_data_after_end_stream_is_refused():
    """When the stream was ended, a further DATA frame raises as h2 does."""
    conn = _pair(ServerConnection)
    conn.send_data(1, b"x", end_stream=True)
    with pytest.raises(h2.exceptions.ProtocolError):
        conn.send_data(1, b"y")


def test_output_keeps_order_and_amount():
    """When output is taken in parts (data_to_send with an amount), the bytes come
    out in the order queued and nothing is lost; clearing drops what is queued."""
    conn = _pair(ServerConnection)
    reference = _pair(H2Connection)
    for server in (conn, reference):
        server.send_data(1, b"a" * 100)
        server.send_data(1, memoryview(b"b" * 50))
    expected = reference.data_to_send()
    assert conn.data_to_send(30) + conn.data_to_send(100) + conn.data_to_send() == expected
    conn.send_data(1, b"c")
    conn.clear_outbound_data_buffer()
    assert conn.data_to_send() == b""
