"""Tests for transport/chunking.py: splitting bodies to fit API Gateway, and putting them back together."""

from __future__ import annotations

import dataclasses
import hashlib
import random

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from transport.chunking import (
    MAX_MESSAGE_BYTES,
    MAX_WEBSOCKET_FRAME_BYTES,
    BodyAssembler,
    assemble,
    chunk_payload_size,
    split_frame,
    split_message,
)
from transport.codec import decode_frame, encode_frame
from transport.errors import LocalProtocolError, RemoteProtocolError
from transport.messages import (
    BodyChunk,
    BodyManifest,
    HttpRequest,
    HttpResponse,
    Ping,
    RequestId,
    TunnelMessage,
)

RID = RequestId("c2d3e4f5-a6b7-4c8d-9e0f-1a2b3c4d5e6f")
MB = 1024 * 1024


def _response(body: bytes, headers: tuple[tuple[str, str], ...] = ()) -> HttpResponse:
    return HttpResponse(RID, 200, headers=headers, body=body, processing_time_ms=5)


def _split_and_encode(message: HttpRequest | HttpResponse, limit: int = MAX_MESSAGE_BYTES) -> list[str]:
    return [encode_frame(part) for part in split_message(message, max_message_bytes=limit)]


def _reassemble(frames: list[str]) -> TunnelMessage:
    """Decode frames and rebuild the message with BodyAssembler, as a receiving end would."""
    head = decode_frame(frames[0])
    if len(frames) == 1:
        return head
    assert isinstance(head, HttpRequest | HttpResponse)
    assembler = BodyAssembler(head)
    result = None
    for frame in frames[1:]:
        chunk = decode_frame(frame)
        assert isinstance(chunk, BodyChunk)
        assert result is None, "a message completed before its last chunk"
        result = assembler.feed(chunk)
    assert result is not None
    return result


