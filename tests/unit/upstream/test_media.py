"""ImageFetcher against real aiohttp servers on loopback: success, the public-only rules (IP literals,
resolved names, DNS rebinding, redirect hops), and one uniform 400 for every failure."""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.test_utils import TestServer

from antigravity_gw.errors import InvalidRequest
from antigravity_gw.translate.parts import InlineImage
from antigravity_gw.upstream import addresses
from antigravity_gw.upstream.media import ImageFetcher, redact_url, uniform_error

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
PARAM = "messages[0].content[1].image_url"
FAKE_PUBLIC = "127.0.0.2"  # stands for a public address in these tests: nothing may leave the machine


def pretend_public(address: addresses.IPAddress) -> str | None:
    return None if str(address) == FAKE_PUBLIC else addresses.refusal(address)


class Hits:
    def __init__(self) -> None:
        self.paths: list[str] = []


def image_app(hits: Hits, *, redirect_to: str = "/img.png") -> web.Application:
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        hits.paths.append(request.path)
        return await handler(request)

    async def png(_: web.Request) -> web.Response:
        return web.Response(body=PNG, content_type="image/png")

    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "image/png"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(0, len(PNG), 100):
            await resp.write(PNG[i : i + 100])
        await resp.write_eof()
        return resp

    async def gzipped(_: web.Request) -> web.Response:
        return web.Response(body=b"\x1f\x8b", content_type="image/png", headers={"content-encoding": "gzip"})

    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(body=PNG, content_type="image/png")

    async def loop(_: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def moved(_: web.Request) -> web.Response:
        raise web.HTTPFound(redirect_to)

    app = web.Application(middlewares=[web.middleware(record)])
    app.router.add_get("/img.png", png)
    app.router.add_get("/chunked.png", chunked)
    app.router.add_get("/page.html", lambda _: web.Response(text="<html></html>", content_type="text/html"))
    app.router.add_get("/gone.png", lambda _: web.Response(status=404, text="nope"))
    app.router.add_get("/empty.gif", lambda _: web.Response(body=b"", content_type="image/gif"))
    app.router.add_get("/gzip.png", gzipped)
    app.router.add_get("/slow.png", slow)
    app.router.add_get("/loop", loop)
    app.router.add_get("/moved", moved)
    return app


@pytest.fixture
async def hits() -> Hits:
    return Hits()


@pytest.fixture
async def server(hits: Hits) -> AsyncIterator[TestServer]:
    async with TestServer(image_app(hits), host="127.0.0.1") as srv:
        yield srv


@pytest.fixture
async def fetchers() -> AsyncIterator[Callable[..., ImageFetcher]]:
    made: list[ImageFetcher] = []

    def make(mode: str = "any", max_bytes: int = 10_000, timeout: float = 5, **kwargs: Any) -> ImageFetcher:
        made.append(ImageFetcher(mode, max_bytes=max_bytes, timeout=timeout, **kwargs))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for f in made:
        await f.close()


def url(server: TestServer, path: str) -> str:
    return str(server.make_url(path))


def uniform(shown: str, max_bytes: int = 10_000) -> str:
    return uniform_error(shown, max_bytes, PARAM).message


@pytest.mark.parametrize("path", ["/img.png", "/chunked.png", "/moved"])
async def test_fetches_an_image_as_base64_when_any_address_is_allowed(server, fetchers, path) -> None:
    image = await fetchers("any").fetch(url(server, path))
    assert image == InlineImage("image/png", base64.b64encode(PNG).decode())


@pytest.mark.parametrize(
    ("path", "max_bytes", "timeout", "reason"),
    [
        ("/gone.png", 10_000, 5, "the server answered HTTP 404"),
        ("/page.html", 10_000, 5, "Content-Type 'text/html' is not an image"),
        ("/img.png", 100, 5, f"{len(PNG)} bytes, over the limit of 100"),
        ("/chunked.png", 100, 5, "over the limit of 100 bytes"),
        ("/empty.gif", 100, 5, "an empty body"),
        ("/gzip.png", 100, 5, "Content-Encoding 'gzip'"),
        ("/slow.png", 10_000, 0.2, "no complete answer within 0.2 s"),
        ("/loop", 10_000, 5, "more than 5 redirects"),
    ],
)
async def test_every_failure_is_the_same_400_and_the_reason_is_logged(
    server, fetchers, caplog, path, max_bytes, timeout, reason
) -> None:
    caplog.set_level(logging.INFO, "antigravity_gw.upstream.media")
    with pytest.raises(InvalidRequest) as info:
        await fetchers("any", max_bytes, timeout).fetch(url(server, path) + "?sig=s3cr3t", param=PARAM)
    shown = f"http://127.0.0.1:{server.port}{path} (query omitted)"
    assert (info.value.status, info.value.param) == (400, PARAM)
    assert info.value.message == uniform(shown, max_bytes)
    assert reason in caplog.text and "s3cr3t" not in caplog.text + info.value.message


async def test_connection_refused_is_the_same_400(fetchers) -> None:
    async with TestServer(web.Application(), host="127.0.0.1") as srv:
        dead = url(srv, "/x.png")
    with pytest.raises(InvalidRequest) as info:
        await fetchers("any").fetch(dead, param=PARAM)
    assert info.value.message == uniform(dead)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]", "0.0.0.0", "127.1",
                                  "0x7f.0.0.1", "2130706433"])
