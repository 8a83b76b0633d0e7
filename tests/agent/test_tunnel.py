"""Tests for agent/tunnel.py (and the `tunnel agent` command line): a real agent against a loopback gateway.

The gateway here is a test-only websockets server that speaks the tunnel protocol through
`TunnelProtocol("gateway")`, as the self-hosted gateway does, and sends the requests each test asks for;
the local app is a real starlette app served by uvicorn. Frame sizes are read from the server's websockets
debug log, which names every frame it receives.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import io
import json
import logging
import os
import random
import signal
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame

from agent.agent_cli import agent_config_from_args, event_printer, format_event
from agent.cli import build_parser
from agent.tunnel import Agent, AgentConfig, AgentEvent, reconnect_delays
from lambda_app.app import Gateway, GatewayConfig, PublicRequest, PublicResponse
from lambda_app.store_memory import MemoryStore
from tests.agent.test_forward import LocalApp
from tests.support.servers import RunningServer, closed_port, serve_in_thread
from transport.chunking import MAX_WEBSOCKET_FRAME_BYTES, split_frame
from transport.codec import decode_frame, encode_frame
from transport.errors import ConnectionGone
from transport.local import new_connection_id
from transport.messages import (
    ConnectionEstablished,
    ConnectionId,
    ErrorMessage,
    HttpRequest,
    HttpResponse,
    Ping,
    Ready,
    TunnelId,
    new_request_id,
)
from transport.protocol import TunnelProtocol

Answer = HttpResponse | ErrorMessage


class _FrameLog(logging.Handler):
    """Collects the payload size of every frame the server receives (websockets logs them at DEBUG)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.sizes: list[int] = []

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args
        if record.msg == "< %s" and isinstance(args, tuple) and args and isinstance(args[0], Frame):
            self.sizes.append(len(args[0].data))


class GatewaySide:
    """One agent connection as the test gateway sees it."""

    def __init__(self, websocket: ServerConnection, tunnel_id: str, *, version: int) -> None:
        self.websocket = websocket
        self.tunnel_id = tunnel_id
        # A version-1 (`ttf`) gateway knows nothing of negotiation: it is version 1 from the start.
        self.protocol = TunnelProtocol("gateway", version=1) if version == 1 else TunnelProtocol("gateway")
        self.ready: Ready | None = None
        self.pings = 0
        self.mute = False  # True: send nothing more, like a connection that died silently
        self.answers: dict[str, asyncio.Future[Answer]] = {}

    @property
    def query(self) -> dict[str, list[str]]:
        """The query parameters of the WebSocket handshake request."""
        assert self.websocket.request is not None
        return parse_qs(urlsplit(self.websocket.request.path).query)

    @property
    def authorization(self) -> str | None:
        """The Authorization header of the handshake request."""
        assert self.websocket.request is not None
        return self.websocket.request.headers.get("Authorization")

    async def flush(self) -> None:
        """Send what the protocol queued, as API Gateway would: frames of at most 32 KB."""
        frames = self.protocol.frames_to_send()
        if self.mute:
            return
        for frame in frames:
            if len(frame) > MAX_WEBSOCKET_FRAME_BYTES:
                await self.websocket.send(split_frame(frame))
            else:
                await self.websocket.send(frame)

    async def request(
        self, uri: str, *, method: str = "GET", body: bytes = b"", headers: tuple[tuple[str, str], ...] = ()
    ) -> Answer:
        """Send one request to the agent and wait for its answer."""
        message = HttpRequest(new_request_id(), method, uri, headers, body)
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self.answers[message.request_id] = future
        self.protocol.send(message)
        await self.flush()
        return await asyncio.wait_for(future, timeout=15)


