"""Tests for transport/protocol.py: two TunnelProtocol ends wired back to back in a TunnelPair."""

from __future__ import annotations

import hashlib
import json
import random

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from transport.chunking import MAX_MESSAGE_BYTES
from transport.codec import encode_frame
from transport.errors import LocalProtocolError, RemoteProtocolError
from transport.messages import (
    BodyAck,
    BodyChunk,
    BodyEnd,
    BodyManifest,
    ConnectionEstablished,
    ConnectionId,
    ErrorMessage,
    HttpRequest,
    HttpResponse,
    Ping,
    Pong,
    Ready,
    RequestId,
    TunnelId,
    TunnelMessage,
    new_request_id,
)
from transport.protocol import ProtocolState, TunnelProtocol

RID = RequestId("0f8b4f2c-6a51-4c3e-9d7e-2f1a5b6c7d8e")
V2_READY = Ready(protocol_version=2, features=("body_chunks", "pong"))


def _established(
    protocol_version: int | None = None, features: tuple[str, ...] | None = None
) -> ConnectionEstablished:
    return ConnectionEstablished(
        ConnectionId("L0SM9cOFvHcCIhw="),
        TunnelId("abc123def456"),
        "https://gw/abc123def456",
        protocol_version=protocol_version,
        features=features,
    )


class TunnelPair:
    """An agent end and a gateway end whose frames are carried to each other by `pump`."""

    def __init__(self, agent: TunnelProtocol | None = None, gateway: TunnelProtocol | None = None) -> None:
        self.agent = agent or TunnelProtocol("agent")
        self.gateway = gateway or TunnelProtocol("gateway")
        #: Every frame carried, in both directions, for size assertions.
        self.carried: list[str] = []

    def _end(self, role: str) -> tuple[TunnelProtocol, TunnelProtocol]:
        return (self.agent, self.gateway) if role == "agent" else (self.gateway, self.agent)

    def send(self, role: str, message: TunnelMessage) -> list[TunnelMessage]:
        """Send from one end, carry the frames, and return the events out of the other end."""
        sender, receiver = self._end(role)
        sender.send(message)
        for frame in sender.frames_to_send():
            self.carried.append(frame)
            receiver.receive_frame(frame)
        return receiver.events_received()

    def handshake(self, ready: Ready = V2_READY, established: ConnectionEstablished | None = None) -> None:
        """Run ready / connection_established."""
        assert self.send("agent", ready) == [ready]
        events = self.send("gateway", established or _established())
        assert len(events) == 1
        assert isinstance(events[0], ConnectionEstablished)


def test_version_two_is_negotiated() -> None:
    """Our agent offers version 2 in ready and the gateway confirms it in connection_established."""
    pair = TunnelPair()
    pair.handshake()
    assert json.loads(pair.carried[1])["protocol_version"] == 2
    for end in (pair.agent, pair.gateway):
        assert end.state is ProtocolState.ESTABLISHED
        assert end.version == 2
        assert end.features == {"body_chunks", "pong"}
        assert end.chunking


def test_version_one_agent_gets_version_one() -> None:
    """A ttf agent's bare ready gets a connection_established without version fields, and no chunking."""
    pair = TunnelPair()
    pair.handshake(ready=Ready())
    assert json.loads(pair.carried[1]) == {
        "type": "connection_established",
        "connection_id": "L0SM9cOFvHcCIhw=",
        "tunnel_id": "abc123def456",
        "public_url": "https://gw/abc123def456",
    }
    assert pair.gateway.version == 1
    assert not pair.gateway.chunking


def test_only_common_features_are_agreed() -> None:
    """Features the other end does not know are dropped from the agreement."""
    pair = TunnelPair(gateway=TunnelProtocol("gateway", features=("body_chunks",)))
    pair.handshake(ready=Ready(protocol_version=3, features=("body_chunks", "pong", "telepathy")))
    assert pair.gateway.version == 2
    assert pair.agent.features == pair.gateway.features == {"body_chunks"}


def test_small_messages_pass_unchanged_both_ways() -> None:
    """A request goes down and its response comes back as the same values."""
    pair = TunnelPair()
    pair.handshake()
    request = HttpRequest(RID, "GET", "/docs", headers=(("accept", "text/html"),), timestamp=1)
    response = HttpResponse(RID, 200, headers=(("set-cookie", "a=1"), ("set-cookie", "b=2")), body=b"<html>")
    assert pair.send("gateway", request) == [request]
    assert pair.send("agent", response) == [response]


