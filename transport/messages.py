"""The tunnel's messages: frozen values, validated when they are built; no I/O.

Version 1 is the message set of the Rust `ttf` agent (tyrchen/http-tunnel); version 2 adds the negotiation
fields of `Ready` and `ConnectionEstablished`, body manifests and `BodyChunk` (see transport/protocol.py),
and, with the `body_stream` feature, bodies streamed as they are produced: a head marked `body_stream`,
`BodyChunk`s, a closing `BodyEnd`, and `BodyAck`s that let the sender go on (transport/streams.py).
Invalid values raise `ValueError` at construction, as h11's events do.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Final, Literal, NewType, get_args

__all__ = [
    "ERROR_CODES",
    "PROTOCOL_VERSION",
    "STREAM_WINDOW_BYTES",
    "SUPPORTED_FEATURES",
    "BodyAck",
    "BodyChunk",
    "BodyEnd",
    "BodyManifest",
    "ConnectionEstablished",
    "ConnectionId",
    "ErrorCode",
    "ErrorMessage",
    "Feature",
    "Headers",
    "HttpRequest",
    "HttpResponse",
    "Ping",
    "Pong",
    "Ready",
    "RequestId",
    "TunnelId",
    "TunnelMessage",
    "new_request_id",
]

RequestId = NewType("RequestId", str)
ConnectionId = NewType("ConnectionId", str)
TunnelId = NewType("TunnelId", str)

#: A header list: lower-case names, in order; a name may repeat (two `set-cookie` stay two).
Headers = tuple[tuple[str, str], ...]

ErrorCode = Literal["invalid_request", "timeout", "local_service_unavailable", "internal_error"]
ERROR_CODES: Final[frozenset[str]] = frozenset(get_args(ErrorCode))

#: Features a version-2 peer may offer in `ready.features`; unknown names from newer peers are ignored.
Feature = Literal["body_chunks", "pong", "body_stream"]
SUPPORTED_FEATURES: Final[tuple[Feature, ...]] = ("body_chunks", "pong", "body_stream")
#: With `body_stream`, how many body bytes a sender may have sent that the receiver has not acknowledged
#: (`BodyAck`): what one streamed body can hold in memory on its way, whatever its size.
STREAM_WINDOW_BYTES: Final = 1024 * 1024

#: The highest protocol version this implementation speaks.
PROTOCOL_VERSION: Final = 2

# RFC 9110 section 5.6.2: a field name is a token.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-zA-Z]+")
# RFC 9110 section 5.5: CR, LF and NUL are never allowed in a field value.
_BAD_VALUE = re.compile(r"[\r\n\x00]")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# What str(uuid.UUID(...)) gives: lower-case hex, hyphenated 8-4-4-4-12.
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def new_request_id() -> RequestId:
    """Make a fresh request id, a random (version 4) UUID as the `ttf` gateway makes them.

    Returns:
        The id in canonical lower-case hyphenated form.
    """
    return RequestId(str(uuid.uuid4()))


def _check_request_id(value: str, name: str = "request_id") -> None:
    # Every message carries one: a pattern is ten times cheaper than parsing it with uuid.UUID.
    if isinstance(value, str) and _CANONICAL_UUID.fullmatch(value):
        return
    try:
        uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        raise ValueError(f"{name} must be a UUID, got {value!r}") from None
    raise ValueError(f"{name} must be a canonical lower-case UUID, got {value!r}")


def _check_non_negative_int(value: int, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")


def _check_text(value: str, name: str, *, empty: bool = False) -> None:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {type(value).__name__}")
    if not empty and not value:
        raise ValueError(f"{name} must not be empty")


def _normalize_headers(headers: Headers) -> Headers:
    if not isinstance(headers, tuple):
        raise ValueError(f"headers must be a tuple of (name, value) pairs, got {type(headers).__name__}")
    normalized: list[tuple[str, str]] = []
    for pair in headers:
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise ValueError(f"headers must hold (name, value) pairs, got {pair!r}")
        name, value = pair
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise ValueError(f"headers: name {name!r} is not an HTTP token")
        if not isinstance(value, str) or _BAD_VALUE.search(value):
            raise ValueError(f"headers: the value of {name!r} has CR, LF or NUL, or is not a string")
        normalized.append((name.lower(), value))
    return tuple(normalized)


def _check_features(features: tuple[str, ...] | None, version: int | None) -> None:
    if features is None:
        return
    if version is None:
        raise ValueError("features need a protocol_version")
    if not isinstance(features, tuple) or not all(isinstance(f, str) and f for f in features):
        raise ValueError(f"features must be a tuple of non-empty strings, got {features!r}")


def _check_v2_text(value: str | None, name: str, version: int | None) -> None:
    """A version-2 field: absent, or a non-empty string next to a protocol version."""
    if value is None:
        return
    if version is None:
        raise ValueError(f"{name} needs a protocol_version")
    _check_text(value, name)


def _check_version(version: int | None) -> None:
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 1):
        raise ValueError(f"protocol_version must be an integer >= 1, got {version!r}")


@dataclass(frozen=True, slots=True)
class Ready:
    """The agent is connected and asks for its public URL.

    A version-1 agent sends no fields; ours offers `protocol_version` 2 and the `features` it speaks, and
    names the `local_origin` it forwards to (`http://127.0.0.1:3000`), so that the gateway can point URLs
    that name the local app at the public origin.
    """

    protocol_version: int | None = None
    features: tuple[str, ...] | None = None
    local_origin: str | None = None

    def __post_init__(self) -> None:
        _check_version(self.protocol_version)
        _check_features(self.features, self.protocol_version)
        _check_v2_text(self.local_origin, "local_origin", self.protocol_version)

    @property
    def version(self) -> int:
        """The protocol version offered: 1 when the field is absent."""
        return self.protocol_version or 1


@dataclass(frozen=True, slots=True)
class ConnectionEstablished:
    """The gateway's answer to `Ready`: where the tunnel can be reached, and the version agreed."""

    connection_id: ConnectionId
    tunnel_id: TunnelId
    public_url: str
    subdomain_url: str | None = None
    path_based_url: str | None = None
    protocol_version: int | None = None
    features: tuple[str, ...] | None = None
    resume_token: str | None = None
    """Version 2: presented on a later `$connect`, it gives the agent its tunnel id back if still free."""

    def __post_init__(self) -> None:
        _check_v2_text(self.resume_token, "resume_token", self.protocol_version)
        _check_text(self.connection_id, "connection_id")
        _check_text(self.tunnel_id, "tunnel_id")
        _check_text(self.public_url, "public_url")
        for name in ("subdomain_url", "path_based_url"):
            value = getattr(self, name)
            if value is not None:
                _check_text(value, name)
        _check_version(self.protocol_version)
        _check_features(self.features, self.protocol_version)

    @property
    def version(self) -> int:
        """The protocol version agreed: 1 when the field is absent."""
        return self.protocol_version or 1


