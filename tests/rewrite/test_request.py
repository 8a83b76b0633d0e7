"""Tests for rewrite/request.py: the public request mapped to the upstream one."""

from __future__ import annotations

from rewrite.request import rewrite_request, strip_hop_by_hop
from tests.rewrite.conftest import HOST_MODE, PATH_MODE


def test_prefix_stripped_and_forwarded_headers_added() -> None:
    """The prefix goes, the query stays raw, X-Forwarded-* describe the public side."""
    up = rewrite_request(
        "get",
        "/abc123/api/items?q=a+b&x=%2F",
        [("Host", "gw.example.com"), ("Accept", "text/html"), ("X-Forwarded-For", "10.0.0.1")],
        PATH_MODE,
        client_ip="203.0.113.7",
    )
    assert up is not None
    assert up.method == "GET"
    assert up.target == "/api/items?q=a+b&x=%2F"
    assert up.url == "http://127.0.0.1:3000/api/items?q=a+b&x=%2F"
    headers = dict(up.headers)
    assert headers["host"] == "gw.example.com"
    assert headers["x-forwarded-for"] == "10.0.0.1, 203.0.113.7"
    assert headers["x-forwarded-proto"] == "https"
    assert headers["x-forwarded-host"] == "gw.example.com"
    assert headers["x-forwarded-prefix"] == "/abc123"
    assert headers["Accept"] == "text/html"


def test_hop_by_hop_and_connection_named_headers_dropped() -> None:
    """Connection, Keep-Alive, TE, Upgrade and whatever Connection names never reach the upstream."""
    pairs = [
        ("Connection", "keep-alive, X-Secret-Hop"),
        ("Keep-Alive", "timeout=5"),
        ("TE", "trailers"),
        ("Upgrade", "h2c"),
        ("Transfer-Encoding", "chunked"),
        ("Proxy-Authorization", "Basic x"),
        ("X-Secret-Hop", "1"),
        ("Cookie", "a=1"),
        ("Cookie", "b=2"),
    ]
    assert strip_hop_by_hop(pairs) == [("Cookie", "a=1"), ("Cookie", "b=2")]


def test_rewrite_host_and_host_mode() -> None:
    """rewrite_host sends the upstream's own host; host mode adds no prefix header."""
    up = rewrite_request("POST", "/x", [("host", "abc123.localhost:8080")], HOST_MODE, rewrite_host=True)
    assert up is not None
    headers = dict(up.headers)
    assert headers["host"] == "127.0.0.1:3000"
    assert headers["x-forwarded-host"] == "abc123.localhost:8080"
    assert "x-forwarded-prefix" not in headers


def test_accept_encoding_narrowed_to_decodable_codings() -> None:
    """Codings the response side cannot decode are not asked for."""
    up = rewrite_request(
        "GET", "/abc123/", [("Accept-Encoding", "gzip, deflate, br, zstd, dcb, dcz")], PATH_MODE
    )
    assert up is not None
    assert dict(up.headers)["Accept-Encoding"] == "gzip, deflate, br, zstd"
    only_unknown = rewrite_request("GET", "/abc123/", [("Accept-Encoding", "dcb")], PATH_MODE)
    assert only_unknown is not None
    assert "Accept-Encoding" not in dict(only_unknown.headers)


def test_outside_the_prefix_is_none() -> None:
    """A target outside the tunnel, or climbing out of it, maps to nothing."""
    assert rewrite_request("GET", "/other/x", [], PATH_MODE) is None
    assert rewrite_request("GET", "/abc123/../other/", [], PATH_MODE) is None
