"""`forward()` and `stream_forward()`: replay one tunnelled request against the local app (httpx) and return
its answer, whole or as it streams. Does I/O.

The request goes out as the gateway sent it (method, raw target, headers minus hop-by-hop ones, body); the
answer comes back as it left the local app: redirects are not followed and the body is read raw, still
content-encoded, so the gateway's rewriter sees exactly what a browser would. Local failures become protocol
`error` messages with the code the gateway turns into its public page (DESIGN.md, "Gateway behaviour").
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncGenerator, AsyncIterable
from typing import Final
from urllib.parse import quote

import httpx

from transport.messages import ErrorMessage, Headers, HttpRequest, HttpResponse, RequestId

__all__ = ["HOP_BY_HOP_HEADERS", "forward", "stream_forward", "strip_hop_by_hop"]

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
    request: HttpRequest,
    client: httpx.AsyncClient,
    *,
    local_origin: str,
    timeout: float,
    host_header: str | None = None,
) -> HttpResponse | ErrorMessage:
    """Replay one request against the local app and return its answer, or the error that stood in the way.

    Args:
        request: The request from the gateway; its `uri` is the path and raw query.
        client: The agent's shared client (its connection pool); never closed here.
        local_origin: Where the local app listens, e.g. ``"http://127.0.0.1:3000"``.
        timeout: Seconds for the whole exchange, from connecting to the last body byte.
        host_header: The `Host` sent to the local app; None keeps the public one (as ngrok does, so
            frameworks build URLs and check CSRF origins against the host the browser used).

    Returns:
        The local app's response (3xx included, body still content-encoded, headers lower-case and
        repeated as sent), or an `ErrorMessage`: ``local_service_unavailable`` when nothing accepts the
        connection, ``timeout`` when the app is too slow, ``invalid_request`` when the request cannot be
        sent, ``internal_error`` for anything else.
    """
    parts = stream_forward(
        request,
        client,
        local_origin=local_origin,
        timeout=timeout,
        inline_limit=None,
        host_header=host_header,
    )
    async with contextlib.aclosing(parts):
        async for part in parts:
            assert not isinstance(part, bytes)  # inline_limit=None: the whole answer comes at once
            return part
    raise AssertionError("stream_forward yields an answer")  # pragma: no cover


async def stream_forward(
    request: HttpRequest,
    client: httpx.AsyncClient,
    *,
    local_origin: str,
    timeout: float,
    inline_limit: int | None,
    content: AsyncIterable[bytes] | None = None,
    host_header: str | None = None,
) -> AsyncGenerator[HttpResponse | ErrorMessage | bytes, None]:
    """Replay one request against the local app and yield its answer as it comes.

    A response whose `Content-Length` is at most `inline_limit` (or that has no body) is read whole and
    yielded as one `HttpResponse`. Any other response is streamed: first its head (`body_stream` set), as
    soon as the local app sent its headers, then its body in pieces (`bytes`) as they arrive, so a large
    download or an event stream never waits for its end. An `ErrorMessage` may come instead of the head,
    or after some pieces when the local app breaks off (the caller must then abandon the body).

    Args:
        request: The request from the gateway; with `content`, its body comes from there instead.
        client: The agent's shared client (its connection pool); never closed here.
        local_origin: Where the local app listens, e.g. ``"http://127.0.0.1:3000"``.
        timeout: Seconds until the head (and an inline body) must have arrived; while streaming, the
            longest wait for the next piece.
        inline_limit: The largest body sent inline; None to read every body whole (never stream).
        content: The request body as it streams in from the gateway.
        host_header: The `Host` sent to the local app; None keeps the public one.

    Yields:
        The answer, as above.
    """
    started = time.perf_counter()
    request_id = request.request_id
    try:
        outgoing = _build_request(request, local_origin, timeout, content, host_header)
    except (httpx.InvalidURL, ValueError) as exc:
        yield ErrorMessage("invalid_request", f"cannot send {request.uri!r}: {exc}", request_id)
        return
    response: httpx.Response | None = None
    try:
        try:
            async with asyncio.timeout(timeout) as deadline:
                response = await client.send(outgoing, stream=True, follow_redirects=False)
                headers = strip_hop_by_hop(
                    tuple((name.lower(), value) for name, value in response.headers.multi_items())
                )
                if inline_limit is None or _inline(request.method, response, inline_limit):
                    body = bytearray()
                    async for piece in response.aiter_raw():
                        body += piece
                    answer = _answer(request_id, response.status_code, headers, bytes(body), started)
                else:
                    answer = _answer(request_id, response.status_code, headers, b"", started, stream=True)
                    deadline.reschedule(None)  # from here on, httpx's read timeout bounds each wait
        except Exception as exc:
            yield _error(exc, request, local_origin, timeout)
            return
        yield answer
        if isinstance(answer, ErrorMessage) or not answer.body_stream:
            return
        try:
            async for piece in response.aiter_raw():
                if piece:
                    yield piece
        except Exception as exc:
            yield _error(exc, request, local_origin, timeout, broke_off=True)
    finally:
        if response is not None:
            await response.aclose()


def _inline(method: str, response: httpx.Response, limit: int) -> bool:
    """Whether a response's body is known to be small (or absent), so it is read whole."""
    if method == "HEAD" or response.status_code in (204, 304) or 100 <= response.status_code < 200:
        return True
    length = response.headers.get("content-length", "")
    return length.isdigit() and int(length) <= limit


