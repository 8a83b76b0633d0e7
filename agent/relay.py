"""Streamed exchanges of the self-hosted gateway (the `body_stream` feature): a public request's body is
pumped to the agent as it arrives, and the agent's answer is relayed to the public response as it comes,
both under the protocol's flow control, so memory stays bounded whatever the body's size. Does I/O
(through the ASGI callables and the agent's transport).

A body the rewriting core would read (HTML, CSS, JavaScript, JSON) is gathered whole first, up to the
rewriter's size limit, and answered rewritten; any other body passes through piece by piece, its headers
rewritten alone. A stream that breaks off after the response began is cut off, never ended cleanly: the
client sees an incomplete response rather than a silently truncated one.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from typing import Final, Literal

from lambda_app.app import Exchange, Gateway, PublicResponse, StreamMessage, error_page
from lambda_app.asgi import Receive, Send
from lambda_app.records import ErrorOutcome, Outcome, ResponseOutcome
from transport.chunking import BodyAssembler
from transport.errors import ProtocolError, TransportError
from transport.local import LocalTransport
from transport.messages import (
    STREAM_WINDOW_BYTES,
    BodyAck,
    BodyChunk,
    BodyEnd,
    ErrorMessage,
    HttpResponse,
    TunnelMessage,
)
from transport.streams import StreamReader, StreamWriter, Window

__all__ = ["BrokenOff", "Relay", "StreamStop", "finish_off_loop"]

_log = logging.getLogger("agent.relay")


# Answers above this size are rewritten in a worker thread, so the event loop keeps serving the others.
_REWRITE_INLINE_BYTES: Final = 64 * 1024


async def finish_off_loop(
    gateway: Gateway, exchange: Exchange, outcome: Outcome | Literal["timeout", "gone"], polls: int = 0
) -> PublicResponse:
    """`Gateway.finish`, in a worker thread when the answer's body is big enough for its rewrite to hold
    up the event loop (a 1 MB page takes about 8 ms, 18 ms where the HTML scan runs in `re`)."""
    if isinstance(outcome, ResponseOutcome) and len(outcome.body) > _REWRITE_INLINE_BYTES:
        return await asyncio.to_thread(gateway.finish, exchange, outcome, polls)
    return gateway.finish(exchange, outcome, polls)


class StreamStop(enum.Enum):
    """Why a streamed exchange stops without a message from the agent."""

    #: The agent's connection closed.
    AGENT_GONE = "agent_gone"
    #: The public client went away.
    CLIENT_GONE = "client_gone"
    #: The request body grew past the gateway's limit.
    TOO_LARGE = "too_large"
    #: The agent broke the protocol for this exchange (a bad chunk, more than its window).
    BROKEN = "broken"


class BrokenOff(Exception):  # noqa: N818 (a state, like ConnectionAbortedError)
    """A streamed response broke off after it began: the public connection must be cut, not ended."""


class Relay:
    """One streamed exchange in flight: what the agent sent for it, and the window of the body we send.

    Args:
        gateway: The gateway logic (answers, pages, rewriting).
        exchange: The exchange, begun with the agent streaming.
        transport: Sends messages to the agent.
        response_timeout: Seconds for the answer's head, and the longest pause within a streamed body.
        window_bytes: The flow-control window of the request body we stream.
    """

    def __init__(
        self,
        gateway: Gateway,
        exchange: Exchange,
        transport: LocalTransport,
        *,
        response_timeout: float,
        window_bytes: int = STREAM_WINDOW_BYTES,
    ) -> None:
        self.gateway = gateway
        self.exchange = exchange
        self._transport = transport
        self._timeout = response_timeout
        self._events: asyncio.Queue[StreamMessage | StreamStop] = asyncio.Queue()
        self._window = Window(window_bytes)
        self._acked = asyncio.Event()
        # Bytes queued and not yet passed on: an agent that ignores the window is cut off at twice it.
        self._queued = 0
        self._max_queued = 2 * window_bytes
        #: Why the exchange stopped from outside, if it did.
        self.stopped: StreamStop | None = None
        #: The agent is done with this exchange: it sent its whole answer, or gave up itself.
        self.finished = False
        self._abandoned = False

    # -- from the agent's connection ---------------------------------------------------------------------

    def deliver(self, message: StreamMessage) -> None:
        """Take a message the agent sent for this exchange (called by the connection's reader)."""
        if self.stopped is not None:
            return
        if isinstance(message, BodyAck):
            try:
                self._window.acknowledge(message)
            except ProtocolError:
                self.stop(StreamStop.BROKEN)
                return
            self._acked.set()
            return
        if isinstance(message, BodyChunk):
            self._queued += len(message.data)
            if self._queued > self._max_queued:
                self.stop(StreamStop.BROKEN)
                return
        self._events.put_nowait(message)

    def stop(self, why: StreamStop) -> None:
        """End the exchange from outside: the agent or the client left, or the agent misbehaved."""
        if self.stopped is None:
            self.stopped = why
            self._events.put_nowait(why)
            self._acked.set()

    # -- the request body --------------------------------------------------------------------------------

    async def pump_upload(self, receive: Receive, limit: int) -> None:
        """Send the public request's body to the agent as it arrives, within the flow-control window.

        Ends the stream with `BodyEnd`; stops the exchange when the client goes away or the body grows
        past `limit`, telling the agent so it abandons the request.
        """
        writer = StreamWriter(self.exchange.request_id)
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                await self.abandon("the client went away during the upload")
                self.stop(StreamStop.CLIENT_GONE)
                return
            data: bytes = message.get("body", b"")
            if writer.length + len(data) > limit:
                await self.abandon(f"the request body is over the {limit}-byte limit")
                self.stop(StreamStop.TOO_LARGE)
                return
            for chunk in writer.chunks(data):
                while not self._window.open():
                    if self.stopped is not None:
                        return
                    self._acked.clear()
                    await self._acked.wait()
                self._window.spend(len(chunk.data))
                await self._send(chunk)
            if not message.get("more_body", False):
                await self._send(writer.end())
                return

    async def watch_client(self, receive: Receive) -> None:
        """Wait for the client to go away, once its request body was read, and stop the exchange then."""
        while (await receive())["type"] != "http.disconnect":
            pass
        self.stop(StreamStop.CLIENT_GONE)

    # -- the answer --------------------------------------------------------------------------------------

    async def answer(self, send: Send) -> PublicResponse | None:
        """Wait for the agent's answer and relay it.

        Returns:
            The response to send when it is whole (an inline or gathered answer, or an error page); None
            when a streamed body was relayed to `send` already.

        Raises:
            BrokenOff: The streamed body broke off after the response began.
        """
        request_id = self.exchange.request_id
        first = await self._next()
        if first is None:
            return self.gateway.finish(self.exchange, "timeout")
        if isinstance(first, StreamStop):
            return self._stopped_page(first)
        if isinstance(first, ErrorMessage):
            self.finished = True
            return self.gateway.finish(self.exchange, ErrorOutcome(first.code, first.message))
        if not isinstance(first, HttpResponse):
            return self._broken(f"the agent sent {type(first).__name__} before the response")
        if first.body_manifest is not None:
            return await self._assembled(first)
        if not first.body_stream:
            self.finished = True
            return await self._finished(first, first.body)
        headers = self.gateway.stream_head(self.exchange, first)
        prefix = b""
        reader = StreamReader(request_id)
        if headers is None:
            gathered = await self._gather(reader, self.exchange.rewrite.max_body_size)
            if isinstance(gathered, PublicResponse):
                return gathered
            if isinstance(gathered, bytes):
                return await self._finished(first, gathered)
            # Too big to rewrite: it passes through as the agent sends it, its headers rewritten alone.
            prefix = bytes(gathered)
            headers = self.gateway.stream_head(self.exchange, first, passthrough=True)
            assert headers is not None
        await self._relay(send, first.status_code, headers, prefix, reader)
        return None

    async def _gather(self, reader: StreamReader, limit: int) -> bytes | bytearray | PublicResponse:
        """Read a streamed body whole for rewriting: its bytes when it ended within `limit`, the part read
        (a bytearray) when it grew past it, or the page to answer when it broke off."""
        body = bytearray()
        while True:
            event = await self._next()
            if isinstance(event, BodyChunk):
                try:
                    body += reader.feed(event)
                except ProtocolError as exc:
                    return self._broken(str(exc))
                self._queued -= len(event.data)
                await self._ack(len(event.data))
                if len(body) > limit:
                    return body
            elif isinstance(event, BodyEnd):
                self.finished = True
                try:
                    reader.end(event)
                except ProtocolError as exc:
                    return self._broken(str(exc))
                return bytes(body)
            else:
                return self._interrupted(event)

    async def _relay(
        self, send: Send, status: int, headers: list[tuple[str, str]], prefix: bytes, reader: StreamReader
    ) -> None:
        """Pass a streamed body on to the public response, acknowledging what the client took."""
        raw = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        if prefix:
            await send({"type": "http.response.body", "body": prefix, "more_body": True})
        while True:
            event = await self._next()
            if isinstance(event, BodyChunk):
                try:
                    data = reader.feed(event)
                except ProtocolError as exc:
                    raise self._cut(str(exc)) from None
                # uvicorn's send waits while the client is slow to read: acknowledging after it passes
                # the client's pace back to the agent, and from there to the local app.
                await send({"type": "http.response.body", "body": data, "more_body": True})
                self._queued -= len(data)
                await self._ack(len(data))
            elif isinstance(event, BodyEnd):
                try:
                    reader.end(event)
                except ProtocolError as exc:
                    raise self._cut(str(exc)) from None
                self.finished = True
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            elif event is None:
                raise self._cut(f"no data for {self._timeout:g} s")
            elif isinstance(event, ErrorMessage):
                self.finished = True
                raise self._cut(f"{event.code}: {event.message}")
            elif isinstance(event, StreamStop):
                raise self._cut(event.value)
            else:
                raise self._cut(f"unexpected {type(event).__name__} in a body")

    async def _assembled(self, head: HttpResponse) -> PublicResponse:
        """A response whose body came as manifest chunks (a body too big for one message)."""
        try:
            assembler = BodyAssembler(head)
        except ProtocolError as exc:
            return self._broken(str(exc))
        while True:
            event = await self._next()
            if not isinstance(event, BodyChunk):
                return self._interrupted(event)
            self._queued -= len(event.data)
            try:
                whole = assembler.feed(event)
            except ProtocolError as exc:
                return self._broken(str(exc))
            if whole is not None:
                self.finished = True
                return await self._finished(head, whole.body)

    async def _finished(self, head: HttpResponse, body: bytes) -> PublicResponse:
        outcome = ResponseOutcome(head.status_code, head.headers, body, head.processing_time_ms)
        return await finish_off_loop(self.gateway, self.exchange, outcome)

    async def _next(self) -> StreamMessage | StreamStop | None:
        """The next event for this exchange; None when none came within the response timeout."""
        try:
            return await asyncio.wait_for(self._events.get(), self._timeout)
        except TimeoutError:
            return None

    async def _ack(self, length: int) -> None:
        if length and self.stopped is None:
            await self._send(BodyAck(self.exchange.request_id, length))

    async def abandon(self, reason: str) -> None:
        """Tell the agent this exchange is over: it stops reading the local app and drops the upload.
        Said once; the agent's later frames for it are dropped by the gateway logic."""
        if self._abandoned or self.finished:
            return
        self._abandoned = True
        await self._send(ErrorMessage("invalid_request", reason, self.exchange.request_id))

    async def _send(self, message: TunnelMessage) -> None:
        try:
            await self._transport.send_messages(self.exchange.connection.connection_id, [message])
        except TransportError:
            self.stop(StreamStop.AGENT_GONE)

    def _stopped_page(self, why: StreamStop) -> PublicResponse:
        request_id = self.exchange.request_id
        if why is StreamStop.TOO_LARGE:
            return self.gateway.too_large(request_id)
        if why is StreamStop.AGENT_GONE:
            return self.gateway.finish(self.exchange, "gone")
        if why is StreamStop.CLIENT_GONE:
            return error_page(499, "Client closed request", "The client went away.", request_id)
        return self._broken("the agent broke the protocol")

    def _interrupted(self, event: StreamMessage | StreamStop | None) -> PublicResponse:
        if event is None:
            return self.gateway.finish(self.exchange, "timeout")
        if isinstance(event, StreamStop):
            return self._stopped_page(event)
        if isinstance(event, ErrorMessage):
            self.finished = True
            return self.gateway.finish(self.exchange, ErrorOutcome(event.code, event.message))
        return self._broken(f"unexpected {type(event).__name__} in a body")

    def _broken(self, reason: str) -> PublicResponse:
        _log.warning("stream %s broken: %s", self.exchange.request_id, reason)
        return error_page(
            502, "Bad answer", "The agent's answer broke the tunnel protocol.", self.exchange.request_id
        )

    def _cut(self, reason: str) -> BrokenOff:
        _log.warning("response %s cut off: %s", self.exchange.request_id, reason)
        return BrokenOff(reason)
