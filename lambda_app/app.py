"""The gateway's logic, shared by the Lambda edge and the self-hosted gateway. No I/O of its own.

Agents connect, say `ready` and answer requests; a public request finds its tunnel by host or first path
segment, travels down the agent's WebSocket as `http_request`, and its answer comes back through the
store, rewritten for the public origin. A `Store` keeps the state, a `Transport` moves frames; the clock,
the sleep between polls and the randomness are injected, so tests run instantly and deterministically.
Statuses follow DESIGN.md, "Gateway behaviour".
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import html
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from lambda_app.records import Connection, ErrorOutcome, Outcome, PendingRequest
from lambda_app.store import DEFAULT_RESUME_WINDOW, CleanupReport, Store
from rewrite import (
    RewriteConfig,
    body_passes_through,
    rewrite_request,
    rewrite_response,
    rewrite_response_head,
)
from transport.base import Transport
from transport.chunking import MAX_MESSAGE_BYTES, split_message
from transport.codec import decode_frame, encode_frame
from transport.errors import ConnectionGone, LocalProtocolError, ProtocolError, TransportError
from transport.messages import (
    BodyAck,
    BodyChunk,
    BodyEnd,
    ConnectionEstablished,
    ConnectionId,
    ErrorMessage,
    HttpRequest,
    HttpResponse,
    Ping,
    Pong,
    Ready,
    RequestId,
    TunnelId,
    TunnelMessage,
    new_request_id,
)

__all__ = [
    "Exchange",
    "FrameResult",
    "Gateway",
    "GatewayConfig",
    "PublicRequest",
    "PublicResponse",
    "StreamMessage",
    "error_page",
    "new_tunnel_id",
]

_log = logging.getLogger("lambda_app.gateway")

# A v1 agent never names its local app; this origin (RFC 6761: `.invalid` never resolves) then stands in,
# so that only paths are rewritten.
_UNKNOWN_ORIGIN = "http://local.invalid"
_TUNNEL_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


def new_tunnel_id() -> TunnelId:
    """A random tunnel id: 80 bits in 16 lower-case base32 characters, a valid DNS label.

    Unguessable (DESIGN.md asks for at least 60 bits), so knowing one tunnel's URL reveals no other.
    """
    return TunnelId(base64.b32encode(secrets.token_bytes(10)).decode("ascii").lower())


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """How the gateway presents tunnels and how long it waits.

    Args:
        public_url: Where path-mode tunnels live: `https://gw.example.com` serves `/<id>/...`.
        host_domain: With it, host-mode tunnels live at `<id>.<host_domain>` (same scheme and port as
            `public_url`); None disables host mode.
        max_body_bytes: The largest request body forwarded; larger ones get 413. AWS Lambda's synchronous
            payload limit is 6 MB, request and response alike.
        response_timeout: Seconds to wait for the agent's answer before 504; under API Gateway's 30 s
            integration timeout.
        connection_ttl: Seconds a connection record lives; API Gateway closes connections after 2 hours.
        pending_ttl: Seconds a pending request record lives, past `response_timeout`.
        resume_window: Seconds a disconnected tunnel id stays reserved for its resume token.
        resume_secret: Key for resume tokens; None disables resuming.
        first_poll_delay: Seconds before the first check for an answer.
        max_poll_delay: The longest wait between two checks.
        liveness_every: Check the agent's connection every this many polls, so that a dead agent is a 502,
            not a 504.
        features: The version-2 features this gateway agrees to, when an agent offers them. The Lambda
            gateway cannot stream (an HTTP API response is one payload), so `body_stream` is the
            self-hosted gateway's to add.
    """

    public_url: str
    host_domain: str | None = None
    max_body_bytes: int = 6 * 1024 * 1024 - 64 * 1024
    response_timeout: float = 25.0
    connection_ttl: int = 3 * 3600
    pending_ttl: int = 120
    resume_window: int = DEFAULT_RESUME_WINDOW
    resume_secret: bytes | None = field(default=None, repr=False)
    first_poll_delay: float = 0.01
    max_poll_delay: float = 0.25
    liveness_every: int = 8
    features: tuple[str, ...] = ("body_chunks", "pong")

    def __post_init__(self) -> None:
        scheme, sep, rest = self.public_url.partition("://")
        if scheme not in ("http", "https") or not sep or not rest or "/" in rest.rstrip("/"):
            raise ValueError(
                f"public_url must be an origin like 'https://gw.example.com', got {self.public_url!r}"
            )
        object.__setattr__(self, "public_url", self.public_url.rstrip("/"))
        if not 0 < self.response_timeout < 30:
            raise ValueError("response_timeout must lie between 0 and API Gateway's 30 s integration timeout")
        if self.pending_ttl <= self.response_timeout:
            raise ValueError("pending_ttl must outlast response_timeout")

    def path_url(self, tunnel_id: str) -> str:
        """The path-mode URL of a tunnel."""
        return f"{self.public_url}/{tunnel_id}"

    def host_url(self, tunnel_id: str) -> str | None:
        """The host-mode URL of a tunnel, when host mode is on."""
        if self.host_domain is None:
            return None
        scheme, _, authority = self.public_url.partition("://")
        port = authority.rpartition(":")[2] if ":" in authority and not authority.endswith("]") else ""
        return f"{scheme}://{tunnel_id}.{self.host_domain}" + (f":{port}" if port else "")


@dataclass(frozen=True, slots=True)
class PublicRequest:
    """A request from the public side, as the edge (Lambda event or HTTP server) received it."""

    method: str
    target: str  # raw path and query, exactly as received
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""
    client_ip: str | None = None


@dataclass(frozen=True, slots=True)
class PublicResponse:
    """The answer to a public request, and what it cost."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    request_id: str
    polls: int = 0


