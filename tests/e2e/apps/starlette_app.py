"""A Starlette application for uvicorn, with the same endpoints as
L{tests.e2e.apps.flask_app} (see there)."""

from __future__ import annotations

import asyncio
import hashlib

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route

from tests.e2e.apps.common import GATE_TIMEOUT, Gates, chunk

gates = Gates(asyncio.Event)


async def stream(request: Request) -> StreamingResponse:
    count = int(request.query_params.get("count", "16"))
    size = int(request.query_params.get("size", "65536"))

    async def generate():
        for index in range(count):
            yield chunk(index, size)

    return StreamingResponse(generate(), media_type="application/octet-stream")


async def upload(request: Request) -> JSONResponse:
    digest = hashlib.sha256()
    length = 0
    async for data in request.stream():
        digest.update(data)
        length += len(data)
    return JSONResponse({"length": length, "sha256": digest.hexdigest(),
                         "chunked": request.headers.get("transfer-encoding", "") == "chunked"})


async def events(request: Request) -> StreamingResponse:
    name = request.path_params["name"]
    count = int(request.query_params.get("count", "3"))

    async def generate():
        for index in range(count):
            if index:
                try:
                    await asyncio.wait_for(gates.get(name, index).wait(), GATE_TIMEOUT)
                except asyncio.TimeoutError:
                    return
            yield f"id: {index}\ndata: event {index}\n\n".encode()

    return StreamingResponse(generate(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


async def release(request: Request) -> PlainTextResponse:
    gates.get(request.path_params["name"], int(request.path_params["index"])).set()
    return PlainTextResponse("released\n")


async def hang_after_first(request: Request) -> StreamingResponse:
    async def generate():
        yield chunk(0, 65536)
        await asyncio.sleep(GATE_TIMEOUT)

    return StreamingResponse(generate(), media_type="application/octet-stream")


app = Starlette(routes=[
    Route("/stream", stream),
    Route("/upload", upload, methods=["POST"]),
    Route("/events/{name}", events),
    Route("/release/{name}/{index:int}", release, methods=["POST"]),
    Route("/hang-after-first", hang_after_first),
])
