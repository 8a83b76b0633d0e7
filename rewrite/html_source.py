"""Rewrite the URLs of an HTML document in its own source text, without a parse and serialise round trip.
Pure; `rewrite.html` calls it first and falls back to the tree rewriter where it declines.

One scan with a regular expression (PCRE2's JIT where PyPcre is installed, `re` otherwise: see
`rewrite.fast_re`) tokenises the page as the HTML Standard's tokenizer does (tags,
attributes in any quoting, comments, raw-text and RCDATA elements) and stops only where there is work:
before the value of a URL attribute whose absolute path needs the prefix, before a value that needs a
closer look (`srcset`, a `style` naming a URL, `ping`, a value with a character reference or naming an
origin), and at the elements that need structure (`<script>`, `<style>`, `<meta>`, `<object>`, raw-text
elements, `<svg>` and `<math>`). A split hands the page back cut at those stops, so every byte between
them is copied as it was, and the common case, prefixing a path, is a table look-up on the cut's head
with no Python step per URL. `srcset` values are prefixed in one batch scan of their own and plain
`style` values in another; whatever is not plain goes through `rewrite_css`.

The pass declines (returns None) where working on the source could disagree with a browser's parse:
foreign content (SVG, MathML) that holds raw-text elements, CDATA sections, comments or nested foreign
roots, a script that hides its end tag in an escaped comment, a page holding NUL.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from html.entities import html5
from itertools import compress
from operator import itemgetter, ne
from typing import cast

from rewrite.config import RewriteConfig
from rewrite.csp import allow_script_hash
from rewrite.css import rewrite_css
from rewrite.fast_re import FastPattern
from rewrite.headers import rewrite_refresh
from rewrite.inject import CONTEXT_SCRIPT_ID, context_script, context_script_hash
from rewrite.js import rewrite_js
from rewrite.result import Rewrite, RewriteResult, Skipped
from rewrite.urls import to_public_url

# Nothing here is public: rewrite.html calls rewrite_source, and its tree rewriter shares the helpers below
# whose names have no underscore.
__all__: list[str] = []

# No capturing group sits inside a possessive repeat or atomic group in this module: CPython 3.11's `re`
# can then raise SystemError ("The span of capturing group is wrong") when a later try backtracks.
#
# Why `re`'s syntax and not `regex`, unlike the rest of the package: the scan's patterns run JIT-compiled
# in PCRE2 where PyPcre is installed (rewrite.fast_re: about four times faster than `re`, itself about
# three times faster than `regex` here), and the scan needs no timeout. Every quantifier is possessive,
# bounded or a lazy scan to a fixed end, so no match backtracks, and from every place a match starts at
# one of its branches matches (see _main_pattern), so the scan never retries a position: split leaving
# nothing between two matches, and a length check on the result, back that up.
# The CSS and JavaScript rewriters called from here keep using `regex` with its timeouts.

_W = r"[\t\n\f\r ]"  # whitespace as the tokenizer sees it (CR too: the input stream is not normalised)


def _nocase(words: str) -> str:
    """`words` (letters and punctuation, no escapes of letters) matching ASCII letters in either case, and
    no other letter: HTML and CSS fold only ASCII case, while `(?i)` also matches U+017F for "s", the
    Kelvin sign for "k" and, in `re` but not PCRE2, U+0130 and U+0131 for "i"."""
    return re.sub(r"[a-zA-Z]", lambda letter: f"[{letter[0].lower()}{letter[0].upper()}]", words)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _ascii_lower(name: str) -> str:
    """A tag or attribute name lowered as the tokenizer lowers it: ASCII letters only."""
    return name.lower() if name.isascii() else name.translate(_ASCII_LOWER)


_TEXT = r"[^<]*+"
_NAME = r"[^\t\n\f\r />][^\t\n\f\r />=]*+"  # an attribute name: up to whitespace, "/", ">" or "="
_NAME_END = r"(?![^\t\n\f\r />=])"
_TAG_END = r"(?![^\t\n\f\r />])"  # a tag name ends at whitespace, "/" or ">"
_VALUE = r"""(?: "[^"]*+"?+ | '[^']*+'?+ | [^\t\n\f\r >]*+ )"""
_ATTRIBUTE = rf"{_NAME} (?: {_W}*+ = {_W}*+ {_VALUE} )?+"
_ANY_ATTRIBUTES = rf"(?: [\t\n\f\r /]++ | {_ATTRIBUTE} )*+"
_COMMENT = r"<!--(?: -?> | [\s\S]*? (?: --!?> | \Z ) )"  # "<!-->" and "<!--->" are whole comments

# Attributes whose value is one URL (HTML Standard, "Attributes" index, plus the obsolete ones browsers
# still fetch: background, longdesc, lowsrc); `data` counts only on <object>, an element handled whole.
_URL_NAMES = "href|src|action|formaction|poster|cite|background|manifest|longdesc|lowsrc|xlink:href"
_LIST_NAMES = "srcset|imagesrcset|style|ping"
# Elements handled whole: script data, RAWTEXT and RCDATA elements, foreign content roots (all up to
# their end tag), and elements whose attributes need structure.
_WHOLE = ("script", "style", "title", "textarea", "xmp", "iframe", "noembed", "noframes", "svg", "math")
_SPECIAL_TAGS = (
    r"s(?:cript|tyle|vg) | t(?:itle|extarea) | xmp | iframe | no(?:embed|frames) | plaintext | meta | math"
    r" | object"
)
_CSS_HINT = rf"{_nocase('url')}\( | {_nocase('image-set')}\( | @{_nocase('import')} | &"


def _whole_element(name: str) -> str:
    return (
        rf"{_nocase(name)}{_TAG_END}{_ANY_ATTRIBUTES}"
        rf"(?: > [\s\S]*? (?: </{_nocase(name)}(?=[\t\n\f\r />]) {_ANY_ATTRIBUTES} (?: > | \Z ) | \Z ) | \Z )"
    )


