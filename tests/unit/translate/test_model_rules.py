"""What each model family behind Cloud Code gets of a replayed history (R-C*, R-G*): the rules on their
own, and the round trip through the real translators (a Gemini answer → OpenAI ids → the next request)."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import orjson
import pytest

from antigravity_gw.errors import InvalidRequest
from antigravity_gw.openai_api.models import parse_chat_request
from antigravity_gw.openai_api.responses_models import parse_responses_request
from antigravity_gw.openai_api.responses_wire import response_echo
from antigravity_gw.translate.chat_request import chat_request_to_gemini
from antigravity_gw.translate.chat_stream import gemini_to_chat_completion
from antigravity_gw.translate.model_rules import (
    SKIP_SIGNATURE,
    SignedPart,
    family_of,
    fit_claude,
    fit_history,
)
from antigravity_gw.translate.responses_request import ResponsesCall, input_items, responses_request_to_gemini
from antigravity_gw.translate.responses_stream import GeminiToResponsesStream, gemini_to_response
from antigravity_gw.translate.signatures import decode_reasoning, decode_tool_call_id, encode_tool_call_id

CLAUDE = "claude-opus-4-6-thinking"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("claude-opus-4-6-thinking", "c"),
        ("claude-sonnet-4-6", "c"),
        ("gemini-3.1-pro-high", "g3"),
        ("gemini-3-flash", "g3"),
        ("gemini-2.5-flash", "g2"),
        ("gpt-oss-120b-medium", None),
    ],
)
def test_family_of(model: str, family: str | None) -> None:
    assert family_of(model) == family


def call(name: str = "get_weather") -> dict[str, Any]:
    return {"functionCall": {"name": name, "args": {"city": "Paris"}}}


def history(*model_parts: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"role": "user", "parts": [{"text": "weather?"}]},
        {"role": "model", "parts": list(model_parts)},
        {
            "role": "user",
            "parts": [{"functionResponse": {"name": "get_weather", "response": {"output": "9C"}}}],
        },
    ]


def test_claude_gets_its_thinking_block_leading_the_turn_and_no_other_signature() -> None:
    first, second = call(), call("get_time")
    contents = history({"text": "Let me check."}, first, second)
    signed = [SignedPart(first, "R-sig", "c", "I should look it up."), SignedPart(second, "g-sig", "g3")]
    fit_history(contents, signed, target="c")
    assert contents[1]["parts"] == [
        {"thought": True, "text": "I should look it up.", "thoughtSignature": "R-sig"},
        {"text": "Let me check."},
        call(),
        call("get_time"),
    ]


def test_claude_never_gets_unsigned_or_foreign_thinking() -> None:
    part = call()
    contents = history(part)
    fit_history(contents, [SignedPart(part, "g-sig", "g3", "a Gemini thought")], target="c")
    assert contents[1]["parts"] == [call()]
    part = call()
    contents = history(part)
    fit_history(contents, [SignedPart(part, "R-sig", "c", None)], target="c")  # the text was lost
    assert contents[1]["parts"] == [call()]


def test_gemini_3_gets_the_escape_value_on_the_first_unsigned_call_of_a_turn_only() -> None:
    first, second = call(), call("get_time")
    contents = history(first, second)
    fit_history(contents, [SignedPart(first, "R-sig", "c", "thought")], target="g3")
    assert contents[1]["parts"] == [{**call(), "thoughtSignature": SKIP_SIGNATURE}, call("get_time")]
    own = call()
    contents = history(own, call("get_time"))
    fit_history(contents, [SignedPart(own, "g3-sig", "g3")], target="g3")
    assert contents[1]["parts"] == [{**call(), "thoughtSignature": "g3-sig"}, call("get_time")]


@pytest.mark.parametrize(
    ("target", "family", "kept"),
    [
        ("g2", None, True),
        ("g2", "g2", True),
        ("g2", "g3", False),
        ("g2", "c", False),
        ("g3", None, True),
        ("g3", "g2", False),
        (None, "g2", True),
        (None, "c", False),
    ],
)
def test_a_signature_reaches_only_its_own_family(target: str | None, family: str | None, kept: bool) -> None:
    part = call()
    contents = history(part)
    fit_history(contents, [SignedPart(part, "sig", family)], target=target)
    assert (contents[1]["parts"][0].get("thoughtSignature") == "sig") is kept


def claude_request(contents: list[dict[str, Any]], **config: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "tools": [
            {
                "functionDeclarations": [
                    {"name": "now"},
                    {
                        "name": "get_weather",
                        "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}},
                    },
                ]
            }
        ],
        "generationConfig": config,
        "contents": contents,
    }
    fit_claude(out)
    return out


def test_claude_tools_are_validated_with_a_placeholder_for_argument_less_ones() -> None:
    out = claude_request([{"role": "user", "parts": [{"text": "hi"}]}])
    assert out["toolConfig"] == {"functionCallingConfig": {"mode": "VALIDATED"}}
    now = out["tools"][0]["functionDeclarations"][0]
    assert now["parameters"]["required"] == ["_placeholder"]
    assert out["tools"][0]["functionDeclarations"][1]["parameters"]["properties"] == {
        "city": {"type": "STRING"}
    }
    assert "generationConfig" not in out  # nothing was set


def test_claude_keeps_a_forced_tool_choice() -> None:
    out = {
        "tools": [{"functionDeclarations": [{"name": "now"}]}],
        "contents": [{"role": "user", "parts": []}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["now"]}},
    }
    fit_claude(out)
    assert out["toolConfig"]["functionCallingConfig"]["mode"] == "ANY"


@pytest.mark.parametrize("name", ["ns.tool", "x" * 65, "with space"])
def test_claude_rejects_tool_names_it_cannot_take(name: str) -> None:
    out = {"tools": [{"functionDeclarations": [{"name": name}]}], "contents": [{"role": "user", "parts": []}]}
    with pytest.raises(InvalidRequest, match="Claude models accept tool names"):
        fit_claude(out)


def test_claude_has_no_prefill() -> None:
    with pytest.raises(InvalidRequest, match="do not support assistant message prefill") as e:
        claude_request(
            [{"role": "user", "parts": [{"text": "hi"}]}, {"role": "model", "parts": [{"text": "Su"}]}]
        )
    assert e.value.status == 400


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            {"thinkingConfig": {"includeThoughts": True, "thinkingBudget": 24576}},
            {"thinkingConfig": {"includeThoughts": True, "thinkingBudget": 24576}, "maxOutputTokens": 64000},
        ),
        ({"maxOutputTokens": 100000}, {"maxOutputTokens": 64000}),
        (
            {"maxOutputTokens": 4096, "thinkingConfig": {"includeThoughts": True, "thinkingBudget": 24576}},
            {"maxOutputTokens": 4096, "thinkingConfig": {"includeThoughts": True, "thinkingBudget": 4095}},
        ),
        (
            {"maxOutputTokens": 1000, "thinkingConfig": {"includeThoughts": True, "thinkingBudget": 24576}},
            {"maxOutputTokens": 1000},
        ),  # no room to think within the client's limit
        ({"thinkingConfig": {"includeThoughts": True, "thinkingBudget": 500}}, {}),
    ],
)
def test_claude_output_limit_stays_above_the_budget_and_under_64000(
    config: dict[str, Any], expected: dict[str, Any]
) -> None:
    out = claude_request([{"role": "user", "parts": [{"text": "hi"}]}], **config)
    assert out.get("generationConfig", {}) == expected


def test_claude_tool_turn_that_lost_its_thinking_turns_thinking_off() -> None:
    contents = history({"thought": True, "text": "old", "thoughtSignature": "R"}, call())
    contents[1]["parts"].reverse()  # the thinking block is no longer first: Claude would reject it
    out = claude_request(
        copy.deepcopy(contents), thinkingConfig={"includeThoughts": True, "thinkingBudget": 4096}
    )
    assert "generationConfig" not in out
    assert out["contents"][1]["parts"] == [call()]  # and no thinking blocks go with thinking off
    kept = claude_request(
        history({"thought": True, "text": "t", "thoughtSignature": "R"}, call()),
        thinkingConfig={"includeThoughts": True, "thinkingBudget": 4096},
    )
    assert kept["generationConfig"]["thinkingConfig"]["thinkingBudget"] == 4096


# --- the round trip through the translators -------------------------------------------------------------

CLAUDE_ANSWER = {
    "candidates": [
        {
            "content": {
                "role": "model",
                "parts": [
                    {"text": "I should ", "thought": True},
                    {"text": "look it up.", "thought": True, "thoughtSignature": "UmVhbENsYXVkZVNpZw=="},
                    {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                    {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}},
                ],
            },
            "finishReason": "STOP",
        }
    ]
}


def chat_turn(answer: dict[str, Any], family: str | None) -> dict[str, Any]:
    tokens = itertools.count(1)
    completion = gemini_to_chat_completion(
        answer, completion_id="c", created=1, model="m", id_factory=lambda: f"t{next(tokens)}", family=family
    )
    return completion["choices"][0]["message"]


def next_chat_request(message: dict[str, Any], model: str, *, drop_reasoning: bool = True) -> dict[str, Any]:
    message = {k: v for k, v in message.items() if k != "reasoning_content" or not drop_reasoning}
    results = [{"role": "tool", "tool_call_id": c["id"], "content": "9C"} for c in message["tool_calls"]]
    body = {
        "model": model,
        "tools": TOOLS,
        "messages": [{"role": "user", "content": "weather?"}, message, *results],
    }
    return chat_request_to_gemini(parse_chat_request(orjson.dumps(body)), model=model)


def test_chat_claude_thinking_travels_in_the_call_id_and_leads_the_next_turn() -> None:
    message = chat_turn(CLAUDE_ANSWER, "c")
    ref = decode_tool_call_id(message["tool_calls"][0]["id"])
    assert (ref.family, ref.signature, ref.thought) == ("c", "UmVhbENsYXVkZVNpZw==", "I should look it up.")
    request = next_chat_request(message, CLAUDE)
    assert request["contents"][1]["parts"][0] == {
        "thought": True,
        "text": "I should look it up.",
        "thoughtSignature": "UmVhbENsYXVkZVNpZw==",
    }
    assert all("thoughtSignature" not in p for p in request["contents"][1]["parts"][1:])
    assert request["generationConfig"]["thinkingConfig"] == {"includeThoughts": True, "thinkingBudget": 24576}
    assert request["generationConfig"]["maxOutputTokens"] == 64000


def test_chat_claude_thinking_too_long_for_the_id_comes_from_reasoning_content() -> None:
    long_thought = "".join(f"{i:x} unpredictable " for i in range(20000))
    answer = copy.deepcopy(CLAUDE_ANSWER)
    answer["candidates"][0]["content"]["parts"][:2] = [
        {"text": long_thought, "thought": True, "thoughtSignature": "Ulo="}
    ]
    message = chat_turn(answer, "c")
    assert decode_tool_call_id(message["tool_calls"][0]["id"]).thought is None  # did not fit
    lost = next_chat_request(message, CLAUDE)
    assert "generationConfig" not in lost  # lost: thinking off instead of a 400
    kept = next_chat_request(message, CLAUDE, drop_reasoning=False)
    assert kept["contents"][1]["parts"][0] == {
        "thought": True,
        "text": long_thought,
        "thoughtSignature": "Ulo=",
    }


def test_chat_switching_from_claude_to_gemini_3_sends_no_claude_signature() -> None:
    request = next_chat_request(chat_turn(CLAUDE_ANSWER, "c"), "gemini-3.1-pro-high")
    parts = request["contents"][1]["parts"]
    assert [p.get("thoughtSignature") for p in parts] == [SKIP_SIGNATURE, None]
    assert not any(p.get("thought") for p in parts)


def test_chat_gemini_3_keeps_its_own_signature() -> None:
    answer = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {
                            "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                            "thoughtSignature": "ZzM=",
                        }
                    ],
                },
                "finishReason": "STOP",
            }
        ]
    }
    message = chat_turn(answer, "g3")
    assert decode_tool_call_id(message["tool_calls"][0]["id"]).family == "g3"
    request = next_chat_request(message, "gemini-3-flash")
    assert request["contents"][1]["parts"][0]["thoughtSignature"] == "ZzM="
    request = next_chat_request(message, "gemini-2.5-flash")  # 3's signatures are not for 2.5
    assert "thoughtSignature" not in request["contents"][1]["parts"][0]


def test_responses_claude_thinking_travels_in_encrypted_content() -> None:
    body = {
        "model": CLAUDE,
        "input": "weather?",
        "tools": [{"type": "function", **TOOLS[0]["function"]}],
        "include": ["reasoning.encrypted_content"],
        "store": False,
    }
    tokens = itertools.count(1)
    request = parse_responses_request(orjson.dumps(body))
    stream = GeminiToResponsesStream(
        response_id="resp_1",
        created_at=1,
        echo=response_echo(request, CLAUDE),
        family="c",
        id_factory=lambda: f"t{next(tokens)}",
        include_encrypted=True,
    )
    output = gemini_to_response(CLAUDE_ANSWER, stream)["output"]
    reasoning = decode_reasoning(output[0]["encrypted_content"])
    assert (reasoning.family, reasoning.thought) == ("c", "I should look it up.")
    results = [
        {"type": "function_call_output", "call_id": item["call_id"], "output": "9C"}
        for item in output
        if item["type"] == "function_call"
    ]
    body["input"] = [{"role": "user", "content": "weather?"}, *output, *results]
    request = parse_responses_request(orjson.dumps(body))
    call = ResponsesCall(request=request, model=CLAUDE, items=input_items(request))
    out = responses_request_to_gemini(call, model=CLAUDE)
    assert out["contents"][1]["parts"][0] == {
        "thought": True,
        "text": "I should look it up.",
        "thoughtSignature": "UmVhbENsYXVkZVNpZw==",
    }
    assert out["generationConfig"]["thinkingConfig"]["includeThoughts"] is True  # no summary asked, still
    assert out["toolConfig"] == {"functionCallingConfig": {"mode": "VALIDATED"}}


def test_ids_of_another_client_or_a_zip_bomb_carry_nothing() -> None:
    import base64
    import zlib

    bomb = base64.urlsafe_b64encode(zlib.compress(b"{" + b" " * (1 << 22))).decode().rstrip("=")
    assert decode_tool_call_id(f"call_x_fc_sigz{bomb}") == decode_tool_call_id("call_Kx81")
    assert decode_tool_call_id(encode_tool_call_id("x", signature="s", family="zz")).family is None


def test_a_signature_in_googles_extra_content_is_read_for_gemini_only() -> None:
    message = {
        "role": "assistant",
        "tool_calls": [
            {
                "id": "call_from_elsewhere",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                "extra_content": {"google": {"thought_signature": "Z29vZ2xl"}},
            }
        ],
    }
    assert (
        next_chat_request(message, "gemini-3-flash")["contents"][1]["parts"][0]["thoughtSignature"]
        == "Z29vZ2xl"
    )
    assert "thoughtSignature" not in next_chat_request(message, CLAUDE)["contents"][1]["parts"][0]


def test_claude_request_keys_keep_the_translators_order() -> None:
    body = {
        "model": CLAUDE,
        "tools": TOOLS,
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
    }
    out = chat_request_to_gemini(parse_chat_request(orjson.dumps(body)), model="claude-sonnet-4-6")
    assert list(out) == ["systemInstruction", "tools", "toolConfig", "contents"]
