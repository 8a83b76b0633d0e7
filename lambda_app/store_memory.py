"""`MemoryStore`: the gateway's state in one process's memory, behind a lock; no I/O.

The self-hosted gateway and the tests use it. It keeps the contract of `lambda_app/store.py` exactly as
`DynamoDBStore` does, conditions and expiry included, against an injected clock, so that what passes here
behaves the same on AWS.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from lambda_app.records import Connection, ErrorOutcome, Outcome, PendingRequest, ResponseOutcome
from lambda_app.store import DEFAULT_CLEANUP_PAGE_SIZE, DEFAULT_RESUME_WINDOW, CleanupReport, assemble_body
from transport.messages import (
    BodyChunk,
    ConnectionId,
    ErrorMessage,
    Headers,
    HttpResponse,
    RequestId,
    TunnelId,
)

__all__ = ["MemoryStore"]


@dataclass(slots=True)
class _Claim:
    """Who holds a tunnel id; `owner` None means reserved for `resume_digest` until `expires_at`."""

    owner: ConnectionId | None
    expires_at: int
    resume_digest: str | None


@dataclass(slots=True)
class _Head:
    """The agent's `http_response` without its body, as the DynamoDB head item keeps it."""

    status_code: int
    headers: Headers
    processing_time_ms: int
    body: bytes
    chunk_count: int | None
    length: int | None
    sha256: str | None


@dataclass(slots=True)
class _Pending:
    record: PendingRequest
    head: _Head | None = None
    error: ErrorOutcome | None = None
    chunks: dict[int, bytes] = field(default_factory=dict)


