"""Typed Lambda events parsed from API Gateway and EventBridge dicts, and the responses built back; no I/O.

`parse_event()` recognises an API Gateway WebSocket event (`$connect`, `$disconnect`, `$default`), an HTTP
API event (payload format 2.0 or 1.0) or an EventBridge "Scheduled Event", and returns a frozen value.
Anything else raises `UnknownEvent`; a recognised event that lacks a field raises `BadEvent` naming it.
`Any` stays in this module: past it, the gateway sees only typed values. The shapes follow the AWS API
Gateway developer guide ("Create AWS Lambda proxy integrations for HTTP APIs", "WebSocket API mapping
template reference") and Powertools' event models.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args
from urllib.parse import quote

__all__ = [
    "BadEvent",
    "EventError",
    "HttpEvent",
    "LambdaEvent",
    "PayloadVersion",
    "RouteKey",
    "ScheduledEvent",
    "UnknownEvent",
    "WebSocketEvent",
    "http_response",
    "parse_event",
    "websocket_response",
]

RouteKey = Literal["$connect", "$disconnect", "$default"]
PayloadVersion = Literal["1.0", "2.0"]

_ROUTE_KEYS: Final[frozenset[str]] = frozenset(get_args(RouteKey))
# RFC 9110 section 5.6.2: a field name is a token.
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-zA-Z]+")
# RFC 9110 section 5.5: CR, LF and NUL are never allowed in a field value.
_BAD_VALUE: Final = re.compile(r"[\r\n\x00]")
# RFC 3986 section 3.4: characters a query may hold literally, minus the ones forms give a meaning
# ("&", "=", "+") so that a re-encoded value reads back as the value API Gateway decoded.
_QUERY_SAFE: Final = "!$'()*,;:@/?"


class EventError(ValueError):
    """A Lambda event this module cannot turn into a typed value."""


class UnknownEvent(EventError):  # noqa: N818 (named for what happened, like h11's events)
    """The event is of no kind the gateway handles (an S3 notification, a custom WebSocket route...)."""


class BadEvent(EventError):  # noqa: N818 (named for what happened, like h11's events)
    """The event's kind is known but a field is missing or of the wrong type; the message names it."""


# --- reading the raw dict ---------------------------------------------------------------------------


def _mapping(raw: Mapping[str, Any], key: str, where: str, *, optional: bool = False) -> Mapping[str, Any]:
    value = raw.get(key)
    if value is None and optional:
        return {}
    if not isinstance(value, Mapping):
        what = "missing" if value is None else f"not an object ({type(value).__name__})"
        raise BadEvent(f"{where}.{key} is {what}")
    return value


