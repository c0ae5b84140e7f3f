"""A request body sent with ``Content-Encoding``, decoded with ``ag_body_limit`` enforced while decoding.

mitmproxy decodes a body whole and without any cap the moment anything reads ``request.content``: a
few hundred bytes of brotli can become gigabytes. Here every decoder is driven incrementally with an
output limit, so at most ``limit + 1`` decoded bytes ever exist, whatever the compression ratio.

* Over the limit → 413 (the same ``ag_body_limit`` as for a plain body, counted on decoded bytes).
* Corrupt or truncated data, or data after the end of the compressed stream → 400.
* A coding the gateway does not know → 415 with ``Accept-Encoding`` naming the ones it does (RFC 9110
  §15.5.16 and §12.5.3): the body is fine, its packaging is not, and the header tells the client what
  to send instead.

Stacked codings (``Content-Encoding: gzip, br``) are undone last-applied first, each stage capped.
zstd frames may ask for at most an 8 MiB window, the limit RFC 9659 sets for zstd in HTTP, so a frame
cannot make the decoder allocate more than that either.
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Callable

import brotli

from .. import errors

if sys.version_info >= (3, 14):  # pragma: no cover - the standard library's, as mitmproxy picks it
    from compression import zstd
else:
    from backports import zstd

SUPPORTED = ("gzip", "deflate", "br", "zstd")
ACCEPT_ENCODING = {"accept-encoding": ", ".join(SUPPORTED)}
MAX_STACKED_CODINGS = 4
ZSTD_WINDOW_LOG_MAX = 23  # 8 MiB (RFC 9659 §3)
_GZIP_WBITS = 16 + zlib.MAX_WBITS
_ALIASES = {"x-gzip": "gzip"}
_IDENTITY = frozenset({"", "identity"})


class _Corrupt(Exception):
    """The data is not valid in its coding; the message says how (for the client's 400)."""


def codings(header: str | None) -> list[str]:
    """The codings a ``Content-Encoding`` header lists, in the order they were applied (identity dropped)."""
    if not header:
        return []
    named = (part.strip().lower() for part in header.split(","))
    return [_ALIASES.get(c, c) for c in named if c not in _IDENTITY]


def decode_body(raw: bytes, content_encoding: str | None, limit: int) -> bytes:
    """``raw`` with every coding of ``content_encoding`` undone; errors as described in the module doc."""
    applied = codings(content_encoding)
    unknown = [c for c in applied if c not in _DECODERS]
    if unknown:
        raise errors.UnsupportedMediaType(
            f"Content-Encoding {unknown[0]!r} is not supported: send the body uncompressed or encoded with "
            f"one of {', '.join(SUPPORTED)}.", headers=ACCEPT_ENCODING)
    if len(applied) > MAX_STACKED_CODINGS:
        raise errors.InvalidRequest(
            f"The request body has {len(applied)} content codings stacked; at most {MAX_STACKED_CODINGS} "
            "are accepted.")
    body = raw
    for coding in reversed(applied):
        try:
            body = _DECODERS[coding](body, limit)
        except _Corrupt as exc:
            raise errors.InvalidRequest(
                f"The request body could not be decoded as {coding} (Content-Encoding): {exc}. Send it "
                "uncompressed, or check how the client compresses it.") from None
        if len(body) > limit:
            raise errors.PayloadTooLarge(
                f"The request body decodes ({coding}) to more than {limit} bytes, over this gateway's limit "
                f"of {limit} bytes (ag_body_limit, counted after decompression). Send less, or raise "
                "ag_body_limit.")
    return body


# --- decoders: each returns at most limit + 1 bytes (more means "over the limit") ----------------------


def _gunzip(data: bytes, limit: int) -> bytes:
    """gzip, including several members one after another (RFC 1952 §2.2)."""
    out = bytearray()
    while True:
        piece, data = _inflate_one(data, limit + 1 - len(out), _GZIP_WBITS, "gzip")
        out += piece
        if len(out) > limit or not data:
            return bytes(out)


def _inflate(data: bytes, limit: int) -> bytes:
    """``deflate`` is zlib-wrapped (RFC 9110 §8.4.1.2), but some clients send raw deflate: accept both,
    as mitmproxy and browsers do."""
    wbits = zlib.MAX_WBITS if _has_zlib_header(data) else -zlib.MAX_WBITS
    out, rest = _inflate_one(data, limit + 1, wbits, "deflate")
    if rest:
        raise _Corrupt("unexpected data after the end of the compressed stream")
    return out


def _has_zlib_header(data: bytes) -> bool:
    """RFC 1950 §2.2: method 8 (deflate) and a header checksum; raw deflate rarely passes both."""
    return len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0


def _inflate_one(data: bytes, budget: int, wbits: int, name: str) -> tuple[bytes, bytes]:
    """One zlib/gzip stream, at most ``budget`` bytes of it, and the data that followed its end."""
    decoder = zlib.decompressobj(wbits)
    try:
        out = decoder.decompress(data, budget)
    except zlib.error as exc:
        raise _Corrupt(_zlib_reason(exc)) from None
    if len(out) >= budget:
        return out, b""
    if not decoder.eof:
        raise _Corrupt(f"the {name} data ends before its end marker (truncated)")
    return out, decoder.unused_data


def _zlib_reason(exc: zlib.error) -> str:
    text = str(exc)
    return text.split(": ", 1)[1] if ": " in text else text


def _unbrotli(data: bytes, limit: int) -> bytes:
    decoder = brotli.Decompressor()
    out = bytearray()
    try:
        out += decoder.process(data, output_buffer_limit=limit + 1)
        while len(out) <= limit and not decoder.can_accept_more_data():  # output still pending
            out += decoder.process(b"", output_buffer_limit=limit + 1 - len(out))
    except brotli.error:
        raise _Corrupt("the brotli data is invalid") from None
    if len(out) <= limit and not decoder.is_finished():
        raise _Corrupt("the brotli data ends before its end marker (truncated)")
    return bytes(out)


def _unzstd(data: bytes, limit: int) -> bytes:
    """zstd, including several frames one after another (RFC 8878 §3)."""
    out = bytearray()
    # typed as the decompressor takes it (Mapping[int, int]: its key type is invariant)
    options: dict[int, int] = {zstd.DecompressionParameter.window_log_max: ZSTD_WINDOW_LOG_MAX}
    while True:
        decoder = zstd.ZstdDecompressor(options=options)
        try:
            out += decoder.decompress(data, limit + 1 - len(out))
        except zstd.ZstdError as exc:
            raise _Corrupt(f"the zstd data is invalid ({exc})") from None
        if len(out) > limit:
            return bytes(out)
        if not decoder.eof:
            raise _Corrupt("the zstd data ends before its end marker (truncated)")
        data = decoder.unused_data
        if not data:
            return bytes(out)


_DECODERS: dict[str, Callable[[bytes, int], bytes]] = {
    "gzip": _gunzip, "deflate": _inflate, "br": _unbrotli, "zstd": _unzstd,
}
