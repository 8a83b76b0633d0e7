"""`tunnel emulate` on loopback: real-shaped events, AWS's limits, and `@connections` as boto3 sees it.

A stand-in handler records every event and answers by route; each test starts an emulator on free ports
(sharing one moto server) and stops it in teardown. The last test runs the real `lambda_app.handler`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import boto3
import httpx
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Frame, Opcode
from websockets.sync.client import ClientConnection, connect
from websockets.uri import parse_uri

from lambda_app.emulate import Emulator, EmulatorConfig, EmulatorThread, InvocationContext
from lambda_app.events import HttpEvent, ScheduledEvent, WebSocketEvent, parse_event

if TYPE_CHECKING:
    from mypy_boto3_apigatewaymanagementapi import ApiGatewayManagementApiClient

pytestmark = pytest.mark.integration

_PAYLOAD_LIMIT = 256 * 1024


class StandIn:
    """A stand-in Lambda handler: records events, rejects `?reject=N`, and answers HTTP by path."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        assert isinstance(context, InvocationContext)
        assert context.get_remaining_time_in_millis() > 0
        with self._lock:
            self.events.append(event)
        if event.get("version") == "2.0":
            return self._http(event)
        query = event.get("queryStringParameters") or {}
        if "reject" in query:
            return {"statusCode": int(query["reject"])}
        return {"statusCode": 200}

    def _http(self, event: dict[str, Any]) -> Any:
        path = event["rawPath"]
        if path == "/slow":
            time.sleep(0.8)
        if path == "/huge":
            return {"statusCode": 200, "body": "x" * (_PAYLOAD_LIMIT + 1)}
        if path == "/raise":
            raise RuntimeError("the function failed")
        if path == "/malformed":
            return {"statusCode": "two hundred"}
        if path == "/bare":
            return {"answer": 42}
        if path == "/cookies":
            return {
                "statusCode": 201,
                "headers": {"content-type": "application/octet-stream", "x-one": "1"},
                "multiValueHeaders": {"x-many": ["a", "b"]},
                "cookies": ["a=1; Path=/", "b=2; HttpOnly"],
                "body": base64.b64encode(b"\x00\xffbinary").decode("ascii"),
                "isBase64Encoded": True,
            }
        return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps(event)}

    def routes(self, route_key: str) -> list[dict[str, Any]]:
        """The recorded WebSocket events of one route."""
        with self._lock:
            return [e for e in self.events if e.get("requestContext", {}).get("routeKey") == route_key]

    def wait_for(self, route_key: str, count: int = 1) -> list[dict[str, Any]]:
        """Wait (up to 5 s) until `count` events of a route have arrived."""
        deadline = time.monotonic() + 5
        while len(self.routes(route_key)) < count:
            assert time.monotonic() < deadline, f"no {route_key} event arrived"
            time.sleep(0.01)
        return self.routes(route_key)


