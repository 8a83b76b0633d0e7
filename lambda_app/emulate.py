"""`tunnel emulate`: the Lambda handler run as AWS runs it, on loopback; starts servers and threads (I/O).

An API Gateway WebSocket API (a `websockets` server) turns connections and messages into real-shaped
`$connect`/`$default`/`$disconnect` events; an HTTP API (a uvicorn ASGI app) turns requests into payload
2.0 events and the handler's results back into HTTP; a `@connections` management API answers boto3's
`apigatewaymanagementapi` client with AWS's statuses and error shapes; DynamoDB is a moto server unless an
endpoint is given. The handler runs in a thread pool, never on the event loop, as Lambda runs it beside
the gateway. The limits are AWS's (each constant names its quota page) and can be lowered for tests.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import contextlib
import importlib
import json
import logging
import os
import random
import secrets
import socket
import string
import threading
import time
import traceback
import uuid
import weakref
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

import uvicorn
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from lambda_app.asgi import Receive, Send, read_body

__all__ = [
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
]

# "Quotas for configuring and running a WebSocket in API Gateway": frames of 32 KB, messages of 128 KB;
# a larger frame or message closes the connection with 1009 (this also holds for @connections posts).
FRAME_LIMIT: Final = 32 * 1024
MESSAGE_LIMIT: Final = 128 * 1024
# Same page: WebSocket integrations time out after 29 s.
WEBSOCKET_INTEGRATION_TIMEOUT: Final = 29.0
# "Quotas for configuring and running an HTTP API": maximum integration timeout 30 s, payload 10 MB.
HTTP_INTEGRATION_TIMEOUT: Final = 30.0
HTTP_API_PAYLOAD_LIMIT: Final = 10 * 1024 * 1024
# "Lambda quotas": 6 MB each for a synchronous invocation's request and response payloads.
LAMBDA_PAYLOAD_LIMIT: Final = 6 * 1024 * 1024

#: What Lambda passes a handler: the event as decoded JSON and a context object.
LambdaHandler = Callable[[dict[str, Any], Any], Any]

_LOGGER: Final = logging.getLogger("lambda_app.emulate")
_LOOPBACK: Final = "127.0.0.1"
_ACCOUNT: Final = "123456789012"
_REGION: Final = "us-east-1"
_FUNCTION: Final = "tunnel-emulate"
_MONTHS: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# Media types API Gateway passes as text; any other body goes base64 with isBase64Encoded.
_TEXT_TYPES: Final = ("text/", "application/json", "application/xml", "application/javascript")
_TEXT_SUFFIXES: Final = ("+json", "+xml")


# --- values ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class EmulatorConfig:
    """What the emulator listens on and which AWS limits it enforces.

    Attributes:
        host: The loopback address every server binds.
        port_ws: The WebSocket API's port (0: any free port).
        port_http: The HTTP API's port.
        port_management: The `@connections` management API's port.
        stage: The WebSocket API's stage, part of the management endpoint (``/prod/@connections/...``).
        dynamodb_endpoint: A DynamoDB API to use; None starts a moto server.
        env: Extra environment for the handler, applied last (``TUNNEL_AUTH=jwt``...).
        dispatch_race_ms: Each new connection refuses posts with GoneException for a random 0..N ms after
            `$connect` returned, as API Gateway can.
        cleanup_interval: Seconds between scheduled cleanup events; 0 turns them off.
        http_timeout: The HTTP API integration timeout (503 past it).
        websocket_timeout: The WebSocket integration timeout.
        payload_limit: The Lambda payload limit, for the request event and the response alike.
        message_limit: The WebSocket message limit, both ways.
        frame_limit: The WebSocket frame limit for frames the clients send.
        idle_timeout: Seconds without traffic after which a connection is closed with 1001.
        max_connection_duration: Seconds after which a connection is closed with 1001.
        concurrency: Handler invocations that may run at once (Lambda concurrency).
    """

    host: str = _LOOPBACK
    port_ws: int = 0
    port_http: int = 0
    port_management: int = 0
    stage: str = "prod"
    dynamodb_endpoint: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    dispatch_race_ms: int = 0
    cleanup_interval: float = 60.0
    http_timeout: float = HTTP_INTEGRATION_TIMEOUT
    websocket_timeout: float = WEBSOCKET_INTEGRATION_TIMEOUT
    payload_limit: int = LAMBDA_PAYLOAD_LIMIT
    message_limit: int = MESSAGE_LIMIT
    frame_limit: int = FRAME_LIMIT
    idle_timeout: float = 10 * 60.0
    max_connection_duration: float = 2 * 60 * 60.0
    concurrency: int = 64

    def __post_init__(self) -> None:
        if not self.stage or "/" in self.stage or self.stage.startswith("$"):
            raise ValueError(f"stage must be a plain name such as 'prod', got {self.stage!r}")
        if self.dispatch_race_ms < 0:
            raise ValueError(f"dispatch_race_ms must not be negative, got {self.dispatch_race_ms}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {self.concurrency}")
        for name in ("payload_limit", "message_limit", "frame_limit"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("http_timeout", "websocket_timeout", "idle_timeout", "max_connection_duration"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for key in self.env:
            if not key or "=" in key:
                raise ValueError(f"environment variable names must be non-empty without '=', got {key!r}")


@dataclass(frozen=True, slots=True)
class EmulatorUrls:
    """Where a started emulator answers.

    Attributes:
        websocket_url: The WebSocket API, for agents (``ws://127.0.0.1:P/``; ``/{stage}`` works too).
        http_url: The HTTP API, the public side of the tunnel.
        management_url: The `@connections` endpoint including the stage, for boto3's ``endpoint_url``.
        dynamodb_endpoint: The DynamoDB API the handler uses.
    """

    websocket_url: str
    http_url: str
    management_url: str
    dynamodb_endpoint: str


class InvocationContext:
    """The context object Lambda passes a handler, with the attributes of the Python runtime.

    Args:
        timeout: Seconds this invocation may run; `get_remaining_time_in_millis` counts down from it.
        region: The region named in the function's ARN.
    """

    def __init__(self, timeout: float, region: str = _REGION) -> None:
        self.function_name = _FUNCTION
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{region}:{_ACCOUNT}:function:{_FUNCTION}"
        self.memory_limit_in_mb = 1024
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{_FUNCTION}"
        self.log_stream_name = f"{time.strftime('%Y/%m/%d', time.gmtime())}/[$LATEST]{secrets.token_hex(16)}"
        self._deadline = time.monotonic() + timeout

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before Lambda would stop this invocation."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass(slots=True, eq=False)
class _Connection:
    """One WebSocket connection API Gateway knows: what `@connections` and the events need."""

    connection_id: str
    connected_at_ms: int
    source_ip: str
    user_agent: str
    domain_name: str
    ready_at: float  # time.monotonic(): posts before it fail with GoneException (the dispatch race)
    last_active_ms: int
    websocket: ServerConnection | None = None
    inflight: set[asyncio.Task[None]] = field(default_factory=set)


class _FunctionError(Exception):
    """The handler raised, or returned something Lambda cannot serialise."""


# --- event shapes (pure) ----------------------------------------------------------------------------------


def _request_id() -> str:
    # API Gateway's ids are 16 characters of URL-safe base64 ("Vx1AbeKDDoECF-A="): 11 random bytes.
    return base64.urlsafe_b64encode(secrets.token_bytes(11)).decode("ascii")


def _api_id() -> str:
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(10))


def _trace_id(now: float) -> str:
    return f"Root=1-{int(now):08x}-{secrets.token_hex(12)}"


def _request_time(now: float) -> str:
    # "22/Nov/2026:14:00:00 +0000", as API Gateway writes requestTime, independent of the locale.
    t = time.gmtime(now)
    clock = f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    return f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:{clock} +0000"


def _iso8601(epoch_ms: int) -> str:
    seconds, millis = divmod(epoch_ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def _is_text(content_type: str | None) -> bool:
    if not content_type:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return (
        media.startswith(_TEXT_TYPES)
        or media.endswith(_TEXT_SUFFIXES)
        or media == "application/x-www-form-urlencoded"
    )


def _single_and_multi(pairs: Sequence[tuple[str, str]]) -> tuple[dict[str, str], dict[str, list[str]]]:
    # WebSocket and payload 1.0 events carry both maps; the single one keeps the last value of a name.
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in pairs:
        single[name] = value
        multi.setdefault(name, []).append(value)
    return single, multi


def websocket_event(
    route_key: str,
    *,
    connection_id: str,
    connected_at_ms: int,
    domain_name: str,
    stage: str,
    api_id: str,
    source_ip: str,
    user_agent: str = "",
    headers: Sequence[tuple[str, str]] = (),
    query: Sequence[tuple[str, str]] = (),
    body: str | bytes | None = None,
    disconnect: tuple[int, str] | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """Build the event API Gateway sends Lambda for a WebSocket route, shaped as the fixtures are.

    Args:
        route_key: ``$connect``, ``$default`` or ``$disconnect``.
        connection_id: API Gateway's id of the connection.
        connected_at_ms: When the connection was opened, epoch milliseconds.
        domain_name: The API's domain as the client addressed it.
        stage: The API stage.
        api_id: The API's id.
        source_ip: The client's address.
        user_agent: The client's User-Agent, if it sent one.
        headers: The handshake's headers in order, original case (`$connect` only).
        query: The handshake's decoded query parameters in order (`$connect` only).
        body: A message (`$default` only): text as it is, bytes base64-encoded with isBase64Encoded.
        disconnect: The close code and reason (`$disconnect` only).
        now: Epoch seconds of the event; the clock when None.

    Returns:
        The event dict.
    """
    now = time.time() if now is None else now
    event_type = {"$connect": "CONNECT", "$disconnect": "DISCONNECT"}.get(route_key, "MESSAGE")
    request_id = _request_id()
    identity: dict[str, str] = {"sourceIp": source_ip}
    if user_agent and event_type != "MESSAGE":
        identity["userAgent"] = user_agent
    context: dict[str, Any] = {
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": request_id,
        "requestTime": _request_time(now),
        "messageDirection": "IN",
        "stage": stage,
        "connectedAt": connected_at_ms,
        "requestTimeEpoch": int(now * 1000),
        "identity": identity,
        "requestId": request_id,
        "domainName": domain_name,
        "connectionId": connection_id,
        "apiId": api_id,
    }
    event: dict[str, Any] = {}
    if event_type == "CONNECT":
        single, multi = _single_and_multi(headers)
        event["headers"] = single
        event["multiValueHeaders"] = multi
        if query:
            single_query, multi_query = _single_and_multi(query)
            event["queryStringParameters"] = single_query
            event["multiValueQueryStringParameters"] = multi_query
    elif event_type == "DISCONNECT":
        # API Gateway sends these four on $disconnect, the last three empty (see the fixtures).
        single, multi = _single_and_multi(
            [("Host", domain_name), ("x-api-key", ""), ("X-Forwarded-For", ""), ("x-restapi", "")]
        )
        event["headers"] = single
        event["multiValueHeaders"] = multi
        code, reason = disconnect or (1005, "")
        context["disconnectStatusCode"] = code
        context["disconnectReason"] = reason
    else:
        context["messageId"] = _request_id()
    event["requestContext"] = context
    if isinstance(body, bytes):
        event["body"] = base64.b64encode(body).decode("ascii")
        event["isBase64Encoded"] = True
    else:
        if body is not None:
            event["body"] = body
        event["isBase64Encoded"] = False
    return event


def http_api_event(
    *,
    method: str,
    raw_path: str,
    path: str,
    raw_query_string: str,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    source_ip: str,
    port: int,
    api_id: str,
    protocol: str = "HTTP/1.1",
    now: float | None = None,
) -> dict[str, Any]:
    """Build an HTTP API payload format 2.0 event, as the `$default` route of the `$default` stage sends it.

    Follows "Create AWS Lambda proxy integrations for HTTP APIs": the raw query string as received, repeated
    headers joined with commas, the Cookie header moved to `cookies`, decoded query parameters joined with
    commas, and a body that is not text sent base64-encoded.

    Args:
        method: The request method.
        raw_path: The path as received, percent-encoding kept.
        path: The decoded path.
        raw_query_string: The query without ``?``, as received.
        headers: Header pairs in order, as received.
        body: The body bytes.
        source_ip: The client's address.
        port: The port the client connected to.
        api_id: The API's id.
        protocol: The HTTP version line.
        now: Epoch seconds of the request; the clock when None.

    Returns:
        The event dict.
    """
    now = time.time() if now is None else now
    joined: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        key = name.lower()
        if key == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
            continue
        joined[key] = f"{joined[key]},{value}" if key in joined else value
    # What API Gateway adds on its way to the integration.
    forwarded = joined.get("x-forwarded-for")
    joined["x-forwarded-for"] = f"{forwarded}, {source_ip}" if forwarded else source_ip
    joined["x-forwarded-port"] = str(port)
    joined["x-forwarded-proto"] = "http"
    joined.setdefault("x-amzn-trace-id", _trace_id(now))
    domain = joined.get("host", f"{_LOOPBACK}:{port}")
    request_id = _request_id()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": raw_query_string,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = joined
    if raw_query_string:
        params: dict[str, str] = {}
        for name, value in parse_qsl(raw_query_string, keep_blank_values=True):
            params[name] = f"{params[name]},{value}" if name in params else value
        event["queryStringParameters"] = params
    event["requestContext"] = {
        "accountId": _ACCOUNT,
        "apiId": api_id,
        "domainName": domain,
        "domainPrefix": domain.split(".", 1)[0],
        "http": {
            "method": method.upper(),
            "path": path,
            "protocol": protocol,
            "sourceIp": source_ip,
            "userAgent": joined.get("user-agent", ""),
        },
        "requestId": request_id,
        "routeKey": "$default",
        "stage": "$default",
        "time": _request_time(now),
        "timeEpoch": int(now * 1000),
    }
    if body:
        try:
            text = body.decode("utf-8") if _is_text(joined.get("content-type")) else None
        except UnicodeDecodeError:
            text = None
        event["body"] = text if text is not None else base64.b64encode(body).decode("ascii")
        event["isBase64Encoded"] = text is None
    else:
        event["isBase64Encoded"] = False
    return event


def scheduled_event(*, region: str = _REGION, now: float | None = None) -> dict[str, Any]:
    """Build the event an EventBridge schedule rule sends with its default input.

    Args:
        region: The region in the event and the rule's ARN.
        now: Epoch seconds the schedule fired at; the clock when None.

    Returns:
        The event dict.
    """
    now = time.time() if now is None else now
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": _ACCOUNT,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        "region": region,
        "resources": [f"arn:aws:events:{region}:{_ACCOUNT}:rule/tunnel-cleanup"],
        "detail": {},
    }


def _header_text(name: str, value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    raise ValueError(f"header {name!r} is not a string ({type(value).__name__})")


def translate_http_result(result: object) -> tuple[int, list[tuple[str, str]], bytes]:
    """Turn a handler's result into the HTTP response an HTTP API (payload 2.0) sends the client.

    Follows "Lambda function response for format 2.0": a dict with `statusCode` is structured (headers,
    multiValueHeaders, cookies as one Set-Cookie line each, body, isBase64Encoded); anything else is JSON
    that API Gateway returns with status 200 and ``content-type: application/json``.

    Args:
        result: What the handler returned, after Lambda's JSON round trip.

    Returns:
        Status, header pairs (lower-case names) and body bytes.

    Raises:
        ValueError: The result is malformed; API Gateway answers such a result with a 500.
    """
    if not isinstance(result, dict) or "statusCode" not in result:
        body = result if isinstance(result, str) else json.dumps(result)
        return 200, [("content-type", "application/json")], body.encode("utf-8")
    status = result["statusCode"]
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise ValueError(f"statusCode must be an integer from 100 to 599, got {status!r}")
    headers: list[tuple[str, str]] = []
    single = result.get("headers") or {}
    multi = result.get("multiValueHeaders") or {}
    cookies = result.get("cookies") or []
    if not isinstance(single, dict) or not isinstance(multi, dict) or not isinstance(cookies, list):
        raise ValueError("headers and multiValueHeaders must be objects, cookies a list")
    for name, value in single.items():
        headers.append((name.lower(), _header_text(name, value)))
    for name, values in multi.items():
        if not isinstance(values, list):
            raise ValueError(f"multiValueHeaders[{name!r}] is not a list")
        headers.extend((name.lower(), _header_text(name, value)) for value in values)
    for cookie in cookies:
        headers.append(("set-cookie", _header_text("set-cookie", cookie)))
    # The length is the one of the body sent; framing headers from the function do not apply.
    headers = [(n, v) for n, v in headers if n not in ("content-length", "transfer-encoding", "connection")]
    raw_body = result.get("body")
    if raw_body is None:
        data = b""
    elif not isinstance(raw_body, str):
        raise ValueError(f"body must be a string, got {type(raw_body).__name__}")
    elif result.get("isBase64Encoded") is True:
        try:
            data = base64.b64decode(raw_body, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("body is marked isBase64Encoded but is not valid base64") from None
    else:
        data = raw_body.encode("utf-8")
    if not any(name == "content-type" for name, _ in headers) and data:
        headers.append(("content-type", "text/plain; charset=utf-8"))
    return status, headers, data


def _split_message(data: str | bytes, limit: int) -> str | bytes | list[str] | list[bytes]:
    """One message as it goes to a client: whole, or as fragments of at most `limit` bytes each."""
    if isinstance(data, bytes):
        if len(data) <= limit:
            return data
        return [data[i : i + limit] for i in range(0, len(data), limit)]
    encoded = data.encode("utf-8")
    if len(encoded) <= limit:
        return data
    parts: list[str] = []
    start = 0
    while start < len(encoded):
        end = min(start + limit, len(encoded))
        while end < len(encoded) and (encoded[end] & 0xC0) == 0x80:  # never cut a UTF-8 sequence
            end -= 1
        parts.append(encoded[start:end].decode("utf-8"))
        start = end
    return parts


# --- ASGI plumbing ----------------------------------------------------------------------------------------

_Scope = dict[str, Any]


async def _respond(send: Send, status: int, headers: Sequence[tuple[str, str]], body: bytes) -> None:
    raw = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers]
    raw.append((b"content-length", str(len(body)).encode("ascii")))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def _respond_json(
    send: Send, status: int, document: Mapping[str, Any], extra: Sequence[tuple[str, str]] = ()
) -> None:
    body = json.dumps(document).encode("utf-8")
    await _respond(send, status, [("content-type", "application/json"), *extra], body)


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals alone: the emulator runs three servers in one process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # see agent.serve.bind
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.listen(512)
    sock.setblocking(False)
    return sock


# --- the emulator -----------------------------------------------------------------------------------------


class Emulator:
    """API Gateway (WebSocket API, HTTP API, `@connections`), Lambda and DynamoDB on loopback.

    Use ``async with Emulator(config) as emulator:`` in a running loop, or `EmulatorThread` from
    synchronous code. Starting sets the handler's environment in `os.environ` (restored on stop), so one
    emulator runs per process at a time.

    Args:
        config: Ports, limits and knobs.
        handler: The Lambda handler; None imports ``lambda_app.handler.handler`` once the environment is set
            (and calls its ``reset_runtime()`` before and after, when it has one).
        rng: Draws the dispatch race window, a fraction of `EmulatorConfig.dispatch_race_ms` in [0, 1].
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        handler: LambdaHandler | None = None,
        *,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.config = config or EmulatorConfig()
        self._handler = handler
        self._rng = rng
        self._handler_module: Any = None
        self._api_id = _api_id()
        self._ws_api_id = _api_id()
        self._connections: dict[str, _Connection] = {}
        self._handshaking: weakref.WeakKeyDictionary[ServerConnection, _Connection] = (
            weakref.WeakKeyDictionary()
        )
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._moto: Any = None
        self._ws_server: Server | None = None
        self._uvicorn: list[tuple[_Server, asyncio.Task[None]]] = []
        self._sockets: list[socket.socket] = []
        self._background: set[asyncio.Task[None]] = set()
        self._saved_env: dict[str, str | None] = {}
        self._urls: EmulatorUrls | None = None
        self._stopping = False
        self._stats = {"posts": 0, "refused_posts": 0}

    @property
    def stats(self) -> dict[str, int]:
        """What `@connections` did since the emulator started, as a copy.

        ``posts`` counts the posts delivered to a connection, ``refused_posts`` those refused with
        GoneException inside a connection's dispatch race window (`EmulatorConfig.dispatch_race_ms`).
        """
        return dict(self._stats)

    @property
    def urls(self) -> EmulatorUrls:
        """Where the started emulator answers."""
        if self._urls is None:
            raise RuntimeError("the emulator is not running")
        return self._urls

    @property
    def environment(self) -> dict[str, str]:
        """The variables the handler sees, as set on start (``--env`` included)."""
        urls = self.urls
        env = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": _REGION,
            "AWS_REGION": _REGION,
            "AWS_LAMBDA_FUNCTION_NAME": _FUNCTION,
            "TUNNEL_AUTH": "none",
            "TUNNEL_DYNAMODB_ENDPOINT": urls.dynamodb_endpoint,
            "TUNNEL_MANAGEMENT_ENDPOINT": urls.management_url,
            "TUNNEL_PUBLIC_URL": urls.http_url.rstrip("/"),
            "TUNNEL_CONNECTIONS_TABLE": "tunnel-connections",
            "TUNNEL_PENDING_TABLE": "tunnel-pending",
        }
        env.update(self.config.env)
        return env

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> EmulatorUrls:
        """Start DynamoDB, set the environment, create the tables and open the three endpoints.

        Returns:
            Where the emulator answers.

        Raises:
            OSError: A port could not be bound.
        """
        config = self.config
        self._stopping = False
        self._stats = dict.fromkeys(self._stats, 0)
        try:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=config.concurrency, thread_name_prefix="lambda"
            )
            dynamodb: str = config.dynamodb_endpoint or ""
            if not dynamodb:
                dynamodb = await asyncio.to_thread(self._start_moto)
            ws_sock = _bind(config.host, config.port_ws)
            self._sockets.append(ws_sock)
            http_sock = _bind(config.host, config.port_http)
            self._sockets.append(http_sock)
            management_sock = _bind(config.host, config.port_management)
            self._sockets.append(management_sock)
            host = config.host
            self._urls = EmulatorUrls(
                websocket_url=f"ws://{host}:{ws_sock.getsockname()[1]}/",
                http_url=f"http://{host}:{http_sock.getsockname()[1]}/",
                management_url=f"http://{host}:{management_sock.getsockname()[1]}/{config.stage}",
                dynamodb_endpoint=dynamodb,
            )
            environment = self.environment
            for key, value in environment.items():
                self._saved_env.setdefault(key, os.environ.get(key))
                os.environ[key] = value
            await asyncio.to_thread(self._create_tables, environment)
            if self._handler is None:
                self._handler_module = importlib.import_module("lambda_app.handler")
                self._reset_runtime()
                self._handler = self._handler_module.handler
            self._ws_server = await serve(
                self._on_session,
                sock=ws_sock,
                process_request=self._on_connect,
                # Messages and frames over API Gateway's limits close the connection with 1009.
                max_size=(config.message_limit, config.frame_limit),
                compression=None,
                ping_interval=None,
                # $connect runs inside the opening handshake and may take the whole integration timeout.
                open_timeout=config.websocket_timeout + 5,
                server_header=None,
            )
            for app, sock in ((self._http_app, http_sock), (self._management_app, management_sock)):
                server = _Server(
                    uvicorn.Config(
                        app,
                        log_level="warning",
                        lifespan="off",
                        interface="asgi3",
                        ws="none",
                        server_header=False,
                        access_log=False,
                        proxy_headers=False,
                    )
                )
                self._uvicorn.append((server, asyncio.create_task(server.serve(sockets=[sock]))))
            while not all(server.started for server, _ in self._uvicorn):
                for _, task in self._uvicorn:
                    if task.done():
                        task.result()
                        raise OSError("an HTTP server stopped while starting")
                await asyncio.sleep(0.01)
            if config.cleanup_interval > 0:
                self._spawn(self._cleanup_loop())
        except BaseException:
            await self.stop()
            raise
        return self.urls

    async def stop(self) -> None:
        """Close every connection (each gets its `$disconnect`), stop everything, restore the environment."""
        # Python 3.11's wait_for() can swallow a cancellation that races with its result, so loops also
        # check this flag rather than rely on cancel() alone.
        self._stopping = True
        for task in list(self._background):
            task.cancel()
        if self._ws_server is not None:
            self._ws_server.close()
            await _bounded(self._ws_server.wait_closed(), "closing the WebSocket API")
            self._ws_server = None
        for server, _ in self._uvicorn:
            server.should_exit = True
        for _, task in self._uvicorn:
            await _bounded(task, "stopping an HTTP server")
        self._uvicorn = []
        if self._background:
            await _bounded(asyncio.gather(*self._background, return_exceptions=True), "background tasks")
        for sock in self._sockets:
            sock.close()
        self._sockets = []
        if self._pool is not None:
            # A handler still running past its timeout is left to finish, as Lambda would.
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        if self._moto is not None:
            await asyncio.to_thread(self._moto.stop)
            self._moto = None
        self._reset_runtime()
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env = {}
        self._connections.clear()
        self._urls = None

    async def serve_forever(self) -> None:
        """Run until cancelled (Ctrl-C in `tunnel emulate`)."""
        await asyncio.Event().wait()

    # --- Lambda ---

    def _start_moto(self) -> str:
        # moto serves through werkzeug, which logs every request; the handler's own log lines say enough.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._moto = _SerializedMotoServer(self.config.host)
        self._moto.start()
        host, port = self._moto.get_host_and_port()
        return f"http://{host}:{port}"

    def _create_tables(self, environment: Mapping[str, str]) -> None:
        import boto3

        from lambda_app.store_dynamodb import create_tables

        client = boto3.client(
            "dynamodb",
            endpoint_url=environment["TUNNEL_DYNAMODB_ENDPOINT"],
            region_name=environment.get("AWS_REGION", _REGION),
            aws_access_key_id=environment["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=environment["AWS_SECRET_ACCESS_KEY"],
        )
        try:
            names = (environment["TUNNEL_CONNECTIONS_TABLE"], environment["TUNNEL_PENDING_TABLE"])
            existing = set(client.list_tables()["TableNames"])
            if not set(names) <= existing:  # a --dynamodb-endpoint may hold them from an earlier run
                create_tables(client, *names)
        finally:
            client.close()

    def _reset_runtime(self) -> None:
        reset = getattr(self._handler_module, "reset_runtime", None)
        if callable(reset):
            reset()

    def _call(self, payload: str, timeout: float) -> str:
        """Run the handler once, in a pool thread, with Lambda's JSON round trip both ways."""
        handler = self._handler
        if handler is None:  # pragma: no cover - set before any server starts
            raise _FunctionError("no handler")
        try:
            result = handler(json.loads(payload), InvocationContext(timeout))
            return json.dumps(result)
        except Exception as exc:
            # Lambda prints an unhandled error to the function's log and reports a function error.
            _LOGGER.error("handler failed: %s", "".join(traceback.format_exception(exc)).rstrip())
            raise _FunctionError(str(exc)) from exc

    async def _invoke(self, event: Mapping[str, Any], timeout: float) -> str:
        """Invoke the handler in the pool; its JSON result, or TimeoutError / _FunctionError."""
        if self._pool is None:
            raise _FunctionError("the emulator is stopping")
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool, self._call, json.dumps(event), timeout)
        return await asyncio.wait_for(future, timeout)

    def _spawn(self, coroutine: Awaitable[None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _cleanup_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.config.cleanup_interval)
            with contextlib.suppress(TimeoutError, _FunctionError):
                await self._invoke(scheduled_event(), self.config.http_timeout)

    # --- WebSocket API ---

    async def _on_connect(self, connection: ServerConnection, request: Request) -> Response | None:
        config = self.config
        parts = urlsplit(request.path)
        if parts.path.rstrip("/") not in ("", f"/{config.stage}"):
            return connection.respond(HTTPStatus.FORBIDDEN, "Forbidden\n")
        now = time.time()
        peer = connection.remote_address
        source_ip = str(peer[0]) if peer else config.host
        local = connection.local_address
        port = int(local[1]) if local else 0
        host = request.headers.get("Host") or f"{config.host}:{port}"
        headers = [*request.headers.raw_items()]
        headers += [
            ("X-Amzn-Trace-Id", _trace_id(now)),
            ("X-Forwarded-For", source_ip),
            ("X-Forwarded-Port", str(port)),
            ("X-Forwarded-Proto", "http"),
        ]
        record = _Connection(
            connection_id=_request_id(),
            connected_at_ms=int(now * 1000),
            source_ip=source_ip,
            user_agent=request.headers.get("User-Agent", ""),
            domain_name=host,
            ready_at=0.0,
            last_active_ms=int(now * 1000),
        )
        event = websocket_event(
            "$connect",
            connection_id=record.connection_id,
            connected_at_ms=record.connected_at_ms,
            domain_name=host,
            stage=config.stage,
            api_id=self._ws_api_id,
            source_ip=source_ip,
            user_agent=record.user_agent,
            headers=headers,
            query=parse_qsl(parts.query, keep_blank_values=True),
            now=now,
        )
        try:
            result = json.loads(await self._invoke(event, config.websocket_timeout))
        except TimeoutError:
            return connection.respond(HTTPStatus.GATEWAY_TIMEOUT, "Endpoint request timed out\n")
        except _FunctionError:
            return connection.respond(HTTPStatus.INTERNAL_SERVER_ERROR, "Internal server error\n")
        status = result.get("statusCode", 200) if isinstance(result, dict) else 200
        if not isinstance(status, int) or not 200 <= status <= 299:
            code = status if isinstance(status, int) and 100 <= status <= 599 else 500
            try:
                reply = HTTPStatus(code)
            except ValueError:  # a code http.HTTPStatus does not name
                reply = HTTPStatus.INTERNAL_SERVER_ERROR
            return connection.respond(reply, f"{reply.phrase}\n")
        # The dispatch race: posts fail with GoneException for a while after $connect returned.
        record.ready_at = time.monotonic() + self._rng() * config.dispatch_race_ms / 1000
        self._handshaking[connection] = record
        return None

    async def _on_session(self, connection: ServerConnection) -> None:
        record = self._handshaking.pop(connection, None)
        if record is None:  # pragma: no cover - process_request registers every accepted connection
            return
        record.websocket = connection
        self._connections[record.connection_id] = record
        config = self.config
        opened = time.monotonic()
        try:
            while True:
                idle_left = config.idle_timeout - (time.time() - record.last_active_ms / 1000)
                left = min(idle_left, config.max_connection_duration - (time.monotonic() - opened))
                try:
                    message = await asyncio.wait_for(connection.recv(), max(left, 0.0))
                except TimeoutError:
                    if config.idle_timeout - (time.time() - record.last_active_ms / 1000) > 0 and (
                        time.monotonic() - opened < config.max_connection_duration
                    ):
                        continue  # a post kept the connection active meanwhile
                    await connection.close(1001, "Going away")
                    break
                record.last_active_ms = int(time.time() * 1000)
                event = websocket_event(
                    "$default",
                    connection_id=record.connection_id,
                    connected_at_ms=record.connected_at_ms,
                    domain_name=record.domain_name,
                    stage=config.stage,
                    api_id=self._ws_api_id,
                    source_ip=record.source_ip,
                    body=message,
                )
                # API Gateway invokes the integration for each message without waiting for the last one.
                task = self._spawn(self._invoke_quietly(event, config.websocket_timeout))
                record.inflight.add(task)
                task.add_done_callback(record.inflight.discard)
        except ConnectionClosed:
            pass
        finally:
            self._connections.pop(record.connection_id, None)
        if record.inflight:
            await asyncio.gather(*record.inflight, return_exceptions=True)
        event = websocket_event(
            "$disconnect",
            connection_id=record.connection_id,
            connected_at_ms=record.connected_at_ms,
            domain_name=record.domain_name,
            stage=config.stage,
            api_id=self._ws_api_id,
            source_ip=record.source_ip,
            user_agent=record.user_agent,
            disconnect=(connection.close_code or 1006, connection.close_reason or ""),
        )
        await self._invoke_quietly(event, config.websocket_timeout)

    async def _invoke_quietly(self, event: Mapping[str, Any], timeout: float) -> None:
        # A WebSocket route's result and errors only reach API Gateway's logs, never the client.
        try:
            await self._invoke(event, timeout)
        except TimeoutError:
            _LOGGER.warning("%s timed out after %g s", event["requestContext"]["routeKey"], timeout)
        except _FunctionError:
            pass

    # --- HTTP API ---

    async def _http_app(self, scope: _Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        config = self.config
        request_id = _request_id()
        extra = [("apigw-requestid", request_id)]
        body = await read_body(receive, max(HTTP_API_PAYLOAD_LIMIT, config.payload_limit))
        if body is None:
            await _respond_json(send, 413, {"message": "Request Entity Too Large"}, extra)
            return
        client = scope.get("client") or (config.host, 0)
        server = scope.get("server") or (config.host, 0)
        event = http_api_event(
            method=scope["method"],
            raw_path=scope.get("raw_path", scope["path"].encode("utf-8")).decode("latin-1"),
            path=scope["path"],
            raw_query_string=scope.get("query_string", b"").decode("latin-1"),
            headers=[(n.decode("latin-1"), v.decode("latin-1")) for n, v in scope["headers"]],
            body=body,
            source_ip=str(client[0]),
            port=int(server[1]),
            api_id=self._api_id,
            protocol=f"HTTP/{scope.get('http_version', '1.1')}",
        )
        event["requestContext"]["requestId"] = request_id
        if len(json.dumps(event).encode("utf-8")) > config.payload_limit:
            # Lambda refuses an invocation payload over 6 MB; API Gateway answers 413.
            await _respond_json(send, 413, {"message": "Request Entity Too Large"}, extra)
            return
        try:
            result = await self._invoke(event, config.http_timeout)
        except TimeoutError:
            # HTTP APIs answer an integration timeout with 503 and this body (observed; AWS's quota page
            # only gives the 30 s, and REST APIs answer 504 instead).
            await _respond_json(send, 503, {"message": "Service Unavailable"}, extra)
            return
        except _FunctionError:
            await _respond_json(send, 500, {"message": "Internal Server Error"}, extra)
            return
        if len(result.encode("utf-8")) > config.payload_limit:
            _LOGGER.error("response payload of %d bytes is over the Lambda limit", len(result))
            await _respond_json(send, 500, {"message": "Internal Server Error"}, extra)
            return
        try:
            status, headers, data = translate_http_result(json.loads(result))
        except ValueError as exc:
            _LOGGER.error("malformed Lambda response: %s", exc)
            await _respond_json(send, 500, {"message": "Internal Server Error"}, extra)
            return
        await _respond(send, status, [*headers, *extra], b"" if scope["method"] == "HEAD" else data)

    # --- @connections ---

    async def _management_app(self, scope: _Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        parts = scope["path"].split("/")
        method = scope["method"]
        if (
            len(parts) != 4
            or parts[1] != self.config.stage
            or parts[2] != "@connections"
            or not parts[3]
            or method not in ("POST", "GET", "DELETE")
        ):
            await _error(send, 403, "ForbiddenException", "Forbidden")
            return
        body = await read_body(receive, self.config.message_limit)
        record = self._connections.get(parts[3])
        if record is None or record.websocket is None:
            await _error(send, 410, "GoneException", None)
            return
        if method == "GET":
            await _respond_json(
                send,
                200,
                {
                    "connectedAt": _iso8601(record.connected_at_ms),
                    "identity": {"sourceIp": record.source_ip, "userAgent": record.user_agent},
                    "lastActiveAt": _iso8601(record.last_active_ms),
                },
            )
            return
        if method == "DELETE":
            self._spawn(record.websocket.close(1000, ""))
            await _respond(send, 204, [], b"")
            return
        if time.monotonic() < record.ready_at:
            self._stats["refused_posts"] += 1
            await _error(send, 410, "GoneException", None)
            return
        if body is None:
            await _error(send, 413, "PayloadTooLargeException", "Message too long")
            return
        try:
            data: str | bytes = body.decode("utf-8")
        except UnicodeDecodeError:
            data = body
        try:
            await record.websocket.send(_split_message(data, self.config.frame_limit))
        except ConnectionClosed:
            await _error(send, 410, "GoneException", None)
            return
        record.last_active_ms = int(time.time() * 1000)
        self._stats["posts"] += 1
        await _respond(send, 200, [("content-type", "application/json")], b"")


async def _bounded(awaitable: Awaitable[Any], what: str, seconds: float = 10.0) -> None:
    """Await a shutdown step, but never for ever: a stuck step is logged and left behind."""
    try:
        await asyncio.wait_for(awaitable, seconds)
    except TimeoutError:
        _LOGGER.warning("%s took over %g s; going on", what, seconds)
    except (Exception, asyncio.CancelledError):
        _LOGGER.debug("%s ended with an error", what, exc_info=True)


async def _error(send: Send, status: int, error_type: str, message: str | None) -> None:
    # restJson errors: botocore takes the code from x-amzn-ErrorType and the message from the body.
    await _respond_json(
        send,
        status,
        {"message": message},
        [("x-amzn-errortype", error_type), ("x-amzn-requestid", str(uuid.uuid4()))],
    )


class EmulatorThread:
    """Runs an `Emulator` on its own event loop in a background thread, for synchronous code and tests.

    ``with EmulatorThread(Emulator(config, handler)) as emulator:`` starts it and stops it on exit, even
    when the block raises.

    Args:
        emulator: The emulator to run.
        start_timeout: Seconds to wait for it to start or stop.
    """

    def __init__(self, emulator: Emulator, *, start_timeout: float = 60.0) -> None:
        self.emulator = emulator
        self._timeout = start_timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="emulator", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def __enter__(self) -> Emulator:
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.emulator.start(), self._loop).result(self._timeout)
        except BaseException:
            self._shutdown()
            raise
        return self.emulator

    def __exit__(self, *exc_info: object) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.emulator.stop(), self._loop).result(self._timeout)
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        async def finish() -> None:
            await self._loop.shutdown_asyncgens()
            await self._loop.shutdown_default_executor()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(finish(), self._loop).result(self._timeout)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(self._timeout)
        self._loop.close()


class _SerializedMotoServer:
    """A moto server in a thread, on a free port of `host`, that handles one request at a time.

    moto's DynamoDB is not safe for concurrent requests: a `TransactWriteItems` racing another write can
    fail with "dictionary changed size during iteration", which comes back as a cancelled transaction (a
    reason of `RuntimeError`, which no retry covers) and loses an agent's chunk. DynamoDB itself has no
    such failure, so the emulator serialises moto's requests (each takes a millisecond or two). Built
    from the parts of `moto.server.ThreadedMotoServer`, with a lock around the application.
    """

    def __init__(self, host: str) -> None:
        # The dev extra; only needed without --dynamodb-endpoint.
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        app = DomainDispatcherApplication(create_backend_app)
        lock = threading.Lock()

        def one_at_a_time(environ: Any, start_response: Any) -> list[bytes]:
            with lock:
                return list(app(environ, start_response))

        self._server = make_server(host, 0, one_at_a_time, threaded=True, request_handler=MotoRequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def get_host_and_port(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join()
        self._server.server_close()
