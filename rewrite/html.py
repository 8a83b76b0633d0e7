"""Find the URLs of an HTML document (attributes, srcset, inline CSS and JS, import maps, meta refresh)
and point them at the public origin; place the tunnel context script. Pure.

Two rewriters, one behaviour. The first, `rewrite.html_source`, works on the page's own source text: one
scan tokenises it as the HTML Standard's tokenizer does and stops only where there is work, so the output
is the page as it came with its URLs changed, at a fraction of the cost of a parse. It declines the few
pages where working on the source could disagree with a browser's parse (raw text inside SVG or MathML,
a script that hides its end tag in an escaped comment), and the `base` strategy is not its job.

The second, below, is the tree rewriter that handles those. selectolax (lexbor) parses the page and
serialises it in the HTML Standard's canonical form: every attribute is written `name="value"`,
lower-case, with `&`, `"`, `<` and `>` escaped in values. In that form a regex finds attribute values, so
prefixing absolute paths in URL attributes is one substitution done in C; the tree handles scripts,
styles, meta, srcset and the context script. A page that needed no change is returned as the original
string, since the serialisation differs from it in quoting and whitespace.
"""

from __future__ import annotations

import html
from functools import lru_cache

import regex
from selectolax.lexbor import LexborHTMLParser, LexborNode

from rewrite.config import RewriteConfig
from rewrite.css import rewrite_css
from rewrite.html_source import (
    CSS_URL_HINT,
    JS_TYPES,
    may_name_an_origin,
    meta_content,
    rewrite_import_map,
    rewrite_source,
    rewrite_srcset,
    rewrite_url_list,
)
from rewrite.inject import CONTEXT_SCRIPT_ID, place_context_script
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
# A document (rather than a fragment such as an htmx partial) names one of these; fragments are
# serialised without the <html><head><body> the parser adds, and get no context script.
_DOCUMENT_MARKER = regex.compile(r"<(?:!doctype|html|head|body)[\s>/]", regex.IGNORECASE)
_STYLE_SEPARATOR = "\n/*\x00*/\n"


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
        try:
            done = rewrite_source(document, config, is_document=is_document)
        except Exception:  # a bug in the faster pass must not cost the page its rewrite: the tree does it
            done = None
        if done is not None:
            return done
    return _rewrite_tree(document, config, is_document=is_document)


def _rewrite_tree(document: str, config: RewriteConfig, *, is_document: bool) -> RewriteResult:
    """The tree rewriter: parse, change the tree and the canonical serialisation, and serialise."""
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
            if may_name_an_origin(document, config):
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
            if CSS_URL_HINT.search(value):
                styled.append(node)  # rewritten together, below
        elif name == "ping":
            new = rewrite_url_list(value, config)
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
        result = rewrite_import_map(node.text(deep=True), config)
        _replace_text(node, result, "script[type=importmap]", rewrites, skipped)
    elif kind in JS_TYPES and config.rewrite_js:
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


def _rewrite_meta(node: LexborNode, config: RewriteConfig, injected: bool, rewrites: list[Rewrite]) -> None:
    attrs = {name: value or "" for name, value in node.attributes.items()}
    new = meta_content(attrs, config, injected=injected)
    if new is not None:
        node.attrs["content"] = new
        rewrites.append(Rewrite("meta[content]", attrs["content"], new))


def _rewrite_srcset_attributes(
    sourced: list[tuple[LexborNode, str, str]], config: RewriteConfig, rewrites: list[Rewrite]
) -> None:
    """Rewrite every `srcset`/`imagesrcset` of the page in one scan over their NUL-joined values (the
    parser turns NUL in attribute values into U+FFFD, so no value holds one)."""
    if not sourced:
        return
    values = [value for _, _, value in sourced]
    joined = "\x00".join(values)
    new_values = rewrite_srcset(joined, config)
    if new_values == joined:
        return
    for (node, name, value), new in zip(sourced, new_values.split("\x00"), strict=True):
        if new != value:
            node.attrs[name] = new
            rewrites.append(Rewrite(f"{node.tag}[{name}]", value, new))


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
