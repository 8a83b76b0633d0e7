"""rewrite.fast_re: PCRE2 (PyPcre, the `speedups` extra, installed by `make test`) gives exactly what `re`
gives for the HTML source scan's patterns, and `re` takes over wherever PCRE2 cannot run."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.pages import docs_page
from rewrite import rewrite_html
from rewrite.fast_re import FastPattern, engine, standard_library_only
from rewrite.html_source import _css_pattern, _main_pattern, _srcset_pattern
from tests.rewrite.conftest import HOST_MODE, PATH_MODE

PAGES = Path(__file__).parents[2] / "fixtures" / "pages"
SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Pieces that steer the scan into each of its branches, and characters that end or change them: the
# generated pages are mostly nonsense, which is the point.
_MARKUP = st.sampled_from(
    [
        "<a", "<A", "<img", "<link", "<div", "<svg", "</svg>", "<math", "<script", "</script", "<style",
        "</style", "<title", "</title>", "<textarea", "<xmp", "<iframe", "<noembed", "<plaintext", "<meta",
        "<object", "<\u017fcript", "<\u212aBD", "</", "</a>", "<!--", "-->", "--!>", "<!", "<?", ">", "/>",
        "/",
        " href", " HREF", " src", " xlink:href", " srcset", " imagesrcset", " style", " ping", " data",
        " content", " http-equiv=refresh", " action", " poster", "=", " = ", '"', "'", "/abc123", "/abc123/",
        "/x", "//cdn", "\\", "&", "&amp;", "&#47;", "&sol;", "&lt", "http://127.0.0.1:3000",
        "https://gw.example.com", "http:", "url(", "URL(", "image-set(", "@import", " 1x, ", ",", "(", ")",
        "\t", "\n", "\r", "\f", " ", "#", "?", "é", "😀", "\u2028", "\x00", "<scr\u0131pt", "</SCR\u0130PT",
        "\u017f", "\u212a", "\u0130", "\u0131", "\u0131mport", " \u017frc",
    ]
)  # fmt: skip
_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=4)
_SPACE = st.sampled_from(["", " ", "\t", "\n", "\r", "\f", "/", "  ", "\u00a0", "\x0b"])
_VALUES = st.lists(st.one_of(_MARKUP, _TEXT), max_size=4).map("".join)


@st.composite
def _tags(draw: st.DrawFn) -> str:
    """A start tag that mostly follows the rules: names, spacing, quoting, values from the pieces."""
    names = ["a", "img", "LINK", "source", "div", "meta", "object", "script", "svg", "use"]
    name = draw(st.sampled_from(names))
    tag = "<" + name
    for _ in range(draw(st.integers(0, 4))):
        names = ["href", "SRC", "srcset", "style", "ping", "xlink:href", "xlin\u212a:href", "\u017frc", "id"]
        attribute = draw(st.sampled_from(names))
        tag += draw(_SPACE.filter(bool)) + attribute
        if draw(st.booleans()):
            quote = draw(st.sampled_from(['"', "'", ""]))
            value = draw(_VALUES)
            tag += f"{draw(_SPACE)}={draw(_SPACE)}{quote}{value}{quote}"
    return tag + draw(st.sampled_from([">", "/>", " >", ""]))


messy_pages = st.lists(st.one_of(_MARKUP, _MARKUP, _TEXT, _tags(), _tags()), max_size=40).map("".join)


def test_the_jit_engine_is_the_one_running() -> None:
    """`make test` installs the speedups: a test run on `re` alone would hide a broken PCRE2 path."""
    assert engine() == "pcre2"
    with standard_library_only():
        assert engine() == "re"
    assert engine() == "pcre2"


@SETTINGS
@given(messy_pages)
def test_the_main_scan_splits_every_page_as_re_does(page: str) -> None:
    for prefix in ("/abc123", ""):
        for origins in (False, True):
            pattern = _main_pattern(prefix, origins)
            assert pattern.split(page) == re.compile(pattern.pattern, pattern.flags).split(page)


@SETTINGS
@given(messy_pages)
def test_the_srcset_and_css_batches_cut_as_re_does(text: str) -> None:
    values = text.replace("\x00", "") + "\x00"
    for pattern in (_srcset_pattern("/abc123"), _css_pattern("/abc123")):
        assert pattern.findall(values) == re.compile(pattern.pattern, pattern.flags).findall(values)


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        (r"a\Z", "a\n", []),  # PCRE2's own \Z would match before the final newline
        (r"a\Z", "ba", ["a"]),
        (r"\\Z", "\\Z", ["\\Z"]),  # an escaped backslash, then a plain Z: nothing to translate
        (r"\\\Z", "x\\", ["\\"]),
    ],
)
def test_end_of_text_means_what_it_means_in_re(pattern: str, text: str, expected: list[str]) -> None:
    assert re.findall(pattern, text) == expected  # the case itself is right
    assert FastPattern(pattern).findall(text) == expected


def test_a_lone_surrogate_is_left_to_re() -> None:
    """PCRE2 reads UTF-8, which cannot hold a lone surrogate: `re` does that page, with the same cuts."""
    page = '<a href="/x">\udcff<img src="/y">'
    pattern = _main_pattern("/abc123", False)
    assert pattern.split(page) == re.compile(pattern.pattern, pattern.flags).split(page)
    assert rewrite_html(page, PATH_MODE).text.count("/abc123/") == 2


def test_a_text_over_pcre2s_match_limit_is_left_to_re() -> None:
    """PCRE2 gives up after ten million steps of one match (here ten million "<", one chunk of the scan):
    `re`, which has no such limit, does that text over, so a huge page still gets its cuts."""
    page = "<" * 10_500_000 + '<a href="/x">'
    pattern = _main_pattern("/abc123", False)
    parts = pattern.split(page)
    assert [head for head in parts[2::5] if head] == ['href="/']
    assert len(parts[1]) == len(page) - len('href="/x">')


def test_a_pattern_pcre2_refuses_runs_in_re() -> None:
    """PCRE2 knows no named character escapes: the pattern runs in `re`, with `re`'s results."""
    pattern = FastPattern(r"a\N{EM DASH}+")
    assert pattern.findall("a\u2014\u2014 a-") == ["a\u2014\u2014"]


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        (r"\w+", "héllo wörld", ["héllo", "wörld"]),  # PCRE2 without its UCP option: ["h", "llo", ...]
        (r"\d", "٣3", ["٣", "3"]),
        (r"a\sb", "a\u2003b", ["a\u2003b"]),
        (r"x{,2}", "xx{,2}", ["xx", "", "", "", "", ""]),  # PCRE2 10.42: the literal text "x{,2}"
    ],
)
def test_what_pcre2_reads_differently_runs_in_re(pattern: str, text: str, expected: list[str]) -> None:
    assert re.findall(pattern, text) == expected
    assert FastPattern(pattern).findall(text) == expected


