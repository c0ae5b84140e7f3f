"""/v1/responses end to end: the openai client's ``responses.create`` (stream and not) and its strict
``responses.stream()`` -> mitmdump -> emulator.

Each test asserts what the client got *and* what Google was sent (the emulator's recording).
"""

from __future__ import annotations

import http.client
from typing import Any

import openai
import orjson
import pytest

from support.gateway import sent

WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "strict": False,
}
SIGNATURE = "CiQBVKhc7sZ2dGhvdWdodC1zaWduYXR1cmUtZnJvbS10dXJuLTE="
THOUGHT_SIGNATURE = "Eh0KG3RoZS1zaWduYXR1cmUtb2YtdGhlLXRob3VnaHRz"


@pytest.fixture
def client(conforming_client: openai.OpenAI) -> openai.OpenAI:
    """gw (tests/e2e/conftest.py) once per upstream dialect; every answer checked against OpenAI's schema."""
    return conforming_client


def check_event_rules(events: list[Any]) -> None:
    """The rules every Responses stream keeps (clients.md §4a), on the SDK's parsed events."""
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].type == "response.created"
    assert events[1].type == "response.in_progress"
    assert events[-1].type in ("response.completed", "response.incomplete", "response.failed")
    ids = {e.response.id for e in events if e.type.startswith("response.") and hasattr(e, "response")}
    assert len(ids) == 1 and next(iter(ids)).startswith("resp_")
    added: set[int] = set()
    for e in events:
        if e.type == "response.output_item.added":
            assert e.output_index not in added
            added.add(e.output_index)
        elif hasattr(e, "output_index"):
            assert e.output_index in added, f"{e.type} before its output_item.added"


# --- non-stream ----------------------------------------------------------------------------------------


