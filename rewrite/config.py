"""The settings of one rewriting job: where the public and upstream origins are, and what to rewrite. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

__all__ = ["RewriteConfig", "Strategy", "normalize_origin"]

Strategy = Literal["full", "base", "none"]
"""`full` rewrites every URL it can find; `base` only adds a `<base href>` to HTML and fixes headers;
`none` passes bodies through and fixes headers only."""

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]", "0.0.0.0")


def normalize_origin(origin: str) -> str:
    """Return `scheme://host[:port]` in lower case with the default port dropped.

    Raises:
        ValueError: `origin` is not an http(s) origin, or carries a path, query or fragment.
    """
    parts = urlsplit(origin.strip())
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"origin must look like 'https://host[:port]', got {origin!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"origin must not carry a path, query or fragment, got {origin!r}")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"origin has a bad port: {origin!r}") from exc
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def _host(origin: str) -> str:
    """The host of a normalised origin, without port or IPv6 brackets."""
    authority = origin.partition("://")[2]
    if authority.startswith("["):
        return authority[1 : authority.index("]")]
    return authority.partition(":")[0]


def _aliases(origin: str) -> tuple[str, ...]:
    """Every origin under which a loopback upstream may name itself (127.0.0.1, localhost, ...)."""
    scheme, _, authority = origin.partition("://")
    host, port = authority, ""
    if authority.startswith("["):
        end = authority.index("]") + 1
        host, port = authority[:end], authority[end:]
    elif ":" in authority:
        host, colon, rest = authority.partition(":")
        port = colon + rest
    hosts = _LOOPBACK_NAMES if host in _LOOPBACK_NAMES else (host,)
    return tuple(f"{scheme}://{name}{port}" for name in hosts)


@dataclass(frozen=True, slots=True)
class RewriteConfig:
    """Origins and switches for rewriting the responses of one tunnel.

    Args:
        prefix: The path the tunnel lives under, "/abc123" in path mode and "" in host mode.
        public_origin: Where browsers reach the tunnel, "https://gw.example.com".
        upstream_origin: Where the local app listens, "http://127.0.0.1:3000".
        strategy: "full", "base" (inject `<base href>` only) or "none" (headers only).
        rewrite_js: Rewrite string literals in clear URL positions of JavaScript.
        inject_context: Put the tunnel context script first in every HTML `<head>`.
        tunnel_id: Exposed to pages as `__TUNNEL_CONTEXT__.tunnelId`; defaults to the prefix's last segment.
        regex_timeout: Seconds any one regex may spend per megabyte of page content (at least one megabyte's
            worth) before that part is skipped: a guard against pathological input, not a speed limit.
        max_body_size: Bodies larger than this (encoded) pass through unchanged.
        max_decoded_size: Decompressed bodies larger than this pass through unchanged (bomb guard).
        upstream_aliases: More origins that name the upstream (for example a dev server's own public name).
    """

    prefix: str
    public_origin: str
    upstream_origin: str
    strategy: Strategy = "full"
    rewrite_js: bool = True
    inject_context: bool = True
    tunnel_id: str | None = None
    regex_timeout: float = 0.05
    max_body_size: int = 32 * 1024 * 1024
    max_decoded_size: int = 64 * 1024 * 1024
    upstream_aliases: tuple[str, ...] = ()
    # Derived once here so the hot path of every rewriter only does dictionary look-ups.
    upstream_origins: frozenset[str] = field(init=False, repr=False, compare=False)
    upstream_hosts: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.prefix and (not self.prefix.startswith("/") or self.prefix.endswith("/")):
            raise ValueError(f"prefix must start with '/' and not end with it, got {self.prefix!r}")
        if any(c in self.prefix for c in "?#\\ ") or "//" in self.prefix:
            raise ValueError(f"prefix must be a plain path, got {self.prefix!r}")
        if self.strategy not in ("full", "base", "none"):
            raise ValueError(f"strategy must be 'full', 'base' or 'none', got {self.strategy!r}")
        if self.regex_timeout <= 0 or self.max_body_size <= 0 or self.max_decoded_size <= 0:
            raise ValueError("regex_timeout, max_body_size and max_decoded_size must be positive")
        object.__setattr__(self, "public_origin", normalize_origin(self.public_origin))
        object.__setattr__(self, "upstream_origin", normalize_origin(self.upstream_origin))
        if self.tunnel_id is None:
            object.__setattr__(self, "tunnel_id", self.prefix.rpartition("/")[2])
        origins: set[str] = set()
        for origin in (self.upstream_origin, *self.upstream_aliases):
            origins.update(_aliases(normalize_origin(origin)))
        origins.discard(self.public_origin)
        object.__setattr__(self, "upstream_origins", frozenset(origins))
        object.__setattr__(self, "upstream_hosts", frozenset(_host(origin) for origin in origins))

    def regex_budget(self, length: int) -> float:
        """The timeout for one regex call over `length` characters of page content."""
        return self.regex_timeout * max(1.0, length / 1_000_000)

    @property
    def path_mode(self) -> bool:
        """True when the tunnel lives under a path prefix rather than a host name of its own."""
        return bool(self.prefix)
