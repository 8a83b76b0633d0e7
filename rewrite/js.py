"""Find string literals in clear URL positions of JavaScript and point them at the tunnel. Pure.

Conservative by design (DESIGN.md, "The rewriting core"): only a quoted literal that sits where the
platform or a well-known library takes a URL (`fetch("/x")`, `import{a}from"/x.js"`, `new URL("/x", b)`,
`xhr.open("GET", "/x")`, `url: "/x"`, `img.src = "/x"`, ...) is handed to `to_public_url`; every other
string stays as it was. What static rewriting cannot see is left to the injected context script.

How it stays fast: the script is never tokenised. A cheap scan finds the quotes that open something
URL-like (`"/`, `'/`, `` `/ ``, or a quote before the upstream's or the public host), and only for those a
reverse-anchored regex reads the code just before the quote to decide whether it is a URL position.
Not tokenising also keeps odd input local: a stray apostrophe in a comment cannot shift what follows.
"""

from __future__ import annotations

import regex

from rewrite.config import RewriteConfig
from rewrite.result import Rewrite, RewriteResult, Skipped
from rewrite.urls import to_public_url

__all__ = ["rewrite_js"]

# A quote that opens a literal whose text starts with "/" (a path, or "//host") or with "\/" (the same,
# JSON-style escaped). Consuming, without alternation or lookaround: the regex module then scans at
# hundreds of MB/s, faster than str.find over text as full of quotes as a bundle is.
_PATH_OPENER = regex.compile(
    r"""
    [\"'`]          # a quote that may open a string or template literal
    \\?+ /         # ... followed by "/", escaped or not
    """,
    regex.VERBOSE,
)

# What may sit between a quote and an origin's host found by str.find, read backwards from the host.
_ORIGIN_START = regex.compile(
    r"""
    [\"'`]                              # the quote that opens the literal
    # A scheme that can name the origin, or none (protocol-relative). Spelt out rather than `https?`:
    # under REVERSE a possessive `s?+` would take the "s" that `ws` needs and never give it back.
    (?: (?i: https | http | wss | ws ) : )?+
    (?: // | \\/\\/ )                  # "//", or "\/\/" when slashes are escaped
    """,
    regex.VERBOSE | regex.REVERSE,
)

