"""Which upstream model serves a client's model name, and what ``/v1/models`` lists.

Order: an exact entry of the mapping table (``ag_model_map`` entries first, then the mapping
file's), then the most specific wildcard entry (``*`` anywhere; specificity = literal characters,
ties broken by fewer ``*``, then by table order), then the built-in defaults for OpenAI's names,
then the name unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

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
    # Claude through Antigravity (R-C1): Opus 4.6 is served as its thinking id only, and Sonnet 4.6
    # stands in for the older Sonnets and Haiku, as Antigravity Manager maps them. Exact names are
    # listed by /v1/models when an account serves their target.
    ("claude-opus-4-6", "claude-opus-4-6-thinking"),
    ("claude-opus-4-5", "claude-opus-4-6-thinking"),
    ("claude-opus-4", "claude-opus-4-6-thinking"),
    ("claude-opus-4*", "claude-opus-4-6-thinking"),  # also dated ids and claude-opus-4.6[-thinking]
    ("claude-sonnet-4-5", "claude-sonnet-4-6"),
    ("claude-sonnet-4", "claude-sonnet-4-6"),
    ("claude-sonnet-4*", "claude-sonnet-4-6"),
    ("claude-3-5-sonnet*", "claude-sonnet-4-6"),
    ("claude-3-7-sonnet*", "claude-sonnet-4-6"),
    ("claude-haiku-4-5", "claude-sonnet-4-6"),
    ("claude-haiku-4*", "claude-sonnet-4-6"),
    # OpenAI's image model names → Antigravity's image model (R-I1)
    ("dall-e-*", "gemini-3.1-flash-image"),
    ("gpt-image-*", "gemini-3.1-flash-image"),
)


@lru_cache(maxsize=512)
def _wildcard(pattern: str) -> re.Pattern[str]:
    return re.compile("^" + ".*".join(re.escape(p) for p in pattern.split("*")) + "$")


def _best_wildcard(model: str, table: tuple[tuple[str, str], ...]) -> str | None:
    best: tuple[int, int, int, str] | None = None
    for order, (pattern, target) in enumerate(table):
        if "*" in pattern and _wildcard(pattern).match(model):
            key = (-(len(pattern) - pattern.count("*")), pattern.count("*"), order, target)
            if best is None or key < best:
                best = key
    return best[3] if best else None


@lru_cache(maxsize=1024)  # pure, and asked on every request; client model names are few
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


# ---- /v1/models -------------------------------------------------------------------------------
CREATED = 1700000000  # OpenAI's "created": clients only display it; a fixed date keeps answers stable
GOOGLE = "google"
GATEWAY = "antigravity-gateway"  # owner shown for the gateway's own aliases
CLOUDCODE_FAMILIES = ("gemini", "claude", "gpt", "image", "imagen")  # Cloud Code also lists internal ids


def model_object(model_id: str, owned_by: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": CREATED, "owned_by": owned_by}


def anthropic_model(model: dict[str, Any]) -> dict[str, Any]:
    """A listed model as Anthropic's Models API writes it (for clients that send ``anthropic-version``)."""
    created = datetime.fromtimestamp(model["created"], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"type": "model", "id": model["id"], "display_name": model["id"], "created_at": created}


def anthropic_model_list(listed: list[dict[str, Any]]) -> dict[str, Any]:
    """``GET /v1/models`` in Anthropic's shape: the whole list as one page."""
    data = [anthropic_model(m) for m in listed]
    return {"data": data, "has_more": False, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None}


def aliases(table: tuple[tuple[str, str], ...]) -> list[str]:
    """The client-side names a mapping table defines exactly (wildcards name no single model)."""
    return list(dict.fromkeys(src for src, _ in table if "*" not in src))


def builtin_aliases(upstream: Iterable[str]) -> list[str]:
    """The built-in exact names whose target one of the accounts serves (``claude-opus-4-6`` when
    ``claude-opus-4-6-thinking`` is there): clients pick models from ``/v1/models``."""
    served = set(upstream)
    return [src for src, dst in BUILTIN_MAP if "*" not in src and dst in served]


def fallback_models(table: tuple[tuple[str, str], ...]) -> list[str]:
    """What to list when no account could say what it serves: every mapping target."""
    return list(dict.fromkeys([*(dst for _, dst in table), *(dst for _, dst in BUILTIN_MAP)]))


def model_list(alias_names: Iterable[str], upstream: Iterable[str]) -> list[dict[str, Any]]:
    """Upstream models first (sorted), then the aliases that are not upstream names themselves."""
    real = sorted(set(upstream))
    extra = [a for a in dict.fromkeys(alias_names) if a not in set(real)]
    return [model_object(m, GOOGLE) for m in real] + [model_object(a, GATEWAY) for a in extra]


def find_model(model_id: str, listed: list[dict[str, Any]],
               table: tuple[tuple[str, str], ...]) -> dict[str, Any] | None:
    """``/v1/models/{id}``: a listed model, or a name the gateway maps to another model (it serves it)."""
    for entry in listed:
        if entry["id"] == model_id:
            return entry
    if resolve_model(model_id, table) != model_id:
        return model_object(model_id, GATEWAY)
    return None


def is_cloudcode_model(model_id: str) -> bool:
    return model_id.startswith(CLOUDCODE_FAMILIES)


@lru_cache(maxsize=1024)
def fallback_for(model: str, table: tuple[tuple[str, str], ...]) -> str | None:
    """``ag_model_fallback``: the model that serves ``model`` when no account can (exact FROM first, then
    the most specific wildcard, as in model mapping); None when the table names none."""
    for pattern, target in table:
        if pattern == model:
            return target
    return _best_wildcard(model, table)
