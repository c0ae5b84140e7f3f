"""Outbound OpenAI chat shapes: TypedDicts and tiny builders of plain dicts; the stream path is orjson only.

Key order follows OpenAI's own responses (``id, object, created, model, choices, usage``) so a diff
against a real OpenAI transcript reads cleanly. ``system_fingerprint`` and ``service_tier`` are omitted:
both are optional in the openai SDK's types and mean nothing for Gemini.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]


class PromptTokensDetails(TypedDict):
    cached_tokens: int


class CompletionTokensDetails(TypedDict):
    reasoning_tokens: int


class ChatUsage(TypedDict):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails
    completion_tokens_details: CompletionTokensDetails


class FunctionCallOut(TypedDict):
    name: str
    arguments: str  # a JSON text, as OpenAI sends it


class ToolCallDelta(TypedDict):
    index: int
    id: str
    type: Literal["function"]
    function: FunctionCallOut
    extra_content: NotRequired[dict[str, Any]]  # Google's own field: {"google": {"thought_signature"}}


class ImageOut(TypedDict):
    """An image the model made, OpenRouter's shape: ``{"type": "image_url", "image_url": {"url": ...}}``,
    plus the image part's thought signature in Google's own field, as on tool calls."""

    type: Literal["image_url"]
    image_url: dict[str, str]
    extra_content: NotRequired[dict[str, Any]]  # {"google": {"thought_signature": ...}}


class ChoiceDelta(TypedDict, total=False):
    role: Literal["assistant"]
    content: str
    reasoning_content: str
    refusal: str
    tool_calls: list[ToolCallDelta]
    images: list[ImageOut]


class ChunkChoice(TypedDict):
    index: int
    delta: ChoiceDelta
    logprobs: None
    finish_reason: FinishReason | None


class ChatCompletionChunk(TypedDict):
    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: NotRequired[ChatUsage | None]  # present only when the client asked for include_usage


class ToolCallOut(TypedDict):
    id: str
    type: Literal["function"]
    function: FunctionCallOut
    extra_content: NotRequired[dict[str, Any]]


class ChatMessageOut(TypedDict):
    role: Literal["assistant"]
    content: str | None
    refusal: str | None
    reasoning_content: NotRequired[str]
    tool_calls: NotRequired[list[ToolCallOut]]
    images: NotRequired[list[ImageOut]]


class ChatChoice(TypedDict):
    index: int
    message: ChatMessageOut
    logprobs: None
    finish_reason: FinishReason


class ChatCompletion(TypedDict):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: ChatUsage


class ChunkHeader(TypedDict):
    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str


def chunk_header(completion_id: str, created: int, model: str) -> ChunkHeader:
    """The fields every chunk of one stream repeats; built once per stream."""
    return {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model}


def chunk(
    header: ChunkHeader, choice: ChunkChoice | None, *, include_usage: bool, usage: ChatUsage | None = None
) -> ChatCompletionChunk:
    """One chunk. ``choice=None`` is the final usage chunk (``choices: []``), as OpenAI sends it."""
    out: dict[str, Any] = {**header, "choices": [choice] if choice is not None else []}
    if include_usage:
        out["usage"] = usage
    return out  # type: ignore[return-value]


def chunk_choice(index: int, delta: ChoiceDelta, finish_reason: FinishReason | None = None) -> ChunkChoice:
    return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}


def tool_call_delta(index: int, call_id: str, name: str, arguments: str,
                    signature: str | None = None) -> ToolCallDelta:
    delta: ToolCallDelta = {
        "index": index,
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }
    if signature:  # where Google's OpenAI-compatible API puts it (the id carries it too)
        delta["extra_content"] = {"google": {"thought_signature": signature}}
    return delta


def chat_completion(
    completion_id: str, created: int, model: str, choices: list[ChatChoice], usage: ChatUsage
) -> ChatCompletion:
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": choices,
        "usage": usage,
    }
