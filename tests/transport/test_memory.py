"""Tests for transport/memory.py: in-memory transports that record frames and can answer them."""

from __future__ import annotations

import asyncio

import pytest

from transport.codec import encode_frame
from transport.errors import ConnectionGone, SendFailed
from transport.memory import AsyncMemoryTransport, MemoryTransport
from transport.messages import ConnectionId, Ping, Pong
from transport.protocol import TunnelProtocol

A = ConnectionId("conn-a")
B = ConnectionId("conn-b")


def test_sent_frames_are_recorded_in_order() -> None:
    """Frames land in .sent with their connection, in the order they were sent."""
    transport = MemoryTransport()
    transport.send(A, ["1", "2"])
    transport.send(B, ["3"])
    assert transport.sent == [(A, "1"), (A, "2"), (B, "3")]
    assert transport.frames_for(A) == ["1", "2"]


def test_messages_for_decodes_frames() -> None:
    """messages_for returns the decoded messages sent to one connection."""
    transport = MemoryTransport()
    transport.send(A, [encode_frame(Ping()), encode_frame(Pong())])
    assert transport.messages_for(A) == [Ping(), Pong()]


def test_handler_can_wire_a_peer_protocol() -> None:
    """A handler feeding each frame to an agent's TunnelProtocol delivers the message there."""
    agent = TunnelProtocol("agent", version=2)
    transport = MemoryTransport(lambda _connection, frame: agent.receive_frame(frame))
    transport.send(A, [encode_frame(Ping())])
    assert agent.events_received() == [Ping()]
    assert agent.frames_to_send() == ['{"type":"pong"}']


def test_handler_errors_propagate() -> None:
    """A handler raising a transport error makes send raise it, as a failing network would."""

    def refuse(connection_id: ConnectionId, _frame: str) -> None:
        raise SendFailed("no", connection_id=connection_id, attempts=1)

    with pytest.raises(SendFailed):
        MemoryTransport(refuse).send(A, ["x"])


def test_gone_connections_raise() -> None:
    """Sends to connections marked gone, given as gone, or closed raise ConnectionGone."""
    transport = MemoryTransport(gone=[A])
    with pytest.raises(ConnectionGone):
        transport.send(A, ["x"])
    transport.mark_gone(B)
    with pytest.raises(ConnectionGone):
        transport.send(B, ["x"])
    other = ConnectionId("conn-c")
    transport.close(other)
    assert transport.closed == [other]
    with pytest.raises(ConnectionGone):
        transport.send(other, ["x"])
    assert transport.sent == []


def test_async_transport_awaits_its_handler() -> None:
    """The async transport has awaited the handler for every frame when send returns."""
    seen: list[str] = []

    async def handler(_connection: ConnectionId, frame: str) -> None:
        await asyncio.sleep(0)
        seen.append(frame)

    async def scenario() -> None:
        transport = AsyncMemoryTransport(handler)
        await transport.send(A, ["1", "2"])
        assert seen == ["1", "2"]
        await transport.close(A)
        with pytest.raises(ConnectionGone):
            await transport.send(A, ["3"])
        assert transport.closed == [A]

    asyncio.run(scenario())