# The code right before a literal, matched backwards from the opening quote (regex.REVERSE anchors
# `match(script, 0, quote)` at the quote). Each branch names the part that becomes the Rewrite's label.
_CONTEXT = regex.compile(
    r"""
    (?:
        # fetch("/x"), window.fetch("/x"): https://fetch.spec.whatwg.org/#fetch-method
        (?<![\w$]) (?P<fetch> fetch ) \s*+ \(
      | # import("/x"): a dynamic import, not a method that happens to be called import.
        (?<![\w$.]) (?P<dynamic_import> import ) \s*+ \(
      | # import x from "/x", import{a as b}from"/x", export * from "/x": static module specifiers.
        (?<![\w$.]) (?P<from> import | export )
        (?:
            \s*+ \{ [^{}]*+ \}                                   # {a, b as c}
          | \s*+ \* (?: \s*+ as \s++ [\w$]++ )?+                 # * or * as ns
          | \s++ [\w$]++                                         # a default import ...
            (?: \s*+ , \s*+ (?: \{ [^{}]*+ \} | \* \s*+ as \s++ [\w$]++ ) )?+   # ... then {…} or * as ns
        )
        \s*+ from
      | # import "/x": a side-effect import (minified: import"/x").
        (?<![\w$.]) (?P<side_import> import )
      | # new URL("/x", base), new Worker("/x"), new window.EventSource("/x"): the first argument.
        (?<![\w$]) new \s++ (?: [\w$]++ \s*+ \. \s*+ )?+
        (?P<new> URL | Request | EventSource | WebSocket | Worker | SharedWorker ) \s*+ \(
      | # importScripts("/a.js", "/b.js"): every argument, so step over the literals before this one.
        (?<![\w$.]) (?P<import_scripts> importScripts ) \s*+ \(
        (?: \s*+ (?: " (?: [^"\\\n\r] | \\. )*+ " | ' (?: [^'\\\n\r] | \\. )*+ ' ) \s*+ , )*+
      | # navigator.serviceWorker.register("/sw.js")
        (?<![\w$]) (?P<register> serviceWorker \s*+ \. \s*+ register ) \s*+ \(
      | # navigator.sendBeacon("/log", data)
        \. \s*+ (?P<beacon> sendBeacon ) \s*+ \(
      | # xhr.open("GET", "/x"): the second argument, only when the first is an HTTP method literal.
        \. \s*+ (?P<xhr> open ) \s*+ \( \s*+
        (?: " (?i: GET | POST | PUT | DELETE | PATCH | HEAD | OPTIONS ) "
          | ' (?i: GET | POST | PUT | DELETE | PATCH | HEAD | OPTIONS ) '
        )
        \s*+ ,
      | # location.assign("/x"), location.replace("/x")
        (?<![\w$]) (?P<navigate> location \s*+ \. \s*+ (?: assign | replace ) ) \s*+ \(
      | # window.open("/x")
        (?<![\w$]) (?P<window_open> window \s*+ \. \s*+ open ) \s*+ \(
      | # location = "/x", location.href = "/x", location.pathname = "/x" (never ==, += or =>:
        # the "=" must follow the name directly, give or take whitespace).
        (?<![\w$]) (?P<location_assign> location (?: \s*+ \. \s*+ (?: href | pathname ) )?+ ) \s*+ =
      | # location.origin + "/x" (window. and document. too): a path on this very origin, as in Swagger
        # UI's `oauth2RedirectUrl: window.location.origin + '/docs/oauth2-redirect'`.
        (?<![\w$]) (?P<origin_concat> location \s*+ \. \s*+ origin ) \s*+ \+
      | # img.src = "/x", a.href = "/x", form.action = "/x"
        \. \s*+ (?P<property_assign> src | href | action ) \s*+ =
      | # {url: "/x"}, {"href": "/x"}: object properties that name a URL (after "{" or ",", so that
        # `a ? url : "/x"` is not one). `scope` is the option of serviceWorker.register(), whose scope
        # must lie under the worker's (prefixed) path or registration fails.
        [{,] \s*+ ["']?+ (?P<key> url | href | src | action | baseURL | baseUrl | endpoint | scope ) ["']?+
        \s*+ :
      | # axios("/x"), axios.get("/x"), ...
        (?<![\w$])
        (?P<axios> axios (?: \s*+ \. \s*+ (?: get | post | put | delete | patch | head | options ) )?+ )
        \s*+ \(
      | # $.get("/x"), jQuery.ajax("/x"), ...
        (?<![\w$]) (?P<jquery> (?: \$ | jQuery ) \s*+ \. \s*+ (?: getJSON | getScript | get | post | ajax ) )
        \s*+ \(
      | # el.setAttribute("src", "/x"): the second argument, for URL-valued attributes only.
        \. \s*+ setAttribute \s*+ \( \s*+
        (?P<set_attribute> " (?: src | href | action | formaction | poster ) "
                         | ' (?: src | href | action | formaction | poster ) ' )
        \s*+ ,
    )
    \s*+            # whitespace (newlines too) between the opening parenthesis or operator and the quote
    """,
    regex.VERBOSE | regex.REVERSE,
)

# One string or template literal (or a template literal's head, up to its first substitution), from its
# opening quote. Possessive throughout: a literal is read once, left to right, with no backtracking.
_LITERAL = regex.compile(
    r"""
      " (?P<body> (?: [^"\\\n\r]++ | \\ (?: \r\n | [\s\S] ) )*+ ) "          # "double quoted"
    | ' (?P<body> (?: [^'\\\n\r]++ | \\ (?: \r\n | [\s\S] ) )*+ ) '          # 'single quoted'
    | ` (?P<body> (?: [^`\\$]++ | \\ [\s\S] | \$ (?! \{ ) )*+ ) (?: ` | \$\{ ) # `template` or `head${
    """,
    regex.VERBOSE,
)

