"""Find the URLs of an HTML document (attributes, srcset, inline CSS and JS, import maps, meta refresh)
and point them at the public origin; place the tunnel context script. Pure.

selectolax (lexbor) parses the page and serialises it in the HTML Standard's canonical form: every
attribute is written `name="value"`, lower-case, with `&`, `"`, `<` and `>` escaped in values, and a raw
`<` outside comments and raw-text elements always opens a tag. In that form a regex can find attribute
values exactly, so the bulk of the work, prefixing absolute paths in URL attributes, is one substitution
done in C rather than a Python step per element. The parser's tree handles what needs structure: scripts,
styles, meta, srcset and the context script. A page that needed no change is returned as the original
string, since the serialisation differs from it in quoting and whitespace.
"""

from __future__ import annotations

import html
import json
from functools import lru_cache

import regex
from selectolax.lexbor import LexborHTMLParser, LexborNode

from rewrite.config import RewriteConfig
from rewrite.csp import allow_script_hash
from rewrite.css import rewrite_css
from rewrite.headers import rewrite_refresh
from rewrite.html_source import rewrite_source
from rewrite.inject import CONTEXT_SCRIPT_ID, context_script_hash, place_context_script
from rewrite.js import rewrite_js
from rewrite.result import Rewrite, RewriteResult, Skipped
from rewrite.urls import absolute_path_pattern, to_public_url

__all__ = ["URL_ATTRIBUTES", "rewrite_html"]

# Attributes whose value is one URL (HTML Standard, "Attributes" index, plus the obsolete ones browsers
# still fetch: background, longdesc, lowsrc). `data` counts only on <object>.
URL_ATTRIBUTES = (
    "href", "src", "action", "formaction", "poster", "cite", "background", "manifest", "longdesc", "lowsrc",
    "xlink:href", "data",
)  # fmt: skip
# In the canonical serialisation: inside a start tag, after a space, a URL attribute, `="`, then padding.
_URL_VALUE_START = (
    r"(?<=(?:<[a-zA-Z][^<>]*?\s(?:" + "|".join(regex.escape(a) for a in URL_ATTRIBUTES[:-1]) + r")"
    r"|<object\b[^<>]*?\sdata)=\"[ \t\n\r\f]*+)"
)
# Elements and attributes that need the tree: everything but single-URL attributes.
_STRUCTURED = "script,style,meta,[srcset],[imagesrcset],[ping],[style]"
_LIST_ATTRIBUTES = ("srcset", "imagesrcset", "ping", "style")
_JS_TYPES = frozenset(
    {"", "text/javascript", "application/javascript", "module", "text/ecmascript", "application/ecmascript",
     "application/x-javascript", "text/jsx", "text/babel"}
)  # fmt: skip
# Social and tile metadata that names an absolute URL in `content` (Open Graph, Twitter cards, Windows).
_META_URL_NAMES = frozenset(
    {"og:url", "og:image", "og:image:url", "og:image:secure_url", "og:video", "og:video:url", "og:audio",
     "twitter:image", "twitter:url", "msapplication-tileimage", "msapplication-config"}
)  # fmt: skip
# A document (rather than a fragment such as an htmx partial) names one of these; fragments are
# serialised without the <html><head><body> the parser adds, and get no context script.
_DOCUMENT_MARKER = regex.compile(r"<(?:!doctype|html|head|body)[\s>/]", regex.IGNORECASE)
_WS = " \t\n\r\f"
_CSS_URL_HINT = regex.compile(r"url\(|image-set\(|@import", regex.IGNORECASE)
_STYLE_SEPARATOR = "\n/*\x00*/\n"
# One image candidate (HTML Standard, "parse a srcset attribute"): a URL is a run of non-whitespace whose
# trailing commas separate candidates; otherwise descriptors follow, up to a comma outside parentheses.
# NUL separates the values of many attributes scanned in one go (the parser turns NUL in attribute values
# into U+FFFD, so no value holds one); no candidate crosses it.
_SRCSET_CANDIDATE = regex.compile(
    r"""[\t\n\f\r ,\x00]*+ (?P<url> [^\t\n\f\r \x00]++ )
        (?: (?<=,) | [^,(\x00]*+ (?: \( [^)\x00]*+ \)?+ [^,(\x00]*+ )*+ )""",
    regex.VERBOSE,
)


