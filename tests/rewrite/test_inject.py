"""Tests for rewrite/inject.py: the context script's values, its CSP hash, and where it is placed."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from selectolax.lexbor import LexborHTMLParser

from rewrite import inject
from rewrite.config import RewriteConfig
from rewrite.inject import (
    CONTEXT_SCRIPT_ID,
    context_script,
    context_script_hash,
    inject_tunnel_context,
    place_context_script,
)

CONFIG = RewriteConfig(
    prefix="/abc123", public_origin="https://gw.example.com", upstream_origin="http://127.0.0.1:3000"
)
HOST_CONFIG = RewriteConfig(
    prefix="",
    public_origin="http://abc123.localhost:8080",
    upstream_origin="http://127.0.0.1:3000",
    tunnel_id="abc123",
)
HOSTILE = "</script><script>alert(1)</script><!-- \u2028\u2029 & > '\""
SELECTOR = f'script[id="{CONTEXT_SCRIPT_ID}"]'


def script_values(script: str) -> dict[str, object]:
    """The JSON value filled into a context script, decoded."""
    start = script.index("var config = ") + len("var config = ")
    end = script.index(";\n", start)
    values: dict[str, object] = json.loads(script[start:end])
    return values


def head_tags(html: str) -> list[str]:
    """The head's element children as `tag` or `tag#id`, in order."""
    head = LexborHTMLParser(html).head
    assert head is not None
    return [
        f"{node.tag}#{node.id}" if node.id else str(node.tag) for node in head.iter() if node.is_element_node
    ]


def only_context_script(html: str) -> str:
    """Assert the document holds exactly one context script and return its text."""
    scripts = LexborHTMLParser(html).css(SELECTOR)
    assert len(scripts) == 1
    return scripts[0].text(deep=True)


def test_script_carries_the_tunnel_values() -> None:
    """The filled-in JSON holds the tunnel id, prefix, public origin and sorted upstream origins."""
    assert script_values(context_script(CONFIG)) == {
        "tunnelId": "abc123",
        "basePath": "/abc123",
        "publicOrigin": "https://gw.example.com",
        "upstreamOrigins": sorted(CONFIG.upstream_origins),
    }


def test_script_in_host_mode() -> None:
    """In host mode basePath is empty and the public origin is the tunnel's own host."""
    values = script_values(context_script(HOST_CONFIG))
    assert values["basePath"] == ""
    assert values["tunnelId"] == "abc123"
    assert values["publicOrigin"] == "http://abc123.localhost:8080"
    assert "http://localhost:3000" in values["upstreamOrigins"]  # type: ignore[operator]


def test_script_is_deterministic_ascii_and_cached() -> None:
    """Equal configs give the very same ASCII script, with the placeholder and comment lines gone."""
    again = RewriteConfig(
        prefix="/abc123", public_origin="https://gw.example.com", upstream_origin="http://127.0.0.1:3000"
    )
    script = context_script(CONFIG)
    assert context_script(again) is script
    assert script.isascii()
    assert "__TUNNEL_CONTEXT_CONFIG__" not in script
    assert not [line for line in script.splitlines() if line.lstrip().startswith("//")]
    assert "'__TUNNEL_CONTEXT__'" in script
    assert len(script) < 8192


def test_hash_is_the_sha256_of_the_script() -> None:
    """The CSP hash source is sha256 of the script's UTF-8 bytes, in base64, and differs per tunnel."""
    digest = hashlib.sha256(context_script(CONFIG).encode("utf-8")).digest()
    assert context_script_hash(CONFIG) == "sha256-" + base64.b64encode(digest).decode()
    assert context_script_hash(HOST_CONFIG) != context_script_hash(CONFIG)


def test_hash_matches_the_placed_script() -> None:
    """The text a browser hashes (the script element's content after a parse) has the published hash."""
    text = only_context_script(inject_tunnel_context("<title>t</title>", CONFIG).text)
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    assert "sha256-" + base64.b64encode(digest).decode() == context_script_hash(CONFIG)


