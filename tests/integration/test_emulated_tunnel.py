"""The Lambda tunnel end to end: `tunnel agent` (the real CLI, in a subprocess) in front of a real local
app, connected to `tunnel emulate` running the real handler against DynamoDB (moto in server mode).

Issue 4's list: methods, binary bodies, a 4 MB response and a 2 MB upload byte-exact, a 12 MB response
refused with a clear 502, cookies, query strings, an unknown tunnel, a killed agent, a slow app, and 30
agents connecting at once through API Gateway's dispatch race.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import boto3
import httpx
import pytest

from agent.tunnel import Agent, AgentConfig
from lambda_app.emulate import Emulator, EmulatorConfig, EmulatorThread
from tests.support.cli import RunningTunnel, start_tunnel
from tests.support.echo_app import create_echo_app, pattern_bytes
from tests.support.servers import RunningServer, serve_in_thread

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

pytestmark = pytest.mark.integration

# The gateway gives up on the agent after 3 s here (25 s in production); the emulated HTTP API after 10 s
# (30 s on AWS). A 504 from the gateway therefore proves it answered before API Gateway would have.
ENVIRONMENT = {"TUNNEL_RESPONSE_TIMEOUT": "3", "TUNNEL_REQUEST_TTL": "60"}


def start_agent(local_port: int, endpoint: str) -> RunningTunnel:
    """Start the agent CLI and wait (bounded) for its ready line."""
    return start_tunnel(["agent", str(local_port), "--endpoint", endpoint, "--timeout", "20"])


class Recorder:
    """ASGI middleware that notes the method, path and query of every request reaching the local app."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[tuple[str, str, str]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.seen.append((scope["method"], scope["path"], scope["query_string"].decode("latin-1")))
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def recorder() -> Recorder:
    """What reached the local app."""
    return Recorder(create_echo_app())


@pytest.fixture(scope="module")
def local_app(recorder: Recorder) -> Iterator[RunningServer]:
    """The app the developer exposes."""
    with serve_in_thread(recorder) as server:
        yield server


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    """API Gateway, Lambda and DynamoDB on loopback, running the real handler."""
    config = EmulatorConfig(env=ENVIRONMENT, cleanup_interval=0, http_timeout=10)
    with EmulatorThread(Emulator(config)) as running:
        yield running


@pytest.fixture(scope="module")
def agent(local_app: RunningServer, emulator: Emulator) -> Iterator[RunningTunnel]:
    """One agent for the module's tests."""
    running = start_agent(local_app.port, emulator.urls.websocket_url)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    """The public side: a plain HTTP client that does not follow redirects."""
    with httpx.Client(timeout=60, follow_redirects=False) as http:
        yield http


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_methods_reach_the_local_app(agent: RunningTunnel, client: httpx.Client, method: str) -> None:
    """Each method arrives at the local app with the prefix stripped and the body intact."""
    body = b"" if method in ("GET", "DELETE", "OPTIONS") else f"payload for {method}".encode()
    response = client.request(method, f"{agent.url}/echo", content=body)
    assert response.status_code == 200
    echo = response.json()
    assert echo["method"] == method
    assert echo["path"] == "/echo"
    assert echo["body_sha256"] == hashlib.sha256(body).hexdigest()
    headers = {k.lower(): v for k, v in echo["headers"]}
    assert headers["x-forwarded-prefix"] == "/" + str(agent.ready["tunnel_id"])


def test_head_reaches_the_app_as_head(agent: RunningTunnel, client: httpx.Client, recorder: Recorder) -> None:
    """HEAD reaches the local app as HEAD and answers 200 with the GET's headers, but (as API Gateway
    frames it) Content-Length 0."""
    get = client.get(f"{agent.url}/bytes/1234?probe=get")
    head = client.head(f"{agent.url}/bytes/1234?probe=head")
    assert ("HEAD", "/bytes/1234", "probe=head") in recorder.seen
    assert ("GET", "/bytes/1234", "probe=head") not in recorder.seen
    assert (get.status_code, head.status_code) == (200, 200)
    assert get.headers["content-length"] == "1234"
    assert head.headers["content-type"] == get.headers["content-type"] == "application/octet-stream"
    # The handler hands API Gateway the app's `content-length: 1234` (tests/lambda_app/test_handler.py),
    # but API Gateway frames the response itself: it sets Content-Length from the body it sends, and the
    # emulator does the same, so a HEAD through the Lambda path says 0. AWS documents nothing specific for
    # HEAD, and RFC 9110 section 8.6 says a HEAD response should carry the GET's length or none; the
    # self-hosted gateway keeps 1234. This pins down the emulated behaviour, so a change is noticed.
    assert head.headers["content-length"] == "0"


