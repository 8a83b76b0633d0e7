"""`DynamoDBStore`: the gateway's state in two DynamoDB tables, through an injected boto3 client (I/O).

The connections table (partition key ``connectionId``) holds two kinds of item:

- a connection, keyed by its API Gateway connection id, with ``tunnelId`` (the ``tunnelId-index`` GSI
  lists a tunnel's connections for operators; GSIs are eventually consistent only, so the request flow
  never reads it);
- a claim, keyed ``tunnel#<tunnel id>``: the lock that makes tunnel ids unique, written in the same
  transaction as its connection with a condition, and a copy of the connection so that a public request
  finds its tunnel in one strongly consistent `GetItem`. A released claim stays as a reservation for
  the connection's resume token until its ``expiresAt``.

The pending table (partition key ``requestId``, sort key ``part``) holds a request's ``head`` item (owner,
times, and once the agent answers, the status, headers, small body or error, chunk count and the set of
received chunk indices) and its ``chunk#NNNNNN`` items, which carry bodies too large for one item. Every
item has ``expiresAt``, the tables' TTL attribute. botocore errors are translated here, once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Final, NoReturn

from lambda_app.records import Connection, ErrorOutcome, Outcome, PendingRequest, ResponseOutcome
from lambda_app.store import (
    DEFAULT_CLEANUP_PAGE_SIZE,
    DEFAULT_RESUME_WINDOW,
    CleanupReport,
    StoreError,
    assemble_body,
)
from transport.messages import (
    ERROR_CODES,
    BodyChunk,
    ConnectionId,
    ErrorCode,
    ErrorMessage,
    HttpResponse,
    RequestId,
    TunnelId,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import (
        AttributeValueTypeDef,
        PutTypeDef,
        QueryInputTypeDef,
        ScanInputTypeDef,
        TransactWriteItemTypeDef,
        WriteRequestTypeDef,
    )

__all__ = [
    "CHUNK_BYTES",
    "INLINE_BODY_LIMIT",
    "TUNNEL_INDEX",
    "DynamoDBStore",
    "create_tables",
]

#: A body (with its headers) larger than this is stored as chunk items: an item, attribute names and
#: values together, may not exceed 400 KB
#: (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html#limits-items),
#: and the head item needs room for its other attributes.
INLINE_BODY_LIMIT: Final = 350_000
#: Bytes of body per chunk item, under the same 400 KB item limit.
CHUNK_BYTES: Final = 350_000
#: The name of the connections table's global secondary index on ``tunnelId``.
TUNNEL_INDEX: Final = "tunnelId-index"

_CLAIM_PREFIX: Final = "tunnel#"
_HEAD: Final = "head"
_CHUNK_PREFIX: Final = "chunk#"
# BatchWriteItem takes at most 25 requests
# (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchWriteItem.html).
_BATCH_LIMIT: Final = 25
# Transactions touching the same item at once cancel each other with TransactionConflict
# (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html): a few short
# retries let chunks processed by concurrent invocations all land.
_CONFLICT_RETRIES: Final = 6

if TYPE_CHECKING:
    _Item = dict[str, AttributeValueTypeDef]
    _Values = dict[str, AttributeValueTypeDef]


class _ConditionFailedError(Exception):
    """A write's condition failed (a result, never leaves this module)."""


class _ConflictError(Exception):
    """A transaction met a concurrent one on the same item (retry, never leaves this module)."""


@functools.cache
def _botocore_errors() -> tuple[type[Exception], type[Exception]]:
    """(ClientError, BotoCoreError), imported on first use so that lambda_app imports without boto3."""
    from botocore.exceptions import BotoCoreError, ClientError

    return ClientError, BotoCoreError


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        error = response.get("Error")
        if isinstance(error, Mapping) and isinstance(error.get("Code"), str):
            return str(error["Code"])
    return type(exc).__name__


