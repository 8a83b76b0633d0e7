"""Tests for lambda_app/app.py: the gateway's logic over a MemoryStore and a MemoryTransport.

The agent is a small scripted peer behind `MemoryTransport`'s handler: it decodes what the gateway sends
and answers through `Gateway.receive`, as API Gateway would deliver its frames. A fake clock makes
timeouts instant and deterministic.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from lambda_app.app import (
    Exchange,
    FrameResult,
    Gateway,
    GatewayConfig,
    PublicRequest,
    PublicResponse,
    new_tunnel_id,
)
from lambda_app.records import PendingRequest
from lambda_app.store_memory import MemoryStore
from transport.chunking import assemble
from transport.codec import decode_frame, encode_frame
from transport.errors import ConnectionGone
from transport.memory import MemoryTransport
from transport.messages import (
    BodyChunk,
    BodyEnd,
    ConnectionEstablished,
    ConnectionId,
    ErrorMessage,
    HttpRequest,
    HttpResponse,
    Ping,
    Pong,
    Ready,
    RequestId,
    TunnelMessage,
    new_request_id,
)

CID = ConnectionId("conn-1=")
LOCAL = "http://127.0.0.1:3000"


@dataclass
class Clock:
    """Epoch seconds that move only when the gateway sleeps."""

    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


Answer = Callable[[HttpRequest], list[TunnelMessage] | None]


@dataclass
class Agent:
    """A scripted agent: records what reaches it and answers requests with `answer`."""

    gateway: Gateway | None = None
    answer: Answer | None = None
    received: list[TunnelMessage] = field(default_factory=list)
    requests: list[HttpRequest] = field(default_factory=list)
    _heads: dict[str, HttpRequest] = field(default_factory=dict)
    _chunks: dict[str, dict[int, bytes]] = field(default_factory=dict)

    def on_frame(self, connection_id: ConnectionId, frame: str) -> None:
        message = decode_frame(frame)
        self.received.append(message)
        if isinstance(message, HttpRequest) and message.body_manifest is not None:
            self._heads[message.request_id] = message
            self._chunks[message.request_id] = {}
            return
        if isinstance(message, BodyChunk):
            chunks = self._chunks[message.request_id]
            chunks[message.index] = message.data
            head = self._heads[message.request_id]
            assert head.body_manifest is not None
            if len(chunks) < head.body_manifest.count:
                return
            whole = assemble(head, [BodyChunk(message.request_id, i, d) for i, d in sorted(chunks.items())])
            assert isinstance(whole, HttpRequest)
            message = whole
        if isinstance(message, HttpRequest):
            self.requests.append(message)
            replies = self.answer(message) if self.answer else None
            assert self.gateway is not None
            for reply in replies or []:
                self.gateway.receive(connection_id, encode_frame(reply))

    def established(self) -> ConnectionEstablished:
        return next(m for m in reversed(self.received) if isinstance(m, ConnectionEstablished))


def html_answer(request: HttpRequest) -> list[TunnelMessage]:
    """The local app: a page with absolute links, two cookies and a redirect header."""
    page = b'<!doctype html><html><head></head><body><a href="/docs">docs</a></body></html>'
    headers = (
        ("content-type", "text/html; charset=utf-8"),
        ("set-cookie", "a=1; Path=/"),
        ("set-cookie", "b=2; Path=/app"),
        ("x-seen-uri", request.uri),
    )
    return [HttpResponse(request.request_id, 200, headers, page, 3)]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@dataclass
class Rig:
    """A gateway, its store and transport, and one scripted agent."""

    gateway: Gateway
    store: MemoryStore
    transport: MemoryTransport
    agent: Agent
    clock: Clock

    def connect(
        self, connection_id: ConnectionId = CID, *, ready: Ready | None = None, token: str | None = None
    ) -> ConnectionEstablished:
        assert self.gateway.connect(connection_id, resume_token=token) is not None
        offer = ready or Ready(protocol_version=2, features=("body_chunks", "pong"), local_origin=LOCAL)
        self.gateway.receive(connection_id, encode_frame(offer))
        return self.agent.established()

    def get(self, target: str, host: str = "gw.example.com", **kwargs: object) -> PublicResponse:
        headers = (("host", host), ("accept-encoding", "gzip"))
        return self.gateway.forward(PublicRequest("GET", target, headers, client_ip="203.0.113.9", **kwargs))  # type: ignore[arg-type]


def make_rig(
    clock: Clock,
    *,
    store: MemoryStore | None = None,
    sleep: Callable[[float], None] | None = None,
    **config: object,
) -> Rig:
    store = store if store is not None else MemoryStore(clock=clock)
    agent = Agent(answer=html_answer)
    transport = MemoryTransport(handler=agent.on_frame)
    settings = GatewayConfig(
        public_url="https://gw.example.com",
        host_domain="tunnel.example.com",
        resume_secret=b"k" * 32,
        **config,  # type: ignore[arg-type]
    )
    gateway = Gateway(store, transport, settings, clock=clock, sleep=sleep or clock.sleep)
    agent.gateway = gateway
    return Rig(gateway, store, transport, agent, clock)


@pytest.fixture
def rig(clock: Clock) -> Rig:
    return make_rig(clock)


def header(response: PublicResponse, name: str) -> list[str]:
    return [value for key, value in response.headers if key.lower() == name]


def test_tunnel_ids_are_random_dns_labels() -> None:
    """Tunnel ids carry 80 random bits as 16 lower-case base32 characters, and do not repeat."""
    ids = {new_tunnel_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(re.fullmatch(r"[a-z2-7]{16}", tunnel_id) for tunnel_id in ids)


def test_ready_v2_gets_urls_version_features_and_resume_token(rig: Rig) -> None:
    """A version-2 ready is answered with both URLs, version 2, the common features and a resume token."""
    established = rig.connect()
    tid = established.tunnel_id
    assert established.public_url == f"https://gw.example.com/{tid}"
    assert established.path_based_url == f"https://gw.example.com/{tid}"
    assert established.subdomain_url == f"https://{tid}.tunnel.example.com"
    assert established.protocol_version == 2
    assert established.features == ("body_chunks", "pong")
    assert established.resume_token is not None
    assert established.resume_token.startswith(tid + ".")
    connection = rig.store.get_connection(CID)
    assert connection is not None
    assert connection.local_origin == LOCAL


def test_version_1_agent_gets_the_rust_agents_answer(rig: Rig) -> None:
    """The ttf agent's bare ready gets a version-1 answer: no version, features or token fields."""
    established = rig.connect(ready=Ready())
    frame = json.loads(encode_frame(established))
    assert set(frame) == {
        "type",
        "connection_id",
        "tunnel_id",
        "public_url",
        "subdomain_url",
        "path_based_url",
    }