# Characters that may sit between a call's "(" (or an "=", ":", ",", "from") and the quote.
_JS_SPACE = frozenset(" \t\n\r\f\v\u00a0\u2028\u2029\ufeff")
# The last non-space character before every URL position above; anything else skips the regex.
_CONTEXT_ENDS = frozenset("(,=:tm+")
# Escapes whose decoding is a single character and whose re-encoding is obvious. Anything else
# (\u002F, \x2f, \n, line continuations, \$) makes the literal's value uncertain, so it is skipped.
_SIMPLE_ESCAPES = frozenset("/\\\"'`")


def rewrite_js(script: str, config: RewriteConfig) -> RewriteResult:
    """Rewrite the string literals in clear URL positions of a script so they stay inside the tunnel.

    Args:
        script: Decoded JavaScript: a response body or the text of an inline `<script>`.
        config: Origins, prefix and switches for this response.

    Returns:
        The rewritten text, what changed, and what was left alone. When nothing changed, `text` is
        `script` itself. When a regex runs out of time, `text` is `script` and the reason is in `skipped`.
    """
    if not config.rewrite_js:
        return RewriteResult(script)
    try:
        return _rewrite(script, config)
    except TimeoutError:
        # Fail open: a half-rewritten script is worse than an untouched one.
        return RewriteResult(
            script,
            skipped=(
                Skipped(reason=f"regex timed out after {config.regex_budget(len(script))}s", where="js"),
            ),
        )


def _candidates(script: str, config: RewriteConfig) -> list[int]:
    """The positions of the quotes that open a literal `to_public_url` might change, in order.

    Paths only change in path mode. Origins are found by their host with `str.find` (memchr speed)
    and only then traced back to their quote, so a bundle full of other URLs costs nothing extra.
    Hosts are matched as the config spells them, in lower case, as URLs in code practically always are.
    """
    timeout = config.regex_budget(len(script))  # per call, scaled to the script's size
    found: set[int] = set()
    if config.prefix:
        found.update(match.start() for match in _PATH_OPENER.finditer(script, timeout=timeout))
    authorities = {origin.partition("://")[2] for origin in config.upstream_origins}
    # The public origin too, even in host mode where it never changes: a literal found on the first pass
    # must be found on the second, or quotes inside it would be judged differently (see `literal_end`).
    authorities.add(config.public_origin.partition("://")[2])
    for authority in authorities:
        at = script.find(authority)
        while at != -1:
            start = _ORIGIN_START.match(script, 0, at, timeout=timeout)
            if start is not None:
                found.add(start.start())
            at = script.find(authority, at + len(authority))
    return sorted(found)


def _rewrite(script: str, config: RewriteConfig) -> RewriteResult:
    """Rewrite the literals that sit in URL positions, visiting candidate quotes in order."""
    timeout = config.regex_budget(len(script))  # per call, scaled to the script's size
    pieces: list[str] = []
    rewrites: list[Rewrite] = []
    skipped: list[Skipped] = []
    copied = 0  # script[:copied] is already in pieces
    # The end of the last literal found in a URL position, rewritten or not. Quotes before it are inside
    # that literal (`fetch("/a fetch('/b')")`): skipping them either way keeps a second pass identical.
    literal_end = 0
    for quote in _candidates(script, config):
        if quote < literal_end:
            continue
        before = quote - 1
        while before >= 0 and script[before] in _JS_SPACE:
            before -= 1
        if before < 0 or script[before] not in _CONTEXT_ENDS:
            continue
        context = _CONTEXT.match(script, 0, quote, timeout=timeout)
        if context is None:
            continue
        span = _literal_span(script, quote, timeout)
        if span is None:
            continue  # an unterminated literal: not ours to guess at
        body_start, body_end, literal_end = span
        body = script[body_start:body_end]
        where = _label(context)
        value = _decode(body)
        if value is None:
            skipped.append(
                Skipped(
                    reason="string literal has escapes that cannot be mapped safely",
                    where=where,
                    excerpt=script[quote : min(literal_end, quote + 80)],
                )
            )
            continue
        mapped = _map(value, config)
        if mapped is None:
            continue
        pieces.append(script[copied:body_start])
        pieces.append(_encode(mapped, script[quote], slash_escaped="\\/" in body))
        copied = body_end
        rewrites.append(Rewrite(where=where, before=value, after=mapped))
    if not rewrites:
        return RewriteResult(script, skipped=tuple(skipped))
    pieces.append(script[copied:])
    return RewriteResult("".join(pieces), tuple(rewrites), tuple(skipped))


