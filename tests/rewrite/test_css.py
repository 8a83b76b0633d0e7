"""Tests for rewrite/css.py: url() in three forms, @import, image-set(), nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

from rewrite.config import RewriteConfig
from rewrite.css import rewrite_css
from tests.rewrite.conftest import HOST_MODE, PATH_MODE

STYLESHEETS = Path(__file__).parents[2] / "fixtures" / "stylesheets"


def test_app_stylesheet_rewritten_exactly() -> None:
    """Every URL form in the fixture is prefixed; comments, strings and other URLs are untouched."""
    source = (STYLESHEETS / "app.css").read_text()
    result = rewrite_css(source, PATH_MODE)
    text = result.text
    for expected in [
        '@import "/abc123/static/base.css";',
        "@import url('/abc123/static/theme.css') screen",
        "/* url(/in-a-comment.png) must stay as it is */",
        "--brand: url(/abc123/img/brand.svg);",
        'url(/abc123/img/bg.png) no-repeat, URL( "/abc123/img/bg@2x.png" )',
        'content: "url(/not/a/url)";',
        'image-set("/abc123/img/hero.avif" type("image/avif") 1x, url(/abc123/img/hero.jpg) 2x)',
        "-webkit-image-set('/abc123/img/old.png' 1x)",
        'url("/abc123/fonts/inter.woff2") format("woff2")',
        "url(https://gw.example.com/abc123/fonts/inter.woff)",
        "url(relative.png), url(data:image/gif;base64,R0lGODlhAQABAAAAACw=), url(//cdn.example.org/x.png)",
        "url(/abc123/already.png)",
        r"url(/abc123/img/with\ space.png)",
        r'url("/abc123/img/quote\".png")',
        'font-family: "Helvetica Neue", Arial',
    ]:
        assert expected in text, expected
    assert len(result.rewrites) == 12
    # Apart from the URLs, not a byte moved.
    assert text.replace("/abc123", "") == source.replace(
        "http://127.0.0.1:3000/fonts", "https://gw.example.com/fonts"
    ).replace("/abc123", "")


def test_unchanged_stylesheet_is_the_same_object() -> None:
    """Nothing to do means the input string itself comes back."""
    source = (STYLESHEETS / "plain.css").read_text()
    result = rewrite_css(source, PATH_MODE)
    assert result.text is source
    assert not result.changed


def test_rewriting_twice_equals_once() -> None:
    """A rewritten stylesheet has nothing left to rewrite."""
    once = rewrite_css((STYLESHEETS / "app.css").read_text(), PATH_MODE)
    twice = rewrite_css(once.text, PATH_MODE)
    assert twice.text is once.text
    assert not twice.changed


def test_host_mode_rewrites_only_upstream_origin() -> None:
    """In host mode paths stay; URLs naming 127.0.0.1:3000 move to the public origin."""
    result = rewrite_css("a{b:url(/x.png);c:url('http://localhost:3000/y.png')}", HOST_MODE)
    assert result.text == "a{b:url(/x.png);c:url('http://abc123.localhost:8080/y.png')}"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        # Unterminated tokens at the end of input: left alone rather than guessed at.
        ("a { background: url(/x.png", "a { background: url(/x.png"),
        ('a { content: "unterminated url(/x.png)', 'a { content: "unterminated url(/x.png)'),
        # A newline ends a bad string; the next quote opens another, running to the end (CSS Syntax 4.3.5).
        ('a { content: "bad\n string"; b: url(/y.png) }', 'a { content: "bad\n string"; b: url(/y.png) }'),
        ("/* unterminated comment url(/x.png)", "/* unterminated comment url(/x.png)"),
        ("}}}{{{url(", "}}}{{{url("),
        ("a{b:url()}", "a{b:url()}"),
        ("a{b:url(/ok.png)} }}} {{ url(", "a{b:url(/abc123/ok.png)} }}} {{ url("),
    ],
)
def test_malformed_css_never_raises(source: str, expected: str) -> None:
    """Broken stylesheets never raise; only complete URL tokens are rewritten."""
    assert rewrite_css(source, PATH_MODE).text == expected


def test_bad_url_token_is_left_alone() -> None:
    """An unquoted url() with a space is a bad-url token in CSS: not a URL, not rewritten."""
    source = "a { background: url(/x y.png) }"
    assert rewrite_css(source, PATH_MODE).text is source


def test_regex_timeout_passes_the_stylesheet_through() -> None:
    """A scan that runs out of time reports it and returns the input unchanged."""
    config = RewriteConfig(
        prefix="/abc123",
        public_origin="https://gw.example.com",
        upstream_origin="http://127.0.0.1:3000",
        regex_timeout=1e-9,
    )
    source = "a{b:url(/x.png)}" * 20000
    result = rewrite_css(source, config)
    assert result.text is source
    assert result.skipped
    assert "timed out" in result.skipped[0].reason
