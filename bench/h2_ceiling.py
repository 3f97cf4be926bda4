"""The ceiling to design around: what the h2 library alone costs per small request.

No sockets, no reactor, no TLS: a client-side ``h2`` connection produces batches of
GET requests (HEADERS with END_STREAM) and a server-side one consumes them and
answers each with a response HEADERS and a 100-byte DATA frame. Only the server's
side is timed: ``receive_data`` + ``send_headers`` + ``send_data`` + ``data_to_send``,
which every HTTP/2 server built on h2 must pay per request whatever else it does.
The client's work (building requests, reading the answers so stream state stays
consistent) happens outside the timed part.

Run: ``python bench/h2_ceiling.py [--requests N] [--batch M]``; prints JSON with the
microseconds per request and the req/s one core could do at that cost.
"""

from __future__ import annotations

import argparse
import json
import time

import h2.config
import h2.connection
import h2.events

BODY = b"x" * 100
RESPONSE_HEADERS = [(":status", "200"), ("content-type", "application/octet-stream"),
                    ("content-length", "100"), ("server", "bench")]
#: Streams per connection before a fresh pair is made (stream ids must stay < 2**31).
STREAMS_PER_CONNECTION = 100_000


def pair() -> tuple[h2.connection.H2Connection, h2.connection.H2Connection]:
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    client.initiate_connection()
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    return client, server


def requests(client: h2.connection.H2Connection, count: int) -> bytes:
    for _ in range(count):
        stream_id = client.get_next_available_stream_id()
        client.send_headers(stream_id, [(":method", "GET"), (":scheme", "https"), (":authority", "localhost"),
                                        (":path", "/small"), ("user-agent", "h2load"),
                                        ("accept", "*/*")], end_stream=True)
    return client.data_to_send()


def serve(server: h2.connection.H2Connection, data: bytes) -> bytes:
    """The timed part: what a server on h2 must do for these requests."""
    for event in server.receive_data(data):
        if isinstance(event, h2.events.RequestReceived):
            server.send_headers(event.stream_id, RESPONSE_HEADERS)
            server.send_data(event.stream_id, BODY, end_stream=True)
    return server.data_to_send()


def measure(total: int, batch: int) -> dict:
    client, server = pair()
    served = 0
    spent = 0.0
    while served < total:
        if served and served % STREAMS_PER_CONNECTION < batch:
            client, server = pair()
        data = requests(client, batch)
        start = time.perf_counter()
        answer = serve(server, data)
        spent += time.perf_counter() - start
        for event in client.receive_data(answer):
            if isinstance(event, h2.events.DataReceived):
                client.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        server.receive_data(client.data_to_send())   # window credit back (not timed)
        server.data_to_send()
        served += batch
    return {"requests": served, "batch": batch, "us_per_request": spent / served * 1e6,
            "ceiling_rps": served / spent}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    print(json.dumps(measure(args.requests, args.batch)))


if __name__ == "__main__":
    main()
