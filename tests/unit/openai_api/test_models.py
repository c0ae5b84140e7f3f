"""parse_chat_request: what real clients send parses; every rejection is a 400 naming the field."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from antigravity_gw.errors import InvalidRequest
from antigravity_gw.openai_api.models import (
    AssistantMessage,
    ChatCompletionRequest,
    DeveloperMessage,
    FunctionMessage,
    ImageUrlPart,
    JsonSchemaResponseFormat,
    NamedToolChoice,
    SystemMessage,
    TextPart,
    ToolMessage,
    UserMessage,
    param_from_loc,
    parse_chat_request,
)

USER = {"role": "user", "content": "hi"}


def body(**fields: Any) -> bytes:
    return orjson.dumps({"model": "gpt-4o", "messages": [USER], **fields})


def rejected(raw: bytes) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        parse_chat_request(raw)
    assert info.value.status == 400
    assert info.value.to_openai()["error"]["type"] == "invalid_request_error"
    return info.value


def test_minimal_request_leaves_every_option_unset() -> None:
    req = parse_chat_request(body())
    assert req.model == "gpt-4o"
    assert req.messages == [UserMessage(role="user", content="hi")]
    unset = {k for k, v in req.model_dump().items() if v is None}
    assert unset == set(ChatCompletionRequest.model_fields) - {"model", "messages"}


def test_every_role_parses_to_its_own_model() -> None:
    messages = [
        {"role": "system", "content": "s"},
        {"role": "developer", "content": [{"type": "text", "text": "d"}]},
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "u"},
                {"type": "image_url", "image_url": {"url": "https://x/a.png", "detail": "low"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "reasoning_content": "r",
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "ok"},
        {"role": "function", "name": "f", "content": "ok"},
    ]
    req = parse_chat_request(orjson.dumps({"model": "m", "messages": messages}))
    assert [type(m) for m in req.messages] == [
        SystemMessage,
        DeveloperMessage,
        UserMessage,
        AssistantMessage,
        ToolMessage,
        FunctionMessage,
    ]
    user = req.messages[2]
    assert isinstance(user, UserMessage) and isinstance(user.content, list)
    assert isinstance(user.content[0], TextPart) and user.content[0].type == "input_text"
    assert isinstance(user.content[1], ImageUrlPart) and user.content[1].image_url.detail == "low"
    assistant = req.messages[3]
    assert isinstance(assistant, AssistantMessage) and assistant.reasoning_content == "r"
    assert assistant.tool_calls is not None and assistant.tool_calls[0].function.name == "f"


def test_real_client_extras_are_ignored_and_nulls_accepted() -> None:
    req = parse_chat_request(
        body(
            temperature=None,
            logprobs=False,
            metadata={"a": "b"},
            store=False,
            service_tier="auto",
            stream=True,
            stream_options={"include_usage": True, "include_obfuscation": False},
            messages=[{"role": "user", "content": "x", "cache_control": {"type": "ephemeral"}}],
        )
    )
    assert req.temperature is None and req.stream is True
    assert req.stream_options is not None and req.stream_options.include_usage is True


def test_options_of_every_shape_parse() -> None:
    req = parse_chat_request(
        body(
            tools=[
                {
                    "type": "function",
                    "function": {"name": "f", "parameters": {"type": "object"}, "strict": True},
                }
            ],
            tool_choice={"type": "function", "function": {"name": "f"}},
            parallel_tool_calls=False,
            temperature=1,
            top_p=0.5,
            max_tokens=10,
            max_completion_tokens=20,
            stop=["a", "b"],
            n=2,
            seed=7,
            presence_penalty=-1.5,
            frequency_penalty=2,
            reasoning_effort="xhigh",
            thinking={"type": "enabled", "budget_tokens": 2048},
            user="u1",
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"type": "object"}, "strict": True},
            },
        )
    )
    assert isinstance(req.tool_choice, NamedToolChoice) and req.tool_choice.function.name == "f"
    assert req.temperature == 1.0 and isinstance(req.temperature, float)
    assert req.stop == ["a", "b"]
    assert isinstance(req.response_format, JsonSchemaResponseFormat)
    assert req.response_format.json_schema.schema_ == {"type": "object"}
    assert req.thinking is not None and req.thinking.budget_tokens == 2048


def test_image_url_given_as_a_bare_string_is_accepted() -> None:
    req = parse_chat_request(
        body(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": "https://x/y.png"}]}])
    )
    part = req.messages[0].content[0]  # type: ignore[index,union-attr]
    assert isinstance(part, ImageUrlPart) and part.image_url.url == "https://x/y.png"


@pytest.mark.parametrize(
    ("raw", "message", "param"),
    [
        (b"{not json", "We could not parse the JSON body of your request.", None),
        (b"", "We could not parse the JSON body of your request.", None),
        (b"[1, 2]", "Invalid request body: expected a JSON object, but got an array instead.", None),
        (b'"text"', "Invalid request body: expected a JSON object, but got a string instead.", None),
        (orjson.dumps({"messages": [USER]}), "Missing required parameter: 'model'.", "model"),
        (orjson.dumps({"model": "m"}), "Missing required parameter: 'messages'.", "messages"),
        (
            orjson.dumps({"model": "m", "messages": []}),
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an "
            "empty array instead.",
            "messages",
        ),
        (
            orjson.dumps({"model": 5, "messages": [USER]}),
            "Invalid type for 'model': expected a string, but got an integer instead.",
            "model",
        ),
        (
            orjson.dumps({"model": "m", "messages": [{"role": "robot", "content": "x"}]}),
            "Invalid value: 'robot'. Supported values are: 'system', 'developer', 'user', "
            "'assistant', 'tool', 'function'.",
            "messages[0].role",
        ),
        (
            orjson.dumps({"model": "m", "messages": [USER, {"content": "x"}]}),
            "Missing required parameter: 'messages[1].role'.",
            "messages[1].role",
        ),
        (
            orjson.dumps({"model": "m", "messages": [{"role": None, "content": "x"}]}),
            "Invalid type for 'messages[0].role': expected a string, but got null instead.",
            "messages[0].role",
        ),
        (
            orjson.dumps({"model": "m", "messages": ["hi"]}),
            "Invalid type for 'messages[0]': expected an object, but got a string instead.",
            "messages[0]",
        ),
        (
            orjson.dumps({"model": "m", "messages": [{"role": "user", "content": 3}]}),
            "Invalid type for 'messages[0].content': expected a string or an array, but got an "
            "integer instead.",
            "messages[0].content",
        ),
        (
            orjson.dumps({"model": "m", "messages": [{"role": "user"}]}),
            "Missing required parameter: 'messages[0].content'.",
            "messages[0].content",
        ),
        (
            orjson.dumps(
                {"model": "m", "messages": [{"role": "user", "content": [{"type": "video", "video": {}}]}]}
            ),
            "Invalid value: 'video'. Supported values are: 'text', 'image_url', 'input_audio', "
            "'file', 'refusal'.",
            "messages[0].content[0].type",
        ),
        (
            orjson.dumps(
                {
                    "model": "m",
                    "messages": [
                        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": 1}}]}
                    ],
                }
            ),
            "Invalid type for 'messages[0].content[0].image_url.url': expected a string, but got an "
            "integer instead.",
            "messages[0].content[0].image_url.url",
        ),
        (
            orjson.dumps(
                {
                    "model": "m",
                    "messages": [
                        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text"}]}
                    ],
                }
            ),
            "Missing required parameter: 'messages[0].content[1].text'.",
            "messages[0].content[1].text",
        ),
        (
            orjson.dumps({"model": "m", "messages": [{"role": "tool", "content": "x"}]}),
            "Missing required parameter: 'messages[0].tool_call_id'.",
            "messages[0].tool_call_id",
        ),
        (
            orjson.dumps(
                {
                    "model": "m",
                    "messages": [
                        {
                            "role": "assistant",
                            "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": {}}}],
                        }
                    ],
                }
            ),
            "Invalid type for 'messages[0].tool_calls[0].function.arguments': expected a string, but "
            "got an object instead.",
            "messages[0].tool_calls[0].function.arguments",
        ),
        (
            body(temperature="0.7"),
            "Invalid type for 'temperature': expected a number, but got a string instead.",
            "temperature",
        ),
        (
            body(temperature=True),
            "Invalid type for 'temperature': expected a number, but got a boolean instead.",
            "temperature",
        ),
        (
            body(temperature=2.5),
            "Invalid 'temperature': expected a value <= 2.0, but got 2.5 instead.",
            "temperature",
        ),
        (body(n=0), "Invalid 'n': expected a value >= 1, but got 0 instead.", "n"),
        (
            body(max_tokens=1.5),
            "Invalid type for 'max_tokens': expected an integer, but got a number instead.",
            "max_tokens",
        ),
        (
            body(stop=5),
            "Invalid type for 'stop': expected a string or an array, but got an integer instead.",
            "stop",
        ),
        (
            body(tool_choice="sometimes"),
            "Invalid value: 'sometimes'. Supported values are: 'none', 'auto' or 'required'.",
            "tool_choice",
        ),
        (
            body(tool_choice=[]),
            "Invalid type for 'tool_choice': expected a string or an object, but got an array instead.",
            "tool_choice",
        ),
        (
            body(tools=[{"type": "web_search"}]),
            "Invalid value: 'web_search'. Supported values are: 'function'.",
            "tools[0].type",
        ),
        (
            body(tools=[{"type": "function", "function": {"name": ""}}]),
            "Invalid 'tools[0].function.name': empty string. Expected a non-empty string.",
            "tools[0].function.name",
        ),
        (
            body(response_format={"type": "xml"}),
            "Invalid value: 'xml'. Supported values are: 'text', 'json_object', 'json_schema'.",
            "response_format.type",
        ),
        (
            body(reasoning_effort="max"),
            "Invalid value: 'max'. Supported values are: 'none', 'minimal', 'low', 'medium', 'high' "
            "or 'xhigh'.",
            "reasoning_effort",
        ),
        (
            body(stream="yes"),
            "Invalid type for 'stream': expected a boolean, but got a string instead.",
            "stream",
        ),
    ],
)
def test_rejections_name_the_field(raw: bytes, message: str, param: str | None) -> None:
    err = rejected(raw)
    assert err.param == param
    assert err.message.startswith(message), err.message


def test_invalid_json_error_says_what_the_parser_saw() -> None:
    err = rejected(b'{"model": "m",}')
    assert "the parser said:" in err.message
    assert err.to_openai() == {
        "error": {
            "message": err.message,
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_request",
        }
    }


@pytest.mark.parametrize(
    ("loc", "param"),
    [
        (("temperature",), "temperature"),
        (
            ("messages", 0, "<user>", "content", "<list>", 1, "<image_url>", "image_url"),
            "messages[0].content[1].image_url",
        ),
        (("messages", 3, "<function>", "name"), "messages[3].name"),
        (("tools", 2, "function", "name"), "tools[2].function.name"),
    ],
)
def test_param_from_loc_drops_union_tags(loc: tuple[int | str, ...], param: str) -> None:
    assert param_from_loc(loc) == param


# --- numbers out of range: a 400 naming the field, never the JSON encoder's 500 later -----------------

HUGE = b"1" + b"0" * 30  # 10**30: beyond 64 bits, so orjson could not write it upstream


def with_number(number: bytes, **fields: Any) -> bytes:
    """``body(**fields)`` with every "N" string replaced by the raw JSON number (orjson cannot write it)."""
    return body(**fields).replace(b'"N"', number)


@pytest.mark.parametrize(
    ("number", "fields", "param"),
    [
        (HUGE, {"max_tokens": "N"}, "max_tokens"),
        (b"-1", {"max_completion_tokens": "N"}, "max_completion_tokens"),
        (HUGE, {"max_completion_tokens": "N"}, "max_completion_tokens"),
        (HUGE, {"seed": "N"}, "seed"),
        (b"-" + HUGE, {"seed": "N"}, "seed"),
        (HUGE, {"n": "N"}, "n"),
        (HUGE, {"top_logprobs": "N"}, "top_logprobs"),
        (b"-1", {"top_logprobs": "N"}, "top_logprobs"),
        (HUGE, {"logit_bias": {"50256": "N"}}, "logit_bias.50256"),
        (HUGE, {"temperature": "N"}, "temperature"),
        (b"1e999", {"top_p": "N"}, "top_p"),
        (b"-1e999", {"presence_penalty": "N"}, "presence_penalty"),
        (HUGE, {"frequency_penalty": "N"}, "frequency_penalty"),
        (HUGE, {"thinking": {"type": "enabled", "budget_tokens": "N"}}, "thinking.budget_tokens"),
        (HUGE, {"tools": [{"type": "function", "function": {"name": "f", "parameters": {
            "type": "object", "properties": {"a": {"type": "integer", "maximum": "N"}}}}}]},
         "tools[0].function.parameters.properties.a.maximum"),
        (HUGE, {"functions": [{"name": "f", "parameters": {"enum": [1, "N"]}}]},
         "functions[0].parameters.enum[1]"),
        (HUGE, {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {
            "minimum": "N"}}}}, "response_format.json_schema.schema.minimum"),
    ],
)
def test_numbers_out_of_range_are_400_naming_the_field(number: bytes, fields: dict[str, Any],
                                                       param: str) -> None:
    with pytest.raises(InvalidRequest) as e:
        parse_chat_request(with_number(number, **fields))
    assert e.value.status == 400 and e.value.param == param
    assert param in e.value.message


def test_numbers_in_range_pass_and_64_bit_integers_in_schemas_are_kept() -> None:
    req = parse_chat_request(with_number(b"18446744073709551615", seed=-1, max_tokens=2**31 - 1,
                                         logit_bias={"1": -100},
                                         tools=[{"type": "function", "function": {"name": "f", "parameters": {
                                             "maximum": "N"}}}]))
    assert req.seed == -1 and req.max_tokens == 2**31 - 1
    assert req.tools is not None and req.tools[0].function.parameters == {"maximum": 2**64 - 1}
    orjson.dumps(req.tools[0].function.parameters)  # what the encoder can write


@pytest.mark.parametrize("model", ["a\nb", "gemini\r\nx-injected: 1", "m\x00", "x" * 257])
def test_a_model_name_that_cannot_travel_in_a_header_or_url_is_400(model: str) -> None:
    with pytest.raises(InvalidRequest) as e:
        parse_chat_request(orjson.dumps({"model": model, "messages": [USER]}))
    assert e.value.param == "model"


def test_model_names_with_slashes_colons_and_unicode_pass() -> None:
    for model in ("models/gemini-2.5-flash", "ft:gpt-4o:org::id", "é-model", "x" * 256):
        assert parse_chat_request(orjson.dumps({"model": model, "messages": [USER]})).model == model
