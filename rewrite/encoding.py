"""Content-Encoding: decode a body (gzip, deflate, br, zstd) under a size cap, and encode it again. Pure.

Decoders stop as soon as the output passes the cap, so a decompression bomb costs at most the cap in
memory. A truncated or corrupt stream is reported, never half-decoded.
"""

from __future__ import annotations

import gzip
import io
import zlib

import brotli
import zstandard

__all__ = ["DecodeError", "decode_content", "encode_content", "parse_codings"]

_CHUNK = 64 * 1024
_SUPPORTED = frozenset({"gzip", "x-gzip", "deflate", "br", "zstd", "identity"})


class DecodeError(Exception):
    """A body could not be decoded; the message says why (caught inside `rewrite/`, never raised out)."""


def parse_codings(content_encoding: str | None) -> list[str] | None:
    """The codings of a Content-Encoding header in the order they were applied, or None if one is unknown."""
    if not content_encoding:
        return []
    codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip()]
    if any(c not in _SUPPORTED for c in codings):
        return None
    return [c for c in codings if c != "identity"]


def decode_content(body: bytes, codings: list[str], limit: int) -> bytes:
    """Undo `codings` (as applied, first to last) without producing more than `limit` bytes.

    Raises:
        DecodeError: A stream is truncated or corrupt, or the decoded body would exceed `limit`.
    """
    for coding in reversed(codings):
        if coding in ("gzip", "x-gzip"):
            body = _inflate(body, zlib.MAX_WBITS | 16, limit, coding, members=True)
        elif coding == "deflate":
            # RFC 9110 says zlib-wrapped; some servers send raw deflate, which browsers also accept.
            wbits = zlib.MAX_WBITS if _is_zlib_header(body) else -zlib.MAX_WBITS
            body = _inflate(body, wbits, limit, coding, members=False)
        elif coding == "br":
            body = _unbrotli(body, limit)
        elif coding == "zstd":
            body = _unzstd(body, limit)
    return body


def encode_content(body: bytes, codings: list[str]) -> bytes:
    """Apply `codings` in order, at levels that favour speed: this runs on every rewritten response."""
    for coding in codings:
        if coding in ("gzip", "x-gzip"):
            body = gzip.compress(body, compresslevel=6, mtime=0)
        elif coding == "deflate":
            body = zlib.compress(body, 6)
        elif coding == "br":
            body = brotli.compress(body, quality=5)
        elif coding == "zstd":
            body = zstandard.ZstdCompressor(level=3).compress(body)
    return body


def _is_zlib_header(data: bytes) -> bool:
    """RFC 1950 section 2.2: method 8 (deflate), window at most 32 KB, and a header checksum."""
    return len(data) >= 2 and data[0] & 0x0F == 8 and data[0] >> 4 <= 7 and (data[0] << 8 | data[1]) % 31 == 0


def _inflate(data: bytes, wbits: int, limit: int, coding: str, *, members: bool) -> bytes:
    out = bytearray()
    while True:
        inflater = zlib.decompressobj(wbits)
        try:
            out += inflater.decompress(data, limit + 1 - len(out))
            while inflater.unconsumed_tail and len(out) <= limit:
                out += inflater.decompress(inflater.unconsumed_tail, limit + 1 - len(out))
        except zlib.error as exc:
            raise DecodeError(f"corrupt {coding} stream: {exc}") from exc
        if len(out) > limit:
            raise DecodeError(f"decoded body exceeds the {limit}-byte limit")
        if not inflater.eof:
            raise DecodeError(f"truncated {coding} stream")
        data = inflater.unused_data
        # Gzip allows several members back to back (RFC 1952 section 2.2); anything else trailing is junk.
        if not data or not members or data.strip(b"\x00") == b"":
            return bytes(out)


def _unbrotli(data: bytes, limit: int) -> bytes:
    decompressor = brotli.Decompressor()
    out = bytearray()
    try:
        out += decompressor.process(data, output_buffer_limit=_CHUNK)
        while not decompressor.can_accept_more_data() and len(out) <= limit:
            out += decompressor.process(b"", output_buffer_limit=_CHUNK)
    except brotli.error as exc:
        raise DecodeError(f"corrupt br stream: {exc}") from exc
    if len(out) > limit:
        raise DecodeError(f"decoded body exceeds the {limit}-byte limit")
    if not decompressor.is_finished():
        raise DecodeError("truncated br stream")
    return bytes(out)


def _unzstd(data: bytes, limit: int) -> bytes:
    try:
        # The stream reader bounds the output; a decompressobj then tells a whole frame from a cut one.
        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True) as reader:
            out = reader.read(limit + 1)
        if len(out) > limit:
            raise DecodeError(f"decoded body exceeds the {limit}-byte limit")
        checker = zstandard.ZstdDecompressor().decompressobj()
        checker.decompress(data)
    except zstandard.ZstdError as exc:
        raise DecodeError(f"corrupt zstd stream: {exc}") from exc
    if not checker.eof:
        raise DecodeError("truncated zstd stream")
    return out
