"""Stored responses as the Responses API's state, end to end with the openai client: retrieve, delete,
input_items (paginated), cancel, item_reference input items, store: false, and a restart in between."""

from __future__ import annotations

import http.client
from typing import Any

import openai
import orjson
import pytest

from support.gateway import Gateway, sent


@pytest.fixture
def client(conforming_client: openai.OpenAI) -> openai.OpenAI:
    """gw (tests/e2e/conftest.py) once per upstream dialect; every answer checked against OpenAI's schema."""
    return conforming_client


def raw(gw: Gateway, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
    data = orjson.dumps(body) if body is not None else None
    conn.request(method, path, body=data, headers={"content-type": "application/json"} if data else {})
    r = conn.getresponse()
    status, payload = r.status, r.read()
    conn.close()
    return status, orjson.loads(payload)


def test_retrieve_gives_back_the_response_as_it_was_answered(client, gw, emulator):
    created = client.responses.create(model="gemini-2.5-flash", input="ping", metadata={"k": "v"})
    got = client.responses.retrieve(created.id)
    assert got.model_dump() == created.model_dump()
    with client.responses.stream(model="gemini-2.5-flash", input="streamed") as s:
        streamed = s.get_final_response()
    assert client.responses.retrieve(streamed.id).output_text == streamed.output_text == "echo: streamed"


def test_input_items_lists_the_request_input_with_ids_and_pages(client, gw, emulator):
    created = client.responses.create(model="gemini-2.5-flash", input=[
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "two"},
        {"role": "user", "content": [{"type": "input_text", "text": "three"}]},
    ])
    items = client.responses.input_items.list(created.id)  # desc by default, as OpenAI
    texts = [i.content[0].text for i in items.data]
    assert texts == ["three", "two", "one", "Be brief."]
    assert all(i.id and i.type == "message" for i in items.data)
    asc = client.responses.input_items.list(created.id, order="asc", limit=2)
    assert [i.content[0].text for i in asc.data] == ["Be brief.", "one"] and asc.has_more
    rest = client.responses.input_items.list(created.id, order="asc", limit=2, after=asc.data[-1].id)
    assert [i.content[0].text for i in rest.data] == ["two", "three"] and not rest.has_more
    every = [i.content[0].text for i in client.responses.input_items.list(created.id, order="asc", limit=1)]
    assert every == ["Be brief.", "one", "two", "three"]  # the SDK's auto-pagination follows the cursor
    status, body = raw(gw, "GET", f"/v1/responses/{created.id}/input_items?limit=0")
    assert status == 400 and body["error"]["param"] == "limit"


def test_delete_then_everything_about_the_id_is_a_404(client, gw, emulator):
    created = client.responses.create(model="gemini-2.5-flash", input="ping")
    status, body = raw(gw, "DELETE", f"/v1/responses/{created.id}")
    assert (status, body) == (200, {"id": created.id, "object": "response", "deleted": True})
    for call in (lambda: client.responses.retrieve(created.id), lambda: client.responses.delete(created.id),
                 lambda: client.responses.input_items.list(created.id)):
        with pytest.raises(openai.NotFoundError) as e:
            call()
        assert e.value.body["code"] == "not_found"
        assert created.id in e.value.body["message"]
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="gemini-2.5-flash", input="x", previous_response_id=created.id)


def test_a_missing_id_is_a_404_about_the_id_not_path_advice(client, gw, emulator):
    with pytest.raises(openai.NotFoundError) as e:
        client.responses.retrieve("resp_missing")
    assert e.value.body == {"message": e.value.body["message"], "type": "invalid_request_error",
                            "param": "response_id", "code": "not_found"}
    assert "resp_missing" in e.value.body["message"] and "base URL" not in e.value.body["message"]
    assert emulator.requests(kind="api") == []


def test_cancel_is_the_documented_error(client, gw, emulator):
    created = client.responses.create(model="gemini-2.5-flash", input="ping")
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.cancel(created.id)
    assert "background" in e.value.body["message"]
    with pytest.raises(openai.NotFoundError):
        client.responses.cancel("resp_missing")


def test_store_false_is_not_kept(client, gw, emulator):
    created = client.responses.create(model="gemini-2.5-flash", input="ping", store=False)
    assert created.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)


