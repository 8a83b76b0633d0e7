"""Tests for transport/messages.py: messages validate themselves when built."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from transport.messages import (
    BodyChunk,
    BodyManifest,
    ConnectionEstablished,
    ConnectionId,
    ErrorMessage,
    HttpRequest,
    HttpResponse,
    Ready,
    RequestId,
    TunnelId,
    new_request_id,
)

RID = RequestId("0f8b4f2c-6a51-4c3e-9d7e-2f1a5b6c7d8e")
SHA = "0" * 64


def test_new_request_id_is_a_version_4_uuid() -> None:
    """new_request_id makes canonical UUID4 strings, each different."""
    first, second = new_request_id(), new_request_id()
    assert uuid.UUID(first).version == 4
    assert str(uuid.UUID(first)) == first
    assert first != second


def test_messages_are_frozen() -> None:
    """A message cannot be changed after it is built."""
    request = HttpRequest(RID, "GET", "/")
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.uri = "/other"  # type: ignore[misc]


def test_header_names_are_lower_cased_and_order_kept() -> None:
    """Header names are normalized to lower case, and repeated names stay separate and in order."""
    request = HttpRequest(
        RID, "GET", "/", headers=(("Set-Cookie", "a=1"), ("X-Id", "7"), ("set-cookie", "b=2"))
    )
    assert request.headers == (("set-cookie", "a=1"), ("x-id", "7"), ("set-cookie", "b=2"))


@pytest.mark.parametrize(
    ("kwargs", "complaint"),
    [
        ({"request_id": "req_123"}, "request_id must be a UUID"),
        ({"request_id": RID.upper()}, "canonical"),
        ({"method": "GE T"}, "method"),
        ({"uri": ""}, "uri must not be empty"),
        ({"uri": "/a b"}, "uri must not contain"),
        ({"headers": (("bad name", "v"),)}, "not an HTTP token"),
        ({"headers": (("x", "a\r\nInjected: 1"),)}, "CR, LF or NUL"),
        ({"headers": [("x", "y")]}, "tuple"),
        ({"body": "text"}, "body must be bytes"),
        ({"timestamp": -1}, "timestamp"),
        ({"timestamp": True}, "timestamp"),
        ({"body": b"x", "body_manifest": BodyManifest(1, 1, SHA)}, "body must be empty"),
    ],
)
def test_invalid_request_is_refused(kwargs: dict[str, object], complaint: str) -> None:
    """An HttpRequest with a bad field raises ValueError naming the problem."""
    fields: dict[str, object] = {"request_id": RID, "method": "GET", "uri": "/"} | kwargs
    with pytest.raises(ValueError, match=complaint):
        HttpRequest(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("status", [99, 600, True, 200.0])
def test_response_status_must_be_an_http_status(status: object) -> None:
    """An HttpResponse status outside 100-599, or not an int, is refused."""
    with pytest.raises(ValueError, match="status_code"):
        HttpResponse(RID, status)  # type: ignore[arg-type]


def test_response_processing_time_must_not_be_negative() -> None:
    """A negative processing time is refused."""
    with pytest.raises(ValueError, match="processing_time_ms"):
        HttpResponse(RID, 200, processing_time_ms=-5)


@pytest.mark.parametrize(
    ("count", "length", "sha", "complaint"),
    [
        (0, 0, SHA, "at least 1"),
        (3, 2, SHA, "cannot exceed its length"),
        (1, 5, "ABC", "64 lower-case hex"),
        (1, 5, SHA.upper().replace("0", "A"), "64 lower-case hex"),
        (-1, 5, SHA, "count"),
    ],
)
def test_invalid_manifest_is_refused(count: int, length: int, sha: str, complaint: str) -> None:
    """A body manifest with impossible counts or a malformed digest is refused."""
    with pytest.raises(ValueError, match=complaint):
        BodyManifest(count, length, sha)


def test_chunk_needs_data() -> None:
    """An empty body chunk is refused: every chunk carries at least one byte."""
    with pytest.raises(ValueError, match="data must be non-empty"):
        BodyChunk(RID, 0, b"")


def test_features_need_a_version() -> None:
    """Features without a protocol version are refused: version 1 has no features."""
    with pytest.raises(ValueError, match="features need a protocol_version"):
        Ready(features=("body_chunks",))


@pytest.mark.parametrize("version", [0, -2, True])
def test_version_must_be_positive(version: object) -> None:
    """A protocol version below 1 (or a boolean) is refused."""
    with pytest.raises(ValueError, match="protocol_version"):
        Ready(protocol_version=version)  # type: ignore[arg-type]


def test_version_defaults_to_one() -> None:
    """A ready or connection_established without protocol_version means version 1."""
    assert Ready().version == 1
    assert ConnectionEstablished(ConnectionId("c"), TunnelId("t"), "https://x").version == 1
    assert Ready(protocol_version=2, features=()).version == 2


def test_connection_established_needs_its_ids() -> None:
    """An empty connection id is refused."""
    with pytest.raises(ValueError, match="connection_id must not be empty"):
        ConnectionEstablished(ConnectionId(""), TunnelId("t"), "https://x")


def test_error_message_code_is_a_closed_set() -> None:
    """An error code outside the four `ttf` codes is refused, and request_id may be None."""
    assert ErrorMessage("timeout", "slow").request_id is None
    with pytest.raises(ValueError, match="code must be one of"):
        ErrorMessage("teapot", "no")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("build", "complaint"),
    [
        (
            lambda: ConnectionEstablished(5, TunnelId("t"), "u"),  # type: ignore[arg-type]
            "connection_id must be a string",
        ),
        (lambda: HttpRequest(RID, "GET", "/", headers=(("a",),)), "must hold"),  # type: ignore[arg-type]
        (lambda: Ready(protocol_version=2, features=["pong"]), "features must be a tuple"),  # type: ignore[arg-type]
        (lambda: Ready(protocol_version=2, features=("",)), "features must be a tuple of non-empty"),
    ],
)
def test_mistyped_fields_are_refused(build: object, complaint: str) -> None:
    """Fields of the wrong type are refused with a message naming them."""
    assert callable(build)
    with pytest.raises(ValueError, match=complaint):
        build()


def test_version_two_fields_need_a_version() -> None:
    """local_origin and resume_token are version-2 fields, refused without a protocol version."""
    with pytest.raises(ValueError, match="local_origin needs a protocol_version"):
        Ready(local_origin="http://127.0.0.1:3000")
    with pytest.raises(ValueError, match="resume_token needs a protocol_version"):
        ConnectionEstablished(ConnectionId("c"), TunnelId("t"), "https://gw.example/t", resume_token="t.x")
    with pytest.raises(ValueError, match="local_origin must not be empty"):
        Ready(protocol_version=2, local_origin="")
    ready = Ready(protocol_version=2, features=("pong",), local_origin="http://127.0.0.1:3000")
    assert ready.local_origin == "http://127.0.0.1:3000"