def test_path_mode_request_is_forwarded_and_rewritten(rig: Rig) -> None:
    """A GET under /<id>/ reaches the agent without the prefix and comes back rewritten for it."""
    tid = rig.connect().tunnel_id
    response = rig.get(f"/{tid}/docs?q=a+b&x=%2F&y=1")
    assert response.status == 200
    request = rig.agent.requests[-1]
    assert request.uri == "/docs?q=a+b&x=%2F&y=1"
    sent = dict(request.headers)
    assert sent["x-forwarded-prefix"] == f"/{tid}"
    assert sent["x-forwarded-for"] == "203.0.113.9"
    assert sent["host"] == "gw.example.com"
    assert f'href="/{tid}/docs"'.encode() in response.body
    assert header(response, "set-cookie") == [f"a=1; Path=/{tid}", f"b=2; Path=/{tid}/app"]
    assert response.polls >= 1


def test_host_mode_request_keeps_paths(rig: Rig) -> None:
    """A request to <id>.tunnel.example.com is routed by host and its paths need no prefix."""
    tid = rig.connect().tunnel_id
    response = rig.get("/docs", host=f"{tid}.tunnel.example.com")
    assert response.status == 200
    assert rig.agent.requests[-1].uri == "/docs"
    assert b'href="/docs"' in response.body