class FakeGateway:
    """A loopback gateway speaking the tunnel protocol, driven by the test.

    Args:
        version: 2 to confirm the agent's version-2 offer with a resume token, 1 to answer as a `ttf`
            (version-1) gateway.
        answer_ready: Whether `ready` gets a `connection_established` (False: the handshake hangs).
    """

    def __init__(self, *, version: int = 2, answer_ready: bool = True) -> None:
        self.version = version
        self.answer_ready = answer_ready
        self.connections: list[GatewaySide] = []
        self.established: asyncio.Queue[GatewaySide] = asyncio.Queue()
        self.closed: list[int | None] = []
        self.frames = _FrameLog()
        self._logger = logging.getLogger(f"tests.gateway.{id(self)}")
        self._logger.setLevel(logging.DEBUG)
        self._logger.propagate = False
        self._logger.addHandler(self.frames)
        self._server: Server | None = None

    @property
    def endpoint(self) -> str:
        """The WebSocket URL agents connect to."""
        assert self._server is not None
        port = next(iter(self._server.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}/agent?region=test"

    @staticmethod
    def token_for(tunnel_id: str) -> str:
        """The resume token this gateway hands out for a tunnel id."""
        return f"{tunnel_id}.signed"

    async def __aenter__(self) -> FakeGateway:
        self._server = await serve(
            self._handler, "127.0.0.1", 0, logger=self._logger, ping_interval=None, max_size=2**20
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        self._logger.removeHandler(self.frames)

    async def _handler(self, websocket: ServerConnection) -> None:
        tunnel_id = f"tunnel{len(self.connections) + 1}"
        side = GatewaySide(websocket, tunnel_id, version=self.version)
        resume = side.query.get("resume", [""])[0]
        if resume.endswith(".signed"):
            side.tunnel_id = resume.removesuffix(".signed")
        self.connections.append(side)
        try:
            async for frame in websocket:
                if self.version == 1 and side.ready is None:
                    ready = decode_frame(frame)
                    assert isinstance(ready, Ready)
                    await self._on_event(side, ready)
                    continue
                side.protocol.receive_frame(frame)
                for event in side.protocol.events_received():
                    await self._on_event(side, event)
                await side.flush()
        finally:
            self.closed.append(websocket.close_code)
            for future in side.answers.values():
                if not future.done():
                    future.cancel()

    async def _on_event(self, side: GatewaySide, event: object) -> None:
        if isinstance(event, Ready):
            side.ready = event
            if not self.answer_ready:
                return
            tunnel = TunnelId(side.tunnel_id)
            url = f"http://gw.test/{tunnel}"
            if self.version >= 2:
                established = ConnectionEstablished(
                    ConnectionId(f"conn{len(self.connections)}"),
                    tunnel,
                    url,
                    subdomain_url=f"http://{tunnel}.gw.test",
                    path_based_url=url,
                    protocol_version=2,
                    features=("body_chunks", "pong"),
                    resume_token=self.token_for(tunnel),
                )
                side.protocol.send(established)
                await side.flush()
            else:
                await side.websocket.send(
                    encode_frame(ConnectionEstablished(ConnectionId("conn"), tunnel, url))
                )
            self.established.put_nowait(side)
        elif isinstance(event, HttpResponse | ErrorMessage) and event.request_id is not None:
            future = side.answers.get(event.request_id)
            if future is not None and not future.done():
                future.set_result(event)
        elif isinstance(event, Ping):
            side.pings += 1

    async def next_connection(self, timeout: float = 10) -> GatewaySide:
        """The next connection whose handshake completed."""
        return await asyncio.wait_for(self.established.get(), timeout)


def agent_config(gateway: FakeGateway | RealGateway, local_port: int, **overrides: Any) -> AgentConfig:
    """A configuration with short timings, so tests run fast."""
    values: dict[str, Any] = {
        "endpoint": gateway.endpoint,
        "local_port": local_port,
        "token": "secret",
        "request_timeout": 3.0,
        "handshake_timeout": 2.0,
        "backoff_initial": 0.05,
        "backoff_max": 0.2,
        "shutdown_timeout": 5.0,
        "close_timeout": 2.0,
    }
    values.update(overrides)
    return AgentConfig(**values)


@contextlib.asynccontextmanager
async def running(config: AgentConfig, events: list[AgentEvent]) -> AsyncIterator[asyncio.Task[None]]:
    """Run an agent for the duration of the block, then cancel it and wait for its clean stop."""
    task = asyncio.create_task(Agent(config, on_event=events.append, rng=lambda: 0.0).run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=15)


async def wait_for(condition: Any, timeout: float = 10) -> None:
    """Poll a zero-argument callable until it returns true."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def of_kind(events: list[AgentEvent], kind: str) -> list[AgentEvent]:
    """The events of one kind, in order."""
    return [event for event in events if event["event"] == kind]


@pytest.fixture(scope="module")
def local_app() -> Iterator[tuple[LocalApp, RunningServer]]:
    """One real local app for the module's tests."""
    app = LocalApp()
    with serve_in_thread(app.app) as server:
        yield app, server


def run(scenario: Any) -> None:
    """Run a coroutine with an overall bound, so a hang fails the test instead of stalling the run."""
    asyncio.run(asyncio.wait_for(scenario, timeout=60))


# Pure parts -------------------------------------------------------------------------------------------


def test_reconnect_delays_double_up_to_the_cap_with_jitter() -> None:
    """Delays go 1, 2, 4 ... 60 s, and jitter only ever shortens them, by at most its fraction."""
    config = AgentConfig(endpoint="ws://gw.test/", local_port=3000)
    steady = reconnect_delays(config, rng=lambda: 0.0)
    assert [next(steady) for _ in range(9)] == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    jittered = reconnect_delays(config, rng=random.Random(7).random)
    for nominal in (1, 2, 4, 8, 16, 32, 60, 60):
        delay = next(jittered)
        assert nominal * (1 - config.backoff_jitter) <= delay <= nominal


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("endpoint", "http://gw.test/"),
        ("local_port", 0),
        ("concurrency", 0),
        ("request_timeout", 0),
        ("backoff_jitter", 1.0),
        ("output", "loud"),
    ],
)
def test_invalid_config_is_refused(field: str, value: Any) -> None:
    """An AgentConfig with an impossible value raises ValueError naming the field."""
    values: dict[str, Any] = {"endpoint": "ws://gw.test/", "local_port": 3000, field: value}
    with pytest.raises(ValueError, match=field):
        AgentConfig(**values)


