"""Serve the hand-written SPA in `fixtures/spa/` with a tiny JSON API, as a Starlette app. Reads files.

Unknown paths that do not look like files get `index.html` (so deep links such as `/about` work, as with
any SPA host); unknown paths that do look like files get 404.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

__all__ = ["SPA_ITEMS", "create_spa_app"]

SPA_ITEMS = (
    {"id": 1, "name": "Rex", "kind": "dog"},
    {"id": 2, "name": "Tom", "kind": "cat"},
    {"id": 3, "name": "Nemo", "kind": "fish"},
)
"""What `/api/items` answers."""

# Explicit types: the platform's mimetypes table differs between systems, and a module script is only run
# when served with a JavaScript type (HTML Standard, "fetch a single module script").
_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".woff2": "font/woff2",
    ".json": "application/json",
}


def create_spa_app(root: Path) -> Starlette:
    """Build an app that serves the SPA under `root` and its API.

    Args:
        root: The SPA's directory (`fixtures/spa`), holding `index.html`.

    Returns:
        The Starlette application.
    """
    root = root.resolve()
    index = root / "index.html"

    async def items(request: Request) -> Response:
        return JSONResponse(list(SPA_ITEMS))

    async def item(request: Request) -> Response:
        wanted = request.path_params["item_id"]
        found = next((entry for entry in SPA_ITEMS if entry["id"] == wanted), None)
        if found is None:
            return JSONResponse({"detail": "no such item"}, status_code=404)
        return JSONResponse(found)

    async def status(request: Request) -> Response:
        return JSONResponse({"status": "ok", "items": len(SPA_ITEMS)})

    async def no_api(request: Request) -> Response:
        return JSONResponse({"detail": "not found"}, status_code=404)

    async def files(request: Request) -> Response:
        path = request.path_params["path"]
        candidate = (root / path).resolve()
        # resolve() folds "..", so anything outside root (or a symlink out of it) is refused here.
        if candidate.is_relative_to(root) and candidate.is_file():
            return FileResponse(candidate, media_type=_MEDIA_TYPES.get(candidate.suffix))
        if PurePosixPath(path).suffix:
            return PlainTextResponse("not found", status_code=404)
        return FileResponse(index, media_type=_MEDIA_TYPES[".html"])

    return Starlette(
        routes=[
            Route("/api/items", items),
            Route("/api/items/{item_id:int}", item),
            Route("/api/status", status),
            Route("/api/{rest:path}", no_api),
            Route("/{path:path}", files),
        ]
    )
