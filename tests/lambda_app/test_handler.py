"""Tests for lambda_app/handler.py and its JSON logs (lambda_app/logs.py): real-shaped events in, answers out.

The runtime is built with a `MemoryStore` and a real `APIGatewayTransport` over a fake management client.
The fake client is the agent's end of every connection: it decodes what the gateway posts and answers an
`http_request` by invoking the handler with `$default` events carrying its `http_response`, as API Gateway
would. One test builds the runtime from the environment against a moto DynamoDB server.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import jwt
import pytest
from moto.server import ThreadedMotoServer

from lambda_app.handler import (
    MAX_RESPONSE_PAYLOAD_BYTES,
    Runtime,
    build_runtime,
    current_runtime,
    handler,
    reset_runtime,
)
from lambda_app.logs import JsonFormatter, configure_logging, request_context
from lambda_app.records import Connection
from lambda_app.settings import Settings
from lambda_app.store_dynamodb import create_tables
from lambda_app.store_memory import MemoryStore
from transport.apigateway import ManagementApiClient
from transport.chunking import split_message
from transport.codec import decode_frame, encode_frame
from transport.messages import ConnectionEstablished, HttpRequest, HttpResponse, TunnelMessage

EVENTS = Path(__file__).resolve().parents[2] / "fixtures" / "events"
SECRET = "handler-tests-hmac-secret-0123456789"
RESUME_SECRET = "handler-tests-resume-secret-0123456789"
ENDPOINT = "https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com/prod"
PUBLIC = "https://gw.example.com"
START = 1_795_356_000.0


def load(name: str) -> dict[str, Any]:
    """A fresh copy of a fixture event."""
    event: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    return event


def token(**claims: Any) -> str:
    """An HS256 agent token signed with the test secret, valid for five minutes unless told otherwise."""
    return jwt.encode({"sub": "agent-1", "exp": int(time.time()) + 300, **claims}, SECRET, algorithm="HS256")


def connect_event(
    connection_id: str, *, bearer: str | None = None, query: dict[str, str] | None = None
) -> dict[str, Any]:
    """The `$connect` fixture for one connection, with the given credential (or none)."""
    event = load("websocket_connect_bearer")
    event["requestContext"]["connectionId"] = connection_id
    for headers in (event["headers"], event["multiValueHeaders"]):
        headers.pop("Authorization")
    if bearer is not None:
        event["headers"]["Authorization"] = f"Bearer {bearer}"
        event["multiValueHeaders"]["Authorization"] = [f"Bearer {bearer}"]
    if query:
        event["queryStringParameters"] = query
        event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()}
    return event


def frame_event(connection_id: str, frame: str) -> dict[str, Any]:
    """A `$default` event carrying one frame from an agent."""
    event = load("websocket_default_text")
    event["requestContext"]["connectionId"] = connection_id
    event["body"] = frame
    return event


def disconnect_event(connection_id: str) -> dict[str, Any]:
    """A `$disconnect` event for one connection."""
    event = load("websocket_disconnect")
    event["requestContext"]["connectionId"] = connection_id
    return event


def get_event(path: str, query: str = "") -> dict[str, Any]:
    """The HTTP API 2.0 GET fixture, sent to another path and query."""
    event = load("http_v2_get")
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["rawQueryString"] = query
    return event


@dataclass
class Context:
    """A Lambda context with only what the handler reads."""

    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    remaining_ms: int = 30_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@dataclass
class Clock:
    """Epoch seconds that move only when someone sleeps (or a test says so)."""

    now: float = START

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


Answer = Callable[[HttpRequest], HttpResponse]


def page_answer(request: HttpRequest) -> HttpResponse:
    """The local app: a page with an absolute link and two cookies."""
    body = b'<!doctype html><html><head></head><body><a href="/docs">docs</a></body></html>'
    headers = (
        ("content-type", "text/html; charset=utf-8"),
        ("set-cookie", "a=1; Path=/"),
        ("set-cookie", "b=2; Path=/app"),
    )
    return HttpResponse(request.request_id, 200, headers, body, 2)


@dataclass
class AgentClient:
    """A fake `apigatewaymanagementapi` client: the agent behind every connection.

    Whatever the gateway posts is decoded and kept; an `http_request` is answered with `answer`, split as
    a version-2 agent would and delivered through the handler as `$default` events.
    """

    answer: Answer = page_answer
    posted: list[tuple[str, TunnelMessage]] = field(default_factory=list)
    requests: list[HttpRequest] = field(default_factory=list)

    def post_to_connection(self, *, Data: bytes, ConnectionId: str) -> object:  # noqa: N803 (boto3's names)
        message = decode_frame(Data)
        self.posted.append((ConnectionId, message))
        if isinstance(message, HttpRequest):
            self.requests.append(message)
            for part in split_message(self.answer(message), chunking=True):
                reply = handler(frame_event(ConnectionId, encode_frame(part)), Context())
                assert reply == {"statusCode": 200}
        return {}

    def delete_connection(self, *, ConnectionId: str) -> object:  # noqa: N803 (boto3's names)
        return {}

    def established(self) -> ConnectionEstablished:
        return next(m for _, m in reversed(self.posted) if isinstance(m, ConnectionEstablished))


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "auth_mode": "jwt",
        "jwt_secret": SECRET,
        "public_url": PUBLIC,
        "management_endpoint": ENDPOINT,
        "resume_secret": RESUME_SECRET,
        "region": "eu-west-1",
    }
    return Settings(**{**values, **overrides})


@dataclass
class Rig:
    """A runtime over a MemoryStore and the fake agent, with a clock the gateway sleeps on."""

    runtime: Runtime
    store: MemoryStore
    agent: AgentClient
    clock: Clock

    def connect(self, connection_id: str = "conn-1=") -> str:
        """Open a connection and complete the handshake; returns the tunnel id."""
        assert handler(connect_event(connection_id, bearer=token()), Context()) == {"statusCode": 200}
        ready = load("websocket_default_text")["body"]
        assert handler(frame_event(connection_id, ready), Context()) == {"statusCode": 200}
        return self.agent.established().tunnel_id


def make_rig(store: MemoryStore | None = None, **settings: Any) -> Rig:
    clock = Clock()
    store = store if store is not None else MemoryStore(clock=clock)
    agent = AgentClient()
    runtime = build_runtime(
        make_settings(**settings), store=store, management_client=agent, clock=clock, sleep=clock.sleep
    )
    return Rig(runtime, store, agent, clock)


@pytest.fixture(autouse=True)
def _fresh_runtime() -> Iterator[None]:
    reset_runtime()
    yield
    reset_runtime()


@pytest.fixture
def rig() -> Rig:
    return make_rig()


def json_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """Every captured line, as written by the JSON formatter that the runtime configured."""
    return [json.loads(line) for line in caplog.text.splitlines()]


# --- $connect --------------------------------------------------------------------------------------------


def test_connect_with_a_valid_jwt_is_accepted(rig: Rig) -> None:
    """A `$connect` with a valid HS256 bearer token gets 200 and its connection is stored."""
    response = handler(connect_event("conn-1=", bearer=token()), Context())
    assert response == {"statusCode": 200}
    assert rig.store.get_connection("conn-1=") is not None  # type: ignore[arg-type]


def test_connect_with_the_token_in_the_query_is_accepted(rig: Rig) -> None:
    """A token in `?token=` works for clients that cannot set headers."""
    response = handler(connect_event("conn-q=", query={"token": token()}), Context())
    assert response == {"statusCode": 200}


@pytest.mark.parametrize(
    ("credential", "reason"),
    [
        (None, "no credentials"),
        ("placeholder.header.token", "token"),
        ("expired", "expired"),
        ("wrong-key", "signature"),
    ],
)
def test_connect_without_a_valid_jwt_is_refused(
    rig: Rig, caplog: pytest.LogCaptureFixture, credential: str | None, reason: str
) -> None:
    """A missing, malformed, expired or foreign token gets 401, and the log says why without the token."""
    presented = {
        "expired": token(exp=int(time.time()) - 3600),
        "wrong-key": jwt.encode({"sub": "x", "exp": int(time.time()) + 60}, "k" * 32, algorithm="HS256"),
    }.get(credential or "", credential)
    with caplog.at_level(logging.INFO):
        response = handler(connect_event("conn-2=", bearer=presented), Context())
    assert response == {"statusCode": 401}
    assert rig.store.get_connection("conn-2=") is None  # type: ignore[arg-type]
    refused = [line for line in json_lines(caplog) if line["message"] == "agent refused"]
    assert len(refused) == 1
    assert reason in refused[0]["reason"].lower()
    assert refused[0]["connection"] == "conn-2="
    if presented:
        assert presented not in caplog.text


def test_resume_token_brings_back_the_tunnel_id(rig: Rig) -> None:
    """An agent reconnecting with its resume token (query or header) gets its old tunnel id back."""
    tunnel_id = rig.connect("conn-1=")
    resume = rig.agent.established().resume_token
    assert resume is not None
    assert handler(disconnect_event("conn-1="), Context()) == {"statusCode": 200}
    event = connect_event("conn-2=", bearer=token(), query={"resume": resume})
    assert handler(event, Context()) == {"statusCode": 200}
    connection = rig.store.get_connection("conn-2=")  # type: ignore[arg-type]
    assert connection is not None
    assert connection.tunnel_id == tunnel_id
    assert handler(disconnect_event("conn-2="), Context()) == {"statusCode": 200}
    event = connect_event("conn-3=", bearer=token())
    event["headers"]["X-Tunnel-Resume"] = resume
    event["multiValueHeaders"]["X-Tunnel-Resume"] = [resume]
    assert handler(event, Context()) == {"statusCode": 200}
    connection = rig.store.get_connection("conn-3=")  # type: ignore[arg-type]
    assert connection is not None
    assert connection.tunnel_id == tunnel_id


def test_no_claimable_tunnel_id_is_a_503(caplog: pytest.LogCaptureFixture) -> None:
    """When the store accepts no new connection, `$connect` is refused with 503 and logged."""

    class FullStore(MemoryStore):
        def add_connection(self, connection: Connection) -> bool:
            return False

    make_rig(store=FullStore())
    assert handler(connect_event("conn-1=", bearer=token()), Context()) == {"statusCode": 503}
    assert "no tunnel id could be claimed" in caplog.text


# --- $default and $disconnect ------------------------------------------------------------------------------


def test_ready_is_answered_with_connection_established_and_the_urls() -> None:
    """After `$connect`, a `ready` frame makes the gateway post connection_established with both URLs."""
    rig = make_rig(domain="tunnel.example.com")
    tunnel_id = rig.connect()
    connection_id, established = rig.agent.posted[-1]
    assert connection_id == "conn-1="
    assert isinstance(established, ConnectionEstablished)
    assert established.tunnel_id == tunnel_id
    assert established.public_url == f"{PUBLIC}/{tunnel_id}"
    assert established.path_based_url == f"{PUBLIC}/{tunnel_id}"
    assert established.subdomain_url == f"https://{tunnel_id}.tunnel.example.com"
    assert established.protocol_version == 2


def test_bad_frame_is_answered_by_the_gateway(rig: Rig) -> None:
    """A `$default` frame that is not tunnel protocol gets 200 and an `error` frame, never an exception."""
    rig.connect()
    assert handler(frame_event("conn-1=", "{not json"), Context()) == {"statusCode": 200}
    _, reply = rig.agent.posted[-1]
    assert type(reply).__name__ == "ErrorMessage"


def test_disconnect_forgets_the_connection(rig: Rig) -> None:
    """`$disconnect` gets 200 and the tunnel stops answering (404)."""
    tunnel_id = rig.connect()
    assert handler(disconnect_event("conn-1="), Context()) == {"statusCode": 200}
    assert rig.store.get_connection("conn-1=") is None  # type: ignore[arg-type]
    assert handler(get_event(f"/{tunnel_id}/x"), Context())["statusCode"] == 404


# --- public requests ----------------------------------------------------------------------------------------


def test_full_exchange_through_the_agent(rig: Rig) -> None:
    """An HTTP API 2.0 GET reaches the agent with one Cookie header and comes back 200, Set-Cookie in
    `cookies`, links rewritten."""
    tunnel_id = rig.connect()
    response = handler(get_event(f"/{tunnel_id}/x", "q=a%26b&plus=1+2"), Context())
    assert response["statusCode"] == 200
    assert response["cookies"] == [f"a=1; Path=/{tunnel_id}", f"b=2; Path=/{tunnel_id}/app"]
    assert "set-cookie" not in response["headers"]
    assert f'href="/{tunnel_id}/docs"' in response["body"]
    assert response["isBase64Encoded"] is False
    (request,) = rig.agent.requests
    assert request.method == "GET"
    assert request.uri == "/x?q=a%26b&plus=1+2"
    # The event's `cookies` list travels on as the one Cookie header the browser sent (HTTP/1.1 has one).
    assert [value for name, value in request.headers if name == "cookie"] == ["session=abc123; theme=dark"]
    assert ("x-forwarded-prefix", f"/{tunnel_id}") in request.headers


def test_full_exchange_with_payload_1_0(rig: Rig) -> None:
    """A payload 1.0 PUT on a named stage is forwarded without the stage and answered in 1.0 shape."""
    tunnel_id = rig.connect()
    event = load("http_v1_put")
    event["path"] = event["requestContext"]["path"] = f"/dev/{tunnel_id}/items"
    response = handler(event, Context())
    assert response["statusCode"] == 200
    assert response["multiValueHeaders"]["set-cookie"] == [
        f"a=1; Path=/{tunnel_id}",
        f"b=2; Path=/{tunnel_id}/app",
    ]
    (request,) = rig.agent.requests
    assert (request.method, request.uri.partition("?")[0], request.body) == ("PUT", "/items", b"name=x&n=1")


def test_head_result_keeps_the_length_of_the_get(rig: Rig) -> None:
    """A HEAD is forwarded as HEAD and its Lambda result carries the app's Content-Length with no body."""
    rig.agent.answer = lambda request: HttpResponse(
        request.request_id,
        200,
        (("content-type", "application/octet-stream"), ("content-length", "1234")),
        b"",
        1,
    )
    tunnel_id = rig.connect()
    event = get_event(f"/{tunnel_id}/bytes/1234")
    event["requestContext"]["http"]["method"] = "HEAD"
    response = handler(event, Context())
    assert rig.agent.requests[0].method == "HEAD"
    assert (response["statusCode"], response["body"]) == (200, "")
    assert response["headers"]["content-length"] == "1234"


