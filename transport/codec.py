"""Turns tunnel messages into JSON text frames and back, strictly; no I/O.

The JSON is exactly that of the Rust `ttf` agent (tyrchen/http-tunnel): a snake_case `"type"` tag, bodies
in standard padded base64, headers as ``{"lower-case-name": ["v1", "v2"]}``. Decoding names the field at
fault in a `RemoteProtocolError`; unknown fields are ignored, as serde does, so newer peers can add some.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

from transport.errors import LocalProtocolError, RemoteProtocolError
from transport.messages import (
    BodyAck,
    BodyChunk,
    BodyEnd,
    BodyManifest,
    ConnectionEstablished,
    ConnectionId,
    ErrorMessage,
    Headers,
    HttpRequest,
    HttpResponse,
    Ping,
    Pong,
    Ready,
    RequestId,
    TunnelId,
    TunnelMessage,
)

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "decode_body",
    "decode_frame",
    "encode_body",
    "encode_frame",
    "message_to_json",
]

#: The largest frame `decode_frame` accepts by default: API Gateway's 128 KB WebSocket message quota
#: (https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html).
DEFAULT_MAX_FRAME_BYTES: Final = 128 * 1024

_JSON = dict[str, Any]
_T = TypeVar("_T")
_FIRST_WORD = re.compile(r"[a-z0-9_.]+")
_U64_MAX: Final = 2**64 - 1


def encode_body(body: bytes) -> str:
    """Encode body bytes as standard padded base64, as the `ttf` agent does.

    Args:
        body: Raw bytes.

    Returns:
        The base64 text (empty for an empty body).
    """
    return base64.b64encode(body).decode("ascii")


def decode_body(text: str, field: str = "body") -> bytes:
    """Decode standard padded base64 strictly: no other characters, no missing padding, canonical bits.

    Args:
        text: The base64 text.
        field: The field name to blame in the error.

    Returns:
        The raw bytes.

    Raises:
        RemoteProtocolError: The text is not canonical standard base64.
    """
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RemoteProtocolError(f"not valid standard padded base64 ({exc})", field=field) from None
    # Python ignores stray bits in the last character; Rust's STANDARD engine (and our round trip) do not.
    if base64.b64encode(data).decode("ascii") != text:
        raise RemoteProtocolError("not canonical base64", field=field)
    return data


def _encode_headers(headers: Headers) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for name, value in headers:
        grouped.setdefault(name, []).append(value)
    return grouped


def _encode_manifest(json_value: _JSON, manifest: BodyManifest | None) -> None:
    if manifest is not None:
        json_value["body_manifest"] = {
            "count": manifest.count,
            "length": manifest.length,
            "sha256": manifest.sha256,
        }


def message_to_json(message: TunnelMessage) -> dict[str, Any]:
    """Build the JSON value of a message (a dict ready for `json.dumps`).

    Args:
        message: Any tunnel message.

    Returns:
        The JSON object, with its `"type"` tag first.
    """
    match message:
        case Ready(protocol_version=version, features=features):
            ready: _JSON = {"type": "ready"}
            if version is not None:
                ready["protocol_version"] = version
            if features is not None:
                ready["features"] = list(features)
            if message.local_origin is not None:
                ready["local_origin"] = message.local_origin
            return ready
        case ConnectionEstablished():
            established: _JSON = {
                "type": "connection_established",
                "connection_id": message.connection_id,
                "tunnel_id": message.tunnel_id,
                "public_url": message.public_url,
            }
            if message.subdomain_url is not None:
                established["subdomain_url"] = message.subdomain_url
            if message.path_based_url is not None:
                established["path_based_url"] = message.path_based_url
            if message.protocol_version is not None:
                established["protocol_version"] = message.protocol_version
            if message.features is not None:
                established["features"] = list(message.features)
            if message.resume_token is not None:
                established["resume_token"] = message.resume_token
            return established
        case HttpRequest():
            request: _JSON = {
                "type": "http_request",
                "request_id": message.request_id,
                "method": message.method,
                "uri": message.uri,
                "headers": _encode_headers(message.headers),
                "body": encode_body(message.body),
                "timestamp": message.timestamp,
            }
            _encode_manifest(request, message.body_manifest)
            if message.body_stream:
                request["body_stream"] = True
            return request
        case HttpResponse():
            response: _JSON = {
                "type": "http_response",
                "request_id": message.request_id,
                "status_code": message.status_code,
                "headers": _encode_headers(message.headers),
                "body": encode_body(message.body),
                "processing_time_ms": message.processing_time_ms,
            }
            _encode_manifest(response, message.body_manifest)
            if message.body_stream:
                response["body_stream"] = True
            return response
        case BodyChunk():
            return {
                "type": "body_chunk",
                "request_id": message.request_id,
                "index": message.index,
                "data": encode_body(message.data),
            }
        case BodyEnd():
            return {
                "type": "body_end",
                "request_id": message.request_id,
                "count": message.count,
                "length": message.length,
                "sha256": message.sha256,
            }
        case BodyAck():
            return {"type": "body_ack", "request_id": message.request_id, "length": message.length}
        case Ping():
            return {"type": "ping"}
        case Pong():
            return {"type": "pong"}
        case ErrorMessage():
            return {
                "type": "error",
                "request_id": message.request_id,
                "code": message.code,
                "message": message.message,
            }
    raise LocalProtocolError(f"not a tunnel message: {type(message).__name__}", field="type")


def encode_frame(message: TunnelMessage) -> str:
    """Encode a message as one compact JSON text frame (pure ASCII, so characters are bytes).

    Args:
        message: Any tunnel message.

    Returns:
        The JSON text.
    """
    return json.dumps(message_to_json(message), separators=(",", ":"), ensure_ascii=True)


# Decoding ------------------------------------------------------------------------------------------------


class _Fields:
    """Typed access to a JSON object's fields, blaming the field by name when it is wrong."""

    __slots__ = ("_prefix", "_value")

    def __init__(self, value: Mapping[str, Any], prefix: str = "") -> None:
        self._value = value
        self._prefix = prefix

    def name(self, key: str) -> str:
        return f"{self._prefix}{key}"

    def _get(self, key: str, *, optional: bool) -> Any:
        if key not in self._value:
            if optional:
                return None
            raise RemoteProtocolError("missing", field=self.name(key))
        return self._value[key]

    def string(self, key: str) -> str:
        value = self._get(key, optional=False)
        if not isinstance(value, str):
            raise RemoteProtocolError(f"must be a string, got {_json_type(value)}", field=self.name(key))
        return value

    def optional_string(self, key: str) -> str | None:
        value = self._get(key, optional=True)
        if value is not None and not isinstance(value, str):
            raise RemoteProtocolError(
                f"must be a string or null, got {_json_type(value)}", field=self.name(key)
            )
        return value

    def integer(self, key: str, *, default: int | None = None) -> int:
        if default is not None and key not in self._value:
            # serde's #[serde(default)]: a missing field takes the default (null does not).
            return default
        value = self._get(key, optional=False)
        # The `ttf` agent's integers are u64 (u16 for status_code, checked by HttpResponse itself).
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _U64_MAX:
            raise RemoteProtocolError(
                f"must be a non-negative 64-bit integer, got {_json_type(value)}", field=self.name(key)
            )
        return value

    def optional_integer(self, key: str) -> int | None:
        if self._get(key, optional=True) is None:
            return None
        return self.integer(key)

    def flag(self, key: str) -> bool:
        """A boolean that is false when absent (a version-2 field a version-1 peer never sends)."""
        value = self._get(key, optional=True)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise RemoteProtocolError(f"must be a boolean, got {_json_type(value)}", field=self.name(key))
        return value

    def optional_strings(self, key: str) -> tuple[str, ...] | None:
        value = self._get(key, optional=True)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise RemoteProtocolError("must be a list of strings", field=self.name(key))
        return tuple(value)

    def body(self, key: str, *, default_empty: bool) -> bytes:
        if default_empty and key not in self._value:
            # serde's #[serde(default)] on the `ttf` request body: a missing body is empty (null is not).
            return b""
        value = self._get(key, optional=False)
        if not isinstance(value, str):
            raise RemoteProtocolError(
                f"must be a base64 string, got {_json_type(value)}", field=self.name(key)
            )
        return decode_body(value, self.name(key))

    def headers(self, key: str) -> Headers:
        value = self._get(key, optional=False)
        if not isinstance(value, dict):
            raise RemoteProtocolError(
                f"must be an object of name to list of values, got {_json_type(value)}", field=self.name(key)
            )
        pairs: list[tuple[str, str]] = []
        for name, values in value.items():
            if not isinstance(values, list) or not all(isinstance(item, str) for item in values):
                raise RemoteProtocolError("must be a list of strings", field=f"{self.name(key)}.{name}")
            pairs.extend((name, item) for item in values)
        return tuple(pairs)

    def manifest(self, key: str) -> BodyManifest | None:
        value = self._get(key, optional=True)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise RemoteProtocolError(f"must be an object, got {_json_type(value)}", field=self.name(key))
        inner = _Fields(value, f"{self.name(key)}.")
        return _build(
            BodyManifest,
            self.name(key),
            count=inner.integer("count"),
            length=inner.integer("length"),
            sha256=inner.string("sha256"),
        )


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return f"number {value!r}"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _build(cls: Callable[..., _T], blame: str, **kwargs: Any) -> _T:
    """Construct a message, turning its validation `ValueError` into a `RemoteProtocolError`."""
    try:
        return cls(**kwargs)
    except ValueError as exc:
        text = str(exc)
        # Validation messages start with the name of the field they are about.
        first = _FIRST_WORD.match(text)
        word = first.group() if first else ""
        field = word if word in kwargs or word.startswith(f"{blame}.") else blame
        raise RemoteProtocolError(text, field=field) from None


