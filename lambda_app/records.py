"""The records the gateway keeps between invocations: a connection, a pending request, its outcome; no I/O.

Times are Unix epoch seconds. `expires_at` is a whole number of seconds because DynamoDB's TTL reads only
a Number holding epoch seconds
(https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/time-to-live-ttl-before-you-start.html);
both stores treat a record whose `expires_at` is at or before the present as gone, since DynamoDB deletes
expired items lazily and they "still show up in reads, queries, and scans" until it does
(https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ttl-expired-items.html).
"""

from __future__ import annotations

from dataclasses import dataclass

from transport.messages import ConnectionId, ErrorCode, Headers, RequestId, TunnelId

__all__ = [
    "Connection",
    "ErrorOutcome",
    "Outcome",
    "PendingRequest",
    "ResponseOutcome",
]


def _check_id(value: str, name: str) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")


def _check_times(created_at: float, expires_at: int) -> None:
    if isinstance(created_at, bool) or not isinstance(created_at, int | float) or created_at < 0:
        raise ValueError(f"created_at must be non-negative epoch seconds, got {created_at!r}")
    if isinstance(expires_at, bool) or not isinstance(expires_at, int) or expires_at < 0:
        raise ValueError(f"expires_at must be whole non-negative epoch seconds, got {expires_at!r}")


@dataclass(frozen=True, slots=True)
class Connection:
    """An agent's WebSocket connection and the tunnel id it holds.

    Attributes:
        connection_id: API Gateway's connection id (or the self-hosted gateway's).
        tunnel_id: The public tunnel id; at most one live connection holds it.
        created_at: When `$connect` stored it, epoch seconds (the retrying sender's "young connection").
        expires_at: When the store forgets it, whole epoch seconds (DynamoDB's TTL attribute).
        protocol_version: The version negotiated at `ready`; None until then.
        features: The version-2 features agreed at `ready`.
        resume_digest: A digest (e.g. SHA-256 hex) of the resume token that may reclaim `tunnel_id` after
            this connection ends; None when the tunnel id is not resumable.
        local_origin: The origin the agent forwards to (`http://127.0.0.1:3000`), as its version-2 `ready`
            said; None for a version-1 agent.
    """

    connection_id: ConnectionId
    tunnel_id: TunnelId
    created_at: float
    expires_at: int
    protocol_version: int | None = None
    features: tuple[str, ...] = ()
    resume_digest: str | None = None
    local_origin: str | None = None

    def __post_init__(self) -> None:
        _check_id(self.connection_id, "connection_id")
        _check_id(self.tunnel_id, "tunnel_id")
        _check_times(self.created_at, self.expires_at)
        version = self.protocol_version
        if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 1):
            raise ValueError(f"protocol_version must be an integer >= 1, got {version!r}")
        if not isinstance(self.features, tuple) or not all(isinstance(f, str) and f for f in self.features):
            raise ValueError(f"features must be a tuple of non-empty strings, got {self.features!r}")
        if self.resume_digest is not None:
            _check_id(self.resume_digest, "resume_digest")
        if self.local_origin is not None:
            _check_id(self.local_origin, "local_origin")

    @property
    def ready(self) -> bool:
        """Whether the agent has sent `ready` (a protocol version was negotiated)."""
        return self.protocol_version is not None

    def expired(self, now: float) -> bool:
        """Whether the record counts as gone at `now` (epoch seconds)."""
        return self.expires_at <= now


@dataclass(frozen=True, slots=True)
class ResponseOutcome:
    """The local service's response, whole, as the agent relayed it.

    Attributes:
        status_code: The HTTP status, 100 to 599.
        headers: Lower-case names in order; a name may repeat.
        body: The complete body, reassembled from chunks when it came in several.
        processing_time_ms: How long the agent said it took.
    """

    status_code: int
    headers: Headers = ()
    body: bytes = b""
    processing_time_ms: int = 0

    def __post_init__(self) -> None:
        code = self.status_code
        if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
            raise ValueError(f"status_code must be an integer from 100 to 599, got {code!r}")
        if not isinstance(self.body, bytes):
            raise ValueError(f"body must be bytes, got {type(self.body).__name__}")


@dataclass(frozen=True, slots=True)
class ErrorOutcome:
    """The agent could not get a response (its `error` message), or the response it sent was broken.

    Attributes:
        code: The tunnel protocol's error code.
        message: What went wrong, for logs (never shown raw to the public).
    """

    code: ErrorCode
    message: str


#: How a pending request ended.
Outcome = ResponseOutcome | ErrorOutcome


@dataclass(frozen=True, slots=True)
class PendingRequest:
    """A public request that was sent to an agent and awaits its answer.

    Attributes:
        request_id: The id sent in `http_request`.
        connection_id: The connection the request went to; only it may answer.
        tunnel_id: The tunnel the public request named (for logs).
        created_at: When the gateway stored it, epoch seconds.
        expires_at: When the store forgets it, whole epoch seconds; set it past the integration timeout.
        outcome: The answer once it is complete (every body chunk arrived); None while waiting.
        chunks_expected: How many body chunks the answer announced, once its head arrived and it has any.
        chunks_received: How many distinct body chunks have arrived so far.
    """

    request_id: RequestId
    connection_id: ConnectionId
    tunnel_id: TunnelId
    created_at: float
    expires_at: int
    outcome: Outcome | None = None
    chunks_expected: int | None = None
    chunks_received: int = 0

    def __post_init__(self) -> None:
        _check_id(self.request_id, "request_id")
        _check_id(self.connection_id, "connection_id")
        _check_id(self.tunnel_id, "tunnel_id")
        _check_times(self.created_at, self.expires_at)

    @property
    def done(self) -> bool:
        """Whether the answer is complete and can be sent to the public client."""
        return self.outcome is not None

    def expired(self, now: float) -> bool:
        """Whether the record counts as gone at `now` (epoch seconds)."""
        return self.expires_at <= now
