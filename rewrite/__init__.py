"""The rewriting core: a pure response filter that makes web apps work behind a path prefix or another host.

Two calls are all a proxy needs::

    from rewrite import RewriteConfig, rewrite_request, rewrite_response

    config = RewriteConfig(prefix="/abc123", public_origin="https://gw.example.com",
                           upstream_origin="http://127.0.0.1:3000")
    upstream = rewrite_request("GET", "/abc123/docs?x=1", headers, config, client_ip="203.0.113.7")
    result = rewrite_response(upstream_headers, upstream_body, config)
"""

from __future__ import annotations

from rewrite.body import BodyResult, MediaKind, media_kind, rewrite_body, rewrites_media
from rewrite.charset import declared_charset, decode_text, encode_text
from rewrite.config import RewriteConfig, Strategy, normalize_origin
from rewrite.csp import allow_script_hash
from rewrite.css import rewrite_css
from rewrite.encoding import DecodeError, decode_content, encode_content, parse_codings
from rewrite.headers import rewrite_headers, rewrite_refresh
from rewrite.html import URL_ATTRIBUTES, rewrite_html
from rewrite.inject import (
    CONTEXT_SCRIPT_ID,
    context_script,
    context_script_hash,
    inject_tunnel_context,
    place_context_script,
)
from rewrite.js import rewrite_js
from rewrite.jsondoc import rewrite_json
from rewrite.request import HOP_BY_HOP, UpstreamRequest, rewrite_request, strip_hop_by_hop
from rewrite.response import body_passes_through, rewrite_response, rewrite_response_head
from rewrite.result import Report, ResponseResult, Rewrite, RewriteResult, Skipped
from rewrite.urls import absolute_path_pattern, is_prefixed, to_public_url, to_upstream_path

__all__ = [
    "CONTEXT_SCRIPT_ID",
    "HOP_BY_HOP",
    "URL_ATTRIBUTES",
    "BodyResult",
    "DecodeError",
    "MediaKind",
    "Report",
    "ResponseResult",
    "Rewrite",
    "RewriteConfig",
    "RewriteResult",
    "Skipped",
    "Strategy",
    "UpstreamRequest",
    "absolute_path_pattern",
    "allow_script_hash",
    "body_passes_through",
    "context_script",
    "context_script_hash",
    "declared_charset",
    "decode_content",
    "decode_text",
    "encode_content",
    "encode_text",
    "inject_tunnel_context",
    "is_prefixed",
    "media_kind",
    "normalize_origin",
    "parse_codings",
    "place_context_script",
    "rewrite_body",
    "rewrite_css",
    "rewrite_headers",
    "rewrite_html",
    "rewrite_js",
    "rewrite_json",
    "rewrite_refresh",
    "rewrite_request",
    "rewrite_response",
    "rewrite_response_head",
    "rewrites_media",
    "strip_hop_by_hop",
    "to_public_url",
    "to_upstream_path",
]
