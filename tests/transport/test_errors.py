"""Tests for transport/errors.py: the error tree and its status hints."""

from __future__ import annotations

import pytest

from transport.errors import (
    ConnectionGone,
    LocalProtocolError,
    ProtocolError,
    ProxyError,
    RemoteProtocolError,
    SendFailed,
    TransportError,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)


@pytest.mark.parametrize(
    ("error", "parents", "status"),
    [
        (LocalProtocolError("x"), (ProtocolError, ProxyError), 500),
        (RemoteProtocolError("x"), (ProtocolError, ProxyError), 502),
        (ConnectionGone("x", connection_id="c"), (TransportError, ProxyError), 502),
        (SendFailed("x", connection_id="c", attempts=1), (TransportError, ProxyError), 502),
        (UpstreamTimeout("x"), (UpstreamError, ProxyError, TimeoutError), 504),
        (UpstreamUnavailable("x"), (UpstreamError, ProxyError), 502),
    ],
)
def test_tree_and_default_status(
    error: ProxyError, parents: tuple[type[BaseException], ...], status: int
) -> None:
    """Each error sits where STYLE.md's tree puts it and suggests its default status."""
    assert all(isinstance(error, parent) for parent in parents)
    assert error.status_hint == status


def test_status_hint_can_be_overridden() -> None:
    """An error raised with an explicit status_hint keeps it instead of the class default."""
    assert RemoteProtocolError("too big", status_hint=413).status_hint == 413


def test_protocol_error_names_its_field() -> None:
    """A protocol error about one field says which, in its attribute and its message."""
    error = RemoteProtocolError("missing", field="request_id")
    assert error.field == "request_id"
    assert error.reason == "missing"
    assert str(error) == "request_id: missing"


def test_send_failed_carries_attempts_and_code() -> None:
    """SendFailed records the connection, the attempts spent and the last error code."""
    error = SendFailed("gave up", connection_id="abc", attempts=3, error_code="ForbiddenException")
    assert (error.connection_id, error.attempts, error.error_code) == ("abc", 3, "ForbiddenException")


def test_upstream_timeout_is_caught_as_timeout_error() -> None:
    """Code that catches the builtin TimeoutError also catches UpstreamTimeout."""
    with pytest.raises(TimeoutError):
        raise UpstreamTimeout("the local service took too long")
