"""The Anthropic Messages API end to end (issue 19): the anthropic SDK → mitmdump with the addon → the
emulator, whose Claude rules reject what Claude rejects (a thinking block without its signature or with a
forged one, a tool turn that lost its thinking block, prefill, argument-less tools outside VALIDATED)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from support.emulator import WEATHER_AND_TIME_LOOP, Emulator
from support.gateway import Gateway, sent

CLAUDE = "claude-opus-4-6-thinking"
KEY = "sk-gw-messages"
WEATHER = {
    "name": "get_weather",
    "description": "Weather of a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
NOW = {"name": "get_time", "description": "The time now", "input_schema": {"type": "object"}}


@pytest.fixture(scope="module")
def gateway_options() -> dict[str, Any]:
    return {"ag_api_key": KEY, "ag_auth_mode": "strict"}


@pytest.fixture
def gw(cloudcode_gateway: Gateway, emulator: Emulator) -> Gateway:
    return cloudcode_gateway


@pytest.fixture
def client(gw: Gateway) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gw.url, api_key=KEY, max_retries=0, timeout=30) as c:
        yield c


def test_create_answers_an_anthropic_message(client, gw, emulator):
    message = client.messages.create(
        model="gemini-2.5-flash",
        max_tokens=200,
        system="Be brief.",
        messages=[{"role": "user", "content": "hello there"}],
        metadata={"user_id": "user-1"},
        stop_sequences=["END"],
        top_k=5,
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "text" and message.content[0].text == "echo: hello there"
    assert message.stop_reason == "end_turn" and message.id.startswith("msg_")
    assert message.model == "gemini-2.5-flash"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert message.usage.cache_read_input_tokens == 0
    request = sent(emulator, gw)
    assert request["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert request["generationConfig"] == {"topK": 5, "maxOutputTokens": 200, "stopSequences": ["END"]}


def test_stream_sends_the_whole_event_sequence(client, gw, emulator):
    with client.messages.stream(
        model="gemini-2.5-flash", max_tokens=100, messages=[{"role": "user", "content": "stream me"}]
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "content_block_start" in kinds and "content_block_stop" in kinds and "message_delta" in kinds
    assert final.content[0].text == "echo: stream me" and final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


def test_raw_stream_starts_with_a_ping_and_has_event_names(gw, emulator):
    body = {
        "model": "gemini-2.5-flash",
        "max_tokens": 50,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    with httpx.stream(
        "POST",
        gw.url + "/v1/messages",
        json=body,
        timeout=30,
        headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"},
    ) as r:
        text = r.read().decode()
    assert r.headers["content-type"].startswith("text/event-stream")
    names = [line[len("event: ") :] for line in text.splitlines() if line.startswith("event: ")]
    assert names[:2] == ["message_start", "ping"] and names[-2:] == ["message_delta", "message_stop"]


def claude_turn(client: anthropic.Anthropic, messages: list[dict[str, Any]], stream: bool) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "model": CLAUDE,
        "max_tokens": 4096,
        "messages": messages,
        "tools": [WEATHER, NOW],
        "thinking": {"type": "enabled", "budget_tokens": 2048},
    }
    if stream:
        with client.messages.stream(**kwargs) as s:
            message = s.get_final_message()
    else:
        message = client.messages.create(**kwargs)
    return {
        "role": "assistant",
        "content": [block.model_dump(exclude_none=True) for block in message.content],
        "stop_reason": message.stop_reason,
    }


def results(turn: dict[str, Any], output: str) -> dict[str, Any]:
    uses = [b for b in turn["content"] if b["type"] == "tool_use"]
    return {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": b["id"], "content": output} for b in uses],
    }


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
def test_three_turn_tool_loop_with_claude_thinking_and_signatures(client, gw, emulator, stream):
    emulator.add_rules(WEATHER_AND_TIME_LOOP)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather and time in Paris?"}]
    first = claude_turn(client, messages, stream)
    assert [b["type"] for b in first["content"]] == ["thinking", "tool_use"]
    assert first["content"][0]["thinking"] == "The user wants the weather."
    assert first["content"][0]["signature"]
    assert first["content"][1]["input"] == {"city": "Paris"} and first["stop_reason"] == "tool_use"
    request = sent(emulator, gw)
    assert request["toolConfig"] == {"functionCallingConfig": {"mode": "VALIDATED"}}
    assert request["generationConfig"]["thinkingConfig"] == {"includeThoughts": True, "thinkingBudget": 2048}

    messages += [{"role": "assistant", "content": first["content"]}, results(first, "9C")]
    second = claude_turn(client, messages, stream)
    assert second["content"][1] == {
        "type": "tool_use",
        "id": second["content"][1]["id"],
        "name": "get_time",
        "input": {},
    }  # the placeholder argument is gone
    replayed = sent(emulator, gw)["contents"][1]["parts"][0]
    assert replayed["thought"] is True and replayed["text"] == "The user wants the weather."

    messages += [{"role": "assistant", "content": second["content"]}, results(second, "12:00")]
    final = claude_turn(client, messages, stream)
    assert final["content"][-1] == {"type": "text", "text": "9C in Paris at noon."}
    assert final["stop_reason"] == "end_turn"
    last = sent(emulator, gw)
    assert "thinkingConfig" in last["generationConfig"]  # thinking stayed on: every block was accepted
    assert [c["parts"][0].get("text") for c in last["contents"] if c["role"] == "model"] == [
        "The user wants the weather.",
        "Now the time.",
    ]


def test_a_forged_signature_is_dropped_not_sent(client, gw, emulator):
    """A thinking block whose signature this gateway did not hand out (another provider's) never reaches
    Claude: the turn goes without it and thinking is switched off rather than failing with Claude's 400."""
    emulator.add_rule(times=1, reply={"text": "fine"})
    messages = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "EqQBCkgIBhABGAIiQ-anthropic-made"},
                {"type": "tool_use", "id": "toolu_01abc", "name": "get_weather", "input": {"city": "Oslo"}},
            ],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01abc", "content": "3C"}]},
    ]
    message = client.messages.create(
        model=CLAUDE,
        max_tokens=2048,
        messages=messages,
        tools=[WEATHER],
        thinking={"type": "enabled", "budget_tokens": 1024},
    )
    assert message.content[-1].text == "fine"
    request = sent(emulator, gw)
    assert not any(p.get("thought") for c in request["contents"] for p in c["parts"])


