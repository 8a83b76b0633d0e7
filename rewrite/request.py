"""The request side of the filter: a public request mapped to the one the upstream app should get. Pure."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from rewrite.config import RewriteConfig
from rewrite.urls import to_upstream_path

__all__ = ["HOP_BY_HOP", "UpstreamRequest", "rewrite_request", "strip_hop_by_hop"]

# RFC 9110 section 7.6.1 and RFC 9112: these describe one connection, never the message, so a proxy drops
# them in both directions, together with every header the Connection header itself names.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# What the response rewriter can decode; asking the upstream for anything else (Chrome's `dcb`, `dcz`
# shared-dictionary encodings, say) would only produce bodies that must pass through unrewritten.
_DECODABLE = frozenset({"gzip", "x-gzip", "deflate", "br", "zstd", "identity", "*"})
_FORWARDED = frozenset({"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-prefix"})


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """The request to send to the upstream app."""

    method: str
    target: str  # path and raw query, as the upstream should see them: "/docs?x=1"
    url: str  # upstream origin + target
    headers: list[tuple[str, str]]


def strip_hop_by_hop(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Drop hop-by-hop headers and every header that `Connection` names, keeping order and duplicates."""
    pairs = list(headers)
    named = {
        token.strip().lower()
        for name, value in pairs
        if name.lower() == "connection"
        for token in value.split(",")
    }
    return [(n, v) for n, v in pairs if (low := n.lower()) not in HOP_BY_HOP and low not in named]


def rewrite_request(
    method: str,
    target: str,
    headers: Iterable[tuple[str, str]],
    config: RewriteConfig,
    *,
    client_ip: str | None = None,
    rewrite_host: bool = False,
) -> UpstreamRequest | None:
    """Map a public request to the upstream request.

    The prefix is stripped, dot segments that would leave the tunnel are refused, hop-by-hop headers are
    dropped, `Accept-Encoding` is narrowed to what the response rewriter can decode, and `X-Forwarded-For`,
    `-Proto`, `-Host` and (in path mode) `-Prefix` are set. The `Host` header is kept, as ngrok does, so
    frameworks see the host the browser used; `rewrite_host=True` sets it to the upstream's own.

    Args:
        method: The request method.
        target: The request target as the client sent it: path and raw query.
        headers: The request headers as (name, value) pairs.
        config: The tunnel's origins and prefix.
        client_ip: The address the request came from, appended to `X-Forwarded-For`.
        rewrite_host: Send the upstream's own host instead of the public one.

    Returns:
        The upstream request, or None when `target` does not lie under the tunnel's prefix.
    """
    upstream_target = to_upstream_path(target, config.prefix)
    if upstream_target is None:
        return None
    public_scheme, _, public_host = config.public_origin.partition("://")
    pairs = strip_hop_by_hop(headers)
    host = next((v for n, v in pairs if n.lower() == "host"), public_host)
    prior_for = [v for n, v in pairs if n.lower() == "x-forwarded-for"]
    out: list[tuple[str, str]] = []
    for name, value in pairs:
        low = name.lower()
        if low in _FORWARDED or low == "host":
            continue
        if low == "accept-encoding":
            value = _narrow_accept_encoding(value)
            if not value:
                continue
        out.append((name, value))
    upstream_host = config.upstream_origin.partition("://")[2]
    out.insert(0, ("host", upstream_host if rewrite_host else host))
    chain = [*prior_for, client_ip] if client_ip else prior_for
    if chain:
        out.append(("x-forwarded-for", ", ".join(chain)))
    out.append(("x-forwarded-proto", public_scheme))
    out.append(("x-forwarded-host", host))
    if config.prefix:
        out.append(("x-forwarded-prefix", config.prefix))
    return UpstreamRequest(
        method=method.upper(),
        target=upstream_target,
        url=config.upstream_origin + upstream_target,
        headers=out,
    )


def _narrow_accept_encoding(value: str) -> str:
    """Keep only the codings the response side can decode, with their q-values."""
    kept = [part.strip() for part in value.split(",") if part.split(";")[0].strip().lower() in _DECODABLE]
    return ", ".join(kept)
