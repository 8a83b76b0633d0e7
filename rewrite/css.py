"""Find the URLs of a stylesheet (`url()`, `@import`, `image-set()`) and point them at the public origin.

Pure. One regex pass finds the candidates and steps over comments and ordinary strings, so only real URL
tokens are touched; tinycss2 decodes a token only when it holds a backslash escape. Everything else,
comments and formatting included, is copied through as it was (CSS Syntax Level 3, section 4).
"""

from __future__ import annotations

import regex
import tinycss2
from tinycss2.serializer import serialize_string_value, serialize_url

from rewrite.config import RewriteConfig
from rewrite.result import Rewrite, RewriteResult, Skipped
from rewrite.urls import to_public_url

__all__ = ["rewrite_css"]

_STRING = r"""(?: "(?:[^"\\\n]++|\\[\s\S])*+" | '(?:[^'\\\n]++|\\[\s\S])*+' )"""
# A string to step over may be cut short by a newline or the end of input (a bad-string token).
_ANY_STRING = r"""(?: "(?:[^"\\\n]++|\\[\s\S])*+"?+ | '(?:[^'\\\n]++|\\[\s\S])*+'?+ )"""
_CANDIDATES = regex.compile(
    rf"""
      (?P<comment> /\* (?:[^*]++|\*(?!/))*+ (?:\*/)?+ )     # a comment: copied, never looked into
    | @import \s*+ (?P<import> {_STRING} )                   # @import "x" (the url() form is below)
    # Function candidates start at their "(" and look behind for the name: scanning for "(" is far
    # cheaper than trying a match at every "u" or "i" of the stylesheet.
    | (?<=[uU][rR][lL]) (?P<url> \( \s*+                     # url( ... )
          (?: (?P<quoted> {_STRING} )                         #   with a string inside: a function block
            | (?P<bare> (?:[^"'()\\\s\x00-\x08\x0b\x0e-\x1f\x7f]++|\\[^\n])++ )  # or a url-token
          )?+ \s*+ \) )
    | (?<=[iI][mM][aA][gG][eE]-[sS][eE][tT]) \(               # image-set( "a.png" 1x, url(b.png) 2x )
          (?P<args> (?: [^()"'/]++ | {_STRING} | /(?!\*) | /\*(?:[^*]++|\*(?!/))*+\*/
                      | [uU][rR][lL]\( [^()]*+ \) | \( [^()]*+ \) )*+ ) \)
    | (?P<string> {_ANY_STRING} )                             # any other string: not a URL, copied
    """,
    regex.VERBOSE,
)
# A cheap test that rules out most stylesheets and style attributes before the full scan.
_ANY_URL = regex.compile(r"url\(|@import|image-set\(", regex.IGNORECASE)


def rewrite_css(stylesheet: str, config: RewriteConfig) -> RewriteResult:
    """Point every `url()`, `@import` and `image-set()` URL of a stylesheet at the public origin.

    Args:
        stylesheet: Decoded CSS text: a whole stylesheet or the contents of a `style` attribute.
        config: Origins and switches for this response.

    Returns:
        The rewritten text (the very same string when nothing changed), what changed, and what was
        left alone.
    """
    try:
        if not _ANY_URL.search(stylesheet, timeout=config.regex_budget(len(stylesheet))):
            return RewriteResult(stylesheet)
        rewrites: list[Rewrite] = []
        text = _rewrite(stylesheet, config, rewrites, strings_are_urls=False)
    except TimeoutError:
        skipped = Skipped("regex timed out; stylesheet passed through", "css", stylesheet[:80])
        return RewriteResult(stylesheet, skipped=(skipped,))
    if not rewrites:
        return RewriteResult(stylesheet)
    return RewriteResult(text, tuple(rewrites))


def _rewrite(css: str, config: RewriteConfig, rewrites: list[Rewrite], *, strings_are_urls: bool) -> str:
    pieces: list[str] = []
    done = 0
    for match in _CANDIDATES.finditer(css, timeout=config.regex_budget(len(css))):
        kind = match.lastgroup
        if kind == "comment":
            continue
        if kind == "string" and strings_are_urls and len(match.group("string")) > 1:
            new = _string(match.group("string"), config, rewrites, "css image-set()")
            span = match.span("string")
        elif kind == "import":
            new = _string(match.group("import"), config, rewrites, "css @import")
            span = match.span("import")
        elif kind == "url" and match.group("quoted") is not None:
            new = _string(match.group("quoted"), config, rewrites, "css url()")
            span = match.span("quoted")
        elif kind == "url" and match.group("bare") is not None:
            new = _bare_url(match.group("bare"), config, rewrites)
            span = match.span("bare")
        elif kind == "args":
            args = match.group("args")
            new_args = _rewrite(args, config, rewrites, strings_are_urls=True)
            new = new_args if new_args is not args else None
            span = match.span("args")
        else:
            continue
        if new is not None:
            pieces.append(css[done : span[0]])
            pieces.append(new)
            done = span[1]
    if not pieces:
        return css
    pieces.append(css[done:])
    return "".join(pieces)


def _string(token: str, config: RewriteConfig, rewrites: list[Rewrite], where: str) -> str | None:
    """Map a quoted CSS string holding a URL; returns its new source text or None."""
    body = token[1:-1]
    if "\\" not in body:
        mapped = to_public_url(body, config)
        if mapped is None:
            return None
        rewrites.append(Rewrite(where, body, mapped))
        return token[0] + mapped + token[0]
    value = _decoded(token)
    if value is None:
        return None
    mapped = to_public_url(value, config)
    if mapped is None:
        return None
    rewrites.append(Rewrite(where, value, mapped))
    escaped: str = serialize_string_value(mapped)
    return f'"{escaped}"'


def _bare_url(raw: str, config: RewriteConfig, rewrites: list[Rewrite]) -> str | None:
    """Map the inside of an unquoted `url(...)`; returns its new source text or None."""
    value = raw if "\\" not in raw else _decoded(f"url({raw})")
    if value is None:
        return None
    mapped = to_public_url(value, config)
    if mapped is None:
        return None
    rewrites.append(Rewrite("css url()", value, mapped))
    return mapped if value is raw else serialize_url(mapped)


def _decoded(source: str) -> str | None:
    """Let tinycss2 decide what an escaped string or url token means."""
    tokens = [t for t in tinycss2.parse_component_value_list(source) if t.type != "whitespace"]
    if len(tokens) != 1:
        return None
    token = tokens[0]
    if token.type in ("string", "url"):
        value: str = token.value
        return value
    if token.type == "function" and token.lower_name == "url":
        inner = [t for t in token.arguments if t.type != "whitespace"]
        if len(inner) == 1 and inner[0].type == "string":
            inner_value: str = inner[0].value
            return inner_value
    return None