@pytest.mark.parametrize("target", ["/", "/favicon.ico", "/UPPER/x", "/a_b/c"])
def test_no_tunnel_named_is_404(rig: Rig, target: str) -> None:
    """A path that names no tunnel id, or an unknown one, gets a 404 page that names no other tunnel."""
    other = rig.connect().tunnel_id
    response = rig.get(target)
    assert response.status == 404
    assert other.encode() not in response.body
    assert header(response, "x-tunnel-request-id") == [response.request_id]
    assert response.request_id.encode() in response.body


def test_unknown_tunnel_is_404(rig: Rig) -> None:
    """A well-formed but unknown tunnel id is not connected: 404."""
    response = rig.get("/abcdefghijklmnop/x")
    assert response.status == 404
    assert b"not connected" in response.body


def test_dot_segments_cannot_reach_another_tunnel(rig: Rig) -> None:
    """`/<id>/../<other>/` is refused rather than forwarded anywhere."""
    tid = rig.connect().tunnel_id
    response = rig.get(f"/{tid}/../othertunnel/x")
    assert response.status == 404
    assert rig.agent.requests == []


def test_body_over_the_limit_is_413(clock: Clock) -> None:
    """A request body above max_body_bytes is refused before anything is sent to the agent."""
    rig = make_rig(clock, max_body_bytes=1000)
    tid = rig.connect().tunnel_id
    response = rig.gateway.forward(
        PublicRequest("POST", f"/{tid}/up", (("host", "gw.example.com"),), b"x" * 1001)
    )
    assert response.status == 413
    assert rig.agent.requests == []


def test_large_bodies_travel_in_chunks_both_ways(rig: Rig) -> None:
    """A 2 MB upload reaches a version-2 agent whole, and a 3 MB answer comes back whole, byte for byte."""
    tid = rig.connect().tunnel_id
    upload = bytes(range(256)) * 8192
    answer_body = bytes(reversed(range(256))) * 12288

    def big(request: HttpRequest) -> list[TunnelMessage]:
        assert request.body == upload
        response = HttpResponse(
            request.request_id, 200, (("content-type", "application/octet-stream"),), answer_body
        )
        from transport.chunking import split_message

        parts = split_message(response)
        return [*parts[1:], parts[0]]  # chunks first: order must not matter

    rig.agent.answer = big
    response = rig.gateway.forward(
        PublicRequest("PUT", f"/{tid}/blob", (("host", "gw.example.com"),), upload)
    )
    assert response.status == 200
    assert response.body == answer_body


def test_version_1_agent_cannot_take_a_body_over_one_message(rig: Rig) -> None:
    """Without chunking, an upload that does not fit one API Gateway message is a clear 413."""
    tid = rig.connect(ready=Ready()).tunnel_id
    response = rig.gateway.forward(
        PublicRequest("POST", f"/{tid}/up", (("host", "gw.example.com"),), b"x" * 200_000)
    )
    assert response.status == 413
    assert b"version 1" in response.body


def test_agent_gone_is_502_and_forgotten(rig: Rig) -> None:
    """A send to a vanished connection answers 502 and removes the connection from the store."""
    tid = rig.connect().tunnel_id
    rig.transport.close(CID)
    response = rig.get(f"/{tid}/x")
    assert response.status == 502
    assert rig.store.get_connection(CID) is None
    assert rig.get(f"/{tid}/x").status == 404


def test_local_service_down_is_502_naming_the_port(rig: Rig) -> None:
    """The agent's local_service_unavailable is a 502 page naming the local port, not the agent's text."""
    tid = rig.connect().tunnel_id
    rig.agent.answer = lambda r: [
        ErrorMessage("local_service_unavailable", "ECONNREFUSED secret detail", r.request_id)
    ]
    response = rig.get(f"/{tid}/x")
    assert response.status == 502
    assert b"port 3000" in response.body
    assert b"secret detail" not in response.body