_ELEMENT = (
    "< (?: "
    + " | ".join(_whole_element(name) for name in _WHOLE)
    + rf""" | {_nocase("plaintext")}{_TAG_END} [\s\S]*+
            | (?:{_nocase("meta|object")}){_TAG_END} {_ANY_ATTRIBUTES} (?: > | \Z ) ) {_TEXT}"""
)


@lru_cache(maxsize=64)
def _main_pattern(prefix: str, origins: bool) -> FastPattern:
    """The scan for one prefix ("" in host mode); `origins` stops at values that may name an origin.

    Each match is one cut of the page, as four groups:

    - chunk: markup that needs nothing, up to a stop;
    - head and value: an attribute stopped at. A head that ends in "/" (`href="/`) is a path to prefix;
      any other (`srcset="`, `href="` before `&#47;...`) hands its value to Python. The value runs up to
      the closing quote, which the next chunk starts with. Without a head, the head is None and the
      value empty;
    - kept: a whole element (`<script>...</script>` and the text after it), or an attribute that only
      looked as if it needed work (`href="/abc123/...` already prefixed, a `style` naming no URL), up to
      its closing quote; empty after a head.

    Every chunk starts where the one before stopped: at the start, after a value (on its closing quote,
    or the whitespace or ">" after it) or after an element (on "<" or at the end). From each of those
    places one of the branches below matches, so split finds nothing between two matches.
    """
    rest = re.escape(prefix[1:])
    n = len(prefix)
    url_attribute = rf"(?:{_nocase(_URL_NAMES)}){_NAME_END}{_W}*+={_W}*+"
    # A path to prefix: "/" then neither "/" nor "\" (those name a host), no character reference early
    # enough to change that or the prefix test, and not the prefix already, followed by the value's end
    # (trailing whitespace aside), "/", "?" or "#" (urls.is_prefixed).
    dq = rf"""(?![/\\])(?![^"&]{{0,{n}}}&)(?!{rest}(?:[/?#]|{_W}*+(?:"|\Z)))"""
    sq = rf"""(?![/\\])(?![^'&]{{0,{n}}}&)(?!{rest}(?:[/?#]|{_W}*+(?:'|\Z)))"""
    uq = rf"""(?![/\\])(?![^\t\n\f\r >&]{{0,{n}}}&)(?!{rest}(?:[/?#\t\n\f\r >]|\Z))"""
    fast = rf""" "/{dq} | '/{sq} | /{uq} |""" if prefix else ""
    # Values Python decodes and maps: leading whitespace or "&", an early "&", maybe an origin.
    origin = r"| (?:[a-zA-Z][a-zA-Z0-9+.-]*+:)?+//" if origins else ""
    closer_dq = rf"""[&\t\n\f\r ] | /[^"&]{{0,{n}}}& {origin}"""
    closer_sq = rf"""[&\t\n\f\r ] | /[^'&]{{0,{n}}}& {origin}"""
    closer_uq = rf"""& | /[^\t\n\f\r >&]{{0,{n}}}& {origin}"""
    # A style value worth a look names url(), image-set() or @import, or holds a character reference.
    hint_dq = rf"""(?: [^"&@uUiI]++ | (?!{_CSS_HINT})[@uUiI] )*+ [&@uUiI]"""
    hint_sq = rf"""(?: [^'&@uUiI]++ | (?!{_CSS_HINT})[@uUiI] )*+ [&@uUiI]"""
    hint_uq = rf"""(?: [^"'\t\n\f\r >&@uUiI]++ | (?!{_CSS_HINT})[@uUiI] )*+ [&@uUiI]"""
    lists = (
        rf"""
        | (?:{_nocase("srcset|imagesrcset")}){_NAME_END}{_W}*+={_W}*+
            (?: "(?=[^"]) | '(?=[^']) | (?=[^"'\t\n\f\r >]) )
        | {_nocase("style")}{_NAME_END}{_W}*+={_W}*+ (?: "(?={hint_dq}) | '(?={hint_sq}) | (?={hint_uq}) )
        | {_nocase("ping")}{_NAME_END}{_W}*+={_W}*+ ["']?+"""
        if prefix or origins
        else ""
    )
    closer = rf"""(?: "(?={closer_dq}) | '(?={closer_sq}) | (?={closer_uq}) )"""
    head = rf"""(?: {url_attribute} (?: {fast} {closer} ) {lists} )"""
    value = r"""(?<="/)[^"]*+ | (?<='/)[^']*+ | (?<=")[^"]*+ | (?<=')[^']*+ | [^\t\n\f\r >]*+"""
    kept_attribute = rf"""{_NAME} (?: {_W}*+ = {_W}*+ (?: "[^"]*+ | '[^']*+ | [^\t\n\f\r >]*+ ) )?+"""
    suspicious = r"""[/&\t\n\f\r ]""" + (r"| [a-zA-Z][a-zA-Z0-9+.-]*+: | //" if origins else "")
    # The attributes of a tag, up to one that may need work. Most names are taken at once unless their
    # value looks like a path, a reference or an origin; srcset, style and ping are never taken.
    attributes = rf"""(?: [\t\n\f\r /]++
        | (?![sS][rR][cC][sS] | [sS][tT][yY] | [pP][iI][nN][gG] | [iI][mM][aA][gG][eE][sS])
            {_NAME} (?: =(?!["']?+(?:{suspicious})){_VALUE} | (?!{_W}*+=) )
        | (?=[^\t\n\f\r />]) (?!(?:{_nocase(_URL_NAMES + "|" + _LIST_NAMES)}){_NAME_END}) {_ATTRIBUTE} )*+"""
    markup = rf"""(?: < (?: /[a-zA-Z][^\t\n\f\r />]*+ > {_TEXT}
        | (?!(?=[stxinpmoSTXINPMO])(?:{_nocase(_SPECIAL_TAGS)}){_TAG_END})
            [a-zA-Z][^\t\n\f\r />]*+ {attributes}
            (?: > {_TEXT} | \Z )?+
        | / (?: [a-zA-Z][^\t\n\f\r />]*+ {_ANY_ATTRIBUTES} (?: > | \Z ) | [^>]*+ >?+ ) {_TEXT}
        | {_COMMENT[1:]} {_TEXT}
        | [!?] [^>]*+ >?+ {_TEXT}
        | (?![a-zA-Z!?/]) {_TEXT} ) )*+"""
    start = rf"""(?: \A {_TEXT} | (?!<) ["']?+ {attributes} (?: > {_TEXT} | \Z )?+ )?+"""
    # Groups 3 and 4 take part in every match (empty where unused), so only the head may be None.
    kept = rf"{_ELEMENT} | {kept_attribute} | \Z"
    pattern = rf"""({start} {markup}) (?: ({head}) | ) ((?(2) (?:{value}) | )) ((?(2) | (?:{kept}) ))"""
    return FastPattern(pattern, re.VERBOSE)


