"""Feeding a recorded Gemini SSE transcript to a stream translator, the three ways every stream test uses
(h11's ``t_body_reader`` habit): the whole byte stream at once, one byte at a time, and seeded random
splits. All feedings must produce the same items."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import orjson

from antigravity_gw.sse import SSEDecoder


def feed_sse(translator: Any, raw: bytes, cuts: Sequence[int]) -> list[dict[str, Any]]:
    """SSE bytes (Cloud Code framing) → ``translator``, split at ``cuts``: the mitm adapter loop in small."""
    decoder = SSEDecoder()
    out: list[dict[str, Any]] = []
    start = 0
    for cut in [*cuts, len(raw), None]:
        for event in decoder.finish() if cut is None else decoder.feed(raw[start:cut]):
            if event.data:
                data = orjson.loads(event.data)
                out += translator.feed(data.get("response", data))
        start = cut or 0
    return out + translator.finish()


def feedings(raw: bytes, *, seed: int, random_splits: int = 20, most_cuts: int = 30) -> dict[str, list[int]]:
    """The cut points of each feeding, by name: whole, byte by byte, then ``random_splits`` seeded ones of
    up to ``most_cuts`` cuts each."""
    rng = random.Random(seed)
    out = {"whole": [], "byte by byte": list(range(1, len(raw)))}
    for n in range(random_splits):
        cuts = rng.sample(range(1, len(raw)), k=rng.randint(1, min(most_cuts, len(raw) - 1)))
        out[f"random split {n}"] = sorted(cuts)
    return out
