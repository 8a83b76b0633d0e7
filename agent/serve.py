"""The self-hosted gateway (`tunnel serve`): public HTTP and agent WebSockets on one port. Does network I/O.

One ASGI app, served by uvicorn, runs the very logic of the Lambda gateway (`lambda_app.app.Gateway`) over
a `MemoryStore` and a `LocalTransport`. Where the Lambda edge polls the store for an answer, this edge
waits on an event that the agent's connection sets when one of its frames answers the request: no polling.
Agents open a WebSocket at `/` on the gateway's own host (`ws://127.0.0.1:8080/`); every other request is
public and is routed by tunnel host (`<id>.<domain>`) or first path segment (`/<id>/...`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import parse_qsl

import uvicorn

from agent.in_process import MESSAGE_KEY, MESSAGES_EXTENSION, MESSAGES_KEY
from agent.relay import BrokenOff, Relay, StreamStop, finish_off_loop
from lambda_app.app import Exchange, Gateway, GatewayConfig, PublicRequest, PublicResponse, error_page
from lambda_app.asgi import Receive, Send, read_body
from lambda_app.auth import Authenticator, AuthError
from lambda_app.records import Outcome
from lambda_app.store_memory import MemoryStore
from transport.errors import TransportError
from transport.local import LocalTransport
from transport.messages import (
    SUPPORTED_FEATURES,
    ConnectionId,
    RequestId,
    TunnelId,
    TunnelMessage,
    new_request_id,
)

__all__ = [
    "DEFAULT_BODY_LIMIT",
    "DEFAULT_TUNNEL_CONCURRENCY",
    "GatewayServer",
    "SelfHostedGateway",
    "ServeConfig",
    "ServerEvent",
    "bind",
]

_log = logging.getLogger("agent.serve")

#: The largest public request body forwarded by default; the whole body is held in memory on its way.
DEFAULT_BODY_LIMIT: Final = 64 * 1024 * 1024
#: Requests one tunnel may have in flight at once by default; more get 503.
DEFAULT_TUNNEL_CONCURRENCY: Final = 256
# Request bodies up to this size are read whole and sent in one message; bigger ones stream.
_INLINE_BODY_BYTES: Final = 64 * 1024

#: One thing that happened, as a JSON-ready dict with an ``"event"`` key.
ServerEvent = dict[str, Any]

_Scope = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ServeConfig:
    """How the self-hosted gateway presents tunnels and what it accepts.

    Attributes:
        public_url: The origin the public reaches this gateway at (``http://127.0.0.1:8080``, or
            ``https://tunnel.example.com`` behind a TLS proxy); path-mode tunnels live under it.
        domain: Host-mode tunnels answer at ``<id>.<domain>`` (``localhost``: browsers resolve
            ``*.localhost`` to loopback); None turns host mode off.
        body_limit: The largest public request body forwarded; larger gets 413.
        response_timeout: Seconds to wait for an agent's answer before 504.
        tunnel_concurrency: Requests one tunnel may have in flight at once; more get 503.
        resume_secret: Signs resume tokens, so an agent keeps its tunnel id across reconnections (and
            across restarts of this gateway, when the secret is kept); None disables resuming.
    """

    public_url: str
    domain: str | None = "localhost"
    body_limit: int = DEFAULT_BODY_LIMIT
    response_timeout: float = 25.0
    tunnel_concurrency: int = DEFAULT_TUNNEL_CONCURRENCY
    resume_secret: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.body_limit < 0:
            raise ValueError(f"body_limit must not be negative, got {self.body_limit}")
        if self.tunnel_concurrency < 1:
            raise ValueError(f"tunnel_concurrency must be at least 1, got {self.tunnel_concurrency}")

    def gateway_config(self) -> GatewayConfig:
        """The shared gateway logic's configuration."""
        return GatewayConfig(
            public_url=self.public_url,
            host_domain=self.domain,
            max_body_bytes=self.body_limit,
            response_timeout=self.response_timeout,
            pending_ttl=int(self.response_timeout) + 60,
            resume_secret=self.resume_secret,
            # Unlike an HTTP API behind Lambda, this gateway can stream bodies both ways.
            features=SUPPORTED_FEATURES,
        )


@dataclass(slots=True)
class _Waiter:
    """A public request waiting for its agent's answer."""

    connection_id: ConnectionId
    event: asyncio.Event = field(default_factory=asyncio.Event)


class _AsgiWebSocket:
    """The agent's connection as `LocalTransport` sees it: sends go out as ASGI messages."""

    def __init__(self, send: Send) -> None:
        self._send = send

    async def send(self, message: str | Iterable[str]) -> None:
        text = message if isinstance(message, str) else "".join(message)
        await self._send({"type": "websocket.send", "text": text})

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self._send({"type": "websocket.close", "code": code, "reason": reason})


class _AsgiMessageSocket(_AsgiWebSocket):
    """The connection of an agent in this process (`agent.in_process`), which takes messages unencoded."""

    async def send_messages(self, messages: Sequence[TunnelMessage]) -> None:
        await self._send({"type": "websocket.send", MESSAGES_KEY: list(messages)})


class SelfHostedGateway:
    """The ASGI app of the self-hosted gateway.

    Args:
        config: URLs and limits.
        authenticator: Checks agents when they connect (a shared token or JWT; everyone when disabled).
        on_event: Receives the gateway's events (agents connecting and leaving); must not block.
        clock: Epoch seconds, for the store and the gateway logic.
    """

    def __init__(
        self,
        config: ServeConfig,
        authenticator: Authenticator,
        *,
        on_event: Callable[[ServerEvent], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store = MemoryStore(clock=clock)
        self.transport = LocalTransport()
        self.gateway = Gateway(self.store, None, config.gateway_config(), clock=clock)
        self._authenticator = authenticator
        self._on_event = on_event
        self._waiters: dict[RequestId, _Waiter] = {}
        self._relays: dict[RequestId, Relay] = {}
        self._in_flight: collections.Counter[TunnelId] = collections.Counter()

    async def __call__(self, scope: _Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._public(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            await _lifespan(receive, send)

    # -- agents ------------------------------------------------------------------------------------------

    async def _websocket(self, scope: _Scope, receive: Receive, send: Send) -> None:
        headers = _headers(scope)
        if self._tunnel_named(scope, headers):
            # A public WebSocket for a tunnel: the tunnel protocol carries HTTP exchanges only.
            page = error_page(
                501, "WebSockets not supported", "This tunnel forwards HTTP requests only.", new_request_id()
            )
            await self._refuse(receive, send, page)
            return
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        try:
            principal = self._authenticator.authenticate(headers, query)
        except AuthError as exc:  # its reason never holds the token
            _log.warning("agent refused: %s", exc.reason)
            status = 503 if exc.status_hint == 503 else 401
            title = "Unauthorized" if status == 401 else "Unavailable"
            await self._refuse(receive, send, error_page(status, title, exc.reason, new_request_id()))
            return
        in_process = MESSAGES_EXTENSION in scope.get("extensions", {})
        connection_id = self.transport.register(
            _AsgiMessageSocket(send) if in_process else _AsgiWebSocket(send)
        )
        resume = next((value for name, value in query if name == "resume"), None)
        try:
            connection = self.gateway.connect(connection_id, resume_token=resume)
            if connection is None:
                page = error_page(503, "Unavailable", "No tunnel id could be claimed.", new_request_id())
                await self._refuse(receive, send, page)
                return
            message = await receive()
            if message["type"] != "websocket.connect":
                return
            await send({"type": "websocket.accept"})
            self._emit(
                {
                    "event": "agent_connected",
                    "tunnel_id": connection.tunnel_id,
                    "subject": principal.subject,
                    "client": _client_ip(scope),
                }
            )
            await self._read_agent(connection_id, receive)
        finally:
            self.transport.unregister(connection_id)
            gone = self.store.get_connection(connection_id)
            self.gateway.disconnect(connection_id)
            self._wake_connection(connection_id)
            if gone is not None:
                self._emit({"event": "agent_disconnected", "tunnel_id": gone.tunnel_id})

    async def _read_agent(self, connection_id: ConnectionId, receive: Receive) -> None:
        """Feed the agent's frames to the gateway logic until it disconnects."""
        while True:
            message = await receive()
            if message["type"] != "websocket.receive":
                return
            unencoded = message.get(MESSAGE_KEY)
            if unencoded is not None:  # from an agent in this process
                result = self.gateway.handle_message(connection_id, unencoded)
            else:
                frame = message.get("text")
                result = self.gateway.handle_frame(
                    connection_id, frame if frame is not None else message["bytes"]
                )
            if result.stream is not None and result.stream.request_id is not None:
                relay = self._relays.get(result.stream.request_id)
                if relay is not None:
                    relay.deliver(result.stream)
            if result.answered is not None:
                waiter = self._waiters.get(result.answered)
                if waiter is not None:
                    waiter.event.set()
            if result.replies:
                try:
                    await self.transport.send(connection_id, result.replies)
                except TransportError:
                    return

    async def _refuse(self, receive: Receive, send: Send, page: PublicResponse) -> None:
        """Answer a WebSocket upgrade with an HTTP error page instead of accepting it."""
        await receive()  # websocket.connect
        raw = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in page.headers]
        await send({"type": "websocket.http.response.start", "status": page.status, "headers": raw})
        await send({"type": "websocket.http.response.body", "body": page.body})

    def _tunnel_named(self, scope: _Scope, headers: list[tuple[str, str]]) -> bool:
        host = next((value for name, value in headers if name == "host"), "")
        path = scope.get("path", "/")
        return self.gateway.routes(host, path)

    def _wake_connection(self, connection_id: ConnectionId) -> None:
        for waiter in self._waiters.values():
            if waiter.connection_id == connection_id:
                waiter.event.set()
        for relay in self._relays.values():
            if relay.exchange.connection.connection_id == connection_id:
                relay.stop(StreamStop.AGENT_GONE)

    # -- the public ----------------------------------------------------------------------------------------

    async def _public(self, scope: _Scope, receive: Receive, send: Send) -> None:
        request_id = new_request_id()
        started = False

        async def tracked(message: dict[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            response = await self._answer(scope, receive, tracked, request_id)
        except BrokenOff:
            # The body broke off midway: returning without ending the response makes uvicorn cut the
            # connection, so the client sees an incomplete response, never a silently short one.
            return
        except Exception:
            response = self.gateway.failed(request_id)
            if started:
                return
        if response is not None:
            await _respond(send, response, head_only=scope["method"] == "HEAD")

    async def _answer(
        self, scope: _Scope, receive: Receive, send: Send, request_id: RequestId
    ) -> PublicResponse | None:
        """The answer to a public request; None when it was streamed to `send` already."""
        headers = _headers(scope)
        declared = next((value for name, value in headers if name == "content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > self.config.body_limit:
            return self.gateway.too_large(request_id)
        target = scope.get("raw_path") or scope["path"].encode("utf-8")
        query: bytes = scope.get("query_string", b"")
        request = PublicRequest(
            method=scope["method"],
            target=(target + b"?" + query if query else target).decode("latin-1"),
            headers=tuple(headers),
            client_ip=_client_ip(scope),
        )
        # A body too big for one message streams to an agent that can take it; any other is read first.
        stream_body = _big_body(headers) and self.gateway.streams_bodies(request)
        if not stream_body:
            body = await read_body(receive, self.config.body_limit)
            if body is None:
                return self.gateway.too_large(request_id)
            request = dataclasses.replace(request, body=body)
        exchange = self.gateway.begin(request, request_id, stream_body=stream_body)
        if isinstance(exchange, PublicResponse):
            return exchange
        tunnel_id = exchange.connection.tunnel_id
        self._in_flight[tunnel_id] += 1
        try:
            if self._in_flight[tunnel_id] > self.config.tunnel_concurrency:
                return _busy(request_id, self.config.tunnel_concurrency)
            if exchange.streamed:
                return await self._relay(exchange, receive, send, stream_body)
            return await self._stored_answer(exchange)
        finally:
            self.gateway.end(exchange)
            self._in_flight[tunnel_id] -= 1
            if not self._in_flight[tunnel_id]:
                del self._in_flight[tunnel_id]

    async def _relay(
        self, exchange: Exchange, receive: Receive, send: Send, stream_body: bool
    ) -> PublicResponse | None:
        """An exchange with an agent that streams: the answer comes through its connection, not the store."""
        relay = Relay(self.gateway, exchange, self.transport, response_timeout=self.config.response_timeout)
        request_id = exchange.request_id
        self._relays[request_id] = relay
        client = None
        try:
            try:
                await self.transport.send_messages(exchange.connection.connection_id, exchange.messages)
            except TransportError as exc:
                return self.gateway.undeliverable(exchange, exc)
            client = asyncio.create_task(self._client_side(relay, receive, stream_body))
            return await relay.answer(send)
        finally:
            del self._relays[request_id]
            if client is not None:
                client.cancel()
                await asyncio.gather(client, return_exceptions=True)
            if not relay.finished:
                await relay.abandon("the gateway gave up on this request")

    async def _client_side(self, relay: Relay, receive: Receive, stream_body: bool) -> None:
        """Pump the request body to the agent (when it streams), then watch for the client leaving."""
        if stream_body:
            await relay.pump_upload(receive, self.config.body_limit)
        if relay.stopped is None:
            await relay.watch_client(receive)

    async def _stored_answer(self, exchange: Exchange) -> PublicResponse:
        """An exchange with an agent that does not stream: its answer goes through the store, and its
        waiter is woken when the agent's connection stored (part of) it."""
        request_id = exchange.request_id
        waiter = _Waiter(exchange.connection.connection_id)
        self._waiters[request_id] = waiter
        try:
            try:
                await self.transport.send_messages(waiter.connection_id, exchange.messages)
            except TransportError as exc:
                return self.gateway.undeliverable(exchange, exc)
            outcome, wakes = await self._wait(exchange, waiter)
            return await finish_off_loop(self.gateway, exchange, outcome, wakes)
        finally:
            del self._waiters[request_id]

    async def _wait(
        self, exchange: Exchange, waiter: _Waiter
    ) -> tuple[Outcome | Literal["timeout", "gone"], int]:
        """Sleep until the agent's connection says the answer arrived, it left, or time ran out.

        Returns:
            The outcome (``"timeout"`` or ``"gone"`` when there is none) and how often the waiter woke.
        """
        wakes = 0
        try:
            async with asyncio.timeout(self.config.response_timeout):
                while True:
                    await waiter.event.wait()
                    waiter.event.clear()
                    wakes += 1
                    outcome = self.gateway.poll(exchange)
                    if outcome is not None:
                        return outcome, wakes
                    if not self.gateway.agent_connected(exchange):
                        return "gone", wakes
        except TimeoutError:
            return "timeout", wakes

    def _emit(self, event: ServerEvent) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(event)
        except Exception:  # a broken sink must not break the gateway
            _log.exception("event sink failed")


def _busy(request_id: RequestId, limit: int) -> PublicResponse:
    page = error_page(
        503, "Tunnel busy", f"This tunnel has {limit} requests in flight already; try again.", request_id
    )
    return PublicResponse(page.status, [*page.headers, ("retry-after", "1")], page.body, request_id)


def _headers(scope: _Scope) -> list[tuple[str, str]]:
    return [(name.decode("latin-1").lower(), value.decode("latin-1")) for name, value in scope["headers"]]


def _big_body(headers: list[tuple[str, str]]) -> bool:
    """Whether a request announces a body too big for one message, or one of unknown length."""
    length = next((value for name, value in headers if name == "content-length"), None)
    if length is not None:
        return length.isdigit() and int(length) > _INLINE_BODY_BYTES
    return any(name == "transfer-encoding" for name, _ in headers)


def _client_ip(scope: _Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


async def _respond(send: Send, response: PublicResponse, *, head_only: bool) -> None:
    raw = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in response.headers]
    await send({"type": "http.response.start", "status": response.status, "headers": raw})
    await send({"type": "http.response.body", "body": b"" if head_only else response.body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to its owner (`tunnel up` runs an agent beside it)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind(host: str, port: int) -> socket.socket:
    """Bind the gateway's listening socket, before its event loop starts, so errors come early.

    Args:
        host: The address to listen on.
        port: The port; 0 for any free one.

    Returns:
        The listening socket.

    Raises:
        OSError: The address is in use or not available, with a message naming it.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP by name: asyncio turns Nagle's algorithm off only on sockets that say they are TCP, and
    # accepted sockets inherit this one's protocol. With Nagle on, a response written in two parts (head,
    # body) waits for the client's delayed ACK on a kept-alive connection: 40 ms per request on Linux.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.listen(1024)
    sock.setblocking(False)
    return sock


class GatewayServer:
    """The self-hosted gateway serving on a bound socket, within an event loop.

    Args:
        app: The gateway.
        sock: The listening socket (see `bind`); closed when the server stops.
    """

    def __init__(self, app: SelfHostedGateway, sock: socket.socket) -> None:
        self.app = app
        self.socket = sock

    @property
    def port(self) -> int:
        """The port listened on."""
        return int(self.socket.getsockname()[1])

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[GatewayServer]:
        """Serve until the `async with` block ends."""
        config = uvicorn.Config(
            self.app,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            http="auto",  # httptools' C parser when installed, else h11
            ws="websockets-sansio",
            # Agents send chunks of at most 128 KB; a version-1 agent sends a whole body in one message.
            ws_max_size=64 * 1024 * 1024,
            # Tunnel heartbeats keep agents alive; WebSocket pings would only add traffic.
            ws_ping_interval=None,
            # Compressing every frame costs more CPU than anything else on the tunnel's path, and most
            # bodies worth the effort come compressed already (API Gateway does not compress either).
            ws_per_message_deflate=False,
            # The agent forwards the local app's Date and Server headers; uvicorn's would double them.
            server_header=False,
            date_header=False,
            # X-Forwarded-For is the gateway logic's to build, from the client address.
            proxy_headers=False,
            timeout_graceful_shutdown=5,
        )
        server = _Server(config)
        task = asyncio.create_task(server.serve(sockets=[self.socket]))
        try:
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("the gateway stopped while starting")
                await asyncio.sleep(0.01)
            yield self
        finally:
            server.should_exit = True
            with contextlib.suppress(Exception):
                await task
            self.socket.close()
