"""The worker gives static routes a threaded reader, and stopping the worker joins
its threads and closes every file a response still held."""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock

from h2proxy.static.reader import ThreadedIO
from h2proxy.worker.server import ProxyServer
from tests.config.minimal import load, route


def test_worker_stop_closes_the_files_left_open(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"a")
    config = load(route(f"""\
        - path: /static
          static:
            root: {tmp_path}
        """))
    reactor = MemoryReactorClock()
    server = ProxyServer(config, reactor)
    assert isinstance(server.context.staticIO, ThreadedIO)
    held = server.context.staticIO.files.open(str(tmp_path / "a.txt").encode())
    for stop, args, kwargs in reactor.triggers["during"]["shutdown"]:
        stop(*args, **kwargs)
    assert held.closed and len(server.context.staticIO.files) == 0
