"""Tests for agent/local_pool.py: requests spread over small pools, and every slot given back."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from agent.local_pool import ShardedTransport
from tests.support.echo_app import create_echo_app
from tests.support.servers import RunningServer, closed_port, serve_in_thread


@pytest.fixture(scope="module")
def app() -> Iterator[RunningServer]:
    with serve_in_thread(create_echo_app()) as server:
        yield server


def test_pools_split_the_connections() -> None:
    """64 connections in pools of 4 make 16 pools; a remainder is spread, not left in a tiny pool."""
    assert len(ShardedTransport(64).in_flight) == 16
    assert len(ShardedTransport(10, shard_size=4).in_flight) == 3
    assert len(ShardedTransport(1).in_flight) == 1
    with pytest.raises(ValueError, match="at least 1"):
        ShardedTransport(0)


@pytest.mark.integration
def test_concurrent_requests_go_to_the_least_busy_pools(app: RunningServer) -> None:
    """Slow requests in flight occupy different pools; when they end, every pool is free again."""
    transport = ShardedTransport(8, shard_size=2)

    async def scenario() -> tuple[tuple[int, ...], tuple[int, ...]]:
        async with httpx.AsyncClient(transport=transport) as client:
            slow = [asyncio.create_task(client.get(f"{app.origin}/slow?seconds=0.5")) for _ in range(4)]
            await asyncio.sleep(0.2)
            during = transport.in_flight
            responses = await asyncio.gather(*slow)
            assert [r.status_code for r in responses] == [200] * 4
            return during, transport.in_flight

    during, after = asyncio.run(scenario())
    assert during == (1, 1, 1, 1)
    assert after == (0, 0, 0, 0)


@pytest.mark.integration
def test_slots_come_back_after_streams_and_failures(app: RunningServer) -> None:
    """A body closed unread, a body read to the end, and a refused connection all give their slot back."""
    transport = ShardedTransport(4, shard_size=2)

    async def scenario() -> None:
        async with httpx.AsyncClient(transport=transport) as client:
            async with client.stream("GET", f"{app.origin}/stream/{1 << 20}") as response:
                assert transport.in_flight.count(1) == 1
                await response.aiter_raw().__anext__()  # leave the rest unread
            assert (await client.get(f"{app.origin}/bytes/1000")).content
            with pytest.raises(httpx.ConnectError):
                await client.get(f"http://127.0.0.1:{closed_port()}/")

    asyncio.run(scenario())
    assert transport.in_flight == (0, 0)