# One image candidate of a `srcset` (HTML Standard, "parse a srcset attribute"): a URL is a run of
# non-whitespace whose trailing commas end the candidate; otherwise descriptors follow, up to a comma
# outside parentheses. NUL separates the values of a batch (a page holding NUL is declined).
_SRCSET_URL = r"[^\t\n\f\r \x00]"
_SRCSET_DESCRIPTORS = r"(?: (?<=,) | [^,(\x00]*+ (?: \( [^)\x00]*+ \)?+ [^,(\x00]*+ )*+ )"


@lru_cache(maxsize=64)
def _srcset_pattern(prefix: str) -> FastPattern:
    """Cuts NUL-joined `srcset` values right after each "/" that starts a path needing `prefix`."""
    rest = re.escape(prefix[1:])
    needs = rf"(?![/\\])(?!{rest}(?:[/?#]|,*+(?:[\t\n\f\r \x00]|\Z)))"
    pattern = rf"""(?: (?<=/) {_SRCSET_URL}*+ {_SRCSET_DESCRIPTORS} )?+
        (?: [\t\n\f\r ,\x00]*+ (?!/{needs}) {_SRCSET_URL}++ {_SRCSET_DESCRIPTORS} )*+
        [\t\n\f\r ,\x00]*+ (?: /(?={needs}) | \Z )"""
    return FastPattern(pattern, re.VERBOSE)


def _prefix_srcset(values: str, prefix: str) -> str:
    """Prefix the absolute path of every image candidate in NUL-joined `srcset` values."""
    if not prefix:
        return values
    cuts = _srcset_pattern(prefix).findall(values + "\x00")
    cuts.pop()  # findall's empty match at the end, after the sentinel
    if sum(map(len, cuts)) != len(values) + 1:  # something the pattern could not read: not expected
        return values
    return (prefix[1:] + "/").join(cuts)[:-1]


_SRCSET_CANDIDATE = re.compile(rf"[\t\n\f\r ,\x00]*+ ({_SRCSET_URL}++) {_SRCSET_DESCRIPTORS}", re.VERBOSE)


def rewrite_srcset(value: str, config: RewriteConfig) -> str:
    """Map every image candidate of a decoded `srcset` value (or of NUL-joined values), origins included."""
    value = _prefix_srcset(value, config.prefix)
    if "//" not in value:
        return value
    pieces: list[str] = []
    done = 0
    for match in _SRCSET_CANDIDATE.finditer(value):
        start, end = match.span(1)
        url = value[start:end].rstrip(",")
        if not url.startswith("/") or url.startswith("//"):
            mapped = to_public_url(url, config)
            if mapped is not None:
                pieces += [value[done:start], mapped]
                done = start + len(url)
    return "".join(pieces) + value[done:] if pieces else value


# Plain `style` values in bulk. In a batch without backslashes, comments, image-set(), @import or a
# quoted url() that opens with whitespace, every url() takes one of the shapes below, and cutting the
# batch before each path that needs the prefix does what `rewrite_css` does value by value (a property
# test holds the two together). A batch that holds any of those is flagged and goes to `rewrite_css`.
_CSS_SPACE = r"[\t\n\x0b\f\r ]"  # what `\s` matches in ASCII for the `regex` module css.py uses
_CSS_BARE = r"[^\"'()\\\x00-\x20\x7f]"  # what an unquoted url() may hold


@lru_cache(maxsize=64)
def _css_pattern(prefix: str) -> FastPattern:
    """Cuts plain NUL-joined CSS before each url() path that needs `prefix`, as (cut, trouble)."""
    rest = re.escape(prefix[1:])
    dq = rf"""/(?![/\\])(?!{rest}(?:[/?#]|{_CSS_SPACE}*+"))[^"\n\x00\\]*+"{_CSS_SPACE}*+\)"""
    sq = rf"""/(?![/\\])(?!{rest}(?:[/?#]|{_CSS_SPACE}*+'))[^'\n\x00\\]*+'{_CSS_SPACE}*+\)"""
    bare = rf"""/(?![/\\])(?!{rest}(?:[/?#)]|{_CSS_SPACE})){_CSS_BARE}*+{_CSS_SPACE}*+\)"""
    url = rf"(?<=[uU][rR][lL])\({_CSS_SPACE}*+"
    stop = rf"""{url}(?:"(?={dq})|'(?={sq})|(?={bare}))"""
    kept = rf"""{url}(?:"[^"\n\x00\\]*+"|'[^'\n\x00\\]*+'|{_CSS_BARE}++)?+{_CSS_SPACE}*+\)"""
    image_set = r"(?<=[iI][mM][aA][gG][eE]-[sS][eE][tT])\("
    trouble = rf"""\\ | /\* | @{_nocase("import")} | {image_set} | {url}["']{_CSS_SPACE}"""
    pattern = rf"""(
        (?: (?<=")/[^"\n\x00]*+"?+ | (?<=')/[^'\n\x00]*+'?+ | (?<=[(\t\n\x0b\f\r ])/{_CSS_BARE}*+ )?+
        (?: [^"'(/@\\\x00]++ | "[^"\n\x00\\]*+"?+ | '[^'\n\x00\\]*+'?+
          | (?!{stop}|{trouble}) (?: {kept} | \( ) | /(?!\*) | @(?!{_nocase("import")}) | \x00 )*+
        (?: {stop} | \Z )?+ ) ({trouble})?"""
    return FastPattern(pattern, re.VERBOSE)


