"""Fetch an http(s) image a chat message points at, so it can go to Gemini as ``inlineData``.

Gemini cannot be handed an arbitrary web URL (``fileData`` takes Google-hosted URIs only), so the gateway
downloads the image itself: http/https only, streamed with a byte limit (the ``Content-Length`` is checked
first, then the bytes actually read), a total time-out, and a ``Content-Type`` that must be ``image/*``.
Every failure is the client's problem to fix (a bad URL, a dead link, not an image), so it is an
``InvalidRequest`` (400) whose message names the URL without its query string or credentials, which
often carry signatures or tokens.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from urllib.parse import urlsplit

import aiohttp

from ..errors import InvalidRequest
from ..translate.parts import InlineImage

_CHUNK = 64 * 1024


async def fetch_image(
    session: aiohttp.ClientSession, url: str, *, max_bytes: int, timeout: float, param: str | None = None
) -> InlineImage:
    shown = redact_url(url)

    def fail(reason: str) -> InvalidRequest:
        return InvalidRequest(f"Could not fetch the image at {shown}: {reason}.", param=param)

    if urlsplit(url).scheme.lower() not in ("http", "https"):
        raise fail("only http and https URLs can be fetched")
    try:
        async with asyncio.timeout(timeout):
            mime_type, data = await _download(session, url, max_bytes=max_bytes, fail=fail)
    except TimeoutError:
        raise fail(f"no complete answer within {timeout:g} s") from None
    except aiohttp.ClientError as exc:
        raise fail(_client_error_reason(exc)) from None
    except ValueError:  # yarl rejects some URLs before any request is made
        raise fail("the URL is not valid") from None
    return InlineImage(mime_type, base64.b64encode(data).decode("ascii"))


async def _download(
    session: aiohttp.ClientSession, url: str, *, max_bytes: int, fail: Callable[[str], InvalidRequest]
) -> tuple[str, bytes]:
    async with session.get(url, allow_redirects=True) as resp:
        if resp.status != 200:
            raise fail(f"the server answered HTTP {resp.status}")
        mime_type = resp.content_type.lower()
        if not mime_type.startswith("image/"):
            raise fail(f"the server sent Content-Type {mime_type!r}, not an image")
        if resp.content_length is not None and resp.content_length > max_bytes:
            raise fail(f"the image is {resp.content_length} bytes, over the limit of {max_bytes}")
        data = bytearray()
        async for piece in resp.content.iter_chunked(_CHUNK):
            data += piece
            if len(data) > max_bytes:
                raise fail(f"the image is over the limit of {max_bytes} bytes")
        if not data:
            raise fail("the server sent an empty body")
        return mime_type, bytes(data)


def redact_url(url: str) -> str:
    """``scheme://host[:port]/path``: no user info, query or fragment (they may hold secrets)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<an invalid URL>"
    if not parts.scheme or not host:
        return repr(url.split("?", 1)[0].split("#", 1)[0][:100])
    suffix = " (query omitted)" if parts.query else ""
    return f"{parts.scheme}://{host}{port}{parts.path}{suffix}"


def _client_error_reason(exc: aiohttp.ClientError) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"could not connect ({exc.os_error.strerror or type(exc.os_error).__name__})"
    if isinstance(exc, aiohttp.TooManyRedirects):
        return "too many redirects"
    if isinstance(exc, aiohttp.InvalidURL):
        return "the URL is not valid"
    return f"the download failed ({type(exc).__name__})"
