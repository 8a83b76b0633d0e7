"""A local app for end-to-end tunnel tests: it echoes what reached it and serves bodies of any size. I/O.

Routes: `/echo` (any method: method, path, raw query, headers and body digest as JSON), `/bytes/{n}`
(n deterministic bytes), `/upload` (length and SHA-256 of the body), `/cookies` (two Set-Cookie headers),
`/slow?seconds=s`, `/redirect` (302 to /echo, not to be followed by the tunnel).
"""

from __future__ import annotations

import asyncio
import hashlib

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
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
    body = await request.body()
    return JSONResponse({"length": len(body), "sha256": hashlib.sha256(body).hexdigest()})


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


def create_echo_app() -> Starlette:
    """The app, ready for `tests.support.servers.serve_in_thread`."""
    return Starlette(
        routes=[
            Route("/echo", _echo, methods=_METHODS),
            Route("/bytes/{size:int}", _bytes),
            Route("/upload", _upload, methods=["POST", "PUT"]),
            Route("/cookies", _cookies),
            Route("/slow", _slow),
            Route("/redirect", _redirect),
        ]
    )
