"""upstream/google_json.py: a side call's JSON object, its failures as the caller's error type, and the
Cloud Code base fallback (the first answer, else the last failure)."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from antigravity_gw.upstream.google_json import GoogleAnswerError, first_answer, json_object

TIMEOUT = aiohttp.ClientTimeout(total=5)


class ListError(GoogleAnswerError):
    pass


@pytest.fixture
async def google():
    async def answer(request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        if kind == "down":
            return web.json_response({"error": {"code": 503}}, status=503)
        if kind == "list":
            return web.json_response([1, 2])
        return web.json_response({"kind": kind})

    app = web.Application()
    app.router.add_route("*", "/{kind}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    async with aiohttp.ClientSession() as session:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", session
    await runner.cleanup()


async def ask(session: aiohttp.ClientSession, url: str) -> dict:
    return await json_object(session, "POST", url, headers={"authorization": "Bearer secret-token"},
                             body=b"{}", timeout=TIMEOUT, name="theCall", error=ListError)


async def test_the_answer_is_the_json_object(google):
    base, session = google
    assert await ask(session, f"{base}/up") == {"kind": "up"}


@pytest.mark.parametrize(("path", "message"), [("down", "theCall answered 503"),
                                               ("list", "theCall answered JSON that is not an object")])
async def test_a_useless_answer_is_the_callers_error_naming_the_call_and_no_secret(google, path, message):
    base, session = google
    with pytest.raises(ListError) as e:
        await ask(session, f"{base}/{path}")
    assert str(e.value) == message


async def test_the_first_base_that_answers_wins_and_none_answering_raises_the_last_failure(google):
    base, session = google
    asked: list[str] = []

    async def call(b: str) -> dict:
        asked.append(b)
        return await ask(session, b)

    assert await first_answer([f"{base}/down", f"{base}/up", f"{base}/other"], call) == {"kind": "up"}
    assert asked == [f"{base}/down", f"{base}/up"]
    with pytest.raises(ListError, match="503"):
        await first_answer([f"{base}/list", f"{base}/down"], call)
    with pytest.raises(ListError, match="no Cloud Code base URL"):
        await first_answer([], call, ListError)
