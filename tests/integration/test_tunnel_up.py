"""The self-hosted tunnel end to end: `tunnel up` and `tunnel serve` + `tunnel agent` (the real CLI, in
subprocesses) in front of a real local app on loopback.

Issue 5's list: methods, binary bodies, a 20 MB response and a 5 MB upload byte-exact, cookies and
redirects, the local app down (502) and back, a slow app (504), 200 concurrent requests, host mode, and a
gateway restart after which the agent reconnects and keeps its tunnel id.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.support.cli import RunningTunnel, start_tunnel
from tests.support.echo_app import create_echo_app, pattern_bytes
from tests.support.servers import RunningServer, closed_port, serve_in_thread

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def local_app() -> Iterator[RunningServer]:
    """The app the developer exposes."""
    with serve_in_thread(create_echo_app()) as server:
        yield server


@pytest.fixture(scope="module")
def tunnel(local_app: RunningServer) -> Iterator[RunningTunnel]:
    """`tunnel up` in front of the local app; the local app has 3 s to answer."""
    running = start_tunnel(["up", str(local_app.port), "--gateway-port", "0", "--timeout", "3"])
    try:
        yield running
    finally:
        assert running.stop() == 0


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    """The public side: a plain HTTP client that does not follow redirects."""
    with httpx.Client(timeout=60, follow_redirects=False) as http:
        yield http


def test_ready_event_names_both_modes(tunnel: RunningTunnel) -> None:
    """The ready line carries the path-mode and host-mode URLs of one tunnel id."""
    ready = tunnel.ready
    tunnel_id = str(ready["tunnel_id"])
    assert ready["path_url"].startswith("http://127.0.0.1:")
    assert ready["path_url"].endswith("/" + tunnel_id)
    assert ready["host_url"].startswith(f"http://{tunnel_id}.localhost:")
    assert ready["handshake_ms"] >= 0


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_methods_reach_the_local_app(tunnel: RunningTunnel, client: httpx.Client, method: str) -> None:
    """Each method arrives at the local app with the prefix stripped, the body intact, and the proxy
    headers set."""
    body = b"" if method in ("GET", "DELETE", "OPTIONS") else f"payload for {method}".encode()
    response = client.request(method, f"{tunnel.url}/echo", content=body)
    assert response.status_code == 200
    echo = response.json()
    assert (echo["method"], echo["path"]) == (method, "/echo")
    assert echo["body_sha256"] == hashlib.sha256(body).hexdigest()
    headers = {k.lower(): v for k, v in echo["headers"]}
    assert headers["x-forwarded-prefix"] == "/" + str(tunnel.ready["tunnel_id"])
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"


def test_head_keeps_the_length_of_the_get(tunnel: RunningTunnel, client: httpx.Client) -> None:
    """HEAD answers with the headers the GET would have, its Content-Length included, and no body."""
    response = client.head(f"{tunnel.url}/bytes/1234")
    assert response.status_code == 200
    assert response.headers["content-length"] == "1234"
    assert response.content == b""


def test_binary_and_20_mb_response_are_byte_exact(tunnel: RunningTunnel, client: httpx.Client) -> None:
    """Binary bodies, up to 20 MB, come back byte for byte."""
    for size in (0, 5000, 20 * 1024 * 1024):
        response = client.get(f"{tunnel.url}/bytes/{size}")
        assert response.status_code == 200
        assert response.content == pattern_bytes(size)


def test_5_mb_upload_is_byte_exact(tunnel: RunningTunnel, client: httpx.Client) -> None:
    """A 5 MB upload reaches the local app whole."""
    upload = pattern_bytes(5 * 1024 * 1024)[::-1]
    response = client.post(f"{tunnel.url}/upload", content=upload)
    assert response.status_code == 200
    assert response.json() == {"length": len(upload), "sha256": hashlib.sha256(upload).hexdigest()}


def test_cookies_and_redirects(tunnel: RunningTunnel, client: httpx.Client) -> None:
    """Cookies go both ways (two Set-Cookie stay two, with the prefix); a redirect is passed on, pointing
    inside the tunnel."""
    prefix = "/" + str(tunnel.ready["tunnel_id"])
    cookies = client.get(f"{tunnel.url}/cookies").headers.get_list("set-cookie")
    assert len(cookies) == 2
    assert any(f"Path={prefix}" in c and c.startswith("session=s1") for c in cookies)
    assert any(f"Path={prefix}/settings" in c and c.startswith("theme=dark") for c in cookies)
    echo = client.get(f"{tunnel.url}/echo", headers={"cookie": "session=s1; theme=dark"}).json()
    assert ["cookie", "session=s1; theme=dark"] in echo["headers"]
    redirect = client.get(f"{tunnel.url}/redirect")
    assert redirect.status_code == 302
    assert redirect.headers["location"].endswith(f"{prefix}/echo")


def test_query_strings_pass_unchanged(tunnel: RunningTunnel, client: httpx.Client) -> None:
    """The raw query, with &, =, % and +, reaches the local app exactly as sent."""
    query = "a=1&b=x%20y&c=a+b&d=%2B%26&e==&f"
    assert client.get(httpx.URL(f"{tunnel.url}/echo?{query}")).json()["query"] == query


def test_host_mode_serves_the_same_tunnel_without_a_prefix(
    tunnel: RunningTunnel, client: httpx.Client
) -> None:
    """`<id>.localhost` reaches the same app with no prefix to strip or add."""
    port = httpx.URL(tunnel.url).port
    tunnel_id = tunnel.ready["tunnel_id"]
    response = client.get(
        f"http://127.0.0.1:{port}/redirect", headers={"host": f"{tunnel_id}.localhost:{port}"}
    )
    assert response.status_code == 302
    assert response.headers["location"] in ("/echo", f"http://{tunnel_id}.localhost:{port}/echo")
    echo = client.get(
        f"http://127.0.0.1:{port}/echo", headers={"host": f"{tunnel_id}.localhost:{port}"}
    ).json()
    headers = {k.lower(): v for k, v in echo["headers"]}
    assert echo["path"] == "/echo"
    assert "x-forwarded-prefix" not in headers
    assert headers["x-forwarded-host"] == f"{tunnel_id}.localhost:{port}"


def test_unknown_tunnel_is_404_and_names_no_other(tunnel: RunningTunnel, client: httpx.Client) -> None:
    """A tunnel id nobody holds gets the 404 page, which does not reveal the tunnel that exists."""
    port = httpx.URL(tunnel.url).port
    for url in (f"http://127.0.0.1:{port}/abcdefghijklmnop/echo", f"http://127.0.0.1:{port}/"):
        response = client.get(url)
        assert response.status_code == 404
        assert str(tunnel.ready["tunnel_id"]).encode() not in response.content


def test_slow_app_gets_a_504(tunnel: RunningTunnel, client: httpx.Client) -> None:
    """An app slower than the agent's timeout (3 s here) gets a 504 page, in time."""
    started = time.monotonic()
    response = client.get(f"{tunnel.url}/slow?seconds=8")
    assert response.status_code == 504
    assert time.monotonic() - started < 7


