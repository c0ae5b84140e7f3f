"""usageMetadata → OpenAI usage, and finishReason → finish_reason: the shared helpers, as tables."""

from __future__ import annotations

from typing import Any

import pytest

from antigravity_gw.translate.finish import FILTERED, gemini_finish_to_openai
from antigravity_gw.translate.usage import UsageCounts, gemini_usage_counts, gemini_usage_to_openai


def test_full_usage_metadata() -> None:
    usage = {
        "promptTokenCount": 100,
        "cachedContentTokenCount": 40,
        "candidatesTokenCount": 20,
        "thoughtsTokenCount": 30,
        "toolUsePromptTokenCount": 5,
        "totalTokenCount": 155,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 100}],
    }
    assert gemini_usage_to_openai(usage) == {
        "prompt_tokens": 105,
        "completion_tokens": 50,
        "total_tokens": 155,
        "prompt_tokens_details": {"cached_tokens": 40},
        "completion_tokens_details": {"reasoning_tokens": 30},
    }


@pytest.mark.parametrize("usage", [None, {}])
def test_missing_usage_is_all_zero(usage: dict[str, Any] | None) -> None:
    assert gemini_usage_to_openai(usage) == {
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "total_tokens": 0,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def test_prompt_only_event_from_the_start_of_a_stream() -> None:
    counts = gemini_usage_counts({"promptTokenCount": 12, "totalTokenCount": 12})
    assert counts == UsageCounts(prompt=12, completion=0, cached=0, reasoning=0)
    assert counts.total == 12


@pytest.mark.parametrize("bad", ["12", 1.5, -1, True, None, [3]])
def test_malformed_counts_are_value_errors(bad: Any) -> None:
    with pytest.raises(ValueError, match=r"usageMetadata\.candidatesTokenCount is not a token count"):
        gemini_usage_counts({"candidatesTokenCount": bad})


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        *((r, "content_filter") for r in sorted(FILTERED)),
        ("MALFORMED_FUNCTION_CALL", "stop"),
        ("UNEXPECTED_TOOL_CALL", "stop"),
        ("OTHER", "stop"),
        ("LANGUAGE", "stop"),
        ("FINISH_REASON_UNSPECIFIED", "stop"),
        ("A_REASON_FROM_NEXT_YEAR", "stop"),
        (None, "stop"),
    ],
)
def test_finish_reason_without_tool_calls(reason: str | None, expected: str) -> None:
    assert gemini_finish_to_openai(reason) == expected


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("STOP", "tool_calls"),
        ("MAX_TOKENS", "tool_calls"),
        ("OTHER", "tool_calls"),
        ("SAFETY", "content_filter"),
    ],
)
def test_finish_reason_with_tool_calls(reason: str, expected: str) -> None:
    assert gemini_finish_to_openai(reason, has_tool_calls=True) == expected


def test_filtered_set_covers_the_documented_blocking_reasons() -> None:
    assert {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY"} <= FILTERED
    assert [gemini_finish_to_openai(r) for r in ("SPII", "STOP", None)] == ["content_filter", "stop", "stop"]


def test_responses_usage_names_the_same_counts_its_own_way() -> None:
    from antigravity_gw.translate.usage import gemini_usage_to_responses

    usage = {"promptTokenCount": 10, "toolUsePromptTokenCount": 2, "candidatesTokenCount": 5,
             "thoughtsTokenCount": 7, "cachedContentTokenCount": 4}
    assert gemini_usage_to_responses(usage) == {
        "input_tokens": 12, "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 0},
        "output_tokens": 12, "output_tokens_details": {"reasoning_tokens": 7}, "total_tokens": 24}