def rewrite_html(document: str, config: RewriteConfig) -> RewriteResult:
    """Point every URL of an HTML document at the public origin and place the tunnel context script.

    With `config.strategy == "base"` only a `<base href>` for the prefix (and the context script) is
    added. Inline `<style>`, `style=""` and `<script>` go through the CSS and JavaScript rewriters;
    markup inside `<template>` and `<noscript>` is rewritten too.

    Args:
        document: Decoded HTML text, a whole page or a fragment.
        config: Origins and switches for this response.

    Returns:
        The rewritten text (the very same string when nothing changed), what changed, and what was
        left alone.
    """
    if config.strategy == "none":
        return RewriteResult(document)
    is_document = _DOCUMENT_MARKER.search(document) is not None
    if config.strategy == "full":
        done = rewrite_source(document, config, is_document=is_document)
        if done is not None:
            return done
    tree = LexborHTMLParser(document)
    rewrites: list[Rewrite] = []
    skipped: list[Skipped] = []
    if config.strategy == "base":
        _ensure_base(tree, config, rewrites)
    injected = config.inject_context and is_document and place_context_script(tree, config)
    if injected:
        rewrites.append(Rewrite("html context script", "", f"<script id={CONTEXT_SCRIPT_ID}>"))
    if config.strategy == "full":
        styled: list[LexborNode] = []
        sourced: list[tuple[LexborNode, str, str]] = []
        for node in tree.css(_STRUCTURED):
            _rewrite_structured(node, config, injected, rewrites, skipped, styled, sourced)
        _rewrite_style_attributes(styled, config, rewrites, skipped)
        _rewrite_srcset_attributes(sourced, config, rewrites)
    elif injected:
        for node in tree.css("meta"):
            _rewrite_meta(node, config, injected, rewrites)
    if is_document:
        text = tree.html or ""
    else:
        text = "".join(node.inner_html or "" for node in (tree.head, tree.body) if node is not None)
    if config.strategy == "full":
        try:
            text = _prefix_paths(text, config, rewrites)
            if _may_name_an_origin(document, config):
                text = _map_origins(text, config, rewrites)
        except TimeoutError:
            skipped.append(Skipped("regex timed out; page passed through", "html", document[:80]))
            return RewriteResult(document, skipped=tuple(skipped))
    if not rewrites:
        return RewriteResult(document, skipped=tuple(skipped))
    return RewriteResult(text, tuple(rewrites), tuple(skipped))


@lru_cache(maxsize=256)
def _path_regex(prefix: str) -> regex.Pattern[str]:
    return regex.compile(_URL_VALUE_START + absolute_path_pattern(prefix))


# A URL attribute value naming a host: the match starts at its `//`, the rarest point to anchor on, and
# the scheme before it (if any) is captured inside the look-behind.
# No possessive quantifiers inside the look-behind: `regex` matches it right to left.
_ORIGIN_VALUE = regex.compile(_URL_VALUE_START[:-1] + r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*:)?)//[^\"]*+")


@lru_cache(maxsize=256)
def _origin_needles(config: RewriteConfig) -> tuple[str, ...]:
    """Substrings of which at least one appears in any page that names the upstream or public origin."""
    needles = set()
    for origin in (*config.upstream_origins, config.public_origin):
        authority = origin.partition("://")[2]
        port = authority.rpartition(":")[2] if not authority.endswith("]") and ":" in authority else ""
        needles.add(f":{port}" if port else authority)
    return tuple(sorted(needles))


def _may_name_an_origin(document: str, config: RewriteConfig) -> bool:
    """A cheap test on the original page that saves the origin pass on most pages."""
    return any(needle in document for needle in _origin_needles(config))


def _prefix_paths(text: str, config: RewriteConfig, rewrites: list[Rewrite]) -> str:
    """Prefix the absolute paths of every URL attribute in one substitution (path mode only)."""
    if not config.prefix:
        return text
    pattern = _path_regex(config.prefix)
    new, count = pattern.subn(config.prefix + "/", text, timeout=config.regex_budget(len(text)))
    if count:
        rewrites.append(Rewrite("html url attributes", "/…", f"{config.prefix}/…", count))
    return new