@pytest.fixture(scope="module")
def dynamodb() -> Iterator[str]:
    """One moto server for the module's emulators."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def stand_in() -> StandIn:
    """A fresh recording handler."""
    return StandIn()


StartEmulator = Callable[..., Emulator]


@pytest.fixture
def start(dynamodb: str, stand_in: StandIn) -> Iterator[StartEmulator]:
    """Starts an emulator around the stand-in handler (config overrides as keywords); stopped in teardown."""
    running: list[EmulatorThread] = []

    def run(rng: Callable[[], float] | None = None, **overrides: Any) -> Emulator:
        settings: dict[str, Any] = {
            "dynamodb_endpoint": dynamodb,
            "payload_limit": _PAYLOAD_LIMIT,
            "http_timeout": 0.3,
            "cleanup_interval": 0,
        }
        config = EmulatorConfig(**{**settings, **overrides})
        emulator = Emulator(config, stand_in) if rng is None else Emulator(config, stand_in, rng=rng)
        thread = EmulatorThread(emulator)
        result = thread.__enter__()
        running.append(thread)
        return result

    yield run
    for thread in running:
        thread.__exit__(None, None, None)


def _management(emulator: Emulator) -> ApiGatewayManagementApiClient:
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=emulator.urls.management_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1}),
    )


def _child_env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[2])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}


def _connect(emulator: Emulator, suffix: str = "", **kwargs: Any) -> ClientConnection:
    client: ClientConnection = connect(
        emulator.urls.websocket_url + suffix, open_timeout=5, close_timeout=2, **kwargs
    )
    return client


def test_websocket_events_are_real_shaped(start: StartEmulator, stand_in: StandIn) -> None:
    """Connecting, sending text and binary, and closing invoke $connect, $default twice and $disconnect."""
    emulator = start()
    with _connect(
        emulator, "prod?token=abc&x=1&x=2", additional_headers={"Authorization": "Bearer t0k"}
    ) as ws:
        ws.send('{"type":"ready"}')
        ws.send(b"\x00\x01")
        stand_in.wait_for("$default", 2)
    (connect_event,) = stand_in.wait_for("$connect")
    (disconnect_event,) = stand_in.wait_for("$disconnect")
    context = connect_event["requestContext"]
    assert context["eventType"] == "CONNECT"
    assert len(context["connectionId"]) == 16
    assert context["stage"] == "prod"
    assert context["identity"]["sourceIp"] == "127.0.0.1"
    assert abs(context["connectedAt"] - time.time() * 1000) < 10_000
    assert connect_event["headers"]["Authorization"] == "Bearer t0k"
    assert connect_event["multiValueHeaders"]["Authorization"] == ["Bearer t0k"]
    assert connect_event["multiValueQueryStringParameters"]["x"] == ["1", "2"]
    assert connect_event["queryStringParameters"]["token"] == "abc"
    parsed = parse_event(connect_event)
    assert isinstance(parsed, WebSocketEvent)
    assert parsed.header("authorization") == "Bearer t0k"
    assert parsed.query_param("token") == "abc"
    text, binary = sorted(stand_in.routes("$default"), key=lambda e: e["isBase64Encoded"])
    assert text["body"] == '{"type":"ready"}'
    assert text["requestContext"]["eventType"] == "MESSAGE"
    assert binary["isBase64Encoded"] is True
    assert base64.b64decode(binary["body"]) == b"\x00\x01"
    assert {e["requestContext"]["connectionId"] for e in stand_in.events} == {context["connectionId"]}
    assert disconnect_event["requestContext"]["eventType"] == "DISCONNECT"
    assert disconnect_event["requestContext"]["disconnectStatusCode"] == 1000
    assert isinstance(parse_event(disconnect_event), WebSocketEvent)


def test_connect_rejection_status_reaches_the_client(start: StartEmulator, stand_in: StandIn) -> None:
    """A $connect answer of 401 fails the client's handshake with 401 and no $disconnect follows."""
    emulator = start()
    with pytest.raises(InvalidStatus) as info, _connect(emulator, "?reject=401"):
        pass
    assert info.value.response.status_code == 401
    time.sleep(0.1)
    assert stand_in.routes("$disconnect") == []


def test_oversized_message_and_frame_close_with_1009(start: StartEmulator, stand_in: StandIn) -> None:
    """A 129 KB message in small frames, and one 33 KB frame, each close the connection with 1009."""
    emulator = start()
    with _connect(emulator) as ws:
        ws.send(["a" * 16 * 1024 for _ in range(9)])  # 144 KB in 16 KB frames
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=5)
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1009
    with _connect(emulator) as ws:
        ws.send("b" * 33 * 1024)
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=5)
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1009
    with _connect(emulator) as ws:
        ws.send(["c" * 30 * 1024 for _ in range(4)])  # 120 KB in 30 KB frames is fine
        stand_in.wait_for("$default")
    assert len(stand_in.routes("$default")[0]["body"]) == 120 * 1024


