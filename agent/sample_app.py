"""A small pet-store API with self-hosted Swagger UI, used by `tunnel demo`, the fixtures and the tests.

Building the app performs no I/O; serving it reads Swagger UI's assets from the installed
`swagger_ui_bundle` package, so no page of it ever names a CDN.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

__all__ = ["SWAGGER_UI_DIR", "Item", "NewItem", "create_app"]

# Imported by name: the package ships no type information, and only this one attribute is needed.
SWAGGER_UI_DIR = Path(str(importlib.import_module("swagger_ui_bundle").swagger_ui_path))
"""Swagger UI's distribution files, as installed by the `swagger-ui-bundle` package."""

_SWAGGER_JS = "/static/swagger-ui/swagger-ui-bundle.js"
_SWAGGER_CSS = "/static/swagger-ui/swagger-ui.css"
_FAVICON = "/static/swagger-ui/favicon-32x32.png"
# ReDoc ships in no Python package we install; the page is captured as a fixture, never opened in a browser.
_REDOC_JS = "/static/redoc/redoc.standalone.js"
_OAUTH2_REDIRECT = "/docs/oauth2-redirect"


class NewItem(BaseModel):
    """What a client sends to add a pet."""

    name: str = Field(min_length=1, max_length=60, examples=["Rex"])
    kind: str = Field(default="dog", examples=["dog"])
    price: float = Field(ge=0, examples=[120.0])


class Item(NewItem):
    """A pet in the store."""

    id: int


_SEED = (
    Item(id=1, name="Rex", kind="dog", price=120.0),
    Item(id=2, name="Tom", kind="cat", price=80.0),
    Item(id=3, name="Nemo", kind="fish", price=5.5),
)


def create_app() -> FastAPI:
    """Build the pet-store app: a JSON API, Swagger UI at /docs, ReDoc at /redoc, a login redirect.

    Each call returns a fresh app with its own in-memory store, so tests do not share state.

    Returns:
        The FastAPI application.
    """
    # Swagger UI 4 (the version the package bundles) renders OpenAPI 3.0 only; FastAPI's schemas read the
    # same under 3.0 for the simple models here.
    app = FastAPI(
        title="Pet Store",
        version="1.0.0",
        description="A sample app for the tunnel: every page here uses absolute paths.",
        docs_url=None,
        redoc_url=None,
    )
    app.openapi_version = "3.0.3"
    app.mount("/static/swagger-ui", StaticFiles(directory=SWAGGER_UI_DIR), name="swagger-ui")
    items: dict[int, Item] = {item.id: item for item in _SEED}

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="Pet Store - Swagger UI",
            swagger_js_url=_SWAGGER_JS,
            swagger_css_url=_SWAGGER_CSS,
            swagger_favicon_url=_FAVICON,
            oauth2_redirect_url=_OAUTH2_REDIRECT,
            # The default validator badge would load an image from validator.swagger.io.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get(_OAUTH2_REDIRECT, include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url="/openapi.json",
            title="Pet Store - ReDoc",
            redoc_js_url=_REDOC_JS,
            redoc_favicon_url=_FAVICON,
            with_google_fonts=False,
        )

    @app.get("/api/items", tags=["items"])
    def list_items() -> list[Item]:
        """List every pet."""
        return list(items.values())

    @app.get("/api/items/{item_id}", tags=["items"])
    def get_item(item_id: int) -> Item:
        """Fetch one pet by id."""
        if item_id not in items:
            raise HTTPException(status_code=404, detail="no such item")
        return items[item_id]

    @app.post("/api/items", status_code=201, tags=["items"])
    def create_item(new: NewItem) -> Item:
        """Add a pet."""
        item = Item(id=max(items, default=0) + 1, **new.model_dump())
        items[item.id] = item
        return item

    @app.get("/login", tags=["session"])
    def login() -> RedirectResponse:
        """Start a session and send the browser to the item list, the way a login form's handler does."""
        response = RedirectResponse("/api/items", status_code=303)
        response.set_cookie("session", "demo-session", path="/", httponly=True, samesite="lax")
        return response

    @app.get("/health", tags=["session"])
    def health() -> dict[str, str]:
        """Say the app is up."""
        return {"status": "ok"}

    return app
