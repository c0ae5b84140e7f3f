"""Inbound OpenAI request bodies as pydantic models, validated once at the door.

Rules:
* Unknown fields are ignored (clients send ``logprobs``, ``metadata``, ``store``…); wrong types are errors
  (strict mode: ``"0.5"`` is not a temperature, ``true`` is not a number).
* Every union carries a callable discriminator whose tags are written ``<like-this>``. pydantic puts the
  tag into an error's location, and the angle brackets let ``parse_chat_request`` drop it cleanly when it
  turns the location into OpenAI's ``param`` (``messages[0].content[1].image_url``).
* ``parse_chat_request`` is the only entry point; it raises ``errors.InvalidRequest`` with a message in
  OpenAI's wording and ``param`` set.
* Numbers are bounded where they are declared: Google's token counts and seed are 32-bit, and free-form
  JSON (tool schemas) may hold only integers the JSON encoder can write back (``JsonObject``). A number out
  of range is the client's 400 naming the field, never the encoder's 500 on the way upstream.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
)
from pydantic_core import PydanticCustomError

from ..errors import InvalidRequest


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


# --- numbers ---------------------------------------------------------------------------------------

INT32_MAX = 2**31 - 1  # Gemini's maxOutputTokens, thinkingBudget and seed are int32
# What orjson can write: a bigger int makes it raise on the way upstream (or into an echo of the request).
JSON_INT_MIN, JSON_INT_MAX = -(2**63), 2**64 - 1
OUT_OF_RANGE = "json_number_out_of_range"  # the error type _describe words; ctx["path"] extends the param

# A model name travels on in response headers (X-Mapped-Model) and upstream URLs: a control character there
# would split or break the header (a newline made mitmproxy drop the answer and the client wait forever),
# and a name of many kilobytes makes a request line the relay refuses. Real model names are a few dozen.
MODEL_NAME_MAX = 256
ModelName = Annotated[str, Field(min_length=1, max_length=MODEL_NAME_MAX, pattern=r"^[^\x00-\x1f\x7f]*$")]
TokenCount = Annotated[int, Field(ge=1, le=INT32_MAX)]
Seed = Annotated[int, Field(ge=-(2**31), le=INT32_MAX)]


def _numbers_in_range(value: Any) -> Any:
    """Free-form JSON (a tool's parameters schema…) holds no integer beyond 64 bits. Checked by writing it
    (C speed; a Python walk of every schema node cost a Codex request ~0.4 ms), and walked only to name the
    offender. A number that overflowed to infinity (``1e999``) passes: the encoder writes it as ``null``."""
    try:
        orjson.dumps(value)
    except orjson.JSONEncodeError:
        if (found := _out_of_range(value)) is None:  # not expected from parsed JSON; still the client's
            raise PydanticCustomError("json_unwritable", "cannot be written back as JSON") from None
        path, number = found
        details = {"path": path, "number": number}
        raise PydanticCustomError(OUT_OF_RANGE, "number out of range", details) from None
    return value


def _out_of_range(value: Any) -> tuple[str, int] | None:
    """The path (``.properties.n.maximum``) to the first integer beyond 64 bits and that integer, or None.
    Recursion is bounded: the JSON parser refuses nesting deeper than a few hundred levels."""
    kind = type(value)
    if kind is int:
        return None if JSON_INT_MIN <= value <= JSON_INT_MAX else ("", value)
    if kind is dict:
        for key, item in value.items():
            if (found := _out_of_range(item)) is not None:
                return f".{key}{found[0]}", found[1]
    elif kind is list:
        for index, item in enumerate(value):
            if (found := _out_of_range(item)) is not None:
                return f"[{index}]{found[0]}", found[1]
    return None


JsonObject = Annotated[dict[str, Any], AfterValidator(_numbers_in_range)]


# --- discriminators: each returns a "<tag>" or None (None = "not even the right JSON type") ---------


def _dict_tag(key: str, aliases: dict[str, str] | None = None) -> Callable[[Any], str | None]:
    def tag(value: Any) -> str | None:
        if isinstance(value, BaseModel):
            value = {key: getattr(value, key, None)}
        if not isinstance(value, dict) or not isinstance(value.get(key), str):
            return None
        found = value[key]
        return f"<{(aliases or {}).get(found, found)}>"

    tag.__name__ = key  # pydantic reports the discriminator by this name ("role()"), read back in _describe
    return tag


def _str_or_list(value: Any) -> str | None:
    if isinstance(value, str):
        return "<str>"
    return "<list>" if isinstance(value, list) else None


def _str_or_object(value: Any) -> str | None:
    if isinstance(value, str):
        return "<str>"
    return "<object>" if isinstance(value, dict | BaseModel) else None


# --- content parts ---------------------------------------------------------------------------------


class TextPart(_Model):
    type: Literal["text", "input_text"]
    text: str


def _url_string_to_object(value: Any) -> Any:
    # Some clients send "image_url": "https://…" instead of {"url": …}; the intent is unambiguous.
    return {"url": value} if isinstance(value, str) else value


class ImageUrl(_Model):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImageUrlPart(_Model):
    type: Literal["image_url"]
    image_url: Annotated[ImageUrl, BeforeValidator(_url_string_to_object)]


class InputAudio(_Model):
    data: str
    format: str


class InputAudioPart(_Model):
    type: Literal["input_audio"]
    input_audio: InputAudio


class FileData(_Model):
    file_data: str | None = None
    file_id: str | None = None
    filename: str | None = None


class FilePart(_Model):
    type: Literal["file"]
    file: FileData


class RefusalPart(_Model):
    type: Literal["refusal"]
    refusal: str


ContentPart = Annotated[
    Annotated[TextPart, Tag("<text>")]
    | Annotated[ImageUrlPart, Tag("<image_url>")]
    | Annotated[InputAudioPart, Tag("<input_audio>")]
    | Annotated[FilePart, Tag("<file>")]
    | Annotated[RefusalPart, Tag("<refusal>")],
    Discriminator(_dict_tag("type", {"input_text": "text"})),
]
Content = Annotated[
    Annotated[str, Tag("<str>")] | Annotated[list[ContentPart], Tag("<list>")],
    Discriminator(_str_or_list),
]


# --- messages --------------------------------------------------------------------------------------


class FunctionCall(_Model):
    name: str
    arguments: str


class ToolCall(_Model):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall
    # Google's OpenAI-compatible API (and gateways copying it) carry the thought signature here:
    # {"google": {"thought_signature": "..."}}; read when the id carries none.
    extra_content: dict[str, Any] | None = None


class SystemMessage(_Model):
    role: Literal["system"]
    content: Content
    name: str | None = None


class DeveloperMessage(_Model):
    role: Literal["developer"]
    content: Content
    name: str | None = None


class UserMessage(_Model):
    role: Literal["user"]
    content: Content
    name: str | None = None


class AssistantImage(_Model):
    """An image of an earlier answer, as this gateway sent it (OpenRouter's ``images`` entry); clients that
    echo the assistant message whole send it back with its ``extra_content.google.thought_signature``."""

    type: Literal["image_url"] = "image_url"
    image_url: Annotated[ImageUrl, BeforeValidator(_url_string_to_object)]
    extra_content: dict[str, Any] | None = None


class AssistantMessage(_Model):
    role: Literal["assistant"]
    content: Content | None = None
    images: list[AssistantImage] | None = None
    tool_calls: list[ToolCall] | None = None
    function_call: FunctionCall | None = None
    reasoning_content: str | None = None
    refusal: str | None = None
    name: str | None = None


class ToolMessage(_Model):
    role: Literal["tool"]
    content: Content
    tool_call_id: str


class FunctionMessage(_Model):
    role: Literal["function"]
    content: str | None = None
    name: str


Message = Annotated[
    Annotated[SystemMessage, Tag("<system>")]
    | Annotated[DeveloperMessage, Tag("<developer>")]
    | Annotated[UserMessage, Tag("<user>")]
    | Annotated[AssistantMessage, Tag("<assistant>")]
    | Annotated[ToolMessage, Tag("<tool>")]
    | Annotated[FunctionMessage, Tag("<function>")],
    Discriminator(_dict_tag("role")),
]


# --- tools, options --------------------------------------------------------------------------------


class FunctionDefinition(_Model):
    name: str = Field(min_length=1)
    description: str | None = None
    parameters: JsonObject | None = None
    strict: bool | None = None


class Tool(_Model):
    type: Literal["function"]
    function: FunctionDefinition


class FunctionName(_Model):
    name: str


class NamedToolChoice(_Model):
    type: Literal["function"]
    function: FunctionName


ToolChoice = Annotated[
    Annotated[Literal["none", "auto", "required"], Tag("<str>")]
    | Annotated[NamedToolChoice, Tag("<object>")],
    Discriminator(_str_or_object),
]
FunctionCallChoice = Annotated[
    Annotated[Literal["none", "auto"], Tag("<str>")] | Annotated[FunctionName, Tag("<object>")],
    Discriminator(_str_or_object),
]


class JsonSchemaFormat(_Model):
    name: str
    description: str | None = None
    schema_: JsonObject | None = Field(default=None, alias="schema")
    strict: bool | None = None


class TextFormat(_Model):
    type: Literal["text"]


class JsonObjectFormat(_Model):
    type: Literal["json_object"]


class JsonSchemaResponseFormat(_Model):
    type: Literal["json_schema"]
    json_schema: JsonSchemaFormat


ResponseFormat = Annotated[
    Annotated[TextFormat, Tag("<text>")]
    | Annotated[JsonObjectFormat, Tag("<json_object>")]
    | Annotated[JsonSchemaResponseFormat, Tag("<json_schema>")],
    Discriminator(_dict_tag("type")),
]
Stop = Annotated[
    Annotated[str, Tag("<str>")] | Annotated[list[str], Tag("<list>")],
    Discriminator(_str_or_list),
]


ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh"]


class ThinkingOptions(_Model):
    type: Literal["enabled", "disabled"]
    budget_tokens: int | None = Field(default=None, ge=0, le=INT32_MAX)


class StreamOptions(_Model):
    include_usage: bool | None = None


class ImageConfig(_Model):
    """OpenRouter's ``image_config`` for image output in chat (Gemini's ``imageConfig``)."""

    aspect_ratio: (
        Literal["1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"] | None
    ) = None
    image_size: Literal["1K", "2K", "4K"] | None = None


class ChatCompletionRequest(_Model):
    model: ModelName
    messages: list[Message] = Field(min_length=1)
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    functions: list[FunctionDefinition] | None = None
    function_call: FunctionCallChoice | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: TokenCount | None = None
    max_completion_tokens: TokenCount | None = None
    stop: Stop | None = None
    n: int | None = Field(default=None, ge=1, le=128)
    seed: Seed | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    # Not used (Gemini has no logprobs or token biases), but checked as OpenAI checks them.
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    logit_bias: dict[str, Annotated[int, Field(ge=-100, le=100)]] | None = None
    response_format: ResponseFormat | None = None
    reasoning_effort: ReasoningEffort | None = None
    thinking: ThinkingOptions | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    user: str | None = None
    # Image output: an image model answers images anyway, so ``modalities`` is accepted and not sent
    # (Cloud Code answered 500 to responseModalities beside imageConfig, CLIProxyAPI#4751).
    modalities: list[Literal["text", "image", "audio"]] | None = None
    image_config: ImageConfig | None = None


# --- parsing and error wording ---------------------------------------------------------------------

_JSON_TYPES: dict[type, str] = {str: "a string", bool: "a boolean", int: "an integer", float: "a number"}
_EXPECTED = {
    "string_type": "a string",
    "float_type": "a number",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "bool_type": "a boolean",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "list_type": "an array",
}
_BOUNDS = {"greater_than_equal": ">=", "less_than_equal": "<=", "greater_than": ">", "less_than": "<"}
_DISCRIMINATORS = {"role()": "role", "type()": "type"}  # discriminator name -> the field it reads
_UNION_SHAPES = {"_str_or_list()": "a string or an array", "_str_or_object()": "a string or an object"}


def parse_chat_request(body: bytes) -> ChatCompletionRequest:
    """Validate a ``/v1/chat/completions`` body; every failure is an ``InvalidRequest`` naming the field."""
    try:
        return ChatCompletionRequest.model_validate_json(body)
    except ValidationError as exc:
        raise validation_error_to_invalid_request(exc) from None


def validation_error_to_invalid_request(
    exc: ValidationError, api: str = "chat completions"
) -> InvalidRequest:
    """The first problem of a failed validation, in OpenAI's wording; ``api`` names the API in hints."""
    error = exc.errors(include_url=False)[0]  # OpenAI reports one problem at a time
    if error["type"] == "json_invalid":
        reason = error.get("ctx", {}).get("error", "invalid JSON")
        return InvalidRequest(
            "We could not parse the JSON body of your request. (HINT: the gateway expects a JSON object "
            f"following the OpenAI {api} API; the parser said: {reason}.)"
        )
    if not error["loc"]:
        return InvalidRequest(
            f"Invalid request body: expected a JSON object, but got {_json_type(error['input'])} instead."
        )
    message, param = _describe(error)
    return InvalidRequest(message, param=param)


def _describe(error: Any) -> tuple[str, str]:
    kind, value, ctx = error["type"], error["input"], error.get("ctx", {})
    param = param_from_loc(error["loc"])
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return _describe_tag(kind, value, ctx, param)
    if kind == OUT_OF_RANGE:
        param += ctx.get("path", "")
        return (
            f"Invalid '{param}': {_short(ctx.get('number'))} is out of range (integers must fit in 64 bits).",
            param,
        )
    if kind == "missing":
        return f"Missing required parameter: '{param}'.", param
    if kind in _EXPECTED:
        return (
            f"Invalid type for '{param}': expected {_EXPECTED[kind]}, but got {_json_type(value)} instead.",
            param,
        )
    if kind == "literal_error":
        return f"Invalid value: {_short(value)}. Supported values are: {ctx.get('expected')}.", param
    if kind in _BOUNDS:
        limit = next(iter(ctx.values()), "?")
        return (
            f"Invalid '{param}': expected a value {_BOUNDS[kind]} {limit}, but got {_short(value)} instead.",
            param,
        )
    if kind == "too_short":
        return (
            f"Invalid '{param}': empty array. Expected an array with minimum length "
            f"{ctx.get('min_length', 1)}, but got an empty array instead.",
            param,
        )
    if kind == "string_pattern_mismatch":  # only ModelName has a pattern
        return f"Invalid '{param}': control characters (such as a newline) are not allowed here.", param
    if kind == "string_too_long":
        return f"Invalid '{param}': longer than {ctx.get('max_length')} characters.", param
    if kind == "string_too_short":
        return f"Invalid '{param}': empty string. Expected a non-empty string.", param
    return f"Invalid '{param}': {error['msg']}.", param


def _describe_tag(kind: str, value: Any, ctx: dict[str, Any], param: str) -> tuple[str, str]:
    name = ctx.get("discriminator", "")
    if name in _UNION_SHAPES:  # a str-or-list / str-or-object union got some other JSON type
        return (
            f"Invalid type for '{param}': expected {_UNION_SHAPES[name]}, "
            f"but got {_json_type(value)} instead.",
            param,
        )
    field = _DISCRIMINATORS[name]
    if not isinstance(value, dict):
        return f"Invalid type for '{param}': expected an object, but got {_json_type(value)} instead.", param
    param = f"{param}.{field}"
    if kind == "union_tag_invalid":
        supported = ctx.get("expected_tags", "").replace("<", "").replace(">", "")
        return f"Invalid value: {_short(value[field])}. Supported values are: {supported}.", param
    if field not in value:
        return f"Missing required parameter: '{param}'.", param
    return (
        f"Invalid type for '{param}': expected a string, but got {_json_type(value[field])} instead.",
        param,
    )


def param_from_loc(loc: tuple[int | str, ...]) -> str:
    """``('messages', 0, '<user>', 'content', '<list>', 1, '<image_url>', 'image_url')`` →
    ``messages[0].content[1].image_url``."""
    out = ""
    for item in loc:
        if isinstance(item, int):
            out += f"[{item}]"
        elif not (item.startswith("<") and item.endswith(">")):
            out += f".{item}" if out else item
    return out


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return _JSON_TYPES.get(type(value), "a value")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