def test_no_answer_is_504_in_time(rig: Rig) -> None:
    """An agent that never answers gets a 504 once the response timeout has passed, not later."""
    tid = rig.connect().tunnel_id
    rig.agent.answer = lambda r: None
    start = rig.clock.now
    response = rig.get(f"/{tid}/slow")
    assert response.status == 504
    assert 25.0 <= rig.clock.now - start < 25.5
    assert rig.store.poll(rig.agent.requests[-1].request_id) is None  # the pending record is gone


class PollLog(MemoryStore):
    """A MemoryStore that notes the clock at every poll for an answer."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock=clock)
        self.clock = clock
        self.polled_at: list[float] = []

    def poll(self, request_id: RequestId) -> PendingRequest | None:
        self.polled_at.append(self.clock.now)
        return super().poll(request_id)


def test_polls_start_at_10_ms_and_back_off_to_250_ms(clock: Clock) -> None:
    """The first look for an answer comes 10 ms after sending, and the gap doubles up to 250 ms."""
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.sleep(seconds)

    store = PollLog(clock)
    rig = make_rig(clock, store=store, sleep=sleep, response_timeout=2.0)
    tid = rig.connect().tunnel_id
    rig.agent.answer = lambda r: None
    sent = clock.now
    assert rig.get(f"/{tid}/never").status == 504
    assert sleeps[:6] == pytest.approx([0.01, 0.02, 0.04, 0.08, 0.16, 0.25])
    assert sleeps[5:-1] == pytest.approx([0.25] * len(sleeps[5:-1]))
    assert 0 < sleeps[-1] <= 0.25
    assert sum(sleeps) == pytest.approx(2.0)
    offsets = [at - sent for at in store.polled_at]
    assert offsets[:7] == pytest.approx([0.01, 0.03, 0.07, 0.15, 0.31, 0.56, 0.81])
    # An agent that has answered by then is found by the first poll, 10 ms in.
    sleeps.clear()
    rig.agent.answer = html_answer
    answered = rig.get(f"/{tid}/docs")
    assert (answered.status, answered.polls) == (200, 1)
    assert sleeps == pytest.approx([0.01])


def test_agent_disconnecting_while_waiting_is_502(rig: Rig) -> None:
    """When the agent's connection goes away mid-wait, the caller gets a 502 long before the timeout."""
    tid = rig.connect().tunnel_id

    def vanish(request: HttpRequest) -> None:
        rig.gateway.disconnect(CID)

    rig.agent.answer = vanish
    start = rig.clock.now
    response = rig.get(f"/{tid}/x")
    assert response.status == 502
    assert rig.clock.now - start < 5


def test_gzip_answer_is_rewritten_and_stays_gzip(rig: Rig) -> None:
    """A gzip page from the agent is decoded, rewritten and re-encoded by the rewriting core."""
    tid = rig.connect().tunnel_id
    page = gzip.compress(b'<html><head></head><body><img src="/i.png"></body></html>')
    headers = (("content-type", "text/html"), ("content-encoding", "gzip"))
    rig.agent.answer = lambda r: [HttpResponse(r.request_id, 200, headers, page)]
    response = rig.get(f"/{tid}/")
    assert header(response, "content-encoding") == ["gzip"]
    assert f'src="/{tid}/i.png"'.encode() in gzip.decompress(response.body)


def test_bad_frame_is_answered_with_an_error(rig: Rig) -> None:
    """A frame that is not tunnel protocol gets an invalid_request error back, and nothing raises."""
    rig.connect()
    rig.gateway.receive(CID, "{not json")
    rig.gateway.receive(CID, json.dumps({"type": "teleport"}))
    errors = [m for m in rig.agent.received if isinstance(m, ErrorMessage)]
    assert [e.code for e in errors] == ["invalid_request", "invalid_request"]
    assert "type" in errors[1].message


