"""Fill in the tunnel context script and place it first in an HTML document's `<head>`. Pure, no I/O.

The script itself is the package resource `rewrite/resources/context.js`, read once when this module is
imported; this module only fills in the tunnel's values (as JSON made safe for a `<script>` element) and
places the result.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from importlib import resources

from selectolax.lexbor import LexborHTMLParser, LexborNode

from rewrite.config import RewriteConfig
from rewrite.result import Rewrite, RewriteResult

__all__ = [
    "CONTEXT_SCRIPT_ID",
    "context_script",
    "context_script_hash",
    "inject_tunnel_context",
    "place_context_script",
]

CONTEXT_SCRIPT_ID = "__tunnel_context__"
"""The `id` of the injected `<script>`; a document that holds one already is left alone."""

_PLACEHOLDER = "__TUNNEL_CONTEXT_CONFIG__"


def _load_template(source: str) -> str:
    """The script template from the resource's source: checked, and without its whole-line comments.

    The filled-in script becomes the raw text of a `<script>` element and the input of a CSP hash, so the
    source must hold the placeholder once, be pure ASCII (the hash then holds in any ASCII-compatible page
    charset), use LF line ends (the HTML parser turns CR LF into LF before hashing) and hold nothing that
    ends or alters a script element (HTML Standard, "restrictions for contents of script elements").

    Raises:
        ValueError: The source breaks one of these rules; a broken resource fails at import, not in a page.
    """
    if (
        source.count(_PLACEHOLDER) != 1
        or not source.isascii()
        or "\r" in source
        or "</script" in source.lower()
        or "<!--" in source
    ):
        raise ValueError(
            "context.js must be ASCII with LF line ends, hold the placeholder once, and no </script"
        )
    # Every HTML response carries the script, so the comments (a quarter of the source) stay home.
    lines = [line for line in source.splitlines() if not line.lstrip().startswith("//")]
    return "\n".join(lines) + "\n"


_TEMPLATE = _load_template(
    resources.files("rewrite").joinpath("resources/context.js").read_text(encoding="utf-8")
)

# Characters that could end or alter a <script> element, or a JavaScript string before ES2019, written as
# JSON escapes. json.dumps(ensure_ascii=True) already escapes U+2028 and U+2029; the table stays explicit.
_SCRIPT_SAFE = str.maketrans(
    {
        "<": "\\u003c",
        ">": "\\u003e",
        "&": "\\u0026",
        "\u2028": "\\u2028",
        "\u2029": "\\u2029",
    }
)
_SCRIPT_TAG = f'<script id="{CONTEXT_SCRIPT_ID}">'
_EXISTING = f'script[id="{CONTEXT_SCRIPT_ID}"]'


def _script_json(value: object) -> str:
    """JSON text that stays inert inside a `<script>` element: no `<`, `>`, `&` or line separators."""
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"), sort_keys=True).translate(_SCRIPT_SAFE)


@functools.lru_cache(maxsize=256)
def context_script(config: RewriteConfig) -> str:
    """Return the tunnel context script for one tunnel, ready to be the text of a `<script>` element.

    Args:
        config: The tunnel's prefix, origins and id.

    Returns:
        The script text: pure ASCII, the same for equal configs (the CSP hash depends on that).
    """
    values = {
        "tunnelId": config.tunnel_id,
        "basePath": config.prefix,
        "publicOrigin": config.public_origin,
        "upstreamOrigins": sorted(config.upstream_origins),
    }
    return _TEMPLATE.replace(_PLACEHOLDER, _script_json(values))


@functools.lru_cache(maxsize=256)
def context_script_hash(config: RewriteConfig) -> str:
    """Return the CSP hash source of the context script, for a page's `script-src` directive.

    Args:
        config: The tunnel's prefix, origins and id.

    Returns:
        `"sha256-<base64>"` of the script text's UTF-8 bytes (CSP Level 3, hash-source); the policy
        writes it in single quotes.
    """
    digest = hashlib.sha256(context_script(config).encode("utf-8")).digest()
    return "sha256-" + base64.b64encode(digest).decode("ascii")


def place_context_script(tree: LexborHTMLParser, config: RewriteConfig) -> bool:
    """Insert the context script into a parsed document, first in `<head>`.

    It goes after the `<meta charset>` and `<meta http-equiv="content-type">` elements that come before
    the head's first script, so that the charset declaration stays within the first 1024 bytes (HTML
    Standard, "prescan a byte stream") and no page script runs before the context script. A `<head>` is
    created when the tree has none.

    Args:
        tree: The document, parsed by selectolax's Lexbor backend; changed in place.
        config: The tunnel's prefix, origins and id.

    Returns:
        True when the script was inserted; False when the document already holds one (nothing changes)
        or has no root element to hold a head.
    """
    if tree.css_first(_EXISTING) is not None:
        return False
    head = _find_or_create_head(tree)
    if head is None:
        return False
    script = tree.create_node("script")
    script.attrs["id"] = CONTEXT_SCRIPT_ID
    # Text inserted into a <script> is serialised raw, not escaped (HTML Standard, "serializing HTML
    # fragments"), so what the browser runs and hashes is exactly context_script(config).
    script.insert_child(context_script(config))
    anchor = _last_charset_meta(head)
    if anchor is not None:
        anchor.insert_after(script, move=True)
    elif head.first_child is not None:
        head.first_child.insert_before(script, move=True)
    else:
        head.insert_child(script, move=True)
    return True


def inject_tunnel_context(html: str, config: RewriteConfig) -> RewriteResult:
    """Parse an HTML document and put the tunnel context script first in its `<head>`.

    Args:
        html: The decoded document.
        config: The tunnel's prefix, origins and id. Callers check `config.inject_context` themselves.

    Returns:
        The serialised document with one `Rewrite` entry, or `html` itself (the same object) when the
        document already holds the script.
    """
    tree = LexborHTMLParser(html)
    if not place_context_script(tree, config):
        return RewriteResult(html)
    return RewriteResult(tree.html or "", rewrites=(Rewrite("html <head>", "", _SCRIPT_TAG),))


def _find_or_create_head(tree: LexborHTMLParser) -> LexborNode | None:
    """The document's `<head>`, created as the root's first child when it is missing."""
    # tree.head is the pointer lexbor set while parsing; a head removed and re-added is only found by CSS.
    head = tree.head or tree.css_first("head")
    if head is not None:
        return head
    root = tree.root
    if root is None:
        return None
    head = tree.create_node("head")
    if root.first_child is not None:
        root.first_child.insert_before(head, move=True)
    else:
        root.insert_child(head, move=True)
    return tree.css_first("head")


def _last_charset_meta(head: LexborNode) -> LexborNode | None:
    """The last charset-declaring `<meta>` among the head's children before its first `<script>`."""
    found = None
    for child in head.iter():
        tag = child.tag
        if tag == "script":
            break
        if tag != "meta":
            continue
        attrs = child.attributes
        http_equiv = (attrs.get("http-equiv") or "").strip().lower()
        if "charset" in attrs or http_equiv == "content-type":
            found = child
    return found