async def test_public_mode_refuses_loopback_in_every_spelling(server, hits, fetchers, caplog, host) -> None:
    caplog.set_level(logging.INFO, "antigravity_gw.upstream.media")
    target = f"http://{host}:{server.port}/img.png"
    assert (await fetchers("any").fetch(f"http://127.0.0.1:{server.port}/img.png")).mime_type == "image/png"
    hits.paths.clear()
    with pytest.raises(InvalidRequest) as info:
        await fetchers("public").fetch(target, param=PARAM)
    assert info.value.message == uniform(redact_url(target))
    assert hits.paths == []  # never connected
    assert "refused" in caplog.text or "not a canonical IPv4" in caplog.text


@pytest.mark.parametrize("literal", ["169.254.169.254", "10.0.0.1", "100.64.0.1", "[fd00::1]", "[fe80::1]",
                                     "[::ffff:169.254.169.254]", "[2002:7f00:1::]", "[64:ff9b::7f00:1]",
                                     "224.0.0.1", "[::]"])
async def test_public_mode_refuses_internal_literals_before_connecting(fetchers, caplog, literal) -> None:
    caplog.set_level(logging.INFO, "antigravity_gw.upstream.media")
    target = f"http://{literal}/latest/meta-data/"
    with pytest.raises(InvalidRequest) as info:
        await fetchers("public", timeout=1).fetch(target, param=PARAM)
    assert info.value.message == uniform(redact_url(target))
    assert "refused address" in caplog.text


async def test_off_mode_fetches_nothing(server, hits, fetchers) -> None:
    with pytest.raises(InvalidRequest, match=r"ag_image_fetch=off.*data: URL"):
        await fetchers("off").fetch(url(server, "/img.png"), param=PARAM)
    assert hits.paths == []


@pytest.mark.parametrize(("bad_url", "shown"), [("ftp://files.example/a.png", "ftp://files.example/a.png"),
                                                 ("file:///etc/passwd", "'file:///etc/passwd'")])
async def test_only_http_and_https_are_fetched(fetchers, bad_url, shown) -> None:
    with pytest.raises(InvalidRequest) as info:
        await fetchers("public").fetch(bad_url, param=PARAM)
    assert info.value.message == (f"Could not fetch the image at {shown}: only http and https URLs can be "
                                  "fetched.")


# ---- a "public" host next to an internal one on the same port ---------------------------------------------
def same_port_pair() -> tuple[socket.socket, socket.socket]:
    """Sockets on 127.0.0.2 (standing for a public host) and 127.0.0.1 (internal), same port."""
    for _ in range(20):
        public = socket.socket()
        public.bind((FAKE_PUBLIC, 0))
        internal = socket.socket()
        try:
            internal.bind(("127.0.0.1", public.getsockname()[1]))
        except OSError:
            public.close()
            internal.close()
            continue
        return public, internal
    pytest.skip("no free port on both loopback addresses")


