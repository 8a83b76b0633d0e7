"""Rewrite a response body: undo its Content-Encoding, decode its charset, dispatch by media type, and
encode the result back the same way. Pure.

Anything that cannot be decoded exactly (an unknown or corrupt coding, bytes invalid for the declared
charset, a body over the size limits) is passed through byte for byte with the reason reported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from rewrite.charset import decode_text, encode_text
from rewrite.config import RewriteConfig
from rewrite.css import rewrite_css
from rewrite.encoding import DecodeError, decode_content, encode_content, parse_codings
from rewrite.html import rewrite_html
from rewrite.js import rewrite_js
from rewrite.jsondoc import rewrite_json
from rewrite.result import Rewrite, RewriteResult, Skipped

__all__ = ["BodyResult", "MediaKind", "media_kind", "rewrite_body", "rewrites_media"]

MediaKind = Literal["html", "css", "js", "json"]

_KINDS: dict[str, MediaKind] = {
    "text/html": "html",
    "text/css": "css",
    "text/javascript": "js",
    "application/javascript": "js",
    "application/x-javascript": "js",
    "application/ecmascript": "js",
    "text/ecmascript": "js",
    "application/json": "json",
    "text/json": "json",
}


@dataclass(frozen=True, slots=True)
class BodyResult:
    """A body ready to send (the very same bytes object when unchanged) and what happened to it."""

    body: bytes
    rewrites: tuple[Rewrite, ...] = ()
    skipped: tuple[Skipped, ...] = ()

    @property
    def changed(self) -> bool:
        """True when `body` differs from the input."""
        return bool(self.rewrites)


def media_kind(content_type: str | None) -> MediaKind | None:
    """Which rewriter a Content-Type calls for, or None for media that is never rewritten."""
    if not content_type:
        return None
    essence = content_type.split(";", 1)[0].strip().lower()
    kind = _KINDS.get(essence)
    if kind is None and essence.startswith("application/") and essence.endswith("+json"):
        return "json"  # application/manifest+json, application/vnd.oai.openapi+json, ...
    return kind


def rewrites_media(content_type: str | None, config: RewriteConfig) -> bool:
    """Whether a rewriter reads bodies of this Content-Type under `config`; any other body passes through
    untouched, whatever it holds."""
    kind = media_kind(content_type)
    if kind is None or config.strategy == "none":
        return False
    if config.strategy == "base" and kind != "html":
        return False
    return kind != "js" or config.rewrite_js


def rewrite_body(
    body: bytes, content_type: str | None, content_encoding: str | None, config: RewriteConfig
) -> BodyResult:
    """Rewrite the URLs of a response body, keeping its content coding and charset.

    Args:
        body: The body as received, possibly compressed.
        content_type: The Content-Type header value, or None.
        content_encoding: The Content-Encoding header value, or None.
        config: Origins and switches for this response.

    Returns:
        The new body (the same object when nothing changed), the rewrites, and what was skipped and why.
    """
    kind = media_kind(content_type)
    if kind is None or not body or not rewrites_media(content_type, config):
        return BodyResult(body)
    if len(body) > config.max_body_size:
        return _skip(body, f"body of {len(body)} bytes exceeds max_body_size ({config.max_body_size})")
    codings = parse_codings(content_encoding)
    if codings is None:
        return _skip(body, f"unsupported Content-Encoding {content_encoding!r}")
    try:
        raw = decode_content(body, codings, config.max_decoded_size)
    except DecodeError as exc:
        return _skip(body, str(exc))
    decoded = decode_text(raw, content_type, kind)
    if isinstance(decoded, str):
        return _skip(body, decoded)
    text, codec, _ = decoded
    result = _rewriter(kind, content_type)(text, config)
    if not result.changed:
        return BodyResult(body, skipped=result.skipped)
    encoded = encode_text(result.text, codec, html=kind == "html")
    if isinstance(encoded, str):
        return _skip(body, encoded, *result.skipped)
    return BodyResult(encode_content(encoded, codings), result.rewrites, result.skipped)


def _rewriter(kind: MediaKind, content_type: str | None) -> Callable[[str, RewriteConfig], RewriteResult]:
    if kind == "html":
        return rewrite_html
    if kind == "css":
        return rewrite_css
    if kind == "js":
        return rewrite_js
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    return lambda text, config: rewrite_json(text, config, media_type=media_type)


def _skip(body: bytes, reason: str, *more: Skipped) -> BodyResult:
    return BodyResult(body, skipped=(Skipped(reason, "body"), *more))
