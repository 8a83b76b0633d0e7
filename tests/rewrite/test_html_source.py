"""Tests for rewrite/html_source.py: the source-level HTML rewriter, held to the tree rewriter's results."""

from __future__ import annotations

import dataclasses
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from selectolax.lexbor import LexborHTMLParser

from rewrite.config import RewriteConfig
from rewrite.css import rewrite_css
from rewrite.fast_re import FastPattern
from rewrite.html import _DOCUMENT_MARKER, _rewrite_tree, rewrite_html
from rewrite.html_source import _prefix_css, rewrite_source
from rewrite.inject import CONTEXT_SCRIPT_ID
from tests.rewrite.conftest import HOST_MODE, PATH_MODE

NO_INJECT = RewriteConfig(
    prefix="/abc123",
    public_origin="https://gw.example.com",
    upstream_origin="http://127.0.0.1:3000",
    inject_context=False,
)


def _source(page: str, config: RewriteConfig = PATH_MODE) -> str | None:
    result = rewrite_source(page, config, is_document=_DOCUMENT_MARKER.search(page) is not None)
    return None if result is None else result.text


def _body(page: str) -> str:
    body = LexborHTMLParser(page).body
    assert body is not None
    return body.html or ""


def test_the_page_keeps_its_own_bytes() -> None:
    """Quoting, case, whitespace and self-closing slashes stay; only the URLs change."""
    page = "<P class=x>\n<A HREF='/a' title=\"/t\">a</A><img SRC=/b.png alt='' /><br/></P>"
    assert _source(page, NO_INJECT) == (
        "<P class=x>\n<A HREF='/abc123/a' title=\"/t\">a</A><img SRC=/abc123/b.png alt='' /><br/></P>"
    )


@pytest.mark.parametrize(
    ("attribute", "expected"),
    [
        ('href="/x"', 'href="/abc123/x"'),
        ("href='/x'", "href='/abc123/x'"),
        ("href=/x", "href=/abc123/x"),
        ('href = "/x"', 'href = "/abc123/x"'),
        ('href=" /x "', 'href=" /abc123/x "'),
        ('href="&#47;x"', 'href="/abc123&#47;x"'),  # the reference kept as written
        ('href="/&#47;evil.example"', 'href="/&#47;evil.example"'),  # "//evil.example": another host
        ('href="/abc&#49;23/x"', 'href="/abc&#49;23/x"'),  # "/abc123/x": already under the prefix
        ('href="/x?a=1&amp;b=2"', 'href="/abc123/x?a=1&amp;b=2"'),
        ('href="/x?a=1&copy=2"', 'href="/abc123/x?a=1&copy=2"'),
        ("href=&#x2F;x", 'href="/abc123/x"'),
        ('href="/abc123 x"', 'href="/abc123/abc123 x"'),  # a segment "abc123 x", not the prefix
        ('href="/abc123 "', 'href="/abc123 "'),
        ('href="//cdn.example/x"', 'href="//cdn.example/x"'),
        ('href="/\\x"', 'href="/\\x"'),
        ('href="http://127.0.0.1:3000/o"', 'href="https://gw.example.com/abc123/o"'),
        ('data="/x"', 'data="/x"'),  # a URL only on <object>
        ('xhref="/x"', 'xhref="/x"'),
        ('=href="/x"', '=href="/x"'),  # the parser reads an attribute named '=href'
        ("xlin\u212a:href=/x", "xlin\u212a:href=/x"),  # a Kelvin sign is not a "k": HTML folds ASCII only
        ("\u017frc=/x", "\u017frc=/x"),  # nor is a long s an "s"
    ],
)
def test_attribute_forms(attribute: str, expected: str) -> None:
    """Each way of writing an attribute is read as the parser reads it, and rewritten in its own form."""
    assert _source(f"<div><a {attribute}>x</a></div>", NO_INJECT) == f"<div><a {expected}>x</a></div>"


