"""A local app for end-to-end tunnel tests: it echoes what reached it and serves bodies of any size. I/O.

Routes: `/echo` (any method: method, path, raw query, headers and body digest as JSON), `/bytes/{n}`
(n deterministic bytes), `/stream/{n}` (the same bytes streamed in 64 KB pieces, length unannounced),
`/broken/{n}` (n bytes streamed, then the connection breaks), `/page/{n}` (an HTML page of about n bytes
with absolute links, streamed), `/upload` (length and SHA-256 of the body, read as it streams),
`/cookies` (two Set-Cookie headers), `/slow?seconds=s`, `/redirect` (302 to /echo, not to be followed by
the tunnel). `create_echo_app(gate)` adds `/events`: one server-sent event, then a second one once `gate`
is set (or 10 s have passed), to show that a stream is passed on as it is produced.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

__all__ = ["create_echo_app", "pattern_bytes"]

_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]


def pattern_bytes(size: int) -> bytes:
    """`size` bytes that cover every byte value and differ from one block to the next."""
    block = bytes(range(256))
    whole, rest = divmod(size, 256)
    return b"".join(block[i % 256 :] + block[: i % 256] for i in range(whole)) + block[:rest]


async def _echo(request: Request) -> Response:
    body = await request.body()
    return JSONResponse(
        {
            "method": request.method,
            "path": request.url.path,
            "query": request.scope["query_string"].decode("latin-1"),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.scope["headers"]],
            "body_length": len(body),
            "body_sha256": hashlib.sha256(body).hexdigest(),
        }
    )


async def _bytes(request: Request) -> Response:
    return Response(pattern_bytes(int(request.path_params["size"])), media_type="application/octet-stream")


async def _upload(request: Request) -> Response:
    digest = hashlib.sha256()
    length = 0
    async for piece in request.stream():
        digest.update(piece)
        length += len(piece)
    return JSONResponse({"length": length, "sha256": digest.hexdigest()})


def _pieces(size: int, piece: int = 64 * 1024) -> Iterator[bytes]:
    block = pattern_bytes(piece)  # a multiple of 256: every piece continues the pattern
    for start in range(0, size, piece):
        yield block[: min(piece, size - start)]


async def _stream(request: Request) -> Response:
    return StreamingResponse(_pieces(int(request.path_params["size"])), media_type="application/octet-stream")


async def _broken(request: Request) -> Response:
    size = int(request.path_params["size"])

    async def pieces() -> AsyncIterator[bytes]:
        for piece in _pieces(size):
            yield piece
        raise ConnectionResetError("the app broke off the body")

    return StreamingResponse(pieces(), media_type="application/octet-stream")


async def _page(request: Request) -> Response:
    size = int(request.path_params["size"])
    row = '<p><a href="/echo">echo</a> <img src="/bytes/10"></p>\n'

    def pieces() -> Iterator[str]:
        yield "<!doctype html><html><head><title>page</title></head><body>\n"
        yield from (row for _ in range(size // len(row)))
        yield "</body></html>\n"

    return StreamingResponse(pieces(), media_type="text/html; charset=utf-8")


async def _cookies(request: Request) -> Response:
    response = JSONResponse({"ok": True})
    response.set_cookie("session", "s1", path="/")
    response.set_cookie("theme", "dark", path="/settings")
    return response


async def _slow(request: Request) -> Response:
    await asyncio.sleep(float(request.query_params.get("seconds", "1")))
    return JSONResponse({"slept": True})


async def _redirect(request: Request) -> Response:
    return RedirectResponse("/echo", status_code=302)


def _events(gate: threading.Event) -> Callable[[Request], Awaitable[Response]]:
    async def events(request: Request) -> Response:
        async def stream() -> AsyncIterator[str]:
            yield "data: first\n\n"
            opened = await asyncio.to_thread(gate.wait, 10)
            yield f"data: {'second' if opened else 'second, after waiting in vain'}\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream")

    return events


def create_echo_app(gate: threading.Event | None = None) -> Starlette:
    """The app, ready for `tests.support.servers.serve_in_thread`.

    Args:
        gate: Releases the second event of `/events`.
    """
    return Starlette(
        routes=[
            Route("/stream/{size:int}", _stream),
            Route("/broken/{size:int}", _broken),
            Route("/page/{size:int}", _page),
            Route("/events", _events(gate or threading.Event())),
            Route("/echo", _echo, methods=_METHODS),
            Route("/bytes/{size:int}", _bytes),
            Route("/upload", _upload, methods=["POST", "PUT"]),
            Route("/cookies", _cookies),
            Route("/slow", _slow),
            Route("/redirect", _redirect),
        ]
    )
