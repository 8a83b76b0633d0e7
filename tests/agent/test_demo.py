"""The demo proxy in front of real apps on loopback: prefix, headers, bodies, redirects and error pages."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from agent.sample_app import create_app
from rewrite import CONTEXT_SCRIPT_ID
from tests.support.proxies import behind_demo_proxy
from tests.support.servers import RunningServer, closed_port, serve_in_thread

pytestmark = pytest.mark.integration

PREFIX = "/t3st1d"


async def _echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An upstream that answers with what it received, and takes its time on /slow."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/slow":
        await asyncio.sleep(1.5)
    seen = {
        "method": scope["method"],
        "raw_path": scope["raw_path"].decode("latin-1"),
        "query_string": scope["query_string"].decode("latin-1"),
        "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
        "body": body.decode("latin-1"),
    }
    payload = json.dumps(seen).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def _proxy(upstream_origin: str, *, timeout: float = 5.0) -> Any:
    """A demo proxy server in front of `upstream_origin`, configured with its own public origin."""
    return behind_demo_proxy(upstream_origin, prefix=PREFIX, timeout=timeout)


@pytest.fixture(scope="module")
def sample_proxy() -> Iterator[RunningServer]:
    """The demo proxy in front of the sample pet store, both on loopback."""
    with serve_in_thread(create_app()) as app, _proxy(app.origin) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def echo_proxy() -> Iterator[RunningServer]:
    """The demo proxy in front of an app that echoes the request it received."""
    with serve_in_thread(_echo_app) as app, _proxy(app.origin, timeout=0.3) as proxy:
        yield proxy


def _get(server: RunningServer, target: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(kwargs.pop("method", "GET"), server.origin + target, timeout=10, **kwargs)


def test_prefix_is_stripped(sample_proxy: RunningServer) -> None:
    """A request under the prefix reaches the app's own path."""
    response = _get(sample_proxy, f"{PREFIX}/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_request_passes_unchanged(echo_proxy: RunningServer) -> None:
    """Method, body, headers and the raw query reach the upstream as sent, with forwarding headers added."""
    response = _get(
        echo_proxy,
        f"{PREFIX}/echo/a%2Fb?q=x%20y&q=z+w&empty=&slash=%2F",
        method="PUT",
        content=b"payload \x00\xff",
        headers={"X-Custom": "kept", "Connection": "keep-alive, X-Hop", "X-Hop": "dropped"},
    )
    seen = response.json()
    headers = dict(seen["headers"])
    assert seen["method"] == "PUT"
    assert seen["raw_path"] == "/echo/a%2Fb"
    assert seen["query_string"] == "q=x%20y&q=z+w&empty=&slash=%2F"
    assert seen["body"] == "payload \x00\xff"
    assert headers["x-custom"] == "kept"
    assert "x-hop" not in headers
    assert headers["x-forwarded-prefix"] == PREFIX
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["host"] == f"127.0.0.1:{echo_proxy.port}"


def test_redirect_and_cookie_are_rewritten(sample_proxy: RunningServer) -> None:
    """A 303 from the app is passed on, not followed, with Location and the cookie's Path under the prefix."""
    response = _get(sample_proxy, f"{PREFIX}/login")
    assert response.status_code == 303
    assert response.headers["location"] == f"{PREFIX}/api/items"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("session=demo-session")
    assert f"Path={PREFIX}" in cookie
    assert "Path=/;" not in cookie


def test_swagger_ui_page_is_rewritten(sample_proxy: RunningServer) -> None:
    """Swagger UI's page names its assets and OpenAPI document under the prefix and carries the context."""
    response = _get(sample_proxy, f"{PREFIX}/docs")
    page = response.text
    assert response.status_code == 200
    assert f'id="{CONTEXT_SCRIPT_ID}"' in page
    assert f'href="{PREFIX}/static/swagger-ui/swagger-ui.css"' in page
    assert f'src="{PREFIX}/static/swagger-ui/swagger-ui-bundle.js"' in page
    assert f"'{PREFIX}/openapi.json'" in page
    assert int(response.headers["content-length"]) == len(response.content)


def test_static_asset_passes(sample_proxy: RunningServer) -> None:
    """A stylesheet served by the app comes through the proxy whole."""
    response = _get(sample_proxy, f"{PREFIX}/static/swagger-ui/swagger-ui.css")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/css")
    assert len(response.content) > 100_000


def test_openapi_document_gets_server(sample_proxy: RunningServer) -> None:
    """The OpenAPI document names the prefix as its server, so "Try it out" stays in the tunnel."""
    document = _get(sample_proxy, f"{PREFIX}/openapi.json").json()
    assert document["servers"][0]["url"] == PREFIX
    assert "/api/items" in document["paths"]


def test_post_body_reaches_app(sample_proxy: RunningServer) -> None:
    """A JSON POST is forwarded with its body and answered by the app."""
    response = _get(sample_proxy, f"{PREFIX}/api/items", method="POST", json={"name": "Fido", "price": 10})
    assert response.status_code == 201
    assert response.json()["name"] == "Fido"


@pytest.mark.parametrize("target", ["/", "/health", "/t3st1dx/health", f"{PREFIX}/../health"])
def test_outside_prefix_is_404(sample_proxy: RunningServer, target: str) -> None:
    """A path outside the prefix is answered 404 by the proxy itself, never forwarded."""
    response = httpx.get(sample_proxy.origin + target, timeout=10)
    assert response.status_code == 404
    assert "only serves paths under /t3st1d/" in response.text


def test_closed_upstream_is_502() -> None:
    """When nothing listens on the upstream port, the proxy answers 502 naming that port."""
    port = closed_port()
    with _proxy(f"http://127.0.0.1:{port}") as proxy:
        response = _get(proxy, f"{PREFIX}/docs")
    assert response.status_code == 502
    assert f"port {port}" in response.text
    assert "Traceback" not in response.text


def test_slow_upstream_is_504(echo_proxy: RunningServer) -> None:
    """An upstream that does not answer within the proxy's timeout gets a 504 page."""
    response = _get(echo_proxy, f"{PREFIX}/slow")
    assert response.status_code == 504
    assert "did not answer in time" in response.text


def test_compressed_page_is_rewritten() -> None:
    """A gzip-compressed page is decoded, rewritten and sent compressed again, with a matching length."""
    links = "".join(f'<a href="/page/{n}">page {n}</a>\n' for n in range(200))

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(f"<!doctype html><html><head><title>t</title></head><body>{links}</body></html>")

    app = Starlette(routes=[Route("/", page)], middleware=[Middleware(GZipMiddleware, minimum_size=100)])
    with serve_in_thread(app) as upstream, _proxy(upstream.origin) as proxy:
        response = _get(proxy, f"{PREFIX}/", headers={"Accept-Encoding": "gzip"})
    assert response.headers["content-encoding"] == "gzip"
    assert int(response.headers["content-length"]) == response.num_bytes_downloaded
    assert f'<a href="{PREFIX}/page/199">' in response.text
    assert '<a href="/page/' not in response.text