def test_only_the_first_of_repeated_attributes_counts_but_all_are_rewritten() -> None:
    """The parser keeps the first of two equal names; rewriting the second too changes nothing it reads."""
    text = _source('<a href="/x" HREF="/y">x</a>', NO_INJECT)
    assert text == '<a href="/abc123/x" HREF="/abc123/y">x</a>'
    assert LexborHTMLParser(text).css_first("a").attributes == {"href": "/abc123/x"}  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "page",
    [
        "<script>var a = '<a href=\"/no\">'; fetch('/api')</script>",
        '<style>/* <a href="/no"> */ p { background: url(/bg.png) }</style>',
        '<textarea><a href="/no"></textarea>',
        "<title><a href=/no></title>",
        '<!-- <a href="/no"> -->',
        "<!--> <a href=/yes>",
        "<xmp><a href=/no></xmp>",
        '<noembed><a href="/no"></noembed>',
        '<iframe src="/yes"><a href="/no"></iframe>',
        '</p title="<a href=/no>">',
        "<p title='<a href=\"/no\">'>x</p>",
        '<plaintext><a href="/no"></plaintext><a href="/no">',
        "<p>say href=\"/no\" here, a < b href='/no'</p>",
    ],
)
def test_markup_that_is_not_a_tag_stays(page: str) -> None:
    """Raw text, comments, values and text that look like attributes stay as they are."""
    text = _source(page, NO_INJECT)
    assert text is not None
    assert "/abc123/no" not in text
    assert text.count("/no") == page.count("/no")
    if "/yes" in page:
        assert "/abc123/yes" in text
    if "fetch(" in page:
        assert "fetch('/abc123/api')" in text
    if "url(/bg.png)" in page:
        assert "url(/abc123/bg.png)" in text


@pytest.mark.parametrize(
    "page",
    [
        "<svg><style>a { fill: url(/g) }</style></svg>",
        "<svg><![CDATA[ x ]]><a href=/s></svg>",
        "<math><mtext><script>fetch('/m')</script></mtext></math>",
        "<svg><!-- </svg> --><a href=/c></svg>",
        "<script><!--<script>fetch('/d')</script>--></script>",
        "<a href=/x>\x00</a>",
    ],
)
def test_what_the_source_pass_declines(page: str) -> None:
    """Foreign content with raw text, CDATA or comments, escaped scripts and NUL go to the tree rewriter,
    which still rewrites the page."""
    assert _source(page) is None
    assert rewrite_html(page, PATH_MODE).changed


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        # "</\u017fcript>" does not end a script, so the script's text is not markup
        ('<script>a = "</\u017fcript>"; b = "<img src=/x>"</script>', None),
        # and "scr\u0131pt" (dotless i) and "SCR\u0130PT" (dotted capital I) are no scripts
        ("<scr\u0131pt><img src=/x></scr\u0131pt>", "<scr\u0131pt><img src=/abc123/x></scr\u0131pt>"),
        ("<SCR\u0130PT><img src=/x></SCR\u0130PT>", "<SCR\u0130PT><img src=/abc123/x></SCR\u0130PT>"),
        ("<\u017ftyle><img src=/x>", "<\u017ftyle><img src=/abc123/x>"),
    ],
)
def test_tag_names_fold_ascii_case_only(page: str, expected: str | None) -> None:
    """HTML lowers only ASCII letters; `(?i)` would also fold these letters, in `re` and PCRE2 alike or
    (dotless and dotted i) in `re` only."""
    config = dataclasses.replace(NO_INJECT, rewrite_js=False)
    result = rewrite_source(page, config, is_document=False)
    assert result is not None
    assert result.text == (page if expected is None else expected)
    assert _rewrite_tree(page, config, is_document=False).text.count("/abc123/") == (expected or "").count(
        "/abc123/"
    )


def test_svg_without_raw_text_is_rewritten_in_place() -> None:
    """Inline SVG icons are common: their links are rewritten without the tree."""
    page = '<p><svg viewBox="0 0 1 1"><use xlink:href="/sprite.svg#i"/><image href=\'/i.png\'/></svg></p>'
    expected = page.replace('"/sprite', '"/abc123/sprite').replace("'/i", "'/abc123/i")
    assert _source(page, NO_INJECT) == expected