def _random_body(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


@settings(max_examples=40, deadline=None)
@given(body=st.binary(max_size=4096), limit=st.integers(min_value=600, max_value=4096))
def test_small_limits_split_and_reassemble(body: bytes, limit: int) -> None:
    """Any binary body survives splitting under a small message limit, every frame within the limit."""
    message = _response(body)
    frames = _split_and_encode(message, limit)
    assert all(len(frame.encode()) <= limit for frame in frames)
    assert _reassemble(frames) == message


@settings(max_examples=12, deadline=None)
@given(
    size=st.one_of(st.integers(0, 400_000), st.integers(0, 20 * MB)),
    seed=st.integers(0, 2**32),
    request=st.booleans(),
)
@example(size=0, seed=0, request=True)
@example(size=20 * MB, seed=1, request=True)
def test_any_body_up_to_20_mb_survives(size: int, seed: int, request: bool) -> None:
    """A body of 0 bytes to 20 MB survives chunking byte for byte, in 128 KB messages of 32 KB frames."""
    body = _random_body(size, seed)
    message: HttpRequest | HttpResponse = (
        HttpRequest(RID, "PUT", "/upload", headers=(("content-type", "application/octet-stream"),), body=body)
        if request
        else _response(body)
    )
    frames = _split_and_encode(message)
    assert all(len(frame.encode()) <= MAX_MESSAGE_BYTES for frame in frames)
    assert _reassemble(_through_websocket_frames(frames)) == message


def _through_websocket_frames(messages: list[str]) -> list[str]:
    """Cut each message into WebSocket frames, check each is within 32 KB, and join them as a peer does."""
    joined: list[str] = []
    for message in messages:
        pieces = split_frame(message)
        assert all(len(piece.encode()) <= MAX_WEBSOCKET_FRAME_BYTES for piece in pieces)
        assert len(pieces) == max(1, -(-len(message) // MAX_WEBSOCKET_FRAME_BYTES))
        joined.append("".join(pieces))
    return joined


def test_exactly_20_mb_body() -> None:
    """A 20 MB binary body travels in messages under 128 KB, frames under 32 KB, and comes back identical."""
    body = _random_body(20 * MB, 20)
    frames = _split_and_encode(_response(body))
    assert len(frames) > 160
    assert max(len(frame) for frame in frames) <= MAX_MESSAGE_BYTES
    result = _reassemble(_through_websocket_frames(frames))
    assert isinstance(result, HttpResponse)
    assert result.body == body
    assert result.body_manifest is None


@pytest.mark.parametrize("request_side", [True, False])
def test_the_one_message_boundary_is_exact(request_side: bool) -> None:
    """Around the largest body that fits one 128 KB message, a message is sent whole exactly when it fits."""
    headers = (("content-type", "application/octet-stream"),)

    def build(size: int) -> HttpRequest | HttpResponse:
        body = b"\xff" * size
        if request_side:
            return HttpRequest(RID, "POST", "/up", headers=headers, body=body, timestamp=1)
        return _response(body, headers)

    bare = len(encode_frame(build(0)))
    largest = (MAX_MESSAGE_BYTES - bare) // 4 * 3
    for size in range(largest - 3, largest + 4):
        message = build(size)
        fits = len(encode_frame(message)) <= MAX_MESSAGE_BYTES
        parts = split_message(message)
        assert (parts == [message]) is fits, size
        assert all(len(encode_frame(part)) <= MAX_MESSAGE_BYTES for part in parts)
    assert split_message(build(largest)) == [build(largest)]
    assert len(split_message(build(largest + 1))) > 1


def test_small_message_is_left_whole() -> None:
    """A message that fits is returned alone and unchanged: no manifest, version-1 compatible."""
    message = _response(b"hello")
    assert split_message(message) == [message]


def test_chunks_use_the_room_they_have() -> None:
    """Full chunks come within 200 bytes of the message limit, so big bodies take few messages."""
    frames = _split_and_encode(_response(b"\x01" * 1_000_000))
    assert all(MAX_MESSAGE_BYTES - 200 <= len(frame) <= MAX_MESSAGE_BYTES for frame in frames[1:-1])


def test_manifest_describes_the_body() -> None:
    """The head carries the chunk count, total length and SHA-256 of the body, and no inline body."""
    body = _random_body(300_000, 1)
    head, *chunks = split_message(_response(body))
    assert isinstance(head, HttpResponse)
    assert head.body == b""
    assert head.body_manifest == BodyManifest(len(chunks), len(body), hashlib.sha256(body).hexdigest())
    assert [chunk.index for chunk in chunks if isinstance(chunk, BodyChunk)] == list(range(len(chunks)))


def test_version_one_peer_gets_a_clear_error() -> None:
    """A body too big for one message raises LocalProtocolError (413 for a request) when chunks are off."""
    request = HttpRequest(RID, "POST", "/", body=b"x" * 200_000)
    with pytest.raises(LocalProtocolError, match="protocol version 1") as caught:
        split_message(request, chunking=False)
    assert (caught.value.field, caught.value.status_hint) == ("body", 413)


def test_version_one_response_too_big_is_a_502() -> None:
    """A response body too big for a version-1 peer suggests 502, the gateway's answer."""
    with pytest.raises(LocalProtocolError) as caught:
        split_message(_response(b"x" * 200_000), chunking=False)
    assert caught.value.status_hint == 502


def test_huge_headers_cannot_be_chunked() -> None:
    """Headers too big for one message raise LocalProtocolError naming the headers (431 for requests)."""
    request = HttpRequest(RID, "GET", "/", headers=(("x-big", "v" * 200_000),), body=b"x" * 200_000)
    with pytest.raises(LocalProtocolError, match="headers and URI alone") as caught:
        split_message(request)
    assert (caught.value.field, caught.value.status_hint) == ("headers", 431)


def test_message_that_is_not_chunkable_and_too_big() -> None:
    """A message without a body that exceeds the limit cannot be split and says so."""
    with pytest.raises(LocalProtocolError, match="exceeds"):
        split_message(Ping(), max_message_bytes=5)


def test_manifest_on_input_is_refused() -> None:
    """A message that already carries a manifest is refused: manifests are the splitter's job."""
    head = HttpResponse(RID, 200, body_manifest=BodyManifest(1, 1, "0" * 64))
    with pytest.raises(LocalProtocolError, match="manifest"):
        split_message(head)


def test_chunk_payload_size_fits_and_is_a_multiple_of_three() -> None:
    """The chunk payload size leaves room for the envelope and needs no base64 padding."""
    size = chunk_payload_size(MAX_MESSAGE_BYTES)
    assert size % 3 == 0
    assert len(encode_frame(BodyChunk(RID, 10**9, b"\0" * size))) <= MAX_MESSAGE_BYTES
    with pytest.raises(ValueError, match="no room"):
        chunk_payload_size(50)


# Reassembly checks -----------------------------------------------------------------------------------------


def _parts(body: bytes, limit: int = 1000) -> tuple[HttpResponse, list[BodyChunk]]:
    head, *chunks = split_message(_response(body), max_message_bytes=limit)
    assert isinstance(head, HttpResponse)
    return head, [chunk for chunk in chunks if isinstance(chunk, BodyChunk)]


def test_out_of_order_chunk_is_refused() -> None:
    """A chunk that skips ahead raises RemoteProtocolError naming the index."""
    head, chunks = _parts(b"a" * 3000)
    assembler = BodyAssembler(head)
    assert assembler.request_id == RID
    with pytest.raises(RemoteProtocolError, match="expected index 0, got 1") as caught:
        assembler.feed(chunks[1])
    assert caught.value.field == "index"


def test_chunk_beyond_declared_length_is_refused() -> None:
    """Chunk data past the announced length raises RemoteProtocolError naming the data."""
    head, chunks = _parts(b"a" * 3000)
    assert head.body_manifest is not None
    short = dataclasses.replace(
        head, body_manifest=dataclasses.replace(head.body_manifest, length=len(chunks))
    )
    with pytest.raises(RemoteProtocolError, match="beyond the announced length") as caught:
        BodyAssembler(short).feed(chunks[0])
    assert caught.value.field == "data"


def test_chunk_beyond_declared_count_is_refused() -> None:
    """A chunk past the announced count raises RemoteProtocolError naming the index."""
    head, chunks = _parts(b"a" * 3000)
    assembler = BodyAssembler(head)
    for chunk in chunks:
        assembler.feed(chunk)
    with pytest.raises(RemoteProtocolError, match="beyond the announced count"):
        assembler.feed(BodyChunk(RID, len(chunks), b"x"))


def test_truncated_body_is_refused() -> None:
    """A body whose last chunk leaves it shorter than announced is refused, never silently truncated."""
    head, chunks = _parts(b"a" * 3000)
    assert head.body_manifest is not None
    longer = dataclasses.replace(head, body_manifest=dataclasses.replace(head.body_manifest, length=3001))
    assembler = BodyAssembler(longer)
    for chunk in chunks[:-1]:
        assert assembler.feed(chunk) is None
    with pytest.raises(RemoteProtocolError, match="3001 were announced") as caught:
        assembler.feed(chunks[-1])
    assert caught.value.field == "body_manifest.length"


def test_corrupted_body_fails_its_digest() -> None:
    """A chunk whose bytes changed in transit fails the SHA-256 check."""
    head, chunks = _parts(b"a" * 3000)
    chunks[1] = BodyChunk(RID, 1, b"b" * len(chunks[1].data))
    assembler = BodyAssembler(head)
    for chunk in chunks[:-1]:
        assert assembler.feed(chunk) is None
    with pytest.raises(RemoteProtocolError, match="SHA-256") as caught:
        assembler.feed(chunks[-1])
    assert caught.value.field == "body_manifest.sha256"


def test_chunk_for_another_request_is_refused() -> None:
    """A chunk carrying a different request id is refused by the assembler."""
    head, _ = _parts(b"a" * 3000)
    other = BodyChunk(RequestId("00000000-0000-4000-8000-000000000001"), 0, b"x")
    with pytest.raises(RemoteProtocolError, match="another request"):
        BodyAssembler(head).feed(other)


def test_announced_body_over_the_limit_is_refused_at_once() -> None:
    """A manifest announcing more than max_body_bytes is refused before any chunk arrives (413)."""
    head, _ = _parts(b"a" * 3000)
    with pytest.raises(RemoteProtocolError) as caught:
        BodyAssembler(head, max_body_bytes=2999)
    assert (caught.value.field, caught.value.status_hint) == ("body_manifest.length", 413)


def test_assembler_needs_a_manifest() -> None:
    """Building an assembler for a message without a manifest is a local error."""
    with pytest.raises(LocalProtocolError):
        BodyAssembler(_response(b"x"))


def test_assemble_accepts_any_order() -> None:
    """assemble() rebuilds the body from chunks collected in any order, as the AWS gateway stores them."""
    body = _random_body(10_000, 3)
    head, chunks = _parts(body)
    random.Random(4).shuffle(chunks)
    result = assemble(head, chunks)
    assert result.body == body


@pytest.mark.parametrize(
    ("mutate", "complaint"),
    [
        (lambda chunks: chunks[:-1], "of .* chunks received"),
        (lambda chunks: chunks[1:], "chunk 0 is missing"),
        (lambda chunks: [*chunks, chunks[0]], "received twice"),
        (lambda chunks: [*chunks, BodyChunk(RID, len(chunks), b"x")], "beyond the announced count"),
    ],
)
def test_assemble_refuses_incomplete_sets(mutate: object, complaint: str) -> None:
    """assemble() refuses missing, duplicated and surplus chunks."""
    head, chunks = _parts(b"z" * 5000)
    assert callable(mutate)
    with pytest.raises(RemoteProtocolError, match=complaint):
        assemble(head, mutate(chunks))


# WebSocket frames ---------------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(text=st.text(max_size=3000), limit=st.integers(min_value=4, max_value=700))
def test_split_frame_pieces_fit_and_join(text: str, limit: int) -> None:
    """Any text splits into pieces of at most the limit in UTF-8 bytes that join back to the text."""
    pieces = split_frame(text, limit)
    assert "".join(pieces) == text
    assert all(len(piece.encode("utf-8", "surrogatepass")) <= limit for piece in pieces)


def test_a_full_message_needs_four_websocket_frames() -> None:
    """A full 128 KB message splits into 32 KB frames, as an agent must send it to API Gateway."""
    frame = encode_frame(BodyChunk(RID, 0, b"\x07" * chunk_payload_size()))
    pieces = split_frame(frame)
    assert len(pieces) == 4
    assert all(len(piece) <= MAX_WEBSOCKET_FRAME_BYTES for piece in pieces)
    assert split_frame("") == [""]
    with pytest.raises(ValueError, match="positive"):
        split_frame("x", 0)
