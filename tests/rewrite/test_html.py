"""Tests for rewrite/html.py: every URL-bearing attribute in any quoting, inline code, fragments."""

from __future__ import annotations

from pathlib import Path

import pytest
from selectolax.lexbor import LexborHTMLParser

from rewrite.config import RewriteConfig
from rewrite.html import rewrite_html
from rewrite.inject import CONTEXT_SCRIPT_ID, context_script, context_script_hash
from tests.rewrite.conftest import HOST_MODE, PATH_MODE

PAGES = Path(__file__).parents[2] / "fixtures" / "pages"
KITCHEN_SINK = (PAGES / "kitchen-sink.html").read_text()


def _attr(html: str, selector: str, name: str) -> str | None:
    node = LexborHTMLParser(html).css_first(selector)
    assert node is not None, selector
    return node.attributes.get(name)


@pytest.mark.parametrize(
    ("selector", "attribute", "expected"),
    [
        ("base", "href", "/abc123/"),
        ('link[rel="stylesheet"]', "href", "/abc123/static/app.css"),
        ('link[rel="preload"]', "imagesrcset", "/abc123/img/a.png 1x, /abc123/img/b.png 2x"),
        ('link[rel="manifest"]', "href", "/abc123/manifest.webmanifest"),
        ('meta[http-equiv="refresh"]', "content", "300; url='/abc123/login'"),
        ('meta[property="og:image"]', "content", "https://gw.example.com/abc123/og.png"),
        ('meta[property="og:title"]', "content", "/not/a/url"),
        ("script[src]", "src", "/abc123/static/app.js"),
        ("body", "background", "/abc123/img/old-body.png"),
        ("body", "style", "background-image: url('/abc123/img/body.png')"),
        ("a:nth-of-type(1)", "href", "/abc123/docs"),
        ("a:nth-of-type(2)", "href", "/abc123/guide"),
        ("a:nth-of-type(3)", "href", "/abc123/unquoted"),
        ("a:nth-of-type(4)", "href", "docs/relative"),
        ("a:nth-of-type(5)", "href", "#top"),
        ("a:nth-of-type(6)", "href", "https://example.org/"),
        ("a:nth-of-type(7)", "href", "mailto:a@example.com"),
        ("a:nth-of-type(8)", "href", "javascript:void(0)"),
        ("a:nth-of-type(9)", "href", "/abc123/already"),
        ("a:nth-of-type(10)", "href", "https://gw.example.com/abc123/absolute"),
        ("a:nth-of-type(11)", "href", "https://gw.example.com/abc123/public"),
        ("a[ping]", "ping", "/abc123/ping/one /abc123/ping/two"),
        ("img[srcset]", "src", "/abc123/img/i.png"),
        (
            "img[srcset]",
            "srcset",
            "/abc123/img/i-1.png 1x, data:image/png;base64,AAA=, /abc123/img/i-2.png 2x",
        ),
        ("picture source", "srcset", "/abc123/img/p.avif"),
        ("form", "action", "/abc123/submit"),
        ("button", "formaction", "/abc123/alternative"),
        ("use", "xlink:href", "/abc123/sprite.svg#icon"),
        ("image", "href", "/abc123/img/svg.png"),
        ("object", "data", "/abc123/media/movie.swf"),
        ("video", "poster", "/abc123/img/poster.jpg"),
        ("video", "src", "/abc123/media/v.mp4"),
        ("track", "src", "/abc123/media/subs.vtt"),
        ("blockquote", "cite", "/abc123/sources/quote"),
        ("iframe", "src", "/abc123/embedded"),
    ],
)
def test_kitchen_sink_attribute(selector: str, attribute: str, expected: str) -> None:
    """Each URL-bearing attribute of the fixture ends up with exactly the expected value."""
    assert _attr(rewrite_html(KITCHEN_SINK, PATH_MODE).text, selector, attribute) == expected


