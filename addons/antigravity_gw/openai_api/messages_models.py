"""Anthropic Messages API request models (``POST /v1/messages`` and ``/v1/messages/count_tokens``).

Only what the gateway translates is typed; fields Anthropic clients send that Gemini has no use for
(``cache_control`` on any block, ``citations``, ``service_tier``, ``container``…) are accepted and ignored,
as the OpenAI models ignore unknown fields. A content block of a type the gateway cannot translate
(server tools' results, ``search_result``…) is a 400 naming the block, never silently lost.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, ValidationError

from ..errors import InvalidRequest
from .models import (
    INT32_MAX,
    ModelName,
    TokenCount,
    _dict_tag,
    _Model,
    _str_or_list,
    validation_error_to_invalid_request,
)


class CacheControlled(_Model):
    """A block; ``cache_control`` is Anthropic's prompt-caching hint (Gemini caches implicitly)."""

    cache_control: dict[str, Any] | None = None


class TextBlock(CacheControlled):
    type: Literal["text"]
    text: str


class Base64Source(_Model):
    type: Literal["base64"]
    media_type: str = Field(min_length=1)
    data: str


class UrlSource(_Model):
    type: Literal["url"]
    url: str = Field(min_length=1)


class TextSource(_Model):
    type: Literal["text"]
    media_type: str = "text/plain"
    data: str


MediaSource = Annotated[
    Annotated[Base64Source, Tag("<base64>")] | Annotated[UrlSource, Tag("<url>")],
    Discriminator(_dict_tag("type")),
]
DocumentSource = Annotated[
    Annotated[Base64Source, Tag("<base64>")]
    | Annotated[UrlSource, Tag("<url>")]
    | Annotated[TextSource, Tag("<text>")],
    Discriminator(_dict_tag("type")),
]


class ImageBlock(CacheControlled):
    type: Literal["image"]
    source: MediaSource


class DocumentBlock(CacheControlled):
    type: Literal["document"]
    source: DocumentSource
    title: str | None = None


class ThinkingBlock(_Model):
    type: Literal["thinking"]
    thinking: str
    signature: str = ""


class RedactedThinkingBlock(_Model):
    type: Literal["redacted_thinking"]
    data: str


class ToolUseBlock(CacheControlled):
    type: Literal["tool_use"]
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    input: dict[str, Any] = Field(default_factory=dict)


ToolResultContent = Annotated[
    Annotated[TextBlock, Tag("<text>")]
    | Annotated[ImageBlock, Tag("<image>")]
    | Annotated[DocumentBlock, Tag("<document>")],
    Discriminator(_dict_tag("type")),
]


class ToolResultBlock(CacheControlled):
    type: Literal["tool_result"]
    tool_use_id: str = Field(min_length=1)
    content: Annotated[
        Annotated[str, Tag("<str>")] | Annotated[list[ToolResultContent], Tag("<list>")],
        Discriminator(_str_or_list),
    ] = ""
    is_error: bool | None = None


ContentBlock = Annotated[
    Annotated[TextBlock, Tag("<text>")]
    | Annotated[ImageBlock, Tag("<image>")]
    | Annotated[DocumentBlock, Tag("<document>")]
    | Annotated[ThinkingBlock, Tag("<thinking>")]
    | Annotated[RedactedThinkingBlock, Tag("<redacted_thinking>")]
    | Annotated[ToolUseBlock, Tag("<tool_use>")]
    | Annotated[ToolResultBlock, Tag("<tool_result>")],
    Discriminator(_dict_tag("type")),
]


class MessageParam(_Model):
    # "system": an instruction mid-conversation (Claude Code sends its environment so, keeping the cached
    # top-level system prompt unchanged); text only
    role: Literal["user", "assistant", "system"]
    content: Annotated[
        Annotated[str, Tag("<str>")] | Annotated[list[ContentBlock], Tag("<list>")],
        Discriminator(_str_or_list),
    ]


class CustomTool(CacheControlled):
    type: Literal["custom"] | None = None
    name: str = Field(min_length=1, max_length=128)
    description: str | None = None
    input_schema: dict[str, Any]


class ToolChoice(_Model):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class Thinking(_Model):
    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: int | None = Field(default=None, ge=0, le=INT32_MAX)


class Metadata(_Model):
    user_id: str | None = None


class MessagesRequest(_Model):
    model: ModelName
    messages: list[MessageParam]
    max_tokens: TokenCount | None = None  # required by create(), not by count_tokens (checked there)
    system: (
        Annotated[
            Annotated[str, Tag("<str>")] | Annotated[list[TextBlock], Tag("<list>")],
            Discriminator(_str_or_list),
        ]
        | None
    ) = None
    stop_sequences: list[str] | None = None
    stream: bool | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0, le=INT32_MAX)
    tools: list[CustomTool] | None = None
    tool_choice: ToolChoice | None = None
    thinking: Thinking | None = None
    metadata: Metadata | None = None


def parse_messages_request(body: bytes, *, counting: bool = False) -> MessagesRequest:
    """Validate a Messages body; ``counting``: a count_tokens body (no ``max_tokens``, never a stream)."""
    try:
        req = MessagesRequest.model_validate_json(body)
    except ValidationError as exc:
        raise validation_error_to_invalid_request(exc, api="Anthropic Messages") from None
    if not counting and req.max_tokens is None:
        raise InvalidRequest("max_tokens: Field required", param="max_tokens")
    if req.tool_choice is not None and req.tool_choice.type == "tool" and not req.tool_choice.name:
        raise InvalidRequest(
            "tool_choice.name: Field required when tool_choice.type is 'tool'", param="tool_choice.name"
        )
    return req
