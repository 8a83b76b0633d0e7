"""Tests for lambda_app/events.py: parsing the fixture events of fixtures/events/ and building responses."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest

from lambda_app.events import (
    BadEvent,
    EventError,
    HttpEvent,
    ScheduledEvent,
    UnknownEvent,
    WebSocketEvent,
    http_response,
    parse_event,
    websocket_response,
)

EVENTS = Path(__file__).resolve().parents[2] / "fixtures" / "events"

#: What each well-formed fixture parses to: its type and the fields that matter.
GOOD: dict[str, tuple[type, dict[str, Any]]] = {
    "websocket_connect_query_token.json": (
        WebSocketEvent,
        {
            "route_key": "$connect",
            "connection_id": "Vx1AbeKDDoECF-A=",
            "domain_name": "a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com",
            "stage": "prod",
            "connected_at": 1795356000000,
            "request_id": "Vx1AbF2GDoEFc9Q=",
            "body": None,
            "source_ip": "203.0.113.7",
        },
    ),
    "websocket_connect_bearer.json": (WebSocketEvent, {"route_key": "$connect", "query": ()}),
    "websocket_default_text.json": (
        WebSocketEvent,
        {
            "route_key": "$default",
            "body": '{"type":"ready","protocol_version":2,"features":["body_chunks","pong"]}',
            "headers": (),
        },
    ),
    "websocket_default_base64.json": (WebSocketEvent, {"route_key": "$default", "body": '{"type":"ping"}'}),
    "websocket_disconnect.json": (
        WebSocketEvent,
        {"route_key": "$disconnect", "connected_at": 1795356000000, "body": None},
    ),
    "http_v2_get.json": (
        HttpEvent,
        {
            "version": "2.0",
            "method": "GET",
            "raw_path": "/k7q2x9m4p1w8z3c5/search",
            "path": "/k7q2x9m4p1w8z3c5/search",
            "stage_prefix": "",
            "raw_query_string": "q=a%26b%3Dc&plus=1+2&pct=100%25&eq==x&empty=&flag&q=second",
            "body": b"",
            "host": "gw.example.com",
            "source_ip": "198.51.100.20",
            "request_id": "JKJaXmPLvHcESHA=",
            "stage": "$default",
            "time_epoch_ms": 1795356300000,
        },
    ),
    "http_v2_post_binary_stage.json": (
        HttpEvent,
        {
            "method": "POST",
            "raw_path": "/prod/k7q2x9m4p1w8z3c5/upload",
            "path": "/k7q2x9m4p1w8z3c5/upload",
            "stage_prefix": "/prod",
            "stage": "prod",
            "raw_query_string": "",
            "body": bytes(range(256)) + b"\x89PNG\r\n\x1a\n",
            "host": "r3pmxmplak.execute-api.eu-west-1.amazonaws.com",
        },
    ),
    "http_v2_post_json.json": (
        HttpEvent,
        {
            "method": "POST",
            "path": "/k7q2x9m4p1w8z3c5/api/items",
            "body": '{"name": "café", "n": 1}'.encode(),
            "host": "k7q2x9m4p1w8z3c5.tunnel.example.com",
        },
    ),
    "http_v1_put.json": (
        HttpEvent,
        {
            "version": "1.0",
            "method": "PUT",
            "raw_path": "/dev/k7q2x9m4p1w8z3c5/items",
            "path": "/k7q2x9m4p1w8z3c5/items",
            "stage_prefix": "/dev",
            "raw_query_string": "tag=a&tag=b%2Bc&q=x%20y%26z",
            "body": b"name=x&n=1",
            "host": "r3pmxmplak.execute-api.eu-west-1.amazonaws.com",
            "source_ip": "198.51.100.20",
            "request_id": "JKJdApSOyKfHVKD=",
            "time_epoch_ms": 1795356360000,
        },
    ),
    "scheduled_cleanup.json": (
        ScheduledEvent,
        {
            "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
            "time": "2026-11-22T14:00:00Z",
            "account": "123456789012",
            "region": "eu-west-1",
            "resources": ("arn:aws:events:eu-west-1:123456789012:rule/tunnel-cleanup",),
        },
    ),
}

#: What each malformed fixture raises, and what the message must name.
BAD: dict[str, tuple[type[EventError], str]] = {
    "bad_websocket_no_connection_id.json": (BadEvent, "requestContext.connectionId"),
    "bad_websocket_no_connected_at.json": (BadEvent, "requestContext.connectedAt"),
    "bad_websocket_base64_body.json": (BadEvent, "base64"),
    "unknown_websocket_custom_route.json": (UnknownEvent, "sendmessage"),
    "bad_http_v2_no_method.json": (BadEvent, "requestContext.http.method"),
    "bad_http_v2_header_not_string.json": (BadEvent, "content-length"),
    "bad_http_v1_no_identity.json": (BadEvent, "requestContext.identity"),
    "bad_scheduled_no_time.json": (BadEvent, "event.time"),
    "unknown_s3_notification.json": (UnknownEvent, "Records"),
    "unknown_empty.json": (UnknownEvent, "unrecognised event"),
}


def load(name: str) -> dict[str, Any]:
    """Read one fixture event."""
    data: dict[str, Any] = json.loads((EVENTS / name).read_text(encoding="utf-8"))
    return data


def test_every_fixture_has_an_expectation() -> None:
    """Each file in fixtures/events/ is checked by one of the tables above, and each entry has its file."""
    assert {p.name for p in EVENTS.glob("*.json")} == set(GOOD) | set(BAD)


@pytest.mark.parametrize("name", sorted(GOOD))
def test_good_fixture_parses_to_expected_fields(name: str) -> None:
    """A real-shaped event parses to the right type with the right field values."""
    kind, fields = GOOD[name]
    event = parse_event(load(name))
    assert type(event) is kind
    for field, expected in fields.items():
        assert getattr(event, field) == expected, field


@pytest.mark.parametrize("name", sorted(GOOD))
def test_from_raw_agrees_with_parse_event(name: str) -> None:
    """Calling the type's own from_raw gives the same value as parse_event."""
    kind, _ = GOOD[name]
    raw = load(name)
    assert kind.from_raw(raw) == parse_event(raw)  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", sorted(BAD))