def _decode_ready(f: _Fields) -> Ready:
    return _build(
        Ready,
        "type",
        protocol_version=f.optional_integer("protocol_version"),
        features=f.optional_strings("features"),
        local_origin=f.optional_string("local_origin"),
    )


def _decode_established(f: _Fields) -> ConnectionEstablished:
    return _build(
        ConnectionEstablished,
        "type",
        connection_id=ConnectionId(f.string("connection_id")),
        tunnel_id=TunnelId(f.string("tunnel_id")),
        public_url=f.string("public_url"),
        subdomain_url=f.optional_string("subdomain_url"),
        path_based_url=f.optional_string("path_based_url"),
        protocol_version=f.optional_integer("protocol_version"),
        features=f.optional_strings("features"),
        resume_token=f.optional_string("resume_token"),
    )


def _decode_request(f: _Fields) -> HttpRequest:
    return _build(
        HttpRequest,
        "type",
        request_id=RequestId(f.string("request_id")),
        method=f.string("method"),
        uri=f.string("uri"),
        headers=f.headers("headers"),
        body=f.body("body", default_empty=True),
        timestamp=f.integer("timestamp"),
        body_manifest=f.manifest("body_manifest"),
        body_stream=f.flag("body_stream"),
    )


def _decode_response(f: _Fields) -> HttpResponse:
    return _build(
        HttpResponse,
        "type",
        request_id=RequestId(f.string("request_id")),
        status_code=f.integer("status_code"),
        headers=f.headers("headers"),
        body=f.body("body", default_empty=True),
        # The `ttf` agent's HttpResponse declares #[serde(default)] on processing_time_ms (and body).
        processing_time_ms=f.integer("processing_time_ms", default=0),
        body_manifest=f.manifest("body_manifest"),
        body_stream=f.flag("body_stream"),
    )