def test_inline_code_and_what_stays() -> None:
    """Inline CSS, JS and import maps are rewritten; JSON-LD, textarea text and comments are not."""
    text = rewrite_html(KITCHEN_SINK, PATH_MODE).text
    assert "body { background: url(/abc123/img/bg.png) } /* url(/comment.png) */" in text
    assert "fetch('/abc123/api/items'); const label = \"/not/a/url\";" in text
    assert '"lodash": "/abc123/vendor/lodash.js"' in text
    assert '"/abc123/app/": "/abc123/app/v2/"' in text
    assert '{"url": "/not/rewritten"}' in text
    assert '&lt;a href="/not/markup"&gt;' in text


def test_context_script_and_meta_csp() -> None:
    """The context script is placed once, after the charset, and the meta policy admits it by hash."""
    text = rewrite_html(KITCHEN_SINK, PATH_MODE).text
    tree = LexborHTMLParser(text)
    scripts = tree.css(f"script#{CONTEXT_SCRIPT_ID}")
    assert len(scripts) == 1
    head_children = [n.tag for n in tree.head.iter()] if tree.head else []
    assert head_children[:2] == ["meta", "script"]
    policy = _attr(text, 'meta[http-equiv="Content-Security-Policy"]', "content")
    assert policy == f"default-src 'self'; script-src 'self' '{context_script_hash(PATH_MODE)}'"


def test_rewriting_twice_returns_the_same_string() -> None:
    """A rewritten page has nothing left to do: the second pass returns its input."""
    once = rewrite_html(KITCHEN_SINK, PATH_MODE)
    twice = rewrite_html(once.text, PATH_MODE)
    assert twice.text is once.text
    assert not twice.changed


def test_unchanged_page_is_the_same_object() -> None:
    """Without injection and without absolute URLs, the original string comes back untouched."""
    config = RewriteConfig(
        prefix="/abc123",
        public_origin="https://gw.example.com",
        upstream_origin="http://127.0.0.1:3000",
        inject_context=False,
    )
    page = "<!doctype html><HTML><p class=x>Hi &amp; <a href='rel'>rel</a></p>"
    result = rewrite_html(page, config)
    assert result.text is page


def test_fragment_keeps_its_shape() -> None:
    """An htmx-style fragment gets no html/head/body wrapper and no context script."""
    result = rewrite_html('<div id="a"><a href="/x">x</a></div><link href="/y.css">', PATH_MODE)
    assert result.text == '<div id="a"><a href="/abc123/x">x</a></div><link href="/abc123/y.css">'


def test_head_is_created_for_a_bare_document() -> None:
    """A document without <head> gets one, holding the context script."""
    result = rewrite_html("<!doctype html><p>hello</p>", PATH_MODE)
    tree = LexborHTMLParser(result.text)
    assert tree.css_first(f"head > script#{CONTEXT_SCRIPT_ID}") is not None


def test_host_mode_only_touches_upstream_origin() -> None:
    """In host mode a path stays and an upstream URL moves to the public origin."""
    page = '<html><head></head><body><a href="/x">a</a><a href="http://127.0.0.1:3000/y">b</a></body></html>'
    text = rewrite_html(page, HOST_MODE).text
    assert _attr(text, "a:nth-of-type(1)", "href") == "/x"
    assert _attr(text, "a:nth-of-type(2)", "href") == "http://abc123.localhost:8080/y"


def test_base_strategy_adds_only_a_base() -> None:
    """The base strategy inserts <base href="/abc123/"> and leaves absolute links alone."""
    config = RewriteConfig(
        prefix="/abc123",
        public_origin="https://gw.example.com",
        upstream_origin="http://127.0.0.1:3000",
        strategy="base",
        inject_context=False,
    )
    text = rewrite_html(
        '<html><head><title>t</title></head><body><a href="/x">x</a></body></html>', config
    ).text
    assert _attr(text, "base", "href") == "/abc123/"
    assert _attr(text, "a", "href") == "/x"
    again = rewrite_html(text, config)
    assert again.text is text