@pytest.mark.parametrize(
    ("page", "before"),
    [
        ('<!doctype html><html><head><meta charset="utf-8"><title>t</title>', "<title>"),
        ("<!doctype html><head><title>t</title><meta charset=utf-8><script>", "<script>"),
        ("<!doctype html><!-- c --><p>hello", "<p>"),
        ("<!doctype html><noscript><a href=/n></noscript><meta charset=utf-8>", "<noscript>"),
        ("</head><meta charset=utf-8><head><p>", "<head>"),  # after </head> a <meta> still goes into <head>
        ("\ufeff<!doctype html><p>", "<p>"),
        ("<HTML><HEAD profile=x>\n<link rel=x href=/l>", "\n<link"),
        ("<html><head><meta http-equiv=Content-Type content='text/html'><meta name=x>", "<meta name"),
    ],
)
def test_context_script_placement(page: str, before: str) -> None:
    """The context script goes first in <head>, after the charset declarations before the first script."""
    text = _source(page)
    assert text is not None
    script = f'<script id="{CONTEXT_SCRIPT_ID}">'
    assert text.count(script) == 1
    assert text.index(script) < text.index(before)
    if "<!doctype" in page.lower():  # nothing before the doctype, which would switch to quirks mode
        assert text.lower().index("<!doctype") < text.index(script)
    head = LexborHTMLParser(text.removeprefix("\ufeff")).head  # as a browser's decoder drops it
    assert head is not None
    assert head.css_first(f"script#{CONTEXT_SCRIPT_ID}") is not None


@pytest.mark.parametrize("page", ["<!doctype html><!-- open", "<html lang=en", "<!doctype html><head"])
def test_context_script_never_lands_inside_an_open_construct(page: str) -> None:
    """Where the script's place would be inside an unclosed comment or tag, the tree rewriter places it."""
    assert _source(page) is None
    tree = LexborHTMLParser(rewrite_html(page, PATH_MODE).text)
    assert tree.css_first(f"head > script#{CONTEXT_SCRIPT_ID}") is not None


def test_a_page_that_holds_the_context_script_gets_no_second_one() -> None:
    """Only a real <script> with the id counts, not the id in text."""
    once = rewrite_html("<!doctype html><p>__tunnel_context__</p>", PATH_MODE).text
    assert once.count(f'<script id="{CONTEXT_SCRIPT_ID}">') == 1
    assert rewrite_html(once, PATH_MODE).text is once


def test_many_srcset_and_style_values_in_one_batch() -> None:
    """Batches of plain values, values with references and values that are not plain come out as the
    tree rewriter has them."""
    cards = "".join(
        f'<img srcset="/a{i}.png 1x, /b{i}.png 2x" style="background: url(\'/c{i}.png\')">' for i in range(50)
    )
    odd = (
        '<img srcset="/x.png?a=1&amp;b=2 1x, data:image/png;base64,/9j/AA= 2x">'
        "<p style=\"background: url(&quot;/q.png&quot;); content: '\\2f'\">"
        "<p style=\"background-image: image-set('/r.png' 1x)\">"
        "<p style=\"font-family: 'É'; background: url(/s.png)\">"
        '<img imagesrcset="/abc123/done.png, /t.png 2x">'
    )
    page = f"<html><body>{cards}{odd}</body></html>"
    text = _source(page, NO_INJECT)
    assert text is not None
    assert _body(text) == _body(_rewrite_tree(page, NO_INJECT, is_document=True).text)
    assert "&amp;b=2" in text


def test_host_mode_maps_only_the_upstream_origin() -> None:
    """Without a prefix paths stay, and values naming the upstream move to the public origin."""
    page = (
        '<a href="/x">a</a><a href="http://localhost:3000/y">b</a><img srcset="http://127.0.0.1:3000/i 2x">'
    )
    assert _source(page, HOST_MODE) == (
        '<a href="/x">a</a><a href="http://abc123.localhost:8080/y">b</a>'
        '<img srcset="http://abc123.localhost:8080/i 2x">'
    )


