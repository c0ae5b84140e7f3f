"""Fetch an http(s) image a chat message points at, so it can go to Gemini as ``inlineData``.

Gemini cannot be handed an arbitrary web URL (``fileData`` takes Google-hosted URIs only), so the gateway
downloads the image itself, which makes it a client-controlled HTTP fetcher inside the operator's
network. ``ag_image_fetch`` says how far it may reach:

- ``public`` (default): only globally reachable addresses (``addresses.refusal``). The check runs on the
  address actually connected to: host names go through ``PublicOnlyResolver``, which the connector
  uses for the connection itself, so a name that resolves to a public address when checked and to
  127.0.0.1 a moment later (DNS rebinding) cannot slip through; IP literals, which aiohttp does not
  resolve, are checked before the request. Redirects are followed by hand, each hop checked the same way.
- ``off``: no URL is fetched (``data:`` URLs still work);
- ``any``: everything, for tests and trusted networks.

Every download is http/https only, at most ``MAX_REDIRECTS`` hops, within one total time-out,
``Accept-Encoding: identity`` (no decompression bomb), a ``Content-Type`` of ``image/*``, streamed with
a byte cap (the ``Content-Length`` is checked first, then the bytes actually read). Whatever goes
wrong, the client gets the same 400 with the same message (``uniform_error``), so the gateway cannot be
used to map which internal addresses and ports exist; the reason goes to the gateway's log.
The session for these downloads is separate from the upstream one and made on the first image URL:
requests without one pay nothing.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from ..errors import InvalidRequest
from ..settings import ImageFetchMode
from ..translate.parts import InlineImage
from . import addresses

logger = logging.getLogger(__name__)

MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024
Refusal = Callable[[addresses.IPAddress], str | None]


class FetchFailed(Exception):
    """Why a download failed: for the operator's log only, never shown to the client."""


class RefusedAddress(OSError):
    """Raised by the resolver, so aiohttp reports it as a connection failure (never connects)."""


class PublicOnlyResolver(AbstractResolver):
    """Resolves with ``inner`` and keeps only the addresses ``refusal`` accepts.

    The connector connects to exactly what this returns, so the check and the connection use the same IP.
    """

    def __init__(self, inner: AbstractResolver, refusal: Refusal = addresses.refusal) -> None:
        self.inner = inner
        self.refusal = refusal

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self.inner.resolve(host, port, family)
        allowed: list[tuple[ResolveResult, str | None]] = []
        refused: list[tuple[ResolveResult, str | None]] = []
        for result in results:
            address = addresses.parse_address(result["host"])
            why = "not an IP address" if address is None else self.refusal(address)
            (refused if why else allowed).append((result, why))
        if not allowed:
            reasons = "; ".join(f"{r['host']}: {why}" for r, why in refused) or "no address"
            raise RefusedAddress(f"{host} resolves only to refused addresses ({reasons})")
        return [result for result, _ in allowed]

    async def close(self) -> None:
        await self.inner.close()


