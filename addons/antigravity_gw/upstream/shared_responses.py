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
from ..translate.signatures import ToolCallRef
from .background import BackgroundTasks
from .redis_link import PREFIX, RedisLink, Unavailable

RESPONSE_PREFIX = PREFIX + "resp:"
LOOKUPS = 6  # tries for an id another instance may be writing right now
LOOKUP_PAUSE = 0.1  # seconds between them
_ITEMS: TypeAdapter[list[InputItem]] = TypeAdapter(list[InputItem])


def encode(stored: StoredResponse) -> bytes:
    """Everything a stored response holds, as the other instances need it to continue the conversation
    (its items, the answer GET /v1/responses/{id} shows, and each call's signature and its family)."""
    items = _ITEMS.dump_python(list(stored.items), mode="json", by_alias=True, exclude_unset=True)
    calls = {call_id: [ref.gemini_id, ref.signature, ref.family, ref.thought]
             for call_id, ref in stored.calls.items()}
    return orjson.dumps({"model": stored.model, "items": items, "id": stored.id,
                         "created_at": stored.created_at, "previous_response_id": stored.previous_response_id,
                         "response": stored.response, "input": stored.input, "output": stored.output,
                         "calls": calls})


def decode(data: bytes) -> StoredResponse | None:
    try:
        obj = orjson.loads(data)
        calls = {str(call_id): ToolCallRef(*ref) for call_id, ref in (obj.get("calls") or {}).items()}
        return StoredResponse(
            str(obj["model"]), tuple(_ITEMS.validate_python(obj["items"])), id=str(obj.get("id") or ""),
            created_at=int(obj.get("created_at") or 0), previous_response_id=obj.get("previous_response_id"),
            response=obj.get("response") or {}, input=tuple(obj.get("input") or ()),
            output=tuple(obj.get("output") or ()), calls=calls)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError, ValidationError):
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

        store.share = sink

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