def test_count_tokens_asks_google(client, gw, emulator):
    short = client.messages.count_tokens(
        model="gemini-2.5-flash", messages=[{"role": "user", "content": "hi"}]
    )
    long = client.messages.count_tokens(
        model="gemini-2.5-flash",
        system="You are a careful assistant.",
        messages=[{"role": "user", "content": "hi " * 200}],
    )
    assert 0 < short.input_tokens < long.input_tokens
    assert [r["rpc"] for r in emulator.requests()][-2:] == ["countTokens", "countTokens"]
    claude = client.messages.count_tokens(model=CLAUDE, tools=[WEATHER, NOW], thinking={
        "type": "enabled", "budget_tokens": 2048}, messages=[{"role": "user", "content": "hi"}])
    assert claude.input_tokens > 0
    counted = emulator.requests()[-1]
    assert counted["rpc"] == "countTokens" and counted["model"] == CLAUDE


def test_errors_are_anthropic_shaped(client, gw, emulator):
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.create(
            model="gemini-2.5-flash",
            max_tokens=10,
            messages=[{"role": "user", "content": [{"type": "bogus"}]}],
        )
    assert bad.value.status_code == 400
    assert bad.value.body["type"] == "error" and bad.value.body["error"]["type"] == "invalid_request_error"
    assert "messages[0].content[0].type" in bad.value.body["error"]["message"]
    assert bad.value.response.headers["request-id"] == bad.value.body["request_id"]
    assert bad.value.request_id == bad.value.body["request_id"]

    stranger = anthropic.Anthropic(base_url=gw.url, api_key="wrong", max_retries=0, timeout=30)
    with stranger, pytest.raises(anthropic.AuthenticationError) as unauthorized:
        stranger.messages.create(
            model="gemini-2.5-flash", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    assert unauthorized.value.body["error"]["type"] == "authentication_error"

    with pytest.raises(anthropic.BadRequestError) as prefill:
        client.messages.create(
            model=CLAUDE,
            max_tokens=10,
            messages=[{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "Hi"}],
        )
    assert "prefill" in prefill.value.body["error"]["message"]

    inner = '{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long"}}'
    emulator.add_rule(
        times=1,
        reply={
            "status": 400,
            "body": {"error": {"code": 400, "message": inner, "status": "INVALID_ARGUMENT"}},
        },
    )
    with pytest.raises(anthropic.BadRequestError) as upstream:  # Google's 400, Claude's message unwrapped
        client.messages.create(model=CLAUDE, max_tokens=2048, messages=[{"role": "user", "content": "hi"}])
    assert upstream.value.body["error"] == {
        "type": "invalid_request_error",
        "message": "Claude (through Google) rejected the request: prompt is too long (invalid_request_error)",
    }


def test_a_stacked_base_url_is_diagnosed_in_anthropics_shape(gw, emulator):
    r = httpx.post(
        gw.url + "/v1/messages/v1/messages",
        headers={"x-api-key": KEY},
        timeout=30,
        json={"model": "gemini-2.5-flash", "max_tokens": 5, "messages": []},
    )
    assert r.status_code == 404
    body = r.json()
    assert body["error"]["type"] == "not_found_error" and r.headers["request-id"] == body["request_id"]
    assert "ANTHROPIC_BASE_URL" in body["error"]["message"]
    doubled = anthropic.Anthropic(base_url=gw.url + "/v1", api_key=KEY, max_retries=0, timeout=30)
    message = doubled.messages.create(
        model="gemini-2.5-flash", max_tokens=20, messages=[{"role": "user", "content": "doubled"}]
    )  # /v1/v1/messages
    assert message.content[0].text == "echo: doubled"


def test_models_are_listed_in_anthropics_shape_for_anthropic_clients(client, gw, emulator):
    page = client.models.list()
    ids = [m.id for m in page.data]
    assert "gemini-2.5-flash" in ids and all(m.type == "model" for m in page.data)
    assert page.has_more is False and page.first_id == ids[0] and page.last_id == ids[-1]
    one = client.models.retrieve("gemini-2.5-flash")
    assert one.id == "gemini-2.5-flash" and one.created_at.year >= 2023
    openai_shaped = httpx.get(gw.url + "/v1/models", headers={"authorization": f"Bearer {KEY}"}, timeout=30)
    assert openai_shaped.json()["object"] == "list"  # without anthropic-version: OpenAI's shape, as before


def test_the_readme_block_answers(gw, emulator, capsys):
    from test_readme import block

    code = block("import anthropic").replace("http://127.0.0.1:8045", gw.url)
    exec(code.replace("<ag_api_key or anything>", KEY), {})
    assert capsys.readouterr().out == "echo: Hello\n"
    assert [r["model"] for r in emulator.requests() if r["rpc"] == "generateContent"] == [CLAUDE]


def test_a_gemini_3_tool_loop_keeps_its_signature_in_the_tool_use_ids(client, gw, emulator):
    emulator.add_rules([
        {"times": 1, "reply": {"function_calls": [{"name": "get_weather", "args": {"city": "Rome"}}]}},
        {"times": 1, "reply": {"text": "20C in Rome."}},
    ])
    model = "gemini-3.1-pro-high"
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Rome?"}]
    first = client.messages.create(model=model, max_tokens=1024, tools=[WEATHER], messages=messages)
    (use,) = [b for b in first.content if b.type == "tool_use"]
    assert use.input == {"city": "Rome"} and first.stop_reason == "tool_use"
    messages += [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
                 {"role": "user",
                  "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "20C"}]}]
    with client.messages.stream(model=model, max_tokens=1024, tools=[WEATHER], messages=messages) as stream:
        final = stream.get_final_message()
    assert final.content[-1].text == "20C in Rome."  # the emulator refuses a call without its signature
    call = sent(emulator, gw)["contents"][1]["parts"][0]
    assert call["functionCall"]["name"] == "get_weather" and call["thoughtSignature"]


def test_a_stream_that_google_breaks_ends_with_an_error_event(client, gw, emulator):
    emulator.add_rule(times=1, reply={"text": "partial answer", "error_mid_stream": {"kind": "internal"}})
    stream = client.messages.stream(model="gemini-2.5-flash", max_tokens=100,
                                    messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.APIStatusError) as failed, stream as events:  # raised on the error event
        for _ in events:
            pass
    assert "mid-stream" in str(failed.value)


def test_claude_aliases_map_and_the_answer_names_model_and_account(client, gw, emulator):
    raw = client.messages.with_raw_response.create(model="claude-opus-4-6", max_tokens=2048,
                                                   messages=[{"role": "user", "content": "alias"}])
    message = raw.parse()
    assert raw.headers["x-mapped-model"] == CLAUDE and raw.headers["x-account-email"]
    assert message.model == "claude-opus-4-6"  # the name the client asked for, as Anthropic answers
    assert message.content[-1].text == "echo: alias"
    assert "thinkingConfig" in sent(emulator, gw)["generationConfig"]  # the alias's model thinks
    assert [r["model"] for r in emulator.requests() if r["rpc"] == "generateContent"] == [CLAUDE]


def test_messages_are_billed_in_the_usage_ledger_as_the_client_was_told(client, gw, emulator):
    model = "gemini-2.5-pro"  # used by no other test of this module's gateway
    told = [client.messages.create(model=model, max_tokens=50,
                                   messages=[{"role": "user", "content": "bill"}])]
    with client.messages.stream(model=model, max_tokens=50,
                                messages=[{"role": "user", "content": "me"}]) as stream:
        told.append(stream.get_final_message())
    client.messages.count_tokens(model=model, messages=[{"role": "user", "content": "not billed"}])
    r = httpx.get(gw.url + "/ag/usage?by=model&since=1h", headers={"x-api-key": KEY}, timeout=30)
    (row,) = [row for row in r.json()["rows"] if row["model"] == model]
    assert row["requests"] == 2 and row["errors"] == 0
    assert row["prompt_tokens"] == sum(m.usage.input_tokens + m.usage.cache_read_input_tokens for m in told)
    assert row["completion_tokens"] == sum(m.usage.output_tokens for m in told)