class ScriptedResolver(AbstractResolver):
    """Answers with the next address list of a script each time: a DNS server that rebinds."""

    def __init__(self, script: list[list[str]]) -> None:
        self.script = script
        self.calls = 0

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        found = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        return [{"hostname": host, "host": address, "port": port, "family": socket.AF_INET, "proto": 0,
                 "flags": 0} for address in found]

    async def close(self) -> None:
        pass


@pytest.fixture
async def two_hosts() -> AsyncIterator[tuple[int, Hits, Hits]]:
    """A "public" server on 127.0.0.2 that redirects to the internal one, which is on 127.0.0.1."""
    public_sock, internal_sock = same_port_pair()
    port = public_sock.getsockname()[1]
    public_hits, internal_hits = Hits(), Hits()
    public_app = image_app(public_hits, redirect_to=f"http://127.0.0.1:{port}/img.png")
    runners = []
    for app, sock in ((public_app, public_sock), (image_app(internal_hits), internal_sock)):
        runner = web.AppRunner(app)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        runners.append(runner)
    yield port, public_hits, internal_hits
    for runner in runners:
        await runner.cleanup()


async def test_a_redirect_hop_to_an_internal_address_is_refused(two_hosts, fetchers) -> None:
    port, public_hits, internal_hits = two_hosts
    fetcher = fetchers("public", refusal=pretend_public)
    assert (await fetcher.fetch(f"http://{FAKE_PUBLIC}:{port}/img.png")).mime_type == "image/png"
    with pytest.raises(InvalidRequest):
        await fetcher.fetch(f"http://{FAKE_PUBLIC}:{port}/moved", param=PARAM)
    assert public_hits.paths == ["/img.png", "/moved"]
    assert internal_hits.paths == []


async def test_dns_rebinding_connects_only_to_the_checked_address(two_hosts, fetchers) -> None:
    """First answer public, second internal: each fetch connects to what its own resolution allowed."""
    port, public_hits, internal_hits = two_hosts
    resolver = ScriptedResolver([[FAKE_PUBLIC], ["127.0.0.1"]])
    target = f"http://rebind.test:{port}/img.png"
    first = fetchers("public", refusal=pretend_public, resolver_factory=lambda: resolver)
    assert (await first.fetch(target)).mime_type == "image/png"
    second = fetchers("public", refusal=pretend_public, resolver_factory=lambda: resolver)  # no pooled socket
    with pytest.raises(InvalidRequest):
        await second.fetch(target, param=PARAM)
    assert resolver.calls == 2
    assert public_hits.paths == ["/img.png"]
    assert internal_hits.paths == []


async def test_a_name_with_internal_and_public_addresses_connects_to_the_public_one(two_hosts,
                                                                                   fetchers) -> None:
    port, public_hits, internal_hits = two_hosts
    resolver = ScriptedResolver([["127.0.0.1", FAKE_PUBLIC]])  # unfiltered, 127.0.0.1 would be tried first
    fetcher = fetchers("public", refusal=pretend_public, resolver_factory=lambda: resolver)
    assert (await fetcher.fetch(f"http://mixed.test:{port}/img.png")).mime_type == "image/png"
    assert (public_hits.paths, internal_hits.paths) == (["/img.png"], [])


async def test_any_mode_would_have_reached_the_internal_host(two_hosts, fetchers) -> None:
    """The control for the two tests above: without the public-only resolver the internal host is hit."""
    port, _, internal_hits = two_hosts
    resolver = ScriptedResolver([["127.0.0.1"]])
    fetcher = fetchers("any", resolver_factory=lambda: resolver)
    assert (await fetcher.fetch(f"http://rebind.test:{port}/img.png")).mime_type == "image/png"
    assert internal_hits.paths == ["/img.png"]


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("https://user:pass@host.example:8443/a/b.png?token=1#frag",
         "https://host.example:8443/a/b.png (query omitted)"),
        ("http://host.example/a.png", "http://host.example/a.png"),
        ("http://[::1]:8/a.png", "http://[::1]:8/a.png"),
        ("http://[::1", "<an invalid URL>"),
    ],
)
def test_redact_url(raw: str, shown: str) -> None:
    assert redact_url(raw) == shown