def _prefix_css(values: str, prefix: str) -> str | None:
    """Prefix every url() path of NUL-joined ASCII CSS values, or None when they are not all plain."""
    cuts = _css_pattern(prefix).findall(values + "\x00")
    if any(map(itemgetter(1), cuts)):
        return None
    cuts.pop()  # findall's empty match at the end, after the sentinel
    pieces = list(map(itemgetter(0), cuts))
    if sum(map(len, pieces)) != len(values) + 1:  # something the pattern could not read: not expected
        return None
    return prefix.join(pieces)[:-1]


# Character references in attribute values (HTML Standard, "character reference state"): numeric ones and
# named ones ending in ";" always count; a legacy name without ";" before "=" or an alphanumeric does not.
_CHARACTER_REFERENCE = re.compile(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)")


def _decode_reference(match: re.Match[str]) -> str:
    text = match.group(0)
    name = match.group(1)
    if name[0] == "#" or (name.endswith(";") and name in html5):
        return html.unescape(text)
    for length in range(len(name), 1, -1):
        known = name[:length]
        if known in html5:
            after = name[length : length + 1]
            if not known.endswith(";") and (after == "=" or (after.isascii() and after.isalnum())):
                return text
            return html5[known] + name[length:]
    return text


def _decode_attribute(raw: str) -> str:
    """The value the parser gives an attribute written `raw` (references decoded, CR and NUL handled)."""
    if "\r" in raw:
        raw = raw.replace("\r\n", "\n").replace("\r", "\n")
    if "&" in raw:
        raw = _CHARACTER_REFERENCE.sub(_decode_reference, raw)
    return raw


def _encode_attribute(value: str, quote: str) -> str:
    """`value` written between `quote`s; an unquoted value comes back double-quoted, quotes included."""
    value = value.replace("&", "&amp;")
    if quote == "'":
        return value.replace("'", "&#39;")
    value = value.replace('"', "&quot;")
    return value if quote else f'"{value}"'


def _quote(head: str) -> str:
    """The quote a head ends with, or "" before an unquoted value."""
    last = head[-1:]
    return last if last in ("'", '"') else ""


JS_TYPES = frozenset(
    {"", "text/javascript", "application/javascript", "module", "text/ecmascript", "application/ecmascript",
     "application/x-javascript", "text/jsx", "text/babel"}
)  # fmt: skip
# Social and tile metadata that names an absolute URL in `content` (Open Graph, Twitter cards, Windows).
_META_URL_NAMES = frozenset(
    {"og:url", "og:image", "og:image:url", "og:image:secure_url", "og:video", "og:video:url", "og:audio",
     "twitter:image", "twitter:url", "msapplication-tileimage", "msapplication-config"}
)  # fmt: skip
_URL_ATTRIBUTES = frozenset(_URL_NAMES.split("|"))
_STYLE_SEPARATOR = "\n/*\x00*/\n"
CSS_URL_HINT = re.compile(rf"{_nocase('url')}\(|{_nocase('image-set')}\(|@{_nocase('import')}")
_HEAD_NAME = re.compile(_NAME)
_TAG = re.compile(
    rf"<(?P<name>[a-zA-Z][^\t\n\f\r />]*+)(?P<attributes>{_ANY_ATTRIBUTES})(?:>|\Z)", re.VERBOSE
)
_TAG_ATTRIBUTE = re.compile(
    rf"""(?P<name>{_NAME}) (?: {_W}*+ = {_W}*+ (?P<value> "[^"]*+"?+ | '[^']*+'?+ | [^\t\n\f\r >]*+ ) )?""",
    re.VERBOSE,
)
_SCRIPT_START = re.compile(rf"<{_nocase('script')}[\t\n\f\r />]")
# What foreign content parses unlike HTML: raw-text elements (plain elements there), CDATA sections; and
# what could hide where a foreign root ends: comments, nested roots.
_FOREIGN_TROUBLE = re.compile(
    rf"<(?:{_nocase('script|style|title|textarea|xmp|iframe|noembed|noframes|plaintext|svg|math')})"
    r"[\t\n\f\r />]|<!"
)


@lru_cache(maxsize=64)
def _end_tag(name: str) -> re.Pattern[str]:
    return re.compile(rf"</{_nocase(name)}(?=[\t\n\f\r />])")


class _NeedsParserError(Exception):
    """The page needs the tree rewriter: raised where this pass declines."""


