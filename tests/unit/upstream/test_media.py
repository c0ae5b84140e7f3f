"""fetch_image against a real aiohttp server on 127.0.0.1: success, and each failure a 400 naming the URL."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from antigravity_gw.errors import InvalidRequest
from antigravity_gw.translate.parts import InlineImage
from antigravity_gw.upstream.media import fetch_image, redact_url

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
PARAM = "messages[0].content[1].image_url"


async def png(_: web.Request) -> web.Response:
    return web.Response(body=PNG, content_type="image/png")


async def png_chunked_without_length(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "image/png"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    for i in range(0, len(PNG), 100):
        await resp.write(PNG[i : i + 100])
    await resp.write_eof()
    return resp


async def html(_: web.Request) -> web.Response:
    return web.Response(text="<html></html>", content_type="text/html")


async def missing(_: web.Request) -> web.Response:
    return web.Response(status=404, text="nope")


async def slow(_: web.Request) -> web.Response:
    await asyncio.sleep(5)
    return web.Response(body=PNG, content_type="image/png")


async def empty(_: web.Request) -> web.Response:
    return web.Response(body=b"", content_type="image/gif")


async def redirect(_: web.Request) -> web.Response:
    raise web.HTTPFound("/img.png")


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    app = web.Application()
    app.router.add_get("/img.png", png)
    app.router.add_get("/chunked.png", png_chunked_without_length)
    app.router.add_get("/page.html", html)
    app.router.add_get("/gone.png", missing)
    app.router.add_get("/slow.png", slow)
    app.router.add_get("/empty.gif", empty)
    app.router.add_get("/moved", redirect)
    async with TestServer(app, host="127.0.0.1") as srv:
        yield srv


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def url(server: TestServer, path: str) -> str:
    return str(server.make_url(path))


@pytest.mark.parametrize("path", ["/img.png", "/chunked.png", "/moved"])
async def test_fetches_an_image_as_base64(
    server: TestServer, session: aiohttp.ClientSession, path: str
) -> None:
    image = await fetch_image(session, url(server, path), max_bytes=10_000, timeout=5)
    assert image == InlineImage("image/png", base64.b64encode(PNG).decode())


async def test_query_secrets_never_reach_the_error(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(InvalidRequest) as info:
        await fetch_image(
            session,
            url(server, "/gone.png") + "?X-Amz-Signature=s3cr3t",
            max_bytes=10_000,
            timeout=5,
            param=PARAM,
        )
    err = info.value
    assert err.param == PARAM and err.status == 400
    assert err.message == (
        f"Could not fetch the image at http://127.0.0.1:{server.port}/gone.png (query omitted): "
        "the server answered HTTP 404."
    )
    assert "s3cr3t" not in err.message


@pytest.mark.parametrize(
    ("path", "max_bytes", "timeout", "reason"),
    [
        ("/page.html", 10_000, 5, "the server sent Content-Type 'text/html', not an image"),
        ("/img.png", 100, 5, f"the image is {len(PNG)} bytes, over the limit of 100"),
        ("/chunked.png", 100, 5, "the image is over the limit of 100 bytes"),
        ("/empty.gif", 100, 5, "the server sent an empty body"),
        ("/slow.png", 10_000, 0.2, "no complete answer within 0.2 s"),
    ],
)
async def test_failures_are_400_with_the_reason(
    server: TestServer, session: aiohttp.ClientSession, path: str, max_bytes: int, timeout: float, reason: str
) -> None:
    with pytest.raises(InvalidRequest) as info:
        await fetch_image(session, url(server, path), max_bytes=max_bytes, timeout=timeout, param=PARAM)
    assert (
        info.value.message == f"Could not fetch the image at http://127.0.0.1:{server.port}{path}: {reason}."
    )
    assert info.value.param == PARAM


async def test_connection_refused_is_a_400(session: aiohttp.ClientSession) -> None:
    async with TestServer(web.Application(), host="127.0.0.1") as srv:
        dead = url(srv, "/x.png")
    with pytest.raises(
        InvalidRequest,
        match=r"^Could not fetch the image at http://127\.0\.0\.1:\d+/x\.png: could not connect",
    ):
        await fetch_image(session, dead, max_bytes=100, timeout=5)


@pytest.mark.parametrize(
    ("bad_url", "shown"),
    [
        ("ftp://files.example/a.png", "ftp://files.example/a.png"),
        ("file:///etc/passwd", "'file:///etc/passwd'"),
    ],
)
async def test_only_http_and_https_are_fetched(
    session: aiohttp.ClientSession, bad_url: str, shown: str
) -> None:
    with pytest.raises(InvalidRequest) as info:
        await fetch_image(session, bad_url, max_bytes=100, timeout=1, param=PARAM)
    assert (
        info.value.message
        == f"Could not fetch the image at {shown}: only http and https URLs can be fetched."
    )


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (
            "https://user:pass@host.example:8443/a/b.png?token=1#frag",
            "https://host.example:8443/a/b.png (query omitted)",
        ),
        ("http://host.example/a.png", "http://host.example/a.png"),
        ("http://[::1", "<an invalid URL>"),
    ],
)
def test_redact_url(raw: str, shown: str) -> None:
    assert redact_url(raw) == shown
