"""`TunnelProtocol`, the sans-I/O core of one end of a tunnel: frames in, events out; messages in, frames out.

Like websockets' `Protocol` and h11's `Connection`, it has no sockets, no boto3, no asyncio and no timers.
It negotiates the version (`ready` offers, `connection_established` confirms), splits big bodies into
chunks when version 2 allows it, reassembles received chunks, answers `ping` with `pong`, and, with the
`body_stream` feature, streams bodies: it numbers and checks their chunks and keeps each one's
flow-control window, while the adapter decides when to send (transport/streams.py).
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Final, Literal

from transport.chunking import (
    DEFAULT_MAX_BODY_BYTES,
    MAX_MESSAGE_BYTES,
    BodyAssembler,
    split_message,
)
from transport.codec import DEFAULT_MAX_FRAME_BYTES, decode_frame, encode_frame
from transport.errors import LocalProtocolError, RemoteProtocolError
from transport.messages import (
    PROTOCOL_VERSION,
    STREAM_WINDOW_BYTES,
    SUPPORTED_FEATURES,
    BodyAck,
    BodyChunk,
    BodyEnd,
    ConnectionEstablished,
    ErrorMessage,
    HttpRequest,
    HttpResponse,
    Ping,
    Pong,
    Ready,
    RequestId,
    TunnelMessage,
)
from transport.streams import StreamReader, StreamWriter, Window

__all__ = ["DEFAULT_MAX_PENDING_BODIES", "ProtocolState", "Role", "TunnelProtocol"]

#: Which end of the tunnel a protocol object is.
Role = Literal["agent", "gateway"]

#: How many chunked bodies may be in flight at once before the peer is refused.
DEFAULT_MAX_PENDING_BODIES: Final = 64

_SENT_BY: Final[dict[Role, tuple[type, ...]]] = {
    "agent": (Ready, HttpResponse, BodyChunk, BodyEnd, BodyAck, Ping, Pong, ErrorMessage),
    "gateway": (ConnectionEstablished, HttpRequest, BodyChunk, BodyEnd, BodyAck, Ping, Pong, ErrorMessage),
}
_PEER: Final[dict[Role, Role]] = {"agent": "gateway", "gateway": "agent"}


class ProtocolState(enum.Enum):
    """Where the version handshake stands."""

    #: The agent has not sent `ready` yet (or the gateway has not received it).
    AWAITING_READY = "awaiting_ready"
    #: `ready` went through; `connection_established` has not.
    AWAITING_ESTABLISHED = "awaiting_established"
    #: The version is settled.
    ESTABLISHED = "established"


class TunnelProtocol:
    """One end of a tunnel, as a state machine over text frames.

    Args:
        role: ``"agent"`` or ``"gateway"``: which messages this end may send and receive.
        version: Start already established at this version with `features` (a gateway rebuilt from its
            store for each Lambda invocation); None to negotiate through `ready`.
        features: The version-2 features agreed, with `version`; or the ones to offer and accept.
        max_message_bytes: The limit for one frame we send (under API Gateway's 128 KB by default).
        max_receive_bytes: The limit for one frame we accept (API Gateway's 128 KB by default).
        max_body_bytes: The largest chunked body accepted from the peer.
        max_pending_bodies: How many chunked or streamed bodies from the peer may be in flight at once.
        window_bytes: How many bytes of a body we stream may be unacknowledged.
    """

    def __init__(
        self,
        role: Role,
        *,
        version: int | None = None,
        features: tuple[str, ...] = SUPPORTED_FEATURES,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        max_receive_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_pending_bodies: int = DEFAULT_MAX_PENDING_BODIES,
        window_bytes: int = STREAM_WINDOW_BYTES,
    ) -> None:
        if role not in _SENT_BY:
            raise ValueError(f"role must be 'agent' or 'gateway', got {role!r}")
        if version is not None and not 1 <= version <= PROTOCOL_VERSION:
            raise ValueError(f"version must be from 1 to {PROTOCOL_VERSION}, got {version!r}")
        self.role: Final = role
        self.max_message_bytes = max_message_bytes
        self.max_receive_bytes = max_receive_bytes
        self.max_body_bytes = max_body_bytes
        self.max_pending_bodies = max_pending_bodies
        self._local_features = frozenset(features)
        self._offer: tuple[int, frozenset[str]] | None = None
        if version is None:
            self._state = ProtocolState.AWAITING_READY
            self._version = 1
            self._features: frozenset[str] = frozenset()
        else:
            self._state = ProtocolState.ESTABLISHED
            self._version = version
            self._features = self._local_features if version >= 2 else frozenset()
        self._events: list[TunnelMessage] = []
        self._outgoing: list[TunnelMessage] = []
        self._assemblers: dict[RequestId, BodyAssembler] = {}
        self._readers: dict[RequestId, StreamReader] = {}
        self._writers: dict[RequestId, tuple[StreamWriter, Window]] = {}
        self._window_bytes = window_bytes

    # State ---------------------------------------------------------------------------------------------

    @property
    def state(self) -> ProtocolState:
        """Where the version handshake stands."""
        return self._state

    @property
    def version(self) -> int:
        """The protocol version in force: 1 until a handshake settles on 2."""
        return self._version

    @property
    def features(self) -> frozenset[str]:
        """The version-2 features both ends agreed on (empty in version 1)."""
        return self._features

    @property
    def chunking(self) -> bool:
        """Whether big bodies may travel as chunks in both directions."""
        return self._version >= 2 and "body_chunks" in self._features

    @property
    def streaming(self) -> bool:
        """Whether bodies may be streamed in both directions (the `body_stream` feature)."""
        return self._version >= 2 and "body_stream" in self._features

    @property
    def pending_bodies(self) -> int:
        """How many chunked or streamed bodies from the peer are partly received."""
        return len(self._assemblers) + len(self._readers)

    # Receiving -----------------------------------------------------------------------------------------

    def receive_frame(self, frame: str | bytes) -> None:
        """Take one frame from the peer; complete messages become events.

        A frame that breaks the protocol raises and is dropped (with the partial body it belonged to), and
        the connection stays usable for other requests.

        Args:
            frame: One WebSocket text message.

        Raises:
            RemoteProtocolError: The frame is malformed, too big, not one the peer may send, or a chunk
                fails its checks; `field` names the culprit.
        """
        self.receive_message(decode_frame(frame, max_bytes=self.max_receive_bytes))

    def receive_message(self, message: TunnelMessage) -> None:
        """Take one message from the peer as `receive_frame` takes it once decoded: from a peer in the same
        process (`agent.in_process`), which hands over the message objects it would have encoded.

        Raises:
            RemoteProtocolError: As `receive_frame`, except for what only decoding finds.
        """
        peer = _PEER[self.role]
        if not isinstance(message, _SENT_BY[peer]):
            raise RemoteProtocolError(f"an {peer} does not send {type(message).__name__}", field="type")
        match message:
            case Ready():
                self._receive_ready(message)
            case ConnectionEstablished():
                self._receive_established(message)
            case HttpRequest() | HttpResponse() if message.body_manifest is not None:
                self._start_body(message)
            case HttpRequest() | HttpResponse() if message.body_stream:
                self._start_stream(message)
            case BodyChunk() if message.request_id in self._readers:
                self._readers[message.request_id].feed(message)
                self._events.append(message)
            case BodyChunk():
                self._receive_chunk(message)
            case BodyEnd():
                reader = self._readers.pop(message.request_id, None)
                if reader is None:
                    raise RemoteProtocolError(
                        "body_end for a request with no body streaming", field="request_id"
                    )
                reader.end(message)
                self._events.append(message)
            case BodyAck():
                sending = self._writers.get(message.request_id)
                if sending is not None:  # an ack after the end of the body is late, not wrong
                    sending[1].acknowledge(message)
                self._events.append(message)
            case Ping():
                if self._version >= 2 and "pong" in self._features:
                    self._queue(Pong())
                self._events.append(message)
            case ErrorMessage(request_id=request_id) if request_id is not None:
                # The peer gave up on this request: a body still arriving for it never will, and one we
                # are sending is not wanted any more.
                self._assemblers.pop(request_id, None)
                self._readers.pop(request_id, None)
                self._writers.pop(request_id, None)
                self._events.append(message)
            case _:
                self._events.append(message)

    def _receive_ready(self, ready: Ready) -> None:
        if self._state is not ProtocolState.AWAITING_READY:
            raise RemoteProtocolError("ready was already received", field="type")
        version = min(ready.version, PROTOCOL_VERSION)
        features = frozenset(ready.features or ()) & self._local_features if version >= 2 else frozenset()
        self._offer = (version, features)
        self._state = ProtocolState.AWAITING_ESTABLISHED
        self._events.append(ready)

    def _receive_established(self, established: ConnectionEstablished) -> None:
        if self._state is not ProtocolState.AWAITING_ESTABLISHED or self._offer is None:
            raise RemoteProtocolError("connection_established without a ready before it", field="type")
        offered_version, offered_features = self._offer
        if established.version > offered_version:
            raise RemoteProtocolError(
                f"version {established.version} confirmed, but only {offered_version} was offered",
                field="protocol_version",
            )
        self._settle(established.version, frozenset(established.features or ()) & offered_features)
        self._events.append(established)

    def _start_body(self, head: HttpRequest | HttpResponse) -> None:
        if not self.chunking:
            raise RemoteProtocolError("body chunks need protocol version 2", field="body_manifest")
        if head.request_id in self._assemblers:
            del self._assemblers[head.request_id]
            raise RemoteProtocolError(
                "a chunked body for this request is already in flight", field="request_id"
            )
        if len(self._assemblers) >= self.max_pending_bodies:
            raise RemoteProtocolError(
                f"more than {self.max_pending_bodies} chunked bodies in flight", status_hint=503
            )
        self._assemblers[head.request_id] = BodyAssembler(head, max_body_bytes=self.max_body_bytes)

    def _start_stream(self, head: HttpRequest | HttpResponse) -> None:
        if not self.streaming:
            raise RemoteProtocolError("streamed bodies need the body_stream feature", field="body_stream")
        if head.request_id in self._readers or head.request_id in self._assemblers:
            self._readers.pop(head.request_id, None)
            raise RemoteProtocolError("a body for this request is already in flight", field="request_id")
        if self.pending_bodies >= self.max_pending_bodies:
            raise RemoteProtocolError(
                f"more than {self.max_pending_bodies} bodies in flight", status_hint=503
            )
        self._readers[head.request_id] = StreamReader(head.request_id)
        self._events.append(head)

    def _receive_chunk(self, chunk: BodyChunk) -> None:
        assembler = self._assemblers.get(chunk.request_id)
        if assembler is None:
            raise RemoteProtocolError("chunk for a request with no body in flight", field="request_id")
        try:
            message = assembler.feed(chunk)
        except RemoteProtocolError:
            del self._assemblers[chunk.request_id]
            raise
        if message is not None:
            del self._assemblers[chunk.request_id]
            self._events.append(message)

    def discard_body(self, request_id: RequestId) -> bool:
        """Drop a partly received chunked body, e.g. when its request timed out.

        Args:
            request_id: The request whose body to drop.

        Returns:
            Whether a body was in flight for it.
        """
        found = self._assemblers.pop(request_id, None) is not None
        return self._readers.pop(request_id, None) is not None or found

    def events_received(self) -> list[TunnelMessage]:
        """Drain the complete messages received so far, oldest first.

        Returns:
            The messages; chunked bodies appear once, whole, as their `HttpRequest` or `HttpResponse`.
        """
        events, self._events = self._events, []
        return events

    # Sending -------------------------------------------------------------------------------------------

    def send(self, message: TunnelMessage) -> None:
        """Queue a message for the peer, split into several frames when it is too big for one.

        On the gateway, a `ConnectionEstablished` whose `protocol_version` is None is completed with the
        version and features agreed from the agent's `ready`.

        Args:
            message: The message; never a `BodyChunk` or a manifest, which this object makes itself.

        Raises:
            LocalProtocolError: The message is not ours to send, is out of turn, or cannot fit (a body too
                big for a version-1 peer, with `status_hint` 413 for requests and 502 for responses).
        """
        if not isinstance(message, _SENT_BY[self.role]):
            raise LocalProtocolError(f"an {self.role} does not send {type(message).__name__}", field="type")
        if isinstance(message, BodyChunk | BodyEnd):
            raise LocalProtocolError(
                "body chunks are made by the protocol: send the whole message, or stream with send_body",
                field="type",
            )
        match message:
            case Ready():
                self._send_ready(message)
            case ConnectionEstablished():
                message = self._send_established(message)
            case HttpRequest() | HttpResponse() if message.body_stream:
                self._open_stream(message)
                self._queue(message)
                return
            case ErrorMessage(request_id=request_id) if request_id is not None:
                self._writers.pop(request_id, None)  # a body we were streaming for it stops here
            case _:
                pass
        for part in split_message(message, max_message_bytes=self.max_message_bytes, chunking=self.chunking):
            self._queue(part)

    def _open_stream(self, head: HttpRequest | HttpResponse) -> None:
        if not self.streaming:
            raise LocalProtocolError("streamed bodies need the body_stream feature", field="body_stream")
        if head.request_id in self._writers:
            raise LocalProtocolError("a body for this request is already streaming", field="request_id")
        writer = StreamWriter(head.request_id, max_message_bytes=self.max_message_bytes)
        self._writers[head.request_id] = (writer, Window(self._window_bytes))

    def send_body(self, request_id: RequestId, data: bytes) -> None:
        """Queue the next bytes of a body we stream (its head went with `body_stream`), as chunks.

        Check `window(request_id).open()` first: the peer acknowledges what it passed on, and a sender
        that ignores the window makes it hold more than `STREAM_WINDOW_BYTES`.

        Raises:
            LocalProtocolError: No body is streaming for this request.
        """
        writer, window = self._sending(request_id)
        for chunk in writer.chunks(data):
            self._queue(chunk)
        window.spend(len(data))

    def end_body(self, request_id: RequestId) -> None:
        """Queue the `BodyEnd` that closes a body we stream.

        Raises:
            LocalProtocolError: No body is streaming for this request.
        """
        writer, _ = self._sending(request_id)
        del self._writers[request_id]
        self._queue(writer.end())

    def window(self, request_id: RequestId) -> Window | None:
        """The flow-control window of a body we stream, None once it ended (or never began)."""
        sending = self._writers.get(request_id)
        return None if sending is None else sending[1]

    def _sending(self, request_id: RequestId) -> tuple[StreamWriter, Window]:
        sending = self._writers.get(request_id)
        if sending is None:
            raise LocalProtocolError("no body is streaming for this request", field="request_id")
        return sending

    def _send_ready(self, ready: Ready) -> None:
        if self._state is not ProtocolState.AWAITING_READY:
            raise LocalProtocolError("ready was already sent", field="type")
        version = min(ready.version, PROTOCOL_VERSION)
        features = frozenset(ready.features or ()) & self._local_features if version >= 2 else frozenset()
        self._offer = (version, features)
        self._state = ProtocolState.AWAITING_ESTABLISHED

    def _send_established(self, established: ConnectionEstablished) -> ConnectionEstablished:
        if self._state is not ProtocolState.AWAITING_ESTABLISHED or self._offer is None:
            raise LocalProtocolError(
                "connection_established answers a ready, none was received", field="type"
            )
        offered_version, offered_features = self._offer
        if established.protocol_version is None and offered_version >= 2:
            established = dataclasses.replace(
                established, protocol_version=offered_version, features=tuple(sorted(offered_features))
            )
        if established.version > offered_version:
            raise LocalProtocolError(
                f"version {established.version} confirmed, but the agent offered {offered_version}",
                field="protocol_version",
            )
        self._settle(established.version, frozenset(established.features or ()) & offered_features)
        return established

    def _settle(self, version: int, features: frozenset[str]) -> None:
        self._version = version
        self._features = features if version >= 2 else frozenset()
        self._state = ProtocolState.ESTABLISHED

    def _queue(self, message: TunnelMessage) -> None:
        self._outgoing.append(message)

    def frames_to_send(self) -> list[str]:
        """Drain the frames waiting to go to the peer, in order.

        Returns:
            JSON text frames, each at most `max_message_bytes` long. An agent talking to API Gateway sends
            each through `split_frame` as one fragmented WebSocket message of 32 KB frames.
        """
        return [encode_frame(message) for message in self.messages_to_send()]

    def messages_to_send(self) -> list[TunnelMessage]:
        """Drain the messages waiting to go to the peer, in order, not encoded: for a peer in the same
        process (`agent.in_process`), which takes them with `receive_message`. Each is one frame's worth.
        """
        messages, self._outgoing = self._outgoing, []
        return messages
