"""Legacy /v1/completions end to end: openai client ``completions.create`` -> mitmdump -> emulator."""

from __future__ import annotations

import openai
import pytest


@pytest.fixture
def client(cloudcode_gateway, emulator) -> openai.OpenAI:
    return openai.OpenAI(base_url=cloudcode_gateway.url + "/v1", api_key="sk-test", max_retries=0, timeout=30)


def sent(emulator) -> dict:
    calls = [r for r in emulator.requests() if r["rpc"] in ("generateContent", "streamGenerateContent")]
    request = dict(calls[-1]["body"]["request"])
    request.pop("sessionId")  # Cloud Code's envelope, not the translation
    return request


def test_non_stream(client, emulator):
    c = client.completions.create(model="gemini-2.5-flash", prompt="Say this is a test", max_tokens=50,
                                  stop=["\n\n"], temperature=0.2)
    assert c.object == "text_completion"
    assert c.id.startswith("cmpl-")
    choices = [(ch.index, ch.text, ch.finish_reason) for ch in c.choices]
    assert choices == [(0, "echo: Say this is a test", "stop")]
    assert c.usage.total_tokens == c.usage.prompt_tokens + c.usage.completion_tokens > 0
    assert sent(emulator) == {
        "generationConfig": {"temperature": 0.2, "maxOutputTokens": 50, "stopSequences": ["\n\n"]},
        "contents": [{"role": "user", "parts": [{"text": "Say this is a test"}]}],
    }


def test_stream_with_echo_and_usage(client, emulator):
    emulator.add_rule(times=1, reply={"thoughts": ["hidden"], "text": ["one ", "two"]})
    chunks = list(client.completions.create(model="gemini-2.5-flash", prompt=["Count:"], stream=True,
                                            echo=True,
                                            stream_options={"include_usage": True}))
    assert all(c.object == "text_completion" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    texts = [ch.text for c in chunks for ch in c.choices]
    assert texts == ["Count:", "one ", "two", ""]  # echo first, thoughts never
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0


def test_n_gives_one_choice_per_candidate(client, emulator):
    c = client.completions.create(model="gemini-2.5-flash", prompt="hi", n=2)
    assert [ch.index for ch in c.choices] == [0, 1]
    assert sent(emulator)["generationConfig"] == {"candidateCount": 2}


@pytest.mark.parametrize(("kwargs", "param"), [
    ({"prompt": ["a", "b"]}, "prompt"),
    ({"prompt": [1, 2, 3]}, "prompt"),
    ({"prompt": "a", "suffix": "z"}, "suffix"),
])
def test_what_gemini_cannot_do_is_a_clear_400(client, emulator, kwargs, param):
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="gemini-2.5-flash", **kwargs)
    assert e.value.body["param"] == param
    assert "not supported" in e.value.body["message"]
    assert emulator.requests() == []
