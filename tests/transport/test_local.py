"""Tests for transport/local.py: LocalTransport over real websockets connections on loopback."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.uri import parse_uri

from transport.base import AsyncTransport, async_broadcast
from transport.chunking import MAX_WEBSOCKET_FRAME_BYTES, split_frame
from transport.codec import encode_frame
from transport.errors import ConnectionGone
from transport.local import LocalTransport, new_connection_id
from transport.messages import (
    ConnectionEstablished,
    ConnectionId,
    HttpRequest,
    HttpResponse,
    Ping,
    Ready,
    TunnelId,
    TunnelMessage,
    new_request_id,
)
from transport.protocol import ProtocolState, TunnelProtocol


class RecordingWebSocket:
    """A stand-in for a websockets connection that records what it is asked to send."""

    def __init__(self) -> None:
        self.messages: list[str | list[str]] = []
        self.closed = False

    async def send(self, message: str | Iterable[str]) -> None:
        self.messages.append(message if isinstance(message, str) else list(message))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed = True


def test_new_connection_ids_look_like_api_gateways() -> None:
    """Connection ids are random 16-character strings."""
    first, second = new_connection_id(), new_connection_id()
    assert len(first) == 16
    assert first != second


def test_long_messages_are_sent_as_fragments() -> None:
    """With max_frame_bytes set, a long message is handed to websockets as pieces within the limit."""

    async def scenario() -> None:
        websocket = RecordingWebSocket()
        transport = LocalTransport(max_frame_bytes=MAX_WEBSOCKET_FRAME_BYTES)
        connection_id = transport.register(websocket)
        await transport.send(connection_id, ["short", "x" * 100_000])
        short, long = websocket.messages
        assert short == "short"
        assert isinstance(long, list)
        assert "".join(long) == "x" * 100_000
        assert all(len(piece) <= MAX_WEBSOCKET_FRAME_BYTES for piece in long)

    asyncio.run(scenario())


class RecordingMessageConnection(RecordingWebSocket):
    """A connection that takes messages unencoded, as an in-process agent's does."""

    def __init__(self) -> None:
        super().__init__()
        self.unencoded: list[TunnelMessage] = []

    async def send_messages(self, messages: Sequence[TunnelMessage]) -> None:
        self.unencoded.extend(messages)


def test_send_messages_encodes_for_a_websocket_and_not_for_a_message_connection() -> None:
    """`send_messages` encodes each message into the frame `send` would carry, unless the connection takes
    messages as they are."""

    async def scenario() -> None:
        messages: list[TunnelMessage] = [HttpRequest(new_request_id(), "GET", "/a", body=b"\x00\xff"), Ping()]
        websocket, carrier = RecordingWebSocket(), RecordingMessageConnection()
        transport = LocalTransport()
        to_websocket, to_carrier = transport.register(websocket), transport.register(carrier)
        await transport.send_messages(to_websocket, messages)
        await transport.send_messages(to_carrier, messages)
        assert websocket.messages == [encode_frame(message) for message in messages]
        assert carrier.unencoded == messages
        assert carrier.messages == []
        with pytest.raises(ConnectionGone):
            await transport.send_messages(new_connection_id(), messages)

    asyncio.run(scenario())


def test_unknown_connection_is_gone() -> None:
    """Sending to a connection that was never registered, or was unregistered, raises ConnectionGone."""

    async def scenario() -> None:
        transport = LocalTransport()
        connection_id = transport.register(RecordingWebSocket(), ConnectionId("fixed"))
        assert transport.connection_ids == {"fixed"}
        transport.unregister(connection_id)
        with pytest.raises(ConnectionGone):
            await transport.send(connection_id, ["x"])
        await transport.close(connection_id)  # closing a gone connection is not an error

    asyncio.run(scenario())


def test_close_closes_the_websocket() -> None:
    """close() closes the registered WebSocket and forgets it."""

    async def scenario() -> None:
        websocket = RecordingWebSocket()
        transport = LocalTransport()
        connection_id = transport.register(websocket)
        await transport.close(connection_id)
        assert websocket.closed
        assert transport.connection_ids == frozenset()

    asyncio.run(scenario())


# Real connections on loopback -------------------------------------------------------------------------


class Gateway:
    """A websockets server whose connections are registered in a LocalTransport."""

    def __init__(self, on_message: Callable[[ConnectionId, str], Awaitable[None]] | None = None) -> None:
        self.transport = LocalTransport(max_frame_bytes=MAX_WEBSOCKET_FRAME_BYTES)
        self.registered: asyncio.Queue[ConnectionId] = asyncio.Queue()
        self.sockets: dict[ConnectionId, ServerConnection] = {}
        self._on_message = on_message

    async def handler(self, websocket: ServerConnection) -> None:
        connection_id = self.transport.register(websocket)
        self.sockets[connection_id] = websocket
        await self.registered.put(connection_id)
        async for message in websocket:
            if self._on_message is not None:
                assert isinstance(message, str)
                await self._on_message(connection_id, message)


@asynccontextmanager
async def running(gateway: Gateway) -> AsyncIterator[str]:
    """Serve the gateway on a free loopback port; stop it afterwards, even on failure."""
    async with serve(gateway.handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}"


async def _connect_many(
    url: str, gateway: Gateway, count: int
) -> list[tuple[ClientConnection, ConnectionId]]:
    clients = [await connect(url) for _ in range(count)]
    ids = [await gateway.registered.get() for _ in range(count)]
    return list(zip(clients, ids, strict=True))


