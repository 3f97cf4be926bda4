"""In-memory upload: a 16 MiB POST in 16 KiB DATA frames through H2Connection, bridge and pool to
a StringTransport backend; proxy-side CPU per MiB (best of 3), then a cProfile:
`python bench/inprocess/w4.py`."""
import cProfile, os, pathlib, pstats, sys, time
ROOT = os.environ.get("ROOT") or str(pathlib.Path(__file__).resolve().parents[2])
sys.path[:0] = [ROOT, ROOT + "/src"]
from tests.integration.test_proxy_inmemory import Proxy
from tests.frontend.frames import requestHeaders
MiB = 1 << 20
SIZE = 16 * MiB
def run(prof=None):
    proxy = Proxy()
    c = proxy.client
    sid = c.request(b"/up", b"POST", extra=[(b"content-length", str(SIZE).encode())], end=False)
    proto, tr = proxy.backend()
    chunk = b"d" * 16384
    sent = 0
    cpu = 0.0
    while sent < SIZE:
        room = min(c.conn.local_flow_control_window(sid), SIZE - sent)
        n = 0
        while room >= 1 and n < 16:
            k = min(16384, room)
            c.conn.send_data(sid, chunk[:k], end_stream=(sent + k == SIZE)); sent += k; room -= k; n += 1
        data = c.conn.data_to_send()
        t = time.thread_time()
        if prof: prof.enable()
        proxy.server.feed(data); proxy.server.clock.advance(0)
        if prof: prof.disable()
        cpu += time.thread_time() - t
        tr.clear()
        out = proxy.server.output()
        if out: c.conn.receive_data(out)
    return cpu / 16 * 1e6
print("us per MiB: %.0f" % min(run() for _ in range(3)))
p = cProfile.Profile(); run(p)
pstats.Stats(p).sort_stats("tottime").print_stats(18)