def test_config_defaults_follow_the_issue() -> None:
    """Defaults: 64 concurrent requests, 10 s handshake, 300 s heartbeat, 1-60 s backoff, 32 KB frames."""
    config = AgentConfig(endpoint="wss://gw.test/", local_port=3000, token="s3cr3t-token")
    assert (config.concurrency, config.handshake_timeout, config.heartbeat_interval) == (64, 10, 300)
    assert (config.backoff_initial, config.backoff_max, config.max_frame_bytes) == (1, 60, 32_000)
    assert config.local_origin == "http://127.0.0.1:3000"
    assert "s3cr3t" not in repr(config)


# A real agent against the loopback gateway -------------------------------------------------------------


@pytest.mark.integration
def test_handshake_negotiates_version_2_and_reports_ready(local_app: tuple[LocalApp, RunningServer]) -> None:
    """The agent authenticates, offers v2 with its local origin, and reports the URLs and handshake time."""
    _, server = local_app

    async def scenario() -> None:
        events: list[AgentEvent] = []
        async with FakeGateway() as gateway, running(agent_config(gateway, server.port), events):
            side = await gateway.next_connection()
            await wait_for(lambda: of_kind(events, "ready"))
            assert side.authorization == "Bearer secret"
            assert side.query == {"region": ["test"]}  # no resume token on the first connection
            assert side.ready == Ready(
                protocol_version=2,
                features=("body_chunks", "pong", "body_stream"),
                local_origin=server.origin,
            )
            assert side.protocol.version == 2
            assert side.protocol.chunking
            (ready,) = of_kind(events, "ready")
            assert events[0] is ready
            assert ready["public_url"] == ready["path_url"] == "http://gw.test/tunnel1"
            assert ready["host_url"] == "http://tunnel1.gw.test"
            assert ready["tunnel_id"] == "tunnel1"
            assert ready["protocol_version"] == 2
            assert isinstance(ready["handshake_ms"], float)
            assert 0 < ready["handshake_ms"] < 5000

    run(scenario())


@pytest.mark.integration
def test_request_is_forwarded_and_answered(local_app: tuple[LocalApp, RunningServer]) -> None:
    """A gateway request reaches the real local app with its raw query and comes back, with a log event."""
    _, server = local_app

    async def scenario() -> None:
        events: list[AgentEvent] = []
        async with FakeGateway() as gateway, running(agent_config(gateway, server.port), events):
            side = await gateway.next_connection()
            answer = await side.request(
                "/echo?q=%2F&x=1+2", method="POST", body=b"hello", headers=(("x-test", "yes"),)
            )
            assert isinstance(answer, HttpResponse)
            assert answer.status_code == 200
            echoed = json.loads(answer.body)
            assert (echoed["method"], echoed["query"], echoed["body"]) == ("POST", "q=%2F&x=1+2", "hello")
            assert ["x-test", "yes"] in echoed["headers"]
            redirect = await side.request("/redirect")
            assert isinstance(redirect, HttpResponse)
            assert redirect.status_code == 302
            await wait_for(lambda: len(of_kind(events, "request")) == 2)
            first = of_kind(events, "request")[0]
            assert (first["method"], first["path"], first["status"]) == ("POST", "/echo?q=%2F&x=1+2", 200)
            assert first["duration_ms"] >= 0

    run(scenario())


