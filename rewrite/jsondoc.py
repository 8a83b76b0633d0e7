"""Point the URLs of OpenAPI documents and web app manifests at the tunnel; leave other JSON alone. Pure.

OpenAPI 3.x gets a `servers` entry for the prefix when it has none, and its relative or local server URLs
prefixed; Swagger 2.0 gets `basePath` and `host`; a web app manifest gets `start_url`, `scope` and its
icon, shortcut and handler URLs. What a URL becomes is decided by `rewrite.urls.to_public_url`.

Formatting: an addition alone is spliced in as text right after the opening `{`, so the rest of the
document stays byte-identical. When existing values change, the document is re-serialised with its key
order, its indentation and separators as detected, and every number spelt exactly as in the original.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rewrite.config import RewriteConfig
from rewrite.result import Rewrite, RewriteResult, Skipped
from rewrite.urls import to_public_url

__all__ = ["rewrite_json"]

# Documents that mention none of these keys cannot be rewritten, so they are not even parsed: most
# JSON through a proxy is API data, and parsing it would only cost time.
_HINTS = ('"openapi"', '"swagger"', '"start_url"', '"scope"', '"icons"')
_MANIFEST_TYPES = frozenset({"application/manifest+json"})
# https://spec.openapis.org/oas/v3.1.0#path-item-object: the fields of a Path Item that are Operations.
_OPERATIONS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# JSON's insignificant whitespace (RFC 8259, section 2).
_JSON_SPACE = " \t\n\r"


@dataclass(slots=True)
class _Edits:
    """What rewriting one document found to do."""

    additions: list[tuple[str, Any]] = field(default_factory=list)  # new top-level members, in order
    modified: bool = False  # an existing value changed, so the document must be re-serialised
    rewrites: list[Rewrite] = field(default_factory=list)


class _RefusedError(Exception):
    """The document cannot be rewritten safely; the message says why."""


def rewrite_json(text: str, config: RewriteConfig, *, media_type: str = "application/json") -> RewriteResult:
    """Rewrite the URLs of an OpenAPI document or a web app manifest so that they stay inside the tunnel.

    Args:
        text: The decoded JSON document.
        config: Origins and prefix for this response.
        media_type: The response's media type, without parameters; `application/manifest+json` marks a
            manifest even when its members would not.

    Returns:
        The rewritten text, what changed, and what was left alone. Any other JSON, and any document that
        needs no change, comes back as `text` itself. Malformed or unsafe documents come back unchanged
        with the reason in `skipped`.
    """
    is_manifest_type = media_type.partition(";")[0].strip().lower() in _MANIFEST_TYPES
    if not is_manifest_type and not any(hint in text for hint in _HINTS):
        return RewriteResult(text)
    try:
        return _rewrite(text, config, is_manifest_type=is_manifest_type)
    except _RefusedError as exc:
        return RewriteResult(text, skipped=(Skipped(reason=str(exc), where="json"),))


def _rewrite(text: str, config: RewriteConfig, *, is_manifest_type: bool) -> RewriteResult:
    """Parse, decide what the document is, collect edits and write them back; raises _RefusedError."""
    # A byte order mark is not JSON (json.loads refuses it) but survives the round trip untouched.
    bom = "\ufeff" if text.startswith("\ufeff") else ""
    body = text[len(bom) :]
    marker = _number_marker(body)
    duplicates: list[bool] = []
    doc = _parse(body, marker, duplicates)
    if not isinstance(doc, dict):
        raise _RefusedError("top-level JSON value is not an object")
    edits = _Edits()
    if _is_openapi3(doc):
        _edit_openapi3(doc, config, edits)
    elif doc.get("swagger") == "2.0":
        _edit_swagger2(doc, config, edits)
    elif is_manifest_type or _looks_like_manifest(doc):
        _edit_manifest(doc, config, edits)
    else:
        return RewriteResult(text)
    if not edits.rewrites:
        return RewriteResult(text)
    if duplicates:
        raise _RefusedError("duplicate keys in an object; which one a client uses is unclear")
    if _has_lone_surrogates(body, doc):
        raise _RefusedError("a string holds a lone surrogate, which UTF-8 cannot encode")
    if edits.modified:
        new_body = _serialise(body, doc, edits.additions, marker)
    else:
        new_body = _splice(body, edits.additions)
    return RewriteResult(bom + new_body, tuple(edits.rewrites))


def _number_marker(body: str) -> str:
    """A control character whose JSON escape does not occur in `body`, to tag numbers while parsing.

    Numbers are parsed as tagged strings ("\\x01" + "1.50" + "\\x01") rather than floats, so that
    re-serialising writes back exactly the digits of the original: no "1.50" -> "1.5", no precision lost
    in "0.10000000000000001", no "1e400" -> "Infinity". A raw control character cannot occur in a JSON
    string and its escape is not in the text, so a tag can only come from a number.
    """
    for code in range(1, 32):
        escape = f"\\u{code:04x}"
        if escape not in body and escape.upper().replace("\\U", "\\u") not in body:
            return chr(code)
    raise _RefusedError("every control-character escape occurs in the document; numbers cannot be kept exact")


def _parse(body: str, marker: str, duplicates: list[bool]) -> Any:
    """json.loads with numbers tagged by `marker` and duplicate keys noted in `duplicates`."""

    def tag(token: str) -> str:
        return marker + token + marker

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) != len(pairs):
            duplicates.append(True)
        return obj

    try:
        return json.loads(
            body, object_pairs_hook=pairs_hook, parse_float=tag, parse_int=tag, parse_constant=tag
        )
    except json.JSONDecodeError as exc:
        raise _RefusedError(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except RecursionError as exc:
        raise _RefusedError("JSON nested too deeply") from exc


def _is_openapi3(doc: dict[str, Any]) -> bool:
    version = doc.get("openapi")
    return isinstance(version, str) and version.startswith("3.")


def _looks_like_manifest(doc: dict[str, Any]) -> bool:
    """The members https://www.w3.org/TR/appmanifest/ defines and other JSON rarely has at the top."""
    return "start_url" in doc or "scope" in doc or ("icons" in doc and ("name" in doc or "short_name" in doc))


