"""Tests for transport/codec.py: the `ttf` JSON shapes, fixture round trips and strict decoding."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transport.codec import decode_body, decode_frame, encode_body, encode_frame, message_to_json
from transport.errors import LocalProtocolError, RemoteProtocolError
from transport.messages import (
    BodyChunk,
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
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "protocol"
FIXTURE_FILES = sorted(FIXTURES.glob("*.json"))
RID = RequestId("0f8b4f2c-6a51-4c3e-9d7e-2f1a5b6c7d8e")


def test_there_are_fixtures_for_every_message_type() -> None:
    """fixtures/protocol holds at least one example of every message type."""
    types = {json.loads(path.read_text())["type"] for path in FIXTURE_FILES}
    assert types == {
        "ready",
        "connection_established",
        "http_request",
        "http_response",
        "body_chunk",
        "body_end",
        "body_ack",
        "ping",
        "pong",
        "error",
    }


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda path: path.stem)
def test_fixture_round_trips(path: Path) -> None:
    """Each example frame decodes and re-encodes to the same JSON value."""
    text = path.read_text()
    message = decode_frame(text)
    assert json.loads(encode_frame(message)) == json.loads(text)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (Ping(), '{"type":"ping"}'),
        (Pong(), '{"type":"pong"}'),
        (Ready(), '{"type":"ready"}'),
        (
            ErrorMessage("local_service_unavailable", "refused", None),
            '{"type":"error","request_id":null,"code":"local_service_unavailable","message":"refused"}',
        ),
    ],
)
def test_exact_ttf_frames(message: Ping | Pong | Ready | ErrorMessage, expected: str) -> None:
    """Unit variants and errors encode to exactly the bytes serde produces for the Rust agent."""
    assert encode_frame(message) == expected


def test_request_shape_matches_ttf() -> None:
    """An HttpRequest encodes with the ttf field names, multi-valued headers grouped, and base64 body."""
    request = HttpRequest(
        RID,
        "POST",
        "/api/data?x=1",
        headers=(("cookie", "a=1"), ("content-type", "application/json"), ("cookie", "b=2")),
        body=b'{"test":"value"}',
        timestamp=1234567890000,
    )
    assert message_to_json(request) == {
        "type": "http_request",
        "request_id": RID,
        "method": "POST",
        "uri": "/api/data?x=1",
        "headers": {"cookie": ["a=1", "b=2"], "content-type": ["application/json"]},
        "body": "eyJ0ZXN0IjoidmFsdWUifQ==",
        "timestamp": 1234567890000,
    }


def test_response_shape_matches_ttf() -> None:
    """An HttpResponse encodes status_code and processing_time_ms as the ttf agent does."""
    response = HttpResponse(
        RID, 404, headers=(("content-type", "text/plain"),), body=b"no", processing_time_ms=7
    )
    assert message_to_json(response) == {
        "type": "http_response",
        "request_id": RID,
        "status_code": 404,
        "headers": {"content-type": ["text/plain"]},
        "body": "bm8=",
        "processing_time_ms": 7,
    }


def test_optional_urls_are_left_out_when_absent() -> None:
    """connection_established omits subdomain_url, path_based_url and the version when they are None."""
    established = ConnectionEstablished(ConnectionId("c1"), TunnelId("t1"), "https://gw/t1")
    assert set(message_to_json(established)) == {"type", "connection_id", "tunnel_id", "public_url"}


def test_null_optional_urls_decode_as_absent() -> None:
    """A serde-style null subdomain_url decodes the same as a missing one."""
    frame = _frame("connection_established", _ESTABLISHED, subdomain_url=None)
    message = decode_frame(frame)
    assert isinstance(message, ConnectionEstablished)
    assert message.subdomain_url is None


def test_request_without_body_decodes_as_empty() -> None:
    """An http_request with no body field (serde's default) decodes with an empty body."""
    frame = json.dumps(
        {
            "type": "http_request",
            "request_id": RID,
            "method": "GET",
            "uri": "/",
            "headers": {},
            "timestamp": 1,
        }
    )
    message = decode_frame(frame)
    assert isinstance(message, HttpRequest)
    assert message.body == b""


def test_response_without_body_or_processing_time_decodes_with_defaults() -> None:
    """An http_response without body or processing_time_ms (#[serde(default)] in ttf) gets b"" and 0."""
    frame = json.dumps({"type": "http_response", "request_id": RID, "status_code": 204, "headers": {}})
    message = decode_frame(frame)
    assert message == HttpResponse(RID, 204)
    assert json.loads(encode_frame(message)) == {
        "type": "http_response",
        "request_id": RID,
        "status_code": 204,
        "headers": {},
        "body": "",
        "processing_time_ms": 0,
    }


def test_error_without_request_id_decodes_as_connection_level() -> None:
    """An error whose request_id is missing (serde's Option) decodes like one whose request_id is null."""
    message = decode_frame('{"type":"error","code":"internal_error","message":"x"}')
    assert message == ErrorMessage("internal_error", "x", None)
    assert json.loads(encode_frame(message))["request_id"] is None


def test_unknown_fields_are_ignored() -> None:
    """Fields a newer peer adds are ignored, as serde ignores them."""
    assert decode_frame('{"type":"ping","sent_at":12}') == Ping()


def test_bytes_frames_are_accepted() -> None:
    """A frame given as UTF-8 bytes decodes like the same text."""
    assert decode_frame(b'{"type":"pong"}') == Pong()


def test_non_ascii_survives() -> None:
    """Non-ASCII header values and messages survive encoding (escaped) and decoding."""
    message = ErrorMessage("internal_error", "échec 🌍", RID)
    frame = encode_frame(message)
    assert frame.isascii()
    assert decode_frame(frame) == message


@pytest.mark.parametrize("body", [b"", b"Hello, World!", bytes(range(256)), b"\xab" * 10000])
def test_body_base64_round_trip(body: bytes) -> None:
    """Bodies encode as standard padded base64 and decode back byte for byte."""
    text = encode_body(body)
    assert decode_body(text) == body
    assert len(text) % 4 == 0


_REQUEST: dict[str, object] = {
    "request_id": RID,
    "method": "GET",
    "uri": "/",
    "headers": {},
    "body": "",
    "timestamp": 1,
}
_RESPONSE: dict[str, object] = {
    "request_id": RID,
    "status_code": 200,
    "headers": {},
    "body": "",
    "processing_time_ms": 1,
}
_CHUNK: dict[str, object] = {"request_id": RID, "index": 0, "data": "AA=="}
_END: dict[str, object] = {"request_id": RID, "count": 1, "length": 1, "sha256": "0" * 64}
_ACK: dict[str, object] = {"request_id": RID, "length": 100}
_ESTABLISHED: dict[str, object] = {"connection_id": "c", "tunnel_id": "t", "public_url": "u"}


def _frame(kind: str, base: dict[str, object], drop: str = "", **changes: object) -> str:
    """A frame of `kind` from `base`, with one field dropped and others changed."""
    fields = {key: value for key, value in (base | changes).items() if key != drop}
    return json.dumps({"type": kind, **fields})


@pytest.mark.parametrize(
    ("frame", "field"),
    [
        ('{"type":"teleport"}', "type"),
        ('{"kind":"ping"}', "type"),
        ('{"type":7}', "type"),
        (_frame("connection_established", _ESTABLISHED, drop="connection_id"), "connection_id"),
        (_frame("connection_established", _ESTABLISHED, connection_id=5), "connection_id"),
        (_frame("connection_established", _ESTABLISHED, connection_id=""), "connection_id"),
        (_frame("connection_established", _ESTABLISHED, subdomain_url=1), "subdomain_url"),
        ('{"type":"ready","protocol_version":"2"}', "protocol_version"),
        ('{"type":"ready","protocol_version":2,"features":"pong"}', "features"),
        ('{"type":"ready","protocol_version":0}', "protocol_version"),
        (_frame("http_request", _REQUEST, body="S=GV"), "body"),
        (_frame("http_request", _REQUEST, body="SGVsbG8"), "body"),
        (_frame("http_request", _REQUEST, body="AB=="), "body"),
        (_frame("http_request", _REQUEST, body=None), "body"),
        (_frame("http_request", _REQUEST, timestamp=-1), "timestamp"),
        (_frame("http_request", _REQUEST, timestamp=1.5), "timestamp"),
        (_frame("http_request", _REQUEST, timestamp=2**64), "timestamp"),
        (_frame("http_request", _REQUEST, drop="method"), "method"),
        (_frame("http_request", _REQUEST, headers=[]), "headers"),
        (_frame("http_request", _REQUEST, headers={"a": "b"}), "headers.a"),
        (_frame("http_request", _REQUEST, headers={"a b": ["c"]}), "headers"),
        (_frame("http_request", _REQUEST, request_id="req_1"), "request_id"),
        (_frame("http_response", _RESPONSE, status_code=True), "status_code"),
        (_frame("http_response", _RESPONSE, status_code=700), "status_code"),
        (_frame("http_response", _RESPONSE, processing_time_ms=None), "processing_time_ms"),
        (_frame("http_response", _RESPONSE, drop="status_code"), "status_code"),
        (_frame("http_response", _RESPONSE, drop="headers"), "headers"),
        (_frame("http_request", _REQUEST, drop="timestamp"), "timestamp"),
        (_frame("http_request", _REQUEST, drop="uri"), "uri"),
        (_frame("http_request", _REQUEST, drop="headers"), "headers"),
        (_frame("http_response", _RESPONSE, body_manifest={"count": 1, "length": 2}), "body_manifest.sha256"),
        (_frame("http_response", _RESPONSE, body_manifest=[]), "body_manifest"),
        (
            _frame("http_response", _RESPONSE, body_manifest={"count": 0, "length": 0, "sha256": "0" * 64}),
            "body_manifest.count",
        ),
        (_frame("body_chunk", _CHUNK, drop="data"), "data"),
        (_frame("body_chunk", _CHUNK, data=""), "data"),
        (_frame("body_chunk", _CHUNK, index="0"), "index"),
        (_frame("http_response", _RESPONSE, body_stream="yes"), "body_stream"),
        (_frame("http_response", _RESPONSE, body="AA==", body_stream=True), "body_stream"),
        (_frame("http_request", _REQUEST, body_stream=1), "body_stream"),
        (_frame("body_end", _END, drop="sha256"), "sha256"),
        (_frame("body_end", _END, sha256="ABC"), "sha256"),
        (_frame("body_end", _END, count=3, length=2), "count"),
        (_frame("body_ack", _ACK, length=0), "length"),
        (_frame("body_ack", _ACK, length=-5), "length"),
        (_frame("body_ack", _ACK, drop="request_id"), "request_id"),
        ('{"type":"error","request_id":null,"code":"teapot","message":"x"}', "code"),
        ('{"type":"error","request_id":null,"code":"timeout"}', "message"),
    ],
)
def test_bad_frames_name_the_field(frame: str, field: str) -> None:
    """Each malformed frame raises RemoteProtocolError naming the field at fault."""
    with pytest.raises(RemoteProtocolError) as caught:
        decode_frame(frame)
    assert caught.value.field == field


@pytest.mark.parametrize("frame", ["", "not json", "[1, 2]", '"ping"', "[" * 100_000, '{"type":"ping"'])
def test_non_object_frames_are_protocol_errors(frame: str) -> None:
    """Text that is not a JSON object raises RemoteProtocolError, never a crash."""
    with pytest.raises(RemoteProtocolError):
        decode_frame(frame, max_bytes=1_000_000)


def test_oversized_frame_is_refused_before_parsing() -> None:
    """A frame over the byte limit is refused with status 413 without being parsed."""
    with pytest.raises(RemoteProtocolError, match="exceeds the 100-byte limit") as caught:
        decode_frame('{"type":"ping","pad":"' + "x" * 200 + '"}', max_bytes=100)
    assert caught.value.status_hint == 413


def test_limit_counts_utf8_bytes() -> None:
    """The size limit counts UTF-8 bytes, not characters."""
    frame = '{"type":"ping","pad":"' + "é" * 40 + '"}'
    assert len(frame) < 100
    with pytest.raises(RemoteProtocolError, match="exceeds"):
        decode_frame(frame, max_bytes=100)


def test_encoding_a_non_message_is_a_local_error() -> None:
    """Encoding something that is not a tunnel message is our own protocol error."""
    with pytest.raises(LocalProtocolError):
        encode_frame("ping")  # type: ignore[arg-type]


def test_chunk_round_trip() -> None:
    """A body chunk's binary data survives encoding and decoding."""
    chunk = BodyChunk(RID, 3, bytes(range(256)) * 3)
    assert decode_frame(encode_frame(chunk)) == chunk


def test_mistyped_type_names_the_json_type() -> None:
    """A `type` that is an object is reported with its JSON type, for a readable error."""
    with pytest.raises(RemoteProtocolError, match="got object") as caught:
        decode_frame('{"type":{}}')
    assert caught.value.field == "type"


# Fuzzing: whatever arrives, decoding returns a message or explains itself --------------------------------

_ANY_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["", "AA==", RID, "timeout", "http_request", "0" * 64]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
_FIXTURE_VALUES = [json.loads(path.read_text()) for path in FIXTURE_FILES]


def _mutate(value: dict[str, object], data: st.DataObject) -> dict[str, object]:
    """Drop, replace or add one field, at the top level or one level down (headers, body_manifest)."""
    value = dict(value)
    nested = [key for key, item in value.items() if isinstance(item, dict) and item]
    descend = data.draw(st.booleans())
    if nested and descend:
        key = data.draw(st.sampled_from(nested))
        inner = value[key]
        assert isinstance(inner, dict)
        value[key] = _mutate(inner, data)
        return value
    action = data.draw(st.sampled_from(["drop", "replace", "add"]))
    if action == "add":
        value[data.draw(st.text(max_size=6))] = data.draw(_ANY_JSON)
        return value
    key = data.draw(st.sampled_from(sorted(value)))
    if action == "drop":
        del value[key]
    else:
        value[key] = data.draw(_ANY_JSON)
    return value


@settings(max_examples=400, deadline=None)
@given(base=st.sampled_from(_FIXTURE_VALUES), data=st.data())
def test_mutated_frames_decode_or_name_the_field(base: dict[str, object], data: st.DataObject) -> None:
    """A fixture frame with a field dropped, retyped or added decodes, or its error names a field."""
    frame = json.dumps(_mutate(base, data))
    error: RemoteProtocolError | None = None
    try:
        message = decode_frame(frame)
    except RemoteProtocolError as exc:
        error = exc
    if error is not None:
        assert error.field
        assert str(error).startswith(f"{error.field}: ")
        return
    # What was accepted is a valid message that survives its own round trip.
    assert decode_frame(encode_frame(message)) == message


@settings(max_examples=200, deadline=None)
@given(frame=st.one_of(st.text(max_size=200), st.binary(max_size=200), _ANY_JSON.map(json.dumps)))
def test_arbitrary_input_never_crashes_the_decoder(frame: str | bytes) -> None:
    """Any text or bytes either decode to a message or raise RemoteProtocolError, never another exception."""
    try:
        message = decode_frame(frame)
    except RemoteProtocolError:
        return
    assert decode_frame(encode_frame(message)) == message
