"""Tests for rewrite/headers.py: Location, Content-Location, Refresh, Link, Set-Cookie."""

from __future__ import annotations

import pytest

from rewrite.headers import rewrite_headers, rewrite_refresh
from rewrite.result import Rewrite
from tests.rewrite.conftest import HOST_MODE, PATH_MODE


def _one(name: str, value: str, host_mode: bool = False) -> str:
    rewrites: list[Rewrite] = []
    out = rewrite_headers([(name, value)], HOST_MODE if host_mode else PATH_MODE, rewrites)
    return out[0][1]


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("Location", "/login", "/abc123/login"),
        ("location", "http://127.0.0.1:3000/next?x=1", "https://gw.example.com/abc123/next?x=1"),
        ("Location", "https://gw.example.com/abc123/ok", "https://gw.example.com/abc123/ok"),
        ("Location", "https://accounts.example.org/auth", "https://accounts.example.org/auth"),
        ("Location", "relative/page", "relative/page"),
        ("Content-Location", "/items/1", "/abc123/items/1"),
        ("Refresh", "5; url=/next", "5; url=/abc123/next"),
        ("Refresh", "0;URL='/quoted'", "0;URL='/abc123/quoted'"),
        ("Refresh", "10", "10"),
        (
            "Link",
            "</static/app.css>; rel=preload; as=style, <https://cdn.example.org/x.js>; rel=preload",
            "</abc123/static/app.css>; rel=preload; as=style, <https://cdn.example.org/x.js>; rel=preload",
        ),
        ("Set-Cookie", "session=abc; Path=/; HttpOnly", "session=abc; Path=/abc123; HttpOnly"),
        ("Set-Cookie", "a=1; path=/app; Secure", "a=1; path=/abc123/app; Secure"),
        ("Set-Cookie", "a=1; Domain=localhost; Path=/", "a=1; Path=/abc123"),
        ("Set-Cookie", "a=1; Domain=.127.0.0.1", "a=1"),
        ("Set-Cookie", "a=1; Domain=example.org", "a=1; Domain=example.org"),
        ("Set-Cookie", "a=1; Path=/abc123/x", "a=1; Path=/abc123/x"),
        (
            "Set-Cookie",
            "a=b=c; Expires=Wed, 21 Oct 2037 07:28:00 GMT",
            "a=b=c; Expires=Wed, 21 Oct 2037 07:28:00 GMT",
        ),
        ("Service-Worker-Allowed", "/", "/abc123/"),
        ("X-Other", "/not/a/header/to/touch", "/not/a/header/to/touch"),
    ],
)
def test_path_mode_header(name: str, value: str, expected: str) -> None:
    """URL-bearing headers get the prefix; other headers and other hosts stay."""
    assert _one(name, value) == expected


def test_host_mode_headers() -> None:
    """In host mode only upstream-origin URLs and upstream cookie domains change."""
    assert _one("Location", "/login", host_mode=True) == "/login"
    assert _one("Location", "http://localhost:3000/x", host_mode=True) == "http://abc123.localhost:8080/x"
    assert _one("Set-Cookie", "a=1; Path=/", host_mode=True) == "a=1; Path=/"
    assert _one("Set-Cookie", "a=1; Domain=127.0.0.1; Path=/", host_mode=True) == "a=1; Path=/"


def test_repeated_headers_keep_order_and_count() -> None:
    """Two Set-Cookie headers stay two, in order, each rewritten, and every change is reported."""
    rewrites: list[Rewrite] = []
    headers = [("Set-Cookie", "a=1; Path=/"), ("X-A", "1"), ("Set-Cookie", "b=2; Path=/b")]
    out = rewrite_headers(headers, PATH_MODE, rewrites)
    assert out == [("Set-Cookie", "a=1; Path=/abc123"), ("X-A", "1"), ("Set-Cookie", "b=2; Path=/abc123/b")]
    assert [r.where for r in rewrites] == ["header Set-Cookie", "header Set-Cookie"]


def test_unchanged_headers_are_the_same_list() -> None:
    """Nothing to rewrite: the very same list comes back."""
    headers = [("Content-Type", "text/plain")]
    assert rewrite_headers(headers, PATH_MODE, []) is headers


def test_rewrite_refresh_ignores_delay_only() -> None:
    """A refresh without a URL, or with an other-host URL, has nothing to map."""
    assert rewrite_refresh("5", PATH_MODE) is None
    assert rewrite_refresh("0; url=https://example.org/", PATH_MODE) is None
