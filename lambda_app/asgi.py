"""ASGI pieces shared by the two loopback servers, `tunnel emulate` (lambda_app/emulate.py) and the
self-hosted gateway (agent/serve.py): the callables' types and reading a request body within a limit. No
I/O of its own: it awaits the server's `receive`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["Receive", "Send", "read_body"]

#: ASGI's `receive` callable.
Receive = Callable[[], Awaitable[dict[str, Any]]]
#: ASGI's `send` callable.
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """Read a request's body, or stop once it grows past `limit` (the rest is left unread).

    Args:
        receive: The ASGI `receive` callable of an HTTP request.
        limit: The most bytes accepted.

    Returns:
        The body (what arrived, if the client went away), or None when it is over the limit.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
