"""ServerConnection: 16 DATA frames of 16 KiB then data_to_send(), CPU per frame (best of 7)."""
import os, pathlib, sys, time
ROOT = os.environ.get("ROOT") or str(pathlib.Path(__file__).resolve().parents[2])
sys.path[:0] = [ROOT, ROOT + "/src"]
import h2.config, h2.connection
from h2proxy.frontend.http2.codec.machine import ServerConnection
from tests.frontend.frames import requestHeaders
client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
client.initiate_connection()
client.update_settings({4: 2**31 - 1})
client.increment_flow_control_window(2**31 - 1 - 65535)
client.send_headers(1, requestHeaders(b"/", b"GET"), end_stream=True)
server = ServerConnection(local_settings={}, header_list_hard_limit=65536)
server.initiate_connection()
server.receive_data(client.data_to_send())
server.send_headers(1, [(b":status", b"200")])
server.data_to_send()
chunk = memoryview(b"x" * (256 * 1024))
def run(passes=500):
    t = time.thread_time()
    for _ in range(passes):
        for i in range(16):
            server.send_data(1, chunk[i * 16384:(i + 1) * 16384])
        server.data_to_send()
    return (time.thread_time() - t) / passes / 16 * 1e6
print("us per 16 KiB frame: %.2f" % min(run() for _ in range(7)))
