"""In-memory transports that record what was sent, for tests and in-process wiring; no I/O.

Like httpx's `MockTransport`, they are real transports: a handler may answer each frame (feed it to the
peer's `TunnelProtocol`, say), and connections can be marked gone to exercise the error paths.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence

from transport.codec import decode_frame
from transport.errors import ConnectionGone
from transport.messages import ConnectionId, TunnelMessage

__all__ = ["AsyncMemoryTransport", "MemoryTransport"]

FrameHandler = Callable[[ConnectionId, str], None]
AsyncFrameHandler = Callable[[ConnectionId, str], Awaitable[None]]


class _Recorder:
    def __init__(self, gone: Iterable[ConnectionId]) -> None:
        #: Every frame sent, with its connection, in order.
        self.sent: list[tuple[ConnectionId, str]] = []
        #: Connections closed through the transport, in order.
        self.closed: list[ConnectionId] = []
        self._gone: set[ConnectionId] = set(gone)

    def mark_gone(self, connection_id: ConnectionId) -> None:
        """Make later sends to this connection raise `ConnectionGone`."""
        self._gone.add(connection_id)

    def frames_for(self, connection_id: ConnectionId) -> list[str]:
        """The frames sent to one connection, in order."""
        return [frame for target, frame in self.sent if target == connection_id]

    def messages_for(self, connection_id: ConnectionId) -> list[TunnelMessage]:
        """The frames sent to one connection, decoded."""
        return [
            decode_frame(frame, max_bytes=len(frame.encode())) for frame in self.frames_for(connection_id)
        ]

    def _check(self, connection_id: ConnectionId) -> None:
        if connection_id in self._gone:
            raise ConnectionGone(f"connection {connection_id} is gone", connection_id=connection_id)

    def _close(self, connection_id: ConnectionId) -> None:
        self.closed.append(connection_id)
        self._gone.add(connection_id)


class MemoryTransport(_Recorder):
    """A synchronous transport that records frames in `.sent`.

    Args:
        handler: Called with each frame after it is recorded; may raise a `TransportError`.
        gone: Connections that are gone from the start.
    """

    def __init__(self, handler: FrameHandler | None = None, *, gone: Iterable[ConnectionId] = ()) -> None:
        super().__init__(gone)
        self._handler = handler

    def send(
        self, connection_id: ConnectionId, frames: Sequence[str], *, connected_at: float | None = None
    ) -> None:
        """Record the frames (and hand each to the handler); `connected_at` plays no part in memory.

        Raises:
            ConnectionGone: The connection was marked gone or closed.
        """
        self._check(connection_id)
        for frame in frames:
            self.sent.append((connection_id, frame))
            if self._handler is not None:
                self._handler(connection_id, frame)

    def close(self, connection_id: ConnectionId) -> None:
        """Record the close; later sends to the connection raise `ConnectionGone`."""
        self._close(connection_id)


class AsyncMemoryTransport(_Recorder):
    """The async twin of `MemoryTransport`.

    Args:
        handler: Awaited with each frame after it is recorded; may raise a `TransportError`.
        gone: Connections that are gone from the start.
    """

    def __init__(
        self, handler: AsyncFrameHandler | None = None, *, gone: Iterable[ConnectionId] = ()
    ) -> None:
        super().__init__(gone)
        self._handler = handler

    async def send(self, connection_id: ConnectionId, frames: Sequence[str]) -> None:
        """Record the frames (and await the handler on each).

        Raises:
            ConnectionGone: The connection was marked gone or closed.
        """
        self._check(connection_id)
        for frame in frames:
            self.sent.append((connection_id, frame))
            if self._handler is not None:
                await self._handler(connection_id, frame)

    async def close(self, connection_id: ConnectionId) -> None:
        """Record the close; later sends to the connection raise `ConnectionGone`."""
        self._close(connection_id)
