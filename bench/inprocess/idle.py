"""Python heap per idle HTTP/2 connection (tracemalloc over 1,000 H2Connections after the
client preface): `python bench/inprocess/idle.py`."""
import gc, os, pathlib, sys, tracemalloc
ROOT = os.environ.get("ROOT") or str(pathlib.Path(__file__).resolve().parents[2])
sys.path[:0] = [ROOT, ROOT + "/src"]
from h2proxy.config.model import Http2Config
from h2proxy.frontend.http2.connection import H2Connection
from twisted.internet.testing import MemoryReactorClock, StringTransport
from tests.frontend.frames import FrameFactory
import h2.connection, h2.config
clock = MemoryReactorClock()
# client preface bytes
c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
c.initiate_connection(); pre = c.data_to_send()
def make():
    conn = H2Connection(reactor=clock, handlerFactory=lambda s: None, settings=Http2Config(), idleTimeout=600, abortTimeout=15, secure=True, requestHeaderTimeout=10)
    t = StringTransport(); conn.makeConnection(t); conn.dataReceived(pre); t.clear()
    return conn, t
keep=[make() for _ in range(10)]
gc.collect()
tracemalloc.start(25)
s1 = tracemalloc.take_snapshot()
keep=[make() for _ in range(1000)]
gc.collect()
s2 = tracemalloc.take_snapshot()
stats = s2.compare_to(s1, "lineno")
tot = sum(st.size_diff for st in stats)
print("bytes per connection", tot/1000)
for st in sorted(stats, key=lambda s: -s.size_diff)[:25]:
    print(round(st.size_diff/1000), st.traceback[0])
