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
from collections.abc import Iterator

import httpx
import pytest

from agent.tunnel import Agent, AgentConfig
from lambda_app.emulate import Emulator, EmulatorConfig, EmulatorThread
from tests.support.cli import RunningTunnel, start_tunnel
from tests.support.echo_app import create_echo_app, pattern_bytes
from tests.support.servers import RunningServer, serve_in_thread

pytestmark = pytest.mark.integration

# The gateway gives up on the agent after 3 s here (25 s in production); the emulated HTTP API after 10 s
# (30 s on AWS). A 504 from the gateway therefore proves it answered before API Gateway would have.
ENVIRONMENT = {"TUNNEL_RESPONSE_TIMEOUT": "3", "TUNNEL_REQUEST_TTL": "60"}


def start_agent(local_port: int, endpoint: str) -> RunningTunnel:
    """Start the agent CLI and wait (bounded) for its ready line."""
    return start_tunnel(["agent", str(local_port), "--endpoint", endpoint, "--timeout", "20"])


@pytest.fixture(scope="module")
def local_app() -> Iterator[RunningServer]:
    """The app the developer exposes."""
    with serve_in_thread(create_echo_app()) as server:
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


def test_head_answers_without_a_body(agent: RunningTunnel, client: httpx.Client) -> None:
    """HEAD answers 200 with the GET's headers and no body (API Gateway sets the length it sends)."""
    response = client.head(f"{agent.url}/bytes/1234")
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-type"] == "application/octet-stream"


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


def test_12_mb_response_is_a_clear_502(agent: RunningTunnel, client: httpx.Client) -> None:
    """A response larger than Lambda's 6 MB payload is refused with a 502 page, not a hang."""
    response = client.get(f"{agent.url}/bytes/{12 * 1024 * 1024}")
    assert response.status_code == 502
    assert b"limit" in response.content


def test_cookies_and_redirects(agent: RunningTunnel, client: httpx.Client) -> None:
    """Two Set-Cookie headers stay two and get the prefix; a redirect is passed on, pointing inside."""
    prefix = "/" + str(agent.ready["tunnel_id"])
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
    """An app slower than the response timeout gets the gateway's 504, not API Gateway's 503."""
    response = client.get(f"{agent.url}/slow?seconds=6")
    assert response.status_code == 504


def test_killed_agent_is_502_and_forgotten(
    local_app: RunningServer, emulator: Emulator, client: httpx.Client
) -> None:
    """An agent killed while a request waits gives that request a 502; its tunnel is then gone (404)."""
    victim = start_agent(local_app.port, emulator.urls.websocket_url)
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
        assert client.get(f"{victim.url}/echo").status_code == 404
    finally:
        victim.stop()


def test_thirty_agents_through_the_dispatch_race(local_app: RunningServer, client: httpx.Client) -> None:
    """30 agents connecting at once, each refused for up to 300 ms after $connect, are all established."""
    config = EmulatorConfig(env=ENVIRONMENT, cleanup_interval=0, dispatch_race_ms=300)
    with EmulatorThread(Emulator(config)) as racing:
        ready: list[dict[str, object]] = []

        async def main() -> None:
            done = asyncio.Event()

            def sink(event: dict[str, object]) -> None:
                if event.get("event") == "ready":
                    ready.append(event)
                    if len(ready) == 30:
                        done.set()

            agents = [
                Agent(
                    AgentConfig(
                        endpoint=racing.urls.websocket_url, local_port=local_app.port, output="quiet"
                    ),
                    on_event=sink,
                )
                for _ in range(30)
            ]
            tasks = [asyncio.create_task(a.run()) for a in agents]
            try:
                await asyncio.wait_for(done.wait(), timeout=60)
                urls = [str(event["path_url"]) for event in ready]
                responses = await asyncio.gather(*(asyncio.to_thread(client.get, f"{u}/echo") for u in urls))
                assert [r.status_code for r in responses] == [200] * 30
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run(main())
        assert len({event["tunnel_id"] for event in ready}) == 30
