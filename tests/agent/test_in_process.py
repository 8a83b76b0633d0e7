"""Tests for agent/in_process.py: an agent and the self-hosted gateway in one event loop, joined without a
socket, in front of a real local app on loopback. The public side talks to the gateway's ASGI app through
httpx's ASGI transport, so the only sockets are the agent's to the local app."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosedOK, InvalidStatus

from agent.in_process import MemoryConnection, connect_in_process
from agent.serve import SelfHostedGateway, ServeConfig, ServerEvent
from agent.tunnel import Agent, AgentConfig, AgentConnection, AgentEvent, Connector
from lambda_app.auth import Authenticator, SharedTokenVerifier
from tests.support.echo_app import create_echo_app, pattern_bytes
from tests.support.servers import serve_in_thread
from transport.codec import decode_frame, encode_frame
from transport.messages import (
    SUPPORTED_FEATURES,
    ConnectionEstablished,
    HttpRequest,
    HttpResponse,
    Ready,
    TunnelMessage,
)

TOKEN = "in-process-token"
PUBLIC = "http://gw.test"


@pytest.fixture(scope="module")
def app_port() -> Any:
    with serve_in_thread(create_echo_app()) as server:
        yield server.port


def gateway(events: list[ServerEvent]) -> SelfHostedGateway:
    config = ServeConfig(public_url=PUBLIC, resume_secret=b"k" * 32)
    return SelfHostedGateway(config, Authenticator(SharedTokenVerifier(TOKEN)), on_event=events.append)


def connector(app: SelfHostedGateway) -> Connector:
    async def connect(uri: str, headers: Mapping[str, str] | None) -> AgentConnection:
        return await connect_in_process(app, uri, headers=headers)

    return connect


async def next_event(events: list[AgentEvent], kind: str, after: int = 0) -> AgentEvent:
    async with asyncio.timeout(10):
        while True:
            found = [event for event in events[after:] if event["event"] == kind]
            if found:
                return found[0]
            await asyncio.sleep(0.01)


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 60))


async def running_agent(
    app: SelfHostedGateway, port: int, events: list[AgentEvent], **options: Any
) -> asyncio.Task[None]:
    config = AgentConfig(endpoint="ws://gw.test/", local_port=port, token=TOKEN, **options)
    return asyncio.create_task(Agent(config, on_event=events.append, connector=connector(app)).run())


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def test_requests_cross_to_the_agent_without_a_socket(app_port: int) -> None:
    async def test() -> None:
        server_events: list[ServerEvent] = []
        app = gateway(server_events)
        events: list[AgentEvent] = []
        agent = await running_agent(app, app_port, events)
        try:
            ready = await next_event(events, "ready")
            tunnel = str(ready["tunnel_id"])
            assert ready["path_url"] == f"{PUBLIC}/{tunnel}"
            asgi = httpx.ASGITransport(app=app)  # type: ignore[arg-type]  # dict scopes, not MutableMapping
            public = httpx.AsyncClient(transport=asgi, base_url=PUBLIC)
            async with public:
                echo = await public.post(f"/{tunnel}/echo?x=1", content=b"hello")
                assert echo.status_code == 200
                seen = echo.json()
                assert (seen["method"], seen["path"], seen["query"]) == ("POST", "/echo", "x=1")
                assert seen["body_sha256"] == hashlib.sha256(b"hello").hexdigest()
                # 3 MB streams as body chunks under the 1 MiB flow-control window, in memory.
                download = await public.get(f"/{tunnel}/stream/{3 * 1024 * 1024}")
                assert download.status_code == 200
                assert download.content == pattern_bytes(3 * 1024 * 1024)
                upload = pattern_bytes(600_000)
                sent = await public.put(f"/{tunnel}/upload", content=upload)
                assert sent.json() == {"length": len(upload), "sha256": hashlib.sha256(upload).hexdigest()}
        finally:
            await stop(agent)
        connected = [event for event in server_events if event["event"] == "agent_connected"]
        assert [event["tunnel_id"] for event in connected] == [tunnel]
        assert connected[0]["client"] == "127.0.0.1"
        assert app.transport.connection_ids == frozenset()  # the agent's stop let the gateway forget it
        assert [event["tunnel_id"] for event in server_events if event["event"] == "agent_disconnected"] == [
            tunnel
        ]

    run(test)


def test_a_wrong_token_is_refused_as_over_the_network() -> None:
    async def test() -> None:
        app = gateway([])
        with pytest.raises(InvalidStatus) as refused:
            await connect_in_process(app, "ws://gw.test/", headers={"Authorization": "Bearer wrong"})
        assert refused.value.response.status_code == 401
        with pytest.raises(InvalidStatus) as missing:
            await connect_in_process(app, "ws://gw.test/")
        assert missing.value.response.status_code == 401
        assert app.transport.connection_ids == frozenset()

    run(test)


def test_the_gateway_closing_the_connection_ends_it_and_the_agent_returns_with_its_id(app_port: int) -> None:
    async def test() -> None:
        app = gateway([])
        events: list[AgentEvent] = []
        agent = await running_agent(app, app_port, events, backoff_initial=0.05)
        try:
            first = await next_event(events, "ready")
            (connection_id,) = app.transport.connection_ids
            await app.transport.close(connection_id)
            reconnecting = await next_event(events, "reconnecting")
            assert "closed" in str(reconnecting["reason"])
            again = await next_event(events, "ready", after=events.index(reconnecting))
            assert again["tunnel_id"] == first["tunnel_id"]
            assert again["resumed"] is True
            assert app.transport.connection_ids != {connection_id}
        finally:
            await stop(agent)

    run(test)


def test_closing_the_agent_end() -> None:
    async def test() -> None:
        server_events: list[ServerEvent] = []
        app = gateway(server_events)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        connection = await connect_in_process(app, "ws://gw.test/", headers=headers)
        assert isinstance(connection, MemoryConnection)
        assert len(app.transport.connection_ids) == 1
        await connection.send(encode_frame(Ready(protocol_version=2, local_origin="http://127.0.0.1:1")))
        frame = await connection.recv()  # through the gateway's logic and back
        assert isinstance(frame, str)
        answer = decode_frame(frame)
        assert isinstance(answer, ConnectionEstablished)
        assert answer.tunnel_id in answer.public_url
        await connection.close(1000, "done")
        assert app.transport.connection_ids == frozenset()
        assert (connection.close_code, connection.close_reason) == (1000, "done")
        with pytest.raises(ConnectionClosedOK):
            await connection.send("{}")
        frames: AsyncIterator[str | TunnelMessage] = connection.__aiter__()
        assert [frame async for frame in frames] == []  # iteration ends quietly after a normal close
        assert [event["event"] for event in server_events] == ["agent_connected", "agent_disconnected"]

    run(test)


def test_messages_cross_unencoded_both_ways() -> None:
    """An in-process connection hands the gateway's `http_request` to the agent as the object, and the
    agent's `http_response` back the same way; frames (here the handshake's) still work beside them."""

    async def test() -> None:
        app = gateway([])
        headers = {"Authorization": f"Bearer {TOKEN}"}
        connection = await connect_in_process(app, "ws://gw.test/", headers=headers)
        ready = Ready(protocol_version=2, features=SUPPORTED_FEATURES, local_origin="http://127.0.0.1:1")
        await connection.send_message(ready)
        frame = await connection.recv()
        assert isinstance(frame, str)
        established = decode_frame(frame)
        assert isinstance(established, ConnectionEstablished)
        asgi = httpx.ASGITransport(app=app)  # type: ignore[arg-type]  # dict scopes, not MutableMapping
        async with httpx.AsyncClient(transport=asgi, base_url=PUBLIC) as public:
            answer = asyncio.create_task(public.get(f"/{established.tunnel_id}/hello?x=1"))
            request = await connection.recv()
            assert isinstance(request, HttpRequest)
            assert request.uri == "/hello?x=1"
            await connection.send_message(
                HttpResponse(request.request_id, 201, headers=(("x-agent", "yes"),), body=b"made")
            )
            response = await answer
        assert response.status_code == 201
        assert response.headers["x-agent"] == "yes"
        assert response.content == b"made"
        await connection.close()

    run(test)
