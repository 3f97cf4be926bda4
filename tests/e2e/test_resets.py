"""Resets in both directions close the other side and leave nothing behind."""

from __future__ import annotations

import json
import urllib.request

import h2.errors
import h2.events

from tests.e2e.h2client import H2Client


def origin_json(origin, path: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{origin.port}{path}", timeout=30) as reply:
        return json.loads(reply.read())


def test_client_reset_closes_the_backend_connection(proxy, origin):
    """When a client resets a stream mid-response, the proxy closes that backend connection."""
    client = H2Client(proxy.ports["h2c"])
    try:
        stream = client.request("GET", f"/bytes/{1024 ** 3}")
        client.run_until(lambda: any(isinstance(e, h2.events.DataReceived) for e in client.events))
        assert origin_json(origin, "/stats")["open"] >= 2  # the proxied one and ours
        client.conn.reset_stream(stream, h2.errors.ErrorCodes.CANCEL)
        client.flush()
        state = origin_json(origin, "/wait-open?max=0&timeout=10")
        assert state["open"] == 1, state  # only the /wait-open request itself
        # The connection still serves new streams afterwards.
        status, _, body, _ = client.response(client.request("GET", "/"))
        assert status == 200 and body.startswith(b"hello")
    finally:
        client.close()


def test_backend_dying_mid_body_resets_the_stream(proxy):
    """When the backend closes mid-body, the client's stream is reset, not left hanging."""
    client = H2Client(proxy.ports["h2c"])
    try:
        stream = client.request("GET", "/truncate/100000")
        status, _, body, reset = client.response(stream)
        assert status == 200
        assert reset == h2.errors.ErrorCodes.INTERNAL_ERROR
        assert len(body) <= 100000
        status, _, body, reset = client.response(client.request("GET", "/"))
        assert status == 200 and reset is None
    finally:
        client.close()


def test_backend_refused_answers_502(tmp_path, certificate):
    """When the backend refuses connections, the client gets 502 with a Proxy-Status reason."""
    import socket

    from tests.e2e.conftest import base_config
    from tests.e2e.harness import start_proxy, write_config

    unused = socket.socket()
    unused.bind(("127.0.0.1", 0))
    port = unused.getsockname()[1]
    unused.close()
    daemon = start_proxy(write_config(tmp_path, base_config(port, certificate)), ["tls", "h2c"])
    try:
        client = H2Client(daemon.ports["h2c"])
        status, headers, body, _ = client.response(client.request("GET", "/"))
        assert status == 502
        assert b"connection_refused" in dict(headers)[b"proxy-status"]
        assert body.startswith(b"502")
        client.close()
    finally:
        daemon.stop()