def test_binary_and_4_mb_response_are_byte_exact(agent: RunningTunnel, client: httpx.Client) -> None:
    """Binary bodies, up to 4 MB, come back byte for byte through chunks and DynamoDB."""
    for size in (5000, 4 * 1024 * 1024):
        response = client.get(f"{agent.url}/bytes/{size}")
        assert response.status_code == 200
        assert response.content == pattern_bytes(size)


def test_2_mb_upload_is_byte_exact(agent: RunningTunnel, client: httpx.Client) -> None:
    """A 2 MB upload reaches the local app whole."""
    upload = pattern_bytes(2 * 1024 * 1024)[::-1]
    response = client.post(f"{agent.url}/upload", content=upload)
    assert response.status_code == 200
    assert response.json() == {"length": len(upload), "sha256": hashlib.sha256(upload).hexdigest()}


def test_12_mb_response_is_a_clear_502(local_app: RunningServer, client: httpx.Client) -> None:
    """A response larger than Lambda's 6 MB payload is refused with a 502 page soon after it arrives."""
    # The whole body crosses DynamoDB before the handler can measure it, which can take longer than the
    # module's 3 s response timeout on a loaded machine: this gateway waits the production 25 s instead.
    config = EmulatorConfig(env={**ENVIRONMENT, "TUNNEL_RESPONSE_TIMEOUT": "25"}, cleanup_interval=0)
    with EmulatorThread(Emulator(config)) as roomy:
        running = start_agent(local_app.port, roomy.urls.websocket_url)
        try:
            started = time.monotonic()
            response = client.get(f"{running.url}/bytes/{12 * 1024 * 1024}")
            elapsed = time.monotonic() - started
        finally:
            running.stop()
    assert response.status_code == 502
    assert b"limit of AWS Lambda responses" in response.content
    assert elapsed < 20  # not a hang: far below the client's 60 s and before the gateway's own 504


def test_cookies_and_redirects(agent: RunningTunnel, client: httpx.Client) -> None:
    """Cookie reaches the app; two Set-Cookie headers stay two with the prefix; a redirect points inside."""
    prefix = "/" + str(agent.ready["tunnel_id"])
    echoed = client.get(f"{agent.url}/echo", headers={"cookie": "session=s1; theme=dark"}).json()
    assert [value for name, value in echoed["headers"] if name == "cookie"] == ["session=s1; theme=dark"]
    cookies = client.get(f"{agent.url}/cookies").headers.get_list("set-cookie")
    assert len(cookies) == 2
    assert any(f"Path={prefix}" in c and c.startswith("session=s1") for c in cookies)
    assert any(f"Path={prefix}/settings" in c and c.startswith("theme=dark") for c in cookies)
    redirect = client.get(f"{agent.url}/redirect")
    assert redirect.status_code == 302
    assert redirect.headers["location"].endswith(f"{prefix}/echo")


def test_query_strings_pass_unchanged(agent: RunningTunnel, client: httpx.Client) -> None:
    """The raw query, with &, =, % and +, reaches the local app exactly as sent."""
    query = "a=1&b=x%20y&c=a+b&d=%2B%26&e==&f"
    response = client.get(httpx.URL(f"{agent.url}/echo?{query}"))
    assert response.json()["query"] == query


def test_unknown_tunnel_is_404(emulator: Emulator, client: httpx.Client) -> None:
    """A tunnel id nobody holds gets the 404 page."""
    response = client.get(f"{emulator.urls.http_url.rstrip('/')}/abcdefghijklmnop/echo")
    assert response.status_code == 404
    assert b"not connected" in response.content


def test_slow_app_gets_a_504_before_api_gateway_gives_up(agent: RunningTunnel, client: httpx.Client) -> None:
    """An app slower than the response timeout gets the gateway's 504 at about 3 s, not API Gateway's 503."""
    started = time.monotonic()
    response = client.get(f"{agent.url}/slow?seconds=6")
    elapsed = time.monotonic() - started
    assert response.status_code == 504
    # The gateway's 3 s timeout fired: not the app's 6 s answer, nor the emulated HTTP API's 10 s.
    assert 2.5 <= elapsed < 8


