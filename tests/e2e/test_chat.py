"""/v1/chat/completions end to end, for both upstream dialects: openai client -> mitmdump -> emulator.

Each test asserts what the client got *and* what Google was sent (the emulator's recording).
"""

from __future__ import annotations

import base64
import http.client
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import openai
import orjson
import pytest

from support.gateway import Gateway, sent

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
SIGNATURE = "CiQBVKhc7sZ2dGhvdWdodC1zaWduYXR1cmUtZnJvbS10dXJuLTE="


@pytest.fixture
def client(gw: Gateway) -> openai.OpenAI:  # gw: tests/e2e/conftest.py, once per upstream dialect
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-test", max_retries=0, timeout=30)


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def test_plain_text(client, gw, emulator):
    raw = client.chat.completions.with_raw_response.create(model="gemini-2.5-flash", messages=user("hello"))
    c = raw.parse()
    assert c.object == "chat.completion"
    assert c.id.startswith("chatcmpl-")
    assert c.model == "gemini-2.5-flash"
    assert [(ch.index, ch.message.role, ch.message.content, ch.finish_reason) for ch in c.choices] == [
        (0, "assistant", "echo: hello", "stop")]
    assert c.usage.total_tokens == c.usage.prompt_tokens + c.usage.completion_tokens > 0
    assert raw.headers["x-mapped-model"] == "gemini-2.5-flash"
    assert raw.headers["x-account-email"] in ("acc1@example.com", "key1@example.com")
    req = sent(emulator, gw)
    assert req["contents"] == [{"role": "user", "parts": [{"text": "hello"}]}]
    assert emulator.requests()[-1]["rpc"] == "generateContent"


