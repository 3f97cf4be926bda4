"""One worker's serving code in this process, for worker_cpu.sh: the config's first listener
on 127.0.0.1 (a free port, printed), the heap settled as a worker settles it, and optionally a
cProfile written at exit.

    python bench/inprocess/serve.py CONFIG [PROFILE_OUT]

Environment: GCT=young,middle,old sets other collector thresholds, NOGC=1 turns the
collector off (experiments only). At exit it prints the collections made and their CPU time.
"""
import cProfile, gc, os, pathlib, signal, sys, time

ROOT = os.environ.get("ROOT") or str(pathlib.Path(__file__).resolve().parents[2])
sys.path[:0] = [ROOT + "/src"]

from twisted.internet import endpoints, reactor

from h2proxy.config.load import load_config
from h2proxy.worker.server import ProxyServer
from h2proxy.worker.process import settle_heap

config = load_config(sys.argv[1])
out = sys.argv[2] if len(sys.argv) > 2 else ""
server = ProxyServer(config, reactor)
port = endpoints.TCP4ServerEndpoint(reactor, 0, backlog=4096, interface="127.0.0.1").listen(
    server.factoryFor(config.listeners[0])
)
port.addCallback(lambda p: print(f"listener on 127.0.0.1:{p.getHost().port}", flush=True))
for s in (signal.SIGINT, signal.SIGTERM):
    signal.signal(s, lambda *_: reactor.callFromThread(reactor.stop))
settle_heap()
if os.environ.get("GCT"):
    gc.set_threshold(*map(int, os.environ["GCT"].split(",")))
if os.environ.get("NOGC"):
    gc.disable()
collections = {"n": [0, 0, 0], "t": [0.0, 0.0, 0.0], "start": 0.0}


def count(phase, info):
    if phase == "start":
        collections["start"] = time.thread_time()
    else:
        collections["n"][info["generation"]] += 1
        collections["t"][info["generation"]] += time.thread_time() - collections["start"]


gc.callbacks.append(count)
profiler = cProfile.Profile() if out else None
if profiler:
    profiler.enable()
reactor.run(installSignalHandlers=False)
if profiler:
    profiler.disable()
    profiler.dump_stats(out)
print("gc collections %s seconds %s" % (collections["n"], [round(x, 3) for x in collections["t"]]), flush=True)