@dataclass(frozen=True, slots=True)
class BodyManifest:
    """Says that a message's body follows in `count` `BodyChunk` messages (version 2).

    Attributes:
        count: How many chunks follow, numbered 0 to count - 1.
        length: The body's total length in bytes.
        sha256: The SHA-256 digest of the whole body, lower-case hex.
    """

    count: int
    length: int
    sha256: str

    def __post_init__(self) -> None:
        _check_non_negative_int(self.count, "body_manifest.count")
        _check_non_negative_int(self.length, "body_manifest.length")
        if self.count == 0 or self.length == 0:
            raise ValueError(
                "body_manifest.count and length must be at least 1 (an empty body is sent inline)"
            )
        if self.count > self.length:
            raise ValueError("body_manifest.count cannot exceed its length: every chunk carries a byte")
        if not isinstance(self.sha256, str) or not _SHA256_HEX.fullmatch(self.sha256):
            raise ValueError(f"body_manifest.sha256 must be 64 lower-case hex digits, got {self.sha256!r}")


def _check_body(body: bytes, manifest: BodyManifest | None, stream: bool) -> None:
    if not isinstance(body, bytes):
        raise ValueError(f"body must be bytes, got {type(body).__name__}")
    if manifest is not None and body:
        raise ValueError("body must be empty when a body_manifest announces chunks")
    if not isinstance(stream, bool):
        raise ValueError(f"body_stream must be a boolean, got {stream!r}")
    if stream and (body or manifest is not None):
        raise ValueError("body_stream must not come with a body or a body_manifest: the body follows")


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """A public HTTP request, for the agent to replay against the local service.

    Attributes:
        request_id: A UUID that the response echoes.
        method: The HTTP method, e.g. ``"GET"``.
        uri: Path and raw query string, e.g. ``"/api/users?limit=10"``.
        headers: Lower-case names in order (normalized at construction).
        body: The raw body bytes.
        timestamp: When the gateway received it, Unix epoch in milliseconds.
        body_manifest: Set only on the wire, when the body follows in chunks.
        body_stream: The body follows as `BodyChunk`s closed by a `BodyEnd` (the `body_stream` feature).
    """

    request_id: RequestId
    method: str
    uri: str
    headers: Headers = ()
    body: bytes = b""
    timestamp: int = 0
    body_manifest: BodyManifest | None = None
    body_stream: bool = False

    def __post_init__(self) -> None:
        _check_request_id(self.request_id)
        if not isinstance(self.method, str) or not _TOKEN.fullmatch(self.method):
            raise ValueError(f"method must be an HTTP token, got {self.method!r}")
        _check_text(self.uri, "uri")
        if _BAD_VALUE.search(self.uri) or " " in self.uri:
            raise ValueError(f"uri must not contain spaces, CR, LF or NUL, got {self.uri!r}")
        object.__setattr__(self, "headers", _normalize_headers(self.headers))
        _check_body(self.body, self.body_manifest, self.body_stream)
        _check_non_negative_int(self.timestamp, "timestamp")


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """The local service's answer to an `HttpRequest`, as the agent relays it.

    Attributes:
        request_id: The id of the request this answers.
        status_code: The HTTP status, 100 to 599.
        headers: Lower-case names in order (normalized at construction).
        body: The raw body bytes.
        processing_time_ms: How long the agent took, in milliseconds.
        body_manifest: Set only on the wire, when the body follows in chunks.
        body_stream: The body follows as `BodyChunk`s closed by a `BodyEnd` (the `body_stream` feature).
    """

    request_id: RequestId
    status_code: int
    headers: Headers = ()
    body: bytes = b""
    processing_time_ms: int = 0
    body_manifest: BodyManifest | None = None
    body_stream: bool = False

    def __post_init__(self) -> None:
        _check_request_id(self.request_id)
        code = self.status_code
        if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
            raise ValueError(f"status_code must be an integer from 100 to 599, got {code!r}")
        object.__setattr__(self, "headers", _normalize_headers(self.headers))
        _check_body(self.body, self.body_manifest, self.body_stream)
        _check_non_negative_int(self.processing_time_ms, "processing_time_ms")