@pytest.mark.integration
def test_megabyte_bodies_are_byte_exact_in_frames_of_at_most_32_kb(
    local_app: tuple[LocalApp, RunningServer],
) -> None:
    """A 1 MiB response and a 1 MiB upload arrive byte-exact, chunked, every agent frame within 32 KB."""
    app, server = local_app
    upload = random.Random(5).randbytes(1024 * 1024)

    async def scenario() -> None:
        events: list[AgentEvent] = []
        async with FakeGateway() as gateway, running(agent_config(gateway, server.port), events):
            side = await gateway.next_connection()
            big = await side.request("/big")
            assert isinstance(big, HttpResponse)
            assert big.body == app.big
            stored = await side.request("/upload", method="POST", body=upload)
            assert isinstance(stored, HttpResponse)
            assert json.loads(stored.body) == {
                "length": len(upload),
                "sha256": hashlib.sha256(upload).hexdigest(),
            }
            sizes = gateway.frames.sizes
            assert max(sizes) <= MAX_WEBSOCKET_FRAME_BYTES
            assert sum(sizes) > 4 * 1024 * 1024 / 3  # the 1 MiB body went through these frames
            assert len(sizes) > 40

    run(scenario())


@pytest.mark.integration
def test_local_app_down_is_local_service_unavailable() -> None:
    """With nothing on the local port, the gateway gets local_service_unavailable and the tunnel stays up."""

    async def scenario() -> None:
        events: list[AgentEvent] = []
        async with FakeGateway() as gateway, running(agent_config(gateway, closed_port()), events):
            side = await gateway.next_connection()
            for _ in range(2):
                answer = await side.request("/")
                assert isinstance(answer, ErrorMessage)
                assert answer.code == "local_service_unavailable"
            await wait_for(lambda: len(of_kind(events, "request")) == 2)
            event = of_kind(events, "request")[0]
            assert (event["status"], event["error"]) == (502, "local_service_unavailable")
            assert not of_kind(events, "reconnecting")

    run(scenario())


@pytest.mark.integration
def test_slow_app_is_a_timeout(local_app: tuple[LocalApp, RunningServer]) -> None:
    """A local app slower than the request timeout gives a timeout error, in about the timeout."""
    _, server = local_app

    async def scenario() -> None:
        events: list[AgentEvent] = []
        async with FakeGateway() as gateway:
            config = agent_config(gateway, server.port, request_timeout=0.3)
            async with running(config, events):
                side = await gateway.next_connection()
                started = time.monotonic()
                answer = await side.request("/slow?s=5")
                assert isinstance(answer, ErrorMessage)
                assert answer.code == "timeout"
                assert time.monotonic() - started < 3

    run(scenario())


@pytest.mark.integration
def test_concurrency_bound_is_respected(local_app: tuple[LocalApp, RunningServer]) -> None:
    """With concurrency 2, six simultaneous requests all succeed and at most two reach the app at once."""
    app, server = local_app

    async def scenario() -> None:
        events: list[AgentEvent] = []
        app.max_in_flight = 0
        async with (
            FakeGateway() as gateway,
            running(agent_config(gateway, server.port, concurrency=2), events),
        ):
            side = await gateway.next_connection()
            answers = await asyncio.gather(*(side.request("/hold?s=0.15") for _ in range(6)))
            assert all(isinstance(a, HttpResponse) and a.body == b"held" for a in answers)
            assert app.max_in_flight == 2

    run(scenario())


@pytest.mark.integration
def test_closed_connection_reconnects_with_backoff_and_resume_token(
    local_app: tuple[LocalApp, RunningServer],
) -> None:
    """When the gateway drops the connection, the agent reconnects after a backoff, keeping its tunnel id."""
    _, server = local_app

    async def scenario() -> None:
        events: list[AgentEvent] = []
        async with FakeGateway() as gateway, running(agent_config(gateway, server.port), events):
            first = await gateway.next_connection()
            await first.websocket.close(1001, "going away")
            second = await gateway.next_connection()
            assert second.query["resume"] == [FakeGateway.token_for("tunnel1")]
            assert second.query["region"] == ["test"]
            assert second.tunnel_id == "tunnel1"
            await wait_for(lambda: len(of_kind(events, "ready")) == 2)
            (reconnecting,) = of_kind(events, "reconnecting")
            assert reconnecting["delay_s"] == pytest.approx(0.05)
            assert "1001" in reconnecting["reason"]
            again = of_kind(events, "ready")[1]
            assert (again["tunnel_id"], again["resumed"]) == ("tunnel1", True)
            answer = await second.request("/echo")
            assert isinstance(answer, HttpResponse)

    run(scenario())


