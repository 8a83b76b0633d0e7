"""Tests for rewrite/encoding.py: every coding round-trips; broken or oversized streams are refused."""

from __future__ import annotations

import gzip
import zlib

import brotli
import pytest
import zstandard

from rewrite.encoding import DecodeError, decode_content, encode_content, parse_codings

BODY = b"<html>" + b"hello, tunnel! " * 5000 + b"</html>"


@pytest.mark.parametrize("coding", ["gzip", "x-gzip", "deflate", "br", "zstd"])
def test_round_trip(coding: str) -> None:
    """What we encode we decode, byte for byte."""
    assert decode_content(encode_content(BODY, [coding]), [coding], 10**7) == BODY


def test_foreign_encoders_decode() -> None:
    """Streams made by the reference libraries decode, including raw deflate and multi-member gzip."""
    assert decode_content(gzip.compress(BODY) + gzip.compress(b"tail"), ["gzip"], 10**7) == BODY + b"tail"
    raw = zlib.compressobj(wbits=-15)
    assert decode_content(raw.compress(BODY) + raw.flush(), ["deflate"], 10**7) == BODY
    assert decode_content(brotli.compress(BODY), ["br"], 10**7) == BODY
    assert decode_content(zstandard.ZstdCompressor().compress(BODY), ["zstd"], 10**7) == BODY


def test_stacked_codings_undone_in_reverse() -> None:
    """`Content-Encoding: gzip, br` means gzip first, then br; decoding undoes br first."""
    stacked = brotli.compress(gzip.compress(BODY))
    assert decode_content(stacked, ["gzip", "br"], 10**7) == BODY
    assert decode_content(encode_content(BODY, ["gzip", "br"]), ["gzip", "br"], 10**7) == BODY


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd"])
def test_truncated_stream_refused(coding: str) -> None:
    """A stream cut short is an error, never a half body."""
    whole = encode_content(BODY, [coding])
    with pytest.raises(DecodeError, match=r"truncated|corrupt"):
        decode_content(whole[: len(whole) // 2], [coding], 10**7)


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd"])
def test_corrupt_stream_refused(coding: str) -> None:
    """Garbage is an error that names the coding."""
    with pytest.raises(DecodeError, match=coding):
        decode_content(b"\x00\xffnot compressed at all" * 3, [coding], 10**7)


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd"])
def test_decompression_bomb_capped(coding: str) -> None:
    """A small stream that inflates past the cap is refused without inflating it all."""
    bomb = encode_content(b"\x00" * (20 * 1024 * 1024), [coding])
    assert len(bomb) < 200 * 1024
    with pytest.raises(DecodeError, match="exceeds"):
        decode_content(bomb, [coding], 1024 * 1024)


def test_parse_codings() -> None:
    """Known codings are listed in order; identity is dropped; an unknown one makes the list None."""
    assert parse_codings(None) == []
    assert parse_codings("GZIP, identity, br") == ["gzip", "br"]
    assert parse_codings("gzip, dcb") is None