def _text(raw: Mapping[str, Any], key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        what = "missing" if value is None else f"not a non-empty string ({value!r})"
        raise BadEvent(f"{where}.{key} is {what}")
    return value


def _optional_text(raw: Mapping[str, Any], key: str, where: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadEvent(f"{where}.{key} is not a string ({type(value).__name__})")
    return value


def _integer(raw: Mapping[str, Any], key: str, where: str) -> int:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        what = "missing" if value is None else f"not an integer ({value!r})"
        raise BadEvent(f"{where}.{key} is {what}")
    return value


def _optional_integer(raw: Mapping[str, Any], key: str, where: str) -> int | None:
    return None if raw.get(key) is None else _integer(raw, key, where)


def _is_base64(raw: Mapping[str, Any], where: str) -> bool:
    value = raw.get("isBase64Encoded", False)
    if not isinstance(value, bool):
        raise BadEvent(f"{where}.isBase64Encoded is not a boolean ({value!r})")
    return value


def _body_bytes(raw: Mapping[str, Any], where: str) -> bytes | None:
    body = _optional_text(raw, "body", where)
    if body is None:
        return None
    if not _is_base64(raw, where):
        return body.encode("utf-8")
    try:
        # validate=True: a body that is not strict base64 is a broken event, not something to guess at.
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise BadEvent(f"{where}.body is marked isBase64Encoded but is not valid base64") from None


def _pairs(
    single: Mapping[str, Any], multi: Mapping[str, Any], where: str, *, lower: bool
) -> tuple[tuple[str, str], ...]:
    """Flatten `{name: value}` and `{name: [values]}` into pairs, preferring the multi-valued map.

    API Gateway's 1.0 and WebSocket events carry both maps; the single one keeps only the last value of a
    repeated name (AWS developer guide, "multi-value headers and query string parameters").
    """
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name, values in multi.items():
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise BadEvent(f"{where} multi-value entry {name!r} is not a list of strings")
        key = name.lower() if lower else name
        seen.add(key)
        pairs.extend((key, value) for value in values)
    for name, value in single.items():
        key = name.lower() if lower else name
        if key in seen:
            continue
        if not isinstance(value, str):
            raise BadEvent(f"{where} entry {name!r} is not a string ({type(value).__name__})")
        pairs.append((key, value))
    return tuple(pairs)


def _first(pairs: Sequence[tuple[str, str]], name: str) -> str | None:
    return next((value for key, value in pairs if key == name), None)


def _strip_stage(raw_path: str, stage: str) -> str:
    """The stage prefix API Gateway put in front of the path, or "" when there is none.

    An HTTP API serves a named stage at `/{stage}/...` and passes that prefix on in `rawPath` (payload 2.0)
    and `path` (1.0); the `$default` stage is served at the root and adds nothing (AWS developer guide,
    "Working with stages for HTTP APIs"; Powertools issue 621). Requests through a custom domain carry no
    stage segment, so the prefix is removed only when it is really there.
    """
    if stage in ("", "$default"):
        return ""
    prefix = f"/{stage}"
    if raw_path == prefix or raw_path.startswith(prefix + "/"):
        return prefix
    return ""


# --- WebSocket ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebSocketEvent:
    """One API Gateway WebSocket event: an agent connecting, sending a frame, or going away.

    Attributes:
        route_key: `$connect`, `$disconnect` or `$default` (every frame, as the API has no other routes).
        connection_id: API Gateway's id for the agent's connection.
        domain_name: The API's domain, for the `@connections` management endpoint.
        stage: The API stage, also part of the management endpoint.
        connected_at: When the connection was opened, epoch milliseconds (`requestContext.connectedAt`).
        request_id: API Gateway's id for this event, for the logs.
        body: The frame's text (`$default` only), base64-decoded when API Gateway marked it so.
        headers: Lower-case names in order, repeated names kept (sent on `$connect` and `$disconnect`).
        query: Query parameters in order, repeated names kept (`$connect` only; where `?token=` arrives).
        source_ip: The client address API Gateway saw, if it says.
    """

    route_key: RouteKey
    connection_id: str
    domain_name: str
    stage: str
    connected_at: int
    request_id: str
    body: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    query: tuple[tuple[str, str], ...] = ()
    source_ip: str | None = None

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> WebSocketEvent:
        """Parse a WebSocket event as API Gateway delivers it to Lambda.

        Args:
            raw: The event dict.

        Returns:
            The typed event.

        Raises:
            UnknownEvent: The route is not one of the three the gateway uses.
            BadEvent: A required field is missing or of the wrong type.
        """
        context = _mapping(raw, "requestContext", "event")
        where = "requestContext"
        route = _text(context, "routeKey", where)
        if route not in _ROUTE_KEYS:
            raise UnknownEvent(
                f"WebSocket route {route!r} is not handled (expected one of {sorted(_ROUTE_KEYS)})"
            )
        body: str | None = None
        data = _body_bytes(raw, "event")
        if data is not None:
            try:
                body = data.decode("utf-8")
            except UnicodeDecodeError:
                # The tunnel protocol is JSON text frames (DESIGN.md); a binary frame cannot be one.
                raise BadEvent("event.body is not UTF-8 text") from None
        identity = _mapping(context, "identity", where, optional=True)
        return cls(
            route_key=route,  # type: ignore[arg-type]  # checked against _ROUTE_KEYS above
            connection_id=_text(context, "connectionId", where),
            domain_name=_text(context, "domainName", where),
            stage=_text(context, "stage", where),
            connected_at=_integer(context, "connectedAt", where),
            request_id=_text(context, "requestId", where),
            body=body,
            headers=_pairs(
                _mapping(raw, "headers", "event", optional=True),
                _mapping(raw, "multiValueHeaders", "event", optional=True),
                "event.headers",
                lower=True,
            ),
            query=_pairs(
                _mapping(raw, "queryStringParameters", "event", optional=True),
                _mapping(raw, "multiValueQueryStringParameters", "event", optional=True),
                "event.queryStringParameters",
                lower=False,
            ),
            source_ip=_optional_text(identity, "sourceIp", "requestContext.identity"),
        )

    def header(self, name: str) -> str | None:
        """The first value of a header, by case-insensitive name, or None."""
        return _first(self.headers, name.lower())

    def query_param(self, name: str) -> str | None:
        """The first value of a query parameter, by exact name, or None."""
        return _first(self.query, name)


# --- HTTP API -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HttpEvent:
    """One public HTTP request, from an HTTP API with payload format 2.0 or 1.0.

    Attributes:
        version: The payload format the integration is configured with.
        method: The HTTP method, upper case.
        raw_path: The path exactly as API Gateway passed it, stage prefix included.
        path: `raw_path` without the stage prefix: the path the public client meant for the tunnel.
        stage_prefix: What was removed (``"/prod"``), or ``""`` on the `$default` stage; public URLs that
            the gateway prints must put it back.
        raw_query_string: The query without ``?``. Payload 2.0 passes it exactly as received; 1.0 only has
            decoded parameters, so it is rebuilt (see `_query_from_v1`).
        headers: Lower-case names in order. Payload 2.0 joins a repeated header into one comma-separated
            value and moves cookies to `cookies`; each cookie comes back here as its own ``cookie`` pair.
        body: The body bytes, base64-decoded when API Gateway encoded them.
        host: The `Host` the client used, else the API's domain name.
        source_ip: The client address API Gateway saw.
        request_id: API Gateway's request id, for the logs and the 500 page.
        stage: The stage name, ``"$default"`` when the API serves at the root.
        time_epoch_ms: When API Gateway received the request, epoch milliseconds, if it says.
    """

    version: PayloadVersion
    method: str
    raw_path: str
    path: str
    stage_prefix: str
    raw_query_string: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    host: str
    source_ip: str
    request_id: str
    stage: str
    time_epoch_ms: int | None = None

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> HttpEvent:
        """Parse an HTTP API event of payload format 2.0 or 1.0 (a REST API proxy event reads as 1.0).

        Args:
            raw: The event dict.

        Returns:
            The typed event.

        Raises:
            BadEvent: A required field is missing or of the wrong type, or the body is not valid base64.
        """
        if raw.get("version") == "2.0":
            return cls._from_v2(raw)
        return cls._from_v1(raw)

    @classmethod
    def _from_v2(cls, raw: Mapping[str, Any]) -> HttpEvent:
        context = _mapping(raw, "requestContext", "event")
        http = _mapping(context, "http", "requestContext")
        raw_path = _text(raw, "rawPath", "event")
        stage = _optional_text(context, "stage", "requestContext") or "$default"
        raw_query = _optional_text(raw, "rawQueryString", "event") or ""
        headers = _pairs(_mapping(raw, "headers", "event", optional=True), {}, "event.headers", lower=True)
        cookies = raw.get("cookies") or []
        if not isinstance(cookies, list) or not all(isinstance(c, str) for c in cookies):
            raise BadEvent("event.cookies is not a list of strings")
        if cookies:
            # Format 2.0 moves the Cookie header into `cookies`, one entry per cookie pair (AWS developer
            # guide, payload format 2.0). They stay separate values, as HTTP/2 allows (RFC 9113 8.2.3).
            headers = tuple(p for p in headers if p[0] != "cookie") + tuple(("cookie", c) for c in cookies)
        domain = _text(context, "domainName", "requestContext")
        prefix = _strip_stage(raw_path, stage)
        return cls(
            version="2.0",
            method=_text(http, "method", "requestContext.http").upper(),
            raw_path=raw_path,
            path=raw_path[len(prefix) :] or "/",
            stage_prefix=prefix,
            raw_query_string=raw_query,
            headers=headers,
            body=_body_bytes(raw, "event") or b"",
            host=_first(headers, "host") or domain,
            source_ip=_text(http, "sourceIp", "requestContext.http"),
            request_id=_text(context, "requestId", "requestContext"),
            stage=stage,
            time_epoch_ms=_optional_integer(context, "timeEpoch", "requestContext"),
        )

    @classmethod
    def _from_v1(cls, raw: Mapping[str, Any]) -> HttpEvent:
        context = _mapping(raw, "requestContext", "event")
        identity = _mapping(context, "identity", "requestContext")
        raw_path = _text(raw, "path", "event")
        stage = _optional_text(context, "stage", "requestContext") or "$default"
        headers = _pairs(
            _mapping(raw, "headers", "event", optional=True),
            _mapping(raw, "multiValueHeaders", "event", optional=True),
            "event.headers",
            lower=True,
        )
        query = _pairs(
            _mapping(raw, "queryStringParameters", "event", optional=True),
            _mapping(raw, "multiValueQueryStringParameters", "event", optional=True),
            "event.queryStringParameters",
            lower=False,
        )
        domain = _optional_text(context, "domainName", "requestContext")
        host = _first(headers, "host") or domain
        if not host:
            raise BadEvent("event has neither a Host header nor requestContext.domainName")
        prefix = _strip_stage(raw_path, stage)
        return cls(
            version="1.0",
            method=_text(raw, "httpMethod", "event").upper(),
            raw_path=raw_path,
            path=raw_path[len(prefix) :] or "/",
            stage_prefix=prefix,
            raw_query_string=_query_from_v1(query),
            headers=headers,
            body=_body_bytes(raw, "event") or b"",
            host=host,
            source_ip=_text(identity, "sourceIp", "requestContext.identity"),
            request_id=_text(context, "requestId", "requestContext"),
            stage=stage,
            time_epoch_ms=_optional_integer(context, "requestTimeEpoch", "requestContext"),
        )

    @property
    def uri(self) -> str:
        """The stage-free path and the raw query; in path mode it still starts with the tunnel id."""
        return f"{self.path}?{self.raw_query_string}" if self.raw_query_string else self.path

    def header(self, name: str) -> str | None:
        """The first value of a header, by case-insensitive name, or None."""
        return _first(self.headers, name.lower())

    def header_values(self, name: str) -> tuple[str, ...]:
        """Every value of a header, by case-insensitive name, in order."""
        key = name.lower()
        return tuple(value for k, value in self.headers if k == key)


def _query_from_v1(query: Sequence[tuple[str, str]]) -> str:
    """Rebuild a raw query string from payload 1.0's decoded parameters.

    Format 1.0 has no raw query string: only `multiValueQueryStringParameters`, already percent-decoded
    and grouped by name. The rebuilt string percent-encodes each name and value again (RFC 3986 3.4) so
    that it decodes to what the client sent; it cannot restore the original spelling: parameters come
    grouped by name in API Gateway's order, a literal ``+`` becomes ``%2B``, a space ``%20``, and a bare
    ``flag`` reads ``flag=``. Payload 2.0's `rawQueryString` has none of these losses; prefer it.
    """
    return "&".join(
        f"{quote(name, safe=_QUERY_SAFE)}={quote(value, safe=_QUERY_SAFE)}" for name, value in query
    )


# --- EventBridge ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScheduledEvent:
    """An EventBridge "Scheduled Event", which triggers the cleanup of leftover items.

    Attributes:
        id: The event's id, for the logs.
        time: When the schedule fired, ISO 8601 UTC as EventBridge writes it.
        account: The AWS account.
        region: The AWS region.
        resources: The ARNs of the rules that fired.
    """

    id: str
    time: str
    account: str
    region: str
    resources: tuple[str, ...] = ()

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> ScheduledEvent:
        """Parse the event an EventBridge schedule rule sends with its default input.

        Args:
            raw: The event dict.

        Returns:
            The typed event.

        Raises:
            BadEvent: A required field is missing or of the wrong type.
        """
        resources = raw.get("resources") or []
        if not isinstance(resources, list) or not all(isinstance(r, str) for r in resources):
            raise BadEvent("event.resources is not a list of strings")
        return cls(
            id=_text(raw, "id", "event"),
            time=_text(raw, "time", "event"),
            account=_text(raw, "account", "event"),
            region=_text(raw, "region", "event"),
            resources=tuple(resources),
        )


LambdaEvent = WebSocketEvent | HttpEvent | ScheduledEvent

_WEBSOCKET_EVENT_TYPES: Final = frozenset({"CONNECT", "MESSAGE", "DISCONNECT"})
#: `source` values of a schedule: EventBridge rules and EventBridge Scheduler.
_SCHEDULE_SOURCES: Final = frozenset({"aws.events", "aws.scheduler"})


def parse_event(raw: Mapping[str, Any]) -> LambdaEvent:
    """Recognise a Lambda event's kind and parse it.

    WebSocket events are told by `requestContext.connectionId` or a WebSocket `eventType`; HTTP API events by
    `version` "2.0" with `requestContext.http`, or by `httpMethod` (payload 1.0, also a REST API proxy
    event); a schedule by `detail-type` "Scheduled Event" from `aws.events` or `aws.scheduler`.

    Args:
        raw: The event dict Lambda passed to the handler.

    Returns:
        The typed event.

    Raises:
        UnknownEvent: The event is none of those kinds; the message says what was looked for.
        BadEvent: The kind is known but a field is missing or of the wrong type.
    """
    if not isinstance(raw, Mapping):
        raise UnknownEvent(f"event is not a JSON object ({type(raw).__name__})")
    context = raw.get("requestContext")
    if isinstance(context, Mapping):
        if "connectionId" in context or context.get("eventType") in _WEBSOCKET_EVENT_TYPES:
            return WebSocketEvent.from_raw(raw)
        if raw.get("version") in ("2.0", "1.0") or "httpMethod" in raw:
            return HttpEvent.from_raw(raw)
    if raw.get("detail-type") == "Scheduled Event" and raw.get("source") in _SCHEDULE_SOURCES:
        return ScheduledEvent.from_raw(raw)
    raise UnknownEvent(
        "unrecognised event: expected requestContext.connectionId or eventType (WebSocket), version 2.0 "
        "or httpMethod with requestContext (HTTP API), or detail-type 'Scheduled Event' (EventBridge); "
        f"got top-level keys {sorted(str(k) for k in raw)[:12]}"
    )


# --- responses ------------------------------------------------------------------------------------------


def _check_response(status: int, headers: Sequence[tuple[str, str]]) -> None:
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise ValueError(f"status must be an integer from 100 to 599, got {status!r}")
    for name, value in headers:
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"header name must be an HTTP token, got {name!r}")
        if _BAD_VALUE.search(value):
            raise ValueError(f"header {name!r} holds CR, LF or NUL")


def _encode_body(body: bytes) -> tuple[str, bool]:
    # Text that is valid UTF-8 goes as it is: Lambda serialises the string as UTF-8, so the bytes survive,
    # and nothing grows by base64's third (the response payload is capped at 6 MB, Lambda quotas).
    try:
        return body.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(body).decode("ascii"), True


def http_response(
    status: int,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    *,
    version: PayloadVersion = "2.0",
) -> dict[str, Any]:
    """Build the dict an HTTP API integration returns to API Gateway.

    Payload 2.0 has one string per header, so repeated headers are joined with ", " (RFC 9110 5.3), except
    `Set-Cookie`, which cannot be joined (RFC 6265 3) and goes to `cookies`, one entry each (AWS developer
    guide, "Lambda function response for format 2.0"). Payload 1.0 uses `multiValueHeaders`, which keeps
    every value. Bodies that are not UTF-8 are sent base64-encoded with `isBase64Encoded`.

    Args:
        status: The HTTP status, 100 to 599.
        headers: Header pairs in order; names are sent lower-case.
        body: The body bytes.
        version: The integration's payload format.

    Returns:
        The response dict, ready to be returned by the handler.

    Raises:
        ValueError: A status out of range, a header name that is not a token or a value with CR/LF/NUL.
    """
    _check_response(status, headers)
    text, encoded = _encode_body(body)
    if version == "1.0":
        multi: dict[str, list[str]] = {}
        for name, value in headers:
            multi.setdefault(name.lower(), []).append(value)
        return {"statusCode": status, "multiValueHeaders": multi, "body": text, "isBase64Encoded": encoded}
    joined: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        key = name.lower()
        if key == "set-cookie":
            cookies.append(value)
        else:
            joined[key] = f"{joined[key]}, {value}" if key in joined else value
    response: dict[str, Any] = {"statusCode": status, "headers": joined}
    if cookies:
        response["cookies"] = cookies
    response["body"] = text
    response["isBase64Encoded"] = encoded
    return response


def websocket_response(status: int) -> dict[str, Any]:
    """Build the dict a WebSocket route integration returns.

    On `$connect`, a status outside 2xx refuses the connection and the client's handshake fails with it
    (AWS developer guide, "Working with routes for WebSocket APIs"); on other routes it is only logged.

    Args:
        status: The HTTP status, 100 to 599.

    Returns:
        ``{"statusCode": status}``.

    Raises:
        ValueError: A status out of range.
    """
    _check_response(status, ())
    return {"statusCode": status}