@pytest.mark.integration
def test_handshake_timeout_backs_off_and_retries(local_app: tuple[LocalApp, RunningServer]) -> None:
    """A gateway that never answers ready makes the agent give up the handshake and retry, waiting longer."""
    _, server = local_app

    async def scenario() -> None:
        events: list[AgentEvent] = []
        async with FakeGateway(answer_ready=False) as gateway:
            config = agent_config(gateway, server.port, handshake_timeout=0.2)
            async with running(config, events):
                await wait_for(lambda: len(of_kind(events, "reconnecting")) >= 3)
            assert len(gateway.connections) >= 3
            delays = [event["delay_s"] for event in of_kind(events, "reconnecting")[:3]]
            assert delays == [0.05, 0.1, 0.2]
            assert all("timed out" in event["reason"] for event in of_kind(events, "reconnecting"))
            assert not of_kind(events, "ready")

    run(scenario())


@pytest.mark.integration
def test_unreachable_gateway_is_retried() -> None:
    """A gateway that refuses TCP connections is retried with backoff, not given up."""

    async def scenario() -> None:
        events: list[AgentEvent] = []
        config = AgentConfig(
            endpoint=f"ws://127.0.0.1:{closed_port()}/",
            local_port=3000,
            backoff_initial=0.01,
            backoff_max=0.02,
        )
        async with running(config, events):
            await wait_for(lambda: len(of_kind(events, "reconnecting")) >= 3)
        assert of_kind(events, "stopped")

    run(scenario())


@pytest.mark.integration
def test_cancel_finishes_in_flight_request_then_closes(local_app: tuple[LocalApp, RunningServer]) -> None:
    """Cancelling the agent lets an in-flight request finish and be answered, then closes with code 1000."""
    app, server = local_app

    async def scenario() -> None:
        events: list[AgentEvent] = []
        async with FakeGateway() as gateway:
            task = asyncio.create_task(
                Agent(agent_config(gateway, server.port), on_event=events.append).run()
            )
            side = await gateway.next_connection()
            pending = asyncio.create_task(side.request("/hold?s=0.4"))
            await wait_for(lambda: app.in_flight == 1)
            task.cancel()
            answer = await pending
            assert isinstance(answer, HttpResponse)
            assert answer.body == b"held"
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(task, timeout=10)
            await wait_for(lambda: gateway.closed)
            assert gateway.closed == [1000]
            assert of_kind(events, "stopped")
            assert not of_kind(events, "reconnecting")

    run(scenario())


@pytest.mark.integration
def test_heartbeat_pings_are_sent_and_answered(local_app: tuple[LocalApp, RunningServer]) -> None:
    """The agent sends ping messages at the heartbeat interval and stays connected while pongs come back."""
    _, server = local_app

    async def scenario() -> None:
        events: list[AgentEvent] = []
        async with FakeGateway() as gateway:
            async with running(agent_config(gateway, server.port, heartbeat_interval=0.05), events):
                side = await gateway.next_connection()
                await wait_for(lambda: side.pings >= 4)
            assert not of_kind(events, "reconnecting")

    run(scenario())


@pytest.mark.integration
def test_version_1_gateway_is_spoken_to_in_version_1(local_app: tuple[LocalApp, RunningServer]) -> None:
    """A version-1 gateway gets whole messages; a body too big for one message becomes an internal_error."""
    _, server = local_app

    async def scenario() -> None:
        events: list[AgentEvent] = []
        async with FakeGateway(version=1) as gateway, running(agent_config(gateway, server.port), events):
            side = await gateway.next_connection()
            await wait_for(lambda: of_kind(events, "ready"))
            assert of_kind(events, "ready")[0]["protocol_version"] == 1
            small = await side.request("/echo")
            assert isinstance(small, HttpResponse)
            assert small.body_manifest is None
            too_big = await side.request("/big")
            assert isinstance(too_big, ErrorMessage)
            assert too_big.code == "internal_error"

    run(scenario())


