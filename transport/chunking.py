"""Splits big messages into body chunks that fit API Gateway's limits, and puts them back together; no I/O.

API Gateway WebSocket quotas (https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html):
a message is at most 128 KB and a frame at most 32 KB. A version-2 message whose encoding would not fit
travels as a head carrying a `BodyManifest` (chunk count, total length, SHA-256) and `BodyChunk` messages.
`BodyAssembler` checks order, length and digest as chunks arrive on one ordered stream; `assemble()` does
the same for chunks collected out of order (by the AWS gateway, whose Lambda invocations may race).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable
from typing import Final

from transport.codec import encode_frame
from transport.errors import LocalProtocolError, RemoteProtocolError
from transport.messages import BodyChunk, BodyManifest, HttpRequest, HttpResponse, RequestId, TunnelMessage

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "MAX_MESSAGE_BYTES",
    "MAX_WEBSOCKET_FRAME_BYTES",
    "BodyAssembler",
    "assemble",
    "chunk_payload_size",
    "split_frame",
    "split_message",
]

#: The largest message we send: under API Gateway's 128 KB message quota whether a KB is 1000 or 1024 bytes.
MAX_MESSAGE_BYTES: Final = 128_000
#: The largest WebSocket frame we send: under API Gateway's 32 KB frame quota, read the same way.
#: A client sends a bigger message as several frames (a fragmented message).
MAX_WEBSOCKET_FRAME_BYTES: Final = 32_000
#: The largest body reassembled by default; far above the 6 MB that a Lambda response can carry.
DEFAULT_MAX_BODY_BYTES: Final = 32 * 1024 * 1024

# The widest index a chunk envelope is sized for: 10 digits covers any body we would ever reassemble.
_WIDEST_INDEX: Final = 9_999_999_999
_SIZING_ID: Final = RequestId("00000000-0000-4000-8000-000000000000")

Chunkable = HttpRequest | HttpResponse


def chunk_payload_size(max_message_bytes: int = MAX_MESSAGE_BYTES) -> int:
    """How many raw body bytes one `BodyChunk` can carry and still encode within `max_message_bytes`.

    Args:
        max_message_bytes: The size limit for one encoded message.

    Returns:
        A positive multiple of 3 (so chunks need no base64 padding but the last).

    Raises:
        ValueError: The limit is too small to carry any data.
    """
    envelope = len(encode_frame(BodyChunk(_SIZING_ID, _WIDEST_INDEX, b"\0\0\0"))) - 4
    size = (max_message_bytes - envelope) // 4 * 3
    if size <= 0:
        raise ValueError(f"max_message_bytes={max_message_bytes} leaves no room for chunk data")
    return size


# The JSON of a head around its strings: type tag, field names, quotes, status, timestamp, a manifest.
_HEAD_OVERHEAD: Final = 512


def _encoded_size(message: Chunkable, limit: int) -> int:
    """The size of the message's frame, or a bound on it that is at most `limit` (then it fits)."""
    body = 4 * ((len(message.body) + 2) // 3)
    strings = sum(len(name) + len(value) + 8 for name, value in message.headers)
    if isinstance(message, HttpRequest):
        strings += len(message.uri) + len(message.method)
    # JSON escapes a character in at most 6 (\uXXXX): a bound that fits needs no encoding to measure.
    if body + 6 * strings + _HEAD_OVERHEAD <= limit:
        return body + 6 * strings + _HEAD_OVERHEAD
    # Measure without the body, then add its base64 length: cheaper than encoding 20 MB to measure it.
    bare = dataclasses.replace(message, body=b"")
    return len(encode_frame(bare)) + body


def split_message(
    message: TunnelMessage, *, max_message_bytes: int = MAX_MESSAGE_BYTES, chunking: bool = True
) -> list[TunnelMessage]:
    """Split a message so that every part encodes within `max_message_bytes`.

    A message that fits is returned alone, unchanged, whatever the version. Otherwise an `HttpRequest` or
    `HttpResponse` becomes a head with a `BodyManifest` and empty body, followed by its `BodyChunk`s.

    Args:
        message: The message to send; it must not carry a manifest already.
        max_message_bytes: The limit for one encoded message.
        chunking: Whether the peer accepts body chunks (version 2 with the `body_chunks` feature).

    Returns:
        The messages to send, in order.

    Raises:
        LocalProtocolError: The message does not fit and cannot be split: a version-1 peer, a body-less
            message, or headers too large for one message (`field` says which).
    """
    if isinstance(message, HttpRequest | HttpResponse):
        if message.body_manifest is not None:
            raise LocalProtocolError("the protocol adds body manifests itself", field="body_manifest")
        size = _encoded_size(message, max_message_bytes)
    else:
        size = len(encode_frame(message))
    if size <= max_message_bytes:
        return [message]
    if not isinstance(message, HttpRequest | HttpResponse) or not message.body:
        raise LocalProtocolError(f"message of {size} bytes exceeds the {max_message_bytes}-byte limit")
    body_status = 413 if isinstance(message, HttpRequest) else 502
    if not chunking:
        raise LocalProtocolError(
            f"body of {len(message.body)} bytes does not fit in one {max_message_bytes}-byte message, "
            "and the peer speaks protocol version 1 (no body chunks)",
            field="body",
            status_hint=body_status,
        )
    body = message.body
    step = chunk_payload_size(max_message_bytes)
    manifest = BodyManifest(
        count=-(-len(body) // step), length=len(body), sha256=hashlib.sha256(body).hexdigest()
    )
    head = dataclasses.replace(message, body=b"", body_manifest=manifest)
    if len(encode_frame(head)) > max_message_bytes:
        raise LocalProtocolError(
            f"headers and URI alone exceed the {max_message_bytes}-byte message limit",
            field="headers",
            status_hint=431 if isinstance(message, HttpRequest) else 502,
        )
    parts: list[TunnelMessage] = [head]
    view = memoryview(body)
    for index, start in enumerate(range(0, len(body), step)):
        parts.append(BodyChunk(message.request_id, index, bytes(view[start : start + step])))
    return parts


def split_frame(frame: str, max_frame_bytes: int = MAX_WEBSOCKET_FRAME_BYTES) -> list[str]:
    """Cut one encoded message into WebSocket frame payloads of at most `max_frame_bytes` each.

    Sending the pieces as one fragmented WebSocket message (``await websocket.send(pieces)`` in
    `websockets`) keeps every frame under API Gateway's 32 KB frame quota while the message stays whole.

    Args:
        frame: An encoded message; `encode_frame` output is ASCII, so characters are bytes.
        max_frame_bytes: The frame size limit.

    Returns:
        The pieces, in order; one piece when the message fits.
    """
    if max_frame_bytes <= 0:
        raise ValueError("max_frame_bytes must be positive")
    if not frame.isascii():
        # Cut on character boundaries, never inside a UTF-8 sequence.
        pieces: list[str] = []
        current: list[str] = []
        size = 0
        for char in frame:
            width = len(char.encode("utf-8", "surrogatepass"))
            if size + width > max_frame_bytes and current:
                pieces.append("".join(current))
                current, size = [], 0
            current.append(char)
            size += width
        pieces.append("".join(current))
        return pieces
    return [frame[i : i + max_frame_bytes] for i in range(0, len(frame), max_frame_bytes)] or [""]


class BodyAssembler:
    """Puts one chunked body back together from chunks that arrive in order.

    Args:
        head: The message that carried the `BodyManifest`.
        max_body_bytes: Refuse manifests announcing more than this.

    Raises:
        RemoteProtocolError: The manifest announces too big a body (status 413).
    """

    __slots__ = ("_body", "_digest", "_head", "_manifest", "_next_index")

    def __init__(self, head: Chunkable, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        if head.body_manifest is None:
            raise LocalProtocolError(
                "BodyAssembler needs a message with a body manifest", field="body_manifest"
            )
        manifest = head.body_manifest
        if manifest.length > max_body_bytes:
            raise RemoteProtocolError(
                f"announced body of {manifest.length} bytes exceeds the {max_body_bytes}-byte limit",
                field="body_manifest.length",
                status_hint=413,
            )
        self._head = head
        self._manifest = manifest
        self._body = bytearray()
        self._digest = hashlib.sha256()
        self._next_index = 0

    @property
    def request_id(self) -> RequestId:
        """The request the body belongs to."""
        return self._head.request_id

    def feed(self, chunk: BodyChunk) -> Chunkable | None:
        """Add the next chunk.

        Args:
            chunk: The chunk, which must be the next in order.

        Returns:
            The complete message, body restored and manifest cleared, after the last chunk; else None.

        Raises:
            RemoteProtocolError: A chunk for another request, out of order, beyond the declared count or
                length, or a last chunk after which the length or digest do not match.
        """
        manifest = self._manifest
        if chunk.request_id != self._head.request_id:
            raise RemoteProtocolError("chunk belongs to another request", field="request_id")
        if chunk.index != self._next_index:
            raise RemoteProtocolError(
                f"chunk out of order: expected index {self._next_index}, got {chunk.index}", field="index"
            )
        if chunk.index >= manifest.count:
            raise RemoteProtocolError(f"chunk beyond the announced count of {manifest.count}", field="index")
        if len(self._body) + len(chunk.data) > manifest.length:
            raise RemoteProtocolError(
                f"chunk data goes beyond the announced length of {manifest.length} bytes", field="data"
            )
        self._body += chunk.data
        self._digest.update(chunk.data)
        self._next_index += 1
        if self._next_index < manifest.count:
            return None
        if len(self._body) != manifest.length:
            raise RemoteProtocolError(
                f"body ended at {len(self._body)} bytes, {manifest.length} were announced",
                field="body_manifest.length",
            )
        if self._digest.hexdigest() != manifest.sha256:
            raise RemoteProtocolError("body does not match its SHA-256 digest", field="body_manifest.sha256")
        return dataclasses.replace(self._head, body=bytes(self._body), body_manifest=None)


def assemble(
    head: Chunkable, chunks: Iterable[BodyChunk], *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> Chunkable:
    """Rebuild a chunked message from its head and all of its chunks, given in any order.

    Args:
        head: The message that carried the `BodyManifest`.
        chunks: Every chunk of the body, in any order (as the AWS gateway collects them from its store).
        max_body_bytes: Refuse manifests announcing more than this.

    Returns:
        The message with its body restored and no manifest.

    Raises:
        RemoteProtocolError: A chunk is duplicated or missing, or order, length or digest checks fail.
    """
    assembler = BodyAssembler(head, max_body_bytes=max_body_bytes)
    by_index: dict[int, BodyChunk] = {}
    for chunk in chunks:
        if chunk.index in by_index:
            raise RemoteProtocolError(f"chunk {chunk.index} received twice", field="index")
        by_index[chunk.index] = chunk
    result: Chunkable | None = None
    for expected in range(len(by_index)):
        if expected not in by_index:
            raise RemoteProtocolError(f"chunk {expected} is missing", field="index")
        result = assembler.feed(by_index[expected])
    if result is None:
        count = head.body_manifest.count if head.body_manifest else 0
        raise RemoteProtocolError(f"{len(by_index)} of {count} chunks received", field="index")
    return result
