"""In-memory request loop: batches of 16 GETs through H2Connection, bridge, pool; CPU of proxy side."""
import gc, os, pathlib, sys, time
ROOT = os.environ.get("ROOT") or str(pathlib.Path(__file__).resolve().parents[2])
sys.path[:0] = [ROOT, ROOT + "/src"]
from tests.integration.test_proxy_inmemory import Proxy
from tests.frontend.frames import requestHeaders

RESP = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 100
BATCH = int(sys.argv[2]) if len(sys.argv) > 2 else 16

def run(n):
    proxy = Proxy()
    client = proxy.client
    conn = client.conn
    clock = proxy.server.clock
    server = proxy.server
    hdrs = requestHeaders(b"/x", b"GET", ())
    cpu = 0.0
    tt = time.thread_time
    prof = PROF
    gcstat = [0, 0.0, 0.0]
    def cb(phase, info):
        if phase == "start":
            gcstat[2] = time.perf_counter()
        else:
            gcstat[0] += 1; gcstat[1] += time.perf_counter() - gcstat[2]
    done = 0
    gc.collect(); gc.freeze()
    import os
    if os.environ.get("NOGC"): gc.disable()
    gc.callbacks.append(cb)
    while done < n:
        for _ in range(BATCH):
            conn.send_headers(conn.get_next_available_stream_id(), hdrs, end_stream=True)
        data = conn.data_to_send()
        t = tt(); prof and prof.enable(); server.feed(data); clock.advance(0); prof and prof.disable(); cpu += tt() - t
        for proto, tr in proxy.endpoint.connections:
            if tr.value():
                tr.clear()
                t = tt(); prof and prof.enable(); proto.dataReceived(RESP); prof and prof.disable(); cpu += tt() - t
        t = tt(); prof and prof.enable(); clock.advance(0); prof and prof.disable(); cpu += tt() - t
        server.handlers.clear()
        out = server.output()
        events = conn.receive_data(out)
        for ev in events:
            if hasattr(ev, "flow_controlled_length") and ev.flow_controlled_length:
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            if type(ev).__name__ == "StreamEnded":
                done += 1
        d2 = conn.data_to_send()
        if d2:
            t = tt(); prof and prof.enable(); server.feed(d2); clock.advance(0); prof and prof.disable(); cpu += tt() - t
    gc.callbacks.remove(cb)
    gc.unfreeze(); gc.enable()
    return cpu / n * 1e6, gcstat[0] * 10000 / n, gcstat[1] * 10000 / n * 1e3

N = int(sys.argv[1]) if len(sys.argv) > 1 else 4800
PROF = None
if os.environ.get("PROFILE"):
    import cProfile, pstats
    PROF = cProfile.Profile()
    run(N)
    pstats.Stats(PROF).sort_stats(os.environ["PROFILE"]).print_stats(int(os.environ.get("ROWS", "45")))
    sys.exit()
best = None
for i in range(5):
    r = run(N)
    if best is None or r[0] < best[0]:
        best = r
print("us/req %.1f  gc collections/10k %.1f  gc ms/10k %.1f" % best)
