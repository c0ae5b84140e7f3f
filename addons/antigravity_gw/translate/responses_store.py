"""The Responses API's state in memory: stored responses, their items, and the tool calls' Gemini data.

This is the hot half of the store (pure, no I/O); ``state/response_db.py`` is the durable half in
``ag_data_dir``. Every stored response is handed to ``sink`` (the database writer's cheap append) when
it is put here, so the event loop never waits for a disk; a lookup that misses here is loaded from the
database by the glue, off the event loop, and put back with ``load``.

A stored response keeps:
* ``items``: the whole conversation up to and including its output, as input items, so a chained
  request (``previous_response_id``) only prepends it: no lookup walks a chain in memory, and a long
  chain shares its items (tuples of the same validated objects). Output items keep their reasoning
  signatures (``encrypted_content``) even when the client did not ask to see them;
* ``response``: the response object as the client got it (``GET /v1/responses/{id}``);
* ``input``: the request's own input items with their ids (``GET /v1/responses/{id}/input_items``).

Item ids (``msg_…``, ``fc_…``, ``rs_…``) index the items for ``item_reference`` input items.
Tool calls: a Responses ``call_id`` stays within OpenAI's 64 characters, so Gemini's own call id and
thought signature travel in a reasoning item's ``encrypted_content`` when the client sends reasoning
items back, and here (``calls``) as the fallback: every answered call is remembered (store or not),
in memory, and with its stored response on disk.

Bounds: ``max_entries`` responses and ``max_calls`` calls, the oldest evicted first; entries live
``ttl`` seconds. The clock is injected, so tests need no sleeping.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter

from ..openai_api.responses_models import InputItem
from .signatures import ToolCallRef

DEFAULT_TTL = 30 * 86400.0
DEFAULT_MAX_ENTRIES = 1024
DEFAULT_MAX_CALLS = 65536
_ITEMS: TypeAdapter[list[InputItem]] = TypeAdapter(list[InputItem])
_ITEM: TypeAdapter[InputItem] = TypeAdapter(InputItem)
NO_REF = ToolCallRef()


@dataclass(frozen=True, slots=True)
class StoredResponse:
    model: str
    items: tuple[InputItem, ...]
    id: str = ""
    created_at: int = 0
    previous_response_id: str | None = None
    response: Mapping[str, Any] = field(default_factory=dict)
    input: tuple[dict[str, Any], ...] = ()  # this request's own input items, each with an id
    output: tuple[dict[str, Any], ...] = ()  # the output items, signatures included
    calls: Mapping[str, ToolCallRef] = field(default_factory=dict)

    def indexed_items(self) -> Iterable[tuple[str, dict[str, Any]]]:
        """(item id, item) of the input and output items that have an id."""
        for item in (*self.input, *self.output):
            if isinstance(item_id := item.get("id"), str) and item_id:
                yield item_id, item


def output_as_input(output: Sequence[dict[str, Any]]) -> tuple[InputItem, ...]:
    """Response output items (message, reasoning, function_call, custom_tool_call) as input items."""
    return tuple(_ITEMS.validate_python(list(output)))


def item_as_input(item: Mapping[str, Any]) -> InputItem:
    return _ITEM.validate_python(dict(item))


class ResponseStore:
    def __init__(
        self,
        *,
        ttl: float = DEFAULT_TTL,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_calls: int = DEFAULT_MAX_CALLS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.max_calls = max_calls
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, StoredResponse]] = OrderedDict()
        self._items: dict[str, tuple[str, dict[str, Any]]] = {}  # item id -> (response id, item)
        self._calls: OrderedDict[str, ToolCallRef] = OrderedDict()
        # items read back from the database without their response
        self._loose: OrderedDict[str, dict[str, Any]] = OrderedDict()
        # Called with every response put here (not those loaded back): the database writer's append...
        self.sink: Callable[[StoredResponse], None] | None = None
        # ...and ag_state_url's shared store, for the other gateway instances.
        self.share: Callable[[str, StoredResponse], None] | None = None

    # ---- responses -------------------------------------------------------------------------------
    def get(self, response_id: str) -> StoredResponse | None:
        entry = self._entries.get(response_id)
        if entry is None:
            return None
        expires, stored = entry
        if expires <= self._clock():
            self._drop(response_id)
            return None
        return stored

    def put(self, response_id: str, stored: StoredResponse) -> None:
        self.load(response_id, stored)
        if self.sink is not None:
            self.sink(stored)
        if self.share is not None:
            self.share(response_id, stored)

    def load(self, response_id: str, stored: StoredResponse) -> None:
        """Keep ``stored`` in memory (a put, a response read back from the database, or one another
        gateway instance stored)."""
        now = self._clock()
        self._drop(response_id)
        self._entries[response_id] = (now + self.ttl, stored)
        for item_id, item in stored.indexed_items():
            self._items[item_id] = (response_id, item)
        self.remember_calls(stored.calls)
        while self._entries:
            oldest_id, (expires, _) = next(iter(self._entries.items()))
            if expires > now and len(self._entries) <= self.max_entries:
                break
            self._drop(oldest_id)

    def forget(self, response_id: str) -> None:
        """Drop a deleted response from memory (the caller deletes it from the database)."""
        self._drop(response_id)
        self._loose.clear()  # they do not say whose they are; reading them again is cheap

    def _drop(self, response_id: str) -> None:
        entry = self._entries.pop(response_id, None)
        if entry is None:
            return
        for item_id, _ in entry[1].indexed_items():
            if self._items.get(item_id, ("",))[0] == response_id:
                del self._items[item_id]

    # ---- items and calls -------------------------------------------------------------------------
    def item(self, item_id: str) -> dict[str, Any] | None:
        found = self._items.get(item_id)
        if found is None or self.get(found[0]) is None:
            return self._loose.get(item_id)
        return found[1]

    def load_item(self, item_id: str, item: dict[str, Any]) -> None:
        """An item read back from the database without its response (for ``item_reference``)."""
        self._loose[item_id] = item
        self._loose.move_to_end(item_id)
        while len(self._loose) > self.max_entries:
            self._loose.popitem(last=False)

    def call(self, call_id: str) -> ToolCallRef | None:
        """What is known about a call: its ref (``NO_REF`` when it carried nothing), None if unknown."""
        return self._calls.get(call_id)

    def remember_calls(self, calls: Mapping[str, ToolCallRef]) -> None:
        for call_id, ref in calls.items():
            self._calls[call_id] = ref
            self._calls.move_to_end(call_id)
        while len(self._calls) > self.max_calls:
            self._calls.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)

    def __bool__(self) -> bool:  # a store is a store even when empty
        return True
