"""messages_request_to_gemini: Anthropic Messages requests → Gemini, on bytes as clients send them."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from antigravity_gw.errors import InvalidRequest
from antigravity_gw.openai_api.messages_models import parse_messages_request
from antigravity_gw.translate.messages_request import image_url_params, messages_request_to_gemini
from antigravity_gw.translate.parts import InlineImage
from antigravity_gw.translate.signatures import encode_thinking_signature, encode_tool_call_id


def translate(body: dict[str, Any], model: str = "gemini-2.5-flash", **kwargs: Any) -> dict[str, Any]:
    body = {"model": "m", "max_tokens": 100, **body}
    return messages_request_to_gemini(parse_messages_request(orjson.dumps(body)), model=model, **kwargs)


def test_system_blocks_text_and_sampling_in_gemini_order() -> None:
    out = translate(
        {
            "system": [
                {"type": "text", "text": "A", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "B"},
            ],
            "messages": [{"role": "user", "content": "hi"}],
            "temperature": 0.5,
            "top_p": 0.9,
            "top_k": 3,
            "stop_sequences": ["X"],
        }
    )
    assert list(out) == ["systemInstruction", "generationConfig", "contents"]
    assert out["systemInstruction"] == {"parts": [{"text": "A"}, {"text": "B"}]}
    assert out["generationConfig"] == {
        "temperature": 0.5,
        "topP": 0.9,
        "topK": 3,
        "maxOutputTokens": 100,
        "stopSequences": ["X"],
    }
    assert out["contents"] == [{"role": "user", "parts": [{"text": "hi"}]}]


def test_images_documents_and_merged_turns() -> None:
    out = translate(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "look"},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"},
                        },
                        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
                        {
                            "type": "document",
                            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
                        },
                        {
                            "type": "document",
                            "source": {"type": "text", "media_type": "text/plain", "data": "notes"},
                        },
                    ],
                },
                {"role": "user", "content": "and this"},
            ]
        },
        images={"https://example.com/a.jpg": InlineImage("image/jpeg", "/9j/")},
    )
    assert out["contents"] == [
        {
            "role": "user",
            "parts": [
                {"text": "look"},
                {"inlineData": {"mimeType": "image/png", "data": "iVBO"}},
                {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/"}},
                {"inlineData": {"mimeType": "application/pdf", "data": "JVBE"}},
                {"text": "notes"},
                {"text": "and this"},
            ],
        }
    ]


def test_image_urls_are_listed_for_fetching_including_tool_results() -> None:
    req = parse_messages_request(
        orjson.dumps(
            {
                "model": "m",
                "max_tokens": 1,
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image", "source": {"type": "url", "url": "https://x.test/1.png"}}
                        ],
                    },
                    {
                        "role": "assistant",
                        "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}],
                    },
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "tool_result",
                                "tool_use_id": "t1",
                                "content": [
                                    {
                                        "type": "image",
                                        "source": {"type": "url", "url": "https://x.test/2.png"},
                                    }
                                ],
                            }
                        ],
                    },
                ],
            }
        )
    )
    assert image_url_params(req) == {
        "https://x.test/1.png": "messages[0].content[0].source.url",
        "https://x.test/2.png": "messages[2].content[0].content[0].source.url",
    }


def test_tool_use_and_results_carry_names_gemini_ids_and_errors() -> None:
    call_id = encode_tool_call_id("abc", gemini_id="g-1", signature="c2ln", family="g2")
    out = translate(
        {
            "messages": [
                {"role": "user", "content": "run"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": "ok"},
                        {"type": "tool_use", "id": call_id, "name": "bash", "input": {"c": 1}},
                        {"type": "tool_use", "id": "toolu_2", "name": "ls", "input": {}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": call_id, "content": '{"rc": 0}'},
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_2",
                            "content": [{"type": "text", "text": "denied"}],
                            "is_error": True,
                        },
                    ],
                },
            ]
        },
        model="gemini-2.5-flash",
    )
    model_turn, results = out["contents"][1], out["contents"][2]
    assert model_turn["parts"] == [
        {"text": "ok"},
        {"functionCall": {"name": "bash", "args": {"c": 1}, "id": "g-1"}, "thoughtSignature": "c2ln"},
        {"functionCall": {"name": "ls", "args": {}}},
    ]
    assert results["parts"] == [
        {"functionResponse": {"name": "bash", "response": {"output": {"rc": 0}}, "id": "g-1"}},
        {"functionResponse": {"name": "ls", "response": {"error": "denied"}}},
    ]


def test_tools_and_tool_choice() -> None:
    tool = {
        "name": "get",
        "description": "d",
        "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
    }
    out = translate(
        {
            "messages": [{"role": "user", "content": "x"}],
            "tools": [tool],
            "tool_choice": {"type": "tool", "name": "get"},
        }
    )
    assert out["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get",
                    "description": "d",
                    "parameters": {"type": "OBJECT", "properties": {"q": {"type": "STRING"}}},
                }
            ]
        }
    ]
    assert out["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get"]}}
    with pytest.raises(InvalidRequest, match="no tool named"):
        translate(
            {
                "messages": [{"role": "user", "content": "x"}],
                "tools": [tool],
                "tool_choice": {"type": "tool", "name": "other"},
            }
        )


def test_claude_gets_validated_tools_and_its_signed_thinking_block_back() -> None:
    signature = encode_thinking_signature("emu-claude#1", family="c")
    out = translate(
        {
            "thinking": {"type": "enabled", "budget_tokens": 2000},
            "max_tokens": 8000,
            "tools": [{"name": "now", "input_schema": {"type": "object"}}],
            "messages": [
                {"role": "user", "content": "time?"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "Check the clock.", "signature": signature},
                        {"type": "redacted_thinking", "data": "opaque"},
                        {"type": "tool_use", "id": "toolu_1", "name": "now", "input": {}},
                    ],
                },
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "noon"}],
                },
            ],
        },
        model="claude-opus-4-6-thinking",
    )
    assert out["contents"][1]["parts"] == [
        {"thought": True, "text": "Check the clock.", "thoughtSignature": "emu-claude#1"},
        {"functionCall": {"name": "now", "args": {}}},
    ]
    assert out["toolConfig"] == {"functionCallingConfig": {"mode": "VALIDATED"}}
    assert out["generationConfig"]["thinkingConfig"] == {"includeThoughts": True, "thinkingBudget": 2000}


@pytest.mark.parametrize(
    ("signature", "model"),
    [
        ("", "claude-sonnet-4-5"),  # a thinking block Claude did not sign is dropped
        ("EqQBCkgIBforeign", "claude-sonnet-4-5"),
        (encode_thinking_signature("s", family="g3"), "claude-sonnet-4-5"),
        (encode_thinking_signature("s", family="c"), "gemini-3-pro"),  # Gemini gets no thinking parts
    ],
    ids=["claude-unsigned", "claude-foreign", "claude-signed-by-gemini3", "gemini-signed-by-claude"],
)
def test_a_thinking_block_the_model_cannot_take_is_dropped(signature: str, model: str) -> None:
    out = translate(
        {
            "messages": [
                {"role": "user", "content": "a"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "t", "signature": signature},
                        {"type": "text", "text": "b"},
                    ],
                },
                {"role": "user", "content": "c"},
            ]
        },
        model=model,
    )
    assert out["contents"][1]["parts"] == [{"text": "b"}]


@pytest.mark.parametrize(
    ("thinking", "model", "expected"),
    [
        (None, "gemini-2.5-flash", None),
        (None, "claude-opus-4-6-thinking", {"includeThoughts": True, "thinkingBudget": 24576}),
        (None, "claude-sonnet-4-5", None),
        ({"type": "adaptive"}, "gemini-2.5-flash", {"includeThoughts": True}),
        ({"type": "disabled"}, "gemini-2.5-flash", {"thinkingBudget": 0}),
        (
            {"type": "enabled", "budget_tokens": 3000},
            "gemini-2.5-pro",
            {"includeThoughts": True, "thinkingBudget": 3000},
        ),
    ],
)
def test_thinking_switch(
    thinking: dict[str, Any] | None, model: str, expected: dict[str, Any] | None
) -> None:
    body: dict[str, Any] = {"messages": [{"role": "user", "content": "x"}], "max_tokens": 64000}
    if thinking is not None:
        body["thinking"] = thinking
    assert translate(body, model=model).get("generationConfig", {}).get("thinkingConfig") == expected


@pytest.mark.parametrize(
    ("messages", "match"),
    [
        (
            [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "nope", "content": "x"}]}],
            "tool_use_id",
        ),
        (
            [{"role": "user", "content": [{"type": "tool_use", "id": "a", "name": "f", "input": {}}]}],
            "belong to assistant",
        ),
        (
            [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "text/html", "data": "x"},
                        }
                    ],
                }
            ],
            "not an image",
        ),
        ([{"role": "user", "content": ""}], "at least one message"),
        (
            [
                {
                    "role": "user",
                    "content": [{"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}}],
                }
            ],
            "could not be fetched",
        ),
    ],
)
def test_bad_conversations_are_clear_400s(messages: list[dict[str, Any]], match: str) -> None:
    with pytest.raises(InvalidRequest, match=match):
        translate({"messages": messages})


def test_claude_prefill_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="prefill"):
        translate(
            {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
            model="claude-sonnet-4-5",
        )


def test_a_system_message_mid_conversation_is_user_text_in_its_place() -> None:
    """Claude Code sends its environment as a ``system`` message after the first user message."""
    out = translate(
        {
            "system": "top",
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "system", "content": [{"type": "text", "text": "# Environment"}]},
                {"role": "assistant", "content": "hello"},
                {"role": "system", "content": "later"},
                {"role": "user", "content": "again"},
            ],
        }
    )
    assert out["systemInstruction"] == {"parts": [{"text": "top"}]}
    assert out["contents"] == [
        {"role": "user", "parts": [{"text": "hi"}, {"text": "# Environment"}]},
        {"role": "model", "parts": [{"text": "hello"}]},
        {"role": "user", "parts": [{"text": "later"}, {"text": "again"}]},
    ]


def test_a_system_message_takes_text_blocks_only() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}}
    with pytest.raises(InvalidRequest, match="system messages take 'text' blocks only") as info:
        translate({"messages": [{"role": "user", "content": "hi"}, {"role": "system", "content": [image]}]})
    assert info.value.param == "messages[1].content[0]"
