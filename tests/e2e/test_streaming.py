"""Stream behaviour that needs its own gateway settings: keep-alives during long silent phases."""

from __future__ import annotations

import http.client
import time

import openai
import orjson
import pytest


def test_silent_upstream_gets_keepalive_comments_and_the_stream_continues(start_gateway, emulator):
    gw = start_gateway(options={"ag_keepalive": 1})
    emulator.add_rule(times=1, reply={"thoughts": ["thinking"], "text": ["done"], "chunk_delay_ms": 2600})
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
    conn.request("POST", "/v1/chat/completions", body=orjson.dumps(
        {"model": "gemini-2.5-pro", "stream": True, "messages": [{"role": "user", "content": "think"}]}),
        headers={"content-type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200
    started = time.monotonic()
    lines = []
    while line := resp.readline():
        lines.append((time.monotonic() - started, line))
    body = b"".join(line for _, line in lines)
    assert b": keep-alive\n" in body
    assert body.endswith(b"data: [DONE]\n\n")
    chunks = [orjson.loads(line[6:]) for _, line in lines if line.startswith(b"data: {")]
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    reasoning = "".join(c["choices"][0]["delta"].get("reasoning_content") or ""
                        for c in chunks if c["choices"])
    assert (reasoning, content) == ("thinking", "done")
    # It came during the silence: between the thought and the answer (their order, not a clock, says so).
    order = [line for _, line in lines if line.startswith(b": keep-alive") or line.startswith(b"data: {")]
    thought = next(i for i, line in enumerate(order) if b'"reasoning_content":"thinking"' in line)
    answer = next(i for i, line in enumerate(order) if b'"content":"done"' in line)
    assert any(line.startswith(b": keep-alive") for line in order[thought + 1:answer])


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
def test_error_answers_name_the_mapped_model_and_the_failed_account_in_the_message(start_gateway, emulator,
                                                                                   stream):
    """The failed account is in the message; X-Account-Email names only an account that served (none here)."""
    gw = start_gateway()
    emulator.add_rule(reply={"error": {"kind": "quota_exhausted", "retry_delay": "30s"}})
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-test", max_retries=0, timeout=30)
    with pytest.raises(openai.RateLimitError) as e:
        answer = client.chat.completions.create(model="gpt-4o", stream=stream,
                                                messages=[{"role": "user", "content": "x"}])
        list(answer) if stream else None
    headers = e.value.response.headers
    assert headers["x-mapped-model"] == "gemini-2.5-flash"
    assert "x-account-email" not in headers
    assert "acc1@example.com" in e.value.body["message"]
    assert 29 <= int(headers["retry-after"]) <= 30


def test_a_400_after_model_mapping_names_the_mapped_model(start_gateway, emulator):
    gw = start_gateway()
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-test", max_retries=0, timeout=30)
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,@@not-base64@@"}}]}])
    assert e.value.response.headers["x-mapped-model"] == "gemini-2.5-flash"
    assert emulator.requests() == []
