"""`MemoryStore` keeps the store contract, and stays exclusive under threads racing for one tunnel id."""

from __future__ import annotations

import threading

import pytest

from lambda_app.records import Connection
from lambda_app.store import Store
from lambda_app.store_memory import MemoryStore
from tests.lambda_app.store_contract import FakeClock, StoreContract, connection, pending, response
from transport.messages import TunnelId


class TestMemoryStore(StoreContract):
    """The shared contract against the in-memory store."""

    @pytest.fixture
    def store(self, clock: FakeClock) -> Store:
        """A fresh store on the test's clock."""
        return MemoryStore(clock=clock)


def test_threads_racing_for_one_tunnel_id_leave_one_winner() -> None:
    """Sixteen threads claim one tunnel id at once: exactly one succeeds and it is the one found."""
    store = MemoryStore(clock=FakeClock())
    contenders = [connection("t-contested") for _ in range(16)]
    results: dict[str, bool] = {}
    barrier = threading.Barrier(len(contenders))

    def claim(conn: Connection) -> None:
        barrier.wait()
        results[conn.connection_id] = store.add_connection(conn)

    threads = [threading.Thread(target=claim, args=(conn,)) for conn in contenders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [conn for conn in contenders if results[conn.connection_id]]
    assert len(winners) == 1
    assert store.find_tunnel(TunnelId("t-contested")) == winners[0]


def test_threads_answering_one_request_store_one_outcome() -> None:
    """Eight threads answer one request at once: exactly one response is stored."""
    store = MemoryStore(clock=FakeClock())
    conn = connection()
    request = pending(conn)
    store.add_pending(request)
    outcomes: list[bool] = []
    barrier = threading.Barrier(8)

    def answer(index: int) -> None:
        barrier.wait()
        outcomes.append(store.record_response(conn.connection_id, response(request, bytes([index]))))

    threads = [threading.Thread(target=answer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == [False] * 7 + [True]


def test_default_clock_is_wall_time() -> None:
    """Without an injected clock, a connection expiring in the past is already gone."""
    store = MemoryStore()
    stale = connection("t-stale", created_at=1_000_000.0, ttl=10)
    assert store.add_connection(stale)
    assert store.get_connection(stale.connection_id) is None


def test_cleanup_rejects_a_page_size_below_one() -> None:
    """A page of no records is a caller's mistake."""
    with pytest.raises(ValueError, match="page_size"):
        MemoryStore().cleanup(page_size=0)
