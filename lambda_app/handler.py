"""The AWS Lambda entry point: `handler(event, context)` parses the event, calls the gateway, maps errors.

The runtime (settings, boto3 clients, store, transport, authenticator, `Gateway`) is built once per
container, on the first invocation, and reused: Lambda keeps module state between invocations of a warm
container. Building it reads the environment (through `load_settings`) and creates boto3 clients; the
handler itself performs I/O only through the gateway's store and transport.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

from lambda_app.app import Gateway, GatewayConfig, PublicRequest, error_page
from lambda_app.auth import Authenticator, AuthError, build_authenticator
from lambda_app.events import (
    BadEvent,
    HttpEvent,
    PayloadVersion,
    ScheduledEvent,
    UnknownEvent,
    WebSocketEvent,
    http_response,
    parse_event,
    websocket_response,
)
from lambda_app.logs import configure_logging, request_context
from lambda_app.settings import Settings, load_settings
from lambda_app.store import Store
from lambda_app.store_dynamodb import DynamoDBStore
from transport.apigateway import APIGatewayTransport, ManagementApiClient, management_endpoint
from transport.errors import SendFailed
from transport.messages import ConnectionId
from transport.retry import RetryPolicy

if TYPE_CHECKING:
    from mypy_boto3_apigatewaymanagementapi import ApiGatewayManagementApiClient
    from mypy_boto3_dynamodb import DynamoDBClient

__all__ = [
    "MAX_RESPONSE_PAYLOAD_BYTES",
    "LambdaContext",
    "Runtime",
    "build_runtime",
    "current_runtime",
    "handler",
    "reset_runtime",
]

_log = logging.getLogger("lambda_app.handler")

#: Lambda's synchronous invocation response payload quota, 6 MB, measured on the serialised JSON
#: (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html). A bigger answer makes the
#: invocation fail, so the handler replaces it with a 502 page that says why.
MAX_RESPONSE_PAYLOAD_BYTES: Final = 6 * 1024 * 1024
# The gateway also needs a moment after its wait to answer; below this the 504 page may never leave.
_ANSWER_MARGIN_MS: Final = 1000


class LambdaContext(Protocol):
    """The part of the Lambda context object the handler uses."""

    @property
    def aws_request_id(self) -> str:
        """The invocation's request id, as in the Lambda logs."""
        ...

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before Lambda stops the invocation."""
        ...


class _ManagementTransport:
    """A `Transport` that posts through `APIGatewayTransport` to the WebSocket API's `@connections`
    endpoint, which is fixed by the settings (or an injected client) or learnt from WebSocket events.

    HTTP API events do not name the WebSocket API, so without a fixed endpoint only a container that has
    seen a WebSocket event could post; the handler refuses HTTP events then (see `fixed`).
    """

    def __init__(
        self,
        *,
        fixed: APIGatewayTransport | None,
        make_transport: Callable[[str], APIGatewayTransport],
    ) -> None:
        self._fixed = fixed
        self._make_transport = make_transport
        self._learnt: dict[str, APIGatewayTransport] = {}
        self._current = fixed

    @property
    def fixed(self) -> bool:
        """Whether the endpoint is known without a WebSocket event (required for HTTP events)."""
        return self._fixed is not None

    @property
    def current(self) -> APIGatewayTransport | None:
        """The transport sends go through now, if an endpoint is known."""
        return self._current

    def learn(self, domain_name: str, stage: str) -> None:
        """Use the endpoint of the WebSocket API an event came from, unless one is fixed."""
        if self._fixed is not None:
            return
        endpoint = management_endpoint(domain_name, stage)
        transport = self._learnt.get(endpoint)
        if transport is None:  # one boto3 client per endpoint and container
            transport = self._learnt[endpoint] = self._make_transport(endpoint)
        self._current = transport

    def send(
        self, connection_id: ConnectionId, frames: Sequence[str], *, connected_at: float | None = None
    ) -> None:
        """See `Transport.send`."""
        if self._current is None:
            raise SendFailed(
                "no @connections endpoint is known: set TUNNEL_MANAGEMENT_ENDPOINT",
                connection_id=connection_id,
                attempts=0,
                error_code="NoManagementEndpoint",
            )
        self._current.send(connection_id, frames, connected_at=connected_at)

    def close(self, connection_id: ConnectionId) -> None:
        """See `Transport.close`."""
        if self._current is not None:
            self._current.close(connection_id)


@dataclass(frozen=True, slots=True)
class Runtime:
    """What one container builds once and every invocation uses.

    Attributes:
        settings: The checked settings.
        gateway: The gateway logic over the store and the transport.
        authenticator: Checks agents on `$connect`.
        transport: Posts to agents; knows (or learns) the `@connections` endpoint.
        max_response_bytes: The largest serialised HTTP response the handler returns.
    """

    settings: Settings
    gateway: Gateway
    authenticator: Authenticator
    transport: _ManagementTransport
    max_response_bytes: int = MAX_RESPONSE_PAYLOAD_BYTES


def _dynamodb_client(settings: Settings) -> DynamoDBClient:
    import boto3  # the `aws` extra, needed only when no store or client is injected
    from botocore.config import Config

    config = Config(retries={"mode": "standard"}, connect_timeout=2, read_timeout=5)
    return boto3.client(
        "dynamodb", endpoint_url=settings.dynamodb_endpoint, region_name=settings.region, config=config
    )


def _management_client(settings: Settings, endpoint: str) -> ApiGatewayManagementApiClient:
    import boto3
    from botocore.config import Config

    # APIGatewayTransport retries by its own policy (the dispatch race): botocore must not retry as well.
    config = Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=2, read_timeout=5)
    return boto3.client(
        "apigatewaymanagementapi", endpoint_url=endpoint, region_name=settings.region, config=config
    )


def _gateway_config(settings: Settings) -> GatewayConfig:
    if settings.public_url is None:
        raise ValueError("TUNNEL_PUBLIC_URL is required: agents are told their public URLs from it")
    try:
        return GatewayConfig(
            public_url=settings.public_url,
            host_domain=settings.domain,
            max_body_bytes=settings.body_limit,
            response_timeout=settings.response_timeout,
            connection_ttl=settings.connection_ttl,
            pending_ttl=settings.request_ttl,
            resume_window=settings.resume_window,
            resume_secret=None if settings.resume_secret is None else settings.resume_secret.encode(),
        )
    except ValueError as exc:
        # GatewayConfig takes an origin only: a stage path ("/prod") in the URL is not supported yet.
        raise ValueError(f"TUNNEL_PUBLIC_URL is not usable: {exc}") from None


_lock = threading.RLock()
_runtime: Runtime | None = None


def build_runtime(
    settings: Settings,
    *,
    dynamodb_client: DynamoDBClient | None = None,
    management_client: ManagementApiClient | None = None,
    store: Store | None = None,
    authenticator: Authenticator | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    max_response_bytes: int = MAX_RESPONSE_PAYLOAD_BYTES,
) -> Runtime:
    """Build the container's runtime from settings and install it as the one `handler` uses.

    Configures JSON logging at the settings' level. boto3 clients are created here, once, unless given:
    DynamoDB at `settings.dynamodb_endpoint` (or the region's), the management API at
    `settings.management_endpoint`, or later, per endpoint, from the first WebSocket event.

    Args:
        settings: The gateway's settings.
        dynamodb_client: A boto3 ``dynamodb`` client for the store (ignored when `store` is given).
        management_client: An ``apigatewaymanagementapi`` client (or a fake one) for every send; it fixes
            the endpoint, so HTTP events work without `settings.management_endpoint`.
        store: The store to use instead of DynamoDB (a `MemoryStore` in tests and demos).
        authenticator: Replaces the one the settings describe.
        clock: Epoch seconds, for the gateway, the store and the transport.
        sleep: Waits between polls and send retries.
        max_response_bytes: The largest serialised HTTP response; Lambda's 6 MB by default.

    Returns:
        The installed runtime.

    Raises:
        ValueError: The settings cannot be used (the message names the variable).
    """
    configure_logging(settings.log_level)
    config = _gateway_config(settings)
    if store is None:
        store = DynamoDBStore(
            dynamodb_client or _dynamodb_client(settings),
            connections_table=settings.connections_table,
            pending_table=settings.pending_table,
            clock=clock,
            sleep=sleep,
        )
    policy = RetryPolicy(gone_retry_age=settings.dispatch_race_age)

    def wrap(client: ManagementApiClient) -> APIGatewayTransport:
        return APIGatewayTransport(client, policy=policy, sleep=sleep, now=clock)

    def make_transport(endpoint: str) -> APIGatewayTransport:
        return wrap(_management_client(settings, endpoint))

    fixed: APIGatewayTransport | None = None
    if management_client is not None:
        fixed = wrap(management_client)
    elif settings.management_endpoint is not None:
        fixed = make_transport(settings.management_endpoint)
    transport = _ManagementTransport(fixed=fixed, make_transport=make_transport)
    runtime = Runtime(
        settings=settings,
        gateway=Gateway(store, transport, config, clock=clock, sleep=sleep),
        authenticator=authenticator or build_authenticator(settings),
        transport=transport,
        max_response_bytes=max_response_bytes,
    )
    global _runtime
    with _lock:
        _runtime = runtime
    return runtime


def current_runtime() -> Runtime | None:
    """The installed runtime, if one was built (by `build_runtime` or the first invocation)."""
    return _runtime


def reset_runtime() -> None:
    """Forget the installed runtime; the next invocation builds one from the environment again."""
    global _runtime
    with _lock:
        _runtime = None


def _get_runtime() -> Runtime:
    runtime = _runtime
    if runtime is not None:
        return runtime
    with _lock:  # reentrant: build_runtime takes it again to install what it built
        if _runtime is not None:
            return _runtime
        return build_runtime(load_settings())


# --- the entry point ------------------------------------------------------------------------------------


def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Answer one Lambda invocation: a WebSocket, HTTP API or scheduled event.

    Args:
        event: The event as Lambda delivers it.
        context: The Lambda context.

    Returns:
        The response dict for API Gateway (or a cleanup summary for a schedule). Never raises: bad events
        get a 400, anything unexpected a 500 carrying the request id.
    """
    request_id = context.aws_request_id
    with request_context(request_id):
        try:
            parsed = parse_event(event)
        except UnknownEvent as exc:
            _log.warning("unknown event", extra={"reason": str(exc)})
            return {"statusCode": 400}
        except BadEvent as exc:
            _log.warning("bad event", extra={"reason": str(exc)})
            return _bad_event(event, str(exc))
        try:
            runtime = _get_runtime()
            if isinstance(parsed, WebSocketEvent):
                return _websocket(runtime, parsed)
            if isinstance(parsed, HttpEvent):
                return _http(runtime, parsed, context)
            return _scheduled(runtime, parsed)
        except Exception:
            _log.exception("invocation failed", extra={"event_kind": type(parsed).__name__})
            return _internal_error(parsed, request_id)


def _websocket(runtime: Runtime, event: WebSocketEvent) -> dict[str, Any]:
    runtime.transport.learn(event.domain_name, event.stage)
    connection_id = ConnectionId(event.connection_id)
    if event.route_key == "$connect":
        try:
            principal = runtime.authenticator.authenticate(event.headers, event.query)
        except AuthError as exc:  # its reason never holds the token
            _log.warning("agent refused", extra={"connection": connection_id, "reason": exc.reason})
            return websocket_response(503 if exc.status_hint == 503 else 401)
        resume = event.query_param("resume") or event.header("x-tunnel-resume")
        connection = runtime.gateway.connect(connection_id, resume_token=resume)
        if connection is None:
            _log.error("no tunnel id could be claimed", extra={"connection": connection_id})
            return websocket_response(503)
        _log.info(
            "agent accepted",
            extra={"connection": connection_id, "tunnel": connection.tunnel_id, "subject": principal.subject},
        )
    elif event.route_key == "$default":
        # Bad frames are answered by the gateway with an `error` frame; nothing is raised for them.
        runtime.gateway.receive(connection_id, event.body or "")
    else:
        runtime.gateway.disconnect(connection_id)
        _log.info("agent disconnected", extra={"connection": connection_id})
    return websocket_response(200)


def _http(runtime: Runtime, event: HttpEvent, context: LambdaContext) -> dict[str, Any]:
    if not runtime.transport.fixed:
        _log.error(
            "TUNNEL_MANAGEMENT_ENDPOINT is not set: HTTP API events do not name the WebSocket API, so "
            "requests cannot reach agents",
            extra={"reason": "no management endpoint"},
        )
        return _page(500, "Internal error", "The gateway is not configured.", context.aws_request_id, event)
    remaining_ms = context.get_remaining_time_in_millis()
    if remaining_ms < runtime.settings.response_timeout * 1000 + _ANSWER_MARGIN_MS:
        _log.warning(
            "the function's timeout is shorter than TUNNEL_RESPONSE_TIMEOUT: waiting less, to answer 504",
            extra={"remaining_ms": remaining_ms},
        )
    headers = _one_cookie_header(event.headers)
    if event.header("host") is None:  # routing reads Host; the API's domain is what the client used
        headers = (("host", event.host), *headers)
    request = PublicRequest(
        method=event.method,
        target=event.uri,
        headers=headers,
        body=event.body,
        client_ip=event.source_ip,
    )
    # Stop waiting early enough to answer 504 before Lambda's own timeout would kill the invocation.
    answer = runtime.gateway.forward(request, wait_for=(remaining_ms - _ANSWER_MARGIN_MS) / 1000)
    details = {"request": answer.request_id, "status": answer.status, "polls": answer.polls}
    try:
        response = http_response(answer.status, answer.headers, answer.body, version=event.version)
    except ValueError as exc:  # a header the agent sent that API Gateway could not carry
        _log.warning("invalid response from agent", extra={**details, "reason": str(exc)})
        return _page(502, "Bad gateway", "The agent's answer was not valid HTTP.", answer.request_id, event)
    size = _payload_size(response)
    if size > runtime.max_response_bytes:
        _log.warning(
            "response too large for Lambda",
            extra={**details, "payload_bytes": size, "limit": runtime.max_response_bytes},
        )
        text = (
            f"The response ({size} bytes as sent) exceeds the {runtime.max_response_bytes}-byte limit of "
            "AWS Lambda responses."
        )
        return _page(502, "Response too large", text, answer.request_id, event)
    _log.info("public request", extra={**details, "method": event.method, "path": event.path})
    return response


def _one_cookie_header(headers: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """Payload 2.0 hands over each cookie as its own `cookie` pair; the local app is spoken to in HTTP/1.1,
    where they must travel as one header joined with "; " (RFC 9113 8.2.3, RFC 6265 5.4): servers such as
    Starlette read only the first `Cookie` header."""
    cookies = [value for name, value in headers if name == "cookie"]
    if len(cookies) < 2:
        return headers
    return (*(pair for pair in headers if pair[0] != "cookie"), ("cookie", "; ".join(cookies)))


def _scheduled(runtime: Runtime, event: ScheduledEvent) -> dict[str, Any]:
    report = runtime.gateway.cleanup()
    summary: dict[str, Any] = {"event": event.id, **dataclasses.asdict(report), "removed": report.removed}
    _log.info("cleanup done", extra={"cleanup": summary})
    return summary


# --- answers --------------------------------------------------------------------------------------------


def _payload_size(response: Mapping[str, Any]) -> int:
    # Measured as json.dumps writes it by default (ASCII, escapes included): never less than what the
    # runtime sends, so a response that passes here fits.
    return len(json.dumps(response))


def _page(
    status: int, title: str, text: str, request_id: str, event: HttpEvent | None = None
) -> dict[str, Any]:
    page = error_page(status, title, text, request_id)
    # API Gateway sets Content-Length from the body it sends (base64 decoded or not).
    headers = [(name, value) for name, value in page.headers if name != "content-length"]
    return http_response(status, headers, page.body, version=event.version if event else "2.0")


def _http_shaped(raw: Mapping[str, Any]) -> PayloadVersion | None:
    """The payload version of an event that looks like an HTTP API request, else None."""
    if not isinstance(raw, Mapping) or not isinstance(raw.get("requestContext"), Mapping):
        return None
    if "connectionId" in raw["requestContext"]:
        return None
    if raw.get("version") == "2.0":
        return "2.0"
    if "httpMethod" in raw or raw.get("version") == "1.0":
        return "1.0"
    return None


def _bad_event(raw: Mapping[str, Any], reason: str) -> dict[str, Any]:
    version = _http_shaped(raw)
    if version is None:
        return {"statusCode": 400}
    body = f"Bad request: {reason[:200]}\n".encode()
    return http_response(400, [("content-type", "text/plain; charset=utf-8")], body, version=version)


def _internal_error(event: WebSocketEvent | HttpEvent | ScheduledEvent, request_id: str) -> dict[str, Any]:
    if isinstance(event, HttpEvent):
        return _page(500, "Internal error", "The gateway failed to handle this request.", request_id, event)
    return {"statusCode": 500, "body": f"Internal error; request id {request_id}"}