@pytest.mark.integration
def test_silent_gateway_is_dropped_after_a_missed_heartbeat(
    local_app: tuple[LocalApp, RunningServer],
) -> None:
    """A gateway that agreed to pong and went silent is dropped after one heartbeat, and reconnected to."""
    _, server = local_app

    async def scenario() -> None:
        events: list[AgentEvent] = []
        async with FakeGateway() as gateway:
            async with running(agent_config(gateway, server.port, heartbeat_interval=0.1), events):
                first = await gateway.next_connection()
                first.mute = True
                second = await gateway.next_connection()
                assert second.tunnel_id == first.tunnel_id
            (reconnecting, *_) = of_kind(events, "reconnecting")
            assert "heartbeat" in reconnecting["reason"]

    run(scenario())


# The command line ----------------------------------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    """Parse `tunnel agent ...` with the real parser."""
    return build_parser().parse_args(["agent", *argv])


def test_cli_options_become_the_config() -> None:
    """Every option lands in the AgentConfig, and options win over the environment."""
    args = parse(
        "3000", "--endpoint", "wss://gw.test/ws", "--token", "t1", "--concurrency", "8", "--timeout", "5",
        "--handshake-timeout", "3", "--heartbeat", "60", "--local-host", "::1", "--json",
    )  # fmt: skip
    config = agent_config_from_args(args, {"TUNNEL_ENDPOINT": "ws://other/", "TUNNEL_TOKEN": "t2"})
    assert config == AgentConfig(
        endpoint="wss://gw.test/ws",
        local_port=3000,
        local_host="::1",
        token="t1",
        concurrency=8,
        request_timeout=5,
        handshake_timeout=3,
        heartbeat_interval=60,
        output="json",
    )
    assert config.local_origin == "http://[::1]:3000"


def test_cli_falls_back_to_environment_variables() -> None:
    """TUNNEL_ENDPOINT, TUNNEL_TOKEN, TUNNEL_CONCURRENCY, TUNNEL_TIMEOUT and TUNNEL_QUIET fill in options."""
    environ = {
        "TUNNEL_ENDPOINT": "ws://gw.test/",
        "TUNNEL_TOKEN": "from-env",
        "TUNNEL_CONCURRENCY": "4",
        "TUNNEL_TIMEOUT": "2.5",
        "TUNNEL_QUIET": "1",
    }
    config = agent_config_from_args(parse("8000"), environ)
    assert (config.endpoint, config.token, config.concurrency) == ("ws://gw.test/", "from-env", 4)
    assert (config.request_timeout, config.output, config.local_port) == (2.5, "quiet", 8000)
    assert agent_config_from_args(parse("8000", "--endpoint", "ws://x/"), {}).output == "log"


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        (["3000"], {}, "--endpoint"),
        (["3000", "--endpoint", "http://gw.test/"], {}, "ws://"),
        (["3000", "--endpoint", "ws://gw.test/"], {"TUNNEL_CONCURRENCY": "many"}, "--concurrency"),
        (["3000", "--endpoint", "ws://gw.test/", "--concurrency", "0"], {}, "concurrency"),
    ],
)
def test_cli_refuses_bad_configuration(argv: list[str], environ: dict[str, str], message: str) -> None:
    """A missing endpoint, a non-WebSocket URL or a bad number is a ValueError naming the option."""
    with pytest.raises(ValueError, match=message):
        agent_config_from_args(parse(*argv), environ)


def test_help_documents_the_environment_variables(capsys: pytest.CaptureFixture[str]) -> None:
    """`tunnel agent --help` lists the environment variables next to the options they stand for."""
    with pytest.raises(SystemExit):
        parse("--help")
    out = capsys.readouterr().out
    for name in ("TUNNEL_ENDPOINT", "TUNNEL_TOKEN", "TUNNEL_CONCURRENCY", "TUNNEL_TIMEOUT", "TUNNEL_JSON"):
        assert name in out


def test_demo_subcommand_is_still_there() -> None:
    """Adding `agent` keeps `tunnel demo` parsing as before."""
    args = build_parser().parse_args(["demo", "3001", "--port", "0"])
    assert (args.upstream_port, args.port, args.command) == (3001, 0, "demo")


