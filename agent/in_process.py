"""`connect_in_process`: `tunnel up`'s agent reaches the gateway in its own process without a socket.

`tunnel up` runs the gateway and the agent in one process. Over a loopback WebSocket every frame would be
framed and masked by websockets, written to the kernel, read back and unframed by uvicorn, twice per
request: about a tenth of the CPU a request costs. Here the agent's connection is a pair of queues, and
the gateway's side of it is the very ASGI WebSocket handler a network agent gets (authentication, tunnel
registration, frames into the gateway logic), called with an in-memory scope. Messages cross as the
objects they are, without being encoded to JSON and decoded again (another tenth): the scope offers the
ASGI extension `MESSAGES_EXTENSION`, and then each side hands the other what its `TunnelProtocol` would
have encoded into a frame, one message per frame. Everything above the encoding (handshake, chunks,
streamed bodies and their flow control, heartbeats, resuming) runs as it does over the network.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK, InvalidStatus
from websockets.frames import Close
from websockets.http11 import Response

from transport.messages import TunnelMessage

__all__ = [
    "MESSAGES_EXTENSION",
    "MESSAGES_KEY",
    "MESSAGE_KEY",
    "AsgiApp",
    "MemoryConnection",
    "connect_in_process",
]

#: The ASGI scope extension of an in-process agent connection: messages may cross unencoded.
MESSAGES_EXTENSION = "tunnel.messages"
#: The key of a `websocket.send` event that carries messages to the agent (a list) instead of text.
MESSAGES_KEY = "tunnel.messages"
#: The key of a `websocket.receive` event that carries one message from the agent instead of text.
MESSAGE_KEY = "tunnel.message"

AsgiApp = Callable[
    [dict[str, Any], Callable[[], Awaitable[dict[str, Any]]], Callable[[dict[str, Any]], Awaitable[None]]],
    Coroutine[Any, Any, None],
]

_NORMAL_CLOSURE = 1000
# How long closing waits for the gateway's handler to end (websockets' default close timeout too).
_CLOSE_TIMEOUT = 10.0
_ABNORMAL_CLOSURE = 1006


class MemoryConnection:
    """The agent's end of an in-process connection: the part of websockets' `ClientConnection` the agent
    uses (`send`, `recv`, `async for`, `close`, `close_code`, `close_reason`), with the same exceptions."""

    def __init__(self) -> None:
        # Neither queue is bounded: every body that streams is bounded by its flow-control window, and a
        # whole body by the gateway's limits, as over a socket.
        self._incoming: asyncio.Queue[str | TunnelMessage | None] = asyncio.Queue()
        self._outgoing: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._accepted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._refusal: tuple[int, list[tuple[bytes, bytes]]] | None = None
        self._handler: asyncio.Task[None] | None = None
        self.close_code: int | None = None
        self.close_reason = ""

    # -- the agent's side --------------------------------------------------------------------------------

    async def send(self, message: str | Iterable[str]) -> None:
        """Send one message (an iterable of fragments is one message).

        Raises:
            ConnectionClosed: The connection is closed.
        """
        if self.close_code is not None:
            raise self._closed()
        text = message if isinstance(message, str) else "".join(message)
        self._outgoing.put_nowait({"type": "websocket.receive", "text": text})

    async def send_message(self, message: TunnelMessage) -> None:
        """Send one message unencoded, as the frame it would have been encoded into.

        Raises:
            ConnectionClosed: The connection is closed.
        """
        if self.close_code is not None:
            raise self._closed()
        self._outgoing.put_nowait({"type": "websocket.receive", MESSAGE_KEY: message})

    async def recv(self) -> str | TunnelMessage:
        """The next message from the gateway.

        Raises:
            ConnectionClosed: The connection closed (OK after a normal closure).
        """
        frame = await self._incoming.get()
        if frame is None:
            self._incoming.put_nowait(None)  # every later call raises too
            raise self._closed()
        return frame

    async def __aiter__(self) -> AsyncIterator[str | TunnelMessage]:
        while True:
            try:
                yield await self.recv()
            except ConnectionClosedOK:
                return

    async def close(self, code: int = _NORMAL_CLOSURE, reason: str = "") -> None:
        """Close the connection and wait (up to `_CLOSE_TIMEOUT`) until the gateway has let it go."""
        if self.close_code is None:
            self._set_closed(code, reason)
            self._outgoing.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        if self._handler is not None and self._handler is not asyncio.current_task():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._handler), _CLOSE_TIMEOUT)

    def _closed(self) -> ConnectionClosedOK | ConnectionClosedError:
        code = self.close_code if self.close_code is not None else _ABNORMAL_CLOSURE
        close = Close(code, self.close_reason)
        if code == _NORMAL_CLOSURE:
            return ConnectionClosedOK(close, close, rcvd_then_sent=True)
        return ConnectionClosedError(close, close, rcvd_then_sent=True)

    def _set_closed(self, code: int, reason: str) -> None:
        self.close_code = code
        self.close_reason = reason
        self._incoming.put_nowait(None)

    # -- the gateway's side (ASGI) -------------------------------------------------------------------------

    async def _receive(self) -> dict[str, Any]:
        return await self._outgoing.get()

    async def _send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "websocket.accept":
            if not self._accepted.done():
                self._accepted.set_result(None)
        elif kind == "websocket.send":
            if self.close_code is not None:
                return
            unencoded: list[TunnelMessage] | None = message.get(MESSAGES_KEY)
            if unencoded is not None:
                for item in unencoded:
                    self._incoming.put_nowait(item)
            else:
                text = message.get("text")
                self._incoming.put_nowait(text if text is not None else message["bytes"].decode("utf-8"))
        elif kind == "websocket.close":
            if self.close_code is None:
                self._set_closed(int(message.get("code", _NORMAL_CLOSURE)), str(message.get("reason") or ""))
                self._outgoing.put_nowait({"type": "websocket.disconnect", "code": self.close_code})
            self._refuse(403, [])
        elif kind == "websocket.http.response.start":
            self._refusal = (int(message["status"]), list(message.get("headers", [])))
        elif kind == "websocket.http.response.body" and self._refusal is not None:
            status, headers = self._refusal
            self._refuse(status, headers, bytes(message.get("body", b"")))

    def _refuse(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> None:
        """Fail the opening handshake as websockets does when a server answers it with HTTP."""
        if self._accepted.done():
            return
        fields = Headers((name.decode("latin-1"), value.decode("latin-1")) for name, value in headers)
        self._accepted.set_exception(InvalidStatus(Response(status, "", fields, body)))

    def _handler_ended(self, task: asyncio.Task[None]) -> None:
        if not self._accepted.done():
            error = None if task.cancelled() else task.exception()
            self._accepted.set_exception(ConnectionError(f"the gateway ended the connection: {error!r}"))
        if self.close_code is None:
            self._set_closed(_ABNORMAL_CLOSURE, "the gateway's handler ended")


async def connect_in_process(
    app: AsgiApp, uri: str, *, headers: Mapping[str, str] | None = None, open_timeout: float = 10.0
) -> MemoryConnection:
    """Open an agent connection to a gateway's ASGI app in this process, as `websockets.connect` opens one
    over the network.

    Args:
        app: The gateway (`agent.serve.SelfHostedGateway`).
        uri: The agent endpoint, as for a network agent (its path and query are what the gateway sees;
            ``?resume=...`` included).
        headers: Headers of the opening handshake (``Authorization``).
        open_timeout: Seconds the gateway may take to accept.

    Returns:
        The open connection.

    Raises:
        InvalidStatus: The gateway refused the connection (its HTTP status is on the response).
        ConnectionError: The gateway's handler ended without accepting.
        TimeoutError: It did not accept in time.
    """
    parts = urlsplit(uri)
    host = parts.netloc or "127.0.0.1"
    fields = [("host", host), *(headers or {}).items()]
    raw = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in fields]
    path = parts.path or "/"
    scope: dict[str, Any] = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": "wss" if parts.scheme == "wss" else "ws",
        "path": path,
        "raw_path": path.encode("latin-1"),
        "query_string": parts.query.encode("latin-1"),
        "root_path": "",
        "headers": raw,
        "client": ("127.0.0.1", 0),
        "server": None,
        "subprotocols": [],
        "state": {},
        "extensions": {MESSAGES_EXTENSION: {}},
    }
    connection = MemoryConnection()
    connection._outgoing.put_nowait({"type": "websocket.connect"})
    handler = asyncio.create_task(app(scope, connection._receive, connection._send))
    connection._handler = handler
    handler.add_done_callback(connection._handler_ended)
    try:
        async with asyncio.timeout(open_timeout):
            await asyncio.shield(connection._accepted)
    except BaseException:
        handler.cancel()
        with contextlib.suppress(BaseException):
            await handler
        raise
    return connection
