"""The foundation end to end: openai client -> real mitmdump with the addon -> relay -> emulator -> back."""

from __future__ import annotations

import urllib.request

import orjson


def test_healthz_answers_without_touching_upstream(gateway, emulator):
    with urllib.request.urlopen(gateway.url + "/healthz", timeout=5) as r:
        assert r.status == 200
        assert orjson.loads(r.read()) == {"status": "ok"}
    assert emulator.requests() == []


def test_non_stream_chat_completion_goes_through_the_relay_to_cloud_code(client, emulator):
    raw = client.chat.completions.with_raw_response.create(
        model="gemini-2.5-flash", messages=[{"role": "user", "content": "ping"}])
    completion = raw.parse()

    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "echo: ping"
    assert completion.choices[0].finish_reason == "stop"
    assert raw.headers["x-mapped-model"] == "gemini-2.5-flash"
    assert raw.headers["x-account-email"] == "acc1@example.com"
    sent = emulator.requests(rpc="generateContent")
    assert len(sent) == 1
    assert sent[0]["endpoint"] == "cloudcode"
    assert sent[0]["credential"] == "at-acc1"
    assert sent[0]["body"]["project"] == "proj-acc1"
    assert sent[0]["body"]["model"] == "gemini-2.5-flash"
    assert sent[0]["body"]["request"]["contents"] == [{"role": "user", "parts": [{"text": "ping"}]}]
