"""Tests for rewrite/charset.py: decoding that encodes back to exactly the same bytes."""

from __future__ import annotations

import codecs

import pytest

from rewrite.charset import declared_charset, decode_text, encode_text


def test_declared_charset_parsing() -> None:
    """The charset parameter is found in any case and quoting."""
    assert declared_charset('text/html; Charset="ISO-8859-1"') == "iso-8859-1"
    assert declared_charset("text/html") is None
    assert declared_charset(None) is None


@pytest.mark.parametrize(
    ("body", "content_type", "media", "codec"),
    [
        ("café".encode(), "text/html; charset=utf-8", "html", "utf-8"),
        ("café".encode("latin-1"), "text/html; charset=iso-8859-1", "html", "latin-1"),
        (b'<meta charset="windows-1252"><p>caf\xe9 \x81</p>', "text/html", "html", "latin-1"),
        (b'@charset "iso-8859-1"; a{content:"\xe9"}', "text/css", "css", "latin-1"),
        (codecs.BOM_UTF8 + "é".encode(), "text/html; charset=latin-1", "html", "utf-8"),
        ("日本".encode("shift_jis"), "text/html; charset=shift_jis", "html", "shift_jis"),
        (b"caf\xe9 without a declaration", None, "js", "latin-1"),
    ],
)
def test_round_trip_is_exact(body: bytes, content_type: str | None, media: str, codec: str) -> None:
    """Whatever the declaration, encoding the decoded text gives the original bytes."""
    decoded = decode_text(body, content_type, media)
    assert not isinstance(decoded, str), decoded
    text, used, _ = decoded
    assert used == codec
    assert encode_text(text, used, html=media == "html") == body


def test_invalid_bytes_for_declared_charset_are_refused() -> None:
    """Bytes that are not valid in the declared charset are reported, never replaced."""
    assert "not valid utf-8" in str(decode_text(b"caf\xe9", "text/html; charset=utf-8", "html"))
    assert "unknown charset" in str(decode_text(b"x", "text/css; charset=klingon", "css"))


def test_html_characters_outside_the_charset_become_references() -> None:
    """A character the page's charset cannot hold is written as a character reference in HTML only."""
    assert encode_text("€", "latin-1", html=True) == b"&#8364;"
    assert "does not fit" in str(encode_text("€", "latin-1", html=False))