def _edit_openapi3(doc: dict[str, Any], config: RewriteConfig, edits: _Edits) -> None:
    """OpenAPI 3.x: https://spec.openapis.org/oas/v3.1.0#server-object.

    A missing or empty `servers` means `[{"url": "/"}]`, resolved against the document's own URL, which
    in path mode is the gateway's root: the prefix must be written out. In host mode "/" already is the
    tunnel's root, so nothing is added and the document stays byte-identical.
    """
    servers = doc.get("servers")
    if config.prefix and (servers is None or servers == []):
        added = [{"url": config.prefix}]
        if servers is None:
            edits.additions.append(("servers", added))
        else:
            doc["servers"] = added
            edits.modified = True
        edits.rewrites.append(Rewrite(where="openapi servers (added)", before="", after=config.prefix))
    else:
        _edit_servers(servers, "openapi servers", config, edits)
    paths = doc.get("paths")
    if not isinstance(paths, dict):
        return
    for path, item in paths.items():
        if not isinstance(item, dict):
            continue
        _edit_servers(item.get("servers"), f"openapi paths[{path}].servers", config, edits)
        for method in _OPERATIONS:
            operation = item.get(method)
            if isinstance(operation, dict):
                where = f"openapi paths[{path}].{method}.servers"
                _edit_servers(operation.get("servers"), where, config, edits)


def _edit_servers(servers: Any, where: str, config: RewriteConfig, edits: _Edits) -> None:
    """Map the `url` of each Server Object in a `servers` array; other servers stay as they are."""
    if not isinstance(servers, list):
        return
    for index, server in enumerate(servers):
        if isinstance(server, dict):
            _edit_member(server, "url", f"{where}[{index}].url", _map_base, config, edits)


