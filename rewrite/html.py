"""Find the URLs of an HTML document (attributes, srcset, inline CSS and JS, import maps, meta refresh)
and point them at the public origin; place the tunnel context script. Pure.

selectolax (lexbor) parses the page once. One selector list, built per tunnel, picks in C only the
elements that can hold something to rewrite, so Python touches a small part of a large page. The parser
re-serialises the whole document, so a page that needed no change is returned as the original string.
"""

from __future__ import annotations

import json
from functools import lru_cache

import regex
from selectolax.lexbor import LexborHTMLParser, LexborNode

from rewrite.config import RewriteConfig
from rewrite.csp import allow_script_hash
from rewrite.css import rewrite_css
from rewrite.headers import rewrite_refresh
from rewrite.inject import CONTEXT_SCRIPT_ID, context_script_hash, place_context_script
from rewrite.js import rewrite_js
from rewrite.result import Rewrite, RewriteResult, Skipped
from rewrite.urls import to_public_url

__all__ = ["URL_ATTRIBUTES", "rewrite_html"]

# Attributes whose value is one URL (HTML Standard, "Attributes" index, plus the obsolete ones browsers
# still fetch: background, longdesc, lowsrc). `data` counts only on <object>.
URL_ATTRIBUTES = frozenset(
    {
        "href",
        "src",
        "action",
        "formaction",
        "poster",
        "data",
        "cite",
        "background",
        "manifest",
        "longdesc",
        "lowsrc",
        "xlink:href",
    }
)
_HOT_ATTRIBUTES = ("href", "src", "action", "formaction", "poster", "xlink:href")
_COLD_ATTRIBUTES = ("data", "cite", "background", "manifest", "longdesc", "lowsrc", "ping")
_JS_TYPES = frozenset(
    {
        "",
        "text/javascript",
        "application/javascript",
        "module",
        "text/ecmascript",
        "application/ecmascript",
        "application/x-javascript",
        "text/jsx",
        "text/babel",
    }
)
# Social and tile metadata that names an absolute URL in `content` (Open Graph, Twitter cards, Windows).
_META_URL_NAMES = frozenset(
    {
        "og:url",
        "og:image",
        "og:image:url",
        "og:image:secure_url",
        "og:video",
        "og:video:url",
        "og:audio",
        "twitter:image",
        "twitter:url",
        "msapplication-tileimage",
        "msapplication-config",
    }
)
# A document (rather than a fragment such as an htmx partial) names one of these; fragments are
# serialised without the <html><head><body> the parser adds, and get no context script.
_DOCUMENT_MARKER = regex.compile(r"<(?:!doctype|html|head|body)[\s>/]", regex.IGNORECASE)
_WS = " \t\n\r\f"


def rewrite_html(document: str, config: RewriteConfig) -> RewriteResult:
    """Point every URL of an HTML document at the public origin and place the tunnel context script.

    With `config.strategy == "base"` only a `<base href>` for the prefix (and the context script) is
    added. Inline `<style>`, `style=""` and `<script>` go through the CSS and JavaScript rewriters.

    Args:
        document: Decoded HTML text, a whole page or a fragment.
        config: Origins and switches for this response.

    Returns:
        The rewritten text (the very same string when nothing changed), what changed, and what was
        left alone.
    """
    tree = LexborHTMLParser(document)
    is_document = _DOCUMENT_MARKER.search(document) is not None
    rewrites: list[Rewrite] = []
    skipped: list[Skipped] = []
    if config.strategy == "base":
        _ensure_base(tree, config, rewrites)
    elif config.strategy == "full":
        for node in tree.css(_selector(config)):
            _rewrite_element(node, config, rewrites, skipped)
    injected = False
    if config.inject_context and is_document and config.strategy != "none":
        injected = place_context_script(tree, config)
        if injected:
            rewrites.append(Rewrite("html context script", "", f"<script id={CONTEXT_SCRIPT_ID}>"))
            _allow_in_meta_csp(tree, config, rewrites)
    if not rewrites:
        return RewriteResult(document, skipped=tuple(skipped))
    if is_document:
        text = tree.html or ""
    else:
        text = "".join(node.inner_html or "" for node in (tree.head, tree.body) if node is not None)
    return RewriteResult(text, tuple(rewrites), tuple(skipped))


@lru_cache(maxsize=256)
def _selector(config: RewriteConfig) -> str:
    """The elements that may need a change: URL attributes that can map, plus every kind of inline code."""
    starts: list[str] = ["//", " "]
    if config.prefix:
        starts.append("/")
    for origin in (*sorted(config.upstream_origins), config.public_origin):
        starts.append(origin)
        scheme, _, rest = origin.partition("://")
        starts.append(("ws" if scheme == "http" else "wss") + "://" + rest)
    parts = [
        f'[{name.replace(":", chr(92) + ":")}^="{start}" i]' for name in _HOT_ATTRIBUTES for start in starts
    ]
    parts += [f"[{name}]" for name in _COLD_ATTRIBUTES]
    parts += [
        "[srcset]",
        "[imagesrcset]",
        '[style*="url(" i]',
        '[style*="image-set(" i]',
        "style",
        "script",
        "meta[http-equiv]",
        "meta[property][content]",
        "meta[name][content]",
    ]
    return ",".join(parts)