@pytest.mark.parametrize(
    "config",
    [
        pytest.param(
            RewriteConfig(
                prefix="/abc123",
                public_origin="https://gw.example.com",
                upstream_origin="http://127.0.0.1:3000",
                tunnel_id=HOSTILE,
            ),
            id="tunnel-id",
        ),
        pytest.param(
            RewriteConfig(
                prefix="/abc123",
                public_origin="https://a<b>\u2028.example",
                upstream_origin="http://c&d<!--e:3000",
            ),
            id="origins",
        ),
    ],
)
def test_values_cannot_break_out_of_the_script(config: RewriteConfig) -> None:
    """Markup, comment openers and line separators in a value stay inert and decode back to the value."""
    script = context_script(config)
    for unsafe in ("<", ">", "&", "\u2028", "\u2029"):
        assert unsafe not in script.partition("var config = ")[2].partition(";\n")[0]
    html = inject_tunnel_context(
        "<!doctype html><head><title>t</title></head><body><p>x</p></body>", config
    ).text
    tree = LexborHTMLParser(html)
    assert len(tree.css("script")) == 1
    assert tree.css_first("p") is not None
    text = only_context_script(html)
    assert text == script
    values = script_values(text)
    assert values["tunnelId"] == config.tunnel_id
    assert values["publicOrigin"] == config.public_origin
    assert values["upstreamOrigins"] == sorted(config.upstream_origins)


def test_placed_first_in_head_after_meta_charset() -> None:
    """The script follows a leading meta charset and precedes the title and every page script."""
    page = (
        '<!doctype html><html><head><meta charset="utf-8"><title>t</title>'
        '<script src="/app.js"></script></head><body></body></html>'
    )
    html = inject_tunnel_context(page, CONFIG).text
    assert head_tags(html) == ["meta", f"script#{CONTEXT_SCRIPT_ID}", "title", "script"]
    assert html.index("<meta charset") < 1024


def test_placed_after_every_charset_declaration() -> None:
    """Both meta charset and meta http-equiv content-type (any case) stay ahead of the script."""
    page = (
        '<head>\n  <!-- note -->\n  <meta http-equiv="Content-Type" content="text/html; charset=utf-8">\n'
        '  <meta charset="utf-8">\n  <meta name="viewport" content="width=device-width"></head>'
    )
    tags = head_tags(inject_tunnel_context(page, CONFIG).text)
    assert tags == ["meta", "meta", f"script#{CONTEXT_SCRIPT_ID}", "meta"]


def test_placed_first_when_head_has_no_charset() -> None:
    """Without a charset declaration the script is the head's first element, ahead of other meta elements."""
    page = '<head><meta name="viewport" content="x"><link rel="stylesheet" href="/a.css"></head>'
    assert head_tags(inject_tunnel_context(page, CONFIG).text) == [
        f"script#{CONTEXT_SCRIPT_ID}",
        "meta",
        "link",
    ]


def test_charset_after_a_page_script_does_not_delay_the_context() -> None:
    """A meta charset that follows a page script does not move the context script behind that script."""
    page = "<head><script>window.early = 1</script><meta charset=utf-8></head>"
    assert head_tags(inject_tunnel_context(page, CONFIG).text) == [
        f"script#{CONTEXT_SCRIPT_ID}",
        "script",
        "meta",
    ]


@pytest.mark.parametrize(
    "page",
    [
        pytest.param("Hello <b>world</b>", id="no-tags"),
        pytest.param("<body><p>only a body</p></body>", id="body-only"),
        pytest.param("<p>fragment", id="fragment"),
        pytest.param("", id="empty"),
        pytest.param("<!doctype html><frameset><frame src=/f></frameset>", id="frameset"),
    ],
)
def test_head_is_made_when_the_document_has_none(page: str) -> None:
    """A document without a head tag gets one (lexbor adds it when parsing) holding the script."""
    html = inject_tunnel_context(page, CONFIG).text
    assert head_tags(html) == [f"script#{CONTEXT_SCRIPT_ID}"]
    assert only_context_script(html) == context_script(CONFIG)
    if page and "frameset" not in page:
        assert LexborHTMLParser(page).body.text() == LexborHTMLParser(html).body.text()  # type: ignore[union-attr]