@settings(max_examples=8, deadline=None)
@given(size=st.one_of(st.integers(0, 300_000), st.integers(0, 6 * 1024 * 1024)), seed=st.integers(0, 2**32))
@example(size=6 * 1024 * 1024, seed=6)
def test_big_bodies_cross_the_pair_whole(size: int, seed: int) -> None:
    """Bodies of any size cross a version-2 pair whole, in frames under 128 KB each."""
    body = random.Random(seed).randbytes(size)
    pair = TunnelPair()
    pair.handshake()
    request = HttpRequest(new_request_id(), "POST", "/upload", body=body, timestamp=9)
    response = HttpResponse(request.request_id, 201, body=body[::-1])
    assert pair.send("gateway", request) == [request]
    assert pair.send("agent", response) == [response]
    assert all(len(frame) <= MAX_MESSAGE_BYTES for frame in pair.carried)
    assert pair.agent.pending_bodies == pair.gateway.pending_bodies == 0


def test_big_body_to_version_one_agent_is_refused_clearly() -> None:
    """A body too big for one message, sent to a version-1 agent, raises a 413 naming the body."""
    pair = TunnelPair()
    pair.handshake(ready=Ready())
    with pytest.raises(LocalProtocolError, match="version 1") as caught:
        pair.gateway.send(HttpRequest(RID, "POST", "/", body=b"x" * 200_000))
    assert caught.value.status_hint == 413
    assert pair.gateway.frames_to_send() == []


def test_no_chunking_before_the_handshake() -> None:
    """Until version 2 is confirmed, an end behaves as version 1 and does not chunk."""
    agent = TunnelProtocol("agent")
    agent.send(V2_READY)
    with pytest.raises(LocalProtocolError, match="version 1"):
        agent.send(HttpResponse(RID, 200, body=b"x" * 200_000))


def test_interleaved_chunked_bodies_are_kept_apart() -> None:
    """Chunks of two responses interleaved on the wire reassemble into the two right bodies."""
    pair = TunnelPair()
    pair.handshake()
    first = HttpResponse(new_request_id(), 200, body=b"a" * 300_000)
    second = HttpResponse(new_request_id(), 200, body=b"b" * 300_000)
    pair.agent.send(first)
    frames_a = pair.agent.frames_to_send()
    pair.agent.send(second)
    frames_b = pair.agent.frames_to_send()
    for frame_a, frame_b in zip(frames_a, frames_b, strict=True):
        pair.gateway.receive_frame(frame_a)
        pair.gateway.receive_frame(frame_b)
    assert pair.gateway.events_received() == [first, second]


def test_ping_gets_a_pong_in_version_two() -> None:
    """A version-2 end answers ping with pong by itself, and still reports the ping."""
    pair = TunnelPair()
    pair.handshake()
    assert pair.send("agent", Ping()) == [Ping()]
    assert pair.gateway.frames_to_send() == ['{"type":"pong"}']


def test_ping_gets_no_pong_in_version_one() -> None:
    """A version-1 peer never sees a pong it did not expect."""
    pair = TunnelPair()
    pair.handshake(ready=Ready())
    assert pair.send("agent", Ping()) == [Ping()]
    assert pair.gateway.frames_to_send() == []


def test_gateway_rebuilt_per_invocation_can_chunk() -> None:
    """A gateway end created at an agreed version (a Lambda invocation) chunks without a handshake."""
    gateway = TunnelProtocol("gateway", version=2)
    agent = TunnelProtocol("agent", version=2)
    pair = TunnelPair(agent=agent, gateway=gateway)
    request = HttpRequest(RID, "POST", "/", body=b"q" * 500_000)
    assert pair.send("gateway", request) == [request]
    assert len(pair.carried) > 1


@pytest.mark.parametrize(
    ("role", "message"),
    [
        ("agent", HttpRequest(RID, "GET", "/")),
        ("agent", _established()),
        ("gateway", Ready()),
        ("gateway", HttpResponse(RID, 200)),
        ("gateway", BodyChunk(RID, 0, b"x")),
    ],
)
def test_ends_only_send_their_own_messages(role: str, message: TunnelMessage) -> None:
    """An end refuses to send a message its role never sends, or a hand-made chunk."""
    end = TunnelProtocol("agent" if role == "agent" else "gateway", version=2)
    with pytest.raises(LocalProtocolError):
        end.send(message)


