"""`forward()`: replays one tunnelled request against the local app (httpx) and returns its answer. Does I/O.

The request goes out as the gateway sent it (method, raw target, headers minus hop-by-hop ones, body); the
answer comes back as it left the local app: redirects are not followed and the body is read raw, still
content-encoded, so the gateway's rewriter sees exactly what a browser would. Local failures become protocol
`error` messages with the code the gateway turns into its public page (DESIGN.md, "Gateway behaviour").
"""

from __future__ import annotations

import asyncio
import time
from typing import Final
from urllib.parse import quote

import httpx

from transport.messages import ErrorMessage, Headers, HttpRequest, HttpResponse

__all__ = ["HOP_BY_HOP_HEADERS", "forward", "strip_hop_by_hop"]

#: RFC 9110 section 7.6.1 and DESIGN.md: headers that describe one connection, never forwarded.
HOP_BY_HOP_HEADERS: Final[frozenset[str]] = frozenset(
    {"connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "proxy-connection"}
)

_ASCII_PRINTABLE: Final = "".join(chr(code) for code in range(0x21, 0x7F))


def strip_hop_by_hop(headers: Headers) -> Headers:
    """Drop hop-by-hop headers: the fixed set, `Proxy-*`, and any header the `Connection` header names.

    Args:
        headers: Lower-case (name, value) pairs.

    Returns:
        The end-to-end headers, in their order, repeats kept.
    """
    named = {
        token.strip().lower()
        for name, value in headers
        if name == "connection"
        for token in value.split(",")
        if token.strip()
    }
    return tuple(
        (name, value)
        for name, value in headers
        if name not in HOP_BY_HOP_HEADERS and name not in named and not name.startswith("proxy-")
    )


def _elapsed_ms(started: float) -> int:
    return max(0, round((time.perf_counter() - started) * 1000))


async def forward(
    request: HttpRequest, client: httpx.AsyncClient, *, local_origin: str, timeout: float
) -> HttpResponse | ErrorMessage:
    """Replay one request against the local app and return its answer, or the error that stood in the way.

    Args:
        request: The request from the gateway; its `uri` is the path and raw query.
        client: The agent's shared client (its connection pool); never closed here.
        local_origin: Where the local app listens, e.g. ``"http://127.0.0.1:3000"``.
        timeout: Seconds for the whole exchange, from connecting to the last body byte.

    Returns:
        The local app's response (3xx included, body still content-encoded, headers lower-case and
        repeated as sent), or an `ErrorMessage`: ``local_service_unavailable`` when nothing accepts the
        connection, ``timeout`` when the app is too slow, ``invalid_request`` when the request cannot be
        sent, ``internal_error`` for anything else.
    """
    started = time.perf_counter()
    request_id = request.request_id
    try:
        outgoing = _build_request(request, local_origin, timeout)
    except (httpx.InvalidURL, ValueError) as exc:
        return ErrorMessage("invalid_request", f"cannot send {request.uri!r}: {exc}", request_id)
    try:
        async with asyncio.timeout(timeout):
            response = await client.send(outgoing, stream=True, follow_redirects=False)
            try:
                body = bytearray()
                async for piece in response.aiter_raw():
                    body += piece
            finally:
                await response.aclose()
    except (httpx.TimeoutException, TimeoutError):
        return ErrorMessage("timeout", f"the local service did not answer within {timeout:g} s", request_id)
    except httpx.ConnectError as exc:
        return ErrorMessage(
            "local_service_unavailable", f"cannot connect to {local_origin}: {exc}", request_id
        )
    except httpx.UnsupportedProtocol as exc:
        return ErrorMessage("invalid_request", f"cannot send {request.uri!r}: {exc}", request_id)
    except Exception as exc:  # a crash of one request must not take the tunnel down
        return ErrorMessage("internal_error", f"{type(exc).__name__}: {exc}", request_id)
    headers = strip_hop_by_hop(tuple((name.lower(), value) for name, value in response.headers.multi_items()))
    try:
        return HttpResponse(
            request_id=request_id,
            status_code=response.status_code,
            headers=headers,
            body=bytes(body),
            processing_time_ms=_elapsed_ms(started),
        )
    except ValueError as exc:  # a status or header the protocol cannot carry
        return ErrorMessage("internal_error", f"unusable response from the local service: {exc}", request_id)


def _build_request(request: HttpRequest, local_origin: str, timeout: float) -> httpx.Request:
    """The httpx request: the raw target kept as it is, only the gateway's headers (no client defaults)."""
    if not request.uri.startswith("/"):
        raise ValueError("the target must start with '/'")
    # raw_path carries path and query as they are (httpx would otherwise re-quote the query); only bytes
    # outside ASCII are percent-encoded, as UTF-8, the way a browser sends them (RFC 3986 section 2.1).
    raw_path = quote(request.uri, safe=_ASCII_PRINTABLE).encode("ascii")
    url = httpx.URL(local_origin).copy_with(raw_path=raw_path)
    headers = [(name, value) for name, value in strip_hop_by_hop(request.headers) if name != "content-length"]
    # Built directly rather than with client.build_request, so the client's default headers (httpx's own
    # Accept-Encoding, User-Agent) are not added to what the public caller sent.
    return httpx.Request(
        request.method,
        url,
        headers=headers,
        content=request.body,
        extensions={"timeout": httpx.Timeout(timeout).as_dict()},
    )
