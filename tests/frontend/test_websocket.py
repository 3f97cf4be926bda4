"""RFC 8441 extended CONNECT on the HTTP/2 front end: the setting, the checks, and a
stream that carries tunnel bytes both ways after a 2xx."""

from __future__ import annotations

import dataclasses

import h2.events
import h2.settings
import pytest
from h2.errors import ErrorCodes

from h2proxy.config.model import Http2Config
from h2proxy.frontend.http2.validation import MalformedRequest, UnusableRequest, parse_request
from h2proxy.message import ResponseHead
from tests.frontend.support import RecordingHandler, connected

LIMIT = 64 * 1024


def ws_fields(protocol: bytes = b"websocket", method: bytes = b"CONNECT", extra=()):
    return [
        (b":method", method),
        (b":protocol", protocol),
        (b":scheme", b"https"),
        (b":authority", b"example.test"),
        (b":path", b"/chat?room=1"),
        (b"sec-websocket-version", b"13"),
        *extra,
    ]


def open_tunnel(client, extra=()):
    streamID = client.conn.get_next_available_stream_id()
    client.conn.send_headers(streamID, ws_fields(extra=extra))
    client.flush()
    return streamID


class Accepting(RecordingHandler):
    """Accepts every tunnel with a 200 at once."""

    def requestReceived(self, head):
        super().requestReceived(head)
        self.stream.writeHeaders(ResponseHead(200, ((b"sec-websocket-protocol", b"chat"),)))


def test_extended_connect_is_acceptable_when_enabled():
    """When extended CONNECT is enabled, CONNECT with :protocol websocket gives a head with the protocol and the path."""
    parsed = parse_request(ws_fields(), end_stream=False, max_header_list_size=LIMIT, extended_connect=True)
    head = parsed.head
    assert (head.method, head.protocol, head.scheme, head.path, head.authority) == (
        b"CONNECT",
        b"websocket",
        b"https",
        b"/chat?room=1",
        b"example.test",
    )
    assert head.headers == ((b"sec-websocket-version", b"13"),)


def test_protocol_pseudo_header_is_malformed_when_disabled():
    """When extended CONNECT is not advertised, :protocol is an unknown pseudo-header (malformed)."""
    with pytest.raises(MalformedRequest):
        parse_request(ws_fields(), end_stream=False, max_header_list_size=LIMIT, extended_connect=False)


def test_protocol_on_another_method_is_malformed():
    """When :protocol comes with a method other than CONNECT, the request is malformed."""
    with pytest.raises(MalformedRequest):
        parse_request(ws_fields(method=b"GET"), end_stream=False, max_header_list_size=LIMIT, extended_connect=True)


def test_unknown_protocol_is_refused_politely():
    """When :protocol names something other than websocket, the answer is 400."""
    with pytest.raises(UnusableRequest) as refused:
        parse_request(ws_fields(b"connect-udp"), end_stream=False, max_header_list_size=LIMIT, extended_connect=True)
    assert refused.value.status == 400


def test_extended_connect_without_path_is_malformed():
    """When an extended CONNECT lacks :path, it is malformed (RFC 8441 4)."""
    fields = [f for f in ws_fields() if f[0] != b":path"]
    with pytest.raises(MalformedRequest):
        parse_request(fields, end_stream=False, max_header_list_size=LIMIT, extended_connect=True)


def test_plain_connect_is_still_refused():
    """When a CONNECT has no :protocol, it is refused with 400 as before."""
    fields = [(b":method", b"CONNECT"), (b":authority", b"example.test:443")]
    with pytest.raises(UnusableRequest):
        parse_request(fields, end_stream=False, max_header_list_size=LIMIT, extended_connect=True)


def test_setting_is_advertised_by_default():
    """When a client connects, the server's SETTINGS carry ENABLE_CONNECT_PROTOCOL = 1."""
    server, client = connected()
    assert client.conn.remote_settings[h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL] == 1


