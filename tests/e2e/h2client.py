"""A blocking HTTP/2 client on h2 for end-to-end tests that need frame-level control
(stop reading, reset a stream, measure what the server let through).

Every read has a deadline; nothing waits without bound.
"""

from __future__ import annotations

import socket
import ssl
import time

import h2.config
import h2.connection
import h2.events
import h2.settings


class GoawayTolerantStateMachine(h2.connection.H2ConnectionStateMachine):
    """h2 4.x closes a client connection as soon as a GOAWAY arrives, so the responses
    of the streams the server promised to finish (id <= last stream id) raise
    ProtocolError. RFC 9113 section 6.8 keeps those streams alive; so does this: a
    received GOAWAY leaves the connection open (the client opens no new stream)."""

    _transitions = {
        **h2.connection.H2ConnectionStateMachine._transitions,
        (h2.connection.ConnectionState.CLIENT_OPEN, h2.connection.ConnectionInputs.RECV_GOAWAY):
            (None, h2.connection.ConnectionState.CLIENT_OPEN),
    }


class H2Client:
    def __init__(
        self,
        port: int,
        tls: bool = False,
        window: int = 65535,
        host: str = "127.0.0.1",
        recv_buffer: int | None = None,
    ) -> None:
        raw = socket.create_connection((host, port), timeout=10)
        if recv_buffer is not None:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, recv_buffer)
        if tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            context.set_alpn_protocols(["h2"])
            raw = context.wrap_socket(raw, server_hostname="localhost")
        self.sock = raw
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.state_machine = GoawayTolerantStateMachine()
        self.conn.local_settings = h2.settings.Settings(
            client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window}
        )
        self.conn.initiate_connection()
        self.flush()
        self.events: list = []
        self.closed = False
        #: Return window credit for every DATA frame read (set False to hold it back).
        self.auto_credit = True

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, method: str, path: str, headers=(), end_stream: bool = True,
                authority: str = "localhost") -> int:
        stream_id = self.conn.get_next_available_stream_id()
        self.conn.send_headers(
            stream_id,
            [(":method", method), (":scheme", "https"), (":authority", authority), (":path", path),
             *headers],
            end_stream=end_stream,
        )
        self.flush()
        return stream_id

    def receive(self, timeout: float) -> list:
        """Read once (up to C{timeout} seconds); return the h2 events it produced."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, TimeoutError):
            return []
        if not data:
            self.closed = True
            return []
        events = self.conn.receive_data(data)
        if self.auto_credit:
            for event in events:
                if isinstance(event, h2.events.DataReceived) and event.flow_controlled_length:
                    self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        self.flush()
        self.events.extend(events)
        return events

    def run_until(self, predicate, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.closed:
                raise AssertionError(f"condition not met; events: {self.events[-10:]!r}")
            self.receive(min(remaining, 1.0))

    def response(self, stream_id: int, timeout: float = 30.0):
        """Status, headers and body of a stream, read to its end."""
        body = bytearray()
        status = None
        headers = []
        done = False
        reset = None
        deadline = time.monotonic() + timeout
        while not done:
            if time.monotonic() > deadline:
                raise AssertionError(f"stream {stream_id} did not finish")
            for event in self.receive(1.0):
                if getattr(event, "stream_id", None) != stream_id:
                    continue
                if isinstance(event, h2.events.ResponseReceived):
                    headers = event.headers
                    status = int(dict(headers)[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data
                elif isinstance(event, h2.events.StreamEnded):
                    done = True
                elif isinstance(event, h2.events.StreamReset):
                    reset = event.error_code
                    done = True
            self.flush()
            if self.closed:
                break
        return status, headers, bytes(body), reset

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