class ImageFetcher:
    """Downloads images under one ``ag_image_fetch`` mode; owns its own session (``close()`` it)."""

    def __init__(self, mode: ImageFetchMode, *, max_bytes: int, timeout: float,
                 refusal: Refusal = addresses.refusal,
                 resolver_factory: Callable[[], AbstractResolver] = aiohttp.ThreadedResolver) -> None:
        self.mode = mode
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.refusal = refusal
        self._resolver_factory = resolver_factory
        self._session: aiohttp.ClientSession | None = None

    async def fetch(self, url: str, *, param: str | None = None) -> InlineImage:
        shown = redact_url(url)
        if urlsplit(url).scheme.lower() not in ("http", "https"):
            raise InvalidRequest(f"Could not fetch the image at {shown}: only http and https URLs can be "
                                 "fetched.", param=param)
        if self.mode == "off":
            raise InvalidRequest(
                f"Could not fetch the image at {shown}: this gateway does not fetch image URLs "
                "(ag_image_fetch=off); send the image inline as a data: URL.", param=param)
        try:
            async with asyncio.timeout(self.timeout):
                mime_type, data = await self._download(url)
        except (FetchFailed, aiohttp.ClientError, ValueError, OSError, TimeoutError) as exc:
            logger.info("image fetch failed for %s (%s): %s", shown, param or "-", _reason(exc, self.timeout))
            raise uniform_error(shown, self.max_bytes, param) from None
        return InlineImage(mime_type, base64.b64encode(data).decode("ascii"))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _session_for_fetch(self) -> aiohttp.ClientSession:
        if self._session is None:
            resolver = self._resolver_factory()
            if self.mode == "public":
                resolver = PublicOnlyResolver(resolver, self.refusal)
            # No cookie jar, no proxy from the environment, no automatic decompression (the cap counts
            # the bytes on the wire, which are the bytes Gemini gets).
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=64, resolver=resolver, ttl_dns_cache=10),
                cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False, trust_env=False)
        return self._session

    async def _download(self, url: str) -> tuple[str, bytes]:
        session = self._session_for_fetch()
        target = URL(url, encoded=False)
        for _ in range(MAX_REDIRECTS + 1):
            self._check_hop(target)
            async with session.get(target, allow_redirects=False, headers={"accept-encoding": "identity",
                                                                             "accept": "image/*"}) as resp:
                if resp.status in REDIRECT_STATUSES:
                    target = self._next_hop(target, resp)
                    continue
                return self._read_check(resp), await self._read_capped(resp)
        raise FetchFailed(f"more than {MAX_REDIRECTS} redirects")

    def _check_hop(self, target: URL) -> None:
        if target.scheme not in ("http", "https") or not target.host:
            raise FetchFailed(f"redirected to a {target.scheme or 'relative'} URL")
        if self.mode != "public":
            return
        address = addresses.parse_address(target.host)  # aiohttp connects to literals without resolving
        why = self.refusal(address) if address is not None else None
        if why:
            raise FetchFailed(f"refused address {address}: {why}")

    @staticmethod
    def _next_hop(current: URL, resp: aiohttp.ClientResponse) -> URL:
        location = resp.headers.get("location")
        if not location:
            raise FetchFailed(f"HTTP {resp.status} without a Location")
        return current.join(URL(location))

    def _read_check(self, resp: aiohttp.ClientResponse) -> str:
        if resp.status != 200:
            raise FetchFailed(f"the server answered HTTP {resp.status}")
        mime_type = resp.content_type.lower()
        if not mime_type.startswith("image/"):
            raise FetchFailed(f"Content-Type {mime_type!r} is not an image")
        encoding = resp.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise FetchFailed(f"Content-Encoding {encoding!r} (identity was asked for)")
        if resp.content_length is not None and resp.content_length > self.max_bytes:
            raise FetchFailed(f"{resp.content_length} bytes, over the limit of {self.max_bytes}")
        return mime_type

    async def _read_capped(self, resp: aiohttp.ClientResponse) -> bytes:
        data = bytearray()
        async for piece in resp.content.iter_chunked(_CHUNK):
            data += piece
            if len(data) > self.max_bytes:
                raise FetchFailed(f"over the limit of {self.max_bytes} bytes")
        if not data:
            raise FetchFailed("an empty body")
        return bytes(data)


def uniform_error(shown: str, max_bytes: int, param: str | None) -> InvalidRequest:
    """The one answer for every failed download: it says what the gateway accepts, never what it found."""
    return InvalidRequest(
        f"Could not fetch the image at {shown}. The gateway fetches only publicly reachable http(s) URLs "
        f"that answer with an image/* body of at most {max_bytes} bytes in time; send the image inline as "
        "a data: URL otherwise.", param=param)


def _reason(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no complete answer within {timeout:g} s"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"could not connect: {exc.os_error}"
    return str(exc) or type(exc).__name__


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
    host = f"[{host}]" if ":" in host else host
    suffix = " (query omitted)" if parts.query else ""
    return f"{parts.scheme}://{host}{port}{parts.path}{suffix}"

