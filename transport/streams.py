"""Streamed bodies (version 2, the `body_stream` feature): cut a body into chunks as it is produced, check
one as it arrives, and count the flow-control window; no I/O.

A streamed body follows a head marked `body_stream`: `BodyChunk`s numbered from 0, each within API
Gateway's 128 KB message quota, then a `BodyEnd` with the chunk count, length and SHA-256 of the whole.
Unlike a manifest body it needs no length up front, so the sender can pass on bytes as the local app
produces them and the receiver can pass them on before the last one arrives. A sender keeps at most
`STREAM_WINDOW_BYTES` unacknowledged; the receiver sends `BodyAck` as it passes bytes on.
"""

from __future__ import annotations

import hashlib
from typing import Final

from transport.chunking import MAX_MESSAGE_BYTES, chunk_payload_size
from transport.errors import LocalProtocolError, RemoteProtocolError
from transport.messages import STREAM_WINDOW_BYTES, BodyAck, BodyChunk, BodyEnd, RequestId

__all__ = ["StreamReader", "StreamWriter", "Window"]


class StreamWriter:
    """Cuts one streamed body into `BodyChunk`s as its bytes come, and closes it with a `BodyEnd`.

    Args:
        request_id: The request whose body this is.
        max_message_bytes: The limit for one encoded chunk message.
    """

    __slots__ = ("_count", "_digest", "_ended", "_length", "_step", "request_id")

    def __init__(self, request_id: RequestId, *, max_message_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self.request_id: Final = request_id
        self._step = chunk_payload_size(max_message_bytes)
        self._count = 0
        self._length = 0
        self._digest = hashlib.sha256()
        self._ended = False

    @property
    def length(self) -> int:
        """How many body bytes were cut into chunks so far."""
        return self._length

    def chunks(self, data: bytes) -> list[BodyChunk]:
        """The chunks that carry `data`, next in order (none for no data).

        Raises:
            LocalProtocolError: The body was already ended.
        """
        if self._ended:
            raise LocalProtocolError("the streamed body has ended", field="body_stream")
        out: list[BodyChunk] = []
        view = memoryview(data)
        for start in range(0, len(data), self._step):
            piece = bytes(view[start : start + self._step])
            out.append(BodyChunk(self.request_id, self._count, piece))
            self._count += 1
        self._length += len(data)
        self._digest.update(data)
        return out

    def end(self) -> BodyEnd:
        """The message that closes the body.

        Raises:
            LocalProtocolError: The body was already ended.
        """
        if self._ended:
            raise LocalProtocolError("the streamed body has ended", field="body_stream")
        self._ended = True
        return BodyEnd(self.request_id, self._count, self._length, self._digest.hexdigest())


class StreamReader:
    """Checks one streamed body as it arrives: order, size limit, and the closing count, length and digest.

    Args:
        request_id: The request whose body this is.
        max_body_bytes: Refuse a body that grows beyond this (status 413); None for no limit.
    """

    __slots__ = ("_digest", "_length", "_max", "_next_index", "request_id")

    def __init__(self, request_id: RequestId, *, max_body_bytes: int | None = None) -> None:
        self.request_id: Final = request_id
        self._max = max_body_bytes
        self._next_index = 0
        self._length = 0
        self._digest = hashlib.sha256()

    @property
    def length(self) -> int:
        """How many body bytes arrived so far."""
        return self._length

    def feed(self, chunk: BodyChunk) -> bytes:
        """Take the next chunk.

        Returns:
            Its data, to pass on.

        Raises:
            RemoteProtocolError: The chunk is another request's or out of order, or the body grew past
                the limit.
        """
        if chunk.request_id != self.request_id:
            raise RemoteProtocolError("chunk belongs to another request", field="request_id")
        if chunk.index != self._next_index:
            raise RemoteProtocolError(
                f"chunk out of order: expected index {self._next_index}, got {chunk.index}", field="index"
            )
        if self._max is not None and self._length + len(chunk.data) > self._max:
            raise RemoteProtocolError(
                f"streamed body exceeds the {self._max}-byte limit", field="data", status_hint=413
            )
        self._next_index += 1
        self._length += len(chunk.data)
        self._digest.update(chunk.data)
        return chunk.data

    def end(self, end: BodyEnd) -> None:
        """Check the closing message against what arrived.

        Raises:
            RemoteProtocolError: The count, length or digest differ: a chunk was lost or changed.
        """
        if end.request_id != self.request_id:
            raise RemoteProtocolError("body_end belongs to another request", field="request_id")
        if end.count != self._next_index:
            raise RemoteProtocolError(
                f"{self._next_index} chunks arrived, {end.count} were sent", field="count"
            )
        if end.length != self._length:
            raise RemoteProtocolError(f"{self._length} bytes arrived, {end.length} were sent", field="length")
        if end.sha256 != self._digest.hexdigest():
            raise RemoteProtocolError("body does not match its SHA-256 digest", field="sha256")


class Window:
    """The sender's side of flow control for one streamed body: how much it may still send.

    Args:
        size: The bytes that may be in flight unacknowledged.
    """

    __slots__ = ("_available", "_size")

    def __init__(self, size: int = STREAM_WINDOW_BYTES) -> None:
        if size < 1:
            raise ValueError(f"size must be at least 1, got {size}")
        self._size = size
        self._available = size

    @property
    def available(self) -> int:
        """Bytes that may be sent now; negative after an overdraft."""
        return self._available

    def open(self) -> bool:
        """Whether the next chunk may go now: some room is left. A chunk may overdraw the window by less
        than its own size, so a window smaller than one chunk still lets the body through."""
        return self._available > 0

    def spend(self, length: int) -> None:
        """Count `length` bytes as sent."""
        self._available -= length

    def acknowledge(self, ack: BodyAck) -> None:
        """Count bytes the receiver passed on as room again.

        Raises:
            RemoteProtocolError: The receiver acknowledged more than was ever sent.
        """
        if self._available + ack.length > self._size:
            raise RemoteProtocolError("acknowledged more than was sent", field="length")
        self._available += ack.length