def test_text(client, gw, emulator):
    r = client.responses.create(model="gemini-2.5-flash", input="ping", instructions="Be brief.")
    assert r.object == "response"
    assert r.id.startswith("resp_")
    assert r.status == "completed"
    assert r.model == "gemini-2.5-flash"
    assert r.output_text == "echo: ping"
    assert [item.type for item in r.output] == ["message"]
    assert r.output[0].content[0].annotations == []
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens > 0
    assert r.error is None and r.incomplete_details is None
    request = sent(emulator, gw)
    assert request["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert request["contents"] == [{"role": "user", "parts": [{"text": "ping"}]}]
    assert "tools" not in request and "generationConfig" not in request


def test_tool_call(client, gw, emulator):
    emulator.add_rule(times=1, reply={"function_calls": [{"name": "get_weather", "args": {"city": "Paris"}}]})
    r = client.responses.create(model="gemini-2.5-flash", input="Weather in Paris?", tools=[WEATHER_TOOL],
                                tool_choice="required")
    assert r.status == "completed"
    [call] = r.output
    assert (call.type, call.name, orjson.loads(call.arguments)) == ("function_call", "get_weather",
                                                                    {"city": "Paris"})
    assert call.call_id.startswith("call_") and call.id.startswith("fc_")
    request = sent(emulator, gw)
    assert request["tools"] == [{"functionDeclarations": [{
        "name": "get_weather", "description": "Weather for a city",
        "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}, "required": ["city"]}}]}]
    assert request["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}


def test_reasoning(client, gw, emulator):
    emulator.add_rule(times=1, reply={"thoughts": ["Let me think."], "text": ["The answer is 4."]})
    r = client.responses.create(model="gemini-2.5-pro", input="2+2?",
                                reasoning={"effort": "high", "summary": "auto"})
    reasoning, _message = r.output
    assert reasoning.type == "reasoning"
    assert [s.text for s in reasoning.summary] == ["Let me think."]
    assert r.output_text == "The answer is 4."
    assert r.usage.output_tokens_details.reasoning_tokens > 0
    thinking = sent(emulator, gw)["generationConfig"]["thinkingConfig"]
    assert thinking == {"includeThoughts": True, "thinkingBudget": 24576}


def test_max_output_tokens_gives_an_incomplete_response(client, gw, emulator):
    emulator.add_rule(times=1, reply={"text": ["partial"], "finish_reason": "MAX_TOKENS"})
    r = client.responses.create(model="gemini-2.5-flash", input="x", max_output_tokens=3)
    assert r.status == "incomplete"
    assert r.incomplete_details.reason == "max_output_tokens"
    assert r.output[0].status == "incomplete"
    assert r.output_text == "partial"
    assert sent(emulator, gw)["generationConfig"]["maxOutputTokens"] == 3


# --- stream --------------------------------------------------------------------------------------------

CASES = {
    "text": ({}, {"text": ["Hel", "lo"]}),
    "tool_call": ({"tools": [WEATHER_TOOL]},
                  {"function_calls": [{"name": "get_weather", "args": {"city": "Paris"}}]}),
    "reasoning": ({"reasoning": {"summary": "auto"}}, {"thoughts": ["Hmm. ", "Yes."], "text": ["Hello"]}),
}


@pytest.mark.parametrize("case", CASES)
def test_stream_events_follow_the_rules(client, gw, emulator, case):
    kwargs, reply = CASES[case]
    emulator.add_rule(times=1, reply=reply)
    events = list(client.responses.create(model="gemini-2.5-flash", input="x", stream=True, **kwargs))
    check_event_rules(events)
    assert events[-1].type == "response.completed"
    final = events[-1].response
    if case == "tool_call":
        assert [e.type for e in events[2:-1]] == [
            "response.output_item.added", "response.function_call_arguments.delta",
            "response.function_call_arguments.done", "response.output_item.done"]
        assert orjson.loads(final.output[0].arguments) == {"city": "Paris"}
    elif case == "reasoning":
        assert [i.type for i in final.output] == ["reasoning", "message"]
        deltas = [e.delta for e in events if e.type == "response.reasoning_summary_text.delta"]
        assert deltas == ["Hmm. ", "Yes."]
        assert final.output_text == "Hello"
    else:
        assert [e.type for e in events[2:-1]] == [
            "response.output_item.added", "response.content_part.added", "response.output_text.delta",
            "response.output_text.delta", "response.output_text.done", "response.content_part.done",
            "response.output_item.done"]
        assert final.output_text == "Hello"


@pytest.mark.parametrize("case", CASES)
def test_strict_stream_accumulates_the_final_response(client, gw, emulator, case):
    kwargs, reply = CASES[case]
    emulator.add_rule(times=1, reply=reply)
    with client.responses.stream(model="gemini-2.5-flash", input="x", **kwargs) as stream:
        events = list(stream)
        final = stream.get_final_response()
    check_event_rules(events)
    assert final.status == "completed"
    assert final.id == events[0].response.id
    if case == "tool_call":
        assert [(i.type, i.name) for i in final.output] == [("function_call", "get_weather")]
    else:
        assert final.output_text == "Hello"


def test_upstream_cut_mid_stream_ends_with_response_failed(client, gw, emulator):
    emulator.add_rule(times=1, reply={"text": ["one ", "two ", "three"], "cut_after": 1})
    events = list(client.responses.create(model="gemini-2.5-flash", input="x", stream=True))
    check_event_rules(events)
    failed = events[-1]
    assert failed.type == "response.failed"
    assert failed.response.status == "failed"
    assert failed.response.error.code == "server_error"
    assert "broke off" in failed.response.error.message  # the relay reports the cut in band
    assert [e.delta for e in events if e.type == "response.output_text.delta"] == ["one "]
    assert failed.response.output[0].status == "incomplete"

    emulator.add_rule(times=1, reply={"text": ["one ", "two "], "cut_after": 1})
    with (client.responses.stream(model="gemini-2.5-flash", input="x") as stream,
          pytest.raises(RuntimeError, match=r"response\.completed")):
        stream.get_final_response()


def test_google_error_mid_stream_ends_with_response_failed(client, gw, emulator):
    emulator.add_rule(times=1, reply={"text": ["one ", "two "], "error_mid_stream": {"kind": "rate_limited"}})
    events = list(client.responses.create(model="gemini-2.5-flash", input="x", stream=True))
    check_event_rules(events)
    assert events[-1].type == "response.failed"
    assert events[-1].response.error.code == "rate_limit_exceeded"
    assert "RESOURCE_EXHAUSTED" in events[-1].response.error.message


# --- multi-turn ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
def test_two_turn_tool_loop_carries_the_thought_signatures(client, gw, emulator, stream):
    emulator.add_rule(times=1, reply={
        "thoughts": ["I should call the tool."], "thought_signature": THOUGHT_SIGNATURE,
        "function_calls": [{"name": "get_weather", "args": {"city": "Paris"},
                            "thought_signature": SIGNATURE}]})
    kwargs: dict[str, Any] = {"model": "gemini-3-pro-preview", "tools": [WEATHER_TOOL],
                              "reasoning": {"summary": "auto"}, "include": ["reasoning.encrypted_content"],
                              "store": False}
    first_input: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris?"}]
    if stream:
        with client.responses.stream(input=first_input, **kwargs) as s:
            first = s.get_final_response()
    else:
        first = client.responses.create(input=first_input, **kwargs)
    # the thoughts, then a reasoning item carrying the call's own signature (call_ids stay short)
    reasoning, carrier, call = first.output
    assert reasoning.type == "reasoning" and reasoning.encrypted_content
    assert carrier.type == "reasoning" and carrier.summary == [] and SIGNATURE in carrier.encrypted_content
    assert call.type == "function_call" and len(call.call_id) <= 64

    emulator.add_rule(times=1, reply={"text": ["It is 21 C."]})
    replay = [item.model_dump(exclude_none=True) for item in first.output]
    second_input = [*first_input, *replay,
                    {"type": "function_call_output", "call_id": call.call_id, "output": '{"temp_c": 21}'}]
    final = client.responses.create(input=second_input, **kwargs)
    assert final.output_text == "It is 21 C."
    contents = sent(emulator, gw)["contents"]
    assert contents[1] == {"role": "model", "parts": [
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": SIGNATURE}]}
    assert contents[2] == {"role": "user", "parts": [
        {"functionResponse": {"name": "get_weather", "response": {"output": {"temp_c": 21}}}}]}


def test_reasoning_item_alone_carries_the_signature_back(client, gw, emulator):
    """A client that rewrites call ids (or never kept them) still gets the signature through the
    reasoning item's encrypted_content."""
    emulator.add_rule(times=1, reply={
        "thoughts": ["Calling."], "thought_signature": THOUGHT_SIGNATURE,
        "function_calls": [{"name": "get_weather", "args": {"city": "Oslo"}}]})
    kwargs: dict[str, Any] = {"model": "gemini-3-pro-preview", "tools": [WEATHER_TOOL],
                              "reasoning": {"summary": "auto"}, "include": ["reasoning.encrypted_content"]}
    first = client.responses.create(input="Weather in Oslo?", **kwargs)
    reasoning, call = first.output
    emulator.add_rule(times=1, reply={"text": ["Cold."]})
    client.responses.create(input=[
        {"role": "user", "content": "Weather in Oslo?"},
        reasoning.model_dump(exclude_none=True),
        {"type": "function_call", "call_id": "call_mine", "name": "get_weather", "arguments": call.arguments},
        {"type": "function_call_output", "call_id": "call_mine", "output": "cold"},
    ], **kwargs)
    assert sent(emulator, gw)["contents"][1] == {"role": "model", "parts": [
        {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}},
         "thoughtSignature": THOUGHT_SIGNATURE}]}


def test_previous_response_id_chains_the_conversation(client, gw, emulator):
    first = client.responses.create(model="gemini-2.5-flash", input="one", instructions="first instructions")
    emulator.add_rule(times=1, reply={"text": ["second answer"]})
    with client.responses.stream(model="gemini-2.5-flash", input="two", previous_response_id=first.id) as s:
        second = s.get_final_response()
    assert second.previous_response_id == first.id
    third = client.responses.create(input="three", previous_response_id=second.id)  # the model is inherited
    assert third.model == "gemini-2.5-flash"
    assert third.output_text == "echo: three"
    request = sent(emulator, gw)
    assert request["contents"] == [
        {"role": "user", "parts": [{"text": "one"}]},
        {"role": "model", "parts": [{"text": "echo: one"}]},
        {"role": "user", "parts": [{"text": "two"}]},
        {"role": "model", "parts": [{"text": "second answer"}]},
        {"role": "user", "parts": [{"text": "three"}]},
    ]
    assert "systemInstruction" not in request  # instructions are not carried over, as OpenAI does


def test_unknown_previous_response_id_is_a_404_before_any_upstream_call(client, gw, emulator):
    with pytest.raises(openai.NotFoundError) as e:
        client.responses.create(model="gemini-2.5-flash", input="x", previous_response_id="resp_nope")
    assert e.value.body["code"] == "previous_response_not_found"
    assert e.value.body["param"] == "previous_response_id"
    unstored = client.responses.create(model="gemini-2.5-flash", input="x", store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="gemini-2.5-flash", input="y", previous_response_id=unstored.id)
    assert len([r for r in emulator.requests() if r["rpc"] == "generateContent"]) == 1


def test_the_route_without_v1_and_frames_with_event_lines(gw, emulator):
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
    conn.request("POST", "/responses", headers={"content-type": "application/json"},
                 body=orjson.dumps({"model": "gemini-2.5-flash", "input": "hi", "stream": True}))
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.getheader("content-type").startswith("text/event-stream")
    frames = resp.read().split(b"\n\n")
    assert frames[-1] == b""
    types = []
    for frame in frames[:-1]:
        event_line, data_line = frame.split(b"\n")
        data = orjson.loads(data_line.removeprefix(b"data: "))
        assert event_line == b"event: " + data["type"].encode()
        types.append(data["type"])
    assert types[0] == "response.created" and types[-1] == "response.completed"
    assert b"[DONE]" not in b"".join(frames)


def test_bad_input_is_a_400_naming_the_field(client, gw, emulator):
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="gemini-2.5-flash", input=[
            {"type": "function_call_output", "call_id": "call_unknown", "output": "x"}])
    assert e.value.body["param"] == "input[0].call_id"
    assert emulator.requests() == []