@dataclass(slots=True)
class _Job:
    """One call's settings and findings."""

    config: RewriteConfig
    origins: bool  # whether the page may name an origin
    injected: bool = False
    rewrites: list[Rewrite] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def rewrite_source(document: str, config: RewriteConfig, *, is_document: bool) -> RewriteResult | None:
    """Rewrite a document in its own source text, or decline so that the tree rewriter does it.

    Args:
        document: Decoded HTML text, a whole page or a fragment.
        config: Origins and switches for this response; its strategy is "full".
        is_document: Whether the page is a document (which gets the context script) or a fragment.

    Returns:
        The rewritten text (the very same string when nothing changed), what changed and what was left
        alone; or None.
    """
    if "\x00" in document:
        return None
    job = _Job(config, may_name_an_origin(document, config))
    # The page cut at the scan's stops, flat: what split leaves between two matches (nothing), then each
    # match's chunk, head, value and kept part (None where the match has none); a list beats columns.
    parts: list[str | None] = _main_pattern(config.prefix, job.origins).split(document)
    if any(parts[0::5]):
        return None  # the scan skipped a byte: not expected, but never guess
    heads = parts[2::5]
    values, kept = cast("list[str]", parts[3::5]), cast("list[str]", parts[4::5])  # never None
    try:
        job.injected = config.inject_context and is_document and not _holds_context_script(kept)
        parts[2::5], parts[3::5], parts[4::5], grown = _rewrite_cuts(heads, values, kept, job)
        if job.injected:
            _inject(document, parts, heads, values, kept, job)
            grown += len(_script_element(config))
            job.rewrites.insert(0, Rewrite("html context script", "", f"<script id={CONTEXT_SCRIPT_ID}>"))
    except _NeedsParserError:
        return None
    text = "".join(parts)  # type: ignore[arg-type]  # _rewrite_cuts leaves no None
    if len(text) != len(document) + grown:
        return None  # the accounting is off: not expected, but never guess
    if not job.rewrites:
        return RewriteResult(document, skipped=tuple(job.skipped))
    return RewriteResult(text, tuple(job.rewrites), tuple(job.skipped))


@lru_cache(maxsize=256)
def _origin_needles(config: RewriteConfig) -> tuple[str, ...]:
    """Substrings of which at least one appears in any page that names the upstream or public origin."""
    needles = set()
    for origin in (*config.upstream_origins, config.public_origin):
        authority = origin.partition("://")[2]
        port = authority.rpartition(":")[2] if not authority.endswith("]") and ":" in authority else ""
        needles.add(f":{port}" if port else authority)
    return tuple(sorted(needles))


def may_name_an_origin(text: str, config: RewriteConfig) -> bool:
    """A cheap test that spares the origin checks on most pages."""
    return any(needle in text for needle in _origin_needles(config))


def _rewrite_cuts(
    heads: list[str | None], values: list[str], kept: list[str], job: _Job
) -> tuple[list[str], list[str], list[str], int]:
    """Do the work at every stop of the scan.

    Returns:
        The new heads, values and kept parts, and how many characters longer they are.
    """
    config = job.config
    prefix = config.prefix
    table: dict[str | None, str] = {None: ""}
    kinds: dict[str | None, str] = {}
    for head in set(heads):
        if head is None:
            continue
        if head.endswith("/"):
            table[head] = head + prefix[1:] + "/"
        else:
            table[head] = head
            kinds[head] = _ascii_lower(_HEAD_NAME.match(head).group())  # type: ignore[union-attr]
    new_heads = list(map(table.__getitem__, heads))
    stops = list(compress(range(len(heads)), map(kinds.__contains__, heads))) if kinds else []
    prefixed = len(heads) - heads.count(None) - len(stops)
    grown = prefixed * len(prefix)
    if prefixed:
        job.rewrites.append(Rewrite("html url attributes", "/…", f"{prefix}/…", prefixed))
    new_values = list(values)
    srcsets: list[int] = []
    styles: list[int] = []
    for index in stops:
        head = heads[index] or ""
        kind = kinds[head]
        if kind == "srcset" or kind == "imagesrcset":
            srcsets.append(index)
        elif kind == "style":
            styles.append(index)
        else:
            raw = values[index]
            value = _decode_attribute(raw)
            new = rewrite_url_list(value, config) if kind == "ping" else to_public_url(value, config)
            if new is not None:
                job.rewrites.append(Rewrite(f"html {kind}", value, new))
                quote = _quote(head)
                if new.endswith(value) and quote:  # only something put in front: keep the value's own bytes
                    new_values[index] = _encode_attribute(new[: len(new) - len(value)], quote) + raw
                else:
                    new_values[index] = _encode_attribute(new, quote)
                grown += len(new_values[index]) - len(raw)
    if srcsets:
        grown += _rewrite_srcsets(srcsets, heads, new_values, job)
    if styles:
        grown += _rewrite_styles(styles, heads, new_values, job)
    new_kept = list(kept)
    for index in compress(range(len(kept)), kept):
        element = kept[index]
        if element[0] == "<":
            rewritten = _rewrite_element(element, job)
            grown += len(rewritten) - len(element)
            new_kept[index] = rewritten
    return new_heads, new_values, new_kept, grown


def _rewrite_srcsets(indices: list[int], heads: list[str | None], values: list[str], job: _Job) -> int:
    """Rewrite every `srcset` and `imagesrcset` of the page: in one batch scan when none of them holds a
    character reference or may name an origin, else value by value."""
    config = job.config
    old = [values[index] for index in indices]
    joined = "\x00".join(old)
    if "&" not in joined and "\r" not in joined and not job.origins:
        new_joined = _prefix_srcset(joined, config.prefix)
        if new_joined == joined:
            return 0
        changed = _spread(new_joined, indices, old, values)
        grown = len(new_joined) - len(joined)
    else:
        grown = changed = 0
        for index, raw in zip(indices, old, strict=True):
            value = _decode_attribute(raw)
            after = rewrite_srcset(value, config)
            if after != value:
                grown += _put_back(after, value, index, heads, values)
                changed += 1
    if changed:
        job.rewrites.append(Rewrite("html srcset", "/…", f"{config.prefix}/…", changed))
    return grown