def test_head_is_created_in_a_tree_without_one() -> None:
    """A parsed tree whose head was removed gets a new head, first in the root element, holding the script."""
    tree = LexborHTMLParser("<html><head><title>t</title></head><body><p>x</p></body></html>")
    assert tree.head is not None
    tree.head.decompose()
    assert place_context_script(tree, CONFIG)
    assert tree.html is not None
    assert tree.html.startswith(f'<html><head><script id="{CONTEXT_SCRIPT_ID}">')
    assert tree.html.endswith("</script></head><body><p>x</p></body></html>")


def test_place_returns_false_when_already_there() -> None:
    """Placing into a tree that holds the script changes nothing and says so."""
    tree = LexborHTMLParser("<title>t</title>")
    assert place_context_script(tree, CONFIG)
    before = tree.html
    assert not place_context_script(tree, CONFIG)
    assert not place_context_script(tree, HOST_CONFIG)
    assert tree.html == before


def test_injecting_twice_gives_one_script() -> None:
    """A page rewritten twice keeps one context script, and the second pass returns its input object."""
    first = inject_tunnel_context("<!doctype html><title>t</title><p>x", CONFIG)
    second = inject_tunnel_context(first.text, CONFIG)
    assert first.changed
    assert first.rewrites[0].after == f'<script id="{CONTEXT_SCRIPT_ID}">'
    assert second.text is first.text
    assert not second.changed
    assert only_context_script(second.text) == context_script(CONFIG)


def test_script_with_the_id_anywhere_counts_as_present() -> None:
    """A context script already in the body stops another injection; an element of another kind does not."""
    with_script = f'<body><script id="{CONTEXT_SCRIPT_ID}">1</script></body>'
    assert inject_tunnel_context(with_script, CONFIG).text is with_script
    with_div = f'<body><div id="{CONTEXT_SCRIPT_ID}"></div></body>'
    assert inject_tunnel_context(with_div, CONFIG).changed


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("var c = 1;", id="no-placeholder"),
        pytest.param(
            "var c = __TUNNEL_CONTEXT_CONFIG__, d = __TUNNEL_CONTEXT_CONFIG__;", id="two-placeholders"
        ),
        pytest.param("var c = __TUNNEL_CONTEXT_CONFIG__; // caf\u00e9", id="not-ascii"),
        pytest.param("var c = __TUNNEL_CONTEXT_CONFIG__;\r\n", id="crlf"),
        pytest.param("var c = __TUNNEL_CONTEXT_CONFIG__, s = '</SCRIPT>';", id="end-tag"),
        pytest.param("var c = __TUNNEL_CONTEXT_CONFIG__, s = '<!--';", id="comment-opener"),
    ],
)
def test_broken_template_is_refused(source: str) -> None:
    """A resource that could not be injected safely fails when loaded, not in a page."""
    with pytest.raises(ValueError, match=r"context\.js"):
        inject._load_template(source)


def test_template_loses_only_whole_line_comments() -> None:
    """Comment lines are dropped from the shipped script; code lines, even with // inside, are kept."""
    code = "  var u = 'http://x'; var c = __TUNNEL_CONTEXT_CONFIG__;\n"
    source = f"// header\n(function () {{\n  // why\n{code}}})();\n"
    expected = f"(function () {{\n{code}}})();\n"
    assert inject._load_template(source) == expected


def test_public_names() -> None:
    """The module exports exactly its public API."""
    assert sorted(inject.__all__) == [
        "CONTEXT_SCRIPT_ID",
        "context_script",
        "context_script_hash",
        "inject_tunnel_context",
        "place_context_script",
    ]
    assert CONTEXT_SCRIPT_ID == "__tunnel_context__"
