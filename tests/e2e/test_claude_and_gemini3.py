"""Claude and Gemini 3 through Cloud Code, end to end (issue 18): the openai SDK → mitmdump → the emulator,
whose model rules reject what the real models reject (fabricated or missing thinking signatures, a tool
turn without its thinking block, prefill, argument-less tools outside VALIDATED shape, a Gemini 3 call
without its signature, the escape value on every call). Every request of these loops has to pass them."""

from __future__ import annotations

from typing import Any

import openai
import orjson
import pytest

from support.emulator import WEATHER_AND_TIME_LOOP, Emulator
from support.gateway import Gateway, sent

CLAUDE = "claude-opus-4-6-thinking"
GEMINI3 = "gemini-3.1-pro-high"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
NOW = {"type": "function", "function": {"name": "get_time", "description": "The time now"}}  # no arguments


@pytest.fixture
def gw(cloudcode_gateway: Gateway, emulator: Emulator) -> Gateway:
    return cloudcode_gateway


@pytest.fixture
def client(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-test", max_retries=0, timeout=30)


def chat_turn(
    client: openai.OpenAI, messages: list[dict[str, Any]], model: str, stream: bool
) -> dict[str, Any]:
    """One request; the assistant message as a client would append it (tool calls, no reasoning_content:
    most clients drop it, so the thinking block has to come back through the ids)."""
    kwargs: dict[str, Any] = {"model": model, "messages": messages, "tools": [WEATHER, NOW]}
    if not stream:
        message = client.chat.completions.create(**kwargs).choices[0].message
        calls = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.function.name, "arguments": c.function.arguments},
            }
            for c in message.tool_calls or []
        ]
        return {"role": "assistant", "content": message.content, **({"tool_calls": calls} if calls else {})}
    content, calls = "", {}
    for chunk in client.chat.completions.create(stream=True, **kwargs):
        for choice in chunk.choices:
            content += choice.delta.content or ""
            for tc in choice.delta.tool_calls or []:
                slot = calls.setdefault(
                    tc.index, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
                )
                slot["id"] += tc.id or ""
                slot["function"]["name"] += tc.function.name or ""
                slot["function"]["arguments"] += tc.function.arguments or ""
    out: dict[str, Any] = {"role": "assistant", "content": content or None}
    if calls:
        out["tool_calls"] = [calls[i] for i in sorted(calls)]
    return out


def answered(message: dict[str, Any], result: str = "9C") -> list[dict[str, Any]]:
    return [
        message,
        *({"role": "tool", "tool_call_id": c["id"], "content": result} for c in message["tool_calls"]),
    ]


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
def test_chat_three_turn_tool_loop_with_claude_thinking(client, gw, emulator, stream):
    emulator.add_rules(WEATHER_AND_TIME_LOOP)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather and time in Paris?"}]
    first = chat_turn(client, messages, "claude-opus-4-6", stream)  # the alias clients send
    assert first["tool_calls"][0]["function"]["name"] == "get_weather"
    request = sent(emulator, gw)
    assert request["toolConfig"] == {"functionCallingConfig": {"mode": "VALIDATED"}}
    assert request["tools"][0]["functionDeclarations"][1]["parameters"]["required"] == ["_placeholder"]
    assert (
        request["generationConfig"]["thinkingConfig"]["thinkingBudget"]
        < request["generationConfig"]["maxOutputTokens"]
        <= 64000
    )

    messages += answered(first)
    second = chat_turn(client, messages, "claude-opus-4-6", stream)
    assert second["tool_calls"][0]["function"] == {"name": "get_time", "arguments": "{}"}  # placeholder gone
    assert sent(emulator, gw)["contents"][1]["parts"][0] == {
        "thought": True,
        "text": "The user wants the weather.",
        "thoughtSignature": emulator_claude_signature("The user wants the weather."),
    }

    messages += answered(second, "12:00")
    final = chat_turn(client, messages, "claude-opus-4-6", stream)
    assert final["content"] == "9C in Paris at noon."
    contents = sent(emulator, gw)["contents"]
    assert [c["parts"][0].get("text") for c in contents if c["role"] == "model"] == [
        "The user wants the weather.",
        "Now the time.",
    ]
    assert "thinkingConfig" in sent(emulator, gw)["generationConfig"]  # thinking stayed on throughout
    calls = [r for r in emulator.requests() if r["rpc"] in ("generateContent", "streamGenerateContent")]
    assert [c["model"] for c in calls] == [CLAUDE] * 3