def test_ends_refuse_messages_the_peer_never_sends() -> None:
    """A gateway receiving an http_request (a gateway's message) raises RemoteProtocolError on type."""
    gateway = TunnelProtocol("gateway", version=2)
    with pytest.raises(RemoteProtocolError) as caught:
        gateway.receive_frame(encode_frame(HttpRequest(RID, "GET", "/")))
    assert caught.value.field == "type"


def test_handshake_out_of_turn() -> None:
    """A second ready, or a connection_established nobody asked for, is a protocol error."""
    pair = TunnelPair()
    pair.handshake()
    with pytest.raises(LocalProtocolError, match="already sent"):
        pair.agent.send(V2_READY)
    with pytest.raises(RemoteProtocolError, match="already received"):
        pair.gateway.receive_frame(encode_frame(V2_READY))
    with pytest.raises(LocalProtocolError, match="none was received"):
        TunnelProtocol("gateway").send(_established())
    with pytest.raises(RemoteProtocolError, match="without a ready"):
        TunnelProtocol("agent").receive_frame(encode_frame(_established()))


def test_confirmed_version_above_the_offer_is_refused() -> None:
    """A gateway confirming a version the agent did not offer is refused on both sides."""
    pair = TunnelPair()
    pair.send("agent", Ready())
    with pytest.raises(LocalProtocolError, match="offered 1"):
        pair.gateway.send(_established(protocol_version=2, features=()))
    agent = TunnelProtocol("agent")
    agent.send(Ready())
    with pytest.raises(RemoteProtocolError) as caught:
        agent.receive_frame(encode_frame(_established(protocol_version=2, features=())))
    assert caught.value.field == "protocol_version"


def test_chunks_from_a_version_one_peer_are_refused() -> None:
    """A body manifest on a version-1 connection is a protocol error naming body_manifest."""
    gateway = TunnelProtocol("gateway", version=1)
    head = HttpResponse(RID, 200, body_manifest=BodyManifest(2, 10, "0" * 64))
    with pytest.raises(RemoteProtocolError) as caught:
        gateway.receive_frame(encode_frame(head))
    assert caught.value.field == "body_manifest"


def _chunk_frames(body: bytes) -> list[str]:
    agent = TunnelProtocol("agent", version=2, max_message_bytes=1000)
    agent.send(HttpResponse(RID, 200, body=body))
    return agent.frames_to_send()


def test_bad_chunk_drops_its_body_and_the_connection_goes_on() -> None:
    """An out-of-order chunk raises, drops that partial body, and later messages still get through."""
    gateway = TunnelProtocol("gateway", version=2)
    frames = _chunk_frames(b"x" * 5000)
    gateway.receive_frame(frames[0])
    with pytest.raises(RemoteProtocolError, match="out of order"):
        gateway.receive_frame(frames[2])
    assert gateway.pending_bodies == 0
    with pytest.raises(RemoteProtocolError, match="no body in flight") as caught:
        gateway.receive_frame(frames[3])
    assert caught.value.field == "request_id"
    gateway.receive_frame(encode_frame(Pong()))
    assert gateway.events_received() == [Pong()]


def test_error_for_a_request_drops_its_partial_body() -> None:
    """An error message for a request whose body is arriving drops the partial body and is reported."""
    gateway = TunnelProtocol("gateway", version=2)
    gateway.receive_frame(_chunk_frames(b"x" * 5000)[0])
    error = ErrorMessage("local_service_unavailable", "connection reset", RID)
    gateway.receive_frame(encode_frame(error))
    assert gateway.pending_bodies == 0
    assert gateway.events_received() == [error]


def test_discard_body_frees_a_stale_body() -> None:
    """discard_body drops a partly received body, once."""
    gateway = TunnelProtocol("gateway", version=2)
    gateway.receive_frame(_chunk_frames(b"x" * 5000)[0])
    assert gateway.discard_body(RID)
    assert not gateway.discard_body(RID)
    assert gateway.pending_bodies == 0


