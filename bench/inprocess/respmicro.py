"""H2Connection alone on a StringTransport: server CPU per response, small and large bodies.

Batches of 16 GETs answered at once by an in-memory handler with a 100-byte body,
then single GETs answered with a 1 MiB body (the client's windows are wide open, so
the send loop, not flow control, sets the pace). Prints the best of 5 runs in
microseconds per request for each. Usage: respmicro.py [small_requests] [large_requests]
"""
import os, pathlib, sys, time
ROOT = os.environ.get("ROOT") or str(pathlib.Path(__file__).resolve().parents[2])
sys.path[:0] = [ROOT, ROOT + "/src"]
from h2proxy.config.model import Http2Config
from h2proxy.message import ResponseHead
from tests.frontend.frames import requestHeaders
from tests.frontend.support import Client, RecordingHandler, Server

BIG_WINDOW = 2**31 - 1


def handlerFor(size):
    body = b"x" * size
    head = ResponseHead(200, ((b"content-length", b"%d" % size),))

    class Responder(RecordingHandler):
        def requestEnded(self, trailers):
            self.stream.writeHeaders(head)
            self.stream.write(body)
            self.stream.finish()

    return Responder


def run(n, size, batch):
    server = Server(settings=Http2Config(initial_window_size=BIG_WINDOW - 1, connection_window_size=BIG_WINDOW - 1), handlerClass=handlerFor(size))
    client = Client(server, settings={4: BIG_WINDOW})
    client.conn.increment_flow_control_window(BIG_WINDOW - 65535)
    client.flush()
    conn = client.conn
    hdrs = requestHeaders(b"/x", b"GET", ())
    tt = time.thread_time
    cpu = 0.0
    done = 0
    while done < n:
        for _ in range(batch):
            conn.send_headers(conn.get_next_available_stream_id(), hdrs, end_stream=True)
        data = conn.data_to_send()
        while data:
            t = tt()
            server.feed(data)
            server.clock.advance(0)
            out = server.output()
            while not out and server.clock.getDelayedCalls():
                server.clock.advance(0)
                out = server.output()
            cpu += tt() - t
            for event in conn.receive_data(out):
                length = getattr(event, "flow_controlled_length", 0)
                if length:
                    conn.acknowledge_received_data(length, event.stream_id)
                if type(event).__name__ == "StreamEnded":
                    done += 1
            data = conn.data_to_send()
        server.handlers.clear()
    return cpu / done * 1e6


SMALL = int(sys.argv[1]) if len(sys.argv) > 1 else 3200
LARGE = int(sys.argv[2]) if len(sys.argv) > 2 else 200
small = min(run(SMALL, 100, 16) for _ in range(5)) if SMALL else 0.0
large = min(run(LARGE, 1024 * 1024, 1) for _ in range(5)) if LARGE else 0.0
print("us/req small(100 B) %.1f  large(1 MiB) %.1f" % (small, large))