def _map_origins(text: str, config: RewriteConfig, rewrites: list[Rewrite]) -> str:
    """Map URL attribute values that name the upstream or public origin."""
    pieces: list[str] = []
    done = 0
    for match in _ORIGIN_VALUE.finditer(text, timeout=config.regex_budget(len(text))):
        start = match.start("scheme") if match.group("scheme") else match.start()
        raw = text[start : match.end()]
        value = html.unescape(raw) if "&" in raw else raw
        mapped = to_public_url(value, config)
        if mapped is None:
            continue
        rewrites.append(Rewrite("html url attribute", value, mapped))
        pieces += [text[done:start], _escape_attribute(mapped)]
        done = match.end()
    if not pieces:
        return text
    pieces.append(text[done:])
    return "".join(pieces)


def _escape_attribute(value: str) -> str:
    """Escape a value as the canonical serialisation does (HTML Standard, "escaping a string")."""
    return (
        value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")
        .replace("\xa0", "&nbsp;")
    )  # fmt: skip


def _rewrite_structured(
    node: LexborNode,
    config: RewriteConfig,
    injected: bool,
    rewrites: list[Rewrite],
    skipped: list[Skipped],
    styled: list[LexborNode],
    sourced: list[tuple[LexborNode, str, str]],
) -> None:
    tag = node.tag or ""
    attrs = node.attributes
    for name in _LIST_ATTRIBUTES:
        value = attrs.get(name)
        if not value:
            continue
        if name == "style":
            if _CSS_URL_HINT.search(value):
                styled.append(node)  # rewritten together, below
        elif name == "ping":
            new = _rewrite_url_list(value, config)
            if new is not None:
                node.attrs[name] = new
                rewrites.append(Rewrite(f"{tag}[{name}]", value, new))
        else:
            sourced.append((node, name, value))  # rewritten together, below
    if tag == "script":
        _rewrite_script(node, config, rewrites, skipped)
    elif tag == "style":
        _replace_text(node, rewrite_css(node.text(deep=True), config), "style", rewrites, skipped)
    elif tag == "meta":
        _rewrite_meta(node, config, injected, rewrites)


def _rewrite_style_attributes(
    nodes: list[LexborNode], config: RewriteConfig, rewrites: list[Rewrite], skipped: list[Skipped]
) -> None:
    """Rewrite every `style=""` that mentions a URL in one pass of the CSS rewriter.

    A page can hold thousands of these; one call over all of them, joined by a comment that no attribute
    value can contain (the parser turns NUL into U+FFFD), costs a fraction of a call each. If a value
    swallows the separator (an unterminated comment or string), each value is rewritten on its own.
    """
    if not nodes:
        return
    values = [node.attributes.get("style") or "" for node in nodes]
    result = rewrite_css(_STYLE_SEPARATOR.join(values), config)
    skipped.extend(result.skipped)
    if not result.changed:
        return
    parts = result.text.split(_STYLE_SEPARATOR)
    if len(parts) != len(values):
        parts = [rewrite_css(value, config).text for value in values]
    for node, value, new in zip(nodes, values, parts, strict=True):
        if new != value:
            node.attrs["style"] = new
            rewrites.append(Rewrite(f"{node.tag}[style]", value, new))


def _rewrite_script(
    node: LexborNode, config: RewriteConfig, rewrites: list[Rewrite], skipped: list[Skipped]
) -> None:
    attrs = node.attributes
    if "src" in attrs or attrs.get("id") == CONTEXT_SCRIPT_ID:
        return
    kind = (attrs.get("type") or "").strip().lower()
    if kind == "importmap":
        _rewrite_import_map(node, config, rewrites, skipped)
    elif kind in _JS_TYPES and config.rewrite_js:
        _replace_text(node, rewrite_js(node.text(deep=True), config), "script", rewrites, skipped)


def _replace_text(
    node: LexborNode, result: RewriteResult, where: str, rewrites: list[Rewrite], skipped: list[Skipped]
) -> None:
    """Put rewritten raw text (script or style) back; raw text elements serialise it unescaped."""
    skipped.extend(result.skipped)
    if not result.changed or node.child is None:
        return
    node.child.replace_with(result.text)
    while node.child is not None and node.child.next is not None:
        node.child.next.decompose()
    rewrites.extend(Rewrite(f"{where} {r.where}", r.before, r.after, r.times) for r in result.rewrites)