@pytest.mark.integration
def test_loopback_tunnel_carries_big_bodies_both_ways() -> None:
    """A gateway and an agent over real websockets exchange a handshake and 500 KB bodies both ways."""
    gateway_protocol = TunnelProtocol("gateway")
    responses: asyncio.Queue[HttpResponse] = asyncio.Queue()

    async def on_message(_connection_id: ConnectionId, message: str) -> None:
        gateway_protocol.receive_frame(message)
        for event in gateway_protocol.events_received():
            if isinstance(event, HttpResponse):
                await responses.put(event)

    async def scenario() -> None:
        gateway = Gateway(on_message)
        async with running(gateway) as url, connect(url) as client:
            connection_id = await gateway.registered.get()
            agent = TunnelProtocol("agent")

            async def agent_send() -> None:
                for frame in agent.frames_to_send():
                    # An agent talking to API Gateway keeps every WebSocket frame under 32 KB.
                    await client.send(split_frame(frame))

            async def gateway_send() -> None:
                await gateway.transport.send(connection_id, gateway_protocol.frames_to_send())

            agent.send(Ready(protocol_version=2, features=("body_chunks", "pong")))
            await agent_send()
            while gateway_protocol.state is not ProtocolState.AWAITING_ESTABLISHED:
                await asyncio.sleep(0.01)
            gateway_protocol.send(ConnectionEstablished(connection_id, TunnelId("t1"), "https://gw/t1"))
            await gateway_send()
            agent.receive_frame(await client.recv())
            assert [type(event) for event in agent.events_received()] == [ConnectionEstablished]
            assert agent.version == 2

            request = HttpRequest(new_request_id(), "POST", "/upload", body=bytes(range(256)) * 2000)
            gateway_protocol.send(request)
            await gateway_send()
            received = None
            while received is None:
                agent.receive_frame(await client.recv())
                events = agent.events_received()
                received = events[0] if events else None
            assert received == request

            response = HttpResponse(request.request_id, 200, body=request.body[::-1])
            agent.send(response)
            await agent_send()
            assert await responses.get() == response

    asyncio.run(asyncio.wait_for(scenario(), timeout=20))


@pytest.mark.integration
def test_loopback_frames_on_the_wire_stay_within_32_kb() -> None:
    """Read frame by frame, a 300 KB chunked request arrives in WebSocket frames of at most 32 KB, whole."""

    async def scenario() -> None:
        gateway = Gateway()
        async with running(gateway) as url:
            port = int(url.rsplit(":", 1)[1])
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            client = ClientProtocol(parse_uri(url), max_size=None)
            client.send_request(client.connect())
            writer.write(b"".join(client.data_to_send()))
            connection_id = await gateway.registered.get()

            protocol = TunnelProtocol("gateway", version=2)
            request = HttpRequest(
                new_request_id(), "POST", "/upload", body=random.Random(3).randbytes(300_000)
            )
            protocol.send(request)
            messages = protocol.frames_to_send()
            await gateway.transport.send(connection_id, messages)

            wire: list[Frame] = []
            received: list[str] = []
            pieces: list[bytes] = []
            while len(received) < len(messages):
                data = await reader.read(65536)
                assert data, "the gateway closed the connection"
                client.receive_data(data)
                for event in client.events_received():
                    if isinstance(event, Frame) and event.opcode in (Opcode.TEXT, Opcode.CONT):
                        wire.append(event)
                        pieces.append(bytes(event.data))
                        if event.fin:
                            received.append(b"".join(pieces).decode())
                            pieces = []
            writer.close()

            assert received == messages
            assert len(wire) > len(messages)
            assert all(len(frame.data) <= MAX_WEBSOCKET_FRAME_BYTES for frame in wire)
            agent = TunnelProtocol("agent", version=2)
            for message in received:
                agent.receive_frame(message)
            assert agent.events_received() == [request]

    asyncio.run(asyncio.wait_for(scenario(), timeout=20))


@pytest.mark.integration
def test_loopback_broadcast_reaches_every_agent() -> None:
    """A broadcast over ten real connections reports no failure and every agent receives the frame."""

    async def scenario() -> None:
        gateway = Gateway()
        async with running(gateway) as url:
            pairs = await _connect_many(url, gateway, 10)
            transport: AsyncTransport = gateway.transport
            failures = await async_broadcast(transport, [cid for _, cid in pairs], [encode_frame(Ping())])
            assert failures == {}
            for client, _ in pairs:
                assert await client.recv() == '{"type":"ping"}'
                await client.close()

    asyncio.run(asyncio.wait_for(scenario(), timeout=20))


@pytest.mark.integration
def test_loopback_closed_connection_is_gone() -> None:
    """Sending to an agent whose socket has closed raises ConnectionGone and forgets the connection."""

    async def scenario() -> None:
        gateway = Gateway()
        async with running(gateway) as url:
            ((client, connection_id),) = await _connect_many(url, gateway, 1)
            await client.close()
            await gateway.sockets[connection_id].wait_closed()
            with pytest.raises(ConnectionGone) as caught:
                await gateway.transport.send(connection_id, ["{}"])
            assert isinstance(caught.value.__cause__, ConnectionClosed)
            assert connection_id not in gateway.transport.connection_ids

    asyncio.run(asyncio.wait_for(scenario(), timeout=20))


@pytest.mark.integration
def test_loopback_close_disconnects_the_agent() -> None:
    """close() ends the agent's connection: its next receive sees the close."""

    async def scenario() -> None:
        gateway = Gateway()
        async with running(gateway) as url:
            ((client, connection_id),) = await _connect_many(url, gateway, 1)
            await gateway.transport.close(connection_id)
            with pytest.raises(ConnectionClosed):
                await client.recv()

    asyncio.run(asyncio.wait_for(scenario(), timeout=20))