@dataclass(frozen=True, slots=True)
class FrameResult:
    """What one frame from an agent led to.

    Attributes:
        replies: Frames to send back to that agent.
        connection: The agent's connection record, when known (a retrying sender wants its age).
        answered: A pending request that received its answer, or part of it.
        stream: A message for a streamed exchange (`Exchange.streamed`), which the store never sees: the
            edge passes it on to the public response itself.
    """

    replies: tuple[str, ...] = ()
    connection: Connection | None = None
    answered: RequestId | None = None
    stream: StreamMessage | None = None


@dataclass(frozen=True, slots=True)
class Exchange:
    """A public request on its way to an agent: pending in the store, its frames ready to send.

    Attributes:
        request_id: The id the agent's answer will carry.
        connection: The agent's connection.
        rewrite: How the answer is rewritten for the public origin.
        messages: The `http_request` (and its body chunks), each one frame's worth.
        streamed: The agent streams bodies (`body_stream`): its answer comes back through
            `FrameResult.stream`, not the store, and the request body may follow the head as a stream.
    """

    request_id: RequestId
    connection: Connection
    rewrite: RewriteConfig
    messages: tuple[TunnelMessage, ...]
    streamed: bool = False

    @property
    def frames(self) -> tuple[str, ...]:
        """The messages, encoded."""
        return tuple(encode_frame(message) for message in self.messages)


#: What an agent sends about a streamed exchange.
StreamMessage = HttpResponse | BodyChunk | BodyEnd | BodyAck | ErrorMessage


def _reply(
    message: ConnectionEstablished | ErrorMessage | Pong, connection: Connection | None = None
) -> FrameResult:
    return FrameResult(replies=(encode_frame(message),), connection=connection)