def test_events_are_formatted_as_a_log_as_json_or_not_at_all() -> None:
    """A request event is a log line with time, method, path, status and duration; JSON; or nothing."""
    event: AgentEvent = {
        "event": "request",
        "method": "GET",
        "path": "/docs",
        "status": 200,
        "duration_ms": 12.34,
    }
    line = format_event(event, "log", now=0)
    assert line is not None
    assert line.split()[1:] == ["GET", "/docs", "200", "12.3", "ms"]
    assert json.loads(format_event(event, "json") or "") == event
    assert format_event(event, "quiet") is None
    ready: AgentEvent = {
        "event": "ready",
        "public_url": "https://gw/abc",
        "path_url": "https://gw/abc",
        "host_url": "https://abc.gw",
        "tunnel_id": "abc",
        "handshake_ms": 41.0,
        "local_origin": "http://127.0.0.1:3000",
    }
    text = format_event(ready, "log") or ""
    assert "https://gw/abc -> http://127.0.0.1:3000" in text
    assert "https://abc.gw" in text


def test_event_printer_writes_one_json_line_per_event() -> None:
    """With --json every event is exactly one line of JSON on the stream."""
    stream = io.StringIO()
    sink = event_printer("json", stream)
    sink({"event": "request", "method": "GET", "path": "/", "status": 200, "duration_ms": 1.0})
    sink({"event": "stopped", "tunnel_id": None})
    lines = stream.getvalue().splitlines()
    assert [json.loads(line)["event"] for line in lines] == ["request", "stopped"]


@pytest.mark.integration
def test_tunnel_agent_command_prints_json_events_and_stops_on_sigint(
    local_app: tuple[LocalApp, RunningServer],
) -> None:
    """`tunnel agent PORT --json` prints the ready event, one line per request, and exits 0 on Ctrl-C."""
    _, server = local_app

    async def scenario() -> None:
        async with FakeGateway() as gateway:
            env = {**os.environ, "TUNNEL_ENDPOINT": gateway.endpoint, "TUNNEL_TOKEN": "from-env"}
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "agent.cli", "agent", str(server.port), "--json",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
            )  # fmt: skip
            assert process.stdout is not None
            try:
                ready = json.loads(await asyncio.wait_for(process.stdout.readline(), 30))
                assert ready["event"] == "ready"
                assert set(ready) >= {"public_url", "path_url", "host_url", "tunnel_id", "handshake_ms"}
                side = await gateway.next_connection()
                assert side.authorization == "Bearer from-env"
                answer = await side.request("/echo?x=1")
                assert isinstance(answer, HttpResponse)
                request = json.loads(await asyncio.wait_for(process.stdout.readline(), 10))
                assert (request["event"], request["path"], request["status"]) == ("request", "/echo?x=1", 200)
                process.send_signal(signal.SIGINT)
                stdout, stderr = await asyncio.wait_for(process.communicate(), 20)
                assert process.returncode == 0, stderr
                assert [json.loads(line)["event"] for line in stdout.decode().splitlines()] == ["stopped"]
                await wait_for(lambda: gateway.closed)
                assert gateway.closed == [1000]
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()

    run(scenario())


# The real gateway logic ----------------------------------------------------------------------------------