def test_http_events_are_real_shaped(start: StartEmulator, stand_in: StandIn) -> None:
    """The raw query survives, repeated headers join with commas, cookies split, binary bodies go base64."""
    emulator = start()
    query = "q=a%26b%3Dc&plus=1+2&pct=100%25&eq==x&flag&q=second"
    with httpx.Client(base_url=emulator.urls.http_url, timeout=5) as client:
        reply = client.get(
            f"/k7q2x9/search?{query}",
            headers=[("x-custom", "one"), ("x-custom", "two"), ("cookie", "session=abc; theme=dark")],
        )
        upload = client.post(
            "/k7q2x9/upload", content=bytes(range(256)), headers={"content-type": "image/png"}
        )
    assert reply.status_code == 200
    assert reply.headers["apigw-requestid"]
    event = reply.json()
    assert event["version"] == "2.0"
    assert event["routeKey"] == "$default"
    assert event["rawPath"] == "/k7q2x9/search"
    assert event["rawQueryString"] == query
    assert event["queryStringParameters"]["q"] == "a&b=c,second"
    assert event["queryStringParameters"]["plus"] == "1 2"
    assert event["headers"]["x-custom"] == "one,two"
    assert "cookie" not in event["headers"]
    assert event["cookies"] == ["session=abc", "theme=dark"]
    http = event["requestContext"]["http"]
    assert http == {
        "method": "GET",
        "path": "/k7q2x9/search",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": event["headers"]["user-agent"],
    }
    assert event["requestContext"]["stage"] == "$default"
    assert event["requestContext"]["requestId"] == reply.headers["apigw-requestid"]
    parsed = parse_event(event)
    assert isinstance(parsed, HttpEvent)
    assert parsed.uri == f"/k7q2x9/search?{query}"
    posted = upload.json()
    assert posted["isBase64Encoded"] is True
    assert base64.b64decode(posted["body"]) == bytes(range(256))


def test_handler_results_are_translated_to_http(start: StartEmulator) -> None:
    """Cookies become separate Set-Cookie lines, multi-value headers repeat, base64 bodies are decoded."""
    emulator = start()
    with httpx.Client(base_url=emulator.urls.http_url, timeout=5) as client:
        reply = client.get("/cookies")
        bare = client.get("/bare")
    assert reply.status_code == 201
    assert reply.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; HttpOnly"]
    assert reply.headers.get_list("x-many") == ["a", "b"]
    assert reply.headers["x-one"] == "1"
    assert reply.content == b"\x00\xffbinary"
    assert bare.status_code == 200
    assert bare.headers["content-type"] == "application/json"
    assert bare.json() == {"answer": 42}


def test_payload_limits_and_timeout(start: StartEmulator) -> None:
    """A request or a result over the payload limit gets 413 and 500; a slow handler gets 503."""
    emulator = start()
    with httpx.Client(base_url=emulator.urls.http_url, timeout=5) as client:
        too_big = client.post("/upload", content=b"x" * (_PAYLOAD_LIMIT + 1))
        huge = client.get("/huge")
        slow = client.get("/slow")
    assert too_big.status_code == 413
    assert too_big.json() == {"message": "Request Entity Too Large"}
    assert huge.status_code == 500
    assert huge.json() == {"message": "Internal Server Error"}
    assert slow.status_code == 503
    assert slow.json() == {"message": "Service Unavailable"}


def test_function_errors_become_500(start: StartEmulator) -> None:
    """A handler that raises, or returns a malformed result, gets API Gateway's 500 body."""
    emulator = start()
    with httpx.Client(base_url=emulator.urls.http_url, timeout=5) as client:
        replies = [client.get("/raise"), client.get("/malformed")]
    for reply in replies:
        assert reply.status_code == 500
        assert reply.json() == {"message": "Internal Server Error"}