def emulator_claude_signature(text: str) -> str:
    from gemini_emulator import claude_signature

    return claude_signature(text)


def test_responses_three_turn_tool_loop_with_claude_thinking(client, gw, emulator):
    emulator.add_rules(
        [
            {
                "times": 1,
                "reply": {
                    "thoughts": ["Weather first."],
                    "function_calls": [{"name": "get_weather", "args": {"city": "Paris"}}],
                },
            },
            {
                "times": 1,
                "reply": {
                    "thoughts": ["Then the time."],
                    "function_calls": [{"name": "get_time", "args": {}}],
                },
            },
            {"times": 1, "reply": {"thoughts": ["Done."], "text": "9C at noon."}},
        ]
    )
    tools = [{"type": "function", **WEATHER["function"]}, {"type": "function", **NOW["function"]}]
    kwargs: dict[str, Any] = {
        "model": CLAUDE,
        "tools": tools,
        "store": False,
        "include": ["reasoning.encrypted_content"],
    }  # what Codex sends
    items: list[dict[str, Any]] = [{"role": "user", "content": "Weather and time in Paris?"}]
    for result in ("9C", "12:00"):
        with client.responses.stream(input=items, **kwargs) as s:
            response = s.get_final_response()
        calls = [i for i in response.output if i.type == "function_call"]
        assert len(calls) == 1 and any(i.type == "reasoning" for i in response.output)
        items += [i.model_dump(exclude_none=True) for i in response.output]
        items.append({"type": "function_call_output", "call_id": calls[0].call_id, "output": result})
    final = client.responses.create(input=items, **kwargs)
    assert final.output_text == "9C at noon."
    model_turns = [c for c in sent(emulator, gw)["contents"] if c["role"] == "model"]
    assert [t["parts"][0]["text"] for t in model_turns] == ["Weather first.", "Then the time."]
    assert "thinkingConfig" in sent(emulator, gw)["generationConfig"]


def test_chat_three_turn_tool_loop_on_gemini_3(client, gw, emulator):
    emulator.add_rules(
        [
            {
                "times": 1,
                "reply": {
                    "function_calls": [
                        {"name": "get_weather", "args": {"city": "Paris"}},
                        {"name": "get_weather", "args": {"city": "Rome"}},
                    ]
                },
            },
            {"times": 1, "reply": {"function_calls": [{"name": "get_time", "args": {}}]}},
            {"times": 1, "reply": {"text": "Mild everywhere."}},
        ]
    )
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris and Rome, and the time?"}]
    first = chat_turn(client, messages, GEMINI3, stream=True)
    assert len(first["tool_calls"]) == 2
    messages += answered(first)
    messages += answered(chat_turn(client, messages, GEMINI3, stream=False))
    assert chat_turn(client, messages, GEMINI3, stream=True)["content"] == "Mild everywhere."
    model_turns = [c for c in sent(emulator, gw)["contents"] if c["role"] == "model"]
    signatures = [[p.get("thoughtSignature") for p in t["parts"]] for t in model_turns]
    assert all(first_sig and first_sig != "skip_thought_signature_validator" for first_sig, *_ in signatures)
    assert signatures[0][1] is None  # parallel calls: only the first carries it, as Gemini sent them