@dataclass(frozen=True, slots=True)
class BodyChunk:
    """One piece of a body announced by a `BodyManifest` (version 2).

    Attributes:
        request_id: The request whose request or response body this belongs to.
        index: The chunk's position, from 0.
        data: The chunk's bytes (never empty).
    """

    request_id: RequestId
    index: int
    data: bytes

    def __post_init__(self) -> None:
        _check_request_id(self.request_id)
        _check_non_negative_int(self.index, "index")
        if not isinstance(self.data, bytes) or not self.data:
            raise ValueError("data must be non-empty bytes: every chunk carries at least one byte")


@dataclass(frozen=True, slots=True)
class BodyEnd:
    """Closes a streamed body (version 2, `body_stream`): how many chunks it had, its length and digest.

    Attributes:
        request_id: The request whose request or response body this closes.
        count: How many `BodyChunk`s came, numbered 0 to count - 1 (0 for an empty body).
        length: The body's total length in bytes.
        sha256: The SHA-256 digest of the whole body, lower-case hex.
    """

    request_id: RequestId
    count: int
    length: int
    sha256: str

    def __post_init__(self) -> None:
        _check_request_id(self.request_id)
        _check_non_negative_int(self.count, "count")
        _check_non_negative_int(self.length, "length")
        if self.count > self.length:
            raise ValueError("count cannot exceed length: every chunk carries a byte")
        if not isinstance(self.sha256, str) or not _SHA256_HEX.fullmatch(self.sha256):
            raise ValueError(f"sha256 must be 64 lower-case hex digits, got {self.sha256!r}")


@dataclass(frozen=True, slots=True)
class BodyAck:
    """The receiver of a streamed body has passed on `length` more bytes of it (version 2, `body_stream`):
    its sender may send that many more beyond `STREAM_WINDOW_BYTES` (flow control, like HTTP/2's
    WINDOW_UPDATE).

    Attributes:
        request_id: The request whose body is acknowledged.
        length: Bytes consumed since the last acknowledgement, at least 1.
    """

    request_id: RequestId
    length: int

    def __post_init__(self) -> None:
        _check_request_id(self.request_id)
        _check_non_negative_int(self.length, "length")
        if self.length == 0:
            raise ValueError("length must be at least 1")


@dataclass(frozen=True, slots=True)
class Ping:
    """A heartbeat; a version-2 peer answers it with `Pong`."""


@dataclass(frozen=True, slots=True)
class Pong:
    """The answer to `Ping`."""


@dataclass(frozen=True, slots=True)
class ErrorMessage:
    """Something went wrong, for one request (`request_id`) or for the connection (`request_id` None)."""

    code: ErrorCode
    message: str
    request_id: RequestId | None = None

    def __post_init__(self) -> None:
        if self.code not in ERROR_CODES:
            raise ValueError(f"code must be one of {sorted(ERROR_CODES)}, got {self.code!r}")
        _check_text(self.message, "message", empty=True)
        if self.request_id is not None:
            _check_request_id(self.request_id)


TunnelMessage = (
    Ready
    | ConnectionEstablished
    | HttpRequest
    | HttpResponse
    | BodyChunk
    | BodyEnd
    | BodyAck
    | Ping
    | Pong
    | ErrorMessage
)
