"""Tests for transport/base.py: broadcasting over any transport finishes every send before returning."""

from __future__ import annotations

import asyncio
import random

import pytest

from transport.base import AsyncTransport, Transport, async_broadcast, broadcast
from transport.errors import ConnectionGone
from transport.memory import AsyncMemoryTransport, MemoryTransport
from transport.messages import ConnectionId

TARGETS = [ConnectionId(f"conn-{index}") for index in range(50)]


def test_memory_transports_satisfy_the_interfaces() -> None:
    """MemoryTransport is a Transport and AsyncMemoryTransport an AsyncTransport (checked by mypy too)."""
    sync: Transport = MemoryTransport()
    asynchronous: AsyncTransport = AsyncMemoryTransport()
    assert callable(sync.send)
    assert callable(asynchronous.send)


def test_broadcast_sends_to_everyone_and_collects_failures() -> None:
    """broadcast sends to every connection and returns the ones that failed."""
    transport = MemoryTransport(gone=[TARGETS[3]])
    failures = broadcast(transport, TARGETS, ["hello"])
    assert list(failures) == [TARGETS[3]]
    assert len(transport.sent) == len(TARGETS) - 1


def test_async_broadcast_delivers_everything_before_returning() -> None:
    """A broadcast to 50 connections whose deliveries take varied time has delivered them all on return."""
    delivered: list[ConnectionId] = []
    rng = random.Random(7)

    async def slow_delivery(connection_id: ConnectionId, _frame: str) -> None:
        for _ in range(rng.randint(1, 5)):
            await asyncio.sleep(0)
        delivered.append(connection_id)

    async def scenario() -> None:
        transport = AsyncMemoryTransport(slow_delivery, gone=[TARGETS[0]])
        failures = await async_broadcast(transport, TARGETS, ["a", "b"])
        # Nothing may still be running: every delivery happened before the call returned.
        assert sorted(delivered) == sorted([target for target in TARGETS[1:] for _ in "ab"])
        assert list(failures) == [TARGETS[0]]
        assert isinstance(failures[TARGETS[0]], ConnectionGone)
        assert asyncio.all_tasks() == {asyncio.current_task()}

    asyncio.run(scenario())


def test_async_broadcast_reraises_bugs() -> None:
    """An error that is not a TransportError (a bug) propagates out of the broadcast."""

    async def broken(_connection: ConnectionId, _frame: str) -> None:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        asyncio.run(async_broadcast(AsyncMemoryTransport(broken), TARGETS[:2], ["x"]))