# The source pass against the tree rewriter on messy generated pages: both outputs parsed, compared
# element by element (tag, attributes, text), where the parser puts them aside. The tree rewriter's
# attribute regex also fires inside raw text (a false positive of its own), so raw text is compared with
# its attribute-like values blanked; comments are left out (around an injected script they may land in
# <head> rather than before <html>), and so is whitespace at the ends of text (the tree rewriter's
# serialisation of a fragment does not survive a reparse there).
_URLS = st.sampled_from(
    ["/x", "/abc123", "/abc123/y", "/abc1234", "//cdn.example/x", "/\\x", "x/y", "#f", "", " /lead",
     "/trail ", "&#47;enc", "/&amp;x", "/abc&#49;23/z", "http://127.0.0.1:3000/o", "HTTP://LOCALHOST:3000/p",
     "https://gw.example.com/q", "//gw.example.com/r", "/a b", "/abc123 x", "/&copy=1", "\t/t", "/a'b",
     "/a>b", "data:,x", "/é"]
)  # fmt: skip
_NAMES = st.sampled_from(
    ["href", "HREF", "src", "action", "poster", "cite", "background", "xlink:href", "data", "srcset",
     "imagesrcset", "style", "ping", "title", "alt", "class", "sizes", "=href", "src/", "stylex"]
)  # fmt: skip


@st.composite
def _attributes(draw: st.DrawFn) -> str:
    name = draw(_NAMES)
    url = draw(_URLS)
    low = name.lower()
    if low in ("srcset", "imagesrcset"):
        value = f"{url.strip()} 1x, {draw(_URLS).strip()}, /z 2x"
    elif low == "style":
        value = draw(st.sampled_from([f"b: url({url})", f"b:url('{url}')", "color: red", f"c: '{url}'"]))
    else:
        value = url
    quote = draw(st.sampled_from(['"', "'", ""]))
    if quote == '"':
        value = value.replace('"', "&quot;")
    elif quote == "'":
        value = value.replace("'", "&#39;")
    else:
        value = re.sub(r"[\s\"'>]", "", value)
    return f" {name}{draw(st.sampled_from(['=', ' = ']))}{quote}{value}{quote}"


_SNIPPETS = [
    "hi", "a < b", 'say href="/t"', "</a>", "</p title='>'>", "<!-- <a href=/c> -->", "<!-->",
    "<script>fetch('/s')</script>", "<script>x='<a href=\"/n\">'</script>", "<style>a{b:url(/st)}</style>",
    "<textarea><a href=/ta></textarea>", "<title><a href=/ti></title>", "<!doctype html>",
    "<meta http-equiv=refresh content='0;url=/r'>", "<meta charset=utf-8>", "<![CDATA[ <a href=/cd> ]]>",
    "<svg><use href=/sv /></svg>", "<svg><style>a{b:url(/g)}</style></svg>",
    "<template><a href=/tp></template>", "<noscript><a href=/ns></noscript>", "</", "<",
]  # fmt: skip
_PARTS = st.one_of(
    st.builds(
        "<{}{}{}>".format,
        st.sampled_from(["a", "img", "link", "object", "svg", "use", "div", "meta", "head", "body", "td"]),
        st.lists(_attributes(), max_size=3).map("".join),
        st.sampled_from(["", "/"]),
    ),
    st.sampled_from(_SNIPPETS),
)


def _tags(page: str) -> list[str]:
    root = LexborHTMLParser(page).root
    if root is None:
        return []
    nodes = root.traverse()
    return [node.tag or "" for node in nodes if node.tag != "-comment" and node.id != CONTEXT_SCRIPT_ID]


