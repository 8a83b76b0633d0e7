"""Configurations shared by the rewriting tests: one tunnel in path mode, the same app in host mode."""

from __future__ import annotations

import pytest

from rewrite.config import RewriteConfig

PATH_MODE = RewriteConfig(
    prefix="/abc123", public_origin="https://gw.example.com", upstream_origin="http://127.0.0.1:3000"
)
HOST_MODE = RewriteConfig(
    prefix="", public_origin="http://abc123.localhost:8080", upstream_origin="http://127.0.0.1:3000"
)


@pytest.fixture
def path_mode() -> RewriteConfig:
    """A tunnel reached at https://gw.example.com/abc123/ in front of 127.0.0.1:3000."""
    return PATH_MODE


@pytest.fixture
def host_mode() -> RewriteConfig:
    """A tunnel reached at http://abc123.localhost:8080/ in front of 127.0.0.1:3000."""
    return HOST_MODE
