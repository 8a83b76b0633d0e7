"""The behaviour every `Store` keeps: one set of tests run by test_store_memory.py and test_store_dynamodb.py.

A subclass provides the `store` fixture, built on the `clock` fixture given here, so that expiry is driven
by a clock the test moves, for the memory and the DynamoDB store alike.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import uuid

import pytest

from lambda_app.records import Connection, ErrorOutcome, PendingRequest, ResponseOutcome
from lambda_app.store import Store
from transport.messages import (
    BodyChunk,
    BodyManifest,
    ConnectionId,
    ErrorMessage,
    HttpResponse,
    RequestId,
    TunnelId,
    new_request_id,
)

__all__ = ["START", "FakeClock", "StoreContract", "connection", "pending", "response"]

#: Where every test's clock starts (an ordinary present-day epoch time).
START = 1_800_000_000.0


class FakeClock:
    """A clock that stands still until a test moves it."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forwards (or backwards, with a negative number)."""
        self.now += seconds


def connection(
    tunnel_id: str = "t-abc",
    *,
    connection_id: str | None = None,
    created_at: float = START,
    ttl: int = 7200,
    resume_digest: str | None = None,
) -> Connection:
    """A connection record with a fresh id unless one is given."""
    return Connection(
        ConnectionId(connection_id or f"c{uuid.uuid4().hex[:12]}="),
        TunnelId(tunnel_id),
        created_at,
        int(created_at) + ttl,
        resume_digest=resume_digest,
    )


def pending(owner: Connection, *, ttl: int = 60, request_id: RequestId | None = None) -> PendingRequest:
    """A pending request sent to `owner`, created at START."""
    return PendingRequest(
        request_id or new_request_id(), owner.connection_id, owner.tunnel_id, START, int(START) + ttl
    )