def _flat(page: str) -> list[tuple[str, object]]:
    tree = LexborHTMLParser(page)
    out: list[tuple[str, object]] = []
    if tree.root is None:
        return out
    for node in tree.root.traverse(include_text=True):
        if node.tag == "-text":
            text = node.text_content or ""
            parent = node.parent.tag if node.parent is not None else ""
            if parent in ("script", "style", "iframe", "xmp", "noembed", "noframes"):
                text = re.sub(r"""([\w:-]+\s*=\s*)("[^"]*"?|'[^']*'?|[^\s>]*)""", r"\1U", text)
            if text.strip():
                out.append(("#", text.strip()))
        elif node.tag not in ("-comment", "html", "head", "body"):
            out.append((node.tag or "", sorted((k, v or "") for k, v in node.attributes.items())))
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.tuples(st.sampled_from(["", "<!doctype html>", "<html><head>"]), st.lists(_PARTS, max_size=10)).map(
        lambda parts: parts[0] + "".join(parts[1])
    ),
    st.sampled_from([PATH_MODE, NO_INJECT, HOST_MODE]),
)
def test_source_pass_agrees_with_the_tree_rewriter(page: str, config: RewriteConfig) -> None:
    """Whatever the markup, the page the source pass writes parses to what the tree rewriter writes."""
    is_document = _DOCUMENT_MARKER.search(page) is not None
    source = rewrite_source(page, config, is_document=is_document)
    if source is None:
        return
    tree = _rewrite_tree(page, config, is_document=is_document)
    if _tags(tree.text) != _tags(page):
        return  # the tree rewriter's output does not reparse to its tree (misnested formatting elements)
    assert _flat(source.text) == _flat(tree.text)
    assert rewrite_html(source.text, config).text == source.text


_CSS_PIECES = st.sampled_from(
    ["url(", "URL(", "xurl(", ")", "(", '"', "'", " ", "\n", "/", "//", "/\\", "/abc123", "/abc123/", "?",
     "a", ";", "url(/a)", "url('/b')", 'url("/c")', "url( /d )", "url(//e)", "url(/abc123)",
     'url("/abc123 ")', "url(/abc123?x)", "image-set(", "/*", "*/", "\\", "@import", "\t", "\x0b",
     "url(\x0b/v)"]
)  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(st.lists(st.lists(_CSS_PIECES, max_size=12).map("".join), min_size=1, max_size=4))
def test_plain_css_batch_agrees_with_rewrite_css(values: list[str]) -> None:
    """The batch scan for plain `style` values does what `rewrite_css` does to each value, or declines."""
    got = _prefix_css("\x00".join(values), "/abc123")
    if got is not None:
        assert got.split("\x00") == [rewrite_css(value, NO_INJECT).text for value in values]


def _groups_in_possessive(items: object, inside: bool = False) -> list[int]:
    from re import _constants as c  # type: ignore[attr-defined]

    found: list[int] = []
    for op, argument in items:  # type: ignore[attr-defined]
        if op is c.SUBPATTERN:
            if argument[0] is not None and inside:
                found.append(argument[0])
            found += _groups_in_possessive(argument[3], inside)
        elif op in (c.POSSESSIVE_REPEAT, c.MAX_REPEAT, c.MIN_REPEAT):
            found += _groups_in_possessive(argument[2], inside or op is c.POSSESSIVE_REPEAT)
        elif op is c.ATOMIC_GROUP:
            found += _groups_in_possessive(argument, True)
        elif op is c.BRANCH:
            for branch in argument[1]:
                found += _groups_in_possessive(branch, inside)
        elif op in (c.ASSERT, c.ASSERT_NOT):
            found += _groups_in_possessive(argument[1], inside)
        elif op is c.GROUPREF_EXISTS:
            for branch in argument[1:]:
                if branch is not None:
                    found += _groups_in_possessive(branch, inside)
    return found


def test_no_capturing_group_inside_a_possessive_repeat() -> None:
    """CPython 3.11's re can raise SystemError for a group inside a possessive repeat: none is."""
    from re import _parser  # type: ignore[attr-defined]

    import rewrite.html_source as module

    patterns: list[re.Pattern[str] | FastPattern]
    patterns = [value for value in vars(module).values() if isinstance(value, re.Pattern)]
    patterns += [*module._HEAD_WALK, *module._HEAD_WALK_CLOSED, module._css_pattern("/abc123")]
    patterns += [
        module._main_pattern(prefix, origins) for prefix in ("", "/abc123") for origins in (False, True)
    ]
    assert _groups_in_possessive(_parser.parse(r"(?:x|(?:(a)b|c))*+", 0)) == [1]  # the check itself works
    for pattern in patterns:
        tree = _parser.parse(pattern.pattern, pattern.flags)
        assert _groups_in_possessive(tree) == [], pattern.pattern[:80]


def test_a_page_that_once_raised_system_error() -> None:
    """The page that showed the bug comes back rewritten, not raising."""
    assert rewrite_html('</a href="/end"></ ><head>', PATH_MODE).changed