def test_scheduled_cleanup_and_idle_timeout(start: StartEmulator, stand_in: StandIn) -> None:
    """Schedule events arrive every interval, and an idle connection is closed with 1001 and disconnected."""
    emulator = start(cleanup_interval=0.1, idle_timeout=0.3)
    with _connect(emulator) as ws, pytest.raises(ConnectionClosed) as info:
        ws.recv(timeout=5)
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1001
    (disconnect,) = stand_in.wait_for("$disconnect")
    assert disconnect["requestContext"]["disconnectStatusCode"] == 1001
    with stand_in._lock:
        schedules = [e for e in stand_in.events if e.get("detail-type") == "Scheduled Event"]
    assert len(schedules) >= 2
    assert isinstance(parse_event(schedules[0]), ScheduledEvent)


def test_post_to_connection_through_boto3(start: StartEmulator, stand_in: StandIn) -> None:
    """boto3 posts reach the socket; GET describes it; unknown ids, oversized data and DELETE behave."""
    emulator = start()
    management = _management(emulator)
    try:
        with _connect(emulator) as ws:
            (connect_event,) = stand_in.wait_for("$connect")
            connection_id = connect_event["requestContext"]["connectionId"]
            management.post_to_connection(ConnectionId=connection_id, Data=b'{"type":"pong"}')
            assert ws.recv(timeout=5) == '{"type":"pong"}'
            large = "y" * 100_000  # over one 32 KB frame: sent as fragments of one message
            management.post_to_connection(ConnectionId=connection_id, Data=large.encode())
            assert ws.recv(timeout=5) == large
            info = management.get_connection(ConnectionId=connection_id)
            assert info["Identity"]["SourceIp"] == "127.0.0.1"
            assert info["ConnectedAt"].year >= 2026
            with pytest.raises(management.exceptions.GoneException):
                management.post_to_connection(ConnectionId="Xy7pLcOFvHcCIhw=", Data=b"{}")
            with pytest.raises(management.exceptions.PayloadTooLargeException):
                management.post_to_connection(ConnectionId=connection_id, Data=b"z" * (128 * 1024 + 1))
            management.delete_connection(ConnectionId=connection_id)
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=5)
        stand_in.wait_for("$disconnect")
        with pytest.raises(management.exceptions.GoneException):
            management.post_to_connection(ConnectionId=connection_id, Data=b"{}")
    finally:
        management.close()


def test_dispatch_race_refuses_early_posts(start: StartEmulator, stand_in: StandIn) -> None:
    """With --dispatch-race-ms 300, a post right after $connect is Gone and counted; a later one arrives."""
    emulator = start(dispatch_race_ms=300, rng=lambda: 1.0)
    management = _management(emulator)
    try:
        with _connect(emulator) as ws:
            connection_id = stand_in.wait_for("$connect")[0]["requestContext"]["connectionId"]
            with pytest.raises(management.exceptions.GoneException):
                management.post_to_connection(ConnectionId=connection_id, Data=b"early")
            assert emulator.stats == {"posts": 0, "refused_posts": 1}
            time.sleep(0.35)
            management.post_to_connection(ConnectionId=connection_id, Data=b"late")
            assert ws.recv(timeout=5) == "late"
            assert emulator.stats == {"posts": 1, "refused_posts": 1}
            with pytest.raises(management.exceptions.GoneException):  # not the race: counted apart
                management.post_to_connection(ConnectionId="Xy7pLcOFvHcCIhw=", Data=b"{}")
            assert emulator.stats == {"posts": 1, "refused_posts": 1}
    finally:
        management.close()