def test_system_and_developer_become_system_instruction(client, gw, emulator):
    client.chat.completions.create(model="gemini-2.5-flash", messages=[
        {"role": "system", "content": "Be brief."}, {"role": "developer", "content": "Use English."},
        {"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
    req = sent(emulator, gw)
    assert req["systemInstruction"]["parts"] == [{"text": "Be brief."}, {"text": "Use English."}]
    assert req["contents"] == [{"role": "user", "parts": [{"text": "a"}, {"text": "b"}]}]  # merged turns


def test_stream_with_usage(client, gw, emulator):
    stream = client.chat.completions.create(model="gpt-4o", messages=user("stream me"), stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: stream me"
    assert len({c.id for c in chunks}) == 1 and len({c.created for c in chunks}) == 1
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0
    assert emulator.requests()[-1]["rpc"] == "streamGenerateContent"
    assert emulator.requests()[-1]["model"] == "gemini-2.5-flash"  # gpt-4o mapped by the built-in table


def test_stream_ends_with_done(gw, emulator):
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
    conn.request("POST", "/v1/chat/completions", body=orjson.dumps(
        {"model": "gemini-2.5-flash", "stream": True, "messages": user("x")}),
        headers={"content-type": "application/json"})
    resp = conn.getresponse()
    body = resp.read()
    assert resp.status == 200
    assert resp.getheader("content-type").startswith("text/event-stream")
    assert resp.getheader("x-mapped-model") == "gemini-2.5-flash"
    assert body.endswith(b"data: [DONE]\n\n")


def test_n_2_returns_two_choices(client, gw, emulator):
    c = client.chat.completions.create(model="gemini-2.5-flash", messages=user("twice"), n=2)
    assert [ch.index for ch in c.choices] == [0, 1]
    assert c.choices[0].message.content == "echo: twice"
    assert c.choices[1].message.content == "echo: twice [1]"
    assert sent(emulator, gw)["generationConfig"]["candidateCount"] == 2


def test_a_conversation_of_only_a_system_message_is_answered(client, gw, emulator):
    c = client.chat.completions.create(model="gemini-2.5-flash",
                                       messages=[{"role": "system", "content": "Say hi."}])
    assert c.choices[0].message.content == "echo: Say hi."
    assert sent(emulator, gw)["contents"] == [{"role": "user", "parts": [{"text": "Say hi."}]}]


def test_googles_extra_content_signature_is_written_and_read(client, gw, emulator):
    """Google's OpenAI-compatible field: clients written for it keep the signature even with their own ids."""
    emulator.add_rule(times=1, reply={"function_calls": [
        {"name": "get_weather", "args": {"city": "Rome"}, "thought_signature": SIGNATURE}]})
    kwargs = {"model": "gemini-3-pro-preview", "tools": [WEATHER_TOOL]}
    c = client.chat.completions.create(messages=user("Weather in Rome?"), **kwargs)
    tc = c.choices[0].message.tool_calls[0].model_dump()
    assert tc["extra_content"] == {"google": {"thought_signature": SIGNATURE}}
    client.chat.completions.create(messages=[*user("Weather in Rome?"), {
        "role": "assistant", "tool_calls": [{"id": "my-own-id", "type": "function",
                                             "function": tc["function"],
                                             "extra_content": tc["extra_content"]}]},
        {"role": "tool", "tool_call_id": "my-own-id", "content": "warm"}], **kwargs)
    assert sent(emulator, gw)["contents"][1]["parts"][0]["thoughtSignature"] == SIGNATURE


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
def test_two_turn_tool_loop_carries_the_thought_signature(client, gw, emulator, stream):
    emulator.add_rule(times=1, reply={"function_calls": [
        {"name": "get_weather", "args": {"city": "Paris"}, "thought_signature": SIGNATURE}]})
    messages: list[dict[str, Any]] = user("Weather in Paris?")
    kwargs = {"model": "gemini-3-pro-preview", "tools": [WEATHER_TOOL], "tool_choice": "auto"}
    if stream:
        calls: dict[int, dict[str, str]] = {}
        finish = None
        for chunk in client.chat.completions.create(messages=messages, stream=True, **kwargs):
            for ch in chunk.choices:
                finish = ch.finish_reason or finish
                for tc in ch.delta.tool_calls or []:
                    slot = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
                    slot["id"] += tc.id or ""
                    slot["name"] += tc.function.name or ""
                    slot["arguments"] += tc.function.arguments or ""
        assert finish == "tool_calls"
        call = calls[0]
    else:
        c = client.chat.completions.create(messages=messages, **kwargs)
        assert c.choices[0].finish_reason == "tool_calls"
        assert c.choices[0].message.content is None
        tc = c.choices[0].message.tool_calls[0]
        call = {"id": tc.id, "name": tc.function.name, "arguments": tc.function.arguments}
    assert (call["name"], orjson.loads(call["arguments"])) == ("get_weather", {"city": "Paris"})
    first = sent(emulator, gw)
    assert first["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"
    assert first["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}

    messages += [{"role": "assistant", "content": None, "tool_calls": [
        {"id": call["id"], "type": "function",
         "function": {"name": call["name"], "arguments": call["arguments"]}}]},
        {"role": "tool", "tool_call_id": call["id"], "content": '{"temp_c": 21}'}]
    final = client.chat.completions.create(messages=messages, **kwargs)
    assert final.choices[0].finish_reason == "stop"
    second = sent(emulator, gw)
    model_turn, tool_turn = second["contents"][1], second["contents"][2]
    assert model_turn["role"] == "model"
    assert model_turn["parts"] == [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                                    "thoughtSignature": SIGNATURE}]
    assert tool_turn["role"] == "user"
    assert tool_turn["parts"][0]["functionResponse"]["name"] == "get_weather"
    assert tool_turn["parts"][0]["functionResponse"]["response"] == {"output": {"temp_c": 21}}


def test_reasoning_content(client, gw, emulator):
    emulator.add_rule(times=1, reply={"thoughts": ["Let me think."], "text": ["The answer is 4."]})
    c = client.chat.completions.create(model="gemini-2.5-pro", messages=user("2+2?"), reasoning_effort="high")
    msg = c.choices[0].message
    assert msg.content == "The answer is 4."
    assert msg.model_extra["reasoning_content"] == "Let me think."
    assert sent(emulator, gw)["generationConfig"]["thinkingConfig"]["includeThoughts"] is True
    stream = client.chat.completions.create(model="gemini-2.5-pro", messages=user("again"), stream=True)
    reasoning = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or ""
                        for c in stream if c.choices)
    assert reasoning == ""  # the rule was used once: the second answer is the default echo, no thoughts


def test_json_schema_output(client, gw, emulator):
    emulator.add_rule(times=1, reply={"text": ['{"name": "Ada", "age": 36}']})
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}
    c = client.chat.completions.create(model="gemini-2.5-flash", messages=user("person"), response_format={
        "type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": True}})
    assert orjson.loads(c.choices[0].message.content) == {"name": "Ada", "age": 36}
    cfg = sent(emulator, gw)["generationConfig"]
    assert cfg["responseMimeType"] == "application/json"
    assert cfg["responseSchema"]["properties"]["age"]["type"] == "INTEGER"
    assert "additionalProperties" not in cfg["responseSchema"]


@pytest.fixture(scope="module")
def image_server() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/pixel.png":
                self.send_response(200)
                self.send_header("content-type", "image/png")
                self.send_header("content-length", str(len(PNG)))
                self.end_headers()
                self.wfile.write(PNG)
            else:
                self.send_error(404)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_image_data_uri_and_url_are_inlined(client, gw, emulator, image_server):
    data_uri = "data:image/png;base64," + base64.b64encode(PNG).decode()
    client.chat.completions.create(model="gemini-2.5-flash", messages=[{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": data_uri}},
        {"type": "image_url", "image_url": {"url": image_server + "/pixel.png"}}]}])
    parts = sent(emulator, gw)["contents"][0]["parts"]
    expected = {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(PNG).decode()}}
    assert parts == [{"text": "what is this?"}, expected, expected]


