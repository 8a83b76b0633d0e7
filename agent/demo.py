"""A minimal reverse proxy built on the rewriting core's two calls: the demo behind `tunnel demo`. Does I/O.

`DemoProxy` is a plain ASGI application. For each request under the prefix it calls `rewrite_request`,
forwards the result with one shared `httpx.AsyncClient` (redirects not followed, the body read whole), and
sends back what `rewrite_response` makes of the answer. It is also the model for using the filter in any
other proxy.
"""

from __future__ import annotations

import html
import logging
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import httpx

from rewrite import RewriteConfig, rewrite_request, rewrite_response

__all__ = ["DEFAULT_TIMEOUT", "DemoProxy", "Scope"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DEFAULT_TIMEOUT = 25.0
"""Seconds to wait for the upstream; under API Gateway's 30 s integration timeout, as the gateway's is."""

_log = logging.getLogger(__name__)


class DemoProxy:
    """Forward requests under `config.prefix` to `config.upstream_origin`, rewriting both directions.

    Args:
        config: The tunnel's prefix and origins.
        client: The client to forward with. When None, the proxy creates one in the ASGI lifespan (or on
            first use, for servers that run no lifespan) and closes it at shutdown; an injected client
            belongs to the caller.
        timeout: Seconds to wait for the upstream before answering 504.
    """

    def __init__(
        self,
        config: RewriteConfig,
        *,
        client: httpx.AsyncClient | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.config = config
        self._client = client
        self._owns_client = client is None
        self._timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection: lifespan events, or one HTTP request."""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)
        else:
            # WebSockets are not proxied by the demo; refusing the handshake answers 403.
            await send({"type": "websocket.close", "code": 1008})

    async def aclose(self) -> None:
        """Close the client if this proxy created it."""
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    def _get_client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout, follow_redirects=False)
        return self._client

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._get_client()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        # raw_path keeps the client's own percent-encoding; the query string is passed as received.
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
        query: bytes = scope.get("query_string", b"")
        target = raw_path.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")
        headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]]
        client_addr = scope.get("client")
        upstream = rewrite_request(
            scope["method"], target, headers, self.config, client_ip=client_addr[0] if client_addr else None
        )
        if upstream is None:
            await _send_page(
                send, 404, "Not found", f"This proxy only serves paths under {self.config.prefix}/."
            )
            return
        body = await _read_body(receive)
        port = httpx.URL(self.config.upstream_origin).port
        try:
            request = self._get_client().build_request(
                upstream.method,
                httpx.URL(self.config.upstream_origin).copy_with(raw_path=upstream.target.encode("latin-1")),
                headers=upstream.headers,
                content=body,
                timeout=self._timeout,
            )
            response = await self._get_client().send(request, stream=True, follow_redirects=False)
            try:
                # Raw bytes: rewrite_response decodes Content-Encoding itself and encodes the result back.
                raw_body = b"".join([chunk async for chunk in response.aiter_raw()])
            finally:
                await response.aclose()
        except httpx.TimeoutException:
            await _send_page(
                send, 504, "Gateway timeout", f"The local service on port {port} did not answer in time."
            )
            return
        except httpx.TransportError:  # refused, reset, or not HTTP: nothing usable answered
            await _send_page(send, 502, "Bad gateway", f"Nothing answered on local port {port}.")
            return
        except Exception:
            request_id = uuid.uuid4().hex[:12]
            _log.exception("request %s to %s failed", request_id, upstream.url)
            await _send_page(send, 500, "Internal error", f"Request id {request_id}.")
            return
        response_headers = [
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in response.headers.raw
        ]
        result = rewrite_response(response_headers, raw_body, self.config)
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": [
                    (name.encode("latin-1"), value.encode("latin-1")) for name, value in result.headers
                ],
            }
        )
        await send({"type": "http.response.body", "body": result.body})


async def _read_body(receive: Receive) -> bytes:
    """The whole request body; fine for a demo, a real proxy would stream it."""
    parts: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(parts)


async def _send_page(send: Send, status: int, title: str, text: str) -> None:
    """A short HTML page that says what went wrong and nothing about the proxy's internals."""
    heading = f"{status} {html.escape(title)}"
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{heading}</title></head>"
        f"<body><h1>{heading}</h1><p>{html.escape(text)}</p></body></html>\n"
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/html; charset=utf-8"),
                (b"content-length", str(len(page)).encode()),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": page})