def test_management_api_forbids_other_paths_and_methods(start: StartEmulator) -> None:
    """A request outside POST/GET/DELETE /{stage}/@connections/{id} gets AWS's 403 ForbiddenException."""
    emulator = start()
    origin = emulator.urls.management_url.rsplit("/", 1)[0]
    requests = [
        ("POST", "/dev/@connections/abc"),  # another stage
        ("POST", "/prod/@connections"),  # no connection id
        ("POST", "/prod/@connections/"),
        ("POST", "/prod/connections/abc"),
        ("POST", "/prod/@connections/abc/more"),
        ("PUT", "/prod/@connections/abc"),
        ("PATCH", "/prod/@connections/abc"),
    ]
    with httpx.Client(timeout=5) as client:
        replies = [client.request(method, origin + path, content=b"{}") for method, path in requests]
    assert [reply.status_code for reply in replies] == [403] * len(requests)
    for reply in replies:
        assert reply.headers["x-amzn-errortype"] == "ForbiddenException"
        assert reply.json() == {"message": "Forbidden"}


def test_boto3_sees_forbidden_for_another_stage(start: StartEmulator) -> None:
    """boto3 pointed at a stage the API does not have raises ForbiddenException, as against AWS."""
    emulator = start()
    management = boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=emulator.urls.management_url.rsplit("/", 1)[0] + "/dev",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1}),
    )
    try:
        with pytest.raises(management.exceptions.ForbiddenException):
            management.post_to_connection(ConnectionId="Xy7pLcOFvHcCIhw=", Data=b"{}")
    finally:
        management.close()


def test_get_and_delete_of_an_unknown_connection_are_gone(start: StartEmulator) -> None:
    """GET and DELETE on a connection id nobody holds raise GoneException (410), like a POST."""
    emulator = start()
    management = _management(emulator)
    try:
        with pytest.raises(management.exceptions.GoneException) as info:
            management.get_connection(ConnectionId="Xy7pLcOFvHcCIhw=")
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 410
        with pytest.raises(management.exceptions.GoneException):
            management.delete_connection(ConnectionId="Xy7pLcOFvHcCIhw=")
    finally:
        management.close()


def _read_frames(sock: socket.socket, protocol: ClientProtocol, count: int = 0) -> list[Frame]:
    """Feed the socket to the sans-I/O protocol until the handshake (count=0) or a whole message arrived."""
    frames: list[Frame] = []
    while True:
        data = sock.recv(65536)
        assert data, "the emulator closed the connection"
        protocol.receive_data(data)
        for event in protocol.events_received():
            if count == 0:
                return frames  # the handshake's response
            assert isinstance(event, Frame)
            frames.append(event)
            if event.fin and event.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
                return frames


def test_posts_reach_the_client_in_frames_of_at_most_32_kb(start: StartEmulator, stand_in: StandIn) -> None:
    """A 100 KB post leaves the emulator as one message in several frames, none over API Gateway's 32 KB."""
    emulator = start()
    url = emulator.urls.websocket_url
    protocol = ClientProtocol(parse_uri(url), max_size=None)
    host, port = urlsplit(url).hostname, urlsplit(url).port
    assert host is not None
    assert port is not None
    message = "".join(chr(0x41 + i % 26) for i in range(100_000))
    management = _management(emulator)
    with socket.create_connection((host, port), timeout=5) as sock:
        try:
            protocol.send_request(protocol.connect())
            sock.sendall(b"".join(protocol.data_to_send()))
            _read_frames(sock, protocol)
            connection_id = stand_in.wait_for("$connect")[0]["requestContext"]["connectionId"]
            management.post_to_connection(ConnectionId=connection_id, Data=message.encode())
            frames = _read_frames(sock, protocol, count=1)
        finally:
            management.close()
            protocol.send_close()
            sock.sendall(b"".join(protocol.data_to_send()))
    sizes = [len(frame.data) for frame in frames]
    assert len(frames) >= 4
    assert max(sizes) == 32 * 1024
    assert [frame.opcode for frame in frames] == [Opcode.TEXT] + [Opcode.CONT] * (len(frames) - 1)
    assert [frame.fin for frame in frames] == [False] * (len(frames) - 1) + [True]
    assert b"".join(frame.data for frame in frames).decode() == message