def test_setting_off_is_not_advertised_and_protocol_is_refused():
    """When enable_connect_protocol is off, the setting stays 0 and an extended CONNECT is reset with PROTOCOL_ERROR."""
    server, client = connected(settings=dataclasses.replace(Http2Config(), enable_connect_protocol=False))
    assert client.conn.remote_settings[h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL] == 0
    streamID = open_tunnel(client)
    assert streamID not in server.handlers
    assert client.response(streamID)["reset"] == ErrorCodes.PROTOCOL_ERROR


def test_tunnel_carries_bytes_both_ways_and_end_stream_closes():
    """When a tunnel is accepted with 200, DATA both ways are tunnel bytes and the client's END_STREAM reaches the handler."""
    server, client = connected(handlerClass=Accepting)
    streamID = open_tunnel(client)
    handler = server.handlers[streamID]
    assert handler.head.protocol == b"websocket"
    assert client.response(streamID)["status"] == 200
    client.conn.send_data(streamID, b"\x81\x85frame")
    client.flush()
    assert handler.body == b"\x81\x85frame"
    handler.stream.write(b"\x81\x03srv")
    client.flush()
    assert client.response(streamID)["body"] == b"\x81\x03srv"
    client.conn.end_stream(streamID)
    client.flush()
    assert handler.calls[-1] == "requestEnded"
    handler.stream.finish()
    client.flush()
    response = client.response(streamID)
    assert response["ended"] and response["reset"] is None
    server.assertNoLeftovers()


def test_quiet_tunnel_is_not_a_stalled_request_body():
    """When a tunnel is quiet longer than the request body timeout, the stream lives on."""
    server, client = connected(handlerClass=Accepting)
    server.connection.requestBodyTimeout = 5.0
    streamID = open_tunnel(client)
    server.clock.advance(60)
    client.flush()
    assert client.response(streamID)["reset"] is None
    assert server.handlers[streamID].aborted == []


def test_client_reset_aborts_the_tunnel():
    """When the client resets a tunnel stream, the handler is aborted."""
    server, client = connected(handlerClass=Accepting)
    streamID = open_tunnel(client)
    client.conn.reset_stream(streamID, ErrorCodes.CANCEL)
    client.flush()
    assert server.handlers[streamID].calls[-1] == "streamAborted"


def test_paused_tunnel_returns_no_window_credit():
    """When the handler pauses a tunnel, client bytes wait in the stream, without window credit, until it resumes."""
    server, client = connected(handlerClass=Accepting)
    streamID = open_tunnel(client)
    handler = server.handlers[streamID]
    handler.stream.pauseProducing()
    window = client.conn.local_flow_control_window(streamID)
    client.conn.send_data(streamID, b"x" * 1000)
    client.flush()
    assert handler.body == b""
    assert client.conn.local_flow_control_window(streamID) == window - 1000
    handler.stream.resumeProducing()
    client.flush()
    assert handler.body == b"x" * 1000


def test_tunnel_stays_half_closed_after_end_stream_for_the_servers_close():
    """When the client sends its Close frame with END_STREAM, the stream stays open on our side: bytes written afterwards (the server's Close frame) go out as DATA, and finish then ends the stream with END_STREAM, not RST_STREAM."""
    server, client = connected(handlerClass=Accepting)
    streamID = open_tunnel(client)
    handler = server.handlers[streamID]
    client.conn.send_data(streamID, b"\x88\x82abcd\x62\xea", end_stream=True)
    client.flush()
    assert handler.calls[-1] == "requestEnded" and streamID in server.connection.streams
    handler.stream.write(b"\x88\x02\x03\xe8")
    client.flush()
    response = client.response(streamID)
    assert response["body"] == b"\x88\x02\x03\xe8" and not response["ended"] and response["reset"] is None
    handler.stream.finish()
    client.flush()
    response = client.response(streamID)
    assert response["ended"] and response["reset"] is None
    server.assertNoLeftovers()
