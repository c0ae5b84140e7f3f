"""/v1/models and /v1/models/{id}: the models module, its cache, and its fetcher against a fake Google."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
import pytest
from aiohttp import web

from antigravity_gw import errors
from antigravity_gw.mitm.model_map import ModelMap
from antigravity_gw.mitm.models import ModelsEndpoint
from antigravity_gw.openai_api.routes import Route, RouteKind
from antigravity_gw.upstream.accounts import Account
from antigravity_gw.upstream.available_models import AvailableModels, GoogleModels, ModelListError
from antigravity_gw.upstream.pool import Pool

LIST = Route(RouteKind.MODELS)


def oauth(name: str, **kw) -> Account:
    return Account(name, f"{name}@example.com", "oauth", None, access_token=f"at-{name}",
                   refresh_token=f"rt-{name}", expiry_timestamp=4e9, project_id=f"proj-{name}", **kw)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeFetch:
    def __init__(self, answers: dict[str, set[str] | Exception]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    async def __call__(self, account: Account) -> set[str]:
        self.calls.append(account.id)
        answer = self.answers[account.id]
        if isinstance(answer, Exception):
            raise answer
        return answer


def endpoint(accounts: list[Account], table: tuple = (), clock: Clock | None = None) -> ModelsEndpoint:
    pool = Pool()
    pool.replace(accounts)
    model_map = ModelMap()
    model_map.configure(table, None)
    return ModelsEndpoint(pool, model_map, AvailableModels(clock=clock or Clock(), budget=1.0))


async def listing(ep: ModelsEndpoint, fetch) -> dict:
    resp = await ep.answer(LIST, fetch)
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json"
    return orjson.loads(resp.content)


async def test_list_is_the_openai_shape_with_account_models_and_aliases():
    ep = endpoint([oauth("a"), oauth("b")], (("gpt-4o", "gemini-2.5-pro"), ("claude-*", "gemini-2.5-pro")))
    fetch = FakeFetch({"a": {"gemini-2.5-flash", "gemini-3-pro"}, "b": {"gemini-2.5-pro"}})
    body = await listing(ep, fetch)
    assert body["object"] == "list"
    assert body["data"] == [
        {"id": "gemini-2.5-flash", "object": "model", "created": 1700000000, "owned_by": "google"},
        {"id": "gemini-2.5-pro", "object": "model", "created": 1700000000, "owned_by": "google"},
        {"id": "gemini-3-pro", "object": "model", "created": 1700000000, "owned_by": "google"},
        {"id": "gpt-4o", "object": "model", "created": 1700000000, "owned_by": "antigravity-gateway"},
    ]


@pytest.mark.parametrize("fetch", [None, FakeFetch({"a": ModelListError("503")}),
                                   FakeFetch({"a": aiohttp.ClientConnectionError("refused")})])
async def test_no_session_or_a_failing_upstream_falls_back_to_aliases_and_targets(fetch):
    ep = endpoint([oauth("a")], (("my-alias", "gemini-3-flash"),))
    ids = [m["id"] for m in (await listing(ep, fetch))["data"]]
    assert "my-alias" in ids and "gemini-3-flash" in ids and "gemini-2.5-flash" in ids


async def test_an_empty_pool_still_lists_models():
    ids = [m["id"] for m in (await listing(endpoint([]), FakeFetch({})))["data"]]
    assert {"gemini-2.5-flash", "gemini-2.5-pro"} <= set(ids)


async def test_account_models_are_cached_for_the_ttl_and_failures_briefly():
    clock = Clock()
    ep = endpoint([oauth("a"), oauth("b")], clock=clock)
    fetch = FakeFetch({"a": {"gemini-2.5-flash"}, "b": ModelListError("boom")})
    await listing(ep, fetch)
    await listing(ep, fetch)
    assert sorted(fetch.calls) == ["a", "b"]
    clock.now += 31  # the failure is asked again soon, the answer only after the TTL
    fetch.answers["b"] = {"gemini-3-pro"}
    ids = {m["id"] for m in (await listing(ep, fetch))["data"]}
    assert sorted(fetch.calls) == ["a", "b", "b"]
    assert {"gemini-2.5-flash", "gemini-3-pro"} <= ids
    clock.now += 300
    await listing(ep, fetch)
    assert sorted(fetch.calls) == ["a", "a", "b", "b", "b"]


async def test_a_slow_account_is_cut_off_by_the_budget():
    class Slow(FakeFetch):
        async def __call__(self, account):
            if account.id == "slow":
                await asyncio.sleep(30)
            return await super().__call__(account)

    ep = endpoint([oauth("fast"), oauth("slow")])
    ep.available.budget = 0.05
    ids = {m["id"] for m in (await listing(ep, Slow({"fast": {"gemini-3-flash"}})))["data"]}
    assert "gemini-3-flash" in ids


async def test_disabled_accounts_are_not_asked():
    fetch = FakeFetch({"a": {"gemini-2.5-flash"}})
    await listing(endpoint([oauth("a"), oauth("off", disabled=True)]), fetch)
    assert fetch.calls == ["a"]


async def test_one_model_by_id_or_by_a_mapping_otherwise_a_404():
    ep = endpoint([oauth("a")], (("gpt-4o", "gemini-2.5-pro"),))
    fetch = FakeFetch({"a": {"gemini-2.5-flash"}})
    resp = await ep.answer(Route(RouteKind.MODEL, "gemini-2.5-flash"), fetch)
    assert orjson.loads(resp.content) == {"id": "gemini-2.5-flash", "object": "model", "created": 1700000000,
                                          "owned_by": "google"}
    resp = await ep.answer(Route(RouteKind.MODEL, "gpt-4o-mini-2024-07-18"), fetch)  # built-in mapping
    assert orjson.loads(resp.content)["owned_by"] == "antigravity-gateway"
    assert resp.headers["X-Mapped-Model"] == "gemini-2.5-flash"
    with pytest.raises(errors.NotFound) as e:
        await ep.answer(Route(RouteKind.MODEL, "no-such-model"), fetch)
    assert e.value.status == 404
    assert e.value.code == "model_not_found"
    assert "'no-such-model'" in e.value.message


# ---- the production fetcher against a fake Google --------------------------------------------
class FakeTokens:
    async def credential(self, account: Account, *, force: bool = False) -> str:
        return account.api_key if account.kind == "api_key" else account.access_token


@pytest.fixture
async def google():
    seen: list[dict] = []

    async def fetch_models(request: web.Request) -> web.Response:
        seen.append({"path": request.path, "auth": request.headers.get("authorization"),
                     "body": await request.json()})
        if request.path.startswith("/down"):
            return web.json_response({"error": {"code": 503}}, status=503)
        return web.json_response({"models": {"gemini-3-pro": {}, "claude-sonnet-4-5": {}, "chat_20706": {}}})

    async def list_models(request: web.Request) -> web.Response:
        seen.append({"path": request.path, "key": request.headers.get("x-goog-api-key")})
        return web.json_response({"models": [
            {"name": "models/gemini-2.5-flash", "supportedGenerationMethods": ["generateContent"]},
            {"name": "models/text-embedding-004", "supportedGenerationMethods": ["embedContent"]}]})

    app = web.Application()
    app.router.add_post("/down/v1internal:fetchAvailableModels", fetch_models)
    app.router.add_post("/up/v1internal:fetchAvailableModels", fetch_models)
    app.router.add_get("/v1beta/models", list_models)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with aiohttp.ClientSession() as session:
        yield f"http://127.0.0.1:{port}", session, seen
    await runner.cleanup()


async def test_cloud_code_accounts_are_asked_with_fetch_available_models_falling_back_across_bases(google):
    base, session, seen = google
    bases = (f"{base}/down/v1internal", f"{base}/up/v1internal")
    fetch = GoogleModels(session, FakeTokens(), cloudcode_bases=bases, user_agent="ua", gemini_url=base)
    assert await fetch(oauth("a")) == {"gemini-3-pro", "claude-sonnet-4-5"}  # internal ids are left out
    assert [s["path"] for s in seen] == ["/down/v1internal:fetchAvailableModels",
                                         "/up/v1internal:fetchAvailableModels"]
    assert seen[-1]["auth"] == "Bearer at-a"
    assert seen[-1]["body"] == {"project": "proj-a"}


async def test_api_key_accounts_are_asked_with_list_models(google):
    base, session, seen = google
    fetch = GoogleModels(session, FakeTokens(), cloudcode_bases=(), user_agent="ua", gemini_url=base)
    key = Account("k", "k", "api_key", None, api_key="AIza-k")
    assert await fetch(key) == {"gemini-2.5-flash"}
    assert seen == [{"path": "/v1beta/models", "key": "AIza-k"}]


async def test_a_failing_fetch_names_no_secret(google):
    base, session, _ = google
    fetch = GoogleModels(session, FakeTokens(), cloudcode_bases=(f"{base}/down/v1internal",), user_agent="ua",
                         gemini_url=base)
    with pytest.raises(ModelListError) as e:
        await fetch(oauth("a"))
    assert "503" in str(e.value)
    assert "at-a" not in str(e.value)
