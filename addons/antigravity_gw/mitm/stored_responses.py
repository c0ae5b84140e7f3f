"""The Responses API's stored responses: the database's lifecycle and the routes that read it.

A child addon of the Gateway (``Gateway.addons``), which owns the in-memory store
(``translate/responses_store.py``) and hands it here. This addon:
- opens ``responses.sqlite3`` in ``ag_data_dir`` when mitmproxy runs (in a thread) and points the
  store's ``sink``/``on_delete`` at the database writer's appends, so every stored response reaches the
  disk without the event loop waiting; a folder that cannot hold it is logged once, and the store then
  lives in memory only;
- ``load``: what a request's ``previous_response_id``, ``item_reference`` items or call ids need that
  memory lacks, read from the database in a thread and put back into the store;
- answers ``GET``/``DELETE /v1/responses/{id}``, ``GET /v1/responses/{id}/input_items`` (OpenAI's
  cursor pagination: ``after``, ``before``, ``limit`` 1-100 (20), ``order`` asc|desc (desc)) and
  ``POST /v1/responses/{id}/cancel`` (only background responses can be cancelled, and this gateway
  makes none: the documented 400 for a stored response, a 404 for an unknown one).
"""

from __future__ import annotations

import asyncio
import logging
import math
import sqlite3
from pathlib import Path
from typing import Any

from mitmproxy import ctx, http
from mitmproxy.addonmanager import Loader

from .. import errors
from .. import settings as s
from ..openai_api.routes import Route, RouteKind
from ..state.response_db import FILE_NAME, ResponseDB
from ..translate.endpoints import NeedsStoredState
from ..translate.responses_store import NO_REF, ResponseStore
from . import flows, options

logger = logging.getLogger(__name__)

STORE_OPTIONS: tuple[tuple[str, type | object, object, str], ...] = (
    ("ag_response_store_days", int, 30,
     "Days a stored Responses API response (store not false) is kept in ag_data_dir/responses.sqlite3 for "
     "previous_response_id, item_reference and GET /v1/responses/{id}; 0: until the size cap."),
    ("ag_response_store_size", str, "256m",
     "Most JSON the stored responses may take on disk (e.g. 256m, 1g); beyond it the oldest go first."),
)
WATCHED = frozenset({"ag_data_dir", *(name for name, *_ in STORE_OPTIONS)})
MAX_LIMIT = 100


def not_found(response_id: str) -> errors.NotFound:
    return errors.NotFound(f"Response with id '{response_id}' not found. It was never stored (the request "
                           "said 'store': false), was deleted, or is older than ag_response_store_days.",
                           param="response_id")