class LiveSocketTransport:
    """A synchronous `Transport` that sends on live websockets, called from worker threads.

    The gateway logic is synchronous (it is the Lambda's); here it runs in threads and hands its frames to
    the event loop that owns the sockets, as the self-hosted gateway does, in frames of at most 32 KB.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.sockets: dict[ConnectionId, ServerConnection] = {}

    def send(
        self, connection_id: ConnectionId, frames: Sequence[str], *, connected_at: float | None = None
    ) -> None:
        websocket = self.sockets.get(connection_id)
        if websocket is None:
            raise ConnectionGone(f"{connection_id} is gone", connection_id=connection_id)

        async def push() -> None:
            for frame in frames:
                large = len(frame) > MAX_WEBSOCKET_FRAME_BYTES
                await websocket.send(split_frame(frame) if large else frame)

        try:
            asyncio.run_coroutine_threadsafe(push(), self._loop).result(timeout=10)
        except ConnectionClosed as exc:
            raise ConnectionGone(f"{connection_id} closed", connection_id=connection_id) from exc

    def close(self, connection_id: ConnectionId) -> None:
        websocket = self.sockets.pop(connection_id, None)
        if websocket is not None:
            asyncio.run_coroutine_threadsafe(websocket.close(), self._loop).result(timeout=10)


class RealGateway:
    """`lambda_app.app.Gateway` with a `MemoryStore`, behind a loopback websockets server."""

    def __init__(self) -> None:
        self.gateway: Gateway | None = None
        self.transport: LiveSocketTransport | None = None
        self._server: Server | None = None

    async def __aenter__(self) -> RealGateway:
        self.transport = LiveSocketTransport(asyncio.get_running_loop())
        config = GatewayConfig(
            public_url="http://gw.test",
            host_domain="gw.test",
            response_timeout=5,
            resume_secret=b"test-secret-of-32-bytes-length!!",
            first_poll_delay=0.002,
            max_poll_delay=0.01,
        )
        self.gateway = Gateway(MemoryStore(), self.transport, config)
        self._server = await serve(self._handler, "127.0.0.1", 0, ping_interval=None, max_size=2**20)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def endpoint(self) -> str:
        """The WebSocket URL agents connect to."""
        assert self._server is not None
        return f"ws://127.0.0.1:{next(iter(self._server.sockets)).getsockname()[1]}/"

    async def _handler(self, websocket: ServerConnection) -> None:
        assert self.gateway is not None
        assert self.transport is not None
        assert websocket.request is not None
        connection_id = new_connection_id()
        resume = parse_qs(urlsplit(websocket.request.path).query).get("resume", [None])[0]
        self.transport.sockets[connection_id] = websocket
        try:
            if await asyncio.to_thread(self.gateway.connect, connection_id, resume_token=resume) is None:
                return
            async for frame in websocket:
                await asyncio.to_thread(self.gateway.receive, connection_id, frame)
        finally:
            self.transport.sockets.pop(connection_id, None)
            await asyncio.to_thread(self.gateway.disconnect, connection_id)

    async def public(self, target: str, *, method: str = "GET", body: bytes = b"") -> PublicResponse:
        """A public request to the gateway, as its HTTP edge would pass it on."""
        assert self.gateway is not None
        request = PublicRequest(method, target, (("host", "gw.test"),), body, client_ip="192.0.2.1")
        return await asyncio.to_thread(self.gateway.forward, request)

    async def drop_agents(self) -> None:
        """Close every agent connection from the gateway's side (a gateway restart, as the agent sees it)."""
        assert self.transport is not None
        for websocket in list(self.transport.sockets.values()):
            await websocket.close(1012, "service restart")


@pytest.mark.integration
def test_agent_serves_the_real_gateway_logic(local_app: tuple[LocalApp, RunningServer]) -> None:
    """Through lambda_app's Gateway: requests answered and rewritten, 1 MiB exact, tunnel id resumed."""
    app, server = local_app

    async def scenario() -> None:
        events: list[AgentEvent] = []
        async with RealGateway() as gateway, running(agent_config(gateway, server.port), events):
            await wait_for(lambda: of_kind(events, "ready"))
            ready = of_kind(events, "ready")[0]
            tunnel = ready["tunnel_id"]
            assert ready["path_url"] == f"http://gw.test/{tunnel}"
            assert ready["host_url"] == f"http://{tunnel}.gw.test"
            echo = await gateway.public(f"/{tunnel}/echo?q=%2F&x=1", method="POST", body=b"hi")
            assert echo.status == 200
            echoed = json.loads(echo.body)
            assert (echoed["path"], echoed["query"], echoed["body"]) == ("/echo", "q=%2F&x=1", "hi")
            assert ["x-forwarded-prefix", f"/{tunnel}"] in echoed["headers"]
            redirect = await gateway.public(f"/{tunnel}/redirect")
            assert redirect.status == 302
            assert ("location", f"/{tunnel}/echo") in [(k.lower(), v) for k, v in redirect.headers]
            big = await gateway.public(f"/{tunnel}/big")
            assert big.status == 200
            assert big.body == app.big
            await gateway.drop_agents()
            await wait_for(lambda: len(of_kind(events, "ready")) == 2)
            again = of_kind(events, "ready")[1]
            assert (again["tunnel_id"], again["resumed"]) == (tunnel, True)
            after = await gateway.public(f"/{tunnel}/echo")
            assert after.status == 200

    run(scenario())


@pytest.mark.integration
def test_real_gateway_answers_502_naming_the_port_when_the_app_is_down() -> None:
    """With nothing on the local port, the real gateway's public answer is a 502 page naming that port."""

    async def scenario() -> None:
        events: list[AgentEvent] = []
        port = closed_port()
        async with RealGateway() as gateway, running(agent_config(gateway, port), events):
            await wait_for(lambda: of_kind(events, "ready"))
            tunnel = of_kind(events, "ready")[0]["tunnel_id"]
            response = await gateway.public(f"/{tunnel}/")
            assert response.status == 502
            assert f"port {port}".encode() in response.body

    run(scenario())
