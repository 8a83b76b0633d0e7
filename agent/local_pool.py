"""`ShardedTransport`: the agent's connections to the local app as several small httpx pools behind one
client. Does network I/O (through httpx).

httpcore's pool checks every idle connection for a close by the server on each request and each
response it finishes (a `poll()` system call and an attribute look-up per connection), so one pool of 64
connections spends most of a busy agent's time on that scan. The same 64 connections in pools of a few,
each request going to the least busy pool, keep the scan short while the agent still forwards as many
requests at once, and a slow request or a long event stream only ever holds its own connection.
"""

from __future__ import annotations

import math
import ssl
from collections.abc import AsyncIterator
from typing import Any

import httpx

__all__ = ["ShardedTransport"]


class _Released(httpx.AsyncByteStream):
    """A response body that gives its pool's slot back once it is closed (read to the end or not)."""

    def __init__(self, stream: httpx.AsyncByteStream, busy: list[int], shard: int) -> None:
        self._stream = stream
        self._busy = busy
        self._shard = shard
        self._open = True

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            if self._open:
                self._open = False
                self._busy[self._shard] -= 1


class ShardedTransport(httpx.AsyncBaseTransport):
    """Up to `max_connections` connections, in pools of at most `shard_size`.

    Args:
        max_connections: Connections in all, as many requests as may be in flight at once.
        shard_size: Connections per pool.
        **options: Passed to each `httpx.AsyncHTTPTransport` (not `limits`).
    """

    def __init__(self, max_connections: int, *, shard_size: int = 4, **options: Any) -> None:
        if max_connections < 1 or shard_size < 1:
            raise ValueError("max_connections and shard_size must be at least 1")
        count = math.ceil(max_connections / shard_size)
        size = math.ceil(max_connections / count)
        limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
        # One TLS context for all pools (each would build its own, at about 10 ms apiece).
        options.setdefault("verify", ssl.create_default_context())
        self._shards = [httpx.AsyncHTTPTransport(limits=limits, **options) for _ in range(count)]
        self._busy = [0] * count

    @property
    def in_flight(self) -> tuple[int, ...]:
        """Requests each pool is serving now (a response counts until its body is closed)."""
        return tuple(self._busy)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        busy = self._busy
        shard = busy.index(min(busy))
        busy[shard] += 1
        try:
            response = await self._shards[shard].handle_async_request(request)
        except BaseException:
            busy[shard] -= 1
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _Released(response.stream, busy, shard)
        return response

    async def aclose(self) -> None:
        for shard in self._shards:
            await shard.aclose()