def response(request: PendingRequest, body: bytes = b"hello", status: int = 200) -> HttpResponse:
    """A response to `request` with two Set-Cookie headers."""
    return HttpResponse(
        request.request_id,
        status,
        (("content-type", "text/plain"), ("set-cookie", "a=1"), ("set-cookie", "b=2")),
        body,
        processing_time_ms=7,
    )


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class StoreContract:
    """The tests; a subclass named Test... with a `store` fixture runs them."""

    @pytest.fixture
    def clock(self) -> FakeClock:
        """A clock at START."""
        return FakeClock()

    # Connections -------------------------------------------------------------------------------------

    def test_connection_round_trips(self, store: Store) -> None:
        """A stored connection reads back equal by its id and by its tunnel id."""
        conn = connection(resume_digest=_digest("token"))
        assert store.add_connection(conn)
        assert store.get_connection(conn.connection_id) == conn
        assert store.find_tunnel(conn.tunnel_id) == conn
        assert store.find_tunnel(TunnelId("t-other")) is None
        assert store.get_connection(ConnectionId("nobody=")) is None

    def test_tunnel_id_claim_is_exclusive(self, store: Store) -> None:
        """Of two connections claiming one tunnel id, only the first wins and the loser is not stored."""
        first, second = connection("t-race"), connection("t-race")
        assert store.add_connection(first)
        assert not store.add_connection(second)
        assert store.find_tunnel(TunnelId("t-race")) == first
        assert store.get_connection(second.connection_id) is None

    def test_connection_id_is_not_stored_twice(self, store: Store) -> None:
        """A second $connect with a live connection id is refused and claims nothing."""
        first = connection("t-one", connection_id="same=")
        assert store.add_connection(first)
        assert not store.add_connection(connection("t-two", connection_id="same="))
        assert store.find_tunnel(TunnelId("t-two")) is None

    def test_ready_sets_version_and_features(self, store: Store) -> None:
        """`set_ready` records the negotiated version, seen by id and by tunnel id."""
        conn = connection()
        store.add_connection(conn)
        updated = store.set_ready(conn.connection_id, 2, ("body_chunks", "pong"), "http://127.0.0.1:3000")
        assert updated is not None
        assert updated.protocol_version == 2
        assert updated.features == ("body_chunks", "pong")
        assert updated.local_origin == "http://127.0.0.1:3000"
        assert store.get_connection(conn.connection_id) == updated
        assert store.find_tunnel(conn.tunnel_id) == updated

    def test_ready_never_creates_a_connection(self, store: Store, clock: FakeClock) -> None:
        """`set_ready` on a missing or expired connection returns None and stores nothing."""
        assert store.set_ready(ConnectionId("ghost="), 1) is None
        assert store.get_connection(ConnectionId("ghost=")) is None
        conn = connection(ttl=10)
        store.add_connection(conn)
        clock.advance(10)
        assert store.set_ready(conn.connection_id, 2) is None
        clock.advance(-10)
        assert store.get_connection(conn.connection_id) == conn

    def test_remove_frees_the_tunnel_id(self, store: Store) -> None:
        """After removal without a resume token, the tunnel id is free for anyone; removal is idempotent."""
        conn = connection("t-free")
        store.add_connection(conn)
        assert store.remove_connection(conn.connection_id) == conn
        assert store.remove_connection(conn.connection_id) is None
        assert store.get_connection(conn.connection_id) is None
        assert store.find_tunnel(TunnelId("t-free")) is None
        assert store.add_connection(connection("t-free"))

    def test_resume_reclaims_with_the_same_token_only(self, store: Store) -> None:
        """A released tunnel id is reserved for its resume token: others are refused, the token wins."""
        digest = _digest("secret")
        old = connection("t-keep", resume_digest=digest)
        store.add_connection(old)
        store.remove_connection(old.connection_id, resume_for=600)
        assert store.find_tunnel(TunnelId("t-keep")) is None
        assert not store.add_connection(connection("t-keep"))
        assert not store.add_connection(connection("t-keep", resume_digest=_digest("guess")))
        new = connection("t-keep", resume_digest=digest)
        assert store.add_connection(new)
        assert store.find_tunnel(TunnelId("t-keep")) == new
        # Held again: the token no longer opens it while `new` is connected.
        assert not store.add_connection(connection("t-keep", resume_digest=digest))

    def test_resume_reservation_expires(self, store: Store, clock: FakeClock) -> None:
        """Once the resume window has passed, the tunnel id is free for any connection."""
        old = connection("t-lapse", resume_digest=_digest("secret"))
        store.add_connection(old)
        store.remove_connection(old.connection_id, resume_for=300)
        clock.advance(299)
        assert not store.add_connection(connection("t-lapse", created_at=clock.now))
        clock.advance(2)
        assert store.add_connection(connection("t-lapse", created_at=clock.now))

    def test_expired_connection_is_gone_and_its_id_free(self, store: Store, clock: FakeClock) -> None:
        """A connection past its TTL reads as absent, and another connection may claim its tunnel id."""
        conn = connection("t-old", ttl=100)
        store.add_connection(conn)
        clock.advance(99)
        assert store.find_tunnel(TunnelId("t-old")) == conn
        clock.advance(1)
        assert store.get_connection(conn.connection_id) is None
        assert store.find_tunnel(TunnelId("t-old")) is None
        newer = connection("t-old", created_at=clock.now)
        assert store.add_connection(newer)
        assert store.find_tunnel(TunnelId("t-old")) == newer
        # The expired connection's late $disconnect must not release the id it no longer holds.
        assert store.remove_connection(conn.connection_id) is None
        assert store.find_tunnel(TunnelId("t-old")) == newer

    # Pending requests --------------------------------------------------------------------------------

    def test_pending_request_waits_then_completes(self, store: Store) -> None:
        """A pending request polls without outcome until its response is stored, headers kept in order."""
        conn = connection()
        request = pending(conn)
        assert store.add_pending(request)
        assert not store.add_pending(request)
        assert store.poll(request.request_id) == request
        assert store.record_response(conn.connection_id, response(request))
        polled = store.poll(request.request_id)
        assert polled is not None
        assert polled.outcome == ResponseOutcome(
            200, (("content-type", "text/plain"), ("set-cookie", "a=1"), ("set-cookie", "b=2")), b"hello", 7
        )
        assert polled.done

    def test_a_new_pending_request_has_no_outcome(self, store: Store) -> None:
        """A record that already carries an outcome is a caller's mistake, refused before any write."""
        conn = connection()
        request = dataclasses.replace(pending(conn), outcome=ErrorOutcome("timeout", "x"))
        with pytest.raises(ValueError, match="outcome"):
            store.add_pending(request)
        assert store.poll(request.request_id) is None

    def test_empty_body_round_trips(self, store: Store) -> None:
        """A 204 without a body comes back with an empty body."""
        conn = connection()
        request = pending(conn)
        store.add_pending(request)
        assert store.record_response(conn.connection_id, response(request, b"", 204))
        polled = store.poll(request.request_id)
        assert polled is not None
        assert polled.outcome == ResponseOutcome(204, response(request).headers, b"", 7)

    def test_completion_refuses_a_missing_request_and_never_creates_it(self, store: Store) -> None:
        """A response, error or chunk for an unknown request is refused and leaves nothing behind."""
        conn = connection()
        ghost = pending(conn)
        assert not store.record_response(conn.connection_id, response(ghost))
        assert not store.record_error(conn.connection_id, ErrorMessage("timeout", "slow", ghost.request_id))
        assert not store.record_chunk(conn.connection_id, BodyChunk(ghost.request_id, 0, b"x"))
        assert store.poll(ghost.request_id) is None

    def test_completion_refuses_a_foreign_connection(self, store: Store) -> None:
        """Only the connection the request was sent to may answer it."""
        owner, other = connection("t-a"), connection("t-b")
        request = pending(owner)
        store.add_pending(request)
        assert not store.record_response(other.connection_id, response(request, b"forged"))
        assert not store.record_error(other.connection_id, ErrorMessage("timeout", "x", request.request_id))
        assert not store.record_chunk(other.connection_id, BodyChunk(request.request_id, 0, b"x"))
        polled = store.poll(request.request_id)
        assert polled is not None
        assert polled.outcome is None
        assert polled.chunks_received == 0

    def test_completion_refuses_an_already_completed_request(self, store: Store) -> None:
        """The first answer stands: a second response or an error after it is refused."""
        conn = connection()
        request = pending(conn)
        store.add_pending(request)
        assert store.record_response(conn.connection_id, response(request, b"first"))
        assert not store.record_response(conn.connection_id, response(request, b"second"))
        assert not store.record_error(conn.connection_id, ErrorMessage("timeout", "x", request.request_id))
        polled = store.poll(request.request_id)
        assert polled is not None
        assert isinstance(polled.outcome, ResponseOutcome)
        assert polled.outcome.body == b"first"

    def test_completion_refuses_an_expired_request_and_never_recreates_it(
        self, store: Store, clock: FakeClock
    ) -> None:
        """An answer after the request expired is refused, and nothing was written even if time rewinds."""
        conn = connection()
        request = pending(conn, ttl=30)
        store.add_pending(request)
        clock.advance(30)
        assert store.poll(request.request_id) is None
        assert not store.record_response(conn.connection_id, response(request))
        assert not store.record_error(conn.connection_id, ErrorMessage("timeout", "x", request.request_id))
        assert not store.record_chunk(conn.connection_id, BodyChunk(request.request_id, 0, b"x"))
        clock.advance(-30)
        polled = store.poll(request.request_id)
        assert polled is not None
        assert polled.outcome is None
        assert polled.chunks_received == 0

    def test_error_is_an_outcome(self, store: Store) -> None:
        """The agent's error becomes the outcome, and a later response is refused."""
        conn = connection()
        request = pending(conn)
        store.add_pending(request)
        error = ErrorMessage("local_service_unavailable", "port 3000 refused", request.request_id)
        assert store.record_error(conn.connection_id, error)
        assert not store.record_response(conn.connection_id, response(request))
        assert not store.record_chunk(conn.connection_id, BodyChunk(request.request_id, 0, b"x"))
        polled = store.poll(request.request_id)
        assert polled is not None
        assert polled.outcome == ErrorOutcome("local_service_unavailable", "port 3000 refused")

    def test_error_without_request_id_is_rejected(self, store: Store) -> None:
        """A connection-level error names no request, so it cannot be an outcome."""
        with pytest.raises(ValueError, match="request_id"):
            store.record_error(ConnectionId("c="), ErrorMessage("internal_error", "boom"))

    def test_large_body_round_trips_byte_exact(self, store: Store) -> None:
        """A 1.5 MB binary body (over DynamoDB's 400 KB item limit) comes back byte for byte."""
        conn = connection()
        request = pending(conn)
        store.add_pending(request)
        body = random.Random(4).randbytes(1_500_000)
        assert store.record_response(conn.connection_id, response(request, body))
        polled = store.poll(request.request_id)
        assert polled is not None
        assert isinstance(polled.outcome, ResponseOutcome)
        assert polled.outcome.body == body

    def test_large_body_from_a_foreign_connection_is_refused(self, store: Store) -> None:
        """A body too large for one item is refused from the wrong connection, before any chunk counts."""
        owner, other = connection("t-a"), connection("t-b")
        request = pending(owner)
        store.add_pending(request)
        assert not store.record_response(other.connection_id, response(request, bytes(800_000)))
        polled = store.poll(request.request_id)
        assert polled is not None
        assert (polled.outcome, polled.chunks_received) == (None, 0)

    def test_error_with_an_empty_message_round_trips(self, store: Store) -> None:
        """An error outcome keeps an empty message as empty."""
        conn = connection()
        request = pending(conn)
        store.add_pending(request)
        assert store.record_error(conn.connection_id, ErrorMessage("timeout", "", request.request_id))
        polled = store.poll(request.request_id)
        assert polled is not None
        assert polled.outcome == ErrorOutcome("timeout", "")

    def test_chunks_arrive_in_any_order(self, store: Store) -> None:
        """Version-2 body chunks, shuffled around their head and repeated, complete only when all arrived."""
        conn = connection()
        request = pending(conn)
        store.add_pending(request)
        body = random.Random(5).randbytes(5 * 90_000 + 17)
        parts = [body[i : i + 90_000] for i in range(0, len(body), 90_000)]
        manifest = BodyManifest(len(parts), len(body), hashlib.sha256(body).hexdigest())
        head = HttpResponse(
            request.request_id, 200, (("content-type", "application/octet-stream"),), body_manifest=manifest
        )
        order = [3, 0, 5, 3, 1]  # 3 twice; 2 and 4 still missing
        for index in order:
            assert store.record_chunk(conn.connection_id, BodyChunk(request.request_id, index, parts[index]))
        assert store.record_response(conn.connection_id, head)
        polled = store.poll(request.request_id)
        assert polled is not None
        assert polled.outcome is None
        assert (polled.chunks_expected, polled.chunks_received) == (6, 4)
        store.record_chunk(conn.connection_id, BodyChunk(request.request_id, 4, parts[4]))
        store.record_chunk(conn.connection_id, BodyChunk(request.request_id, 2, parts[2]))
        polled = store.poll(request.request_id)
        assert polled is not None
        assert isinstance(polled.outcome, ResponseOutcome)
        assert polled.outcome.body == body
        assert polled.chunks_received == 6

    def test_chunks_not_matching_their_manifest_become_an_error(self, store: Store) -> None:
        """A reassembled body whose digest differs from its manifest is an internal_error, not a response."""
        conn = connection()
        request = pending(conn)
        store.add_pending(request)
        manifest = BodyManifest(2, 6, hashlib.sha256(b"abcdef").hexdigest())
        store.record_response(
            conn.connection_id, HttpResponse(request.request_id, 200, body_manifest=manifest)
        )
        store.record_chunk(conn.connection_id, BodyChunk(request.request_id, 0, b"abc"))
        store.record_chunk(conn.connection_id, BodyChunk(request.request_id, 1, b"xyz"))
        polled = store.poll(request.request_id)
        assert polled is not None
        assert isinstance(polled.outcome, ErrorOutcome)
        assert polled.outcome.code == "internal_error"

    def test_discard_removes_the_request_and_refuses_late_answers(self, store: Store) -> None:
        """After discard (answered or timed out) the request is gone and a late response is refused."""
        conn = connection()
        request = pending(conn)
        store.add_pending(request)
        store.record_chunk(conn.connection_id, BodyChunk(request.request_id, 0, b"x"))
        store.discard_pending(request.request_id)
        store.discard_pending(request.request_id)
        assert store.poll(request.request_id) is None
        assert not store.record_response(conn.connection_id, response(request))

    # Cleanup -----------------------------------------------------------------------------------------

    def test_cleanup_removes_expired_records_over_several_pages(self, store: Store, clock: FakeClock) -> None:
        """Cleanup with a small page removes every expired record, and only those."""
        expired = [connection(f"t-x{i}", ttl=100) for i in range(9)]
        live = connection("t-live", ttl=7200)
        for conn in [*expired, live]:
            assert store.add_connection(conn)
        old_requests = [pending(expired[0], ttl=30) for _ in range(4)]
        for request in old_requests:
            store.add_pending(request)
            store.record_chunk(expired[0].connection_id, BodyChunk(request.request_id, 0, b"x"))
        clock.advance(100)
        fresh = PendingRequest(
            new_request_id(), live.connection_id, live.tunnel_id, clock.now, int(clock.now) + 60
        )
        store.add_pending(fresh)
        report = store.cleanup(page_size=4)
        assert report.pages > 2
        assert (report.connections, report.claims, report.requests, report.chunks) == (9, 9, 4, 4)
        assert store.find_tunnel(live.tunnel_id) == live
        assert store.poll(fresh.request_id) == fresh
        # What was removed stays removed even if the clock were wrong and rewound.
        clock.advance(-100)
        assert store.get_connection(expired[0].connection_id) is None
        assert store.poll(old_requests[0].request_id) is None
        assert store.cleanup(page_size=4).removed == 0
