"""Outbound Responses API shapes: the ``response`` object and the request fields it echoes.

Plain dicts (orjson in the stream path). Key order follows OpenAI's own responses. Every field the
openai SDK's ``Response`` model requires is present (``tools``, ``tool_choice``, ``parallel_tool_calls``,
``error``, ``incomplete_details``…), so ``Response.model_validate`` accepts the object.
"""

from __future__ import annotations

from typing import Any

from .responses_models import ResponsesRequest


def response_echo(req: ResponsesRequest, model: str) -> dict[str, Any]:
    """The request settings a response object repeats, in OpenAI's key order (around ``output``)."""
    reasoning = req.reasoning
    text = req.text.model_dump(by_alias=True, exclude_none=True) if req.text else {}
    tools = [_echoed_tool(t) for t in req.tools or ()]
    tool_choice = req.tool_choice
    if tool_choice is not None and not isinstance(tool_choice, str):
        tool_choice = tool_choice.model_dump(exclude_none=True)  # type: ignore[assignment]
    return {
        "instructions": req.instructions,
        "max_output_tokens": req.max_output_tokens,
        "model": model,
        "parallel_tool_calls": req.parallel_tool_calls is not False,
        "previous_response_id": req.previous_response_id,
        "prompt_cache_key": req.prompt_cache_key,
        "reasoning": {
            "effort": reasoning.effort if reasoning else None,
            "summary": req.summary_mode,
        },
        "store": req.store is not False,
        "temperature": req.temperature,
        "text": {"format": text.get("format", {"type": "text"})},
        "tool_choice": tool_choice or "auto",
        "tools": tools,
        "top_p": req.top_p,
        "truncation": "disabled",
        "user": req.user,
        "metadata": req.metadata or {},
    }


def _echoed_tool(tool: Any) -> dict[str, Any]:
    """A tool as sent; a function tool always has ``strict`` (OpenAI's schema requires it: the client's
    value, else null)."""
    out: dict[str, Any] = tool.model_dump(by_alias=True, exclude_unset=True)
    for function in (out, *out.get("tools", ())) if out.get("type") == "namespace" else (out,):
        if function.get("type") == "function":
            function.setdefault("strict", None)
            function.setdefault("parameters", None)
    return out


def response_object(
    *,
    response_id: str,
    created_at: int,
    status: str,
    echo: dict[str, Any],
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None,
    error: dict[str, Any] | None = None,
    incomplete_details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """OpenAI's schema allows no null for ``usage``, ``user`` and ``prompt_cache_key``: left out instead."""
    out = {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "error": error,
        "incomplete_details": incomplete_details,
        "instructions": echo["instructions"],
        "max_output_tokens": echo["max_output_tokens"],
        "model": echo["model"],
        "output": output,
        "parallel_tool_calls": echo["parallel_tool_calls"],
        "previous_response_id": echo["previous_response_id"],
        "prompt_cache_key": echo["prompt_cache_key"],
        "reasoning": echo["reasoning"],
        "store": echo["store"],
        "temperature": echo["temperature"],
        "text": echo["text"],
        "tool_choice": echo["tool_choice"],
        "tools": echo["tools"],
        "top_p": echo["top_p"],
        "truncation": echo["truncation"],
        "usage": usage,
        "user": echo["user"],
        "metadata": echo["metadata"],
    }
    for key in _NOT_NULL:
        if out[key] is None:
            del out[key]
    return out


_NOT_NULL = ("prompt_cache_key", "usage", "user")