def _rewrite_element(
    node: LexborNode, config: RewriteConfig, rewrites: list[Rewrite], skipped: list[Skipped]
) -> None:
    tag = node.tag or ""
    for name, value in node.attributes.items():
        if not value:
            continue
        if name in URL_ATTRIBUTES:
            if name == "data" and tag != "object":
                continue
            new = to_public_url(value, config)
        elif name in ("srcset", "imagesrcset"):
            new = _rewrite_srcset(value, config)
        elif name == "ping":
            new = _rewrite_url_list(value, config)
        elif name == "style":
            result = rewrite_css(value, config)
            skipped.extend(result.skipped)
            new = result.text if result.changed else None
        else:
            continue
        if new is not None:
            node.attrs[name] = new
            rewrites.append(Rewrite(f"{tag}[{name}]", value, new))
    if tag == "script":
        _rewrite_script(node, config, rewrites, skipped)
    elif tag == "style":
        _replace_text(node, rewrite_css(node.text(deep=True), config), "style", rewrites, skipped)
    elif tag == "meta":
        _rewrite_meta(node, config, rewrites)


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
    rewrites.extend(Rewrite(f"{where} {r.where}", r.before, r.after) for r in result.rewrites)


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

    def remap(mapping: object) -> object:
        if not isinstance(mapping, dict):
            return mapping
        out: dict[str, object] = {}
        for key, value in mapping.items():
            new_key = to_public_url(key, config) or key
            if isinstance(value, str):
                new_value = to_public_url(value, config)
                if new_value is not None:
                    found.append(Rewrite("importmap", value, new_value))
                    value = new_value
            if new_key != key:
                found.append(Rewrite("importmap key", key, new_key))
            out[new_key] = value
        return out

    if "imports" in import_map:
        import_map["imports"] = remap(import_map["imports"])
    scopes = import_map.get("scopes")
    if isinstance(scopes, dict):
        import_map["scopes"] = {
            (to_public_url(scope, config) or scope): remap(inner) for scope, inner in scopes.items()
        }
        found.extend(
            Rewrite("importmap scope", s, to_public_url(s, config) or s)
            for s in scopes
            if to_public_url(s, config) is not None
        )
    if not found:
        return
    text = json.dumps(import_map, indent=2 if "\n" in source.strip() else None, ensure_ascii=False)
    # "</script" inside the JSON would end the element early; JSON lets "/" be written as "\/".
    text = text.replace("</", "<\\/")
    _replace_text(node, RewriteResult(text, tuple(found)), "script[type=importmap]", rewrites, skipped)


def _rewrite_meta(node: LexborNode, config: RewriteConfig, rewrites: list[Rewrite]) -> None:
    attrs = node.attributes
    content = attrs.get("content")
    if not content:
        return
    if (attrs.get("http-equiv") or "").strip().lower() == "refresh":
        new = rewrite_refresh(content, config)
    elif (attrs.get("property") or attrs.get("name") or "").strip().lower() in _META_URL_NAMES:
        new = to_public_url(content, config)
    else:
        return
    if new is not None:
        node.attrs["content"] = new
        rewrites.append(Rewrite("meta[content]", content, new))


def _rewrite_srcset(value: str, config: RewriteConfig) -> str | None:
    """Map each image candidate's URL (HTML Standard, "parse a srcset attribute")."""
    pieces: list[str] = []
    done = position = 0
    length = len(value)
    while position < length:
        while position < length and value[position] in _WS + ",":
            position += 1
        start = position
        while position < length and value[position] not in _WS:
            position += 1
        url = value[start:position].rstrip(",")
        if len(url) == position - start:  # no trailing comma: descriptors follow, up to a top-level comma
            depth = 0
            while position < length:
                char = value[position]
                if char == "(":
                    depth += 1
                elif char == ")" and depth:
                    depth -= 1
                elif char == "," and not depth:
                    break
                position += 1
        mapped = to_public_url(url, config) if url else None
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
    if head is None:
        return
    element = LexborHTMLParser(f'<base href="{config.prefix}/">').css_first("base")
    if element is None:
        return
    if head.child is not None:
        head.child.insert_before(element)
    else:
        head.insert_child(element)
    rewrites.append(Rewrite("base[href]", "", f"{config.prefix}/"))


def _allow_in_meta_csp(tree: LexborHTMLParser, config: RewriteConfig, rewrites: list[Rewrite]) -> None:
    """Admit the context script under a policy delivered in `<meta http-equiv=Content-Security-Policy>`."""
    for meta in tree.css("meta[http-equiv]"):
        attrs = meta.attributes
        if (attrs.get("http-equiv") or "").strip().lower() != "content-security-policy":
            continue
        policy = attrs.get("content") or ""
        new = allow_script_hash(policy, context_script_hash(config))
        if new is not None:
            meta.attrs["content"] = new
            rewrites.append(Rewrite("meta[content] csp", policy, new))