def test_ping_gets_pong_only_when_agreed(clock: Clock) -> None:
    """A version-2 agent that agreed on pong gets one; a version-1 agent does not."""
    v2 = make_rig(clock)
    v2.connect()
    v2.gateway.receive(CID, encode_frame(Ping()))
    assert isinstance(v2.agent.received[-1], Pong)
    v1 = make_rig(clock)
    v1.connect(ready=Ready())
    v1.gateway.receive(CID, encode_frame(Ping()))
    assert not any(isinstance(m, Pong) for m in v1.agent.received)


def test_resume_token_gives_the_tunnel_id_back(rig: Rig) -> None:
    """After a disconnect, the resume token reclaims the same tunnel id; a forged one does not."""
    first = rig.connect()
    assert first.resume_token is not None
    rig.gateway.disconnect(CID)
    forged = first.tunnel_id + ".AAAA"
    other = rig.connect(ConnectionId("conn-2="), token=forged)
    assert other.tunnel_id != first.tunnel_id
    again = rig.connect(ConnectionId("conn-3="), token=first.resume_token)
    assert again.tunnel_id == first.tunnel_id
    assert rig.get(f"/{first.tunnel_id}/x").status == 200


def test_answer_from_another_connection_is_dropped(rig: Rig) -> None:
    """Only the connection a request went to may answer it."""
    tid = rig.connect().tunnel_id
    intruder = ConnectionId("intruder=")
    rig.gateway.connect(intruder)

    def hijack(request: HttpRequest) -> None:
        assert rig.gateway is not None
        rig.gateway.receive(intruder, encode_frame(HttpResponse(request.request_id, 200, (), b"evil")))

    rig.agent.answer = hijack
    response = rig.get(f"/{tid}/x")
    assert response.status == 504
    assert response.body != b"evil"


