"""The gateway: its logic over a store and a transport, and the AWS Lambda edge.

`app` holds the logic shared with the self-hosted gateway; `handler` is the Lambda entry point
(`lambda_app.handler.handler`), and `events`, `settings`, `auth` and `logs` are its typed events,
configuration, agent authentication and JSON logs; `emulate` runs the handler as AWS would, on
loopback (`tunnel emulate`); `store_memory` and `store_dynamodb`
keep the state. Only `store_dynamodb` (boto3, imported lazily) and `settings` (the environment) reach
outside the process.

`emulate` and `emulate_cli` need uvicorn and websockets, which the Lambda package leaves out, so their
names are imported on first use: importing the handler loads neither.
"""

from __future__ import annotations

import importlib
from typing import Any

from lambda_app.app import (
    Exchange,
    FrameResult,
    Gateway,
    GatewayConfig,
    PublicRequest,
    PublicResponse,
    StreamMessage,
    error_page,
    new_tunnel_id,
)
from lambda_app.asgi import Receive, Send, read_body
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
from lambda_app.handler import (
    MAX_RESPONSE_PAYLOAD_BYTES,
    LambdaContext,
    Runtime,
    build_runtime,
    current_runtime,
    reset_runtime,
)
from lambda_app.logs import (
    REDACTED_KEYS,
    JsonFormatter,
    configure_logging,
    current_request_id,
    request_context,
)
from lambda_app.records import Connection, ErrorOutcome, Outcome, PendingRequest, ResponseOutcome
from lambda_app.settings import (
    INTEGRATION_TIMEOUT_LIMIT,
    SUPPORTED_ALGORITHMS,
    AuthMode,
    Settings,
    load_settings,
    read_aws_secret,
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
    "FRAME_LIMIT",
    "HTTP_API_PAYLOAD_LIMIT",
    "HTTP_INTEGRATION_TIMEOUT",
    "INLINE_BODY_LIMIT",
    "INTEGRATION_TIMEOUT_LIMIT",
    "LAMBDA_PAYLOAD_LIMIT",
    "MAX_RESPONSE_PAYLOAD_BYTES",
    "MESSAGE_LIMIT",
    "REDACTED_KEYS",
    "SUPPORTED_ALGORITHMS",
    "TUNNEL_INDEX",
    "WEBSOCKET_INTEGRATION_TIMEOUT",
    "AuthError",
    "AuthMode",
    "Authenticator",
    "BadEvent",
    "CleanupReport",
    "Connection",
    "DynamoDBStore",
    "Emulator",
    "EmulatorConfig",
    "EmulatorThread",
    "EmulatorUrls",
    "ErrorOutcome",
    "EventError",
    "Exchange",
    "Fetch",
    "FrameResult",
    "Gateway",
    "GatewayConfig",
    "HttpEvent",
    "InvocationContext",
    "JsonFormatter",
    "JwksProvider",
    "JwtVerifier",
    "KeySet",
    "LambdaContext",
    "LambdaEvent",
    "LambdaHandler",
    "MemoryStore",
    "Outcome",
    "PayloadVersion",
    "PendingRequest",
    "Principal",
    "PublicRequest",
    "PublicResponse",
    "Receive",
    "RemoteJwks",
    "ResponseOutcome",
    "RouteKey",
    "Runtime",
    "ScheduledEvent",
    "Send",
    "Settings",
    "SharedTokenVerifier",
    "StaticJwks",
    "Store",
    "StoreError",
    "StreamMessage",
    "TokenVerifier",
    "UnknownEvent",
    "VerificationKey",
    "WebSocketEvent",
    "add_emulate_arguments",
    "assemble_body",
    "build_authenticator",
    "build_runtime",
    "configure_logging",
    "create_tables",
    "current_request_id",
    "current_runtime",
    "emulate_command",
    "error_page",
    "extract_token",
    "fetch_https",
    "http_api_event",
    "http_response",
    "load_settings",
    "new_tunnel_id",
    "parse_event",
    "parse_jwks",
    "read_aws_secret",
    "read_body",
    "request_context",
    "reset_runtime",
    "run_emulate",
    "scheduled_event",
    "translate_http_result",
    "websocket_event",
    "websocket_response",
]

# Development tools: resolved by __getattr__ (PEP 562) so that `import lambda_app.handler` stays lean.
_LAZY_EXPORTS = {
    "emulate": [
        "FRAME_LIMIT",
        "HTTP_API_PAYLOAD_LIMIT",
        "HTTP_INTEGRATION_TIMEOUT",
        "LAMBDA_PAYLOAD_LIMIT",
        "MESSAGE_LIMIT",
        "WEBSOCKET_INTEGRATION_TIMEOUT",
        "Emulator",
        "EmulatorConfig",
        "EmulatorThread",
        "EmulatorUrls",
        "InvocationContext",
        "LambdaHandler",
        "http_api_event",
        "scheduled_event",
        "translate_http_result",
        "websocket_event",
    ],
    "emulate_cli": ["add_emulate_arguments", "emulate_command", "run_emulate"],
}
_LAZY_MODULE_OF = {name: module for module, names in _LAZY_EXPORTS.items() for name in names}


def __getattr__(name: str) -> Any:
    if name not in _LAZY_MODULE_OF:
        raise AttributeError(f"module 'lambda_app' has no attribute {name!r}")
    return getattr(importlib.import_module(f"lambda_app.{_LAZY_MODULE_OF[name]}"), name)