def _rewrite_import_map(
    node: LexborNode, config: RewriteConfig, rewrites: list[Rewrite], skipped: list[Skipped]
) -> None:
    """Prefix URL-like specifiers and addresses of an import map (HTML Standard, "import maps")."""
    source = node.text(deep=True)
    try:
        import_map = json.loads(source)
    except ValueError as exc:
        skipped.append(Skipped(f"import map is not JSON: {exc}", "script[type=importmap]", source[:80]))
        return
    if not isinstance(import_map, dict):
        return
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
        return
    text = json.dumps(import_map, indent=2 if "\n" in source.strip() else None, ensure_ascii=False)
    # "</script" inside the JSON would end the element early; JSON lets "/" be written as "\/".
    text = text.replace("</", "<\\/")
    _replace_text(node, RewriteResult(text, tuple(found)), "script[type=importmap]", rewrites, skipped)


def _rewrite_meta(node: LexborNode, config: RewriteConfig, injected: bool, rewrites: list[Rewrite]) -> None:
    attrs = node.attributes
    content = attrs.get("content")
    if not content:
        return
    equiv = (attrs.get("http-equiv") or "").strip().lower()
    if equiv == "refresh" and config.strategy == "full":
        new = rewrite_refresh(content, config)
    elif equiv == "content-security-policy" and injected:
        # The policy applies only to what follows it, but a page may place it first: admit our script.
        new = allow_script_hash(content, context_script_hash(config))
    elif (attrs.get("property") or attrs.get("name") or "").strip().lower() in _META_URL_NAMES:
        new = to_public_url(content, config) if config.strategy == "full" else None
    else:
        return
    if new is not None:
        node.attrs["content"] = new
        rewrites.append(Rewrite("meta[content]", content, new))


def _rewrite_srcset_attributes(
    sourced: list[tuple[LexborNode, str, str]], config: RewriteConfig, rewrites: list[Rewrite]
) -> None:
    """Rewrite every `srcset`/`imagesrcset` of the page in one scan over their NUL-joined values."""
    if not sourced:
        return
    values = [value for _, _, value in sourced]
    new_values = _rewrite_srcset("\x00".join(values), config)
    if new_values is None:
        return
    for (node, name, value), new in zip(sourced, new_values.split("\x00"), strict=True):
        if new != value:
            node.attrs[name] = new
            rewrites.append(Rewrite(f"{node.tag}[{name}]", value, new))


def _rewrite_srcset(value: str, config: RewriteConfig) -> str | None:
    """Map each image candidate's URL of a `srcset` value (or of NUL-joined values), following the HTML
    Standard's "parse a srcset attribute": a URL is a run of non-whitespace whose trailing commas end the
    candidate; otherwise descriptors follow, up to a comma outside parentheses."""
    pieces: list[str] = []
    done = 0
    for match in _SRCSET_CANDIDATE.finditer(value, timeout=config.regex_budget(len(value))):
        start, end = match.span("url")
        url = value[start:end].rstrip(",")
        mapped = to_public_url(url, config)
        if mapped is not None:
            pieces += [value[done:start], mapped]
            done = start + len(url)
    if not pieces:
        return None
    return "".join(pieces) + value[done:]


def _rewrite_url_list(value: str, config: RewriteConfig) -> str | None:
    """Map each URL of a space-separated list (the `ping` attribute)."""
    urls = value.split()
    mapped = [to_public_url(url, config) or url for url in urls]
    return " ".join(mapped) if mapped != urls else None


def _ensure_base(tree: LexborHTMLParser, config: RewriteConfig, rewrites: list[Rewrite]) -> None:
    """The `base` strategy: relative URLs resolve under the prefix through one `<base href>`."""
    if not config.prefix:
        return
    base = tree.css_first("base[href]")
    if base is not None:
        href = base.attributes.get("href") or ""
        new = to_public_url(href, config)
        if new is not None:
            base.attrs["href"] = new
            rewrites.append(Rewrite("base[href]", href, new))
        return
    head = tree.head
    element = LexborHTMLParser(f'<base href="{config.prefix}/">').css_first("base")
    if head is None or element is None:
        return
    if head.child is not None:
        head.child.insert_before(element)
    else:
        head.insert_child(element)
    rewrites.append(Rewrite("base[href]", "", f"{config.prefix}/"))
