"""Gemini ``usageMetadata`` → OpenAI token counts; shared by the chat, completions and responses translators.

``UsageCounts`` is the neutral form (each OpenAI API names the fields differently);
``gemini_usage_to_openai`` builds the chat/completions ``usage`` object from it, and
``gemini_usage_to_responses`` the Responses API's (``input_tokens`` / ``output_tokens``).

How Gemini counts (``promptTokenCount`` includes cached tokens; thoughts are billed as output):
* prompt     = ``promptTokenCount`` + ``toolUsePromptTokenCount`` (tool-use prompts are input too)
* completion = ``candidatesTokenCount`` + ``thoughtsTokenCount`` (OpenAI's reasoning tokens are part of
  ``completion_tokens``, and ``completion_tokens_details.reasoning_tokens`` says how many)
* total      = prompt + completion, so the OpenAI invariant holds even when Gemini's
  ``totalTokenCount`` is missing from an intermediate event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from ..openai_api.wire import ChatUsage


class UsageCounts(NamedTuple):
    prompt: int
    completion: int
    cached: int
    reasoning: int

    @property
    def total(self) -> int:
        return self.prompt + self.completion


def gemini_usage_counts(usage: Mapping[str, Any] | None) -> UsageCounts:
    """``ValueError`` when a count is present but not a non-negative integer (malformed upstream data)."""
    usage = usage or {}
    return UsageCounts(
        prompt=_count(usage, "promptTokenCount") + _count(usage, "toolUsePromptTokenCount"),
        completion=_count(usage, "candidatesTokenCount") + _count(usage, "thoughtsTokenCount"),
        cached=_count(usage, "cachedContentTokenCount"),
        reasoning=_count(usage, "thoughtsTokenCount"),
    )


def gemini_usage_to_openai(usage: Mapping[str, Any] | None) -> ChatUsage:
    counts = gemini_usage_counts(usage)
    return {
        "prompt_tokens": counts.prompt,
        "completion_tokens": counts.completion,
        "total_tokens": counts.total,
        "prompt_tokens_details": {"cached_tokens": counts.cached},
        "completion_tokens_details": {"reasoning_tokens": counts.reasoning},
    }


def gemini_usage_to_responses(usage: Mapping[str, Any] | None) -> dict[str, Any]:
    counts = gemini_usage_counts(usage)
    return {
        "input_tokens": counts.prompt,
        # Gemini reports no cache writes (implicit caching is free to write); the SDK requires the field.
        "input_tokens_details": {"cached_tokens": counts.cached, "cache_write_tokens": 0},
        "output_tokens": counts.completion,
        "output_tokens_details": {"reasoning_tokens": counts.reasoning},
        "total_tokens": counts.total,
    }


def _count(usage: Mapping[str, Any], key: str) -> int:
    value = usage.get(key, 0)
    if type(value) is not int or value < 0:  # exactly int: a JSON true is a bool, not a count
        raise ValueError(f"usageMetadata.{key} is not a token count: {value!r}")
    return value