class MemoryStore:
    """A `Store` in a dictionary or three, thread-safe.

    Args:
        clock: Returns the present as epoch seconds; records expire against it (default `time.time`).
    """

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._connections: dict[ConnectionId, Connection] = {}
        self._claims: dict[TunnelId, _Claim] = {}
        self._pending: dict[RequestId, _Pending] = {}

    # Connections -------------------------------------------------------------------------------------

    def add_connection(self, connection: Connection) -> bool:
        """See `Store.add_connection`."""
        with self._lock:
            now = self._clock()
            existing = self._connections.get(connection.connection_id)
            if existing is not None and not existing.expired(now):
                return False
            claim = self._claims.get(connection.tunnel_id)
            if claim is not None and claim.expires_at > now:
                resumable = (
                    claim.owner is None
                    and claim.resume_digest is not None
                    and claim.resume_digest == connection.resume_digest
                )
                if not resumable:
                    return False
            self._connections[connection.connection_id] = connection
            self._claims[connection.tunnel_id] = _Claim(
                connection.connection_id, connection.expires_at, connection.resume_digest
            )
            return True

    def get_connection(self, connection_id: ConnectionId) -> Connection | None:
        """See `Store.get_connection`."""
        with self._lock:
            return self._live_connection(connection_id, self._clock())

    def find_tunnel(self, tunnel_id: TunnelId) -> Connection | None:
        """See `Store.find_tunnel`."""
        with self._lock:
            now = self._clock()
            claim = self._claims.get(tunnel_id)
            if claim is None or claim.owner is None or claim.expires_at <= now:
                return None
            return self._live_connection(claim.owner, now)

    def set_ready(
        self,
        connection_id: ConnectionId,
        protocol_version: int,
        features: tuple[str, ...] = (),
        local_origin: str | None = None,
    ) -> Connection | None:
        """See `Store.set_ready`."""
        with self._lock:
            now = self._clock()
            connection = self._live_connection(connection_id, now)
            if connection is None:
                return None
            claim = self._claims.get(connection.tunnel_id)
            if claim is None or claim.owner != connection_id:
                return None
            updated = dataclasses.replace(
                connection, protocol_version=protocol_version, features=features, local_origin=local_origin
            )
            self._connections[connection_id] = updated
            return updated

    def remove_connection(
        self, connection_id: ConnectionId, *, resume_for: int = DEFAULT_RESUME_WINDOW
    ) -> Connection | None:
        """See `Store.remove_connection`."""
        with self._lock:
            now = self._clock()
            connection = self._connections.pop(connection_id, None)
            if connection is None:
                return None
            claim = self._claims.get(connection.tunnel_id)
            if claim is not None and claim.owner == connection_id:
                if claim.resume_digest is not None and resume_for > 0:
                    self._claims[connection.tunnel_id] = _Claim(
                        None, math.ceil(now) + resume_for, claim.resume_digest
                    )
                else:
                    del self._claims[connection.tunnel_id]
            return None if connection.expired(now) else connection

    # Pending requests --------------------------------------------------------------------------------

    def add_pending(self, request: PendingRequest) -> bool:
        """See `Store.add_pending`."""
        _check_new_pending(request)
        with self._lock:
            existing = self._pending.get(request.request_id)
            if existing is not None and not existing.record.expired(self._clock()):
                return False
            self._pending[request.request_id] = _Pending(request)
            return True

    def poll(self, request_id: RequestId) -> PendingRequest | None:
        """See `Store.poll`."""
        with self._lock:
            entry = self._live_pending(request_id, self._clock())
            if entry is None:
                return None
            outcome: Outcome | None = entry.error
            expected: int | None = None
            if outcome is None and entry.head is not None:
                head = entry.head
                expected = head.chunk_count
                if expected is None:
                    outcome = ResponseOutcome(
                        head.status_code, head.headers, head.body, head.processing_time_ms
                    )
                elif all(index in entry.chunks for index in range(expected)):
                    body = assemble_body(entry.chunks, expected, head.length, head.sha256)
                    outcome = (
                        body
                        if isinstance(body, ErrorOutcome)
                        else ResponseOutcome(head.status_code, head.headers, body, head.processing_time_ms)
                    )
            return dataclasses.replace(
                entry.record, outcome=outcome, chunks_expected=expected, chunks_received=len(entry.chunks)
            )

    def record_response(self, connection_id: ConnectionId, response: HttpResponse) -> bool:
        """See `Store.record_response`."""
        with self._lock:
            entry = self._answerable(response.request_id, connection_id)
            if entry is None or entry.head is not None:
                return False
            manifest = response.body_manifest
            entry.head = _Head(
                status_code=response.status_code,
                headers=response.headers,
                processing_time_ms=response.processing_time_ms,
                body=response.body,
                chunk_count=manifest.count if manifest else None,
                length=manifest.length if manifest else None,
                sha256=manifest.sha256 if manifest else None,
            )
            return True

    def record_error(self, connection_id: ConnectionId, error: ErrorMessage) -> bool:
        """See `Store.record_error`."""
        if error.request_id is None:
            raise ValueError("an error message without a request_id is not a request's outcome")
        with self._lock:
            entry = self._answerable(error.request_id, connection_id)
            if entry is None or entry.head is not None:
                return False
            entry.error = ErrorOutcome(error.code, error.message)
            return True

    def record_chunk(self, connection_id: ConnectionId, chunk: BodyChunk) -> bool:
        """See `Store.record_chunk`."""
        with self._lock:
            entry = self._answerable(chunk.request_id, connection_id)
            if entry is None:
                return False
            entry.chunks[chunk.index] = chunk.data
            return True

    def discard_pending(self, request_id: RequestId) -> None:
        """See `Store.discard_pending`."""
        with self._lock:
            self._pending.pop(request_id, None)

    # Cleanup -----------------------------------------------------------------------------------------

    def cleanup(self, *, page_size: int = DEFAULT_CLEANUP_PAGE_SIZE) -> CleanupReport:
        """See `Store.cleanup`; pages are counted as DynamoDB would count its scans of the two tables."""
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, got {page_size!r}")
        with self._lock:
            now = self._clock()
            table_items = len(self._connections) + len(self._claims)
            pending_items = sum(1 + len(entry.chunks) for entry in self._pending.values())
            pages = max(1, math.ceil(table_items / page_size)) + max(1, math.ceil(pending_items / page_size))
            connections = [key for key, value in self._connections.items() if value.expired(now)]
            claims = [key for key, value in self._claims.items() if value.expires_at <= now]
            requests = [key for key, value in self._pending.items() if value.record.expired(now)]
            chunks = sum(len(self._pending[key].chunks) for key in requests)
            for connection_id in connections:
                del self._connections[connection_id]
            for tunnel_id in claims:
                del self._claims[tunnel_id]
            for request_id in requests:
                del self._pending[request_id]
            return CleanupReport(pages, len(connections), len(claims), len(requests), chunks)

    # Helpers (the lock is held) ----------------------------------------------------------------------

    def _live_connection(self, connection_id: ConnectionId, now: float) -> Connection | None:
        connection = self._connections.get(connection_id)
        return None if connection is None or connection.expired(now) else connection

    def _live_pending(self, request_id: RequestId, now: float) -> _Pending | None:
        entry = self._pending.get(request_id)
        return None if entry is None or entry.record.expired(now) else entry

    def _answerable(self, request_id: RequestId, connection_id: ConnectionId) -> _Pending | None:
        """The entry an agent's message may be stored against: live, its own, without an error."""
        entry = self._live_pending(request_id, self._clock())
        if entry is None or entry.record.connection_id != connection_id or entry.error is not None:
            return None
        return entry


def _check_new_pending(request: PendingRequest) -> None:
    if request.outcome is not None or request.chunks_expected is not None or request.chunks_received:
        raise ValueError("a new pending request has no outcome and no chunks yet")