def _edit_swagger2(doc: dict[str, Any], config: RewriteConfig, edits: _Edits) -> None:
    """Swagger 2.0: https://swagger.io/specification/v2/#swagger-object.

    `basePath` carries the prefix (added when absent, in path mode); a `host` that names the upstream
    becomes the public host, and `schemes`, when given, the public scheme. An absent `host` means the
    host that served the document, which is already the right one.
    """
    base_path = doc.get("basePath")
    if base_path is None:
        if config.prefix:
            edits.additions.append(("basePath", config.prefix))
            edits.rewrites.append(Rewrite(where="swagger basePath (added)", before="", after=config.prefix))
    else:
        _edit_member(doc, "basePath", "swagger basePath", _map_base, config, edits)
    host = doc.get("host")
    if not isinstance(host, str) or not host:
        return
    schemes = doc.get("schemes")
    declared = [s for s in schemes if s in ("http", "https")] if isinstance(schemes, list) else []
    for scheme in declared or ["http", "https"]:
        mapped = to_public_url(f"{scheme}://{host}/", config)
        if mapped is None:
            continue
        public_scheme, _, rest = mapped.partition("://")
        public_host = rest.partition("/")[0]
        if public_host != host:  # the public origin already names the right host: leave schemes be
            doc["host"] = public_host
            edits.modified = True
            edits.rewrites.append(Rewrite(where="swagger host", before=host, after=public_host))
            if isinstance(schemes, list) and schemes != [public_scheme]:
                doc["schemes"] = [public_scheme]
                edits.rewrites.append(
                    Rewrite(where="swagger schemes", before=",".join(map(str, schemes)), after=public_scheme)
                )
        return


def _edit_manifest(doc: dict[str, Any], config: RewriteConfig, edits: _Edits) -> None:
    """Web app manifest: https://www.w3.org/TR/appmanifest/ and its incubations' URL members."""
    for key in ("start_url", "scope"):
        _edit_member(doc, key, f"manifest {key}", to_public_url, config, edits)
    identity = doc.get("id")
    # `id` is an identity, not a link: only an absolute path is resolved against the origin and needs
    # the prefix to stay consistent with `start_url`; relative ids already resolve inside the tunnel.
    if isinstance(identity, str) and identity.startswith("/") and not identity.startswith("//"):
        _edit_member(doc, "id", "manifest id", to_public_url, config, edits)
    for key in ("icons", "screenshots"):
        for index, image in _objects(doc.get(key)):
            _edit_member(image, "src", f"manifest {key}[{index}].src", to_public_url, config, edits)
    for index, shortcut in _objects(doc.get("shortcuts")):
        _edit_member(shortcut, "url", f"manifest shortcuts[{index}].url", to_public_url, config, edits)
        for icon_index, icon in _objects(shortcut.get("icons")):
            where = f"manifest shortcuts[{index}].icons[{icon_index}].src"
            _edit_member(icon, "src", where, to_public_url, config, edits)
    for index, handler in _objects(doc.get("protocol_handlers")):
        _edit_member(handler, "url", f"manifest protocol_handlers[{index}].url", to_public_url, config, edits)
    for index, handler in _objects(doc.get("file_handlers")):
        where = f"manifest file_handlers[{index}].action"
        _edit_member(handler, "action", where, to_public_url, config, edits)
    share_target = doc.get("share_target")
    if isinstance(share_target, dict):
        _edit_member(share_target, "action", "manifest share_target.action", to_public_url, config, edits)


def _objects(value: Any) -> list[tuple[int, dict[str, Any]]]:
    """The objects of a JSON array with their indexes; anything else holds none."""
    if not isinstance(value, list):
        return []
    return [(index, item) for index, item in enumerate(value) if isinstance(item, dict)]


def _edit_member(
    obj: dict[str, Any],
    key: str,
    where: str,
    mapper: Callable[[str, RewriteConfig], str | None],
    config: RewriteConfig,
    edits: _Edits,
) -> None:
    """Replace `obj[key]` by its mapping when it is a string that the mapper changes."""
    before = obj.get(key)
    if not isinstance(before, str):
        return
    after = mapper(before, config)
    if after is None or after == before:
        return
    obj[key] = after
    edits.modified = True
    edits.rewrites.append(Rewrite(where=where, before=before, after=after))


def _map_base(url: str, config: RewriteConfig) -> str | None:
    """Map a base URL (a server URL or `basePath`) to which clients append paths that start with "/".

    "/" becomes "/abc123" rather than "/abc123/", and "http://127.0.0.1:3000" becomes
    "https://gw.example.com/abc123": a trailing slash there would give "/abc123//pets".
    """
    if url in ("", "/"):
        return config.prefix or None
    mapped = to_public_url(url, config)
    if mapped is not None and mapped.endswith("/") and _is_bare_origin(url):
        mapped = mapped[:-1]
    return mapped


