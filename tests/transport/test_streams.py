"""Tests for transport/streams.py: streamed bodies cut, checked and flow-controlled."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transport.chunking import MAX_MESSAGE_BYTES, chunk_payload_size
from transport.codec import decode_frame, encode_frame
from transport.errors import LocalProtocolError, RemoteProtocolError
from transport.messages import BodyAck, BodyChunk, BodyEnd, RequestId
from transport.streams import StreamReader, StreamWriter, Window

RID = RequestId("0f8b4f2c-6a51-4c3e-9d7e-2f1a5b6c7d8e")
OTHER = RequestId("1f8b4f2c-6a51-4c3e-9d7e-2f1a5b6c7d8e")


@settings(max_examples=40, deadline=None)
@given(pieces=st.lists(st.binary(max_size=300_000), max_size=6))
def test_any_pieces_cross_in_order_and_check_out(pieces: list[bytes]) -> None:
    """Bytes written in any pieces arrive whole and in order; every chunk fits one message; the end
    matches what arrived."""
    writer = StreamWriter(RID)
    reader = StreamReader(RID)
    received = bytearray()
    for piece in pieces:
        for chunk in writer.chunks(piece):
            frame = encode_frame(chunk)
            assert len(frame) <= MAX_MESSAGE_BYTES
            decoded = decode_frame(frame)
            assert isinstance(decoded, BodyChunk)
            received += reader.feed(decoded)
    end = writer.end()
    body = b"".join(pieces)
    assert bytes(received) == body
    assert (end.length, end.sha256) == (len(body), hashlib.sha256(body).hexdigest())
    reader.end(end)


def test_an_empty_body_ends_with_no_chunks() -> None:
    """A stream with nothing in it still closes, with count and length 0."""
    end = StreamWriter(RID).end()
    assert (end.count, end.length) == (0, 0)
    StreamReader(RID).end(end)


def test_chunks_are_as_big_as_a_message_allows() -> None:
    """A body of three payloads' worth goes in exactly three chunks."""
    step = chunk_payload_size()
    chunks = StreamWriter(RID).chunks(b"x" * (3 * step))
    assert [len(c.data) for c in chunks] == [step] * 3
    assert [c.index for c in chunks] == [0, 1, 2]


def test_writer_refuses_to_go_on_after_the_end() -> None:
    """Nothing can be added to, or end, a body that has ended."""
    writer = StreamWriter(RID)
    writer.end()
    with pytest.raises(LocalProtocolError):
        writer.chunks(b"late")
    with pytest.raises(LocalProtocolError):
        writer.end()


@pytest.mark.parametrize(
    ("chunk", "field"),
    [
        (BodyChunk(RID, 1, b"skipped one"), "index"),
        (BodyChunk(OTHER, 0, b"not mine"), "request_id"),
    ],
)
def test_reader_refuses_chunks_out_of_place(chunk: BodyChunk, field: str) -> None:
    """A chunk out of order or for another request is a protocol error naming the field."""
    with pytest.raises(RemoteProtocolError) as error:
        StreamReader(RID).feed(chunk)
    assert error.value.field == field


def test_reader_enforces_its_size_limit() -> None:
    """A body growing past the reader's limit is refused with 413."""
    reader = StreamReader(RID, max_body_bytes=10)
    reader.feed(BodyChunk(RID, 0, b"0123456789"))
    with pytest.raises(RemoteProtocolError) as error:
        reader.feed(BodyChunk(RID, 1, b"!"))
    assert error.value.status_hint == 413


@pytest.mark.parametrize(
    ("end", "field"),
    [
        (BodyEnd(RID, 2, 5, hashlib.sha256(b"hello").hexdigest()), "count"),
        (BodyEnd(RID, 1, 4, hashlib.sha256(b"hello").hexdigest()), "length"),
        (BodyEnd(RID, 1, 5, hashlib.sha256(b"jello").hexdigest()), "sha256"),
        (BodyEnd(OTHER, 1, 5, hashlib.sha256(b"hello").hexdigest()), "request_id"),
    ],
)
def test_end_that_does_not_match_is_refused(end: BodyEnd, field: str) -> None:
    """A lost, extra or changed chunk shows at the end: count, length or digest differ."""
    reader = StreamReader(RID)
    reader.feed(BodyChunk(RID, 0, b"hello"))
    with pytest.raises(RemoteProtocolError) as error:
        reader.end(end)
    assert error.value.field == field


def test_window_closes_when_spent_and_opens_on_acks() -> None:
    """The sender may overdraw once, then waits until the receiver acknowledges."""
    window = Window(100)
    assert window.open()
    window.spend(150)  # one chunk bigger than what was left
    assert not window.open()
    assert window.available == -50
    window.acknowledge(BodyAck(RID, 100))
    assert window.open()
    assert window.available == 50


def test_window_refuses_acks_for_bytes_never_sent() -> None:
    """Acknowledging more than was sent is a protocol error, not extra credit."""
    window = Window(100)
    window.spend(10)
    with pytest.raises(RemoteProtocolError):
        window.acknowledge(BodyAck(RID, 11))
    with pytest.raises(ValueError, match="size"):
        Window(0)