def connections_table(emulator: Emulator) -> tuple[DynamoDBClient, str]:
    """A boto3 client for the emulator's DynamoDB and the name of its connections table."""
    env = emulator.environment
    client = boto3.client(
        "dynamodb",
        endpoint_url=env["TUNNEL_DYNAMODB_ENDPOINT"],
        region_name=env["AWS_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    return client, env["TUNNEL_CONNECTIONS_TABLE"]


def read_item(dynamodb: DynamoDBClient, table: str, key: str) -> dict[str, Any] | None:
    """One item of the connections table by its key, read strongly consistent."""
    item = dynamodb.get_item(TableName=table, Key={"connectionId": {"S": key}}, ConsistentRead=True)
    return item.get("Item")


def test_killed_agent_is_502_and_forgotten(
    local_app: RunningServer, emulator: Emulator, client: httpx.Client
) -> None:
    """An agent killed while a request waits gives that request a 502; its connection item is deleted from
    DynamoDB and its tunnel is then gone (404)."""
    victim = start_agent(local_app.port, emulator.urls.websocket_url)
    dynamodb, table = connections_table(emulator)
    claim = read_item(dynamodb, table, f"tunnel#{victim.ready['tunnel_id']}")
    assert claim is not None
    connection_id = claim["owner"]["S"]
    assert read_item(dynamodb, table, connection_id) is not None
    result: dict[str, httpx.Response] = {}

    def call() -> None:
        result["response"] = client.get(f"{victim.url}/slow?seconds=8")

    waiting = threading.Thread(target=call)
    waiting.start()
    try:
        threading.Event().wait(1.0)  # let the request reach the agent
        victim.process.kill()
        waiting.join(timeout=30)
        assert result["response"].status_code == 502
        assert read_item(dynamodb, table, connection_id) is None
        released = read_item(dynamodb, table, f"tunnel#{victim.ready['tunnel_id']}")
        assert released is None or "owner" not in released  # gone, or only kept for a resume token
        assert client.get(f"{victim.url}/echo").status_code == 404
    finally:
        victim.stop()
        dynamodb.close()


def test_thirty_agents_through_the_dispatch_race(local_app: RunningServer, client: httpx.Client) -> None:
    """30 agents connecting at once, each refused for 500 ms after $connect, are all established (their
    refused posts retried) and forward; so is one more connecting alone, whose first post is refused."""
    # 30 connects at once take the emulator 0.2 to over 0.7 s from $connect to the first post, so API
    # Gateway's few hundred milliseconds (--dispatch-race-ms 300) would refuse few posts or none. Every
    # connection gets the whole of a 500 ms window instead: many first posts fall in it, and the sender's
    # fourth try (after at least 75 + 150 + 300 ms) always falls past it, within its 1.5 s budget. On a
    # busy machine all 30 first posts may come after their window; the agent connecting alone, to an idle
    # emulator, posts within tens of milliseconds: its refusal is certain.
    config = EmulatorConfig(env=ENVIRONMENT, cleanup_interval=0, dispatch_race_ms=500)
    with EmulatorThread(Emulator(config, rng=lambda: 1.0)) as racing:
        ready: list[dict[str, object]] = []
        refused_before_the_last = 0

        async def main() -> None:
            nonlocal refused_before_the_last
            done = asyncio.Event()

            def sink(event: dict[str, object]) -> None:
                if event.get("event") == "ready":
                    ready.append(event)
                    if len(ready) in (30, 31):
                        done.set()

            def agent() -> Agent:
                config = AgentConfig(
                    endpoint=racing.urls.websocket_url, local_port=local_app.port, output="quiet"
                )
                return Agent(config, on_event=sink)

            tasks = [asyncio.create_task(agent().run()) for _ in range(30)]
            try:
                await asyncio.wait_for(done.wait(), timeout=60)
                done.clear()
                refused_before_the_last = racing.stats["refused_posts"]
                tasks.append(asyncio.create_task(agent().run()))
                await asyncio.wait_for(done.wait(), timeout=30)
                urls = [str(event["path_url"]) for event in ready]
                responses = await asyncio.gather(*(asyncio.to_thread(client.get, f"{u}/echo") for u in urls))
                assert [r.status_code for r in responses] == [200] * 31
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run(main())
        assert len({event["tunnel_id"] for event in ready}) == 31
        assert racing.stats["refused_posts"] > refused_before_the_last