class StoredResponses:
    def __init__(self, store: ResponseStore) -> None:
        self.store = store
        self.db: ResponseDB | None = None
        self._config: tuple[Path, int, int] | None = None
        self._running = False

    # ---- lifecycle -----------------------------------------------------------------------------------
    def load(self, loader: Loader) -> None:
        options.declare(loader, STORE_OPTIONS)

    def configure(self, updated: set[str]) -> None:
        if not updated & WATCHED:
            return
        o = ctx.options
        try:
            days = o.ag_response_store_days
            if days < 0:
                raise ValueError(f"ag_response_store_days: {days!r} must be 0 (no age limit) or more")
            size = s.parse_size(o.ag_response_store_size, what="ag_response_store_size")
        except ValueError as e:
            options.refuse(str(e))
            return
        data_dir = Path(getattr(o, "ag_data_dir", s.DEFAULT_DATA_DIR)).expanduser()
        config = (data_dir, days, size)
        self.store.ttl = days * 86400.0 if days else math.inf
        if config != self._config:
            self._config = config
            if self._running:
                asyncio.get_running_loop().create_task(self._open())

    async def running(self) -> None:
        self._running = True
        await self._open()

    async def done(self) -> None:
        self._running = False
        await self._close()

    async def _open(self) -> None:
        await self._close()
        if self._config is None:
            return
        data_dir, days, size = self._config
        db = ResponseDB(data_dir / FILE_NAME, retention_days=days, max_bytes=size)
        try:
            await asyncio.to_thread(db.open)
        except (sqlite3.Error, OSError) as e:
            await asyncio.to_thread(db.close)
            logger.error("response store: cannot open %s (%s: %s); stored responses live in memory only "
                         "until a restart (set ag_data_dir to a writable folder)", db.path,
                         type(e).__name__, e)
            return
        self.db = db
        self.store.sink = db.append_put

    async def _close(self) -> None:
        db, self.db = self.db, None
        self.store.sink = None
        if db is not None:
            await asyncio.to_thread(db.close)

    # ---- what a request needs ------------------------------------------------------------------------
    async def load_needed(self, need: NeedsStoredState) -> None:
        """Put what the database has of ``need`` into the store; calls it lacks are remembered as known
        to carry nothing (a later turn does not ask again)."""
        db = self.db
        if db is not None:
            try:
                found = await asyncio.to_thread(db.load, need.responses, need.items, need.calls)
            except sqlite3.Error as e:
                logger.warning("response store: cannot read %s (%s)", db.path, e)
            else:
                for rid, stored in found.responses.items():
                    self.store.load(rid, stored)
                for item_id, item in found.items.items():
                    self.store.load_item(item_id, item)
                self.store.remember_calls(found.calls)
        self.store.remember_calls({c: NO_REF for c in need.calls if self.store.call(c) is None})

    # ---- routes --------------------------------------------------------------------------------------
    async def answer(self, flow: http.HTTPFlow, route: Route) -> http.Response:
        method = flow.request.method.upper()
        if route.kind == RouteKind.RESPONSE_INPUT_ITEMS:
            return flows.json_response(200, await self._input_items(route.param, flow.request.query))
        if route.kind == RouteKind.RESPONSE_CANCEL:
            await self._response(route.param)  # 404 first, for an unknown id
            raise errors.InvalidRequest("Cannot cancel a synchronous response: only responses created with "
                                        "'background': true can be cancelled, and this gateway runs none.",
                                        param="response_id")
        if method == "DELETE":
            await self._delete(route.param)
            return flows.json_response(200, {"id": route.param, "object": "response", "deleted": True})
        return flows.json_response(200, await self._response(route.param))

    async def _response(self, response_id: str) -> dict[str, Any]:
        stored = self.store.get(response_id)
        if stored is not None and stored.response:
            return dict(stored.response)
        found = await self._read(lambda db: db.response(response_id))
        if found is None:
            raise not_found(response_id)
        return found

    async def _delete(self, response_id: str) -> None:
        in_memory = self.store.get(response_id) is not None
        self.store.forget(response_id)
        on_disk = await self._read(lambda db: db.delete(response_id))
        if not (in_memory or on_disk):
            raise not_found(response_id)

    async def _input_items(self, response_id: str, query: Any) -> dict[str, Any]:
        limit, order, after, before = _page_params(query)
        stored = self.store.get(response_id)
        items = list(stored.input) if stored is not None else await self._read(
            lambda db: db.input_items(response_id))
        if items is None:
            raise not_found(response_id)
        return page(items, limit=limit, order=order, after=after, before=before)

    async def _read(self, read: Any) -> Any:
        db = self.db
        if db is None:
            return None
        try:
            return await asyncio.to_thread(read, db)
        except sqlite3.Error as e:
            logger.warning("response store: cannot read %s (%s)", db.path, e)
            raise errors.GatewayError("The response store could not be read; see the gateway log.") from None


def _page_params(query: Any) -> tuple[int, str, str | None, str | None]:
    raw_limit = query.get("limit", "20")
    try:
        limit = int(raw_limit)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise errors.InvalidRequest(f"Invalid 'limit': {raw_limit!r}; give an integer from 1 to {MAX_LIMIT}.",
                                    param="limit")
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise errors.InvalidRequest(f"Invalid 'order': {order!r}; use 'asc' or 'desc'.", param="order")
    return limit, order, query.get("after") or None, query.get("before") or None


def page(items: list[dict[str, Any]], *, limit: int, order: str, after: str | None,
         before: str | None) -> dict[str, Any]:
    """One page of a list in OpenAI's cursor shape: ``after``/``before`` are item ids in ``order``."""
    ordered = items if order == "asc" else items[::-1]
    ids = [item.get("id") for item in ordered]
    start, end = 0, len(ordered)
    for cursor, param in ((after, "after"), (before, "before")):
        if cursor is not None and cursor not in ids:
            raise errors.InvalidRequest(f"Invalid '{param}': no input item has the id {cursor!r}.",
                                        param=param)
    if after is not None:
        start = ids.index(after) + 1
    if before is not None:
        end = ids.index(before)
    window = ordered[start:end]
    data = window[:limit] if before is None else window[-limit:]
    has_more = len(window) > len(data)
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": has_more}