def _literal_span(script: str, quote: int, timeout: float) -> tuple[int, int, int] | None:
    """Where the literal opened at `quote` has its body, and where it ends; None if it does not end.

    A quoted string without backslashes (nearly all of them) is measured with str.find; the regex
    reads the rest: escapes, and template literals with their substitutions.
    """
    mark = script[quote]
    if mark != "`":
        start = quote + 1
        close = script.find(mark, start)
        if close != -1 and script.find("\\", start, close) == -1:
            if script.find("\n", start, close) != -1 or script.find("\r", start, close) != -1:
                return None  # a string literal cannot hold a raw line break
            return start, close, close + 1
    literal = _LITERAL.match(script, quote, timeout=timeout)
    if literal is None:
        return None
    body_start, body_end = literal.span("body")
    return body_start, body_end, literal.end()


def _label(context: regex.Match[str]) -> str:
    """Name the URL position a context match found, for the report ("js fetch()", "js url:").

    Every branch of `_CONTEXT` holds exactly one capturing group, so the last group is the branch's.
    """
    name = context.lastgroup or ""
    text = "".join((context.group(name) if name else "").split())
    if name == "from":
        return f"js {text} from"
    if name == "side_import":
        return "js import"
    if name == "new":
        return f"js new {text}()"
    if name == "xhr":
        return "js XMLHttpRequest.open()"
    if name == "location_assign":
        return f"js {text} ="
    if name == "property_assign":
        return f"js .{text} ="
    if name == "origin_concat":
        return f"js {text} +"
    if name == "key":
        return f"js {text}:"
    if name == "set_attribute":
        return f"js setAttribute({text})"
    return f"js {text}()"


def _decode(body: str) -> str | None:
    """The value of a literal's body, or None when it holds an escape we do not map."""
    if "\\" not in body:
        return body
    parts: list[str] = []
    start = 0
    while (slash := body.find("\\", start)) != -1:
        escaped = body[slash + 1 : slash + 2]
        if escaped not in _SIMPLE_ESCAPES:
            return None
        parts.append(body[start:slash])
        parts.append(escaped)
        start = slash + 2
    parts.append(body[start:])
    return "".join(parts)


def _encode(value: str, quote: str, *, slash_escaped: bool) -> str:
    """Write a value back as the body of a literal opened by `quote`, in the original's escaping style.

    A script that wrote "\\/" (often to keep "</script>" out of inline scripts) keeps writing it.
    """
    value = value.replace("\\", "\\\\").replace(quote, "\\" + quote)
    if quote == "`":
        value = value.replace("${", "\\${")
    if slash_escaped:
        value = value.replace("/", "\\/")
    return value


def _map(url: str, config: RewriteConfig) -> str | None:
    """`to_public_url`, except that a bare origin stays bare.

    Scripts concatenate origins with paths (`base + "/api"`, `` `${origin}/x` ``), so
    "http://127.0.0.1:3000" must become "https://gw.example.com/abc123" without the trailing slash
    `to_public_url` gives the origin's empty path.
    """
    mapped = to_public_url(url, config)
    if mapped is None:
        return None
    if mapped.endswith("/") and _is_bare_origin(url):
        mapped = mapped[:-1]
    return None if mapped == url else mapped


def _is_bare_origin(url: str) -> bool:
    """True for "http://host:port" and "//host" with nothing after the authority."""
    scheme, sep, rest = url.partition("//")
    if not sep or (scheme and not scheme.endswith(":")):
        return False
    return not any(stop in rest for stop in "/?#\\")
