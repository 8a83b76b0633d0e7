"""Which charset a body is in, and decoding it so that encoding it again gives the same bytes. Pure.

Order, after the WHATWG Encoding Standard and HTML's "determining the character encoding": a byte order
mark, then the Content-Type charset, then (HTML) a `<meta>` in the first 1024 bytes or (CSS) `@charset`,
then UTF-8 if the bytes are valid UTF-8, else windows-1252's superset latin-1.
"""

from __future__ import annotations

import codecs

import regex

__all__ = ["declared_charset", "decode_text", "encode_text"]

_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
_META_CHARSET = regex.compile(
    rb"""<meta\b[^>]*?                      # a meta tag, up to ...
        charset\s*=\s*["']?+                 # ... charset=, quoted or not
        (?P<charset>[a-zA-Z0-9_.:-]++)       # the label""",
    regex.IGNORECASE | regex.VERBOSE,
)
_CSS_CHARSET = regex.compile(rb'^@charset "(?P<charset>[a-zA-Z0-9_.:-]++)";')
# Single-byte labels that browsers all read as windows-1252. Python's latin-1 maps every byte to one code
# point and back, so bytes that windows-1252 leaves undefined (0x81, 0x8D, ...) still survive a round trip.
_LATIN = frozenset(
    {
        "iso-8859-1",
        "iso8859-1",
        "latin1",
        "latin-1",
        "l1",
        "us-ascii",
        "ascii",
        "windows-1252",
        "cp1252",
        "x-cp1252",
        "iso_8859-1",
        "cp819",
        "ibm819",
        "iso-ir-100",
        "csisolatin1",
    }
)


def declared_charset(content_type: str | None) -> str | None:
    """The `charset` parameter of a Content-Type value, lower-cased, or None."""
    if not content_type:
        return None
    for param in content_type.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip("\"'").lower() or None
    return None


def decode_text(body: bytes, content_type: str | None, media: str) -> tuple[str, str, bool] | str:
    """Decode `body` strictly.

    Args:
        body: The decoded-content bytes of a text response.
        content_type: The Content-Type header value.
        media: "html", "css", "js" or "json": where to look for an in-document declaration.

    Returns:
        `(text, codec, declared)`: the text, the Python codec that encodes it back to exactly `body`, and
        whether the charset came from the Content-Type header; or a string saying why it cannot be decoded.
    """
    for bom, codec in _BOMS:
        if body.startswith(bom):
            return _strict(body, codec, declared=False)
    label = declared_charset(content_type)
    declared = label is not None
    if label is None and media == "html":
        found = _META_CHARSET.search(body[:1024])
        label = found.group("charset").decode("ascii").lower() if found else None
    elif label is None and media == "css":
        found = _CSS_CHARSET.match(body)
        label = found.group("charset").decode("ascii").lower() if found else None
    if label is not None:
        known = _codec_for(label)
        if known is None:
            return f"unknown charset {label!r}"
        return _strict(body, known, declared=declared)
    try:
        return body.decode("utf-8"), "utf-8", False
    except UnicodeDecodeError:
        return body.decode("latin-1"), "latin-1", False


def encode_text(text: str, codec: str, *, html: bool) -> bytes | str:
    """Encode `text` back; HTML may turn what the charset cannot hold into character references.

    Returns:
        The bytes, or a string saying why they cannot be produced.
    """
    try:
        return text.encode(codec, errors="xmlcharrefreplace" if html else "strict")
    except UnicodeEncodeError as exc:
        return f"rewritten text does not fit {codec}: {exc.reason}"


def _codec_for(label: str) -> str | None:
    if label in _LATIN:
        return "latin-1"
    if label in ("utf8", "unicode-1-1-utf-8", "x-unicode20utf8"):
        return "utf-8"
    try:
        return codecs.lookup(label).name
    except LookupError:
        return None


def _strict(body: bytes, codec: str, *, declared: bool) -> tuple[str, str, bool] | str:
    try:
        return body.decode(codec), codec, declared
    except UnicodeDecodeError as exc:
        return f"bytes at {exc.start} are not valid {codec}"
