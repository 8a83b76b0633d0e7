"""Rewrite response headers that carry URLs: Location, Content-Location, Refresh, Link, Set-Cookie. Pure."""

from __future__ import annotations

import regex

from rewrite.config import RewriteConfig
from rewrite.result import Rewrite
from rewrite.urls import is_prefixed, to_public_url

__all__ = ["rewrite_headers", "rewrite_refresh"]

_URL_HEADERS = frozenset({"location", "content-location"})
# `Refresh: 5; url=/next` and `<meta http-equiv=refresh content="0;URL='/next'">` (HTML Standard,
# "shared declarative refresh steps"): a delay, a separator, an optional `url=`, an optionally quoted URL.
_REFRESH = regex.compile(
    r"""(?P<lead> \s*+ [\d.]*+ \s*+ [;,]?+ \s*+ (?: url \s*+ = \s*+ )?+ )
        (?P<quote> ["']?+ )
        (?P<url> .*? )
        (?P<tail> (?P=quote) \s*+ )$""",
    regex.VERBOSE | regex.IGNORECASE | regex.DOTALL,
)
_LINK_TARGET = regex.compile(r"<(?P<url>[^>]*+)>")


def rewrite_refresh(value: str, config: RewriteConfig) -> str | None:
    """Map the URL of a Refresh header or meta refresh `content`; None when it stays as it is."""
    match = _REFRESH.match(value, timeout=config.regex_timeout)
    if match is None or not match.group("url"):
        return None
    mapped = to_public_url(match.group("url"), config)
    if mapped is None:
        return None
    return match.group("lead") + match.group("quote") + mapped + match.group("tail")


def rewrite_headers(
    headers: list[tuple[str, str]], config: RewriteConfig, rewrites: list[Rewrite]
) -> list[tuple[str, str]]:
    """Rewrite the URL-bearing headers of a response, keeping order and repeated headers.

    Args:
        headers: The response headers, hop-by-hop ones already removed.
        config: The tunnel's origins and prefix.
        rewrites: Every change made is appended here.

    Returns:
        The new header list (the same list when nothing changed).
    """
    out: list[tuple[str, str]] | None = None
    for index, (name, value) in enumerate(headers):
        low = name.lower()
        if low in _URL_HEADERS:
            new = to_public_url(value, config)
        elif low == "refresh":
            new = rewrite_refresh(value, config)
        elif low == "link":
            new = _rewrite_link(value, config)
        elif low == "set-cookie":
            new = _rewrite_cookie(value, config)
        elif low == "service-worker-allowed" and config.prefix:
            new = to_public_url(value, config)
        else:
            continue
        if new is None or new == value:
            continue
        if out is None:
            out = list(headers)
        out[index] = (name, new)
        rewrites.append(Rewrite(f"header {name}", value, new))
    return headers if out is None else out


def _rewrite_link(value: str, config: RewriteConfig) -> str | None:
    """Map each `<uri-reference>` of a Link header (RFC 8288 section 3)."""
    changed = False

    def replace(match: regex.Match[str]) -> str:
        nonlocal changed
        mapped = to_public_url(match.group("url"), config)
        if mapped is None:
            return match.group(0)
        changed = True
        return f"<{mapped}>"

    new = _LINK_TARGET.sub(replace, value, timeout=config.regex_timeout)
    return new if changed else None


def _rewrite_cookie(value: str, config: RewriteConfig) -> str | None:
    """Scope a cookie to the tunnel: `Path` gets the prefix, a `Domain` naming the upstream host goes.

    Without `Domain` the browser keeps the cookie for the public host alone (RFC 6265 section 5.3, step 6),
    which is exactly the host the tunnel is reached at.
    """
    parts = value.split(";")
    kept: list[str] = [parts[0]]
    changed = False
    for attribute in parts[1:]:
        name, eq, attr_value = attribute.partition("=")
        key = name.strip().lower()
        if key == "path" and config.prefix:
            path = attr_value.strip()
            if path.startswith("/") and not is_prefixed(path, config.prefix):
                new_path = config.prefix if path == "/" else config.prefix + path
                attribute = f"{name}{eq}{new_path}"
                changed = True
        elif key == "domain":
            domain = attr_value.strip().lstrip(".").lower()
            if domain.strip("[]") in config.upstream_hosts:
                changed = True
                continue
        kept.append(attribute)
    return ";".join(kept) if changed else None
