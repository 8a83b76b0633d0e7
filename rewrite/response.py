"""The response filter: headers and body of an upstream response in, the response to send out. Pure."""

from __future__ import annotations

from collections.abc import Iterable

from rewrite.body import rewrite_body, rewrites_media
from rewrite.config import RewriteConfig
from rewrite.csp import allow_script_hash
from rewrite.headers import rewrite_headers
from rewrite.inject import context_script_hash
from rewrite.request import strip_hop_by_hop
from rewrite.result import Report, ResponseResult, Rewrite, Skipped

__all__ = ["body_passes_through", "rewrite_response", "rewrite_response_head"]

_CSP_HEADERS = frozenset({"content-security-policy", "content-security-policy-report-only"})
# Integrity headers describe the bytes the upstream sent; after a rewrite they would be lies.
_STALE_WHEN_CHANGED = frozenset({"content-md5", "digest", "content-digest", "repr-digest"})


def rewrite_response(
    headers: Iterable[tuple[str, str]], body: bytes, config: RewriteConfig
) -> ResponseResult:
    """Rewrite an upstream response so that every URL in it works under the public origin and prefix.

    Never raises: a response that cannot be rewritten goes out as it came (less hop-by-hop headers), and
    `report` says why. A response that needed no change keeps its body byte for byte.

    Args:
        headers: The response headers as (name, value) pairs; repeated names (Set-Cookie) stay repeated.
        body: The whole response body, as received (possibly compressed).
        config: Origins and switches for this tunnel.

    Returns:
        Headers ready to send (Content-Length right when the body changed), the body, the report and
        whether anything changed.
    """
    pairs = strip_hop_by_hop(headers)
    try:
        return _rewrite(pairs, body, config)
    except Exception as exc:  # fail open: a bug in a rewriter must never cost the caller the response
        skipped = Skipped(
            f"rewriter failed ({type(exc).__name__}: {exc}); response passed through", "response"
        )
        return ResponseResult(_framed(pairs, body), body, Report(skipped=(skipped,)), changed=False)


def body_passes_through(headers: Iterable[tuple[str, str]], config: RewriteConfig) -> bool:
    """Whether `rewrite_response` leaves the body of a response with these headers as it is, whatever the
    body holds: then a proxy may stream the body instead of buffering it, and rewrite the headers alone
    with `rewrite_response_head`.

    Args:
        headers: The response headers.
        config: Origins and switches for this tunnel.
    """
    pairs = list(headers)
    if _header(pairs, "content-range") is not None:
        return True
    return not rewrites_media(_header(pairs, "content-type"), config)


def rewrite_response_head(headers: Iterable[tuple[str, str]], config: RewriteConfig) -> list[tuple[str, str]]:
    """The headers of a response whose body passes through unchanged (see `body_passes_through`): URLs
    rewritten, hop-by-hop headers dropped, and the upstream's Content-Length kept, since the body is the
    upstream's. Never raises: on a rewriter failure the headers pass through (less hop-by-hop ones).

    Args:
        headers: The response headers as (name, value) pairs; repeated names stay repeated.
        config: Origins and switches for this tunnel.
    """
    pairs = strip_hop_by_hop(headers)
    try:
        return rewrite_headers(pairs, config, [])
    except Exception:  # fail open, as rewrite_response does
        return pairs


def _rewrite(pairs: list[tuple[str, str]], body: bytes, config: RewriteConfig) -> ResponseResult:
    rewrites: list[Rewrite] = []
    skipped: list[Skipped] = []
    if _header(pairs, "content-range") is not None:
        skipped.append(Skipped("partial content (Content-Range) passes through unrewritten", "body"))
        new_body = body
    else:
        result = rewrite_body(
            body, _header(pairs, "content-type"), _header(pairs, "content-encoding"), config
        )
        new_body = result.body
        rewrites.extend(result.rewrites)
        skipped.extend(result.skipped)
    out = rewrite_headers(pairs, config, rewrites)
    body_changed = new_body is not body
    if body_changed:
        injected = any(r.where == "html context script" for r in rewrites)
        out = _after_body_change(out, new_body, config if injected else None, rewrites)
    else:
        out = _framed(out, body)
    report = Report(tuple(rewrites), tuple(skipped))
    return ResponseResult(out, new_body, report, changed=bool(rewrites))


def _after_body_change(
    pairs: list[tuple[str, str]], body: bytes, csp_config: RewriteConfig | None, rewrites: list[Rewrite]
) -> list[tuple[str, str]]:
    """Fix what a new body makes wrong: length, validators, integrity headers, and the CSP for our script."""
    out: list[tuple[str, str]] = []
    for name, value in pairs:
        low = name.lower()
        if low == "content-length" or low in _STALE_WHEN_CHANGED:
            continue
        if low == "etag" and not value.startswith("W/"):
            # The representation changed but means the same: a weak validator says exactly that
            # (RFC 9110 section 8.8.1), as nginx's sub_filter does.
            value = "W/" + value
        elif low in _CSP_HEADERS and csp_config is not None:
            new = allow_script_hash(value, context_script_hash(csp_config))
            if new is not None:
                rewrites.append(Rewrite(f"header {name}", value, new))
                value = new
        out.append((name, value))
    out.append(("content-length", str(len(body))))
    return out


def _framed(pairs: list[tuple[str, str]], body: bytes) -> list[tuple[str, str]]:
    """Once chunked framing is stripped, a buffered body needs a Content-Length to be sent as is."""
    if body and _header(pairs, "content-length") is None:
        return [*pairs, ("content-length", str(len(body)))]
    return pairs


def _header(pairs: list[tuple[str, str]], name: str) -> str | None:
    return next((value for key, value in pairs if key.lower() == name), None)
