"""Property tests over generated documents: the laws of the rewriting core.

- Rewriting twice equals rewriting once.
- A response that needs no change comes back byte for byte.
- Every absolute path in a URL position ends up under the prefix (nothing escapes the tunnel).
- Text outside URLs is never altered, whatever the charset; the core never raises.
"""

from __future__ import annotations

import gzip
from html import escape as html_escape

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from selectolax.lexbor import LexborHTMLParser

from rewrite import RewriteConfig, rewrite_css, rewrite_html, rewrite_response
from rewrite.urls import is_prefixed, to_public_url
from tests.rewrite.conftest import PATH_MODE

NO_INJECT = RewriteConfig(
    prefix="/abc123",
    public_origin="https://gw.example.com",
    upstream_origin="http://127.0.0.1:3000",
    inject_context=False,
)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

segments = st.text(alphabet="abcxyz0189-_.~%", min_size=1, max_size=8)
absolute_paths = st.lists(segments, min_size=0, max_size=3).map(lambda parts: "/" + "/".join(parts))
urls = st.one_of(
    absolute_paths,
    absolute_paths.map(lambda p: "http://127.0.0.1:3000" + p),
    absolute_paths.map(lambda p: "https://gw.example.com" + p),
    absolute_paths.map(lambda p: "/abc123" + p),
    segments,  # relative
    segments.map(lambda s: "#" + s),
    st.sampled_from(["https://example.org/x", "//cdn.example.org/y", "data:,hi", "mailto:a@b.example"]),
)
relative_urls = st.one_of(segments, segments.map(lambda s: "#" + s), segments.map(lambda s: "./" + s))
words = st.text(alphabet="abc déf GHÍ ñ ü 0123 .,!", min_size=0, max_size=20)
quotes = st.sampled_from(['"', "'", ""])
tags_and_attributes = st.sampled_from(
    [
        ("a", "href"),
        ("img", "src"),
        ("link", "href"),
        ("form", "action"),
        ("script", "src"),
        ("iframe", "src"),
        ("video", "poster"),
        ("blockquote", "cite"),
        ("source", "src"),
    ]
)


@st.composite
def elements(draw: st.DrawFn, url_strategy: st.SearchStrategy[str] = urls) -> str:
    tag, attribute = draw(tags_and_attributes)
    quote = draw(quotes)
    url = draw(url_strategy)
    if not quote:
        url = url.replace("'", "").replace('"', "") or "x"
    text = draw(words)
    if tag in ("img", "link", "source"):
        return f"<{tag} {attribute}={quote}{url}{quote}>{text}"
    return f"<{tag} class=c {attribute}={quote}{url}{quote}>{text}</{tag}>"


@st.composite
def documents(draw: st.DrawFn, url_strategy: st.SearchStrategy[str] = urls) -> str:
    body = "".join(draw(st.lists(elements(url_strategy), max_size=12)))
    style = draw(st.sampled_from(["", "<style>p{background:url(/bg.png)}</style>"]))
    return f"<!doctype html><html><head><title>{draw(words)}</title>{style}</head><body>{body}</body></html>"


@SETTINGS
@given(documents())
def test_html_rewriting_twice_equals_once(page: str) -> None:
    """A rewritten document, rewritten again, comes back as the very same string."""
    once = rewrite_html(page, PATH_MODE).text
    assert rewrite_html(once, PATH_MODE).text is once


@SETTINGS
@given(documents())
def test_no_absolute_path_escapes_the_prefix(page: str) -> None:
    """After rewriting, every URL attribute that is an absolute path lies under the prefix."""
    tree = LexborHTMLParser(rewrite_html(page, NO_INJECT).text)
    for node in tree.css("[href],[src],[action],[poster],[cite]"):
        for name in ("href", "src", "action", "poster", "cite"):
            value = node.attributes.get(name)
            if value and value.startswith("/") and not value.startswith("//"):
                assert is_prefixed(value, "/abc123"), (name, value)
            if value and value.startswith("http://127.0.0.1:3000"):
                raise AssertionError(f"upstream origin leaked: {value}")


@SETTINGS
@given(documents(relative_urls))
def test_document_needing_no_change_is_byte_identical(page: str) -> None:
    """With only relative URLs and no injection, the body bytes come back untouched."""
    body = page.replace("<style>p{background:url(/bg.png)}</style>", "").encode()
    result = rewrite_response([("content-type", "text/html; charset=utf-8")], body, NO_INJECT)
    assert result.body is body
    assert not result.changed


@SETTINGS
@given(documents(), st.sampled_from(["utf-8", "latin-1", "cp1252"]), st.booleans())
def test_response_laws_hold_for_any_charset_and_coding(page: str, charset: str, gzipped: bool) -> None:
    """Idempotent through encodings, and every word of text survives in the page's own charset."""
    try:
        raw = page.encode(charset)
    except UnicodeEncodeError:
        return
    headers = [("content-type", f"text/html; charset={charset}")]
    if gzipped:
        raw = gzip.compress(raw)
        headers.append(("content-encoding", "gzip"))
    once = rewrite_response(headers, raw, PATH_MODE)
    twice = rewrite_response(once.headers, once.body, PATH_MODE)
    assert twice.body == once.body
    decoded = gzip.decompress(once.body) if gzipped else once.body
    body = LexborHTMLParser(page).body
    assert body is not None
    for word in body.text(separator="\n").split("\n"):
        if word.strip():
            assert word.strip().encode(charset) in decoded