def test_request_without_a_host_header_is_routed_by_the_api_domain(rig: Rig) -> None:
    """An event without a Host header is routed with requestContext.domainName as the host."""
    tunnel_id = rig.connect()
    event = get_event(f"/{tunnel_id}/x")
    del event["headers"]["host"]
    assert handler(event, Context())["statusCode"] == 200
    (request,) = rig.agent.requests
    assert ("host", "gw.example.com") in request.headers


def test_short_function_timeout_is_logged(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    """An invocation with less time left than the response timeout still answers, and the log warns."""
    response = handler(load("http_v2_get"), Context(remaining_ms=3_000))
    assert response["statusCode"] == 404
    (line,) = [line for line in json_lines(caplog) if "TUNNEL_RESPONSE_TIMEOUT" in line["message"]]
    assert (line["level"], line["remaining_ms"]) == ("WARNING", 3_000)


def test_unknown_tunnel_is_a_404(rig: Rig) -> None:
    """A request for a tunnel nobody is connected to gets the gateway's 404 page."""
    response = handler(load("http_v2_get"), Context())
    assert response["statusCode"] == 404
    assert "k7q2x9m4p1w8z3c5" in response["body"]
    assert rig.agent.posted == []


def test_oversized_response_is_a_502(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    """A 5 MB binary answer, over Lambda's 6 MB once in base64, becomes a clear 502 page and is logged."""
    blob = bytes(range(256)) * (5 * 1024 * 1024 // 256)
    rig.agent.answer = lambda request: HttpResponse(
        request.request_id, 200, (("content-type", "application/octet-stream"),), blob, 1
    )
    tunnel_id = rig.connect()
    response = handler(get_event(f"/{tunnel_id}/big.bin"), Context())
    assert response["statusCode"] == 502
    assert "Response too large" in response["body"]
    assert str(MAX_RESPONSE_PAYLOAD_BYTES) in response["body"]
    assert len(json.dumps(response)) < 10_000
    (line,) = [line for line in json_lines(caplog) if line["message"] == "response too large for Lambda"]
    assert line["payload_bytes"] > MAX_RESPONSE_PAYLOAD_BYTES
    assert line["request"] == response["headers"]["x-tunnel-request-id"]


def test_http_without_a_management_endpoint_is_a_500(caplog: pytest.LogCaptureFixture) -> None:
    """Without TUNNEL_MANAGEMENT_ENDPOINT, an HTTP event gets a 500 page; only the log names the setting."""
    build_runtime(make_settings(management_endpoint=None), store=MemoryStore())
    context = Context()
    response = handler(load("http_v2_get"), context)
    assert response["statusCode"] == 500
    assert context.aws_request_id in response["body"]
    assert "TUNNEL_MANAGEMENT_ENDPOINT" not in response["body"]
    assert "TUNNEL_MANAGEMENT_ENDPOINT" in caplog.text


def test_management_endpoint_is_learnt_from_a_websocket_event() -> None:
    """Without a configured endpoint, the first WebSocket event names it: https://{domain}/{stage}."""
    runtime = build_runtime(make_settings(management_endpoint=None), store=MemoryStore())
    assert runtime.transport.current is None
    assert handler(connect_event("conn-1=", bearer=token()), Context()) == {"statusCode": 200}
    transport = runtime.transport.current
    assert transport is not None
    assert transport.client.meta.endpoint_url == ENDPOINT


# --- bad events and failures --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(p.stem for p in EVENTS.glob("bad_*.json")))
def test_bad_events_get_a_400(rig: Rig, caplog: pytest.LogCaptureFixture, name: str) -> None:
    """A broken event gets 400: with a short body when it is HTTP-shaped, a bare status otherwise."""
    response = handler(load(name), Context())
    assert response["statusCode"] == 400
    if name.startswith("bad_http"):
        assert response["body"].startswith("Bad request: ")
        assert len(response["body"]) < 300
    else:
        assert response == {"statusCode": 400}
    assert "bad event" in caplog.text


@pytest.mark.parametrize("name", sorted(p.stem for p in EVENTS.glob("unknown_*.json")))
def test_unknown_events_get_a_bare_400(rig: Rig, caplog: pytest.LogCaptureFixture, name: str) -> None:
    """An event of no known kind gets `{"statusCode": 400}` and a log line saying what was looked for."""
    assert handler(load(name), Context()) == {"statusCode": 400}
    assert "unknown event" in caplog.text


def test_exception_inside_is_a_500_with_the_request_id(caplog: pytest.LogCaptureFixture) -> None:
    """A failing store makes `$connect` a 500 carrying the request id; the traceback is only in the log."""

    class BrokenStore(MemoryStore):
        def add_connection(self, connection: Connection) -> bool:
            raise RuntimeError("the store is on fire")

    make_rig(store=BrokenStore())
    context = Context(aws_request_id="req-500")
    response = handler(connect_event("conn-1=", bearer=token()), context)
    assert response["statusCode"] == 500
    assert "req-500" in response["body"]
    assert "on fire" not in response["body"]
    (line,) = [line for line in json_lines(caplog) if line["message"] == "invocation failed"]
    assert line["aws_request_id"] == "req-500"
    assert "the store is on fire" in line["exception"]


def test_failing_cleanup_is_a_500() -> None:
    """A scheduled cleanup that fails answers 500 with the request id instead of raising."""

    class BrokenStore(MemoryStore):
        def cleanup(self, *, page_size: int = 100) -> Any:
            raise RuntimeError("scan failed")

    make_rig(store=BrokenStore())
    response = handler(load("scheduled_cleanup"), Context(aws_request_id="req-cleanup"))
    assert response == {"statusCode": 500, "body": "Internal error; request id req-cleanup"}


@pytest.mark.parametrize(
    ("public_url", "reason"),
    [(None, "required"), ("https://abc.execute-api.eu-west-1.amazonaws.com/prod", "origin")],
)
def test_public_url_must_be_an_origin(public_url: str | None, reason: str) -> None:
    """Building the runtime needs TUNNEL_PUBLIC_URL as a bare origin; the error names the variable."""
    with pytest.raises(ValueError, match="TUNNEL_PUBLIC_URL") as info:
        build_runtime(make_settings(public_url=public_url), store=MemoryStore())
    assert reason in str(info.value)


def test_failure_around_a_public_request_is_a_500_page(rig: Rig) -> None:
    """An unexpected error while handling an HTTP event becomes a 500 page with the request id."""

    class BrokenContext(Context):
        def get_remaining_time_in_millis(self) -> int:
            raise RuntimeError("no clock")

    response = handler(load("http_v2_get"), BrokenContext(aws_request_id="req-page"))
    assert response["statusCode"] == 500
    assert response["headers"]["x-tunnel-request-id"] == "req-page"
    assert "req-page" in response["body"]
    assert "no clock" not in response["body"]


def test_unusable_settings_from_the_environment_are_a_500(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Settings that fail to load answer 500 and log the variable to fix; the next call tries again."""
    monkeypatch.setenv("TUNNEL_AUTH", "none")
    monkeypatch.delenv("TUNNEL_PUBLIC_URL", raising=False)
    response = handler(connect_event("conn-1=", bearer=token()), Context())
    assert response["statusCode"] == 500
    assert "TUNNEL_PUBLIC_URL" in caplog.text
    assert "TUNNEL_PUBLIC_URL" not in response["body"]
    assert current_runtime() is None


# --- the schedule -------------------------------------------------------------------------------------------


def test_scheduled_cleanup_removes_expired_connections(rig: Rig) -> None:
    """The EventBridge schedule runs the cleanup and answers with a JSON-able summary of what went."""
    rig.connect()
    rig.clock.now += 4 * 3600  # past the connection's TTL (3 h)
    summary = handler(load("scheduled_cleanup"), Context())
    assert summary["event"] == "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa"
    assert summary["connections"] == 1
    assert summary["removed"] >= 1
    assert json.loads(json.dumps(summary)) == summary


# --- logs ---------------------------------------------------------------------------------------------------


def test_logs_are_json_lines_without_tokens(caplog: pytest.LogCaptureFixture) -> None:
    """With logging configured by the runtime, every line is one JSON object and no token appears."""
    make_rig()
    good, bad = token(), token(exp=int(time.time()) - 600)
    handler(connect_event("conn-1=", bearer=good), Context(aws_request_id="req-good"))
    handler(connect_event("conn-2=", bearer=bad), Context(aws_request_id="req-bad"))
    lines = [json.loads(line) for line in caplog.text.splitlines()]
    assert lines
    assert {"time", "level", "logger", "message"} <= set(lines[0])
    accepted = next(line for line in lines if line["message"] == "agent accepted")
    assert (accepted["aws_request_id"], accepted["connection"]) == ("req-good", "conn-1=")
    assert "tunnel" in accepted
    refused = next(line for line in lines if line["message"] == "agent refused")
    assert refused["aws_request_id"] == "req-bad"
    assert good not in caplog.text
    assert bad not in caplog.text


def test_public_request_logs_carry_polls_but_no_body_credentials_or_cookies(
    rig: Rig, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """A POST with a body, Cookie and Authorization, answered with a Set-Cookie, leaves none of them in
    the JSON logs or the metrics on stdout, and its log line counts the polls."""
    body, cookie, credential, set_cookie = "body-7f3a", "c-91b2", "auth-55c1", "sc-0d4e"
    rig.agent.answer = lambda request: HttpResponse(
        request.request_id,
        201,
        (("content-type", "text/plain"), ("set-cookie", f"sid={set_cookie}; Path=/")),
        b"created",
        2,
    )
    tunnel_id = rig.connect()
    caplog.set_level(logging.DEBUG)
    event = load("http_v2_post_json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/{tunnel_id}/api/items"
    event["body"] = json.dumps({"name": body})
    event["cookies"] = [f"session={cookie}"]
    event["headers"]["authorization"] = f"Bearer {credential}"
    response = handler(event, Context(aws_request_id="req-public"))
    assert response["statusCode"] == 201
    assert response["cookies"] == [f"sid={set_cookie}; Path=/{tunnel_id}"]
    (request,) = rig.agent.requests
    assert body.encode() in request.body
    assert (("cookie", f"session={cookie}")) in request.headers
    assert (("authorization", f"Bearer {credential}")) in request.headers
    lines = json_lines(caplog)
    (line,) = [line for line in lines if line["message"] == "public request"]
    assert (line["aws_request_id"], line["status"], line["method"]) == ("req-public", 201, "POST")
    assert line["polls"] >= 1
    assert line["request"]
    written = caplog.text + capsys.readouterr().out
    assert '"SendAttempts"' in written  # the transport's metrics line is in what was searched
    for secret in (body, cookie, credential, set_cookie):
        assert secret not in written


def test_formatter_drops_secret_and_body_fields() -> None:
    """Extra fields named like credentials, cookies or bodies never reach a log line, whoever passes them."""
    record = logging.makeLogRecord(
        {
            "name": "lambda_app.test",
            "levelno": logging.INFO,
            "levelname": "INFO",
            "msg": "hello %s",
            "args": ("world",),
            "authorization": "Bearer abc",
            "Cookie": "session=abc",
            "token": "abc",
            "body": b"secret body",
            "connection": "conn-1=",
            "details": {"set-cookie": "a=1", "status": 200, "path": ("a", "b")},
        }
    )
    with request_context("req-log"):
        line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "hello world"
    assert line["aws_request_id"] == "req-log"
    assert line["connection"] == "conn-1="
    assert line["details"] == {"status": 200, "path": ["a", "b"]}
    for key in ("authorization", "Cookie", "token", "body"):
        assert key not in line
    assert "abc" not in json.dumps(line)


def test_configure_logging_adds_a_json_handler_when_there_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside Lambda (no root handler), configuring logging adds one that writes JSON lines to the stream."""
    import io

    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", root.level)
    stream = io.StringIO()
    configure_logging("WARNING", stream=stream)
    configure_logging("WARNING", stream=stream)
    assert len(root.handlers) == 1
    logging.getLogger("lambda_app.test").warning("careful", extra={"reason": "test"})
    logging.getLogger("lambda_app.test").info("not shown")
    (line,) = stream.getvalue().splitlines()
    assert json.loads(line)["reason"] == "test"


# --- the runtime, built from the environment ----------------------------------------------------------------


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """A moto server on a free loopback port, speaking DynamoDB's API."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.mark.integration
def test_runtime_is_built_once_from_the_environment(
    moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first invocation builds the runtime from TUNNEL_* variables (DynamoDB at its endpoint override)."""
    suffix = uuid.uuid4().hex[:8]
    tables = (f"connections-{suffix}", f"pending-{suffix}")
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "TUNNEL_AUTH": "jwt",
        "TUNNEL_JWT_SECRET": SECRET,
        "TUNNEL_PUBLIC_URL": PUBLIC,
        "TUNNEL_MANAGEMENT_ENDPOINT": "http://127.0.0.1:9",
        "TUNNEL_DYNAMODB_ENDPOINT": moto_endpoint,
        "TUNNEL_CONNECTIONS_TABLE": tables[0],
        "TUNNEL_PENDING_TABLE": tables[1],
    }.items():
        monkeypatch.setenv(name, value)
    create_tables(boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name="us-east-1"), *tables)
    assert handler(connect_event("conn-1=", bearer=token()), Context()) == {"statusCode": 200}
    runtime = current_runtime()
    assert runtime is not None
    assert runtime.settings.dynamodb_endpoint == moto_endpoint
    assert handler(disconnect_event("conn-1="), Context()) == {"statusCode": 200}
    summary = handler(load("scheduled_cleanup"), Context())
    assert summary["pages"] >= 1
    assert current_runtime() is runtime


def test_fake_client_is_a_management_client() -> None:
    """The fake agent client satisfies the transport's client Protocol (checked by mypy here)."""
    client: ManagementApiClient = AgentClient()
    assert client.delete_connection(ConnectionId="x") == {}