def test_duplicate_head_is_refused() -> None:
    """A second manifest for a request whose body is in flight is refused."""
    gateway = TunnelProtocol("gateway", version=2)
    frames = _chunk_frames(b"x" * 5000)
    gateway.receive_frame(frames[0])
    with pytest.raises(RemoteProtocolError, match="already in flight"):
        gateway.receive_frame(frames[0])


def test_too_many_bodies_in_flight() -> None:
    """More chunked bodies in flight than allowed are refused with 503."""
    gateway = TunnelProtocol("gateway", version=2, max_pending_bodies=1)
    gateway.receive_frame(_chunk_frames(b"x" * 5000)[0])
    other = HttpResponse(new_request_id(), 200, body_manifest=BodyManifest(2, 10, "0" * 64))
    with pytest.raises(RemoteProtocolError) as caught:
        gateway.receive_frame(encode_frame(other))
    assert caught.value.status_hint == 503


def test_oversized_frame_is_refused() -> None:
    """A frame above max_receive_bytes is refused before parsing."""
    gateway = TunnelProtocol("gateway", version=2, max_receive_bytes=100)
    with pytest.raises(RemoteProtocolError, match="exceeds"):
        gateway.receive_frame(encode_frame(ErrorMessage("internal_error", "x" * 200)))


def test_events_and_frames_are_drained() -> None:
    """events_received and frames_to_send return each item once."""
    pair = TunnelPair()
    pair.agent.send(V2_READY)
    assert len(pair.agent.frames_to_send()) == 1
    assert pair.agent.frames_to_send() == []
    pair.gateway.receive_frame(encode_frame(V2_READY))
    assert pair.gateway.events_received() == [V2_READY]
    assert pair.gateway.events_received() == []


@pytest.mark.parametrize("kwargs", [{"role": "proxy"}, {"role": "agent", "version": 3}])
def test_bad_construction(kwargs: dict[str, object]) -> None:
    """An unknown role or version is refused when the protocol object is built."""
    with pytest.raises(ValueError, match="must be"):
        TunnelProtocol(**kwargs)  # type: ignore[arg-type]


# Streamed bodies (the body_stream feature) ---------------------------------------------------------------

STREAM_READY = Ready(protocol_version=2, features=("body_chunks", "pong", "body_stream"))


def _streaming_pair(window: int = 1024 * 1024) -> TunnelPair:
    pair = TunnelPair(agent=TunnelProtocol("agent", window_bytes=window))
    pair.handshake(ready=STREAM_READY)
    assert pair.agent.streaming
    assert pair.gateway.streaming
    return pair


def _carry(pair: TunnelPair, role: str) -> list[TunnelMessage]:
    sender, receiver = pair._end(role)
    for frame in sender.frames_to_send():
        pair.carried.append(frame)
        receiver.receive_frame(frame)
    return receiver.events_received()


def test_streamed_response_arrives_as_head_chunks_and_end() -> None:
    """A streamed response is passed on piece by piece: head, chunks in order, then a checked end."""
    pair = _streaming_pair()
    head = HttpResponse(RID, 200, (("content-type", "video/mp4"),), body_stream=True)
    assert pair.send("agent", head) == [head]
    body = random.Random(7).randbytes(300_000)
    pair.agent.send_body(RID, body[:1000])
    pair.agent.send_body(RID, body[1000:])
    pair.agent.end_body(RID)
    events = _carry(pair, "agent")
    chunks = [e for e in events if isinstance(e, BodyChunk)]
    assert b"".join(c.data for c in chunks) == body
    assert isinstance(events[-1], BodyEnd)
    assert events[-1].length == len(body)
    assert all(len(frame) <= MAX_MESSAGE_BYTES for frame in pair.carried)
    assert pair.gateway.pending_bodies == 0


def test_streamed_upload_goes_the_other_way() -> None:
    """The gateway streams a request body to the agent the same way."""
    pair = _streaming_pair()
    head = HttpRequest(RID, "PUT", "/upload", body_stream=True)
    assert pair.send("gateway", head) == [head]
    pair.gateway.send_body(RID, b"abc")
    pair.gateway.end_body(RID)
    events = _carry(pair, "gateway")
    assert [type(e) for e in events] == [BodyChunk, BodyEnd]