def _keep_active(ws: ClientConnection, until: float) -> None:
    """Send a message every 0.1 s until the deadline (or until the connection closes, which raises)."""
    while time.monotonic() < until:
        ws.send('{"type":"ping"}')
        with contextlib.suppress(TimeoutError):
            ws.recv(timeout=0.1)


def test_connection_is_closed_at_the_maximum_duration(start: StartEmulator, stand_in: StandIn) -> None:
    """A connection kept active is still closed with 1001 once max_connection_duration (2 h on AWS) is up."""
    emulator = start(max_connection_duration=0.8, idle_timeout=0.3)
    with _connect(emulator) as ws:
        opened = time.monotonic()
        with pytest.raises(ConnectionClosed) as info:
            _keep_active(ws, until=opened + 5)
        lasted = time.monotonic() - opened
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1001
    assert 0.7 <= lasted < 5
    (disconnect,) = stand_in.wait_for("$disconnect")
    assert disconnect["requestContext"]["disconnectStatusCode"] == 1001


def test_real_handler_forwards_a_public_request() -> None:
    """With the real handler and its own moto server, ready is answered through a 300 ms dispatch race
    (the refused post retried) and a public request is relayed."""
    pytest.importorskip("lambda_app.handler")
    config = EmulatorConfig(cleanup_interval=0, env={"TUNNEL_LOG_LEVEL": "WARNING"}, dispatch_race_ms=300)
    with EmulatorThread(Emulator(config, rng=lambda: 1.0)) as emulator, _connect(emulator) as agent:
        opened = time.monotonic()
        agent.send(json.dumps({"type": "ready"}))
        established = json.loads(agent.recv(timeout=10))
        assert established["type"] == "connection_established"
        assert time.monotonic() - opened >= 0.25  # delivered only once the window had passed
        assert emulator.stats["refused_posts"] >= 1
        tunnel_id = established["tunnel_id"]
        replies: list[httpx.Response] = []

        def public_request() -> None:
            with httpx.Client(timeout=20) as client:
                replies.append(client.get(f"{emulator.urls.http_url}{tunnel_id}/hello?a=1&b=%2B"))

        requester = threading.Thread(target=public_request)
        requester.start()
        try:
            request = json.loads(agent.recv(timeout=10))
            assert request["type"] == "http_request"
            assert request["method"] == "GET"
            assert request["uri"].endswith("/hello?a=1&b=%2B")
            answer = {
                "type": "http_response",
                "request_id": request["request_id"],
                "status_code": 200,
                "headers": {"content-type": ["text/plain"], "set-cookie": ["a=1", "b=2"]},
                "body": base64.b64encode(b"hello from the agent").decode("ascii"),
                "processing_time_ms": 1,
            }
            agent.send(json.dumps(answer))
        finally:
            requester.join(20)
    (reply,) = replies
    assert reply.status_code == 200
    assert reply.content == b"hello from the agent"
    assert reply.headers.get_list("set-cookie") == ["a=1", "b=2"]


def test_cli_prints_ready_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    """`tunnel emulate --json` prints one ready line with the four URLs and exits 0 on SIGINT."""
    pytest.importorskip("lambda_app.handler")
    command = [sys.executable, "-m", "agent.cli", "emulate", "--json", "--port-ws", "0", "--port-http", "0"]
    command += ["--port-management", "0", "--env", "TUNNEL_LOG_LEVEL=WARNING"]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=tmp_path, env=_child_env()
    ) as process:
        try:
            assert process.stdout is not None
            ready = json.loads(process.stdout.readline())
            assert ready["event"] == "ready"
            assert ready["websocket_url"].startswith("ws://127.0.0.1:")
            assert ready["management_url"].endswith("/prod")
            with httpx.Client(timeout=10) as client:
                assert client.get(ready["http_url"] + "nosuchtunnel/").status_code == 404
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=15) == 0
            assert json.loads(process.stdout.readline()) == {"event": "stopped"}
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