def test_200_concurrent_requests_are_all_answered(tunnel: RunningTunnel) -> None:
    """200 requests at once each get their own answer."""

    async def main() -> list[tuple[int, str]]:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(timeout=60, limits=limits) as http:

            async def one(i: int) -> tuple[int, str]:
                response = await http.get(f"{tunnel.url}/echo?n={i}")
                return response.status_code, response.json()["query"]

            return await asyncio.gather(*(one(i) for i in range(200)))

    results = asyncio.run(main())
    assert results == [(200, f"n={i}") for i in range(200)]


def test_public_websocket_is_refused_plainly(tunnel: RunningTunnel) -> None:
    """A WebSocket upgrade for a tunnel gets a 501 page: the tunnel carries HTTP exchanges only."""

    async def main() -> int:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(tunnel.url.replace("http://", "ws://") + "/socket"):
                pass
        return refused.value.response.status_code

    assert asyncio.run(main()) == 501


def test_local_app_down_is_502_then_back(client: httpx.Client) -> None:
    """Nothing on the local port: 502 naming the port, the tunnel stays up; once the app starts, 200."""
    port = closed_port()
    running = start_tunnel(["up", str(port), "--gateway-port", "0"])
    try:
        down = client.get(f"{running.url}/echo")
        assert down.status_code == 502
        assert f"port {port}".encode() in down.content
        with serve_in_thread(create_echo_app(), port=port):
            assert client.get(f"{running.url}/echo").status_code == 200
    finally:
        assert running.stop() == 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_gateway_restart_keeps_the_tunnel_id(
    local_app: RunningServer, client: httpx.Client, tmp_path: Path
) -> None:
    """`tunnel serve` stops and starts again on its port; the agent reconnects with its resume token and
    gets its tunnel id back (the resume secret is kept in the state directory)."""
    port = _free_port()
    token = "s3cret-token-for-the-test"
    serve_args = ["serve", "--port", str(port), "--token", token]
    env = {"XDG_STATE_HOME": str(tmp_path)}
    gateway = start_tunnel(serve_args, env=env)
    assert gateway.ready["agent_endpoint"] == f"ws://127.0.0.1:{port}/"
    agent = start_tunnel(
        ["agent", str(local_app.port), "--endpoint", f"ws://127.0.0.1:{port}/", "--token", token]
    )
    try:
        tunnel_id = agent.ready["tunnel_id"]
        assert client.get(f"{agent.url}/echo").status_code == 200
        assert gateway.stop() == 0
        assert (tmp_path / "http-tunnel" / "resume-secret").stat().st_mode & 0o077 == 0
        gateway = start_tunnel(serve_args, env=env)
        again = agent.wait_for(lambda event: event.get("event") == "ready", timeout=30)
        assert again["tunnel_id"] == tunnel_id
        assert again["resumed"] is True
        assert client.get(f"{agent.url}/echo").status_code == 200
    finally:
        agent.stop()
        gateway.stop()


