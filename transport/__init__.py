"""The tunnel protocol (messages, codec, chunking, `TunnelProtocol`) and the transports that move its frames.

`apigateway` (boto3, imported lazily), `local` (websockets) and `memory` (tests) do I/O; the rest is pure.
`local`'s names are imported on first use: the Lambda package leaves websockets out.
"""

from __future__ import annotations

import importlib
from typing import Any

from transport.apigateway import (
    METRIC_NAMESPACE,
    APIGatewayTransport,
    ManagementApiClient,
    Outcome,
    create_management_client,
    management_endpoint,
)
from transport.base import AsyncTransport, Transport, async_broadcast, broadcast
from transport.chunking import (
    DEFAULT_MAX_BODY_BYTES,
    MAX_MESSAGE_BYTES,
    MAX_WEBSOCKET_FRAME_BYTES,
    BodyAssembler,
    assemble,
    chunk_payload_size,
    split_frame,
    split_message,
)
from transport.codec import (
    DEFAULT_MAX_FRAME_BYTES,
    decode_body,
    decode_frame,
    encode_body,
    encode_frame,
    message_to_json,
)
from transport.errors import (
    ConnectionGone,
    LocalProtocolError,
    ProtocolError,
    ProxyError,
    RemoteProtocolError,
    SendFailed,
    TransportError,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from transport.memory import AsyncMemoryTransport, MemoryTransport
from transport.messages import (
    ERROR_CODES,
    PROTOCOL_VERSION,
    STREAM_WINDOW_BYTES,
    SUPPORTED_FEATURES,
    BodyAck,
    BodyChunk,
    BodyEnd,
    BodyManifest,
    ConnectionEstablished,
    ConnectionId,
    ErrorCode,
    ErrorMessage,
    Feature,
    Headers,
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
from transport.protocol import DEFAULT_MAX_PENDING_BODIES, ProtocolState, Role, TunnelProtocol
from transport.retry import (
    DEFAULT_RETRY_POLICY,
    GIVE_UP_CODES,
    RETRY_CODES,
    Decision,
    RetryPolicy,
    classify,
    delays,
    error_code,
)
from transport.streams import StreamReader, StreamWriter, Window

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_FRAME_BYTES",
    "DEFAULT_MAX_PENDING_BODIES",
    "DEFAULT_RETRY_POLICY",
    "ERROR_CODES",
    "GIVE_UP_CODES",
    "MAX_MESSAGE_BYTES",
    "MAX_WEBSOCKET_FRAME_BYTES",
    "METRIC_NAMESPACE",
    "PROTOCOL_VERSION",
    "RETRY_CODES",
    "STREAM_WINDOW_BYTES",
    "SUPPORTED_FEATURES",
    "APIGatewayTransport",
    "AsyncMemoryTransport",
    "AsyncTransport",
    "BodyAck",
    "BodyAssembler",
    "BodyChunk",
    "BodyEnd",
    "BodyManifest",
    "ConnectionEstablished",
    "ConnectionGone",
    "ConnectionId",
    "Decision",
    "ErrorCode",
    "ErrorMessage",
    "Feature",
    "Headers",
    "HttpRequest",
    "HttpResponse",
    "LocalProtocolError",
    "LocalTransport",
    "ManagementApiClient",
    "MemoryTransport",
    "MessageConnection",
    "Outcome",
    "Ping",
    "Pong",
    "ProtocolError",
    "ProtocolState",
    "ProxyError",
    "Ready",
    "RemoteProtocolError",
    "RequestId",
    "RetryPolicy",
    "Role",
    "SendFailed",
    "StreamReader",
    "StreamWriter",
    "Transport",
    "TransportError",
    "TunnelId",
    "TunnelMessage",
    "TunnelProtocol",
    "UpstreamError",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "WebSocketConnection",
    "Window",
    "assemble",
    "async_broadcast",
    "broadcast",
    "chunk_payload_size",
    "classify",
    "create_management_client",
    "decode_body",
    "decode_frame",
    "delays",
    "encode_body",
    "encode_frame",
    "error_code",
    "management_endpoint",
    "message_to_json",
    "new_connection_id",
    "new_request_id",
    "split_frame",
    "split_message",
]

# transport.local needs websockets: resolved by __getattr__ (PEP 562), so the Lambda handler never loads it.
_LAZY_MODULE_OF = {
    "LocalTransport": "local",
    "MessageConnection": "local",
    "WebSocketConnection": "local",
    "new_connection_id": "local",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY_MODULE_OF:
        raise AttributeError(f"module 'transport' has no attribute {name!r}")
    return getattr(importlib.import_module(f"transport.{_LAZY_MODULE_OF[name]}"), name)
