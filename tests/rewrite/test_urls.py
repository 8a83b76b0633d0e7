"""Tests for rewrite/urls.py: the one decision of what a URL becomes."""

from __future__ import annotations

import pytest

from rewrite.config import RewriteConfig
from rewrite.urls import is_prefixed, to_public_url, to_upstream_path
from tests.rewrite.conftest import HOST_MODE, PATH_MODE


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("/x", "/abc123/x"),
        ("/", "/abc123/"),
        ("/x?q=1#frag", "/abc123/x?q=1#frag"),
        ("/abc1234", "/abc123/abc1234"),
        ("//127.0.0.1:3000/a", "//gw.example.com/abc123/a"),
        ("http://localhost:3000/q?x#y", "https://gw.example.com/abc123/q?x#y"),
        ("HTTP://LOCALHOST:3000/A", "https://gw.example.com/abc123/A"),
        ("http://[::1]:3000/v6", "https://gw.example.com/abc123/v6"),
        ("http://127.0.0.1:3000", "https://gw.example.com/abc123/"),
        ("https://gw.example.com/p", "https://gw.example.com/abc123/p"),
        ("https://gw.example.com:443/p", "https://gw.example.com/abc123/p"),
        ("ws://127.0.0.1:3000/socket", "wss://gw.example.com/abc123/socket"),
        ("  /padded  ", "  /abc123/padded  "),
    ],
)
def test_path_mode_maps(url: str, expected: str) -> None:
    """Absolute paths and URLs naming the upstream or public origin get the prefix."""
    assert to_public_url(url, PATH_MODE) == expected


@pytest.mark.parametrize(
    "url",
    [
        "",
        "   ",
        "relative/x",
        "./x",
        "../x",
        "#frag",
        "?q=1",
        "/abc123",
        "/abc123/",
        "/abc123/x",
        "/abc123?x",
        "/abc123#y",
        "https://gw.example.com/abc123/p",
        "//cdn.example.org/lib.js",
        "https://other.example.org/",
        "http://127.0.0.1:4000/other-port",
        "data:text/plain,hi",
        "mailto:a@example.com",
        "javascript:void(0)",
        "blob:https://gw.example.com/uuid",
        "http://user:pw@127.0.0.1:3000/",
        "/\\evil.example",
        "tel:+123",
    ],
)
def test_path_mode_leaves_alone(url: str) -> None:
    """Relative URLs, other schemes and hosts, credentials and prefixed URLs stay as they are."""
    assert to_public_url(url, PATH_MODE) is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("/x", None),
        ("http://127.0.0.1:3000/x", "http://abc123.localhost:8080/x"),
        ("http://localhost:3000/", "http://abc123.localhost:8080/"),
        ("ws://127.0.0.1:3000/ws", "ws://abc123.localhost:8080/ws"),
        ("//127.0.0.1:3000/a", "//abc123.localhost:8080/a"),
        ("http://abc123.localhost:8080/x", None),
    ],
)
def test_host_mode_maps_only_upstream_origins(url: str, expected: str | None) -> None:
    """In host mode paths need nothing; only URLs naming the upstream change."""
    assert to_public_url(url, HOST_MODE) == expected


def test_mapping_is_idempotent() -> None:
    """Mapping a mapped URL again changes nothing."""
    for url in ("/x", "http://127.0.0.1:3000/y", "//localhost:3000/z", "https://gw.example.com/w"):
        once = to_public_url(url, PATH_MODE)
        assert once is not None
        assert to_public_url(once, PATH_MODE) is None


def test_upstream_aliases_are_honoured() -> None:
    """An extra alias origin is treated like the upstream itself."""
    config = RewriteConfig(
        prefix="/t",
        public_origin="https://gw.example.com",
        upstream_origin="http://127.0.0.1:3000",
        upstream_aliases=("http://devbox.internal:3000",),
    )
    assert to_public_url("http://devbox.internal:3000/a", config) == "https://gw.example.com/t/a"


def test_is_prefixed_needs_a_segment_boundary() -> None:
    """`/abc1234` does not lie under `/abc123`."""
    assert is_prefixed("/abc123/x", "/abc123")
    assert is_prefixed("/abc123", "/abc123")
    assert not is_prefixed("/abc1234", "/abc123")


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/abc123/docs?x=1&y=%2F", "/docs?x=1&y=%2F"),
        ("/abc123", "/"),
        ("/abc123?q=a+b", "/?q=a+b"),
        ("/abc123/a/../b", "/b"),
        ("/abc123/a/./b/", "/a/b/"),
        ("/abc123/../other/x", None),
        ("/abc123/%2e%2e/other", None),
        ("/abc123/..%2Fother", None),
        ("/other/x", None),
        ("/abc1234/x", None),
        ("docs", None),
        ("*", None),
    ],
)
def test_to_upstream_path(target: str, expected: str | None) -> None:
    """The prefix is stripped, the query kept, and nothing can climb out of the tunnel."""
    assert to_upstream_path(target, "/abc123") == expected


def test_to_upstream_path_in_host_mode_keeps_the_path() -> None:
    """Without a prefix the target passes unchanged, dot segments resolved."""
    assert to_upstream_path("/docs?x=1", "") == "/docs?x=1"
    assert to_upstream_path("/a/../b", "") == "/b"
