"""The gateway: its logic over a store and a transport, and the AWS Lambda edge.

`app` holds the logic shared with the self-hosted gateway; `events`, `settings` and `auth` are the
Lambda edge's typed events, configuration and agent authentication; `store_memory` and `store_dynamodb`
keep the state. Only `store_dynamodb` (boto3, imported lazily) and `settings` (the environment) reach
outside the process.
"""

from __future__ import annotations

from lambda_app.app import Gateway, GatewayConfig, PublicRequest, PublicResponse, new_tunnel_id
from lambda_app.auth import (
    Authenticator,
    AuthError,
    Fetch,
    JwksProvider,
    JwtVerifier,
    KeySet,
    Principal,
    RemoteJwks,
    SharedTokenVerifier,
    StaticJwks,
    TokenVerifier,
    VerificationKey,
    build_authenticator,
    extract_token,
    fetch_https,
    parse_jwks,
)
from lambda_app.events import (
    BadEvent,
    EventError,
    HttpEvent,
    LambdaEvent,
    PayloadVersion,
    RouteKey,
    ScheduledEvent,
    UnknownEvent,
    WebSocketEvent,
    http_response,
    parse_event,
    websocket_response,
)
from lambda_app.records import Connection, ErrorOutcome, Outcome, PendingRequest, ResponseOutcome
from lambda_app.settings import (
    INTEGRATION_TIMEOUT_LIMIT,
    SUPPORTED_ALGORITHMS,
    AuthMode,
    Settings,
    load_settings,
)
from lambda_app.store import (
    DEFAULT_CLEANUP_PAGE_SIZE,
    DEFAULT_RESUME_WINDOW,
    CleanupReport,
    Store,
    StoreError,
    assemble_body,
)
from lambda_app.store_dynamodb import (
    CHUNK_BYTES,
    INLINE_BODY_LIMIT,
    TUNNEL_INDEX,
    DynamoDBStore,
    create_tables,
)
from lambda_app.store_memory import MemoryStore

__all__ = [
    "CHUNK_BYTES",
    "DEFAULT_CLEANUP_PAGE_SIZE",
    "DEFAULT_RESUME_WINDOW",
    "INLINE_BODY_LIMIT",
    "INTEGRATION_TIMEOUT_LIMIT",
    "SUPPORTED_ALGORITHMS",
    "TUNNEL_INDEX",
    "AuthError",
    "AuthMode",
    "Authenticator",
    "BadEvent",
    "CleanupReport",
    "Connection",
    "DynamoDBStore",
    "ErrorOutcome",
    "EventError",
    "Fetch",
    "Gateway",
    "GatewayConfig",
    "HttpEvent",
    "JwksProvider",
    "JwtVerifier",
    "KeySet",
    "LambdaEvent",
    "MemoryStore",
    "Outcome",
    "PayloadVersion",
    "PendingRequest",
    "Principal",
    "PublicRequest",
    "PublicResponse",
    "RemoteJwks",
    "ResponseOutcome",
    "RouteKey",
    "ScheduledEvent",
    "Settings",
    "SharedTokenVerifier",
    "StaticJwks",
    "Store",
    "StoreError",
    "TokenVerifier",
    "UnknownEvent",
    "VerificationKey",
    "WebSocketEvent",
    "assemble_body",
    "build_authenticator",
    "create_tables",
    "extract_token",
    "fetch_https",
    "http_response",
    "load_settings",
    "new_tunnel_id",
    "parse_event",
    "parse_jwks",
    "websocket_response",
]
