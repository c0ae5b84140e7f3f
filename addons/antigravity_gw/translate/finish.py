"""Gemini ``finishReason`` → OpenAI ``finish_reason``, shared by the chat, completions and responses
translators.

OpenAI clients know four values (``stop``, ``length``, ``tool_calls``, ``content_filter``), and some
(LangChain, the openai SDK's ``parse()``) branch on them, so a Gemini value is never passed through raw.
Reasons that mean "Google's filters stopped the output" map to ``content_filter``; reasons that mean
"the model ended badly but nothing was filtered" (``MALFORMED_FUNCTION_CALL``, ``OTHER``, anything new)
map to ``stop``. A candidate that produced a tool call finishes with ``tool_calls`` (the client must run
it), unless a filter stopped it: then ``content_filter`` wins, since the call may be cut short.
"""

from __future__ import annotations

from ..openai_api.wire import FinishReason

FILTERED = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
    }
)
_MAP: dict[str, FinishReason] = {"STOP": "stop", "MAX_TOKENS": "length"}


def gemini_finish_to_openai(reason: str | None, *, has_tool_calls: bool = False) -> FinishReason:
    mapped: FinishReason = "content_filter" if reason in FILTERED else _MAP.get(reason or "", "stop")
    if has_tool_calls and mapped != "content_filter":
        return "tool_calls"
    return mapped

