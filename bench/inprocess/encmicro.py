"""StaticTableEncoder.encode of origin.c's response as the client gets it, with a new request id each time."""
import os, pathlib, sys, time, uuid
ROOT = os.environ.get("ROOT") or str(pathlib.Path(__file__).resolve().parents[2])
sys.path[:0] = [ROOT, ROOT + "/src"]
from h2proxy.frontend.http2.codec.fieldcodec import StaticTableEncoder
e = StaticTableEncoder()
ids = [uuid.uuid4().hex.encode() for _ in range(20000)]
def run():
    t = time.thread_time()
    for rid in ids:
        e.encode([(b":status", b"200"), (b"content-type", b"application/octet-stream"), (b"content-length", b"100"), (b"x-request-id", rid)])
    return (time.thread_time() - t) / len(ids) * 1e6
print("us per response head: %.2f" % min(run() for _ in range(7)))
