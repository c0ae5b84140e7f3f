"""Which upstream model serves a client's model name.

Order: an exact ``ag_model_map`` entry, then the most specific wildcard entry (``*`` anywhere;
specificity = literal characters, ties broken by the order given), then the built-in defaults for
OpenAI's names, then the name unchanged.
"""

from __future__ import annotations

import re
from functools import lru_cache

BUILTIN_MAP: tuple[tuple[str, str], ...] = (
    ("gpt-4o-mini*", "gemini-2.5-flash"),
    ("gpt-4o*", "gemini-2.5-flash"),
    ("gpt-4.1-mini*", "gemini-2.5-flash"),
    ("gpt-4.1-nano*", "gemini-2.5-flash"),
    ("gpt-4.1*", "gemini-2.5-pro"),
    ("gpt-4*", "gemini-2.5-flash"),
    ("gpt-3.5*", "gemini-2.5-flash"),
    ("gpt-5*", "gemini-2.5-pro"),
    ("o1*", "gemini-2.5-pro"),
    ("o3*", "gemini-2.5-pro"),
    ("o4-mini*", "gemini-2.5-flash"),
    ("chatgpt-*", "gemini-2.5-flash"),
    ("text-davinci*", "gemini-2.5-flash"),
    ("gpt-3.5-turbo-instruct*", "gemini-2.5-flash"),
)


@lru_cache(maxsize=512)
def _wildcard(pattern: str) -> re.Pattern[str]:
    return re.compile("^" + ".*".join(re.escape(p) for p in pattern.split("*")) + "$")


def _best_wildcard(model: str, table: tuple[tuple[str, str], ...]) -> str | None:
    best: tuple[int, int, str] | None = None
    for order, (pattern, target) in enumerate(table):
        if "*" in pattern and _wildcard(pattern).match(model):
            key = (-(len(pattern) - pattern.count("*")), order, target)
            if best is None or key < best:
                best = key
    return best[2] if best else None


def resolve_model(model: str, model_map: tuple[tuple[str, str], ...]) -> str:
    for pattern, target in model_map:
        if pattern == model:
            return target
    if (hit := _best_wildcard(model, model_map)) is not None:
        return hit
    for pattern, target in BUILTIN_MAP:
        if pattern == model:
            return target
    if (hit := _best_wildcard(model, BUILTIN_MAP)) is not None:
        return hit
    return model