def _cancellation_codes(exc: Exception) -> list[str]:
    """The per-action reasons of a TransactionCanceledException, from the response or its message."""
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        reasons = response.get("CancellationReasons")
        if isinstance(reasons, Sequence):
            return [str(r.get("Code", "None")) for r in reasons if isinstance(r, Mapping)]
    # Without parsed reasons, the message ends "[ConditionalCheckFailed, None]".
    message = str(exc)
    start, end = message.rfind("["), message.rfind("]")
    return [part.strip() for part in message[start + 1 : end].split(",")] if 0 <= start < end else []


@contextlib.contextmanager
def _translated(operation: str) -> Iterator[None]:
    """Translate botocore's errors, once: a failed condition or a conflict to our signals, the rest to
    `StoreError`."""
    client_error, botocore_error = _botocore_errors()
    try:
        yield
    except client_error as exc:
        code = _error_code(exc)
        if code == "ConditionalCheckFailedException":
            raise _ConditionFailedError from exc
        if code == "TransactionCanceledException":
            reasons = _cancellation_codes(exc)
            if "ConditionalCheckFailed" in reasons:
                raise _ConditionFailedError from exc
            if "TransactionConflict" in reasons:
                raise _ConflictError from exc
        _raise_store_error(operation, code, exc)
    except botocore_error as exc:
        _raise_store_error(operation, type(exc).__name__, exc)


def _raise_store_error(operation: str, code: str, exc: Exception) -> NoReturn:
    throttled = "Throughput" in code or "Throttl" in code or "LimitExceeded" in code
    raise StoreError(
        f"DynamoDB {operation} failed: {code}",
        operation=operation,
        error_code=code,
        status_hint=503 if throttled else 500,
    ) from exc


def _s(value: str) -> AttributeValueTypeDef:
    return {"S": value}


def _n(value: float) -> AttributeValueTypeDef:
    # repr() is the shortest text that reads back as the same float; DynamoDB keeps 38 digits.
    return {"N": repr(value)}


def _text(item: Mapping[str, AttributeValueTypeDef], name: str) -> str | None:
    value = item.get(name)
    return None if value is None else value.get("S")


def _number(item: Mapping[str, AttributeValueTypeDef], name: str) -> float | None:
    value = item.get(name)
    text = None if value is None else value.get("N")
    return None if text is None else float(text)


def _whole(item: Mapping[str, AttributeValueTypeDef], name: str) -> int | None:
    number = _number(item, name)
    return None if number is None else int(number)


def _chunk_part(index: int) -> str:
    # Zero-padded so that a query returns chunks in index order (sort keys compare as strings).
    return f"{_CHUNK_PREFIX}{index:06d}"


