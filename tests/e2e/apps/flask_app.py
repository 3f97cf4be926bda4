"""A Flask application for gunicorn, as an operator's backend would be: streamed
downloads, chunked uploads, server-sent events, and a stream the test cuts.

Run as ``gunicorn -w 1 --threads 8 tests.e2e.apps.flask_app:app``: one process
with threads, so the SSE gates below are shared by every request.
"""

from __future__ import annotations

import hashlib
import threading

from flask import Flask, Response, request

from tests.e2e.apps.common import GATE_TIMEOUT, Gates, chunk

app = Flask(__name__)
gates = Gates(threading.Event)


@app.get("/stream")
def stream() -> Response:
    """C{count} chunks of C{size} bytes, each written as the generator yields it."""
    count = int(request.args.get("count", "16"))
    size = int(request.args.get("size", "65536"))
    return Response((chunk(index, size) for index in range(count)), mimetype="application/octet-stream")


@app.post("/upload")
def upload() -> dict:
    """The length and sha256 of the body, read as it arrives."""
    digest = hashlib.sha256()
    length = 0
    while True:
        data = request.stream.read(65536)
        if not data:
            break
        digest.update(data)
        length += len(data)
    return {"length": length, "sha256": digest.hexdigest(),
            "chunked": request.headers.get("Transfer-Encoding", "") == "chunked"}


@app.get("/events/<name>")
def events(name: str) -> Response:
    """Server-sent events 0..count-1; each after the first waits until the client
    has released it (POST /release/<name>/<index>), so an event can only arrive
    before the next is released if nothing between buffers it."""
    count = int(request.args.get("count", "3"))

    def generate():
        for index in range(count):
            if index and not gates.get(name, index).wait(GATE_TIMEOUT):
                return
            yield f"id: {index}\ndata: event {index}\n\n".encode()

    return Response(generate(), mimetype="text/event-stream", headers={"Cache-Control": "no-cache"})


@app.post("/release/<name>/<int:index>")
def release(name: str, index: int) -> str:
    gates.get(name, index).set()
    return "released\n"


@app.get("/hang-after-first")
def hang_after_first() -> Response:
    """One chunk, then nothing until the test kills the process."""

    def generate():
        yield chunk(0, 65536)
        threading.Event().wait(GATE_TIMEOUT)

    return Response(generate(), mimetype="application/octet-stream")
