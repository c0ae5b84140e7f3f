"""Stored Responses-API conversations shared by gateway instances (``ag_state_url``).

Rules:
- every response the local store keeps is also written to ``ag:resp:<id>`` with the store's TTL, in the
  background (the answer never waits for Redis);
- a ``previous_response_id`` this instance does not know is looked up there before the client gets its
  404 (only then: a known id costs nothing), so a conversation started on one instance continues on
  any other. The write may still be on its way when the next request arrives elsewhere, so a miss is
  asked again a few times, briefly;
- Redis down: each instance knows the responses it stored itself, as without ``ag_state_url``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from ..openai_api.responses_models import InputItem
from ..translate.responses_store import ResponseStore, StoredResponse
from .background import BackgroundTasks
from .redis_link import PREFIX, RedisLink, Unavailable

RESPONSE_PREFIX = PREFIX + "resp:"
LOOKUPS = 6  # tries for an id another instance may be writing right now
LOOKUP_PAUSE = 0.1  # seconds between them
_ITEMS: TypeAdapter[list[InputItem]] = TypeAdapter(list[InputItem])


def encode(stored: StoredResponse) -> bytes:
    items = _ITEMS.dump_python(list(stored.items), mode="json", by_alias=True, exclude_unset=True)
    return orjson.dumps({"model": stored.model, "items": items})


def decode(data: bytes) -> StoredResponse | None:
    try:
        obj = orjson.loads(data)
        return StoredResponse(str(obj["model"]), tuple(_ITEMS.validate_python(obj["items"])))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValidationError):
        return None


class SharedResponses:
    def __init__(self, link: RedisLink, tasks: BackgroundTasks) -> None:
        self.link = link
        self.tasks = tasks

    def attach(self, store: ResponseStore) -> None:
        ttl = max(1, math.ceil(store.ttl))

        def sink(response_id: str, stored: StoredResponse) -> None:
            if self.link.up:
                self.tasks.spawn(self._write(response_id, encode(stored), ttl), "share-response")

        store.sink = sink

    async def _write(self, response_id: str, data: bytes, ttl: int) -> None:
        with contextlib.suppress(Unavailable):
            await self.link.run(lambda r: r.set(RESPONSE_PREFIX + response_id, data, ex=ttl))

    async def fetch_into(self, store: ResponseStore, response_id: str) -> bool:
        """Whether another instance stored ``response_id``; it is then in ``store`` too."""
        for attempt in range(LOOKUPS):
            if attempt:
                await asyncio.sleep(LOOKUP_PAUSE)
            try:
                data: Any = await self.link.run(lambda r: r.get(RESPONSE_PREFIX + response_id))
            except Unavailable:
                return False
            if data and (stored := decode(data)) is not None:
                store.load(response_id, stored)
                return True
        return False