def _decode_chunk(f: _Fields) -> BodyChunk:
    return _build(
        BodyChunk,
        "type",
        request_id=RequestId(f.string("request_id")),
        index=f.integer("index"),
        data=f.body("data", default_empty=False),
    )


def _decode_end(f: _Fields) -> BodyEnd:
    return _build(
        BodyEnd,
        "type",
        request_id=RequestId(f.string("request_id")),
        count=f.integer("count"),
        length=f.integer("length"),
        sha256=f.string("sha256"),
    )


def _decode_ack(f: _Fields) -> BodyAck:
    return _build(BodyAck, "type", request_id=RequestId(f.string("request_id")), length=f.integer("length"))


def _decode_error(f: _Fields) -> ErrorMessage:
    request_id = f.optional_string("request_id")
    return _build(
        ErrorMessage,
        "type",
        request_id=None if request_id is None else RequestId(request_id),
        code=f.string("code"),
        message=f.string("message"),
    )


_DECODERS: Final[dict[str, Callable[[_Fields], TunnelMessage]]] = {
    "ready": _decode_ready,
    "connection_established": _decode_established,
    "http_request": _decode_request,
    "http_response": _decode_response,
    "body_chunk": _decode_chunk,
    "body_end": _decode_end,
    "body_ack": _decode_ack,
    "ping": lambda _: Ping(),
    "pong": lambda _: Pong(),
    "error": _decode_error,
}


def decode_frame(frame: str | bytes, *, max_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> TunnelMessage:
    """Decode one JSON text frame into a message, strictly.

    Args:
        frame: The frame's text (bytes are taken as UTF-8).
        max_bytes: Frames longer than this are refused before parsing.

    Returns:
        The message.

    Raises:
        RemoteProtocolError: The frame is too big, not JSON, has an unknown `type`, or a field is missing,
            mistyped or invalid; `field` names it.
    """
    size = len(frame) if isinstance(frame, bytes) else len(frame.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise RemoteProtocolError(
            f"frame of {size} bytes exceeds the {max_bytes}-byte limit", status_hint=413
        )
    try:
        value = json.loads(frame)
    except (ValueError, RecursionError) as exc:
        raise RemoteProtocolError(f"not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise RemoteProtocolError(f"a frame must be a JSON object, got {_json_type(value)}")
    fields = _Fields(value)
    kind = fields.string("type")
    decoder = _DECODERS.get(kind)
    if decoder is None:
        raise RemoteProtocolError(f"unknown message type {kind!r}", field="type")
    return decoder(fields)