def _answer(
    request_id: RequestId,
    status: int,
    headers: Headers,
    body: bytes,
    started: float,
    *,
    stream: bool = False,
) -> HttpResponse | ErrorMessage:
    try:
        return HttpResponse(
            request_id=request_id,
            status_code=status,
            headers=headers,
            body=body,
            processing_time_ms=_elapsed_ms(started),
            body_stream=stream,
        )
    except ValueError as exc:  # a status or header the protocol cannot carry
        return ErrorMessage("internal_error", f"unusable response from the local service: {exc}", request_id)


def _error(
    exc: Exception, request: HttpRequest, local_origin: str, timeout: float, *, broke_off: bool = False
) -> ErrorMessage:
    """The protocol error for what went wrong with the local app (DESIGN.md, "Gateway behaviour")."""
    request_id = request.request_id
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return ErrorMessage("timeout", f"the local service did not answer within {timeout:g} s", request_id)
    if broke_off:
        return ErrorMessage(
            "local_service_unavailable", f"the local service broke off the body: {exc}", request_id
        )
    if isinstance(exc, httpx.ConnectError):
        return ErrorMessage(
            "local_service_unavailable", f"cannot connect to {local_origin}: {exc}", request_id
        )
    if isinstance(exc, httpx.UnsupportedProtocol):
        return ErrorMessage("invalid_request", f"cannot send {request.uri!r}: {exc}", request_id)
    # A crash of one request must not take the tunnel down.
    return ErrorMessage("internal_error", f"{type(exc).__name__}: {exc}", request_id)


@functools.lru_cache(maxsize=1024)
def _target_url(local_origin: str, target: str) -> httpx.URL:
    """The URL of a target at the local app. Parsing one costs httpx about 15 µs, and an app's requests
    go to the same few paths again and again (assets, API polling), so the latest are kept (a URL is
    immutable)."""
    # raw_path carries path and query as they are (httpx would otherwise re-quote the query); only bytes
    # outside ASCII are percent-encoded, as UTF-8, the way a browser sends them (RFC 3986 section 2.1).
    raw_path = quote(target, safe=_ASCII_PRINTABLE).encode("ascii")
    return _origin_url(local_origin).copy_with(raw_path=raw_path)


@functools.lru_cache(maxsize=16)
def _origin_url(local_origin: str) -> httpx.URL:
    return httpx.URL(local_origin)


def _build_request(
    request: HttpRequest,
    local_origin: str,
    timeout: float,
    content: AsyncIterable[bytes] | None = None,
    host_header: str | None = None,
) -> httpx.Request:
    """The httpx request: the raw target kept as it is, only the gateway's headers (no client defaults)."""
    if not request.uri.startswith("/"):
        raise ValueError("the target must start with '/'")
    url = _target_url(local_origin, request.uri)
    # A whole body gets its length from httpx; a streamed one keeps the caller's, if it said one (without
    # it, httpx sends the stream chunked).
    headers = [
        (name, value)
        for name, value in strip_hop_by_hop(request.headers)
        if (name != "content-length" or content is not None) and (name != "host" or host_header is None)
    ]
    if host_header is not None:
        headers.insert(0, ("host", host_header))
    # Built directly rather than with client.build_request, so the client's default headers (httpx's own
    # Accept-Encoding, User-Agent) are not added to what the public caller sent.
    return httpx.Request(
        request.method,
        url,
        headers=headers,
        content=request.body if content is None else content,
        extensions={"timeout": httpx.Timeout(timeout).as_dict()},
    )
