"""Tests for rewrite/config.py: a bad configuration is the one thing the core raises for."""

from __future__ import annotations

import pytest

from rewrite.config import RewriteConfig, normalize_origin


@pytest.mark.parametrize("prefix", ["abc", "/abc/", "/a b", "/a?b", "//a", "/a#b"])
def test_bad_prefix_is_refused(prefix: str) -> None:
    """A prefix must be a plain absolute path without a trailing slash."""
    with pytest.raises(ValueError, match="prefix"):
        RewriteConfig(
            prefix=prefix, public_origin="https://gw.example.com", upstream_origin="http://127.0.0.1:1"
        )


@pytest.mark.parametrize(
    "origin", ["gw.example.com", "ftp://x", "https://gw.example.com/path", "https://h:99999"]
)
def test_bad_origin_is_refused(origin: str) -> None:
    """Origins are scheme://host[:port] and nothing more."""
    with pytest.raises(ValueError, match="origin"):
        normalize_origin(origin)


def test_origins_are_normalised() -> None:
    """Case and default ports do not matter."""
    assert normalize_origin("HTTPS://GW.Example.com:443/") == "https://gw.example.com"
    assert normalize_origin("http://[::1]:3000") == "http://[::1]:3000"


def test_loopback_upstream_has_aliases() -> None:
    """127.0.0.1, localhost and ::1 all name a loopback upstream."""
    config = RewriteConfig(
        prefix="/t", public_origin="https://gw.example.com", upstream_origin="http://localhost:3000"
    )
    assert "http://127.0.0.1:3000" in config.upstream_origins
    assert "http://[::1]:3000" in config.upstream_origins
    assert {"127.0.0.1", "localhost", "::1"} <= config.upstream_hosts
    assert config.tunnel_id == "t"
    assert config.path_mode


def test_bad_strategy_and_limits_are_refused() -> None:
    """Unknown strategies and non-positive limits are configuration errors."""
    with pytest.raises(ValueError, match="strategy"):
        RewriteConfig(
            prefix="",
            public_origin="https://g.example",
            upstream_origin="http://127.0.0.1:1",
            strategy="all",  # type: ignore[arg-type]
        )
    with pytest.raises(ValueError, match="positive"):
        RewriteConfig(
            prefix="",
            public_origin="https://g.example",
            upstream_origin="http://127.0.0.1:1",
            max_body_size=0,
        )