def test_malformed_fixture_raises_a_named_error(name: str) -> None:
    """A malformed or foreign event raises the module's ValueError subclass naming what is wrong."""
    error, fragment = BAD[name]
    with pytest.raises(error) as info:
        parse_event(load(name))
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)


def test_non_mapping_event_is_unknown() -> None:
    """A list or string where an event dict belongs raises UnknownEvent rather than AttributeError."""
    with pytest.raises(UnknownEvent, match="not a JSON object"):
        parse_event(["not", "an", "event"])  # type: ignore[arg-type]


def test_connect_honours_multi_value_headers_and_lower_cases_names() -> None:
    """On $connect a repeated header keeps both values although the single-valued map holds only the last."""
    event = parse_event(load("websocket_connect_query_token.json"))
    assert isinstance(event, WebSocketEvent)
    assert [v for k, v in event.headers if k == "x-tunnel-feature"] == ["body_chunks", "pong"]
    assert all(name == name.lower() for name, _ in event.headers)
    assert event.header("Sec-WebSocket-Version") == "13"
    assert event.header("absent") is None


def test_connect_query_carries_the_token() -> None:
    """The ?token= parameter of $connect is available by name."""
    event = parse_event(load("websocket_connect_query_token.json"))
    assert isinstance(event, WebSocketEvent)
    assert event.query_param("token") == "placeholder.query.token"
    assert event.query_param("missing") is None


def test_v2_raw_query_string_is_passed_exactly() -> None:
    """Payload 2.0's rawQueryString reaches the uri byte for byte, with its &, =, % and + as sent."""
    raw = load("http_v2_get.json")
    event = parse_event(raw)
    assert isinstance(event, HttpEvent)
    assert event.uri == f"/k7q2x9m4p1w8z3c5/search?{raw['rawQueryString']}"


def test_v2_cookies_stay_separate_cookie_values() -> None:
    """Payload 2.0's cookies array becomes one cookie header value per cookie."""
    event = parse_event(load("http_v2_get.json"))
    assert isinstance(event, HttpEvent)
    assert event.header_values("Cookie") == ("session=abc123", "theme=dark")


