"""Tests for rewrite/response.py and rewrite/body.py: whole responses in, responses ready to send out."""

from __future__ import annotations

import dataclasses
import gzip
import json

import brotli
import pytest
import zstandard

import rewrite.response
from rewrite import (
    RewriteConfig,
    body_passes_through,
    context_script_hash,
    rewrite_response,
    rewrite_response_head,
)
from rewrite.body import media_kind
from tests.rewrite.conftest import HOST_MODE, PATH_MODE

PAGE = b'<!doctype html><html><head><title>t</title></head><body><a href="/docs">docs</a></body></html>'


def _header(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in headers if k.lower() == name]


def test_gzip_html_rewritten_and_reencoded() -> None:
    """A gzip page is decoded, rewritten, gzip-encoded again, with length, ETag and CSP fixed."""
    body = gzip.compress(PAGE)
    headers = [
        ("Content-Type", "text/html; charset=utf-8"),
        ("Content-Encoding", "gzip"),
        ("Content-Length", str(len(body))),
        ("ETag", '"v1"'),
        ("Content-MD5", "stale"),
        ("Content-Security-Policy", "script-src 'self'"),
        ("Set-Cookie", "a=1; Path=/"),
        ("Set-Cookie", "b=2; Path=/"),
    ]
    result = rewrite_response(headers, body, PATH_MODE)
    assert result.changed
    assert _header(result.headers, "content-encoding") == ["gzip"]
    page = gzip.decompress(result.body)
    assert b'href="/abc123/docs"' in page
    assert b'id="__tunnel_context__"' in page
    assert _header(result.headers, "content-length") == [str(len(result.body))]
    assert _header(result.headers, "etag") == ['W/"v1"']
    assert _header(result.headers, "content-md5") == []
    assert _header(result.headers, "content-security-policy") == [
        f"script-src 'self' '{context_script_hash(PATH_MODE)}'"
    ]
    assert _header(result.headers, "set-cookie") == ["a=1; Path=/abc123", "b=2; Path=/abc123"]
    assert any(r.where == "html url attributes" and r.times == 1 for r in result.report.rewrites)


@pytest.mark.parametrize(
    ("coding", "encode", "decode"),
    [
        ("br", brotli.compress, brotli.decompress),
        ("zstd", zstandard.ZstdCompressor().compress, lambda b: zstandard.ZstdDecompressor().decompress(b)),
    ],
)
def test_other_codings_round_trip(coding: str, encode: object, decode: object) -> None:
    """Brotli and zstd bodies are rewritten and sent back in the same coding."""
    assert callable(encode)
    assert callable(decode)
    result = rewrite_response(
        [("content-type", "text/css"), ("content-encoding", coding)], encode(b"a{b:url(/x.png)}"), PATH_MODE
    )
    assert decode(result.body) == b"a{b:url(/abc123/x.png)}"


def test_unchanged_response_is_byte_identical() -> None:
    """An image, and a stylesheet with nothing to rewrite, keep their body object."""
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    result = rewrite_response([("Content-Type", "image/png"), ("Content-Length", "264")], png, PATH_MODE)
    assert result.body is png
    assert not result.changed
    assert result.headers == [("Content-Type", "image/png"), ("Content-Length", "264")]
    css = b"a { color: red }"
    assert rewrite_response([("content-type", "text/css")], css, PATH_MODE).body is css


def test_latin1_page_stays_latin1() -> None:
    """A latin-1 page is rewritten and its accented bytes are the same single bytes afterwards."""
    page = '<html><head></head><body><p>Café crème</p><a href="/menü">m</a></body></html>'.encode("latin-1")
    result = rewrite_response([("content-type", "text/html; charset=ISO-8859-1")], page, PATH_MODE)
    assert "Café crème".encode("latin-1") in result.body
    assert 'href="/abc123/menü"'.encode("latin-1") in result.body
    assert _header(result.headers, "content-type") == ["text/html; charset=ISO-8859-1"]


@pytest.mark.parametrize(
    ("headers", "body", "reason"),
    [
        ([("content-type", "text/html; charset=utf-8")], b'<a href="/x">\xff\xfe</a>', "not valid utf-8"),
        ([("content-type", "text/html; charset=no-such")], b'<a href="/x">x</a>', "unknown charset"),
        (
            [("content-type", "text/html"), ("content-encoding", "gzip")],
            gzip.compress(PAGE)[:40],
            "truncated",
        ),
        ([("content-type", "text/html"), ("content-encoding", "br")], b"garbage!" * 4, "corrupt br"),
        (
            [("content-type", "text/html"), ("content-encoding", "compress")],
            PAGE,
            "unsupported Content-Encoding",
        ),
        ([("content-type", "text/html"), ("content-range", "bytes 0-9/100")], PAGE, "partial content"),
    ],
)
def test_bad_bodies_pass_through_with_a_reason(
    headers: list[tuple[str, str]], body: bytes, reason: str
) -> None:
    """Undecodable bodies go out byte for byte, and the report says why."""
    result = rewrite_response(headers, body, PATH_MODE)
    assert result.body is body
    assert any(reason in s.reason for s in result.report.skipped), result.report


def test_decompression_bomb_passes_through() -> None:
    """A gzip body inflating past max_decoded_size is not inflated, and is sent as it came."""
    config = RewriteConfig(
        prefix="/abc123",
        public_origin="https://gw.example.com",
        upstream_origin="http://127.0.0.1:3000",
        max_decoded_size=1024 * 1024,
    )
    bomb = gzip.compress(b"<p>" + b" " * (30 * 1024 * 1024))
    result = rewrite_response([("content-type", "text/html"), ("content-encoding", "gzip")], bomb, config)
    assert result.body is bomb
    assert "exceeds" in str(result.report)