class Gateway:
    """The tunnel gateway's logic over a store and a transport.

    Args:
        store: Connections and pending requests.
        transport: Moves frames to agents for the synchronous drivers (`receive`, `forward`); its `send` is
            given each connection's age. None for an edge that drives the steps (`handle_frame`, `begin`,
            `finish`) and sends asynchronously itself.
        config: URLs, limits and timings.
        clock: Epoch seconds.
        sleep: Blocks for the given seconds (between polls).
        new_id: Makes tunnel ids.
    """

    def __init__(
        self,
        store: Store,
        transport: Transport | None,
        config: GatewayConfig,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        new_id: Callable[[], TunnelId] = new_tunnel_id,
    ) -> None:
        self.store = store
        self.transport = transport
        self.config = config
        self._clock = clock
        self._sleep = sleep
        self._new_id = new_id
        # Streamed exchanges in flight, by request, with the connection that may answer them.
        self._streamed: dict[RequestId, ConnectionId] = {}

    # -- agents ------------------------------------------------------------------------------------------

    def connect(self, connection_id: ConnectionId, *, resume_token: str | None = None) -> Connection | None:
        """Store a new agent connection (`$connect`) with a fresh tunnel id, or its old one when it
        presents a valid resume token for an id that is still free or reserved for it.

        Returns:
            The stored connection, or None when no tunnel id could be claimed.
        """
        now = self._clock()
        expires = int(now) + self.config.connection_ttl
        resumed = self._resumable(resume_token)
        if resumed is not None:
            connection = Connection(connection_id, resumed, now, expires, resume_digest=self._digest(resumed))
            if self.store.add_connection(connection):
                _log.info("tunnel resumed", extra={"connection": connection_id, "tunnel": resumed})
                return connection
        for _ in range(5):  # 80 random bits collide practically never; a few tries cover a taken id
            tunnel_id = self._new_id()
            digest = self._digest(tunnel_id)
            connection = Connection(connection_id, tunnel_id, now, expires, resume_digest=digest)
            if self.store.add_connection(connection):
                _log.info("tunnel connected", extra={"connection": connection_id, "tunnel": tunnel_id})
                return connection
        return None

    def disconnect(self, connection_id: ConnectionId) -> None:
        """Forget a connection (`$disconnect`); its tunnel id stays reserved for its resume token."""
        self.store.remove_connection(connection_id, resume_for=self.config.resume_window)

    def receive(self, connection_id: ConnectionId, frame: str | bytes) -> None:
        """Handle one frame from an agent (`$default`) and send its replies. Never raises for what the agent
        sent: a frame that is not valid tunnel protocol is answered with an `error` frame naming the problem.
        """
        result = self.handle_frame(connection_id, frame)
        if result.replies:
            try:
                self._send(connection_id, result.replies, result.connection)
            except TransportError as exc:
                _log.warning("reply not delivered", extra={"connection": connection_id, "reason": str(exc)})

    def handle_frame(self, connection_id: ConnectionId, frame: str | bytes) -> FrameResult:
        """Take one frame from an agent into the store, without sending anything.

        The edge sends `replies` to the agent and, when `answered` names a request, lets its waiter look
        at the store again (the self-hosted gateway wakes it; the Lambda edge's poll finds it).

        Returns:
            The frames to send back and the request that received (part of) its answer, if any.
        """
        try:
            message = decode_frame(frame)
        except ProtocolError as exc:
            _log.warning("bad frame", extra={"connection": connection_id, "reason": str(exc)})
            return _reply(ErrorMessage("invalid_request", f"bad frame: {exc}"))
        return self.handle_message(connection_id, message)

    def handle_message(self, connection_id: ConnectionId, message: TunnelMessage) -> FrameResult:
        """Take one message from an agent as `handle_frame` takes it once decoded: from an agent in the same
        process (`agent.in_process`), which hands over the objects it would have encoded."""
        if isinstance(message, HttpResponse | BodyChunk | BodyEnd | BodyAck | ErrorMessage):
            request_id = message.request_id
            owner = None if request_id is None else self._streamed.get(request_id)
            if request_id is not None and owner is not None:
                if owner != connection_id:  # another agent's request: dropped, as the store would
                    return self._stored(False, connection_id, request_id)
                return FrameResult(stream=message)
        if isinstance(message, Ready):
            return self._ready(connection_id, message)
        if isinstance(message, HttpResponse):
            stored = self.store.record_response(connection_id, message)
            return self._stored(stored, connection_id, message.request_id)
        if isinstance(message, BodyChunk):
            stored = self.store.record_chunk(connection_id, message)
            return self._stored(stored, connection_id, message.request_id)
        if isinstance(message, ErrorMessage):
            if message.request_id is None:
                _log.warning("agent error", extra={"connection": connection_id, "code": message.code})
                return FrameResult()
            stored = self.store.record_error(connection_id, message)
            return self._stored(stored, connection_id, message.request_id)
        if isinstance(message, Ping):
            connection = self.store.get_connection(connection_id)
            if connection is not None and "pong" in connection.features:
                return _reply(Pong(), connection)
            return FrameResult()
        if isinstance(message, Pong):
            return FrameResult()
        if isinstance(message, BodyEnd | BodyAck):
            # About a streamed exchange that has ended (or never was): late, as an answer can be.
            return self._stored(False, connection_id, message.request_id)
        # An agent never sends http_request or connection_established.
        return _reply(ErrorMessage("invalid_request", f"agents do not send {type(message).__name__}"))

    def _ready(self, connection_id: ConnectionId, ready: Ready) -> FrameResult:
        version = 2 if ready.version >= 2 else 1
        offered = ready.features or ()
        features = tuple(f for f in self.config.features if f in offered) if version >= 2 else ()
        origin = ready.local_origin if version >= 2 else None
        connection = self.store.set_ready(connection_id, version, features, origin)
        if connection is None:
            return _reply(ErrorMessage("invalid_request", "unknown connection: reconnect"))
        established = ConnectionEstablished(
            connection_id=connection_id,
            tunnel_id=connection.tunnel_id,
            public_url=self.config.path_url(connection.tunnel_id),
            subdomain_url=self.config.host_url(connection.tunnel_id),
            path_based_url=self.config.path_url(connection.tunnel_id),
            protocol_version=version if version >= 2 else None,
            features=features if version >= 2 else None,
            resume_token=self._token(connection.tunnel_id) if version >= 2 else None,
        )
        return _reply(established, connection)

    def _stored(self, stored: bool, connection_id: ConnectionId, request_id: RequestId) -> FrameResult:
        if not stored:  # late (timed out, answered) or not this connection's: drop it, as AWS does
            _log.info("answer dropped", extra={"connection": connection_id, "request": request_id})
            return FrameResult()
        return FrameResult(answered=request_id)

    def _send(
        self, connection_id: ConnectionId, frames: Sequence[str], connection: Connection | None
    ) -> None:
        if self.transport is None:
            raise RuntimeError("this gateway has no synchronous transport: its edge sends the frames")
        connected_at = connection.created_at if connection is not None else None
        self.transport.send(connection_id, frames, connected_at=connected_at)

    # -- resume tokens -----------------------------------------------------------------------------------

    def _token(self, tunnel_id: TunnelId) -> str | None:
        """`<tunnel id>.<HMAC of it>`: derivable in any invocation, so no invocation has to keep it."""
        secret = self.config.resume_secret
        if secret is None:
            return None
        mac = hmac.new(secret, tunnel_id.encode(), hashlib.sha256).digest()
        return f"{tunnel_id}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"

    def _digest(self, tunnel_id: TunnelId) -> str | None:
        token = self._token(tunnel_id)
        return None if token is None else hashlib.sha256(token.encode()).hexdigest()

    def _resumable(self, token: str | None) -> TunnelId | None:
        if not token or self.config.resume_secret is None:
            return None
        tunnel_id = TunnelId(token.partition(".")[0])
        expected = self._token(tunnel_id)
        if expected is None or not hmac.compare_digest(expected.encode(), token.encode()):
            return None
        return tunnel_id

    # -- public requests ---------------------------------------------------------------------------------

    def forward(self, request: PublicRequest, *, wait_for: float | None = None) -> PublicResponse:
        """Answer a public request through its tunnel, polling the store for the agent's answer (the Lambda
        edge). Never raises: anything unexpected is a 500 page whose request id is in the logs.

        Args:
            request: The public request.
            wait_for: Seconds to wait for the agent at most, when the caller has less time than the
                configured response timeout (a Lambda near its own timeout answers 504 in time).
        """
        request_id = new_request_id()
        timeout = (
            self.config.response_timeout if wait_for is None else min(wait_for, self.config.response_timeout)
        )
        try:
            exchange = self.begin(request, request_id)
            if isinstance(exchange, PublicResponse):
                return exchange
            try:
                try:
                    self._send(exchange.connection.connection_id, exchange.frames, exchange.connection)
                except TransportError as exc:
                    return self.undeliverable(exchange, exc)
                outcome, polls = self._wait(exchange, max(timeout, 0.0))
                return self.finish(exchange, outcome, polls)
            finally:
                self.end(exchange)
        except Exception:
            return self.failed(request_id)

    def failed(self, request_id: RequestId) -> PublicResponse:
        """The 500 page for a request whose handling raised; call it from an `except` block (logs the
        traceback under the request id, which the page shows)."""
        _log.exception("request %s failed", request_id, extra={"request": request_id})
        return error_page(500, "Internal error", "The gateway failed to handle this request.", request_id)

    def begin(
        self, request: PublicRequest, request_id: RequestId, *, stream_body: bool = False
    ) -> Exchange | PublicResponse:
        """Route a public request to its tunnel and store it as pending, ready to send.

        Args:
            request: The public request.
            request_id: Its id.
            stream_body: The request's body is not in `request`: it follows the head as a stream, which
                the edge sends itself. Only for a tunnel whose agent `streams_bodies`.

        Returns:
            The exchange to send and wait for (the caller must `end` it), or the answer already: a 404, 413
            or 502 page when the request cannot go to an agent.
        """
        host = next((value for name, value in request.headers if name.lower() == "host"), "")
        routed = self._route(host, request.target)
        if routed is None:
            return error_page(404, "No tunnel here", "This address names no tunnel.", request_id)
        tunnel_id, prefix, public_origin = routed
        connection = self.store.find_tunnel(tunnel_id)
        if connection is None:
            return error_page(
                404, "Tunnel not connected", f"No agent is connected for tunnel {tunnel_id}.", request_id
            )
        if not connection.ready:
            return error_page(
                502, "Tunnel not ready", "The agent has connected but not finished its handshake.", request_id
            )
        if len(request.body) > self.config.max_body_bytes:
            return self.too_large(request_id)
        streamed = "body_stream" in connection.features
        if stream_body and not streamed:
            return error_page(
                502, "Agent unreachable", "The agent cannot take a streamed request body.", request_id
            )
        config = _rewrite_config(prefix, public_origin, connection.local_origin or _UNKNOWN_ORIGIN, tunnel_id)
        upstream = rewrite_request(
            request.method, request.target, request.headers, config, client_ip=request.client_ip
        )
        if upstream is None:
            return error_page(404, "No tunnel here", "This path leaves the tunnel.", request_id)
        message = HttpRequest(
            request_id=request_id,
            method=upstream.method,
            uri=upstream.target,
            headers=tuple((name.lower(), value) for name, value in upstream.headers),
            body=request.body,
            timestamp=int(self._clock() * 1000),
            body_stream=stream_body,
        )
        try:
            parts = split_message(
                message, max_message_bytes=MAX_MESSAGE_BYTES, chunking="body_chunks" in connection.features
            )
        except LocalProtocolError as exc:
            status = exc.status_hint if exc.status_hint in (413, 431) else 502
            return error_page(status, "Request too large", str(exc), request_id)
        now = self._clock()
        pending = PendingRequest(
            request_id, connection.connection_id, tunnel_id, now, int(now) + self.config.pending_ttl
        )
        if not self.store.add_pending(pending):
            return error_page(500, "Internal error", "A request with this id is pending already.", request_id)
        if streamed:
            self._streamed[request_id] = connection.connection_id
        return Exchange(request_id, connection, config, tuple(parts), streamed)

    def streams_bodies(self, request: PublicRequest) -> bool:
        """Whether the agent of the tunnel this request names can take its body as a stream."""
        host = next((value for name, value in request.headers if name.lower() == "host"), "")
        routed = self._route(host, request.target)
        connection = None if routed is None else self.store.find_tunnel(routed[0])
        return connection is not None and "body_stream" in connection.features

    def stream_head(
        self, exchange: Exchange, head: HttpResponse, *, passthrough: bool = False
    ) -> list[tuple[str, str]] | None:
        """The public headers of a streamed response whose body passes through unchanged, or None when
        the body must be read whole to be rewritten (then `finish` it as a `ResponseOutcome`).

        Args:
            exchange: The exchange.
            head: The agent's response head.
            passthrough: The body passes through even though a rewriter would read it (it is too big).
        """
        if not passthrough and not body_passes_through(head.headers, exchange.rewrite):
            return None
        return rewrite_response_head(head.headers, exchange.rewrite)

    def too_large(self, request_id: RequestId) -> PublicResponse:
        """The 413 page for a request body over the limit."""
        limit = self.config.max_body_bytes
        return error_page(
            413, "Request too large", f"Request bodies are limited to {limit} bytes.", request_id
        )

    def undeliverable(self, exchange: Exchange, exc: TransportError) -> PublicResponse:
        """The answer when the request's frames could not reach the agent; a gone agent is forgotten."""
        request_id = exchange.request_id
        if isinstance(exc, ConnectionGone):
            connection_id = exchange.connection.connection_id
            self.store.remove_connection(connection_id, resume_for=self.config.resume_window)
            return error_page(502, "Agent gone", "The agent's connection has closed.", request_id)
        _log.warning("request not delivered", extra={"request": request_id, "reason": str(exc)})
        return error_page(
            502, "Agent unreachable", "The request could not be delivered to the agent.", request_id
        )

    def poll(self, exchange: Exchange) -> Outcome | None:
        """One look at the store for the exchange's complete answer."""
        pending = self.store.poll(exchange.request_id)
        return None if pending is None else pending.outcome

    def agent_connected(self, exchange: Exchange) -> bool:
        """Whether the agent the request went to is still connected."""
        return self.store.get_connection(exchange.connection.connection_id) is not None

    def finish(
        self, exchange: Exchange, outcome: Outcome | Literal["timeout", "gone"], polls: int = 0
    ) -> PublicResponse:
        """The public answer to an exchange: the agent's response rewritten for the public origin, or the
        page for its error, its absence (`"timeout"`: 504) or its departure (`"gone"`: 502).

        Args:
            exchange: The exchange.
            outcome: What came back.
            polls: How many reads the answer took, for the log.
        """
        request_id = exchange.request_id
        if outcome == "gone":
            return error_page(
                502, "Agent gone", "The agent disconnected before answering.", request_id, polls
            )
        if outcome == "timeout":
            return error_page(504, "Gateway timeout", "The agent did not answer in time.", request_id, polls)
        if isinstance(outcome, ErrorOutcome):
            return _error_page(outcome, exchange.connection, request_id, polls)
        result = rewrite_response(outcome.headers, outcome.body, exchange.rewrite)
        for skipped in result.report.skipped:
            _log.info("rewrite skipped", extra={"request": request_id, "reason": str(skipped)})
        return PublicResponse(outcome.status_code, result.headers, result.body, request_id, polls)

    def end(self, exchange: Exchange) -> None:
        """Forget a pending request, answered or not; a late answer is then dropped."""
        self._streamed.pop(exchange.request_id, None)
        self.store.discard_pending(exchange.request_id)

    def _wait(self, exchange: Exchange, timeout: float) -> tuple[Outcome | Literal["timeout", "gone"], int]:
        """Poll for the answer: the first check soon, then backing off, within the response timeout.

        Returns:
            The outcome and the number of polls.
        """
        deadline = self._clock() + timeout
        delay = self.config.first_poll_delay
        polls = 0
        while True:
            remaining = deadline - self._clock()
            if remaining <= 0:
                return "timeout", polls
            self._sleep(min(delay, remaining))
            delay = min(delay * 2, self.config.max_poll_delay)
            polls += 1
            pending = self.store.poll(exchange.request_id)
            if pending is not None and pending.outcome is not None:
                return pending.outcome, polls
            check_liveness = pending is None or polls % self.config.liveness_every == 0
            if check_liveness and not self.agent_connected(exchange):
                return "gone", polls

    def routes(self, host: str, target: str) -> bool:
        """Whether a request with this `Host` and target names a tunnel (connected or not)."""
        return self._route(host, target) is not None

    def _route(self, host: str, target: str) -> tuple[TunnelId, str, str] | None:
        """The tunnel a request names: `<id>.<host_domain>` in host mode, else the first path segment.

        Returns:
            The tunnel id, the prefix ("" in host mode), and the public origin; None when none is named.
        """
        name = host.strip().lower()
        hostname = name.rpartition(":")[0] if ":" in name and not name.endswith("]") else name
        domain = self.config.host_domain
        if domain and hostname.endswith("." + domain):
            label = hostname[: -len(domain) - 1]
            if _valid_tunnel_id(label):
                scheme = self.config.public_url.partition("://")[0]
                return TunnelId(label), "", f"{scheme}://{name}"
            return None
        segment = target.partition("?")[0].lstrip("/").partition("/")[0]
        if not _valid_tunnel_id(segment):
            return None
        return TunnelId(segment), f"/{segment}", self.config.public_url

    # -- housekeeping ------------------------------------------------------------------------------------

    def cleanup(self) -> CleanupReport:
        """Remove expired records (the scheduled cleanup); DynamoDB's TTL does the rest, later."""
        return self.store.cleanup()