def test_serve_refuses_agents_without_the_token(local_app: RunningServer) -> None:
    """`tunnel serve` generates a token when none is given, prints it, and refuses agents without it."""
    gateway = start_tunnel(["serve", "--port", "0"])
    try:
        token = gateway.ready["token"]
        assert isinstance(token, str)
        assert len(token) >= 20
        endpoint = gateway.ready["agent_endpoint"]

        async def refused() -> int:
            with pytest.raises(InvalidStatus) as refusal:
                async with connect(endpoint, additional_headers={"Authorization": "Bearer wrong"}):
                    pass
            return refusal.value.response.status_code

        assert asyncio.run(refused()) == 401
    finally:
        gateway.stop()


def test_body_limit_and_tunnel_concurrency(local_app: RunningServer, client: httpx.Client) -> None:
    """A body over `--body-limit` gets 413; a request over `--tunnel-concurrency` gets 503 with
    Retry-After, while the one in flight is answered."""
    gateway = start_tunnel(
        ["serve", "--port", "0", "--auth", "none", "--body-limit", "1000", "--tunnel-concurrency", "1"]
    )
    endpoint = str(gateway.ready["agent_endpoint"])
    agent = start_tunnel(["agent", str(local_app.port), "--endpoint", endpoint])
    try:
        assert client.post(f"{agent.url}/upload", content=b"x" * 1001).status_code == 413
        assert client.post(f"{agent.url}/upload", content=b"x" * 1000).status_code == 200

        async def both() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=30) as http:
                slow = asyncio.create_task(http.get(f"{agent.url}/slow?seconds=1.5"))
                await asyncio.sleep(0.5)
                busy = await http.get(f"{agent.url}/echo")
                return [await slow, busy]

        slow, busy = asyncio.run(both())
        assert slow.status_code == 200
        assert busy.status_code == 503
        assert busy.headers["retry-after"] == "1"
    finally:
        agent.stop()
        gateway.stop()


def test_host_header_rewrite_reaches_the_local_app(local_app: RunningServer, client: httpx.Client) -> None:
    """`tunnel up --host-header rewrite` sends the local address as Host, for dev servers that check it;
    the public host still travels as X-Forwarded-Host."""
    running = start_tunnel(["up", str(local_app.port), "--gateway-port", "0", "--host-header", "rewrite"])
    try:
        echo = client.get(f"{running.url}/echo").json()
        headers = {k.lower(): v for k, v in echo["headers"]}
        assert headers["host"] == f"127.0.0.1:{local_app.port}"
        assert headers["x-forwarded-host"] == httpx.URL(running.url).netloc.decode()
    finally:
        assert running.stop() == 0