@SETTINGS
@given(
    st.binary(max_size=2048),
    st.sampled_from(
        ["text/html", "text/css", "text/javascript", "application/json", "text/html; charset=utf-8"]
    ),
    st.sampled_from([None, "gzip", "br", "zstd", "deflate"]),
)
def test_arbitrary_bytes_never_raise(body: bytes, content_type: str, coding: str | None) -> None:
    """Random bytes under any declared type and coding are either rewritten cleanly or passed through."""
    headers = [("content-type", content_type)]
    if coding:
        headers.append(("content-encoding", coding))
    result = rewrite_response(headers, body, PATH_MODE)
    if not result.changed:
        assert result.body is body


css_pieces = st.one_of(
    urls.map(lambda u: f"url({u.replace(')', '').replace(' ', '') or 'x'})"),
    urls.map(lambda u: f'url("{u}")'),
    urls.map(lambda u: f'@import "{u}";'),
    st.sampled_from(["a{color:red}", "/* url(/c.png) */", '"str /x"', "\n", "b { c: d }", "}{", "'"]),
)


@SETTINGS
@given(st.lists(css_pieces, max_size=15).map(" ".join))
def test_css_rewriting_twice_equals_once(stylesheet: str) -> None:
    """A rewritten stylesheet has nothing left to rewrite."""
    once = rewrite_css(stylesheet, PATH_MODE).text
    assert rewrite_css(once, PATH_MODE).text is once


attribute_values = st.one_of(
    urls,
    st.text(alphabet="/abc123\\?#&;= \t%.:", max_size=14),
    st.sampled_from(["/abc123", " /abc123 ", "/abc123?x", "/abc1234", "//x", "/\\x", " /y", "/&amp;"]),
)


@SETTINGS
@given(st.lists(st.tuples(tags_and_attributes, attribute_values), min_size=1, max_size=8))
def test_fast_attribute_pass_agrees_with_to_public_url(pairs: list[tuple[tuple[str, str], str]]) -> None:
    """Each URL attribute ends up exactly as `to_public_url` says, through the one-substitution path."""
    body = "".join(f'<{tag} {attribute}="{html_escape(value)}"></{tag}>' for (tag, attribute), value in pairs)
    tree = LexborHTMLParser(rewrite_html(f"<html><head></head><body>{body}</body></html>", NO_INJECT).text)
    assert tree.body is not None
    nodes = [node for node in tree.body.iter() if node.tag != "-text"]
    assert len(nodes) == len(pairs)
    for node, ((_, attribute), value) in zip(nodes, pairs, strict=True):
        assert node.attributes.get(attribute) == (to_public_url(value, NO_INJECT) or value)


srcset_urls = st.one_of(
    absolute_paths,
    segments,
    st.sampled_from(
        ["data:image/png;base64,/9j/AA=", "data:text/plain,/x", "/img,a.png", "/abc123/done.png"]
    ),
    absolute_paths.map(lambda p: "http://127.0.0.1:3000" + p),
)
srcset_candidates = st.tuples(
    srcset_urls,
    st.sampled_from(["", " 1x", " 2x", "  100w", " 1.5x "]),
    st.sampled_from([",", ", ", " , ", ",,"]),
)


srcset_values = st.tuples(
    st.sampled_from(["", " ", "\n"]), st.lists(srcset_candidates, min_size=1, max_size=5)
).map(
    lambda lead_and_candidates: (
        lead_and_candidates[0]
        + "".join(url + descriptor + comma for url, descriptor, comma in lead_and_candidates[1])
    ).rstrip(", ")
)


@SETTINGS
@given(st.lists(srcset_values, min_size=1, max_size=4))
def test_batched_srcset_pass_agrees_with_the_spec_parser(values: list[str]) -> None:
    """Every srcset of a page, rewritten in one batch, equals the HTML Standard's step-by-step parse."""
    images = "".join(f'<img srcset="{html_escape(value)}">' for value in values)
    tree = LexborHTMLParser(rewrite_html(f"<html><head></head><body>{images}</body></html>", NO_INJECT).text)
    got = [node.attributes.get("srcset") for node in tree.css("img")]
    assert got == [_spec_srcset(value) for value in values]


def _spec_srcset(value: str) -> str:
    """The oracle: the HTML Standard's "parse a srcset attribute", step by step, mapping each URL."""
    whitespace = " \t\n\r\f"
    out: list[str] = []
    done = position = 0
    while position < len(value):
        while position < len(value) and value[position] in whitespace + ",":
            position += 1
        start = position
        while position < len(value) and value[position] not in whitespace:
            position += 1
        url = value[start:position].rstrip(",")
        if len(url) == position - start:  # no trailing comma: descriptors run to a top-level comma
            depth = 0
            while position < len(value):
                char = value[position]
                if char == "(":
                    depth += 1
                elif char == ")" and depth:
                    depth -= 1
                elif char == "," and not depth:
                    break
                position += 1
        mapped = to_public_url(url, NO_INJECT) if url else None
        if mapped is not None:
            out += [value[done:start], mapped]
            done = start + len(url)
    return "".join(out) + value[done:]