def test_unexpected_failure_is_500_with_a_request_id(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    """If the store breaks (fault injected), the public gets a 500 page with a request id the log has too."""

    class BrokenStore(MemoryStore):
        def find_tunnel(self, tunnel_id: object) -> None:
            raise RuntimeError("disk on fire")

    rig = make_rig(clock)
    rig.gateway.store = BrokenStore(clock=clock)
    response = rig.get("/abcdefghijklmnop/x")
    assert response.status == 500
    assert b"disk on fire" not in response.body
    assert response.request_id in caplog.text
    assert any(getattr(record, "request", None) == response.request_id for record in caplog.records)


def test_transport_gone_on_reply_does_not_raise(clock: Clock) -> None:
    """A connection_established that cannot be delivered is logged, not raised into the handler."""
    store = MemoryStore(clock=clock)
    transport = MemoryTransport(gone=[CID])
    gateway = Gateway(
        store, transport, GatewayConfig(public_url="https://gw.example.com"), clock=clock, sleep=clock.sleep
    )
    assert gateway.connect(CID) is not None
    gateway.receive(CID, encode_frame(Ready()))  # must not raise ConnectionGone
    with pytest.raises(ConnectionGone):
        transport.send(CID, ["x"])


@pytest.mark.parametrize(
    ("kwargs", "complaint"),
    [
        ({"public_url": "gw.example.com"}, "public_url"),
        ({"public_url": "https://gw.example.com/path"}, "public_url"),
        ({"public_url": "https://gw.example.com", "response_timeout": 30}, "30 s"),
        ({"public_url": "https://gw.example.com", "pending_ttl": 10}, "pending_ttl"),
    ],
)
def test_bad_config_is_refused(kwargs: dict[str, object], complaint: str) -> None:
    """A gateway configuration that cannot work is refused when it is built."""
    with pytest.raises(ValueError, match=complaint):
        GatewayConfig(**kwargs)  # type: ignore[arg-type]


def test_caller_with_less_time_gets_its_504_sooner(rig: Rig) -> None:
    """wait_for shortens the wait below the response timeout (a Lambda near its own timeout)."""
    tid = rig.connect().tunnel_id
    rig.agent.answer = lambda r: None
    start = rig.clock.now
    response = rig.gateway.forward(
        PublicRequest("GET", f"/{tid}/x", (("host", "gw.example.com"),)), wait_for=2.0
    )
    assert response.status == 504
    assert 2.0 <= rig.clock.now - start < 2.5


# Streamed exchanges (the self-hosted gateway's body_stream) ----------------------------------------------

STREAM_OFFER = Ready(protocol_version=2, features=("body_chunks", "pong", "body_stream"), local_origin=LOCAL)


def test_the_lambda_gateway_does_not_agree_to_streaming(rig: Rig) -> None:
    """An agent offering body_stream to the default (Lambda) configuration gets chunks and pong only."""
    established = rig.connect(ready=STREAM_OFFER)
    assert established.features == ("body_chunks", "pong")


def test_streamed_exchange_hands_its_answer_to_the_edge(clock: Clock) -> None:
    """With body_stream agreed, the agent's answer for an exchange comes back in FrameResult.stream and
    never reaches the store; another connection's frames for it are dropped."""
    rig = make_rig(clock, features=("body_chunks", "pong", "body_stream"))
    tunnel_id = rig.connect(ready=STREAM_OFFER).tunnel_id
    request = PublicRequest("GET", f"/{tunnel_id}/video", (("host", "gw.example.com"),))
    assert rig.gateway.streams_bodies(request)
    exchange = rig.gateway.begin(request, new_request_id(), stream_body=True)
    assert isinstance(exchange, Exchange)
    assert exchange.streamed
    sent = decode_frame(exchange.frames[0])
    assert isinstance(sent, HttpRequest)
    assert sent.body_stream
    headers = (("content-type", "video/mp4"), ("location", "/x"))
    head = HttpResponse(exchange.request_id, 200, headers, b"", 1, body_stream=True)
    result = rig.gateway.handle_frame(CID, encode_frame(head))
    assert result.stream == head
    assert result.answered is None
    assert rig.gateway.poll(exchange) is None  # the store saw nothing
    intruder = ConnectionId("intruder-connection")
    assert rig.gateway.connect(intruder) is not None
    assert rig.gateway.handle_frame(intruder, encode_frame(head)).stream is None
    public_headers = rig.gateway.stream_head(exchange, head)
    assert public_headers is not None
    assert ("location", f"/{tunnel_id}/x") in public_headers
    rig.gateway.end(exchange)
    late = rig.gateway.handle_frame(CID, encode_frame(BodyEnd(exchange.request_id, 0, 0, "0" * 64)))
    assert late == FrameResult()  # dropped quietly, not answered with an error


def test_streamed_html_head_asks_for_the_whole_body(clock: Clock) -> None:
    """A streamed page that the rewriter reads gets no head of its own: the edge gathers the body."""
    rig = make_rig(clock, features=("body_chunks", "pong", "body_stream"))
    tunnel_id = rig.connect(ready=STREAM_OFFER).tunnel_id
    request = PublicRequest("GET", f"/{tunnel_id}/", (("host", "gw.example.com"),))
    exchange = rig.gateway.begin(request, new_request_id())
    assert isinstance(exchange, Exchange)
    head = HttpResponse(exchange.request_id, 200, (("content-type", "text/html"),), body_stream=True)
    assert rig.gateway.stream_head(exchange, head) is None
    assert rig.gateway.stream_head(exchange, head, passthrough=True) == [("content-type", "text/html")]


def test_stream_body_needs_an_agent_that_streams(rig: Rig) -> None:
    """Asking to stream a request body to an agent without body_stream gets a 502 page, nothing sent."""
    tunnel_id = rig.connect().tunnel_id
    request = PublicRequest("PUT", f"/{tunnel_id}/up", (("host", "gw.example.com"),))
    assert not rig.gateway.streams_bodies(request)
    answer = rig.gateway.begin(request, new_request_id(), stream_body=True)
    assert isinstance(answer, PublicResponse)
    assert answer.status == 502
