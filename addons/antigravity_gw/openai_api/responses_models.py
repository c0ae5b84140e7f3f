"""Inbound ``/v1/responses`` bodies as pydantic models, validated once at the door.

The rules of ``models.py`` hold here too: unknown fields are ignored, wrong types are errors, every union
has a discriminator whose tags are written ``<like-this>``, and ``parse_responses_request`` turns the
first problem into an ``InvalidRequest`` whose ``param`` names the field (``input[3].call_id``).

What is accepted beyond the obvious:
* ``input`` items without ``type`` but with ``role`` are messages (OpenAI's "easy input message").
* Items and fields that clients echo back from earlier responses (``id``, ``status``, ``phase``,
  ``annotations``, a reasoning item's ``content``) are accepted and ignored.
* ``web_search_call`` items are accepted and carry nothing to Gemini (there is nothing to replay).
* Tools of a type Gemini cannot run (``file_search``, ``computer_use_preview``, ``mcp``…) parse as
  ``HostedTool``; the translation drops them (Codex sends such tools by default).
* ``background: true`` and ``conversation`` are refused: both change what the client expects back,
  and the gateway has neither background jobs nor conversations.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, model_validator

from ..errors import InvalidRequest
from .models import (
    JsonObject,
    JsonObjectFormat,
    ModelName,
    ReasoningEffort,
    TextFormat,
    TokenCount,
    _dict_tag,
    _Model,
    _numbers_in_range,
    _str_or_list,
    _str_or_object,
    validation_error_to_invalid_request,
)

# --- content parts -----------------------------------------------------------------------------------


class InputText(_Model):
    type: Literal["input_text"]
    text: str


class InputImage(_Model):
    type: Literal["input_image"]
    image_url: str | None = None
    file_id: str | None = None
    detail: str | None = None


class InputFile(_Model):
    type: Literal["input_file"]
    file_data: str | None = None
    file_id: str | None = None
    file_url: str | None = None
    filename: str | None = None


class OutputText(_Model):
    type: Literal["output_text"]
    text: str


class Refusal(_Model):
    type: Literal["refusal"]
    refusal: str


ContentPart = Annotated[
    Annotated[InputText, Tag("<input_text>")]
    | Annotated[InputImage, Tag("<input_image>")]
    | Annotated[InputFile, Tag("<input_file>")]
    | Annotated[OutputText, Tag("<output_text>")]
    | Annotated[Refusal, Tag("<refusal>")],
    Discriminator(_dict_tag("type")),
]
Content = Annotated[
    Annotated[str, Tag("<str>")] | Annotated[list[ContentPart], Tag("<list>")],
    Discriminator(_str_or_list),
]


# --- input items -------------------------------------------------------------------------------------


class MessageItem(_Model):
    type: Literal["message"] = "message"
    id: str | None = None  # echoed back from an earlier response, or the client's own
    role: Literal["user", "assistant", "system", "developer"]
    content: Content


class FunctionCallItem(_Model):
    type: Literal["function_call"]
    id: str | None = None  # echoed back from an earlier response, or the client's own
    call_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    arguments: str
    namespace: str | None = None


class FunctionCallOutputItem(_Model):
    type: Literal["function_call_output"]
    id: str | None = None  # echoed back from an earlier response, or the client's own
    call_id: str = Field(min_length=1)
    output: Content


class CustomToolCallItem(_Model):
    type: Literal["custom_tool_call"]
    id: str | None = None  # echoed back from an earlier response, or the client's own
    call_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    input: str
    namespace: str | None = None


class CustomToolCallOutputItem(_Model):
    type: Literal["custom_tool_call_output"]
    id: str | None = None  # echoed back from an earlier response, or the client's own
    call_id: str = Field(min_length=1)
    output: Content


class SummaryText(_Model):
    type: Literal["summary_text"]
    text: str


class ReasoningItem(_Model):
    type: Literal["reasoning"]
    id: str | None = None
    summary: list[SummaryText] = Field(default_factory=list)
    encrypted_content: str | None = None


class WebSearchCallItem(_Model):
    type: Literal["web_search_call"]
    id: str | None = None  # echoed back from an earlier response, or the client's own


class ItemReference(_Model):
    type: Literal["item_reference"]
    id: str


class CompactionItem(_Model):
    """What compaction made of the conversation before it (``/v1/responses/compact``, or a
    ``compaction_trigger``); this gateway's ``encrypted_content`` holds the summary."""

    type: Literal["compaction"]
    id: str | None = None
    encrypted_content: str


