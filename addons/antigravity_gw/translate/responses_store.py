"""The conversations behind ``previous_response_id``: in memory, per gateway process, with a TTL.

A stored response is the whole conversation up to and including its output, as input items, so a
chained request only prepends it: no lookup walks a chain, and a long chain shares its items (tuples
of the same validated objects). Output items keep their reasoning signatures (``encrypted_content``)
even when the client did not ask to see them, so a chained turn carries them to Gemini.

Entries live ``ttl`` seconds (OpenAI keeps stored responses 30 days; a gateway restart forgets them
anyway, and an unknown id is a clear 404) and at most ``max_entries`` are kept, the oldest evicted
first. The clock is injected, so tests need no sleeping.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter

from ..openai_api.responses_models import InputItem

DEFAULT_TTL = 3600.0
DEFAULT_MAX_ENTRIES = 1024
_ITEMS: TypeAdapter[list[InputItem]] = TypeAdapter(list[InputItem])


@dataclass(frozen=True, slots=True)
class StoredResponse:
    model: str
    items: tuple[InputItem, ...]


def output_as_input(output: Sequence[dict[str, Any]]) -> tuple[InputItem, ...]:
    """Response output items (message, reasoning, function_call, custom_tool_call) as input items."""
    return tuple(_ITEMS.validate_python(list(output)))


class ResponseStore:
    def __init__(
        self,
        *,
        ttl: float = DEFAULT_TTL,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, StoredResponse]] = OrderedDict()
        # Called with every response put here (not those loaded back): ag_state_url's shared store.
        self.sink: Callable[[str, StoredResponse], None] | None = None

    def get(self, response_id: str) -> StoredResponse | None:
        entry = self._entries.get(response_id)
        if entry is None:
            return None
        expires, stored = entry
        if expires <= self._clock():
            del self._entries[response_id]
            return None
        return stored

    def put(self, response_id: str, stored: StoredResponse) -> None:
        self.load(response_id, stored)
        if self.sink is not None:
            self.sink(response_id, stored)

    def load(self, response_id: str, stored: StoredResponse) -> None:
        """Keep ``stored`` here (a put, or a response another gateway instance stored)."""
        now = self._clock()
        self._entries[response_id] = (now + self.ttl, stored)
        self._entries.move_to_end(response_id)
        while self._entries:
            oldest_id, (expires, _) = next(iter(self._entries.items()))
            if expires > now and len(self._entries) <= self.max_entries:
                break
            del self._entries[oldest_id]

    def __len__(self) -> int:
        return len(self._entries)
