"""Tests for rewrite/csp.py: our script is admitted by hash and nothing else is weakened."""

from __future__ import annotations

import pytest

from rewrite.csp import allow_script_hash

H = "sha256-AAAA"


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("script-src 'self'", f"script-src 'self' '{H}'"),
        ("default-src 'self'; img-src *", f"default-src 'self'; img-src *; script-src 'self' '{H}'"),
        (
            "script-src 'self'; script-src-elem 'self' https://cdn.example",
            f"script-src 'self' '{H}'; script-src-elem 'self' https://cdn.example '{H}'",
        ),
        ("script-src 'none'", f"script-src '{H}'"),
        ("script-src 'strict-dynamic' 'nonce-abc'", f"script-src 'strict-dynamic' 'nonce-abc' '{H}'"),
        ("script-src 'unsafe-inline' 'sha256-other'", f"script-src 'unsafe-inline' 'sha256-other' '{H}'"),
    ],
)
def test_hash_added(policy: str, expected: str) -> None:
    """The hash goes into the directive that governs inline script elements."""
    assert allow_script_hash(policy, H) == expected


@pytest.mark.parametrize(
    "policy",
    [
        "img-src 'self'",  # nothing governs scripts
        "script-src 'self' 'unsafe-inline'",  # already allowed; a hash would switch unsafe-inline off
        f"script-src 'self' '{H}'",  # already there
    ],
)
def test_no_change_needed(policy: str) -> None:
    """Policies that already admit the script, or do not govern scripts, stay as they are."""
    assert allow_script_hash(policy, H) is None
