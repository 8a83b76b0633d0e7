"""The agent's loop: a WebSocket client ⇄ `TunnelProtocol("agent")` ⇄ `forward()`. Does network I/O.

`Agent.run()` connects to the gateway, offers protocol version 2 in `ready`, waits for
`connection_established`, then replays each `http_request` against the local app (at most `concurrency` at
a time) and sends the answers back, chunked by the protocol and cut into WebSocket frames of at most 32 KB
(API Gateway's frame quota). It sends heartbeats, reconnects with exponential backoff and jitter after any
failure, presenting its resume token to keep its tunnel id, and on cancellation (Ctrl-C) stops reading,
lets in-flight requests finish within a bounded wait and closes the connection cleanly. What happens is
reported as plain dicts to an event sink (the CLI prints them). `tunnel up` hands it a `connector` that
joins it to the gateway in the same process instead (`agent.in_process`): messages then cross unencoded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from agent.forward import forward, stream_forward
from agent.in_process import MemoryConnection
from agent.local_http import LocalClient
from transport.chunking import MAX_WEBSOCKET_FRAME_BYTES, split_frame
from transport.codec import DEFAULT_MAX_FRAME_BYTES
from transport.errors import LocalProtocolError, ProtocolError
from transport.messages import (
    SUPPORTED_FEATURES,
    BodyAck,
    BodyChunk,
    BodyEnd,
    ConnectionEstablished,
    ErrorMessage,
    HttpRequest,
    HttpResponse,
    Ping,
    Ready,
    RequestId,
    TunnelMessage,
)
from transport.protocol import TunnelProtocol

__all__ = [
    "Agent",
    "AgentConfig",
    "AgentConnection",
    "AgentEvent",
    "Connector",
    "EventSink",
    "OutputMode",
    "reconnect_delays",
    "run_agent",
]

_log = logging.getLogger("agent.tunnel")

#: One thing that happened, as a JSON-ready dict with an ``"event"`` key.
AgentEvent = dict[str, Any]
#: Receives the agent's events, in order; it must not block.
EventSink = Callable[[AgentEvent], None]
#: How the CLI shows events: a live log, nothing, or one JSON line each.
OutputMode = Literal["log", "json", "quiet"]

# The status the public caller sees for each error code (lambda_app.app's error pages).
# Bodies up to this size, when the local app announces their length, go to the gateway in one message;
# anything bigger, or of unknown length (an event stream), is streamed as it comes.
_INLINE_BODY_BYTES: Final = 64 * 1024

_ERROR_STATUS: Final[dict[str, int]] = {
    "local_service_unavailable": 502,
    "timeout": 504,
    "invalid_request": 400,
    "internal_error": 502,
}


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """What the agent connects to, what it forwards to, and how patient it is.

    Attributes:
        endpoint: The gateway's WebSocket URL, ``ws://`` or ``wss://``.
        local_port: The port of the local app.
        local_host: The host of the local app; the local origin is ``http://<local_host>:<local_port>``.
        token: Sent as ``Authorization: Bearer <token>`` when connecting; None sends none.
        host_header: The `Host` header the local app receives; None keeps the public one (dev servers
            that accept only their own host want ``127.0.0.1:3000``).
        concurrency: How many requests are forwarded at once; more wait their turn.
        request_timeout: Seconds the local app has to answer one request completely.
        handshake_timeout: Seconds to open the WebSocket, and again to receive `connection_established`.
        heartbeat_interval: Seconds between heartbeats; well inside API Gateway's 10-minute idle timeout.
            When the gateway answers pings (`pong` feature), a heartbeat interval without any message from
            it means the connection is dead, and the agent reconnects.
        backoff_initial: Seconds before the first reconnection attempt.
        backoff_max: The longest wait between attempts.
        backoff_factor: Growth of the wait after each failed attempt.
        backoff_jitter: Each wait is shortened by a random fraction up to this, so agents spread out.
        max_frame_bytes: The largest WebSocket frame sent (API Gateway's frame quota is 32 KB); longer
            messages go out as fragmented WebSocket messages.
        max_receive_bytes: The largest message accepted from the gateway (API Gateway's 128 KB quota).
        shutdown_timeout: Seconds in-flight requests get to finish after cancellation.
        close_timeout: Seconds to wait for the closing handshake.
        output: How the CLI shows events.
    """

    endpoint: str
    local_port: int
    local_host: str = "127.0.0.1"
    token: str | None = field(default=None, repr=False)
    host_header: str | None = None
    concurrency: int = 64
    request_timeout: float = 25.0
    handshake_timeout: float = 10.0
    heartbeat_interval: float = 300.0
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    backoff_factor: float = 2.0
    backoff_jitter: float = 0.25
    max_frame_bytes: int = MAX_WEBSOCKET_FRAME_BYTES
    max_receive_bytes: int = DEFAULT_MAX_FRAME_BYTES
    shutdown_timeout: float = 10.0
    close_timeout: float = 5.0
    output: OutputMode = "log"

    def __post_init__(self) -> None:
        scheme = urlsplit(self.endpoint).scheme
        if scheme not in ("ws", "wss") or not urlsplit(self.endpoint).netloc:
            raise ValueError(f"endpoint must be a ws:// or wss:// URL, got {self.endpoint!r}")
        if not 1 <= self.local_port <= 65535:
            raise ValueError(f"local_port must be from 1 to 65535, got {self.local_port}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {self.concurrency}")
        for name in ("request_timeout", "handshake_timeout", "heartbeat_interval", "backoff_max"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("backoff_initial", "shutdown_timeout", "close_timeout"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        if self.backoff_factor < 1:
            raise ValueError(f"backoff_factor must be at least 1, got {self.backoff_factor}")
        if not 0 <= self.backoff_jitter < 1:
            raise ValueError(f"backoff_jitter must be in [0, 1), got {self.backoff_jitter}")
        if self.max_frame_bytes < 1 or self.max_receive_bytes < 1:
            raise ValueError("frame and message limits must be positive")
        if self.output not in ("log", "json", "quiet"):
            raise ValueError(f"output must be 'log', 'json' or 'quiet', got {self.output!r}")

    @property
    def local_origin(self) -> str:
        """Where requests are replayed, e.g. ``http://127.0.0.1:3000``."""
        host = f"[{self.local_host}]" if ":" in self.local_host else self.local_host
        return f"http://{host}:{self.local_port}"


def reconnect_delays(config: AgentConfig, rng: Callable[[], float] = random.random) -> Iterator[float]:
    """Yield the waits before successive reconnection attempts, forever: 1, 2, 4 ... 60 s, with jitter.

    Args:
        config: The backoff settings.
        rng: Returns a float in [0, 1) for the jitter.

    Returns:
        An endless iterator of seconds; each is the nominal delay shortened by up to `backoff_jitter`.
    """
    nominal = config.backoff_initial
    while True:
        yield min(nominal, config.backoff_max) * (1 - config.backoff_jitter * rng())
        nominal = min(nominal * config.backoff_factor, config.backoff_max)


class AgentConnection(Protocol):
    """What the agent uses of its connection to the gateway: websockets' `ClientConnection`, or
    `agent.in_process.MemoryConnection` for `tunnel up`'s agent."""

    @property
    def close_code(self) -> int | None: ...

    @property
    def close_reason(self) -> str | None: ...

    async def send(self, message: str | Iterable[str]) -> None: ...

    async def recv(self) -> str | bytes | TunnelMessage: ...

    def __aiter__(self) -> AsyncIterator[str | bytes | TunnelMessage]: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


#: Opens a connection to the gateway: `(uri, handshake headers) -> connection`.
Connector = Callable[[str, Mapping[str, str] | None], Awaitable[AgentConnection]]


class _Sender:
    """Moves the protocol's outgoing frames to the WebSocket, one message at a time, in order."""

    def __init__(self, websocket: AgentConnection, protocol: TunnelProtocol, max_frame_bytes: int) -> None:
        self._websocket = websocket
        self._protocol = protocol
        self._max_frame_bytes = max_frame_bytes
        self._lock = asyncio.Lock()

    async def send(self, message: TunnelMessage | None = None) -> None:
        """Queue `message` (if any) in the protocol and send everything queued.

        Raises:
            LocalProtocolError: The message cannot be sent (nothing was queued for it).
            ConnectionClosed: The connection closed while sending.
        """
        async with self._lock:
            # Queue and drain under the lock: a chunked body's frames stay in order and together.
            if message is not None:
                self._protocol.send(message)
            await self._flush()

    @property
    def streaming(self) -> bool:
        """Whether bodies may be streamed on this connection (the `body_stream` feature was agreed)."""
        return self._protocol.streaming

    async def send_body(self, request_id: RequestId, data: bytes, acked: asyncio.Event) -> bool:
        """Send the next piece of a body we stream, once its flow-control window has room.

        Args:
            request_id: The request whose response body this is.
            data: The piece.
            acked: Set by the reader whenever the gateway acknowledges (or drops) this body.

        Returns:
            False when the body is no longer wanted (the gateway gave up on the request).

        Raises:
            ConnectionClosed: The connection closed while sending.
        """
        while True:
            window = self._protocol.window(request_id)
            if window is None:
                return False
            if window.open():
                break
            acked.clear()
            await acked.wait()  # the lock is not held: the reader must be free to take the ack
        async with self._lock:
            if self._protocol.window(request_id) is None:
                return False
            self._protocol.send_body(request_id, data)
            await self._flush()
        return True

    async def end_body(self, request_id: RequestId) -> None:
        """Close a body we stream (a no-op when the gateway dropped it already)."""
        async with self._lock:
            if self._protocol.window(request_id) is not None:
                self._protocol.end_body(request_id)
                await self._flush()

    async def _flush(self) -> None:
        if isinstance(self._websocket, MemoryConnection):  # the gateway in this process takes messages
            for message in self._protocol.messages_to_send():
                await self._websocket.send_message(message)
            return
        for frame in self._protocol.frames_to_send():
            if len(frame) > self._max_frame_bytes or not frame.isascii():
                # One fragmented WebSocket message: every frame within API Gateway's 32 KB quota.
                await self._websocket.send(split_frame(frame, self._max_frame_bytes))
            else:
                await self._websocket.send(frame)


@dataclass(slots=True)
class _Streams:
    """The bodies streaming on one connection: uploads coming in, and the acks of responses going out."""

    uploads: dict[RequestId, asyncio.Queue[bytes | BaseException | None]] = field(default_factory=dict)
    acks: dict[RequestId, asyncio.Event] = field(default_factory=dict)

    def receive(self, event: TunnelMessage) -> None:
        """Route a stream event from the gateway to the request it belongs to."""
        if isinstance(event, BodyChunk):
            upload = self.uploads.get(event.request_id)
            if upload is not None:
                upload.put_nowait(event.data)
        elif isinstance(event, BodyEnd):
            upload = self.uploads.pop(event.request_id, None)
            if upload is not None:
                upload.put_nowait(None)
        elif isinstance(event, BodyAck):
            acked = self.acks.get(event.request_id)
            if acked is not None:
                acked.set()
        elif isinstance(event, ErrorMessage) and event.request_id is not None:
            # The gateway gave up on this request: its upload stops, and so does the body we send.
            upload = self.uploads.pop(event.request_id, None)
            if upload is not None:
                upload.put_nowait(ConnectionAbortedError(f"the gateway gave up: {event.message}"))
            acked = self.acks.get(event.request_id)
            if acked is not None:
                acked.set()


async def _upload_content(
    upload: asyncio.Queue[bytes | BaseException | None], sender: _Sender, request_id: RequestId
) -> AsyncIterator[bytes]:
    """A streamed request body as httpx reads it; each piece is acknowledged once httpx has sent it on."""
    while True:
        item = await upload.get()
        if item is None:
            return
        if isinstance(item, BaseException):
            raise item
        yield item
        await sender.send(BodyAck(request_id, len(item)))


class Agent:
    """The forwarder: keeps a tunnel open to a gateway and replays its requests against the local app.

    Args:
        config: Endpoint, local app and timings.
        on_event: Receives each event (``ready``, ``request``, ``reconnecting``, ``stopped``).
        client: The HTTP client for the local app; when None the agent creates one for its lifetime (one
            connection pool for every request) and closes it when `run` ends.
        rng: Returns a float in [0, 1), for the backoff jitter.
        connector: Opens the connection to the gateway; None for a WebSocket to `config.endpoint`.
    """

    def __init__(
        self,
        config: AgentConfig,
        *,
        on_event: EventSink | None = None,
        client: httpx.AsyncClient | None = None,
        rng: Callable[[], float] = random.random,
        connector: Connector | None = None,
    ) -> None:
        self.config = config
        self._connector = connector or self._connect_websocket
        self._on_event = on_event
        self._client = client
        self._rng = rng
        self._resume_token: str | None = None
        self._tunnel_id: str | None = None
        self._semaphore = asyncio.Semaphore(config.concurrency)

    @property
    def resume_token(self) -> str | None:
        """The token the gateway gave for keeping the tunnel id across reconnections, once known."""
        return self._resume_token

    @property
    def tunnel_id(self) -> str | None:
        """The current (or last) tunnel id."""
        return self._tunnel_id

    async def run(self) -> None:
        """Keep the tunnel up until cancelled, reconnecting after every failure.

        Raises:
            asyncio.CancelledError: Always, in the end: the agent stops only when cancelled, after letting
                in-flight requests finish (within `shutdown_timeout`) and closing the connection.
        """
        async with contextlib.AsyncExitStack() as stack:
            client = self._client
            if client is None:
                client = await stack.enter_async_context(
                    LocalClient(max_connections=self.config.concurrency, timeout=self.config.request_timeout)
                )
            try:
                await self._reconnect_forever(client)
            finally:
                self._emit({"event": "stopped", "tunnel_id": self._tunnel_id})

    async def _reconnect_forever(self, client: httpx.AsyncClient) -> None:
        delays = reconnect_delays(self.config, self._rng)
        attempt = 0
        while True:
            established = False
            try:
                reason = await self._session(client)
                established = True
            except InvalidStatus as exc:
                reason = f"the gateway refused the connection: HTTP {exc.response.status_code}"
            except TimeoutError:
                reason = "the handshake timed out"
            except _HandshakeRefused as exc:
                reason = str(exc)
            except (OSError, WebSocketException, ProtocolError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            except Exception as exc:  # "after any failure": a surprise must not end the tunnel for good
                _log.exception("unexpected failure, reconnecting")
                reason = f"{type(exc).__name__}: {exc}"
            if established:
                # A connection that worked starts the backoff afresh.
                delays = reconnect_delays(self.config, self._rng)
                attempt = 0
            attempt += 1
            delay = next(delays)
            self._emit(
                {
                    "event": "reconnecting",
                    "attempt": attempt,
                    "delay_s": round(delay, 3),
                    "reason": reason,
                    "tunnel_id": self._tunnel_id,
                }
            )
            await asyncio.sleep(delay)

    def _uri(self) -> str:
        if self._resume_token is None:
            return self.config.endpoint
        parts = urlsplit(self.config.endpoint)
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "resume"]
        query.append(("resume", self._resume_token))
        return urlunsplit(parts._replace(query=urlencode(query)))

    async def _connect_websocket(self, uri: str, headers: Mapping[str, str] | None) -> AgentConnection:
        config = self.config
        return await connect(
            uri,
            additional_headers=headers,
            open_timeout=config.handshake_timeout,
            # Heartbeats are tunnel `ping` messages: they reach the gateway's logic (and keep API
            # Gateway's idle timer running); WebSocket control pings might not.
            ping_interval=None,
            close_timeout=config.close_timeout,
            max_size=config.max_receive_bytes,
        )

    async def _session(self, client: httpx.AsyncClient) -> str:
        """One connection, from opening to its end.

        Returns:
            Why an established connection ended; failures before that raise.
        """
        config = self.config
        headers = {"Authorization": f"Bearer {config.token}"} if config.token else None
        started = time.perf_counter()
        websocket = await self._connector(self._uri(), headers)
        try:
            protocol = TunnelProtocol("agent", max_receive_bytes=config.max_receive_bytes)
            sender = _Sender(websocket, protocol, config.max_frame_bytes)
            await sender.send(
                Ready(protocol_version=2, features=SUPPORTED_FEATURES, local_origin=config.local_origin)
            )
            async with asyncio.timeout(config.handshake_timeout):
                established = await self._handshake(websocket, protocol, sender)
            resumed = self._tunnel_id == established.tunnel_id
            self._tunnel_id = established.tunnel_id
            if established.resume_token is not None:
                self._resume_token = established.resume_token
            self._emit(
                {
                    "event": "ready",
                    "public_url": established.public_url,
                    "path_url": established.path_based_url or established.public_url,
                    "host_url": established.subdomain_url,
                    "tunnel_id": established.tunnel_id,
                    "handshake_ms": round((time.perf_counter() - started) * 1000, 1),
                    "protocol_version": protocol.version,
                    "local_origin": config.local_origin,
                    "resumed": resumed,
                }
            )
            return await self._serve(websocket, protocol, sender, client)
        finally:
            # A normal closure whatever happened (`async with` would say 1011 on an exception, even on
            # Ctrl-C); closing twice is harmless.
            await websocket.close(1000, "agent stopped")

    async def _handshake(
        self, websocket: AgentConnection, protocol: TunnelProtocol, sender: _Sender
    ) -> ConnectionEstablished:
        while True:
            _receive(protocol, await websocket.recv())
            await sender.send()  # a pong, if a ping came first
            for event in protocol.events_received():
                if isinstance(event, ConnectionEstablished):
                    return event
                if isinstance(event, ErrorMessage):
                    raise _HandshakeRefused(f"the gateway said {event.code}: {event.message}")

    async def _serve(
        self,
        websocket: AgentConnection,
        protocol: TunnelProtocol,
        sender: _Sender,
        client: httpx.AsyncClient,
    ) -> str:
        """Answer requests until the connection ends (returns why) or the task is cancelled."""
        tasks: set[asyncio.Task[None]] = set()
        streams = _Streams()
        heard = asyncio.Event()
        heartbeat = asyncio.create_task(self._heartbeat(websocket, protocol, sender, heard))
        try:
            async for frame in websocket:
                heard.set()
                try:
                    _receive(protocol, frame)
                except ProtocolError as exc:
                    # One bad frame costs its own request only; the gateway times that one out.
                    _log.warning("bad frame from the gateway: %s", exc)
                await sender.send()
                for event in protocol.events_received():
                    if isinstance(event, HttpRequest):
                        if event.body_stream:
                            streams.uploads[event.request_id] = asyncio.Queue()
                        task = asyncio.create_task(self._answer(event, sender, client, streams))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
                    else:
                        streams.receive(event)
                        if isinstance(event, ErrorMessage):
                            _log.warning("gateway error %s: %s", event.code, event.message)
        except ConnectionClosed:
            pass
        except asyncio.CancelledError:
            # Ctrl-C: read nothing more, let what is in flight finish (bounded), then close cleanly.
            if tasks:
                await asyncio.wait(set(tasks), timeout=self.config.shutdown_timeout)
            raise
        finally:
            await _cancel_all({heartbeat, *tasks})
        if heartbeat.cancelled() or heartbeat.exception() is not None or not heartbeat.result():
            return _closed_reason(websocket)
        return f"no answer to the heartbeat within {self.config.heartbeat_interval:g} s"

    async def _heartbeat(
        self,
        websocket: AgentConnection,
        protocol: TunnelProtocol,
        sender: _Sender,
        heard: asyncio.Event,
    ) -> bool:
        """Send a ping every interval; returns True after closing a connection that stopped answering."""
        interval = self.config.heartbeat_interval
        pinged = False
        while True:
            await asyncio.sleep(interval)
            if pinged and "pong" in protocol.features and not heard.is_set():
                # Not even the pong of the last heartbeat came back: the connection is dead.
                await websocket.close(1011, "heartbeat timeout")
                return True
            heard.clear()
            pinged = True
            try:
                await sender.send(Ping())
            except ConnectionClosed:
                return False

    async def _answer(
        self, request: HttpRequest, sender: _Sender, client: httpx.AsyncClient, streams: _Streams
    ) -> None:
        """Forward one request (waiting for a free slot) and send its answer, streamed when agreed."""
        async with self._semaphore:
            started = time.perf_counter()
            try:
                if sender.streaming:
                    status, error = await self._stream_answer(request, sender, client, streams)
                else:
                    status, error = await self._whole_answer(request, sender, client)
            except ConnectionClosed:
                _log.info("connection closed before the answer to %s was sent", request.request_id)
                return
            finally:
                streams.uploads.pop(request.request_id, None)
        event: AgentEvent = {
            "event": "request",
            "method": request.method,
            "path": request.uri,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            "status": status,
        }
        if error is not None:
            event["error"] = error
        self._emit(event)

    async def _whole_answer(
        self, request: HttpRequest, sender: _Sender, client: httpx.AsyncClient
    ) -> tuple[int, str | None]:
        """The answer in one message (chunked by the protocol when big): for gateways that cannot stream."""
        answer = await forward(
            request,
            client,
            local_origin=self.config.local_origin,
            timeout=self.config.request_timeout,
            host_header=self.config.host_header,
        )
        return await self._send_answer(answer, sender)

    async def _send_answer(
        self, answer: HttpResponse | ErrorMessage, sender: _Sender
    ) -> tuple[int, str | None]:
        try:
            await sender.send(answer)
        except LocalProtocolError as exc:  # e.g. a big body for a version-1 gateway
            answer = ErrorMessage("internal_error", str(exc), answer.request_id)
            await sender.send(answer)
        if isinstance(answer, HttpResponse):
            return answer.status_code, None
        return _ERROR_STATUS.get(answer.code, 502), answer.code

    async def _stream_answer(
        self, request: HttpRequest, sender: _Sender, client: httpx.AsyncClient, streams: _Streams
    ) -> tuple[int, str | None]:
        """The answer as the local app produces it: small bodies inline, others streamed under the
        gateway's flow control; a streamed request body is passed to the local app as it arrives."""
        request_id = request.request_id
        upload = streams.uploads.get(request_id)
        content = None if upload is None else _upload_content(upload, sender, request_id)
        acked = streams.acks[request_id] = asyncio.Event()
        status, error = 502, None
        parts = stream_forward(
            request,
            client,
            local_origin=self.config.local_origin,
            timeout=self.config.request_timeout,
            inline_limit=_INLINE_BODY_BYTES,
            content=content,
            host_header=self.config.host_header,
        )
        try:
            async with contextlib.aclosing(parts):
                streaming = False
                async for part in parts:
                    if isinstance(part, bytes):
                        if not await sender.send_body(request_id, part, acked):
                            return status, "abandoned"  # the gateway gave up on this request
                        continue
                    status, error = await self._send_answer(part, sender)
                    streaming = isinstance(part, HttpResponse) and part.body_stream and error is None
                    if not streaming:
                        break
                if streaming:
                    await sender.end_body(request_id)
        finally:
            streams.acks.pop(request_id, None)
        return status, error

    def _emit(self, event: AgentEvent) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(event)
        except Exception:  # a broken sink must not break the tunnel
            _log.exception("event sink failed")


def _receive(protocol: TunnelProtocol, frame: str | bytes | TunnelMessage) -> None:
    if isinstance(frame, str | bytes):
        protocol.receive_frame(frame)
    else:  # from the gateway in this process, unencoded
        protocol.receive_message(frame)


class _HandshakeRefused(Exception):  # noqa: N818 (a signal inside this module, never raised out of it)
    """The gateway answered `ready` with an error instead of `connection_established`."""


async def _cancel_all(tasks: set[asyncio.Task[Any]]) -> None:
    """Cancel tasks and wait until they have ended, whatever their outcome."""
    pending = set(tasks)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


def _closed_reason(websocket: AgentConnection) -> str:
    code = websocket.close_code
    if code is None:
        return "the connection closed"
    reason = websocket.close_reason
    return f"the gateway closed the connection ({code}{': ' + reason if reason else ''})"


async def run_agent(
    config: AgentConfig, *, on_event: EventSink | None = None, client: httpx.AsyncClient | None = None
) -> None:
    """Run an agent until cancelled (a convenience around `Agent(...).run()`).

    Args:
        config: Endpoint, local app and timings.
        on_event: Receives each event.
        client: The HTTP client for the local app; one is created when None.

    Raises:
        asyncio.CancelledError: When cancelled, after a clean shutdown.
    """
    await Agent(config, on_event=on_event, client=client).run()
