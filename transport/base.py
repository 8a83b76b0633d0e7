"""The transport interfaces (sync and async) and broadcasting over them; no I/O of its own.

A transport moves encoded frames to one connection, shaped after httpx's `BaseTransport`. Sends are
awaited, never left running: work left behind when a Lambda handler returns is frozen or lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Protocol

from transport.errors import TransportError
from transport.messages import ConnectionId

__all__ = ["AsyncTransport", "Transport", "async_broadcast", "broadcast"]


class Transport(Protocol):
    """Sends frames to connections, blocking until each send is done."""

    def send(
        self, connection_id: ConnectionId, frames: Sequence[str], *, connected_at: float | None = None
    ) -> None:
        """Send frames, in order, to one connection.

        `connected_at` (epoch seconds) tells a transport that retries how young the connection is: right
        after `$connect` API Gateway may refuse sends to a connection that is fine (DESIGN.md, "The
        dispatch race"). Transports without that race ignore it.

        Raises:
            ConnectionGone: The connection no longer exists.
            SendFailed: The frames could not be delivered.
        """
        ...

    def close(self, connection_id: ConnectionId) -> None:
        """Close one connection; closing one that is already gone is not an error."""
        ...


class AsyncTransport(Protocol):
    """The async twin of `Transport`."""

    async def send(self, connection_id: ConnectionId, frames: Sequence[str]) -> None:
        """Send frames, in order, to one connection, returning once they are handed to the network.

        Raises:
            ConnectionGone: The connection no longer exists.
            SendFailed: The frames could not be delivered.
        """
        ...

    async def close(self, connection_id: ConnectionId) -> None:
        """Close one connection; closing one that is already gone is not an error."""
        ...


def broadcast(
    transport: Transport, connection_ids: Iterable[ConnectionId], frames: Sequence[str]
) -> dict[ConnectionId, TransportError]:
    """Send the same frames to many connections, one after the other; every send is done on return.

    Args:
        transport: The transport.
        connection_ids: Where to send.
        frames: What to send.

    Returns:
        The connections that failed, with their error; a failure does not stop the others.
    """
    failures: dict[ConnectionId, TransportError] = {}
    for connection_id in connection_ids:
        try:
            transport.send(connection_id, frames)
        except TransportError as exc:
            failures[connection_id] = exc
    return failures


async def async_broadcast(
    transport: AsyncTransport, connection_ids: Iterable[ConnectionId], frames: Sequence[str]
) -> dict[ConnectionId, TransportError]:
    """Send the same frames to many connections concurrently, and wait for every send to finish.

    Args:
        transport: The transport.
        connection_ids: Where to send.
        frames: What to send.

    Returns:
        The connections that failed, with their error; a failure does not stop the others.
    """
    targets = list(dict.fromkeys(connection_ids))
    results = await asyncio.gather(
        *(transport.send(connection_id, frames) for connection_id in targets), return_exceptions=True
    )
    failures: dict[ConnectionId, TransportError] = {}
    for connection_id, result in zip(targets, results, strict=True):
        if isinstance(result, TransportError):
            failures[connection_id] = result
        elif isinstance(result, BaseException):
            raise result
    return failures