class CompactionTrigger(_Model):
    """Compact the conversation so far: the answer is one ``compaction`` item. Must be the last item."""

    type: Literal["compaction_trigger"]


def _item_tag(value: Any) -> str | None:
    """``type``, or ``<message>`` for an easy input message that has only ``role`` and ``content``."""
    if isinstance(value, BaseModel):
        return f"<{tag}>" if isinstance(tag := getattr(value, "type", None), str) else None
    if not isinstance(value, dict):
        return None
    if "type" not in value and "role" in value:
        return "<message>"
    return f"<{value['type']}>" if isinstance(value.get("type"), str) else None


_item_tag.__name__ = "type"  # read back by models._describe_tag: the field the discriminator reads

InputItem = Annotated[
    Annotated[MessageItem, Tag("<message>")]
    | Annotated[FunctionCallItem, Tag("<function_call>")]
    | Annotated[FunctionCallOutputItem, Tag("<function_call_output>")]
    | Annotated[CustomToolCallItem, Tag("<custom_tool_call>")]
    | Annotated[CustomToolCallOutputItem, Tag("<custom_tool_call_output>")]
    | Annotated[ReasoningItem, Tag("<reasoning>")]
    | Annotated[WebSearchCallItem, Tag("<web_search_call>")]
    | Annotated[ItemReference, Tag("<item_reference>")]
    | Annotated[CompactionItem, Tag("<compaction>")]
    | Annotated[CompactionTrigger, Tag("<compaction_trigger>")],
    Discriminator(_item_tag),
]
Input = Annotated[
    Annotated[str, Tag("<str>")] | Annotated[list[InputItem], Tag("<list>")],
    Discriminator(_str_or_list),
]


# --- tools -------------------------------------------------------------------------------------------


class FunctionTool(_Model):
    type: Literal["function"]
    name: str = Field(min_length=1)
    description: str | None = None
    parameters: JsonObject | None = None
    strict: bool | None = None


class TextToolFormat(_Model):
    type: Literal["text"]


class GrammarToolFormat(_Model):
    type: Literal["grammar"]
    syntax: str
    definition: str


CustomToolFormat = Annotated[
    Annotated[TextToolFormat, Tag("<text>")] | Annotated[GrammarToolFormat, Tag("<grammar>")],
    Discriminator(_dict_tag("type")),
]


class CustomTool(_Model):
    type: Literal["custom"]
    name: str = Field(min_length=1)
    description: str | None = None
    format: CustomToolFormat | None = None


NamespaceMember = Annotated[
    Annotated[FunctionTool, Tag("<function>")] | Annotated[CustomTool, Tag("<custom>")],
    Discriminator(_dict_tag("type")),
]


class NamespaceTool(_Model):
    type: Literal["namespace"]
    name: str = Field(min_length=1)
    description: str | None = None
    tools: list[NamespaceMember]


WEB_SEARCH_TYPES = (
    "web_search",
    "web_search_preview",
    "web_search_2025_08_26",
    "web_search_preview_2025_03_11",
)


class WebSearchTool(_Model):
    type: Literal[WEB_SEARCH_TYPES]  # type: ignore[valid-type]
    external_web_access: bool | None = None


class HostedTool(_Model):
    """A tool OpenAI runs itself (file search, code interpreter, MCP…): nothing Gemini can do. Its other
    fields are kept only to be echoed in the response's ``tools``."""

    model_config = ConfigDict(extra="allow", strict=True)
    type: str

    @model_validator(mode="after")
    def _echoable(self) -> HostedTool:
        _numbers_in_range(self.model_extra)  # they are echoed back through the JSON encoder
        return self