@functools.lru_cache(maxsize=1024)
def _rewrite_config(prefix: str, public_origin: str, upstream_origin: str, tunnel_id: str) -> RewriteConfig:
    """A tunnel's rewriting configuration, built once per tunnel and origin rather than per request."""
    return RewriteConfig(
        prefix=prefix, public_origin=public_origin, upstream_origin=upstream_origin, tunnel_id=tunnel_id
    )


def _valid_tunnel_id(value: str) -> bool:
    return 0 < len(value) <= 63 and set(value) <= _TUNNEL_ID_CHARS and not value.startswith("-")


def _error_page(
    outcome: ErrorOutcome, connection: Connection, request_id: RequestId, polls: int
) -> PublicResponse:
    """What an agent's `error` becomes in public: which local service failed, never the agent's text."""
    local = connection.local_origin or "the local service"
    if outcome.code == "local_service_unavailable":
        port = local.rpartition(":")[2] if connection.local_origin else ""
        where = f"port {port}" if port.isdigit() else local
        return error_page(
            502,
            "Local service unavailable",
            f"Nothing answered on {where} on the agent's machine.",
            request_id,
            polls,
        )
    if outcome.code == "timeout":
        return error_page(504, "Local service timeout", f"{local} did not answer in time.", request_id, polls)
    if outcome.code == "invalid_request":
        return error_page(
            400,
            "Bad request",
            "The agent could not send this request to the local service.",
            request_id,
            polls,
        )
    return error_page(502, "Agent error", "The agent failed to relay this request.", request_id, polls)


def error_page(status: int, title: str, text: str, request_id: str, polls: int = 0) -> PublicResponse:
    """A short HTML page for the public, carrying the request id that appears in the logs.

    Args:
        status: The HTTP status.
        title: A few words, after the status.
        text: One sentence for the reader; never internals.
        request_id: The id the logs carry for this request.
        polls: How many reads the answer took, for the log.

    Returns:
        The response, with Content-Length set.
    """
    body = (
        '<!doctype html><html><head><meta charset="utf-8">'
        f"<title>{status} {html.escape(title)}</title></head><body>"
        f"<h1>{status} {html.escape(title)}</h1><p>{html.escape(text)}</p>"
        f"<p><small>Request id: {html.escape(request_id)}</small></p></body></html>"
    ).encode()
    headers = [
        ("content-type", "text/html; charset=utf-8"),
        ("cache-control", "no-store"),
        ("x-tunnel-request-id", request_id),
        ("content-length", str(len(body))),
    ]
    return PublicResponse(status, headers, body, request_id, polls)