def test_body_over_the_size_limit_passes_through() -> None:
    """Bodies above max_body_size are not decoded at all."""
    config = RewriteConfig(
        prefix="/abc123",
        public_origin="https://gw.example.com",
        upstream_origin="http://127.0.0.1:3000",
        max_body_size=10,
    )
    result = rewrite_response([("content-type", "text/html")], PAGE, config)
    assert result.body is PAGE
    assert "max_body_size" in str(result.report)


def test_strategy_none_fixes_headers_only() -> None:
    """With strategy none the body is untouched and Location still gets the prefix."""
    config = RewriteConfig(
        prefix="/abc123",
        public_origin="https://gw.example.com",
        upstream_origin="http://127.0.0.1:3000",
        strategy="none",
    )
    result = rewrite_response([("content-type", "text/html"), ("location", "/x")], PAGE, config)
    assert result.body is PAGE
    assert _header(result.headers, "location") == ["/abc123/x"]


def test_hop_by_hop_dropped_and_length_added_for_dechunked_body() -> None:
    """Transfer-Encoding and Connection go; a buffered body gets its Content-Length."""
    result = rewrite_response(
        [("Transfer-Encoding", "chunked"), ("Connection", "close"), ("Content-Type", "image/png")],
        b"12345",
        PATH_MODE,
    )
    assert result.headers == [("Content-Type", "image/png"), ("content-length", "5")]


def test_head_response_keeps_its_content_length() -> None:
    """An empty body (HEAD, 304) keeps the upstream's Content-Length, which describes the GET body."""
    result = rewrite_response([("content-type", "text/html"), ("content-length", "1234")], b"", PATH_MODE)
    assert _header(result.headers, "content-length") == ["1234"]


def test_openapi_and_javascript_responses() -> None:
    """JSON and JavaScript bodies are dispatched to their rewriters."""
    spec = json.dumps({"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {}}).encode()
    result = rewrite_response([("content-type", "application/json")], spec, PATH_MODE)
    assert json.loads(result.body)["servers"] == [{"url": "/abc123"}]
    js = rewrite_response([("content-type", "text/javascript")], b"fetch('/api/x')", PATH_MODE)
    assert js.body == b"fetch('/abc123/api/x')"


def test_host_mode_response() -> None:
    """In host mode the page keeps its paths and a redirect to the upstream origin moves to the public one."""
    result = rewrite_response(
        [("content-type", "text/html"), ("location", "http://127.0.0.1:3000/a")], PAGE, HOST_MODE
    )
    assert b'href="/docs"' in result.body
    assert _header(result.headers, "location") == ["http://abc123.localhost:8080/a"]


def test_rewriter_failure_fails_open(monkeypatch: pytest.MonkeyPatch) -> None:
    """If a rewriter raises (fault injected here), the original response goes out and the report says why."""

    def broken(*args: object) -> object:
        raise RuntimeError("injected fault")

    monkeypatch.setattr(rewrite.response, "rewrite_body", broken)
    result = rewrite_response([("content-type", "text/html"), ("location", "/x")], PAGE, PATH_MODE)
    assert result.body is PAGE
    assert not result.changed
    assert _header(result.headers, "location") == ["/x"]
    assert "injected fault" in str(result.report)


def test_media_kind() -> None:
    """Content types map to the right rewriter, and unknown ones to none."""
    assert media_kind("text/html; charset=utf-8") == "html"
    assert media_kind("application/vnd.oai.openapi+json") == "json"
    assert media_kind("application/manifest+json") == "json"
    assert media_kind("text/javascript") == "js"
    assert media_kind("image/svg+xml") is None
    assert media_kind(None) is None


@pytest.mark.parametrize(
    ("headers", "config", "passes"),
    [
        ([("Content-Type", "image/png")], PATH_MODE, True),
        ([("Content-Type", "text/event-stream")], PATH_MODE, True),
        ([], PATH_MODE, True),
        ([("Content-Type", "text/html")], PATH_MODE, False),
        ([("Content-Type", "application/vnd.oai.openapi+json")], PATH_MODE, False),
        ([("Content-Type", "text/html"), ("Content-Range", "bytes 0-9/100")], PATH_MODE, True),
        ([("Content-Type", "text/html")], dataclasses.replace(PATH_MODE, strategy="none"), True),
        ([("Content-Type", "text/css")], dataclasses.replace(PATH_MODE, strategy="base"), True),
        ([("Content-Type", "text/javascript")], dataclasses.replace(PATH_MODE, rewrite_js=False), True),
    ],
)
def test_body_passes_through_when_no_rewriter_reads_it(
    headers: list[tuple[str, str]], config: RewriteConfig, passes: bool
) -> None:
    """A body a rewriter would read must be buffered; any other may stream through unchanged."""
    assert body_passes_through(headers, config) is passes


def test_head_of_a_streamed_response_is_rewritten_alone() -> None:
    """The headers of a body that streams through get their URLs rewritten and keep their length."""
    headers = [
        ("Content-Type", "video/mp4"),
        ("Content-Length", "123456789"),
        ("Location", "/watch"),
        ("Set-Cookie", "a=1; Path=/"),
        ("Connection", "keep-alive"),
        ("Transfer-Encoding", "chunked"),
    ]
    head = rewrite_response_head(headers, PATH_MODE)
    assert _header(head, "content-length") == ["123456789"]
    assert _header(head, "location") == ["/abc123/watch"]
    assert _header(head, "set-cookie") == ["a=1; Path=/abc123"]
    assert _header(head, "connection") == []
    assert _header(head, "transfer-encoding") == []