def test_item_references_resolve_from_the_store(client, gw, emulator):
    """What the Vercel AI SDK sends by default: earlier output items by reference."""
    first = client.responses.create(model="gemini-2.5-flash", input="hello")
    [message] = first.output
    emulator.add_rule(times=1, reply={"text": ["second"]})
    second = client.responses.create(model="gemini-2.5-flash", input=[
        {"role": "user", "content": "hello"},
        {"type": "item_reference", "id": message.id},
        {"role": "user", "content": "again"},
    ])
    assert second.output_text == "second"
    assert sent(emulator, gw)["contents"] == [
        {"role": "user", "parts": [{"text": "hello"}]},
        {"role": "model", "parts": [{"text": "echo: hello"}]},
        {"role": "user", "parts": [{"text": "again"}]},
    ]
    emulator.reset()
    with pytest.raises(openai.NotFoundError) as e:
        client.responses.create(model="gemini-2.5-flash",
                                input=[{"type": "item_reference", "id": "msg_nope"}])
    assert e.value.body["param"] == "input[0].id" and "msg_nope" in e.value.body["message"]
    assert emulator.requests(kind="api") == []


def test_a_tool_loop_with_plain_items_gets_its_signature_from_the_store(client, gw, emulator):
    """A client that sends back only the function_call (no reasoning items): the store has the signature."""
    tool = {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}
    emulator.add_rule(times=1, reply={"function_calls": [{"name": "get_weather", "args": {},
                                                          "thought_signature": "U0lHTkFUVVJF"}]})
    first = client.responses.create(model="gemini-3-pro-preview", input="weather?", tools=[tool])
    [call] = first.output
    assert call.type == "function_call" and len(call.call_id) <= 64 and "U0lH" not in call.call_id
    assert call.model_dump()["status"] == "completed"
    emulator.add_rule(times=1, reply={"text": ["sunny"]})
    client.responses.create(model="gemini-3-pro-preview", tools=[tool], input=[
        {"role": "user", "content": "weather?"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
    ])
    assert sent(emulator, gw)["contents"][1]["parts"][0]["thoughtSignature"] == "U0lHTkFUVVJF"


def test_stored_responses_survive_a_restart(start_gateway, emulator):
    gw = start_gateway()
    gw.dialect = "cloudcode"
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-test", max_retries=0, timeout=30)
    tool = {"type": "function", "name": "f", "parameters": {"type": "object", "properties": {}}}
    emulator.add_rule(times=1, reply={"function_calls": [{"name": "f", "args": {},
                                                          "thought_signature": "UkVT"}]})
    first = client.responses.create(model="gemini-3-pro-preview", input="before", tools=[tool])
    [call] = first.output
    assert (gw.data_dir / "responses.sqlite3").exists()
    gw.stop()
    gw.start()
    emulator.reset()
    counted = client.responses.input_tokens.count(previous_response_id=first.id, input="x")  # read from disk
    assert counted.input_tokens > 0
    assert client.responses.retrieve(first.id).model_dump() == first.model_dump()
    assert [i.content[0].text for i in client.responses.input_items.list(first.id)] == ["before"]
    emulator.add_rule(times=1, reply={"text": ["after"]})
    second = client.responses.create(previous_response_id=first.id, tools=[tool], input=[
        {"type": "function_call_output", "call_id": call.call_id, "output": "done"}])
    assert second.output_text == "after" and second.model == "gemini-3-pro-preview"
    contents = sent(emulator, gw)["contents"]
    assert contents[0] == {"role": "user", "parts": [{"text": "before"}]}
    assert contents[1]["parts"][0]["thoughtSignature"] == "UkVT"
    emulator.reset()
    emulator.add_rule(times=1, reply={"text": ["by reference"]})
    client.responses.create(model="gemini-3-pro-preview", tools=[tool], input=[
        {"role": "user", "content": "before"}, {"type": "item_reference", "id": call.id},
        {"type": "function_call_output", "call_id": call.call_id, "output": "done"}])
    assert sent(emulator, gw)["contents"][1]["parts"][0]["thoughtSignature"] == "UkVT"