def test_v2_joined_header_is_kept_as_received() -> None:
    """A header API Gateway joined with commas stays one value: splitting it could break dates and agents."""
    event = parse_event(load("http_v2_get.json"))
    assert isinstance(event, HttpEvent)
    assert event.header_values("accept") == ("text/html, application/json",)
    assert event.header("X-Custom") == "one,two"


def test_v2_named_stage_is_removed_from_path_and_uri() -> None:
    """On a named stage the /prod prefix API Gateway adds to rawPath is stripped and remembered."""
    event = parse_event(load("http_v2_post_binary_stage.json"))
    assert isinstance(event, HttpEvent)
    assert event.uri == "/k7q2x9m4p1w8z3c5/upload"
    assert event.stage_prefix + event.path == event.raw_path


def test_v2_path_without_the_stage_segment_is_left_alone() -> None:
    """Through a custom domain a named stage adds no segment, so nothing is stripped."""
    raw = load("http_v2_post_binary_stage.json")
    raw["rawPath"] = "/k7q2x9m4p1w8z3c5/upload"
    event = parse_event(raw)
    assert isinstance(event, HttpEvent)
    assert (event.path, event.stage_prefix) == ("/k7q2x9m4p1w8z3c5/upload", "")


def test_v2_stage_root_maps_to_slash() -> None:
    """A request for the bare stage URL (/prod) has the path /."""
    raw = load("http_v2_post_binary_stage.json")
    raw["rawPath"] = "/prod"
    event = parse_event(raw)
    assert isinstance(event, HttpEvent)
    assert (event.path, event.stage_prefix) == ("/", "/prod")


def test_v1_query_is_rebuilt_to_decode_to_the_same_parameters() -> None:
    """Payload 1.0's decoded parameters are re-encoded so that parsing the string gives them back."""
    raw = load("http_v1_put.json")
    event = parse_event(raw)
    assert isinstance(event, HttpEvent)
    expected = [(k, v) for k, values in raw["multiValueQueryStringParameters"].items() for v in values]
    assert parse_qsl(event.raw_query_string, keep_blank_values=True) == expected


def test_v1_headers_keep_every_value() -> None:
    """Payload 1.0's multiValueHeaders keep both Accept values, lower-cased."""
    event = parse_event(load("http_v1_put.json"))
    assert isinstance(event, HttpEvent)
    assert event.header_values("accept") == ("text/html", "application/json")
    assert event.header("cookie") == "session=abc123; theme=dark"


def test_v1_without_multi_values_uses_single_values() -> None:
    """A 1.0 event with only the single-valued maps still yields headers and a query string."""
    raw = load("http_v1_put.json")
    del raw["multiValueHeaders"], raw["multiValueQueryStringParameters"]
    event = parse_event(raw)
    assert isinstance(event, HttpEvent)
    assert event.header("accept") == "application/json"
    assert parse_qsl(event.raw_query_string) == [("tag", "b+c"), ("q", "x y&z")]


def test_scheduler_source_is_also_a_schedule() -> None:
    """An EventBridge Scheduler event (source aws.scheduler) is recognised as a ScheduledEvent."""
    raw = load("scheduled_cleanup.json")
    raw["source"] = "aws.scheduler"
    assert isinstance(parse_event(raw), ScheduledEvent)


def test_websocket_binary_frame_that_is_not_utf8_is_bad() -> None:
    """A base64 frame whose bytes are not UTF-8 cannot be a protocol message and raises BadEvent."""
    raw = load("websocket_default_base64.json")
    raw["body"] = base64.b64encode(b"\xff\xfe").decode()
    with pytest.raises(BadEvent, match="UTF-8"):
        parse_event(raw)