def test_conversation_switching_models_mid_way(client, gw, emulator):
    """Claude → Gemini 3 → Claude in one conversation: no signature crosses families, Gemini 3 gets the
    escape value on Claude's call only, and Claude, whose running tool turn now comes from Gemini, gets
    thinking turned off for that request instead of a 400."""
    emulator.add_rules(
        [
            {
                "times": 1,
                "match": {"model": CLAUDE},
                "reply": {
                    "thoughts": ["Look it up."],
                    "function_calls": [{"name": "get_weather", "args": {"city": "Paris"}}],
                },
            },
            {
                "times": 1,
                "match": {"model": GEMINI3},
                "reply": {"function_calls": [{"name": "get_weather", "args": {"city": "Rome"}}]},
            },
            {"times": 1, "match": {"model": CLAUDE}, "reply": {"text": "Paris 9C, Rome 15C."}},
        ]
    )
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris, then Rome?"}]
    messages += answered(chat_turn(client, messages, CLAUDE, stream=False))
    messages += answered(chat_turn(client, messages, GEMINI3, stream=False), "15C")
    to_gemini = sent(emulator, gw)["contents"]
    assert to_gemini[1]["parts"] == [
        {
            "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
            "thoughtSignature": "skip_thought_signature_validator",
        }
    ]
    final = chat_turn(client, messages, CLAUDE, stream=True)
    assert final["content"] == "Paris 9C, Rome 15C."
    to_claude = sent(emulator, gw)
    assert "thinkingConfig" not in to_claude.get("generationConfig", {})
    assert not any("thoughtSignature" in p for c in to_claude["contents"] for p in c["parts"])


def test_claude_prefill_is_a_clear_400_before_google(client, gw, emulator):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model=CLAUDE,
            messages=[{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "Hi"}],
        )
    assert "do not support assistant message prefill" in e.value.body["message"]
    assert not [r for r in emulator.requests() if r["rpc"] == "generateContent"]


def test_claudes_own_error_is_unwrapped(client, gw, emulator):
    """A Claude 400 the gateway cannot prevent (here: a tool name Claude refuses, checked only by Claude
    for the Responses API's namespaced names) reaches the client as Claude's message, not as JSON text."""
    inner = {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "prompt is too long: 212345 tokens > 200000 maximum",
        },
        "request_id": "req_vrtx_1",
    }
    emulator.add_rule(
        times=1,
        reply={
            "status": 400,
            "body": {
                "error": {"code": 400, "message": orjson.dumps(inner).decode(), "status": "INVALID_ARGUMENT"}
            },
        },
    )
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=CLAUDE, messages=[{"role": "user", "content": "long"}])
    assert e.value.body["message"] == (
        "Claude (through Google) rejected the request: prompt is too long: 212345 "
        "tokens > 200000 maximum (invalid_request_error)"
    )
    assert e.value.body["code"] == "upstream_invalid_argument"


@pytest.mark.parametrize("model", [CLAUDE, GEMINI3])
def test_responses_tool_loop_through_previous_response_id(client, gw, emulator, model):
    """The stored response keeps each thinking block / signature for its own model: no client state at all."""
    emulator.add_rules(
        [
            {
                "times": 1,
                "reply": {
                    "thoughts": ["Weather first."],
                    "function_calls": [{"name": "get_weather", "args": {"city": "Oslo"}}],
                },
            },
            {"times": 1, "reply": {"thoughts": ["Now the time."], "function_calls": [{"name": "get_time"}]}},
            {"times": 1, "reply": {"text": "Cold, noon."}},
        ]
    )
    tools = [{"type": "function", **WEATHER["function"]}, {"type": "function", **NOW["function"]}]
    response = client.responses.create(model=model, tools=tools, input="Weather and time in Oslo?")
    for result in ("-3C", "12:00"):
        call = next(i for i in response.output if i.type == "function_call")
        response = client.responses.create(
            model=model,
            tools=tools,
            previous_response_id=response.id,
            input=[{"type": "function_call_output", "call_id": call.call_id, "output": result}],
        )
    assert response.output_text == "Cold, noon."
    model_turns = [c for c in sent(emulator, gw)["contents"] if c["role"] == "model"]
    if model == CLAUDE:
        assert [t["parts"][0]["text"] for t in model_turns] == ["Weather first.", "Now the time."]
    else:
        assert all(
            t["parts"][0]["thoughtSignature"] != "skip_thought_signature_validator" for t in model_turns
        )