def _is_bare_origin(url: str) -> bool:
    """True for "http://host:port" and "//host" with nothing after the authority."""
    scheme, sep, rest = url.partition("//")
    if not sep or (scheme and not scheme.endswith(":")):
        return False
    return not any(stop in rest for stop in "/?#\\")


def _has_lone_surrogates(body: str, doc: Any) -> bool:
    """True when the text, or a string it escapes, holds a surrogate that is not half of a pair."""
    if not body.isascii():
        try:
            body.encode("utf-8")
        except UnicodeEncodeError:
            return True
    if "\\ud" not in body and "\\uD" not in body:
        return False  # no surrogate escapes at all, the common case
    try:
        # The parser joins valid escaped pairs into one character; what is left cannot be encoded.
        json.dumps(doc, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


@dataclass(frozen=True, slots=True)
class _Style:
    """How the original document was written, so that a rewritten one looks the same."""

    indent: str | None  # None: all on one line
    item_separator: str
    key_separator: str
    first_gap: str  # the whitespace between the opening "{" and the first key


def _detect_style(body: str) -> _Style:
    """Read indentation and separators off the opening brace and the first member."""
    brace = len(body) - len(body.lstrip(_JSON_SPACE))
    key_start = brace + 1
    while key_start < len(body) and body[key_start] in _JSON_SPACE:
        key_start += 1
    first_gap = body[brace + 1 : key_start]
    key_separator = ": " if "\n" in body else ":"
    if body[key_start : key_start + 1] == '"':
        _, key_end = json.decoder.scanstring(body, key_start + 1)  # type: ignore[attr-defined]
        colon = key_end
        while colon < len(body) and body[colon] in _JSON_SPACE:
            colon += 1
        after = colon + 1
        while after < len(body) and body[after] in _JSON_SPACE:
            after += 1
        if "\n" not in body[key_end:after]:
            key_separator = body[key_end:after]
    if "\n" in first_gap:
        return _Style(first_gap.rpartition("\n")[2], ",", key_separator, first_gap)
    item_separator = "," if key_separator == ":" else ", "
    return _Style(None, item_separator, key_separator, first_gap)


def _splice(body: str, additions: list[tuple[str, Any]]) -> str:
    """Insert new members right after the opening "{", leaving every other byte as it was."""
    style = _detect_style(body)
    brace = len(body) - len(body.lstrip(_JSON_SPACE))
    rest = body[brace + 1 + len(style.first_gap) :]
    members = []
    for key, value in additions:
        rendered = json.dumps(
            value,
            ensure_ascii=False,
            indent=style.indent,
            separators=(style.item_separator, style.key_separator),
        )
        if style.indent is not None:
            rendered = rendered.replace("\n", "\n" + style.indent)  # one level deeper than the document
        members.append(json.dumps(key) + style.key_separator + rendered)
    joiner = style.item_separator + (style.first_gap if style.indent is not None else "")
    spliced = joiner.join(members)
    if not rest.startswith("}"):  # not an empty object: the old first member follows
        spliced += style.item_separator
    return body[: brace + 1] + style.first_gap + spliced + style.first_gap + rest


def _serialise(body: str, doc: dict[str, Any], additions: list[tuple[str, Any]], marker: str) -> str:
    """Write the changed document back in the original's style, numbers spelt as they were."""
    style = _detect_style(body)
    if additions:
        doc = dict(additions) | doc  # new members first, as _splice places them
    try:
        text = json.dumps(
            doc,
            # An all-ASCII original keeps its \\u escapes; otherwise characters are written as they are.
            ensure_ascii=body.isascii(),
            indent=style.indent,
            separators=(style.item_separator, style.key_separator),
        )
    except RecursionError as exc:  # pragma: no cover - the parser's limit is the tighter one today
        raise _RefusedError("JSON nested too deeply") from exc
    escape = f"\\u{ord(marker):04x}"
    # A tagged number reads '"' + escape + digits + escape + '"'; untag it back to the bare digits.
    text = text.replace('"' + escape, "").replace(escape + '"', "")
    leading = body[: len(body) - len(body.lstrip(_JSON_SPACE))]
    trailing = body[len(body.rstrip(_JSON_SPACE)) :]
    return leading + text + trailing