class DynamoDBStore:
    """A `Store` over two DynamoDB tables (see the module docstring for their items).

    Args:
        client: A boto3 ``dynamodb`` client; the caller creates it once per container.
        connections_table: The connections table's name.
        pending_table: The pending-requests table's name.
        clock: Returns the present as epoch seconds (default `time.time`).
        sleep: Waits between retries of conflicting transactions (default `time.sleep`).
        chunk_ttl: Seconds a body chunk item lives; it is never read without its head, so this only bounds
            how long an orphan lingers before TTL removes it.
    """

    def __init__(
        self,
        client: DynamoDBClient,
        *,
        connections_table: str,
        pending_table: str,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        chunk_ttl: int = 900,
    ) -> None:
        self._client = client
        self._connections = connections_table
        self._pending = pending_table
        self._clock = clock
        self._sleep = sleep
        self._chunk_ttl = chunk_ttl

    # Connections -------------------------------------------------------------------------------------

    def add_connection(self, connection: Connection) -> bool:
        """See `Store.add_connection`: one transaction puts the connection and its claim, both conditional."""
        if connection.connection_id.startswith(_CLAIM_PREFIX):
            raise ValueError(f"connection ids may not start with {_CLAIM_PREFIX!r}")
        now = self._clock()
        values: _Values = {":now": _n(now)}
        claim_condition = "attribute_not_exists(connectionId) OR expiresAt <= :now"
        if connection.resume_digest is not None:
            # A reservation left by `remove_connection` yields to the same resume token only.
            claim_condition += " OR (attribute_not_exists(#owner) AND resumeDigest = :digest)"
            values[":digest"] = _s(connection.resume_digest)
        connection_item = self._connection_item(connection)
        claim_put: PutTypeDef = {
            "TableName": self._connections,
            "Item": self._claim_item(connection),
            "ConditionExpression": claim_condition,
            "ExpressionAttributeValues": values,
        }
        if connection.resume_digest is not None:
            claim_put["ExpressionAttributeNames"] = {"#owner": "owner"}
        items: list[TransactWriteItemTypeDef] = [
            {
                "Put": {
                    "TableName": self._connections,
                    "Item": connection_item,
                    "ConditionExpression": "attribute_not_exists(connectionId) OR expiresAt <= :now",
                    "ExpressionAttributeValues": {":now": values[":now"]},
                }
            },
            {"Put": claim_put},
        ]
        return self._transact(items)

    def get_connection(self, connection_id: ConnectionId) -> Connection | None:
        """See `Store.get_connection`."""
        item = self._get(self._connections, {"connectionId": _s(connection_id)})
        if item is None or connection_id.startswith(_CLAIM_PREFIX):
            return None
        connection = _connection_from(item, connection_id, TunnelId(_text(item, "tunnelId") or ""))
        return None if connection.expired(self._clock()) else connection

    def find_tunnel(self, tunnel_id: TunnelId) -> Connection | None:
        """See `Store.find_tunnel`: one strongly consistent read of the claim, which copies its connection."""
        item = self._get(self._connections, {"connectionId": _s(_CLAIM_PREFIX + tunnel_id)})
        owner = None if item is None else _text(item, "owner")
        if item is None or owner is None:
            return None
        connection = _connection_from(item, ConnectionId(owner), tunnel_id)
        return None if connection.expired(self._clock()) else connection

    def set_ready(
        self,
        connection_id: ConnectionId,
        protocol_version: int,
        features: tuple[str, ...] = (),
        local_origin: str | None = None,
    ) -> Connection | None:
        """See `Store.set_ready`: the connection and its claim's copy change in one transaction."""
        connection = self.get_connection(connection_id)
        if connection is None:
            return None
        values: _Values = {
            ":v": _n(protocol_version),
            ":f": {"L": [_s(feature) for feature in features]},
            ":now": _n(self._clock()),
            ":c": _s(connection_id),
        }
        update = "SET protocolVersion = :v, features = :f"
        if local_origin is not None:
            values[":o"] = _s(local_origin)
            update += ", localOrigin = :o"
        else:
            update += " REMOVE localOrigin"
        fields = (":v", ":f", ":now", ":o") if local_origin is not None else (":v", ":f", ":now")
        items: list[TransactWriteItemTypeDef] = [
            {
                "Update": {
                    "TableName": self._connections,
                    "Key": {"connectionId": _s(connection_id)},
                    "UpdateExpression": update,
                    "ConditionExpression": "attribute_exists(connectionId) AND expiresAt > :now",
                    "ExpressionAttributeValues": {k: values[k] for k in fields},
                }
            },
            {
                "Update": {
                    "TableName": self._connections,
                    "Key": {"connectionId": _s(_CLAIM_PREFIX + connection.tunnel_id)},
                    "UpdateExpression": update,
                    "ConditionExpression": "#owner = :c AND expiresAt > :now",
                    "ExpressionAttributeNames": {"#owner": "owner"},
                    "ExpressionAttributeValues": values,
                }
            },
        ]
        if not self._transact(items):
            return None
        return dataclasses.replace(
            connection, protocol_version=protocol_version, features=features, local_origin=local_origin
        )

    def remove_connection(
        self, connection_id: ConnectionId, *, resume_for: int = DEFAULT_RESUME_WINDOW
    ) -> Connection | None:
        """See `Store.remove_connection`: release the claim first, then delete the connection.

        In this order a crash in between leaves a connection item that finds no tunnel (TTL removes it),
        never a claim that routes public requests to a deleted connection.
        """
        item = self._get(self._connections, {"connectionId": _s(connection_id)})
        if item is None or connection_id.startswith(_CLAIM_PREFIX):
            return None
        connection = _connection_from(item, connection_id, TunnelId(_text(item, "tunnelId") or ""))
        now = self._clock()
        claim_key: _Item = {"connectionId": _s(_CLAIM_PREFIX + connection.tunnel_id)}
        with contextlib.suppress(_ConditionFailedError), _translated("UpdateItem"):
            if connection.resume_digest is not None and resume_for > 0:
                self._client.update_item(
                    TableName=self._connections,
                    Key=claim_key,
                    UpdateExpression=(
                        "SET expiresAt = :until "
                        "REMOVE #owner, createdAt, protocolVersion, features, localOrigin"
                    ),
                    ConditionExpression="#owner = :c",
                    ExpressionAttributeNames={"#owner": "owner"},
                    ExpressionAttributeValues={
                        ":until": _n(math.ceil(now) + resume_for),
                        ":c": _s(connection_id),
                    },
                )
            else:
                self._client.delete_item(
                    TableName=self._connections,
                    Key=claim_key,
                    ConditionExpression="#owner = :c",
                    ExpressionAttributeNames={"#owner": "owner"},
                    ExpressionAttributeValues={":c": _s(connection_id)},
                )
        with _translated("DeleteItem"):
            self._client.delete_item(TableName=self._connections, Key={"connectionId": _s(connection_id)})
        return None if connection.expired(now) else connection

    # Pending requests --------------------------------------------------------------------------------

    def add_pending(self, request: PendingRequest) -> bool:
        """See `Store.add_pending`."""
        if request.outcome is not None or request.chunks_expected is not None or request.chunks_received:
            raise ValueError("a new pending request has no outcome and no chunks yet")
        item: _Item = {
            "requestId": _s(request.request_id),
            "part": _s(_HEAD),
            "connectionId": _s(request.connection_id),
            "tunnelId": _s(request.tunnel_id),
            "createdAt": _n(request.created_at),
            "expiresAt": _n(request.expires_at),
        }
        try:
            with _translated("PutItem"):
                self._client.put_item(
                    TableName=self._pending,
                    Item=item,
                    ConditionExpression="attribute_not_exists(requestId) OR expiresAt <= :now",
                    ExpressionAttributeValues={":now": _n(self._clock())},
                )
        except _ConditionFailedError:
            return False
        return True

    def poll(self, request_id: RequestId) -> PendingRequest | None:
        """See `Store.poll`."""
        head = self._get(self._pending, self._head_key(request_id))
        if head is None:
            return None
        record = PendingRequest(
            request_id,
            ConnectionId(_text(head, "connectionId") or ""),
            TunnelId(_text(head, "tunnelId") or ""),
            _number(head, "createdAt") or 0.0,
            _whole(head, "expiresAt") or 0,
        )
        if record.expired(self._clock()):
            return None
        received = {int(index) for index in head.get("received", {}).get("NS", [])}
        expected = _whole(head, "chunkCount")
        outcome = self._outcome(request_id, head, expected, received)
        return dataclasses.replace(
            record, outcome=outcome, chunks_expected=expected, chunks_received=len(received)
        )

    def record_response(self, connection_id: ConnectionId, response: HttpResponse) -> bool:
        """See `Store.record_response`.

        A body over `INLINE_BODY_LIMIT` is written chunk by chunk, each chunk in a transaction with a
        check of the head's condition, and the head is updated last: a poll sees the whole answer or none.
        """
        headers = json.dumps([list(pair) for pair in response.headers], separators=(",", ":"))
        values: _Values = {
            ":status": _n(response.status_code),
            ":headers": _s(headers),
            ":ms": _n(response.processing_time_ms),
        }
        update = "SET statusCode = :status, headers = :headers, processingTimeMs = :ms"
        manifest = response.body_manifest
        if manifest is not None:
            update += ", chunkCount = :count, bodyLength = :length, bodySha256 = :sha"
            values.update(
                {":count": _n(manifest.count), ":length": _n(manifest.length), ":sha": _s(manifest.sha256)}
            )
        elif len(response.body) + len(headers) <= INLINE_BODY_LIMIT:
            if response.body:  # an empty body is simply absent
                update += ", body = :body"
                values[":body"] = {"B": response.body}
        else:
            parts = [
                response.body[start : start + CHUNK_BYTES]
                for start in range(0, len(response.body), CHUNK_BYTES)
            ]
            for index, data in enumerate(parts):
                if not self._put_chunk(response.request_id, connection_id, index, data, check_only=True):
                    return False
            update += ", chunkCount = :count ADD received :all"
            values.update(
                {":count": _n(len(parts)), ":all": {"NS": [str(index) for index in range(len(parts))]}}
            )
        return self._update_head(
            response.request_id, connection_id, update, values, " AND attribute_not_exists(statusCode)"
        )

    def record_error(self, connection_id: ConnectionId, error: ErrorMessage) -> bool:
        """See `Store.record_error`."""
        if error.request_id is None:
            raise ValueError("an error message without a request_id is not a request's outcome")
        return self._update_head(
            error.request_id,
            connection_id,
            "SET errorCode = :code, errorMessage = :message",
            {":code": _s(error.code), ":message": _s(error.message)},
            " AND attribute_not_exists(statusCode)",
        )

    def record_chunk(self, connection_id: ConnectionId, chunk: BodyChunk) -> bool:
        """See `Store.record_chunk`: the chunk item and the head's set of received indices change together."""
        return self._put_chunk(chunk.request_id, connection_id, chunk.index, chunk.data, check_only=False)

    def discard_pending(self, request_id: RequestId) -> None:
        """See `Store.discard_pending`: query every part of the request, delete them in batches."""
        self._delete_parts(request_id)

    # Cleanup -----------------------------------------------------------------------------------------

    def cleanup(self, *, page_size: int = DEFAULT_CLEANUP_PAGE_SIZE) -> CleanupReport:
        """See `Store.cleanup`: scan both tables page by page for expired items and delete each one,
        conditionally, so that a claim resumed meanwhile survives."""
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, got {page_size!r}")
        now = _n(self._clock())
        pages = connections = claims = requests = chunks = 0
        for table, key_names in (
            (self._connections, ("connectionId",)),
            (self._pending, ("requestId", "part")),
        ):
            start_key: _Item | None = None
            while True:
                # Scan's Limit counts items read before the filter, so a page may hold no match and still
                # have a LastEvaluatedKey (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Scan.html).
                scan: ScanInputTypeDef = {
                    "TableName": table,
                    "Limit": page_size,
                    "FilterExpression": "expiresAt <= :now",
                    "ProjectionExpression": ", ".join(key_names),
                    "ExpressionAttributeValues": {":now": now},
                }
                if start_key:
                    scan["ExclusiveStartKey"] = start_key
                with _translated("Scan"):
                    result = self._client.scan(**scan)
                pages += 1
                for item in result.get("Items", []):
                    key = {name: item[name] for name in key_names}
                    try:
                        with _translated("DeleteItem"):
                            self._client.delete_item(
                                TableName=table,
                                Key=key,
                                ConditionExpression="expiresAt <= :now",
                                ExpressionAttributeValues={":now": now},
                            )
                    except _ConditionFailedError:
                        continue
                    if table == self._connections:
                        if key["connectionId"].get("S", "").startswith(_CLAIM_PREFIX):
                            claims += 1
                        else:
                            connections += 1
                    elif key["part"].get("S") == _HEAD:
                        requests += 1
                        # A request's chunks may outlive its head by `chunk_ttl`: they go with it.
                        chunks += self._delete_parts(
                            RequestId(key["requestId"].get("S", "")), chunks_only=True
                        )
                    else:
                        chunks += 1
                start_key = result.get("LastEvaluatedKey")
                if not start_key:
                    break
        return CleanupReport(pages, connections, claims, requests, chunks)

    # Helpers -----------------------------------------------------------------------------------------

    def _connection_item(self, connection: Connection) -> _Item:
        item: _Item = {
            "connectionId": _s(connection.connection_id),
            "tunnelId": _s(connection.tunnel_id),
            **self._connection_fields(connection),
        }
        return item

    def _claim_item(self, connection: Connection) -> _Item:
        # No `tunnelId` attribute: the claim stays out of the tunnelId GSI, which lists connections only.
        item: _Item = {
            "connectionId": _s(_CLAIM_PREFIX + connection.tunnel_id),
            "owner": _s(connection.connection_id),
            **self._connection_fields(connection),
        }
        return item

    @staticmethod
    def _connection_fields(connection: Connection) -> _Item:
        fields: _Item = {
            "createdAt": _n(connection.created_at),
            "expiresAt": _n(connection.expires_at),
            "features": {"L": [_s(feature) for feature in connection.features]},
        }
        if connection.protocol_version is not None:
            fields["protocolVersion"] = _n(connection.protocol_version)
        if connection.resume_digest is not None:
            fields["resumeDigest"] = _s(connection.resume_digest)
        if connection.local_origin is not None:
            fields["localOrigin"] = _s(connection.local_origin)
        return fields

    def _get(self, table: str, key: _Item) -> _Item | None:
        # Strongly consistent: a read right after `$connect` or an agent's answer must see it
        # (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/HowItWorks.ReadConsistency.html).
        with _translated("GetItem"):
            result = self._client.get_item(TableName=table, Key=key, ConsistentRead=True)
        return result.get("Item")

    def _transact(self, items: list[TransactWriteItemTypeDef]) -> bool:
        """Run a transaction: True when it committed, False when a condition failed."""
        for attempt in range(_CONFLICT_RETRIES + 1):
            try:
                with _translated("TransactWriteItems"):
                    self._client.transact_write_items(TransactItems=items)
            except _ConditionFailedError:
                return False
            except _ConflictError as exc:
                if attempt == _CONFLICT_RETRIES:
                    raise StoreError(
                        "DynamoDB TransactWriteItems kept conflicting",
                        operation="TransactWriteItems",
                        error_code="TransactionConflict",
                    ) from exc
                self._sleep(random.uniform(0.005, 0.02) * 2**attempt)
            else:
                return True
        return False  # pragma: no cover - the loop returns or raises

    def _head_key(self, request_id: RequestId) -> _Item:
        return {"requestId": _s(request_id), "part": _s(_HEAD)}

    def _owned_condition(self, connection_id: ConnectionId) -> tuple[str, _Values]:
        """The condition of every agent write: the head exists, is live, is this connection's, no error."""
        return (
            "attribute_exists(requestId) AND expiresAt > :now AND connectionId = :c"
            " AND attribute_not_exists(errorCode)",
            {":now": _n(self._clock()), ":c": _s(connection_id)},
        )

    def _update_head(
        self, request_id: RequestId, connection_id: ConnectionId, update: str, values: _Values, extra: str
    ) -> bool:
        condition, condition_values = self._owned_condition(connection_id)
        try:
            with _translated("UpdateItem"):
                self._client.update_item(
                    TableName=self._pending,
                    Key=self._head_key(request_id),
                    UpdateExpression=update,
                    ConditionExpression=condition + extra,
                    ExpressionAttributeValues={**values, **condition_values},
                )
        except _ConditionFailedError:
            return False
        return True

    def _put_chunk(
        self, request_id: RequestId, connection_id: ConnectionId, index: int, data: bytes, *, check_only: bool
    ) -> bool:
        """Write a chunk item in one transaction with the head's condition (and, for an agent's chunk, the
        head's set of received indices)."""
        condition, values = self._owned_condition(connection_id)
        chunk_item: _Item = {
            "requestId": _s(request_id),
            "part": _s(_chunk_part(index)),
            "data": {"B": data},
            "expiresAt": _n(math.ceil(self._clock()) + self._chunk_ttl),
        }
        head: TransactWriteItemTypeDef
        if check_only:
            head = {
                "ConditionCheck": {
                    "TableName": self._pending,
                    "Key": self._head_key(request_id),
                    "ConditionExpression": condition + " AND attribute_not_exists(statusCode)",
                    "ExpressionAttributeValues": values,
                }
            }
        else:
            head = {
                "Update": {
                    "TableName": self._pending,
                    "Key": self._head_key(request_id),
                    # ADD to a number set is idempotent: a chunk delivered twice is counted once.
                    "UpdateExpression": "ADD received :index",
                    "ConditionExpression": condition,
                    "ExpressionAttributeValues": {**values, ":index": {"NS": [str(index)]}},
                }
            }
        return self._transact([head, {"Put": {"TableName": self._pending, "Item": chunk_item}}])

    def _delete_parts(self, request_id: RequestId, *, chunks_only: bool = False) -> int:
        """Delete a request's items (or only its chunks) in batches; return how many there were."""
        keys: list[_Item] = []
        for page in self._query_parts(request_id, keys_only=True, chunks_only=chunks_only):
            keys.extend({"requestId": item["requestId"], "part": item["part"]} for item in page)
        for start in range(0, len(keys), _BATCH_LIMIT):
            requests: list[WriteRequestTypeDef] = [
                {"DeleteRequest": {"Key": key}} for key in keys[start : start + _BATCH_LIMIT]
            ]
            for attempt in range(_CONFLICT_RETRIES + 1):
                with _translated("BatchWriteItem"):
                    result = self._client.batch_write_item(RequestItems={self._pending: requests})
                unprocessed = result.get("UnprocessedItems", {}).get(self._pending, [])
                if not unprocessed:
                    break
                # Unprocessed items come back when throttled; retry them after a backoff
                # (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchWriteItem.html).
                requests = [{"DeleteRequest": {"Key": r["DeleteRequest"]["Key"]}} for r in unprocessed]
                self._sleep(0.05 * 2**attempt)
            else:
                raise StoreError("DynamoDB BatchWriteItem left items unprocessed", operation="BatchWriteItem")
        return len(keys)

    def _query_parts(
        self, request_id: RequestId, *, keys_only: bool, chunks_only: bool
    ) -> Iterator[list[_Item]]:
        """Yield the pages of a request's items in sort-key order (chunks by index), strongly consistent.

        A page holds at most 1 MB, so a large body takes several
        (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Query.Pagination.html).
        """
        start_key: _Item | None = None
        while True:
            query: QueryInputTypeDef = {
                "TableName": self._pending,
                "KeyConditionExpression": "requestId = :r",
                "ExpressionAttributeValues": {":r": _s(request_id)},
                "ConsistentRead": True,
            }
            if chunks_only:
                query["KeyConditionExpression"] += " AND begins_with(part, :chunk)"
                query["ExpressionAttributeValues"] = {":r": _s(request_id), ":chunk": _s(_CHUNK_PREFIX)}
            if keys_only:
                query["ProjectionExpression"] = "requestId, part"
            if start_key:
                query["ExclusiveStartKey"] = start_key
            with _translated("Query"):
                result = self._client.query(**query)
            yield result.get("Items", [])
            start_key = result.get("LastEvaluatedKey")
            if not start_key:
                return

    def _outcome(
        self, request_id: RequestId, head: _Item, expected: int | None, received: set[int]
    ) -> Outcome | None:
        code = _text(head, "errorCode")
        if code is not None:
            error_code: ErrorCode = code if code in ERROR_CODES else "internal_error"  # type: ignore[assignment]
            return ErrorOutcome(error_code, _text(head, "errorMessage") or "")
        status = _whole(head, "statusCode")
        if status is None:
            return None
        pairs = json.loads(_text(head, "headers") or "[]")
        headers = tuple((str(name), str(value)) for name, value in pairs)
        processing = _whole(head, "processingTimeMs") or 0
        if expected is None:
            return ResponseOutcome(status, headers, head.get("body", {}).get("B", b""), processing)
        if not received.issuperset(range(expected)):
            return None
        chunks: dict[int, bytes] = {}
        for page in self._query_parts(request_id, keys_only=False, chunks_only=True):
            for item in page:
                part = _text(item, "part") or ""
                if part.startswith(_CHUNK_PREFIX):
                    chunks[int(part.removeprefix(_CHUNK_PREFIX))] = item.get("data", {}).get("B", b"")
        if not all(index in chunks for index in range(expected)):
            return None
        body = assemble_body(chunks, expected, _whole(head, "bodyLength"), _text(head, "bodySha256"))
        if isinstance(body, ErrorOutcome):
            return body
        return ResponseOutcome(status, headers, body, processing)


