"""`DynamoDBStore` keeps the store contract against a real DynamoDB API server (moto in server mode).

boto3 talks HTTP to a moto server on a free loopback port, started once for the module and stopped at its
end; each test gets fresh tables from `create_tables`.
"""

from __future__ import annotations

import hashlib
import json
import random
import socket
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.config import Config
from botocore.model import OperationModel
from botocore.stub import Stubber
from moto.server import ThreadedMotoServer

from lambda_app.records import Connection, ResponseOutcome
from lambda_app.store import Store, StoreError
from lambda_app.store_dynamodb import (
    CHUNK_BYTES,
    INLINE_BODY_LIMIT,
    TUNNEL_INDEX,
    DynamoDBStore,
    create_tables,
)
from tests.lambda_app.store_contract import FakeClock, StoreContract, connection, pending, response
from transport.messages import (
    BodyChunk,
    BodyManifest,
    ConnectionId,
    HttpResponse,
    TunnelId,
    new_request_id,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client() -> Iterator[DynamoDBClient]:
    """A boto3 DynamoDB client talking to a moto server on a free loopback port."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield boto3.client(
            "dynamodb",
            endpoint_url=f"http://{host}:{port}",
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
    finally:
        server.stop()


@pytest.fixture
def tables(client: DynamoDBClient) -> tuple[str, str]:
    """Fresh connections and pending tables, named for this test."""
    suffix = uuid.uuid4().hex[:8]
    names = (f"connections-{suffix}", f"pending-{suffix}")
    create_tables(client, *names)
    return names


def _store(client: DynamoDBClient, tables: tuple[str, str], clock: FakeClock) -> DynamoDBStore:
    return DynamoDBStore(client, connections_table=tables[0], pending_table=tables[1], clock=clock)


class TestDynamoDBStore(StoreContract):
    """The shared contract against DynamoDB's API."""

    @pytest.fixture
    def store(self, client: DynamoDBClient, tables: tuple[str, str], clock: FakeClock) -> Store:
        """A store over this test's tables on the test's clock."""
        return _store(client, tables, clock)


def test_tables_have_the_gsi_and_ttl(client: DynamoDBClient, tables: tuple[str, str]) -> None:
    """`create_tables` makes on-demand tables, the tunnelId GSI, and TTL on expiresAt."""
    connections, pending_table = tables
    described = client.describe_table(TableName=connections)["Table"]
    assert [index["IndexName"] for index in described.get("GlobalSecondaryIndexes", [])] == [TUNNEL_INDEX]
    assert described.get("BillingModeSummary", {}).get("BillingMode") == "PAY_PER_REQUEST"
    for table in tables:
        ttl = client.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
        assert ttl.get("AttributeName") == "expiresAt"
        assert ttl.get("TimeToLiveStatus") == "ENABLED"
    keys = client.describe_table(TableName=pending_table)["Table"]["KeySchema"]
    assert [key["AttributeName"] for key in keys] == ["requestId", "part"]


def test_large_body_is_stored_as_chunk_items(client: DynamoDBClient, tables: tuple[str, str]) -> None:
    """A 1.5 MB body is written as chunk items each under the 400 KB item limit, and reads back exact."""
    store = _store(client, tables, FakeClock())
    conn = connection()
    request = pending(conn)
    store.add_pending(request)
    body = random.Random(7).randbytes(1_500_000)
    assert store.record_response(conn.connection_id, response(request, body))
    # Query returns at most 1 MB per page, so reading 1.5 MB of chunks takes several pages.
    pages = client.get_paginator("query").paginate(
        TableName=tables[1],
        KeyConditionExpression="requestId = :r",
        ExpressionAttributeValues={":r": {"S": request.request_id}},
        ConsistentRead=True,
    )
    items = [item for page in pages for item in page["Items"]]
    chunk_sizes = [len(item["data"].get("B", b"")) for item in items if item["part"]["S"] != "head"]
    assert len(chunk_sizes) == 5
    assert max(chunk_sizes) <= CHUNK_BYTES
    polled = store.poll(request.request_id)
    assert polled is not None
    assert polled.outcome == ResponseOutcome(200, response(request).headers, body, 7)


def test_claim_keeps_the_tunnel_out_of_the_gsi(client: DynamoDBClient, tables: tuple[str, str]) -> None:
    """The tunnelId GSI lists the connection only; the claim item is keyed by the tunnel id."""
    store = _store(client, tables, FakeClock())
    conn = connection("t-gsi")
    store.add_connection(conn)
    listed = client.query(
        TableName=tables[0],
        IndexName=TUNNEL_INDEX,
        KeyConditionExpression="tunnelId = :t",
        ExpressionAttributeValues={":t": {"S": "t-gsi"}},
    )["Items"]
    assert [item["connectionId"]["S"] for item in listed] == [conn.connection_id]
    claim = client.get_item(TableName=tables[0], Key={"connectionId": {"S": "tunnel#t-gsi"}})["Item"]
    assert claim["owner"]["S"] == conn.connection_id


def test_request_path_reads_are_strongly_consistent(client: DynamoDBClient, tables: tuple[str, str]) -> None:
    """find_tunnel, get_connection and poll (head and chunk pages) ask DynamoDB for ConsistentRead=True."""
    reads: list[tuple[str, dict[str, Any]]] = []

    def spy(params: dict[str, Any], model: OperationModel, **kwargs: Any) -> None:
        if model.name in ("GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"):
            reads.append((model.name, dict(params)))

    store = _store(client, tables, FakeClock())
    conn = connection("t-reads")
    store.add_connection(conn)
    request = pending(conn)
    store.add_pending(request)
    store.record_response(conn.connection_id, response(request, bytes(INLINE_BODY_LIMIT + 1)))
    client.meta.events.register("provide-client-params.dynamodb", spy)
    try:
        assert store.find_tunnel(TunnelId("t-reads")) is not None
        assert store.get_connection(conn.connection_id) is not None
        polled = store.poll(request.request_id)
    finally:
        client.meta.events.unregister("provide-client-params.dynamodb", spy)
    assert polled is not None
    assert polled.outcome is not None
    connections, pending_table = tables
    seen = {
        (name, params["TableName"], json.dumps(params.get("Key"), sort_keys=True)) for name, params in reads
    }
    assert seen == {
        ("GetItem", connections, json.dumps({"connectionId": {"S": "tunnel#t-reads"}})),
        ("GetItem", connections, json.dumps({"connectionId": {"S": conn.connection_id}})),
        (
            "GetItem",
            pending_table,
            json.dumps({"part": {"S": "head"}, "requestId": {"S": request.request_id}}),
        ),
        ("Query", pending_table, "null"),
    }
    assert [params.get("ConsistentRead") for _, params in reads] == [True] * len(reads)


def test_chunks_of_a_discarded_request_are_deleted(client: DynamoDBClient, tables: tuple[str, str]) -> None:
    """Discarding a request deletes its head and every chunk item, past one batch of 25."""
    store = _store(client, tables, FakeClock())
    conn = connection()
    request = pending(conn)
    store.add_pending(request)
    data = b"0123456789" * 30
    manifest = BodyManifest(30, len(data), hashlib.sha256(data).hexdigest())
    store.record_response(conn.connection_id, HttpResponse(request.request_id, 200, body_manifest=manifest))
    for index in range(30):
        store.record_chunk(
            conn.connection_id, BodyChunk(request.request_id, index, data[index * 10 : index * 10 + 10])
        )
    polled = store.poll(request.request_id)
    assert polled is not None
    assert isinstance(polled.outcome, ResponseOutcome)
    assert polled.outcome.body == data
    store.discard_pending(request.request_id)
    assert client.scan(TableName=tables[1])["Count"] == 0


def test_backend_errors_become_store_errors(client: DynamoDBClient) -> None:
    """A missing table surfaces as one StoreError naming the operation, not a botocore exception."""
    store = DynamoDBStore(client, connections_table="absent", pending_table="absent", clock=FakeClock())
    with pytest.raises(StoreError) as caught:
        store.find_tunnel(TunnelId("t-x"))
    assert caught.value.operation == "GetItem"
    assert caught.value.error_code == "ResourceNotFoundException"
    assert isinstance(caught.value.__cause__, Exception)


def test_claim_prefixed_connection_ids_are_refused(client: DynamoDBClient, tables: tuple[str, str]) -> None:
    """A connection id that could collide with a claim item's key is rejected before any write."""
    store = _store(client, tables, FakeClock())
    with pytest.raises(ValueError, match="tunnel#"):
        store.add_connection(connection(connection_id="tunnel#x"))
    assert store.get_connection(ConnectionId("tunnel#x")) is None


def test_sequential_race_for_one_tunnel_id(client: DynamoDBClient, tables: tuple[str, str]) -> None:
    """Five connections claim one tunnel id through DynamoDB's conditional transaction: one wins."""
    store = _store(client, tables, FakeClock())
    contenders: list[Connection] = [connection("t-one") for _ in range(5)]
    results = [store.add_connection(conn) for conn in contenders]
    assert results == [True, False, False, False, False]
    assert store.find_tunnel(TunnelId("t-one")) == contenders[0]


def _stubbed_store(sleeps: list[float]) -> tuple[DynamoDBStore, Stubber]:
    offline = boto3.client(
        "dynamodb",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    store = DynamoDBStore(
        offline, connections_table="c", pending_table="p", clock=FakeClock(), sleep=sleeps.append
    )
    return store, Stubber(offline)


def test_transaction_conflicts_are_retried() -> None:
    """A TransactionConflict (concurrent writers of one item) is retried after a short sleep, then commits."""
    sleeps: list[float] = []
    store, stubber = _stubbed_store(sleeps)
    # Reasons only in the message, as some DynamoDB endpoints send them.
    stubber.add_client_error(
        "transact_write_items",
        service_error_code="TransactionCanceledException",
        service_message="Transaction cancelled [None, TransactionConflict]",
        http_status_code=400,
    )
    stubber.add_response("transact_write_items", {})
    with stubber:
        assert store.add_connection(connection("t-conflict"))
    stubber.assert_no_pending_responses()
    assert len(sleeps) == 1
    assert 0 < sleeps[0] <= 0.02


def test_endless_conflicts_become_a_store_error() -> None:
    """A transaction that keeps conflicting gives up with a StoreError instead of spinning forever."""
    sleeps: list[float] = []
    store, stubber = _stubbed_store(sleeps)
    for _ in range(7):
        stubber.add_client_error(
            "transact_write_items",
            service_error_code="TransactionCanceledException",
            service_message="Transaction cancelled",
            http_status_code=400,
            modeled_fields={"CancellationReasons": [{"Code": "None"}, {"Code": "TransactionConflict"}]},
        )
    with stubber, pytest.raises(StoreError) as caught:
        store.add_connection(connection("t-busy"))
    assert caught.value.error_code == "TransactionConflict"
    assert len(sleeps) == 6


def test_throttling_maps_to_503() -> None:
    """Throughput errors become a StoreError hinting 503, so the public client may retry."""
    store, stubber = _stubbed_store([])
    stubber.add_client_error(
        "get_item", service_error_code="ProvisionedThroughputExceededException", http_status_code=400
    )
    with stubber, pytest.raises(StoreError) as caught:
        store.get_connection(ConnectionId("c="))
    assert caught.value.status_hint == 503


def test_unreachable_endpoint_becomes_a_store_error() -> None:
    """A connection error (nothing listens on the port) surfaces as a StoreError, not a botocore error."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    offline = boto3.client(
        "dynamodb",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=1),
    )
    store = DynamoDBStore(offline, connections_table="c", pending_table="p", clock=FakeClock())
    with pytest.raises(StoreError) as caught:
        store.poll(new_request_id())
    assert caught.value.operation == "GetItem"
    assert caught.value.error_code == "EndpointConnectionError"