def _rewrite_styles(indices: list[int], heads: list[str | None], values: list[str], job: _Job) -> int:
    """Rewrite every `style=""` that names a URL: plain ones in one scan, the rest in one CSS pass."""
    config = job.config
    before = [values[index] for index in indices]
    joined = "\x00".join(before)
    if config.prefix and not job.origins and joined.isascii() and "&" not in joined and "\r" not in joined:
        new_joined = _prefix_css(joined, config.prefix)
        if new_joined is not None:
            if new_joined == joined:
                return 0
            changed = _spread(new_joined, indices, before, values)
            job.rewrites.append(
                Rewrite("html style attributes", "url(/…)", f"url({config.prefix}/…)", changed)
            )
            return len(new_joined) - len(joined)
    # The scan stopped only at values that name url(), image-set() or @import or hold a reference:
    # only the latter need decoding and a second look.
    todo: list[tuple[int, str]] = []
    for index in indices:
        value = values[index]
        if "&" in value or "\r" in value:
            value = _decode_attribute(value)
            if not CSS_URL_HINT.search(value):
                continue
        todo.append((index, value))
    plain = [item for item in todo if item[1].isascii()] if config.prefix and not job.origins else []
    done: dict[int, str] = {}
    if plain:
        new = _prefix_css("\x00".join(value for _, value in plain), config.prefix)
        if new is not None:
            done = dict(zip((index for index, _ in plain), new.split("\x00"), strict=True))
    rest = [item for item in todo if item[0] not in done]
    if rest:
        result = rewrite_css(_STYLE_SEPARATOR.join(value for _, value in rest), config)
        job.skipped.extend(result.skipped)
        parts = result.text.split(_STYLE_SEPARATOR)
        if len(parts) != len(rest):  # a value swallowed a separator (an unterminated comment or string)
            parts = [rewrite_css(value, config).text for _, value in rest]
        done.update(zip((index for index, _ in rest), parts, strict=True))
    grown = 0
    changed = 0
    for index, value in todo:
        new_value = done[index]
        if new_value != value:
            grown += _put_back(new_value, value, index, heads, values)
            changed += 1
    if changed:
        job.rewrites.append(Rewrite("html style attributes", "url(/…)", f"url({config.prefix}/…)", changed))
    return grown


def _spread(new_joined: str, indices: list[int], old: list[str], values: list[str]) -> int:
    """Put the values of a rewritten NUL-joined batch back in their places; returns how many changed."""
    new = new_joined.split("\x00")
    for index, value in zip(indices, new, strict=True):
        values[index] = value
    return sum(map(ne, old, new))


def _put_back(new: str, decoded: str, index: int, heads: list[str | None], values: list[str]) -> int:
    """Write the rewritten form of `decoded` (the value of `values[index]` as the parser reads it) back
    into the source: as it is where the raw value needed no decoding, else encoded for its quoting.

    Returns:
        How many characters longer the value became.
    """
    raw = values[index]
    new_raw = new if decoded is raw else _encode_attribute(new, _quote(heads[index] or ""))
    values[index] = new_raw
    return len(new_raw) - len(raw)


def rewrite_url_list(value: str, config: RewriteConfig) -> str | None:
    """Map each URL of a space-separated list (the `ping` attribute)."""
    urls = value.split()
    mapped = [to_public_url(url, config) or url for url in urls]
    return " ".join(mapped) if mapped != urls else None


@dataclass(slots=True)
class _StartTag:
    """A start tag: its name, its attributes (the first of each name, decoded) and where their values are."""

    name: str
    end: int  # just after the tag
    attributes: dict[str, str]
    spans: dict[str, tuple[int, int, str]]  # name -> (start, end, quote) of the value in the source


def _parse_start_tag(text: str, at: int = 0) -> _StartTag | None:
    match = _TAG.match(text, at)
    if match is None:
        return None
    attributes: dict[str, str] = {}
    spans: dict[str, tuple[int, int, str]] = {}
    for attribute in _TAG_ATTRIBUTE.finditer(text, *match.span("attributes")):
        name = _ascii_lower(attribute.group("name"))
        if name in attributes:
            continue  # the parser drops a repeated attribute
        raw = attribute.group("value")
        if raw is None:
            attributes[name] = ""
            continue
        quote = raw[:1] if raw[:1] in ("'", '"') else ""
        start = attribute.start("value") + len(quote)
        end = attribute.end("value") - (1 if quote and len(raw) > 1 and raw[-1] == quote else 0)
        attributes[name] = _decode_attribute(text[start:end])
        spans[name] = (start, end, quote)
    return _StartTag(_ascii_lower(match.group("name")), match.end(), attributes, spans)


def _holds_context_script(kept: list[str]) -> bool:
    """Whether one of the page's script elements is the context script (then nothing is injected)."""
    for part in filter(None, kept):
        if part[:7].lower() == "<script" and CONTEXT_SCRIPT_ID in part:
            tag = _parse_start_tag(part)
            if tag is not None and tag.attributes.get("id") == CONTEXT_SCRIPT_ID:
                return True
    return False


def _rewrite_element(element: str, job: _Job) -> str:
    """Rewrite one element the scan kept whole (and the text after it, which stays as it is)."""
    tag = _parse_start_tag(element)
    if tag is None:
        return element
    changes = {}
    for name, value in tag.attributes.items():
        new = _rewrite_attribute(tag.name, name, value, job)
        if new is not None:
            changes[name] = new
    if tag.name == "meta":
        new = meta_content(tag.attributes, job.config, injected=job.injected)
        if new is not None:
            job.rewrites.append(Rewrite("meta[content]", tag.attributes["content"], new))
            changes["content"] = new
    content_start = tag.end if element[tag.end - 1 : tag.end] == ">" else len(element)
    content_end = content_start
    new_content: str | None = None
    if tag.name in _WHOLE:
        found = _end_tag(tag.name).search(element, content_start)
        content_end = found.start() if found is not None else len(element)
        content = element[content_start:content_end]
        if tag.name == "script":
            new_content = _rewrite_script(tag, content, job)
        elif tag.name == "style":
            new_content = _rewritten(rewrite_css(content, job.config), "style", job)
        elif tag.name in ("svg", "math"):
            new_content = _rewrite_foreign(content, job)
    if not changes and new_content is None:
        return element
    pieces: list[str] = []
    done = 0
    for name, (start, end, quote) in sorted(tag.spans.items(), key=lambda item: item[1][0]):
        if name in changes:
            pieces += [element[done:start], _encode_attribute(changes[name], quote)]
            done = end
    if new_content is not None:
        pieces += [element[done:content_start], new_content]
        done = content_end
    pieces.append(element[done:])
    return "".join(pieces)