def _connection_from(
    item: Mapping[str, AttributeValueTypeDef], connection_id: ConnectionId, tunnel_id: TunnelId
) -> Connection:
    version = _whole(item, "protocolVersion")
    features = tuple(value.get("S", "") for value in item.get("features", {}).get("L", []))
    return Connection(
        connection_id,
        tunnel_id,
        _number(item, "createdAt") or 0.0,
        _whole(item, "expiresAt") or 0,
        version,
        features,
        _text(item, "resumeDigest"),
        _text(item, "localOrigin"),
    )


def create_tables(
    client: DynamoDBClient, connections_table: str, pending_table: str, *, wait: bool = True
) -> None:
    """Create the two tables with on-demand billing, the ``tunnelId`` GSI, and TTL on ``expiresAt``.

    Used by the tests and by `tunnel emulate`; a deployment creates the same tables with its
    infrastructure code.

    Args:
        client: A boto3 ``dynamodb`` client.
        connections_table: The connections table's name.
        pending_table: The pending-requests table's name.
        wait: Wait until both tables exist before enabling TTL (required by `UpdateTimeToLive`).

    Raises:
        StoreError: A table exists already, or DynamoDB refused.
    """
    with _translated("CreateTable"):
        client.create_table(
            TableName=connections_table,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[
                {"AttributeName": "connectionId", "AttributeType": "S"},
                {"AttributeName": "tunnelId", "AttributeType": "S"},
            ],
            KeySchema=[{"AttributeName": "connectionId", "KeyType": "HASH"}],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": TUNNEL_INDEX,
                    "KeySchema": [{"AttributeName": "tunnelId", "KeyType": "HASH"}],
                    "Projection": {"ProjectionType": "KEYS_ONLY"},
                }
            ],
        )
        client.create_table(
            TableName=pending_table,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[
                {"AttributeName": "requestId", "AttributeType": "S"},
                {"AttributeName": "part", "AttributeType": "S"},
            ],
            KeySchema=[
                {"AttributeName": "requestId", "KeyType": "HASH"},
                {"AttributeName": "part", "KeyType": "RANGE"},
            ],
        )
    for table in (connections_table, pending_table):
        if wait:
            with _translated("DescribeTable"):
                client.get_waiter("table_exists").wait(
                    TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 30}
                )
        # TTL deletes expired items in the background, typically within a few days
        # (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/howitworks-ttl.html).
        with _translated("UpdateTimeToLive"):
            client.update_time_to_live(
                TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiresAt"}
            )
