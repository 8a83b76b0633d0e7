"""The `Store` interface the gateway keeps its state behind, its error, and pure helpers shared by the stores.

No I/O here: `lambda_app/store_memory.py` and `lambda_app/store_dynamodb.py` implement the interface. Every
implementation follows one contract (tests/lambda_app/store_contract.py):

- a record whose `expires_at` is at or before the store's clock counts as absent, for reads and for the
  conditions of writes, whether or not it was physically deleted yet;
- reads that the request flow depends on are strongly consistent;
- a write whose condition fails returns False or None; it never creates the item it was conditioned on;
- anything else that goes wrong in the backend raises `StoreError`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Protocol

from lambda_app.records import Connection, ErrorOutcome, PendingRequest
from transport.errors import ProxyError
from transport.messages import BodyChunk, ConnectionId, ErrorMessage, HttpResponse, RequestId, TunnelId

__all__ = [
    "DEFAULT_CLEANUP_PAGE_SIZE",
    "DEFAULT_RESUME_WINDOW",
    "CleanupReport",
    "Store",
    "StoreError",
    "assemble_body",
]

#: Seconds a released tunnel id stays reserved for its resume token: long enough for the reconnect that
#: API Gateway forces after 2 hours, or a laptop waking up.
DEFAULT_RESUME_WINDOW: Final = 900
#: Items examined per cleanup page (DynamoDB's Scan `Limit`).
DEFAULT_CLEANUP_PAGE_SIZE: Final = 100


class StoreError(ProxyError):
    """The store's backend failed (throttled, unreachable, misconfigured); the request cannot go on.

    Args:
        message: What failed, without item contents.
        operation: The backend operation, e.g. ``"PutItem"``.
        error_code: The backend's error code (e.g. ``"ProvisionedThroughputExceededException"``), if any.
        status_hint: Overrides the class default status.
    """

    default_status_hint = 503

    def __init__(
        self, message: str, *, operation: str, error_code: str | None = None, status_hint: int | None = None
    ) -> None:
        super().__init__(message, status_hint=status_hint)
        self.operation = operation
        self.error_code = error_code


@dataclass(frozen=True, slots=True)
class CleanupReport:
    """What one cleanup pass removed.

    Attributes:
        pages: How many pages were read (scan calls, in DynamoDB).
        connections: Expired connection records removed.
        claims: Expired tunnel-id claims (held or reserved for resume) removed.
        requests: Expired pending requests removed.
        chunks: Expired body chunks removed.
    """

    pages: int = 0
    connections: int = 0
    claims: int = 0
    requests: int = 0
    chunks: int = 0

    @property
    def removed(self) -> int:
        """How many records were removed in all."""
        return self.connections + self.claims + self.requests + self.chunks


def assemble_body(
    chunks: Mapping[int, bytes], count: int, length: int | None, sha256: str | None
) -> bytes | ErrorOutcome:
    """Join chunks 0 to count - 1 and check them against the manifest that announced them.

    Args:
        chunks: The received chunks by index (extra indices are ignored); all of 0 to count - 1 must be there.
        count: How many chunks the body has.
        length: The announced total length, or None when the store split the body itself.
        sha256: The announced lower-case hex SHA-256 digest, or None.

    Returns:
        The body, or an `ErrorOutcome` ("internal_error") when it does not match its manifest.

    Raises:
        KeyError: A chunk index below `count` is missing (callers check completeness first).
    """
    body = b"".join(chunks[index] for index in range(count))
    if length is not None and len(body) != length:
        return ErrorOutcome("internal_error", f"the body has {len(body)} bytes, its manifest said {length}")
    if sha256 is not None and hashlib.sha256(body).hexdigest() != sha256:
        return ErrorOutcome("internal_error", "the body does not match the SHA-256 digest of its manifest")
    return body


class Store(Protocol):
    """The gateway's state: connections with their tunnel ids, and pending requests with their answers.

    Implementations are safe to call from several threads (and, for DynamoDB, from several Lambda
    invocations at once); every conditional write is atomic.
    """

    def add_connection(self, connection: Connection) -> bool:
        """Store a new connection and claim its tunnel id, atomically (`$connect`).

        The claim succeeds when no live connection holds `connection.tunnel_id` and the id is not reserved
        for resume, or when it is reserved with the same `resume_digest` (the agent resumes its tunnel).

        Args:
            connection: The record to store, with its creation time and expiry.

        Returns:
            True when stored; False when the tunnel id is taken or the connection id already exists (nothing
            is written then).
        """
        ...

    def get_connection(self, connection_id: ConnectionId) -> Connection | None:
        """Read a connection by its id, strongly consistent.

        Args:
            connection_id: The connection's id.

        Returns:
            The live record, or None when absent or expired.
        """
        ...

    def find_tunnel(self, tunnel_id: TunnelId) -> Connection | None:
        """Find the connection that holds a tunnel id, strongly consistent (a public request).

        Args:
            tunnel_id: The id from the public request's host or path.

        Returns:
            The live connection holding it, or None when the id is free, reserved for resume, or expired.
        """
        ...

    def set_ready(
        self,
        connection_id: ConnectionId,
        protocol_version: int,
        features: tuple[str, ...] = (),
        local_origin: str | None = None,
    ) -> Connection | None:
        """Record the protocol version and features negotiated at `ready`, and the agent's local origin.

        Conditional: only a live connection that still holds its tunnel id is updated; nothing is created.

        Args:
            connection_id: The connection that sent `ready`.
            protocol_version: The version agreed.
            features: The version-2 features agreed.
            local_origin: Where the agent forwards to, when its `ready` said so.

        Returns:
            The updated connection, or None when it is absent or expired.
        """
        ...

    def remove_connection(
        self, connection_id: ConnectionId, *, resume_for: int = DEFAULT_RESUME_WINDOW
    ) -> Connection | None:
        """Delete a connection and release its tunnel id (`$disconnect`, or a `GoneException`).

        A tunnel id whose connection had a `resume_digest` stays reserved for that digest for `resume_for`
        seconds; otherwise it is free at once. Idempotent.

        Args:
            connection_id: The connection to remove.
            resume_for: Seconds the released id stays reserved for its resume token.

        Returns:
            The removed connection, or None when there was no live one.
        """
        ...

    def add_pending(self, request: PendingRequest) -> bool:
        """Store a pending request before its `http_request` is sent.

        Args:
            request: The record, without an outcome.

        Returns:
            True when stored; False when a live request with that id exists already.

        Raises:
            ValueError: The record already has an outcome or chunk counts.
        """
        ...

    def poll(self, request_id: RequestId) -> PendingRequest | None:
        """Read a pending request, strongly consistent, with its outcome once complete.

        One read of the request's head; when the outcome is a response with body chunks and all have
        arrived, the chunks are read too (in DynamoDB, one more query page per MB).

        Args:
            request_id: The request's id.

        Returns:
            The record (`outcome` None while incomplete), or None when absent or expired.
        """
        ...

    def record_response(self, connection_id: ConnectionId, response: HttpResponse) -> bool:
        """Store the agent's `http_response` against its pending request.

        Conditional: the request exists, is live, belongs to `connection_id` and has no outcome yet; an
        expired or discarded request is never re-created. With a `body_manifest`, the body follows in
        `record_chunk` calls and the outcome is complete once every chunk arrived; without one, the body is
        stored here (split into chunk items when too large for one).

        Args:
            connection_id: The connection the message came from.
            response: The message.

        Returns:
            True when stored; False when the condition failed.
        """
        ...

    def record_error(self, connection_id: ConnectionId, error: ErrorMessage) -> bool:
        """Store the agent's `error` for a request as its outcome.

        Conditional, as `record_response`: live, owned by `connection_id`, no outcome yet.

        Args:
            connection_id: The connection the message came from.
            error: The message; its `request_id` must be set.

        Returns:
            True when stored; False when the condition failed.

        Raises:
            ValueError: The message names no request.
        """
        ...

    def record_chunk(self, connection_id: ConnectionId, chunk: BodyChunk) -> bool:
        """Store one body chunk of a response, in any order, before or after its `http_response`.

        Conditional: the request exists, is live, belongs to `connection_id` and has no error outcome.
        Idempotent per index (a repeated chunk replaces the earlier one).

        Args:
            connection_id: The connection the message came from.
            chunk: The message.

        Returns:
            True when stored; False when the condition failed.
        """
        ...

    def discard_pending(self, request_id: RequestId) -> None:
        """Delete a pending request and its chunks (after answering, or on timeout). Idempotent.

        Args:
            request_id: The request's id.
        """
        ...

    def cleanup(self, *, page_size: int = DEFAULT_CLEANUP_PAGE_SIZE) -> CleanupReport:
        """Remove every expired record, page by page (the scheduled cleanup; TTL does the rest).

        Args:
            page_size: Records examined per page.

        Returns:
            What was removed.
        """
        ...