def test_window_is_spent_and_acknowledged() -> None:
    """Sending spends the window; the receiver's BodyAck gives the room back, on the sender's side."""
    pair = _streaming_pair(window=200_000)
    pair.send("agent", HttpResponse(RID, 200, body_stream=True))
    pair.agent.send_body(RID, b"x" * 250_000)
    window = pair.agent.window(RID)
    assert window is not None
    assert not window.open()
    _carry(pair, "agent")
    events = pair.send("gateway", BodyAck(RID, 250_000))
    assert events == [BodyAck(RID, 250_000)]
    assert window.open()


def test_streaming_needs_the_feature() -> None:
    """Without body_stream agreed, a streamed head is refused on both sides."""
    pair = TunnelPair()
    pair.handshake()
    with pytest.raises(LocalProtocolError):
        pair.agent.send(HttpResponse(RID, 200, body_stream=True))
    with pytest.raises(RemoteProtocolError) as error:
        pair.gateway.receive_frame(encode_frame(HttpResponse(RID, 200, body_stream=True)))
    assert error.value.field == "body_stream"


def test_stream_chunks_are_checked() -> None:
    """A chunk out of order or an end that does not match is refused, naming the field."""
    pair = _streaming_pair()
    pair.send("agent", HttpResponse(RID, 200, body_stream=True))
    with pytest.raises(RemoteProtocolError) as error:
        pair.gateway.receive_frame(encode_frame(BodyChunk(RID, 3, b"late")))
    assert error.value.field == "index"
    pair.gateway.receive_frame(encode_frame(BodyChunk(RID, 0, b"ok")))
    with pytest.raises(RemoteProtocolError) as error:
        pair.gateway.receive_frame(encode_frame(BodyEnd(RID, 1, 2, "0" * 64)))
    assert error.value.field == "sha256"
    with pytest.raises(RemoteProtocolError):  # the stream was dropped with its bad end
        pair.gateway.receive_frame(encode_frame(BodyEnd(RID, 1, 2, "0" * 64)))


def test_error_stops_a_stream_both_ways() -> None:
    """An error for a request drops the body streaming for it, on the sending and the receiving side."""
    pair = _streaming_pair()
    pair.send("agent", HttpResponse(RID, 200, body_stream=True))
    pair.send("agent", ErrorMessage("local_service_unavailable", "the app went away", RID))
    assert pair.gateway.pending_bodies == 0
    assert pair.agent.window(RID) is None
    with pytest.raises(LocalProtocolError):
        pair.agent.send_body(RID, b"more")


def test_bodies_cannot_be_sent_as_loose_chunks() -> None:
    """BodyChunk and BodyEnd are made by the protocol, never sent by hand."""
    pair = _streaming_pair()
    with pytest.raises(LocalProtocolError):
        pair.agent.send(BodyEnd(RID, 0, 0, hashlib.sha256(b"").hexdigest()))
    with pytest.raises(LocalProtocolError):
        pair.agent.send_body(RID, b"no head was sent")


def test_messages_cross_unencoded_as_frames_would() -> None:
    """`messages_to_send` and `receive_message` (an in-process peer) carry the very messages the frames
    would: handshake, a chunked body reassembled, pings answered, wrong senders refused."""
    agent, gateway = TunnelProtocol("agent"), TunnelProtocol("gateway")
    carried: list[int] = []

    def carry(sender: TunnelProtocol, receiver: TunnelProtocol) -> list[TunnelMessage]:
        messages = sender.messages_to_send()
        carried.append(len(messages))
        assert sender.frames_to_send() == []  # one queue, drained by either
        for message in messages:
            assert len(encode_frame(message)) <= MAX_MESSAGE_BYTES  # each is one frame's worth
            receiver.receive_message(message)
        return receiver.events_received()

    agent.send(V2_READY)
    assert carry(agent, gateway) == [V2_READY]
    gateway.send(_established())
    (established,) = carry(gateway, agent)
    assert isinstance(established, ConnectionEstablished)
    assert agent.chunking
    body = random.Random(3).randbytes(400_000)
    request = HttpRequest(new_request_id(), "POST", "/upload", body=body, timestamp=9)
    gateway.send(request)
    assert carry(gateway, agent) == [request]
    assert carried[-1] > 1  # split into chunks, as for the network
    agent.send(Ping())
    assert carry(agent, gateway) == [Ping()]
    assert carry(gateway, agent) == [Pong()]
    with pytest.raises(RemoteProtocolError) as caught:
        gateway.receive_message(HttpRequest(RID, "GET", "/"))
    assert caught.value.field == "type"
