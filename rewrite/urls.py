"""The one place that decides what a URL found in a response (or asked for in a request) becomes. Pure.

Rules (DESIGN.md, "The rewriting core"): absolute paths and absolute URLs that name the upstream or the
public origin get the prefix; relative URLs, fragments, other schemes, other hosts and URLs that already
carry the prefix stay as they are, so rewriting twice equals rewriting once.
"""

from __future__ import annotations

import posixpath
from urllib.parse import unquote

from regex import escape as regex_escape

from rewrite.config import RewriteConfig

__all__ = ["absolute_path_pattern", "is_prefixed", "to_public_url", "to_upstream_path"]

# URL-ish attribute values may be padded with ASCII whitespace, which browsers strip
# (https://url.spec.whatwg.org/#concept-basic-url-parser, "leading and trailing C0 control or space").
_WHITESPACE = " \t\n\r\f"
_HTTP_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
_WS_FOR = {"http": "ws", "https": "wss"}


def is_prefixed(path: str, prefix: str) -> bool:
    """True when `path` is the prefix itself or lies under it (`/abc`, `/abc/`, `/abc?x`, `/abc#y`)."""
    if not path.startswith(prefix):
        return False
    return len(path) == len(prefix) or path[len(prefix)] in "/?#"


def absolute_path_pattern(prefix: str) -> str:
    """The regex form of `to_public_url`'s rule for absolute paths, for a value delimited by `"`.

    It matches the leading `/` of a path that needs the prefix: not `//` or `/\\` (those name a host)
    and not already under the prefix. Inserting `prefix` before the match is exactly what
    `to_public_url` does to such a path; a property test holds the two to that.
    """
    if not prefix:
        return r"(?!)"  # host mode: no path ever changes
    rest = regex_escape(prefix[1:])
    # After the prefix: "/", "?", "#", or the end of the value, trailing whitespace aside ("/abc123 x" is
    # a path segment "abc123 x", not under the prefix).
    return rf"/(?![/\\])(?!{rest}(?:[/?#]|[ \t\n\r\f]*+(?:\"|$)))"


def to_public_url(url: str, config: RewriteConfig) -> str | None:
    """Map a URL found in an upstream response to the URL a browser must use.

    Args:
        url: The URL as it appears in the response, already unescaped from its container.
        config: The tunnel's origins and prefix.

    Returns:
        The new URL, or None when the URL must stay as it is.
    """
    if not url:
        return None
    first = url[0]
    if first in _WHITESPACE or url[-1] in _WHITESPACE:
        core = url.strip(_WHITESPACE)
        if not core:
            return None
        mapped = to_public_url(core, config)
        if mapped is None:
            return None
        start = url.index(core[0])
        return url[:start] + mapped + url[start + len(core) :]
    if first == "/":
        if len(url) > 1 and url[1] in "/\\":
            return _map_absolute("http:" + url, config, protocol_relative=True)
        prefix = config.prefix
        if not prefix or is_prefixed(url, prefix):
            return None
        return prefix + url
    if first in "#?." or ":" not in url:
        return None
    return _map_absolute(url, config, protocol_relative=False)


def _map_absolute(url: str, config: RewriteConfig, *, protocol_relative: bool) -> str | None:
    """Map `scheme://authority/path` when the authority names the upstream or the public origin."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return None
    http_scheme = _HTTP_SCHEMES.get(scheme.lower())
    if http_scheme is None:
        return None
    cut = len(rest)
    for stop in "/?#\\":
        found = rest.find(stop)
        if found != -1 and found < cut:
            cut = found
    authority, tail = rest[:cut], rest[cut:]
    if "@" in authority:  # credentials: never ours to touch
        return None
    origin = _origin(http_scheme, authority)
    public_origin = config.public_origin
    if origin not in config.upstream_origins:
        names_public = origin == public_origin or (
            protocol_relative and _same_authority(origin, public_origin)
        )
        # The public origin needs the prefix only in path mode, and only once.
        if not names_public or not config.prefix or is_prefixed(tail or "/", config.prefix):
            return None
    if tail and tail[0] == "\\":
        tail = "/" + tail[1:]
    path = config.prefix + (tail if tail.startswith("/") else "/" + tail)
    if protocol_relative:
        return "//" + public_origin.partition("://")[2] + path
    public_scheme, _, public_authority = public_origin.partition("://")
    if scheme.lower() in ("ws", "wss"):
        public_scheme = _WS_FOR[public_scheme]
    return f"{public_scheme}://{public_authority}{path}"


def _origin(scheme: str, authority: str) -> str:
    """`scheme://host[:port]` in the normal form of `config.normalize_origin`, without its checks."""
    authority = authority.lower()
    if authority.endswith(":80") and scheme == "http":
        authority = authority[:-3]
    elif authority.endswith(":443") and scheme == "https":
        authority = authority[:-4]
    return f"{scheme}://{authority}"


def _same_authority(origin: str, other: str) -> bool:
    """True when two origins differ at most by scheme (a protocol-relative URL takes the page's)."""
    return origin.partition("://")[2] == other.partition("://")[2]


def to_upstream_path(target: str, prefix: str) -> str | None:
    """Map a public request target (`/abc123/docs?x=1`) to the upstream one (`/docs?x=1`).

    Dot segments are resolved first, with percent-encoded dots and slashes seen as the upstream would see
    them, so `/abc123/../other/` can never name a path outside the tunnel. The query string passes as is.

    Args:
        target: The request target: path and optional query, as the client sent it.
        prefix: The tunnel's prefix, or "" in host mode.

    Returns:
        The upstream target, or None when the target does not lie under `prefix`.
    """
    path, sep, query = target.partition("?")
    if not path.startswith("/"):
        return None
    # Judge by what the upstream will see after decoding, but forward the client's own bytes.
    decoded = unquote(path)
    if prefix and _has_dot_segments(decoded) and not is_prefixed(_resolve_dots(decoded), prefix):
        return None
    if _has_dot_segments(path):
        path = _resolve_dots(path)
    if prefix:
        if not is_prefixed(path, prefix):
            return None
        path = path[len(prefix) :] or "/"
    return path + sep + query


def _has_dot_segments(path: str) -> bool:
    return "/." in path or "\\" in path


def _resolve_dots(path: str) -> str:
    """Resolve `.` and `..` segments as RFC 3986 section 5.2.4 does, keeping a trailing slash."""
    resolved = posixpath.normpath(path.replace("\\", "/"))
    resolved = "/" + resolved.lstrip("/")
    if path.endswith(("/", "/.", "/..")) and resolved != "/":
        resolved += "/"
    return resolved