def test_js_switch_leaves_scripts_alone() -> None:
    """rewrite_js=False keeps inline scripts as they are."""
    config = RewriteConfig(
        prefix="/abc123",
        public_origin="https://gw.example.com",
        upstream_origin="http://127.0.0.1:3000",
        rewrite_js=False,
        inject_context=False,
    )
    page = "<html><head><script>fetch('/api')</script></head><body></body></html>"
    assert rewrite_html(page, config).text is page


def test_entities_in_attributes_are_decoded_then_reescaped() -> None:
    """An &amp; in a URL survives: the parser decodes it, the serializer escapes it again."""
    text = rewrite_html('<html><body><a href="/x?a=1&amp;b=2">x</a></body></html>', PATH_MODE).text
    assert 'href="/abc123/x?a=1&amp;b=2"' in text


def test_bad_import_map_is_reported_not_raised() -> None:
    """A broken import map is skipped with a reason; the rest of the page is still rewritten."""
    result = rewrite_html(
        '<html><head><script type="importmap">{not json</script></head>'
        '<body><a href="/x">x</a></body></html>',
        PATH_MODE,
    )
    assert any("import map" in s.reason for s in result.skipped)
    assert 'href="/abc123/x"' in result.text
    assert "{not json" in result.text


@pytest.mark.parametrize(
    "page",
    [
        "<",
        "<<<>>>",
        "<a href=",
        '<a href="/x',
        "<html><head><script>fetch('/a')",
        "<svg><use xlink:href='/s#a'></svg></svg></div>",
        "\x00\x01<p>\ufffd</p>",
        "<table><tr><td background=/x.png>",
    ],
)
def test_malformed_html_never_raises(page: str) -> None:
    """Whatever the markup, the rewriter returns text and reports instead of raising."""
    result = rewrite_html(page, PATH_MODE)
    assert isinstance(result.text, str)
    assert rewrite_html(result.text, PATH_MODE).text == result.text


def test_context_script_survives_verbatim() -> None:
    """The attribute passes never touch the injected script, so its CSP hash stays right."""
    tree = LexborHTMLParser(rewrite_html(KITCHEN_SINK, PATH_MODE).text)
    script = tree.css_first(f"script#{CONTEXT_SCRIPT_ID}")
    assert script is not None
    assert script.text(deep=True) == context_script(PATH_MODE)


def test_template_and_noscript_markup_is_rewritten() -> None:
    """Markup the browser instantiates later (template) or parses as text (noscript) keeps the prefix too."""
    page = (
        '<html><head><noscript><link rel="stylesheet" href="/nojs.css"></noscript></head>'
        '<body><template><a href="/in-template">t</a></template></body></html>'
    )
    text = rewrite_html(page, PATH_MODE).text
    assert '<a href="/abc123/in-template">' in text
    assert 'href="/abc123/nojs.css"' in text


def test_tag_context_is_required() -> None:
    """Text that merely looks like an attribute, and escaped markup, stays as it is."""
    page = '<html><body><p>say href="/x" here</p><textarea><a href="/y"></textarea></body></html>'
    text = rewrite_html(page, PATH_MODE).text
    assert 'say href="/x" here' in text
    assert '<textarea><a href="/y"></textarea>' in text


def test_attribute_values_with_markup_characters() -> None:
    """A `>` or quote in an earlier attribute does not hide the URL attribute after it."""
    page = """<html><body><a title='a > b "c"' href="/x">x</a><img alt="<" src=/y></body></html>"""
    text = rewrite_html(page, PATH_MODE).text
    assert _attr(text, "a", "href") == "/abc123/x"
    assert _attr(text, "img", "src") == "/abc123/y"


def test_report_counts_attribute_rewrites() -> None:
    """The bulk attribute pass reports how many paths it prefixed."""
    page = "<html><body>" + '<a href="/p">p</a>' * 7 + "</body></html>"
    rewrites = rewrite_html(page, PATH_MODE).rewrites
    assert [r.times for r in rewrites if r.where == "html url attributes"] == [7]
