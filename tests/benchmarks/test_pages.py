"""The benchmark inputs are deterministic and hold what they claim to: size, links, URL positions."""

from __future__ import annotations

import pytest
import tinycss2
from selectolax.lexbor import LexborHTMLParser

from benchmarks.pages import docs_page, inject_css_urls, inject_url_literals, swagger_ui_asset

_URL_ATTRIBUTES = ("href", "src", "action", "formaction", "poster")


@pytest.fixture(scope="module")
def page() -> str:
    """The default documentation page, built once for the module."""
    return docs_page()


def _absolute_paths(html: str) -> list[str]:
    tree = LexborHTMLParser(html)
    selector = ",".join(f"[{name}]" for name in _URL_ATTRIBUTES)
    return [
        value
        for node in tree.css(selector)
        for name, value in node.attributes.items()
        if name in _URL_ATTRIBUTES and value and value.startswith("/") and not value.startswith("//")
    ]


def test_docs_page_is_deterministic(page: str) -> None:
    """The same seed gives the same page, and another seed a different one of similar size."""
    assert docs_page() == page
    other = docs_page(seed=8)
    assert other != page
    assert abs(len(other) - len(page)) < 50_000


def test_docs_page_reaches_the_requested_size(page: str) -> None:
    """The default page is at least 1 MB of ASCII, and a smaller request gives a smaller page."""
    assert len(page.encode()) == len(page) >= 1_200_000
    small = docs_page(min_bytes=100_000)
    assert 100_000 <= len(small) < 150_000


def test_docs_page_has_thousands_of_absolute_links(page: str) -> None:
    """Several thousand URL attributes hold absolute paths, next to external, relative and in-page links."""
    paths = _absolute_paths(page)
    assert len(paths) > 5_000
    assert any(path.startswith("/docs/") for path in paths)
    assert any(path.startswith("/static/img/") for path in paths)
    hrefs = [node.attributes.get("href") or "" for node in LexborHTMLParser(page).css("a[href]")]
    assert sum(href.startswith("https://") for href in hrefs) > 100
    assert sum(href.startswith("../") for href in hrefs) > 100
    assert sum(href.startswith("#") for href in hrefs) > 100


def test_docs_page_has_every_kind_of_url_position(page: str) -> None:
    """Stylesheets, srcset, style url(), inline fetch() and a form action are all on the page."""
    tree = LexborHTMLParser(page)
    assert tree.css_first('link[rel="stylesheet"][href^="/static/"]') is not None
    srcsets = [node.attributes.get("srcset") or "" for node in tree.css("img[srcset]")]
    assert len(srcsets) > 500
    assert all(candidate.strip().startswith("/static/") for candidate in srcsets[0].split(","))
    assert len(tree.css('[style*="url(\'/static/"]')) > 500
    scripts = " ".join(node.text() for node in tree.css("script:not([src])"))
    assert "fetch('/api/v1/session'" in scripts
    assert "xhr.open('GET', '/api/v1/notifications')" in scripts
    style = tree.css_first("style")
    assert style is not None
    assert "url(/static/fonts/inter-var.woff2)" in style.text()
    assert tree.css_first('form[action="/search"]') is not None


def test_swagger_ui_assets_are_the_vendored_files() -> None:
    """The stylesheet and the bundle come from swagger-ui-bundle, at the sizes the benchmark names."""
    css = swagger_ui_asset("swagger-ui.css")
    js = swagger_ui_asset("swagger-ui.js")
    assert 100_000 < len(css.encode()) < 200_000
    assert ".swagger-ui" in css
    assert 200_000 < len(js.encode()) < 300_000
    assert "SwaggerUIBundle" in js or "SwaggerUI" in js


def test_inject_url_literals_appends_valid_statements() -> None:
    """The bundle is kept as a prefix and followed by the requested number of URL statements."""
    script = "var a = 1;"
    out = inject_url_literals(script, count=120)
    assert out.startswith(script)
    added = out[len(script) :].strip().splitlines()
    assert added[0] == ";(function (x, o, img) {"
    assert added[-1] == "});"
    statements = added[1:-1]
    assert len(statements) == 120
    assert sum('"/api/v1/' in line or '"/static/' in line or '"/events/' in line for line in statements) > 90
    assert any(line.startswith("console.log(") for line in statements)
    assert inject_url_literals(script, count=120) == out
    assert inject_url_literals(script, count=120, seed=8) != out


def test_inject_css_urls_appends_parseable_rules() -> None:
    """The stylesheet is kept as a prefix and the added rules parse without errors in tinycss2."""
    out = inject_css_urls("body { color: red }", count=90)
    assert out.startswith("body { color: red }")
    rules = tinycss2.parse_stylesheet(out, skip_comments=True, skip_whitespace=True)
    assert len(rules) == 91
    assert not [rule for rule in rules if rule.type == "error"]
    assert out.count("url(/static/") + out.count("url('/static/") + out.count('url("/static/') > 20
    assert inject_css_urls("body { color: red }", count=90) == out
