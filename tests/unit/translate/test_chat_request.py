"""chat_request_to_gemini: messages, parts, images, generation config, thinking; whole values asserted."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from antigravity_gw.errors import InvalidRequest
from antigravity_gw.openai_api.models import ChatCompletionRequest, parse_chat_request
from antigravity_gw.translate.chat_request import chat_request_to_gemini
from antigravity_gw.translate.parts import InlineImage, image_url_params, parse_data_url

PNG = "iVBORw0KGgo="
IMAGES = {"https://img.example/cat.png?sig=secret": InlineImage("image/png", PNG)}


def request(messages: list[dict[str, Any]], **fields: Any) -> ChatCompletionRequest:
    return parse_chat_request(orjson.dumps({"model": "gpt-4o", "messages": messages, **fields}))


def translate(
    messages: list[dict[str, Any]], *, model: str = "gemini-2.0-flash", images: Any = None, **fields: Any
) -> dict[str, Any]:
    return chat_request_to_gemini(request(messages, **fields), model=model, images=images)


def rejected(messages: list[dict[str, Any]], **fields: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        translate(messages, images=IMAGES, **fields)
    return info.value


def test_minimal_request_is_only_contents() -> None:
    assert translate([{"role": "user", "content": "Hi"}]) == {
        "contents": [{"role": "user", "parts": [{"text": "Hi"}]}]
    }


def test_full_request_keys_come_in_cache_friendly_order() -> None:
    out = translate(
        [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}],
        tools=[{"type": "function", "function": {"name": "f"}}],
        tool_choice="auto",
        temperature=0.2,
    )
    assert list(out) == ["systemInstruction", "tools", "toolConfig", "generationConfig", "contents"]


def test_system_and_developer_messages_become_system_instruction_verbatim_in_order() -> None:
    out = translate(
        [
            {"role": "system", "content": "Today is 2026-08-21.\nCurrent time: 10:00"},
            {"role": "user", "content": "Hi"},
            {
                "role": "developer",
                "content": [
                    {"type": "text", "text": "Be brief."},
                    {"type": "input_text", "text": "Use Markdown."},
                ],
            },
            {"role": "system", "content": ""},
        ]
    )
    assert out == {
        "systemInstruction": {
            "parts": [
                {"text": "Today is 2026-08-21.\nCurrent time: 10:00"},
                {"text": "Be brief.\nUse Markdown."},
            ]
        },
        "contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
    }


def test_roles_map_and_consecutive_turns_merge() -> None:
    out = translate(
        [
            {"role": "user", "content": "a"},
            {"role": "user", "content": [{"type": "text", "text": "b"}, {"type": "text", "text": ""}]},
            {"role": "assistant", "content": "c"},
            {
                "role": "assistant",
                "content": [{"type": "text", "text": "d"}],
                "reasoning_content": "hidden thoughts",
            },
            {"role": "user", "content": ""},
            {"role": "assistant", "content": None, "refusal": "I can't help with that."},
            {"role": "user", "content": "e"},
        ]
    )
    assert out["contents"] == [
        {"role": "user", "parts": [{"text": "a"}, {"text": "b"}]},
        {"role": "model", "parts": [{"text": "c"}, {"text": "d"}, {"text": "I can't help with that."}]},
        {"role": "user", "parts": [{"text": "e"}]},
    ]


def test_only_system_messages_are_answered_as_the_user_turn() -> None:
    """OpenAI answers a conversation that is only a system (or developer) prompt; Gemini needs a turn."""
    out = translate([{"role": "system", "content": "You are helpful."},
                     {"role": "developer", "content": "Say hi."}, {"role": "user", "content": ""}])
    assert "systemInstruction" not in out
    assert out["contents"] == [{"role": "user", "parts": [{"text": "You are helpful."}, {"text": "Say hi."}]}]


def test_only_empty_messages_are_rejected() -> None:
    err = rejected([{"role": "user", "content": ""}])
    assert err.param == "messages"
    assert err.message.startswith("Invalid 'messages': Gemini needs at least one user or assistant message")


def test_google_thought_signature_field_is_read_when_the_id_has_none() -> None:
    out = translate([
        {"role": "user", "content": "hi"},
        {"role": "assistant", "tool_calls": [{"id": "foreign-1", "type": "function",
                                             "function": {"name": "f", "arguments": "{}"},
                                             "extra_content": {"google": {
                                                 "thought_signature": "R09PRw=="}}}]},
        {"role": "tool", "tool_call_id": "foreign-1", "content": "ok"},
    ])
    assert out["contents"][1]["parts"] == [{"functionCall": {"name": "f", "args": {}},
                                            "thoughtSignature": "R09PRw=="}]


def test_images_audio_and_files_become_inline_data() -> None:
    out = translate(
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look:"},
                    {
                        "type": "image_url",
                        "image_url": {"url": f"data:image/jpeg;base64,{PNG}", "detail": "high"},
                    },
                    {"type": "image_url", "image_url": {"url": "https://img.example/cat.png?sig=secret"}},
                    {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                    {
                        "type": "file",
                        "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"},
                    },
                ],
            }
        ],
        images=IMAGES,
    )
    assert out["contents"] == [
        {
            "role": "user",
            "parts": [
                {"text": "Look:"},
                {"inlineData": {"mimeType": "image/jpeg", "data": PNG}},
                {"inlineData": {"mimeType": "image/png", "data": PNG}},
                {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
                {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}},
            ],
        }
    ]


@pytest.mark.parametrize(
    ("part", "message", "param"),
    [
        (
            {"type": "image_url", "image_url": {"url": "https://img.example/missing.png"}},
            "The image at 'messages[0].content[1].image_url' could not be fetched.",
            "messages[0].content[1].image_url",
        ),
        (
            {"type": "image_url", "image_url": {"url": "file:///etc/passwd"}},
            "Invalid image URL in 'messages[0].content[1].image_url': expected an http(s) URL or a "
            "base64 data URL.",
            "messages[0].content[1].image_url",
        ),
        (
            {"type": "image_url", "image_url": {"url": "data:image/png,rawbytes"}},
            "Invalid image data URL in 'messages[0].content[1].image_url': only base64-encoded data "
            "URLs are supported.",
            "messages[0].content[1].image_url",
        ),
        (
            {"type": "image_url", "image_url": {"url": "data:text/html;base64,PGI+"}},
            "Invalid image data URL in 'messages[0].content[1].image_url': 'text/html' is not an image type.",
            "messages[0].content[1].image_url",
        ),
        (
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,"}},
            "Invalid image data URL in 'messages[0].content[1].image_url': the data URL carries no data.",
            "messages[0].content[1].image_url",
        ),
        (
            {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "midi"}},
            "Invalid value: 'midi'. Supported values are: 'wav', 'mp3', 'aiff', 'aac', 'ogg', 'flac'.",
            "messages[0].content[1].input_audio.format",
        ),
        (
            {"type": "file", "file": {"file_id": "file-123"}},
            "'messages[0].content[1].file' must carry file_data (a base64 data URL); uploaded file "
            "ids are not supported.",
            "messages[0].content[1].file",
        ),
    ],
)
def test_bad_parts_are_400_pointing_at_the_part(part: dict[str, Any], message: str, param: str) -> None:
    err = rejected([{"role": "user", "content": [{"type": "text", "text": "see"}, part]}])
    assert (err.message, err.param) == (message, param)


def test_images_are_not_allowed_in_system_messages() -> None:
    err = rejected(
        [
            {
                "role": "system",
                "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}],
            },
            {"role": "user", "content": "x"},
        ]
    )
    assert err.param == "messages[0].content[0].type"


def test_image_url_params_lists_each_http_url_once_in_order() -> None:
    req = request(
        [
            {"role": "system", "content": "s"},
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": "https://a.example/1.png"}},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
                    {"type": "image_url", "image_url": {"url": "HTTP://b.example/2.png"}},
                ],
            },
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": "https://a.example/1.png"}}],
            },
            {"role": "user", "content": "https://not-an-image-part.example/x.png"},
        ]
    )
    assert list(image_url_params(req)) == ["https://a.example/1.png", "HTTP://b.example/2.png"]
    assert image_url_params(req) == {
        "https://a.example/1.png": "messages[1].content[0].image_url",
        "HTTP://b.example/2.png": "messages[1].content[2].image_url",
    }


def test_parse_data_url_defaults_and_errors() -> None:
    assert parse_data_url("data:;base64,AAAA") == InlineImage("application/octet-stream", "AAAA")
    assert parse_data_url("DATA:Image/PNG;charset=x;base64,AAAA") == InlineImage("image/png", "AAAA")
    with pytest.raises(ValueError, match="expected a data URL"):
        parse_data_url("data:image/png;base64")


def test_tool_conversation_maps_calls_and_results() -> None:
    out = translate(
        [
            {"role": "user", "content": "weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                    },
                    {"id": "call_2", "type": "function", "function": {"name": "weather", "arguments": ""}},
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
            {
                "role": "tool",
                "tool_call_id": "call_2",
                "content": [
                    {"type": "text", "text": "[1, 2]"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
                ],
            },
            {"role": "user", "content": "thanks"},
        ]
    )
    assert out["contents"] == [
        {"role": "user", "parts": [{"text": "weather in Paris and Rome?"}]},
        {
            "role": "model",
            "parts": [
                {"text": "Checking."},
                {"functionCall": {"name": "weather", "args": {"city": "Paris"}}},
                {"functionCall": {"name": "weather", "args": {}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "weather", "response": {"output": {"temp": 21}}}},
                {"functionResponse": {"name": "weather", "response": {"output": "[1, 2]"}}},
                {"inlineData": {"mimeType": "image/png", "data": "AA=="}},
                {"text": "thanks"},
            ],
        },
    ]


def test_legacy_function_call_and_function_role() -> None:
    out = translate(
        [
            {"role": "user", "content": "time?"},
            {"role": "assistant", "content": None, "function_call": {"name": "now", "arguments": "{}"}},
            {"role": "function", "name": "now", "content": "12:00"},
        ]
    )
    assert out["contents"][1:] == [
        {"role": "model", "parts": [{"functionCall": {"name": "now", "args": {}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "now", "response": {"output": "12:00"}}}]},
    ]


@pytest.mark.parametrize(
    ("messages", "message", "param"),
    [
        (
            [{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "call_9", "content": "r"}],
            "Invalid 'messages[1].tool_call_id': messages with role 'tool' must answer a tool call "
            "of an earlier "
            "assistant message, and no tool call has the id 'call_9'.",
            "messages[1].tool_call_id",
        ),
        (
            [
                {"role": "user", "content": "x"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}
                    ],
                },
            ],
            "Invalid 'messages[1].tool_calls[0].function.arguments': not valid JSON.",
            "messages[1].tool_calls[0].function.arguments",
        ),
        (
            [
                {"role": "user", "content": "x"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}
                    ],
                },
            ],
            "Invalid 'messages[1].tool_calls[0].function.arguments': expected a JSON object.",
            "messages[1].tool_calls[0].function.arguments",
        ),
    ],
)
def test_broken_tool_history_is_400(messages: list[dict[str, Any]], message: str, param: str) -> None:
    err = rejected(messages)
    assert (err.message, err.param) == (message, param)


USER = [{"role": "user", "content": "x"}]


def test_generation_config_carries_only_what_was_set() -> None:
    out = translate(
        USER,
        temperature=0.3,
        top_p=0.9,
        max_tokens=100,
        stop="END",
        n=2,
        seed=42,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        user="u-1",
        stream=True,
        stream_options={"include_usage": True},
        parallel_tool_calls=True,
    )
    assert out["generationConfig"] == {
        "temperature": 0.3,
        "topP": 0.9,
        "maxOutputTokens": 100,
        "stopSequences": ["END"],
        "candidateCount": 2,
        "seed": 42,
        "presencePenalty": 0.5,
        "frequencyPenalty": -0.5,
    }
    assert b"u-1" not in orjson.dumps(out)


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    out = translate(USER, max_tokens=100, max_completion_tokens=200, stop=["a", "b"])
    assert out["generationConfig"] == {"maxOutputTokens": 200, "stopSequences": ["a", "b"]}


@pytest.mark.parametrize(
    ("response_format", "expected"),
    [
        ({"type": "text"}, None),
        ({"type": "json_object"}, {"responseMimeType": "application/json"}),
        ({"type": "json_schema", "json_schema": {"name": "x"}}, {"responseMimeType": "application/json"}),
        (
            {
                "type": "json_schema",
                "json_schema": {
                    "name": "x",
                    "strict": True,
                    "schema": {
                        "type": "object",
                        "properties": {"a": {"type": "integer"}},
                        "required": ["a"],
                        "additionalProperties": False,
                    },
                },
            },
            {
                "responseMimeType": "application/json",
                "responseSchema": {
                    "type": "OBJECT",
                    "properties": {"a": {"type": "INTEGER"}},
                    "required": ["a"],
                },
            },
        ),
    ],
)
def test_response_format(response_format: dict[str, Any], expected: dict[str, Any] | None) -> None:
    assert translate(USER, response_format=response_format).get("generationConfig") == expected


def test_bad_response_schema_is_400() -> None:
    err = rejected(
        USER,
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "date"}}},
    )
    assert err.param == "response_format.json_schema.schema"
    assert (
        err.message
        == "Invalid schema in 'response_format.json_schema.schema': unsupported schema type 'date'."
    )


@pytest.mark.parametrize(
    ("model", "fields", "expected"),
    [
        # models that think by default: thoughts are requested so reasoning_content can be returned
        ("gemini-2.5-flash", {}, {"includeThoughts": True}),
        ("gemini-3-pro-preview", {}, {"includeThoughts": True}),
        # Claude thinks only with a budget, and only when asked (a *-thinking model or the client)
        ("claude-sonnet-4-5-thinking", {}, {"includeThoughts": True, "thinkingBudget": 24576}),
        ("claude-sonnet-4-6", {}, None),
        ("claude-sonnet-4-6", {"reasoning_effort": "low"}, {"includeThoughts": True, "thinkingBudget": 4096}),
        (
            "claude-sonnet-4-6",
            {"thinking": {"type": "enabled"}},
            {"includeThoughts": True, "thinkingBudget": 24576},
        ),
        ("claude-opus-4-6-thinking", {"reasoning_effort": "none"}, None),
        ("gemini-2.0-flash", {}, None),
        ("gemini-2.5-flash-image", {}, None),
        # reasoning_effort → budgets (2.5, capped per family) or levels (3)
        (
            "gemini-2.5-flash",
            {"reasoning_effort": "minimal"},
            {"includeThoughts": True, "thinkingBudget": 1024},
        ),
        ("gemini-2.5-flash", {"reasoning_effort": "low"}, {"includeThoughts": True, "thinkingBudget": 4096}),
        (
            "gemini-2.5-flash",
            {"reasoning_effort": "medium"},
            {"includeThoughts": True, "thinkingBudget": 8192},
        ),
        (
            "gemini-2.5-flash",
            {"reasoning_effort": "high"},
            {"includeThoughts": True, "thinkingBudget": 24576},
        ),
        (
            "gemini-2.5-flash",
            {"reasoning_effort": "xhigh"},
            {"includeThoughts": True, "thinkingBudget": 24576},
        ),
        ("gemini-2.5-pro", {"reasoning_effort": "xhigh"}, {"includeThoughts": True, "thinkingBudget": 32768}),
        ("gemini-2.0-flash", {"reasoning_effort": "low"}, {"includeThoughts": True, "thinkingBudget": 4096}),
        (
            "gemini-3-pro-preview",
            {"reasoning_effort": "low"},
            {"includeThoughts": True, "thinkingLevel": "low"},
        ),
        (
            "gemini-3-pro-preview",
            {"reasoning_effort": "medium"},
            {"includeThoughts": True, "thinkingLevel": "high"},
        ),
        (
            "gemini-3.1-pro-high",
            {"reasoning_effort": "minimal"},
            {"includeThoughts": True, "thinkingLevel": "low"},
        ),
        (
            "gemini-3-flash",
            {"reasoning_effort": "minimal"},
            {"includeThoughts": True, "thinkingLevel": "minimal"},
        ),
        (
            "gemini-3-flash",
            {"reasoning_effort": "medium"},
            {"includeThoughts": True, "thinkingLevel": "medium"},
        ),
        ("gemini-3-flash", {"reasoning_effort": "xhigh"}, {"includeThoughts": True, "thinkingLevel": "high"}),
        # switching thinking off: as far as each family allows, and no thoughts requested
        ("gemini-2.5-flash", {"reasoning_effort": "none"}, {"thinkingBudget": 0}),
        ("gemini-2.5-flash-lite", {"thinking": {"type": "disabled"}}, {"thinkingBudget": 0}),
        ("gemini-2.5-pro", {"reasoning_effort": "none"}, {"thinkingBudget": 128}),
        ("gemini-3-pro-preview", {"reasoning_effort": "none"}, {"thinkingLevel": "low"}),
        ("gemini-3-flash", {"reasoning_effort": "none"}, {"thinkingLevel": "minimal"}),
        ("gemini-2.0-flash", {"reasoning_effort": "none"}, None),
        # an explicit thinking block wins over reasoning_effort
        (
            "gemini-2.5-pro",
            {"thinking": {"type": "enabled", "budget_tokens": 2000}, "reasoning_effort": "high"},
            {"includeThoughts": True, "thinkingBudget": 2000},
        ),
        ("gemini-3-pro-preview", {"thinking": {"type": "enabled"}}, {"includeThoughts": True}),
    ],
)
def test_thinking_config(model: str, fields: dict[str, Any], expected: dict[str, Any] | None) -> None:
    config = translate(USER, model=model, **fields).get("generationConfig", {})
    assert config.get("thinkingConfig") == expected


def test_data_url_with_invalid_base64_is_a_400_naming_the_image():
    req = request([{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,@@not-base64@@"}}]}])
    with pytest.raises(InvalidRequest) as e:
        chat_request_to_gemini(req, model="gemini-2.5-flash")
    assert e.value.param == "messages[0].content[0].image_url"
    assert "base64" in e.value.message


@pytest.mark.parametrize("url", ["http://[::1/x.png", "https://x:99999/a.png", "http://x:port/a.png",
                                 "http:///a.png", "https://"])
def test_a_malformed_image_url_is_400_naming_the_part_before_any_fetch(url: str) -> None:
    req = request([{"role": "user", "content": [{"type": "text", "text": "see"},
                                                {"type": "image_url", "image_url": {"url": url}}]}])
    with pytest.raises(InvalidRequest) as e:
        image_url_params(req)
    assert e.value.param == "messages[0].content[1].image_url"
    assert "Invalid image URL" in e.value.message


@pytest.mark.parametrize(("details", "model", "expected"), [
    (["low"], "gemini-3-flash", "MEDIA_RESOLUTION_LOW"),
    (["low", "high", "auto"], "gemini-2.5-flash", "MEDIA_RESOLUTION_HIGH"),
    (["auto"], "gemini-3-flash", None),
    (["high"], "claude-sonnet-4-6", None),  # Claude has no such setting
])
def test_image_detail_becomes_the_media_resolution(details, model, expected):
    png = "data:image/png;base64,iVBORw0KGgo="
    content = [{"type": "image_url", "image_url": {"url": png, "detail": d}} for d in details]
    config = translate([{"role": "user", "content": content}], model=model).get("generationConfig", {})
    assert config.get("mediaResolution") == expected


# --- an image model's earlier answer comes back with its thought signatures (multi-turn editing) ----------

IMAGE_MODEL = "gemini-3.1-flash-image"
DOT = "data:image/png;base64," + PNG
IMAGE_SIG = "CgwIARIIaW1hZ2Utc2ln"


def image_entry(url: str = DOT, signature: str | None = IMAGE_SIG) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": "image_url", "image_url": {"url": url}}
    if signature:
        entry["extra_content"] = {"google": {"thought_signature": signature}}
    return entry


def edit(assistant: dict[str, Any], *, model: str = IMAGE_MODEL) -> list[dict[str, Any]]:
    messages = [{"role": "user", "content": "draw a dot"}, assistant,
                {"role": "user", "content": "make it blue"}]
    return translate(messages, model=model)["contents"][1]["parts"]


def test_a_markdown_image_goes_back_as_inline_data_with_the_signature_of_its_images_entry() -> None:
    parts = edit({"role": "assistant", "content": f"Here: ![image]({DOT}) done", "images": [image_entry()]})
    assert parts == [
        {"text": "Here: "},
        {"inlineData": {"mimeType": "image/png", "data": PNG}, "thoughtSignature": IMAGE_SIG},
        {"text": " done"},
    ]


def test_an_images_entry_the_content_does_not_show_is_sent_after_the_text() -> None:
    parts = edit({"role": "assistant", "content": "Here it is.", "images": [image_entry()]})
    assert parts == [{"text": "Here it is."},
                     {"inlineData": {"mimeType": "image/png", "data": PNG}, "thoughtSignature": IMAGE_SIG}]


def test_bare_markdown_without_a_signature_goes_unsigned_never_with_the_escape_value() -> None:
    parts = edit({"role": "assistant", "content": f"![image]({DOT})"})
    assert parts == [{"inlineData": {"mimeType": "image/png", "data": PNG}}]


def test_claude_gets_the_image_without_gemini_s_signature() -> None:
    parts = edit({"role": "assistant", "content": f"![image]({DOT})", "images": [image_entry()]},
                 model="claude-sonnet-4-6")
    assert parts == [{"inlineData": {"mimeType": "image/png", "data": PNG}}]


def test_markdown_that_is_not_a_valid_data_url_and_foreign_image_urls_stay_as_they_are() -> None:
    text = "![image](data:image/png;base64,@@@) and ![x](https://img.example/a.png)"
    parts = edit({"role": "assistant", "content": text, "images": [image_entry("https://img.example/a.png")]})
    assert parts == [{"text": text}]


def test_a_bad_data_url_in_the_images_list_is_a_400_naming_it() -> None:
    with pytest.raises(InvalidRequest) as info:
        edit({"role": "assistant", "content": "x", "images": [image_entry("data:image/png;base64,@@@")]})
    assert info.value.param == "messages[1].images[0].image_url"