def _rewrite_attribute(tag: str, name: str, value: str, job: _Job) -> str | None:
    """The new value of one attribute of an element kept whole, or None."""
    config = job.config
    if name in _URL_ATTRIBUTES or (name == "data" and tag == "object"):
        new = to_public_url(value, config)
    elif name == "srcset" or name == "imagesrcset":
        new = rewrite_srcset(value, config)
        new = None if new == value else new
    elif name == "style" and CSS_URL_HINT.search(value):
        result = rewrite_css(value, config)
        job.skipped.extend(result.skipped)
        new = result.text if result.changed else None
    elif name == "ping":
        new = rewrite_url_list(value, config)
    else:
        return None
    if new is not None:
        job.rewrites.append(Rewrite(f"{tag}[{name}]", value, new))
    return new


def _rewrite_foreign(content: str, job: _Job) -> str | None:
    """The inside of an <svg> or <math> element, which the scan reads as it reads HTML where foreign
    content holds nothing that parses otherwise."""
    if _FOREIGN_TROUBLE.search(content):
        raise _NeedsParserError
    parts: list[str | None] = _main_pattern(job.config.prefix, job.origins).split(content)
    if any(parts[0::5]):
        raise _NeedsParserError
    values, kept = cast("list[str]", parts[3::5]), cast("list[str]", parts[4::5])  # never None
    parts[2::5], parts[3::5], parts[4::5], _ = _rewrite_cuts(parts[2::5], values, kept, job)
    text = "".join(parts)  # type: ignore[arg-type]  # _rewrite_cuts leaves no None
    return None if text == content else text


def _rewritten(result: RewriteResult, where: str, job: _Job) -> str | None:
    """The rewritten text of a raw-text element, or None when it did not change."""
    job.skipped.extend(result.skipped)
    if not result.changed:
        return None
    job.rewrites.extend(Rewrite(f"{where} {r.where}", r.before, r.after, r.times) for r in result.rewrites)
    return result.text


def _rewrite_script(tag: _StartTag, content: str, job: _Job) -> str | None:
    if "<!--" in content and _SCRIPT_START.search(content):
        # "<!--" then "<script" can put the tokenizer in its double-escaped state, where "</script>" does
        # not end the element (HTML Standard, "script data double escaped state"): the parser decides.
        raise _NeedsParserError
    attributes = tag.attributes
    if "src" in attributes or attributes.get("id") == CONTEXT_SCRIPT_ID:
        return None
    kind = attributes.get("type", "").strip().lower()
    if kind == "importmap":
        return _rewritten(rewrite_import_map(content, job.config), "script[type=importmap]", job)
    if kind in JS_TYPES and job.config.rewrite_js:
        return _rewritten(rewrite_js(content, job.config), "script", job)
    return None


def rewrite_import_map(source: str, config: RewriteConfig) -> RewriteResult:
    """Prefix URL-like specifiers and addresses of an import map (HTML Standard, "import maps").

    Returns:
        The map's new text (`source` itself when nothing changed), what changed, or why it was skipped.
    """
    try:
        import_map = json.loads(source)
    except ValueError as exc:
        skipped = Skipped(f"import map is not JSON: {exc}", "script[type=importmap]", source[:80])
        return RewriteResult(source, skipped=(skipped,))
    if not isinstance(import_map, dict):
        return RewriteResult(source)
    found: list[Rewrite] = []

    def mapped(url: str, where: str) -> str:
        new = to_public_url(url, config)
        if new is None:
            return url
        found.append(Rewrite(where, url, new))
        return new

    def remap(mapping: object) -> object:
        if not isinstance(mapping, dict):
            return mapping
        return {
            mapped(key, "importmap specifier"): mapped(value, "importmap")
            if isinstance(value, str)
            else value
            for key, value in mapping.items()
        }

    if "imports" in import_map:
        import_map["imports"] = remap(import_map["imports"])
    scopes = import_map.get("scopes")
    if isinstance(scopes, dict):
        import_map["scopes"] = {
            mapped(scope, "importmap scope"): remap(inner) for scope, inner in scopes.items()
        }
    if not found:
        return RewriteResult(source)
    text = json.dumps(import_map, indent=2 if "\n" in source.strip() else None, ensure_ascii=False)
    # "</script" inside the JSON would end the element early; JSON lets "/" be written as "\/".
    return RewriteResult(text.replace("</", "<\\/"), tuple(found))


def meta_content(attributes: dict[str, str], config: RewriteConfig, *, injected: bool) -> str | None:
    """The new `content` of a `<meta>`: a refresh URL, Open Graph and similar URLs (strategy "full"), a
    Content-Security-Policy that must admit the context script; or None."""
    content = attributes.get("content")
    if not content:
        return None
    equiv = attributes.get("http-equiv", "").strip().lower()
    if equiv == "refresh":
        return rewrite_refresh(content, config) if config.strategy == "full" else None
    if equiv == "content-security-policy":
        # The policy applies only to what follows it, but a page may place it first: admit our script.
        return allow_script_hash(content, context_script_hash(config)) if injected else None
    if (attributes.get("property") or attributes.get("name") or "").strip().lower() in _META_URL_NAMES:
        return to_public_url(content, config) if config.strategy == "full" else None
    return None


def _script_element(config: RewriteConfig) -> str:
    # Text in a <script> is raw (HTML Standard, "serializing HTML fragments"): what the browser runs
    # and hashes is exactly context_script(config).
    return f'<script id="{CONTEXT_SCRIPT_ID}">{context_script(config)}</script>'