def test_bad_image_url_is_a_400_not_an_upstream_error(client, gw, emulator, image_server):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="gemini-2.5-flash", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": image_server + "/missing.png"}}]}])
    assert e.value.body["param"] == "messages[0].content[0].image_url"
    assert emulator.requests() == []


def test_stop_and_length_finish_reasons(client, gw, emulator):
    c = client.chat.completions.create(model="gemini-2.5-flash", messages=user("x"), stop=["END"])
    assert c.choices[0].finish_reason == "stop"
    assert sent(emulator, gw)["generationConfig"]["stopSequences"] == ["END"]
    emulator.add_rule(times=1, reply={"text": ["partial"], "finish_reason": "MAX_TOKENS"})
    c = client.chat.completions.create(model="gemini-2.5-flash", messages=user("x"), max_tokens=3)
    assert c.choices[0].finish_reason == "length"
    assert sent(emulator, gw)["generationConfig"]["maxOutputTokens"] == 3


def test_upstream_failure_mid_stream_ends_with_an_error_chunk(client, gw, emulator):
    emulator.add_rule(times=1, reply={"text": ["one ", "two ", "three"], "cut_after": 1})
    stream = client.chat.completions.create(model="gemini-2.5-flash", messages=user("x"), stream=True)
    got = []
    with pytest.raises(openai.APIError) as e:
        for chunk in stream:
            got.extend(ch.delta.content or "" for ch in chunk.choices)
    assert "".join(got) == "one "
    assert e.value.message


def raw_post(gw: Gateway, body: bytes, content_type: str = "application/json") -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
    conn.request("POST", "/v1/chat/completions", body=body, headers={"content-type": content_type})
    resp = conn.getresponse()
    return resp.status, orjson.loads(resp.read())


@pytest.mark.parametrize(("body", "param"), [
    (b"{not json", None),
    (orjson.dumps({"model": "gemini-2.5-flash"}), "messages"),
    (orjson.dumps({"model": "gemini-2.5-flash", "messages": user("x"), "temperature": "hot"}), "temperature"),
    (orjson.dumps({"model": "gemini-2.5-flash", "messages": [{"role": "wizard", "content": "x"}]}),
     "messages[0].role"),
    (orjson.dumps({"model": 5, "messages": user("x")}), "model"),
])
def test_bad_input_gets_a_400_openai_error_with_param(gw, emulator, body, param):
    status, answer = raw_post(gw, body)
    assert status == 400
    assert set(answer["error"]) == {"message", "type", "param", "code"}
    assert answer["error"]["type"] == "invalid_request_error"
    assert answer["error"]["param"] == param
    assert answer["error"]["message"]
    assert emulator.requests() == []