_TOOL_TYPES = {"function", "custom", "namespace", *WEB_SEARCH_TYPES}


def _tool_tag(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        value = {"type": getattr(value, "type", None)}
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        return None
    kind = value["type"]
    if kind in WEB_SEARCH_TYPES:
        return "<web_search>"
    return f"<{kind}>" if kind in _TOOL_TYPES else "<hosted>"


_tool_tag.__name__ = "type"

ResponsesTool = Annotated[
    Annotated[FunctionTool, Tag("<function>")]
    | Annotated[CustomTool, Tag("<custom>")]
    | Annotated[NamespaceTool, Tag("<namespace>")]
    | Annotated[WebSearchTool, Tag("<web_search>")]
    | Annotated[HostedTool, Tag("<hosted>")],
    Discriminator(_tool_tag),
]


class AllowedTool(_Model):
    type: str
    name: str | None = None


class ToolChoiceObject(_Model):
    """``{"type": "function"|"custom", "name"}``, ``{"type": "allowed_tools", "mode", "tools"}``, or a
    hosted tool type (``{"type": "web_search_preview"}``)."""

    type: str
    name: str | None = None
    namespace: str | None = None
    mode: Literal["auto", "required"] | None = None
    tools: list[AllowedTool] | None = None


ToolChoice = Annotated[
    Annotated[Literal["none", "auto", "required"], Tag("<str>")]
    | Annotated[ToolChoiceObject, Tag("<object>")],
    Discriminator(_str_or_object),
]


# --- options -----------------------------------------------------------------------------------------

SummaryMode = Literal["auto", "concise", "detailed", "none"]


class ReasoningOptions(_Model):
    effort: ReasoningEffort | None = None
    summary: SummaryMode | None = None
    generate_summary: SummaryMode | None = None  # the older name of ``summary``


class JsonSchemaTextFormat(_Model):
    type: Literal["json_schema"]
    name: str | None = None
    description: str | None = None
    schema_: JsonObject | None = Field(default=None, alias="schema")
    strict: bool | None = None


ResponseTextFormat = Annotated[
    Annotated[TextFormat, Tag("<text>")]
    | Annotated[JsonObjectFormat, Tag("<json_object>")]
    | Annotated[JsonSchemaTextFormat, Tag("<json_schema>")],
    Discriminator(_dict_tag("type")),
]


class TextOptions(_Model):
    format: ResponseTextFormat | None = None
    verbosity: str | None = None


class ResponsesRequest(_Model):
    model: ModelName | None = None
    input: Input | None = None
    instructions: str | None = None
    tools: list[ResponsesTool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    reasoning: ReasoningOptions | None = None
    max_output_tokens: TokenCount | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)  # not used; checked as OpenAI does
    text: TextOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    store: bool | None = None
    stream: bool | None = None
    previous_response_id: str | None = Field(default=None, min_length=1)
    include: list[str] | None = None
    prompt_cache_key: str | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    background: bool | None = None
    conversation: Any = None

    @property
    def summary_mode(self) -> SummaryMode | None:
        if self.reasoning is None:
            return None
        return self.reasoning.summary or self.reasoning.generate_summary

    @property
    def wants_encrypted_reasoning(self) -> bool:
        return "reasoning.encrypted_content" in (self.include or ())


def parse_responses_request(body: bytes) -> ResponsesRequest:
    """Validate a ``/v1/responses`` body; every failure is an ``InvalidRequest`` naming the field."""
    try:
        req = ResponsesRequest.model_validate_json(body)
    except ValidationError as exc:
        raise validation_error_to_invalid_request(exc, api="Responses") from None
    if req.background:
        raise InvalidRequest(
            "Background responses are not supported by this gateway: omit 'background' (or set it to false) "
            "and wait for the answer, or stream it.",
            param="background",
        )
    if req.conversation is not None:
        raise InvalidRequest(
            "Conversations are not supported by this gateway: send the history in 'input', or chain "
            "responses with 'previous_response_id'.",
            param="conversation",
        )
    if req.model is None and req.previous_response_id is None:
        raise InvalidRequest("Missing required parameter: 'model'.", param="model")
    return req
