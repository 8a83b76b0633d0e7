"""`LocalTransport`, which sends frames over live `websockets` connections (async I/O), for development.

The self-hosted gateway registers each agent's WebSocket here under a connection id, so the gateway logic
sends through the same `AsyncTransport` interface that the AWS gateway uses. A connection to an agent in
the same process (`agent.in_process`) may take messages as they are, unencoded (`MessageConnection`).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from typing import Protocol, runtime_checkable

from websockets.exceptions import ConnectionClosed

from transport.chunking import split_frame
from transport.codec import encode_frame
from transport.errors import ConnectionGone
from transport.messages import ConnectionId, TunnelMessage

__all__ = ["LocalTransport", "MessageConnection", "WebSocketConnection", "new_connection_id"]


class WebSocketConnection(Protocol):
    """What `LocalTransport` needs of a connection (`websockets.asyncio.server.ServerConnection` fits)."""

    async def send(self, message: str | Iterable[str]) -> None:
        """Send one message; an iterable is sent as one fragmented message."""
        ...

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection."""
        ...


@runtime_checkable
class MessageConnection(WebSocketConnection, Protocol):
    """A connection that also takes messages unencoded: to an agent in the same process."""

    async def send_messages(self, messages: Sequence[TunnelMessage]) -> None:
        """Send messages, in order, each as the frame it would have been encoded into."""
        ...


def new_connection_id() -> ConnectionId:
    """Make a random connection id shaped like API Gateway's (12 bytes, base64).

    Returns:
        A 16-character id.
    """
    return ConnectionId(secrets.token_urlsafe(12))


class LocalTransport:
    """An `AsyncTransport` over registered WebSocket connections.

    Args:
        max_frame_bytes: Send messages longer than this as several WebSocket frames (None: never split).
    """

    def __init__(self, *, max_frame_bytes: int | None = None) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._connections: dict[ConnectionId, WebSocketConnection] = {}
        self._carriers: dict[ConnectionId, MessageConnection] = {}

    def register(
        self, websocket: WebSocketConnection, connection_id: ConnectionId | None = None
    ) -> ConnectionId:
        """Start routing sends for a connection to this WebSocket.

        Args:
            websocket: An open connection.
            connection_id: The id to use; a fresh random one when None.

        Returns:
            The connection id.
        """
        connection_id = connection_id if connection_id is not None else new_connection_id()
        self._connections[connection_id] = websocket
        if isinstance(websocket, MessageConnection):  # checked once: a protocol check is slow
            self._carriers[connection_id] = websocket
        return connection_id

    def unregister(self, connection_id: ConnectionId) -> None:
        """Forget a connection (its handler ended); later sends raise `ConnectionGone`."""
        self._connections.pop(connection_id, None)
        self._carriers.pop(connection_id, None)

    @property
    def connection_ids(self) -> frozenset[ConnectionId]:
        """The connections currently registered."""
        return frozenset(self._connections)

    async def send(self, connection_id: ConnectionId, frames: Sequence[str]) -> None:
        """Send frames, in order, each as one WebSocket message.

        Raises:
            ConnectionGone: The connection is not registered or closed while sending.
        """
        websocket = self._connections.get(connection_id)
        if websocket is None:
            raise ConnectionGone(f"connection {connection_id} is not connected", connection_id=connection_id)
        try:
            for frame in frames:
                limit = self.max_frame_bytes
                if limit is not None and (len(frame) > limit or not frame.isascii()):
                    await websocket.send(split_frame(frame, limit))
                else:
                    await websocket.send(frame)
        except ConnectionClosed as exc:
            self.unregister(connection_id)
            raise ConnectionGone(f"connection {connection_id} closed", connection_id=connection_id) from exc

    async def send_messages(self, connection_id: ConnectionId, messages: Sequence[TunnelMessage]) -> None:
        """Send messages, in order: as they are to a `MessageConnection`, else encoded, as by `send`.

        Raises:
            ConnectionGone: The connection is not registered or closed while sending.
        """
        carrier = self._carriers.get(connection_id)
        if carrier is None:
            await self.send(connection_id, [encode_frame(message) for message in messages])
            return
        try:
            await carrier.send_messages(messages)
        except ConnectionClosed as exc:
            self.unregister(connection_id)
            raise ConnectionGone(f"connection {connection_id} closed", connection_id=connection_id) from exc

    async def close(self, connection_id: ConnectionId) -> None:
        """Close a connection and forget it; nothing happens if it is not registered."""
        websocket = self._connections.pop(connection_id, None)
        self._carriers.pop(connection_id, None)
        if websocket is not None:
            await websocket.close()