def test_the_scan_patterns_all_run_in_pcre2() -> None:
    """None of them holds what would send it to `re`: the speed the README reports is what runs."""
    patterns = [_main_pattern(p, o) for p in ("/abc123", "") for o in (False, True)]
    patterns += [_srcset_pattern("/abc123"), _css_pattern("/abc123")]
    for pattern in patterns:
        pattern.findall("")
        assert pattern._jit is not False, pattern.pattern[:60]


def test_flags_other_than_the_translated_ones_are_refused() -> None:
    with pytest.raises(ValueError, match="FastPattern takes only"):
        FastPattern("a", re.MULTILINE)


@pytest.mark.parametrize("name", sorted(path.name for path in PAGES.glob("*.html")))
def test_fixture_pages_rewrite_alike_in_both_engines(name: str) -> None:
    page = (PAGES / name).read_text()
    for config in (PATH_MODE, HOST_MODE):
        fast = rewrite_html(page, config)
        with standard_library_only():
            slow = rewrite_html(page, config)
        assert (fast.text, fast.rewrites, fast.skipped) == (slow.text, slow.rewrites, slow.skipped)


def test_the_benchmark_page_rewrites_alike_in_both_engines() -> None:
    page = docs_page(min_bytes=200_000)
    fast = rewrite_html(page, PATH_MODE)
    with standard_library_only():
        slow = rewrite_html(page, PATH_MODE)
    assert fast.text == slow.text
    assert fast.text.count('href="/abc123/') > 500


def test_pages_rewritten_in_threads_at_once_come_out_as_one_by_one() -> None:
    """The self-hosted gateway rewrites big answers in worker threads, and PCRE2 lets go of the GIL on big
    texts: concurrent scans must not share state."""
    pages = [docs_page(min_bytes=100_000, seed=seed) for seed in range(4)]
    expected = [rewrite_html(page, PATH_MODE).text for page in pages]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda page: rewrite_html(page, PATH_MODE).text, pages * 8))
    assert got == expected * 8