def _head_patterns(end: str) -> tuple[re.Pattern[str], ...]:
    """What may come before the context script's place; `end` is what may end an unclosed construct."""
    comment = rf"<!--(?: -?> | [\s\S]*? (?: --!?> {end} ) )"
    tag = rf"{_TAG_END} {_ANY_ATTRIBUTES} (?: > {end} )"
    # End tags the parser ignores before <html> and in <head> (HTML Standard, "before html" and "in head"
    # insertion modes), bogus comments, and </head>: after it the elements a head holds still go into the
    # head ("after head" insertion mode).
    ignored = rf"""</ (?: (?!(?:{_nocase("body|html|br|template")}){_TAG_END}) [a-zA-Z][^\t\n\f\r />]*+{tag}
                        | (?![a-zA-Z]) [^>]*+ (?: > {end} ) )"""
    prolog = re.compile(rf"(?: {_W}++ | {comment} | <[!?] [^>]*+ (?: > {end} ) | {ignored} )*+", re.VERBOSE)
    html_start = re.compile(rf"<{_nocase('html')}{tag}", re.VERBOSE)
    head_start = re.compile(rf"<{_nocase('head')}{tag}", re.VERBOSE)
    # What a head holds before its first script (HTML Standard, "in head" insertion mode); a <meta> is
    # captured to see whether it declares the charset.
    child = re.compile(
        rf"""{_W}++ | {comment} | <[!?] [^>]*+ (?: > {end} ) | (?P<end> </{_nocase("head")}{tag} ) | {ignored}
        | (?P<meta> <{_nocase("meta")}{tag} )
        | <(?:{_nocase("link|base|basefont|bgsound|html|head")}){tag}
        | <(?P<raw>{_nocase("title|style|noframes|noscript|template")}){_TAG_END} {_ANY_ATTRIBUTES} >
            (?P<content> [\s\S]*? )
            (?: </(?P=raw)(?=[\t\n\f\r />]) {_ANY_ATTRIBUTES} (?: > {end} ) {end} )""",
        re.VERBOSE,
    )
    return prolog, html_start, prolog, head_start, child


# What a <noscript> in <head> may hold while scripting is off, as the tree rewriter's parser has it (HTML
# Standard, "in head noscript"); anything else ends the noscript and the head.
_HEAD_NOSCRIPT = re.compile(
    rf"""(?: {_W}++ | <!--(?: -?> | [\s\S]*? --!?> )
        | <(?:{_nocase("link|meta|basefont|bgsound")}){_TAG_END} {_ANY_ATTRIBUTES} >
        | <{_nocase("style")}{_TAG_END} {_ANY_ATTRIBUTES} >
            [\s\S]*? </{_nocase("style")}(?=[\t\n\f\r />]) [^>]*+ >
        | <{_nocase("noframes")}{_TAG_END} {_ANY_ATTRIBUTES} >
            [\s\S]*? </{_nocase("noframes")}(?=[\t\n\f\r />]) [^>]*+ > )*+""",
    re.VERBOSE,
)


_HEAD_END = re.compile(rf"</{_nocase('head')}(?=[\t\n\f\r />])")
_HEAD_WALK = _head_patterns(r"| \Z")
_HEAD_WALK_CLOSED = _head_patterns("")


def _context_script_position(text: str) -> int:
    """Where the context script goes in a page: first in its `<head>` (the one the parser makes when the
    page has none), after the `<meta>` elements that declare the charset before the first script, so that
    the declaration stays within the first 1024 bytes (HTML Standard, "prescan a byte stream").

    Raises:
        _NeedsParserError: The place would be inside something the page leaves open (a comment, a tag).
    """
    at = _walk_head(text, _HEAD_WALK)
    # Only a construct left open runs to the end of the page, so only there can the place be inside one.
    if at == len(text) and at != _walk_head(text, _HEAD_WALK_CLOSED):
        raise _NeedsParserError
    return at


def _walk_head(text: str, patterns: tuple[re.Pattern[str], ...]) -> int:
    *starts, child_pattern = patterns
    at = 1 if text.startswith("\ufeff") else 0  # the decoder drops a byte order mark: nothing goes before it
    for start in starts:
        found = start.match(text, at)
        if found is not None:
            at = found.end()
    anchor = at
    after_head = _HEAD_END.search(text, 0, at) is not None
    while (child := child_pattern.match(text, at)) is not None and child.end() > at:
        if (child.group("raw") or "").lower() == "noscript" and (
            after_head or not _HEAD_NOSCRIPT.fullmatch(child.group("content"))
        ):
            break  # the head ends here (after </head>, or inside this noscript)
        after_head = after_head or child.group("end") is not None
        at = child.end()
        meta = child.group("meta")
        if meta is not None and ("charset" in meta.lower() or "content-type" in meta.lower()):
            tag = _parse_start_tag(meta)
            attributes = tag.attributes if tag is not None else {}
            if "charset" in attributes or attributes.get("http-equiv", "").strip().lower() == "content-type":
                anchor = at
    return anchor


def _inject(
    document: str,
    parts: list[str | None],
    heads: list[str | None],
    values: list[str],
    kept: list[str],
    job: _Job,
) -> None:
    """Put the context script into the cut where its place in the page falls (`heads`, `values` and
    `kept` are the cuts as they came, `parts` as rewritten).

    The place is found in the page as it came, near its start, and falls between two tags: inside a
    chunk (chunks never change), or around a kept element (before it, or after a charset <meta> and
    before the text after it, which never changes either).
    """
    at = _context_script_position(document)
    script = _script_element(job.config)
    position = 0
    for row, old in enumerate(kept):
        index = 5 * row + 1
        chunk = parts[index] or ""
        if position + len(chunk) >= at:
            parts[index] = chunk[: at - position] + script + chunk[at - position :]
            return
        position += len(chunk) + len(heads[row] or "") + len(values[row])
        if old and position + len(old) >= at:
            new = parts[index + 3] or ""
            cut = 0 if at == position else len(new) - (len(old) - (at - position))
            parts[index + 3] = new[:cut] + script + new[cut:]
            return
        position += len(old)
    raise _NeedsParserError  # not reached: the place is always inside the page
