"""Which models the accounts really serve: asked from Google, cached per account for a TTL.

Cloud Code accounts answer ``POST {base}:fetchAvailableModels`` with ``{"models": {"<id>": {...}}}``;
API-key accounts answer ``GET {gemini}/v1beta/models`` (``{"models": [{"name": "models/<id>"}]}``).
Listing models is a convenience, never a reason to fail: an account that cannot answer is
remembered as failed for a short while (keeping what it said last), and a slow upstream is cut
off after a time budget, so ``/v1/models`` always answers quickly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import aiohttp
import orjson

from .accounts import Account
from .catalog import is_cloudcode_model
from .dialects import cloudcode_headers
from .google_json import GoogleAnswerError, first_answer, json_object
from .oauth import RefreshFailed, TokenService

logger = logging.getLogger(__name__)

Fetch = Callable[[Account], Awaitable[Iterable[str]]]


class ModelListError(GoogleAnswerError):
    """Google did not say which models an account has (bad status or shape); no secret in the message."""


class AvailableModels:
    def __init__(self, *, ttl: float = 300.0, failure_ttl: float = 30.0, budget: float = 5.0,
                 concurrency: int = 8, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.failure_ttl = failure_ttl
        self.budget = budget  # seconds one listing may wait for Google, all accounts together
        self.concurrency = concurrency
        self._clock = clock
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}  # account id -> (valid until, models)
        self._lock = asyncio.Lock()

    async def ids(self, accounts: Iterable[Account], fetch: Fetch) -> set[str]:
        """The union of the usable accounts' models; stale entries are refreshed first (single flight)."""
        usable = [a for a in accounts if a.usable]
        async with self._lock:  # concurrent listings wait for one refresh, then read the cache
            stale = [a for a in usable if self._cache.get(a.id, (0.0,))[0] <= self._clock()]
            if stale:
                await self._refresh(stale, fetch)
        return set().union(*(self._cache[a.id][1] for a in usable if a.id in self._cache))

    async def _refresh(self, accounts: list[Account], fetch: Fetch) -> None:
        gate = asyncio.Semaphore(self.concurrency)
        fresh: set[str] = set()

        async def one(account: Account) -> None:
            async with gate:
                try:
                    models = frozenset(await fetch(account))
                except (ModelListError, RefreshFailed, aiohttp.ClientError, TimeoutError, ValueError) as e:
                    logger.info("could not list the models of %s: %s", account.label, e or type(e).__name__)
                    return
            self._cache[account.id] = (self._clock() + self.ttl, models)
            fresh.add(account.id)

        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(one(a)) for a in accounts]
        _, pending = await asyncio.wait(tasks, timeout=self.budget)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for account in accounts:
            if account.id not in fresh:  # keep what it said last, ask again soon
                last = self._cache.get(account.id, (0.0, frozenset()))[1]
                self._cache[account.id] = (self._clock() + self.failure_ttl, last)


class GoogleModels:
    """The production ``Fetch``: asks Google with the account's own credential."""

    def __init__(self, session: aiohttp.ClientSession, tokens: TokenService, *,
                 cloudcode_bases: tuple[str, ...], user_agent: str, gemini_url: str,
                 timeout: float = 10.0) -> None:
        self._session = session
        self._tokens = tokens
        self._bases = cloudcode_bases
        self._user_agent = user_agent
        self._gemini_url = gemini_url
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def __call__(self, account: Account) -> set[str]:
        credential = await self._tokens.credential(account)
        if account.kind == "api_key":
            return await self._public(credential)
        return await self._cloudcode(account, credential)

    async def _cloudcode(self, account: Account, token: str) -> set[str]:
        headers = cloudcode_headers(token, self._user_agent)
        body = orjson.dumps({"project": account.project_id} if account.project_id else {})
        data = await first_answer(
            self._bases, lambda base: self._json("POST", f"{base}:fetchAvailableModels", headers, body),
            ModelListError)
        models = data.get("models")
        if not isinstance(models, dict):
            raise ModelListError("fetchAvailableModels answered without a 'models' object")
        return {m for m in models if isinstance(m, str) and is_cloudcode_model(m)}

    async def _public(self, api_key: str) -> set[str]:
        headers = {"x-goog-api-key": api_key, "accept-encoding": "identity"}
        data = await self._json("GET", f"{self._gemini_url}/v1beta/models?pageSize=1000", headers, None)
        models = data.get("models")
        if not isinstance(models, list):
            raise ModelListError("listModels answered without a 'models' list")
        return {m["name"].removeprefix("models/") for m in models if _generates(m)}

    async def _json(self, method: str, url: str, headers: dict[str, str],
                    body: bytes | None) -> dict[str, Any]:
        return await json_object(self._session, method, url, headers=headers, body=body,
                                 timeout=self._timeout, name=url.split("?")[0], error=ModelListError)


def _generates(model: Any) -> bool:
    if not isinstance(model, dict) or not isinstance(model.get("name"), str):
        return False
    methods = model.get("supportedGenerationMethods")
    return methods is None or "generateContent" in methods