def test_wrongly_typed_fields_are_bad() -> None:
    """A string where an integer, boolean or object belongs raises BadEvent naming the field."""
    raw = load("websocket_default_text.json")
    raw["requestContext"]["connectedAt"] = "1795356000000"
    with pytest.raises(BadEvent, match="connectedAt"):
        parse_event(raw)
    raw = load("websocket_default_text.json")
    raw["isBase64Encoded"] = "false"
    with pytest.raises(BadEvent, match="isBase64Encoded"):
        parse_event(raw)
    raw = load("http_v2_get.json")
    raw["cookies"] = "a=b"
    with pytest.raises(BadEvent, match="cookies"):
        parse_event(raw)
    raw = load("http_v1_put.json")
    raw["multiValueHeaders"]["Accept"] = "text/html"
    with pytest.raises(BadEvent, match="Accept"):
        parse_event(raw)
    raw = load("http_v1_put.json")
    raw["requestContext"]["stage"] = 3
    with pytest.raises(BadEvent, match=r"requestContext\.stage"):
        parse_event(raw)
    raw = load("scheduled_cleanup.json")
    raw["resources"] = "arn:aws:events:eu-west-1:123456789012:rule/tunnel-cleanup"
    with pytest.raises(BadEvent, match="resources"):
        parse_event(raw)


def test_v1_event_without_any_host_is_bad() -> None:
    """A 1.0 event with neither a Host header nor a domain name cannot name its host and raises BadEvent."""
    raw = load("http_v1_put.json")
    del raw["headers"]["Host"], raw["multiValueHeaders"]["Host"], raw["requestContext"]["domainName"]
    with pytest.raises(BadEvent, match="Host"):
        parse_event(raw)


# --- responses --------------------------------------------------------------------------------------------


def test_v2_response_moves_set_cookie_to_cookies_and_joins_other_repeats() -> None:
    """Two Set-Cookie headers become two cookies entries; two Vary headers become one joined value."""
    response = http_response(
        200,
        [
            ("Content-Type", "text/html"),
            ("Set-Cookie", "a=1; Path=/"),
            ("set-cookie", "b=2"),
            ("Vary", "Accept"),
            ("vary", "Origin"),
        ],
        b"<p>hi</p>",
    )
    assert response == {
        "statusCode": 200,
        "headers": {"content-type": "text/html", "vary": "Accept, Origin"},
        "cookies": ["a=1; Path=/", "b=2"],
        "body": "<p>hi</p>",
        "isBase64Encoded": False,
    }


def test_v2_response_sends_binary_body_as_base64() -> None:
    """A body that is not UTF-8 goes base64-encoded with isBase64Encoded, and decodes back to the bytes."""
    event = parse_event(load("http_v2_post_binary_stage.json"))
    assert isinstance(event, HttpEvent)
    response = http_response(200, [("content-type", "application/octet-stream")], event.body)
    assert response["isBase64Encoded"] is True
    assert base64.b64decode(response["body"]) == event.body
    assert "cookies" not in response


def test_v2_response_keeps_utf8_text_as_text() -> None:
    """A UTF-8 body is sent as text so it does not grow by a third."""
    response = http_response(201, [], "café".encode())
    assert (response["body"], response["isBase64Encoded"]) == ("café", False)


def test_v1_response_keeps_every_header_value() -> None:
    """Payload 1.0 responses use multiValueHeaders, Set-Cookie included."""
    response = http_response(
        302, [("Location", "/k/login"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")], b"", version="1.0"
    )
    assert response == {
        "statusCode": 302,
        "multiValueHeaders": {"location": ["/k/login"], "set-cookie": ["a=1", "b=2"]},
        "body": "",
        "isBase64Encoded": False,
    }


@pytest.mark.parametrize(
    ("status", "headers"),
    [(99, []), (600, []), (True, []), (200, [("bad name", "x")]), (200, [("x-a", "1\r\nx-b: 2")])],
)
def test_invalid_responses_are_refused(status: int, headers: list[tuple[str, str]]) -> None:
    """A status out of range, a non-token header name or a CR/LF in a value raises ValueError."""
    with pytest.raises(ValueError, match=r"status|header"):
        http_response(status, headers, b"")


def test_websocket_response_is_a_status_only() -> None:
    """A WebSocket route answers with its status alone, and refuses an impossible status."""
    assert websocket_response(401) == {"statusCode": 401}
    with pytest.raises(ValueError, match="status"):
        websocket_response(1000)
