"""The foundation end to end: openai client -> real mitmdump with the addon -> relay -> emulator -> back."""

from __future__ import annotations

import concurrent.futures
import time
import urllib.request

import openai
import orjson
import pytest
from mitmproxy import io as mitm_io

from support.gateway import ROOT


def test_healthz_answers_without_touching_upstream(gateway, emulator):
    with urllib.request.urlopen(gateway.url + "/healthz", timeout=5) as r:
        assert r.status == 200
        assert orjson.loads(r.read()) == {"status": "ok",
                                          "accounts": {"ready": 1, "cooling": 0, "disabled": 0}}
    assert emulator.requests() == []


@pytest.mark.parametrize("inline", [True, False], ids=["inline", "relay"])
def test_non_stream_chat_completion_reaches_cloud_code(start_gateway, emulator, inline):
    gw = start_gateway(options={"ag_inline_non_stream": inline})
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-test", max_retries=0, timeout=30)
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


def test_nothing_goes_upstream_while_a_flow_is_intercepted_and_edits_are_sent(start_gateway, emulator,
                                                                             tmp_path):
    script = str(ROOT / "tests" / "support" / "intercept_and_edit.py")
    gw = start_gateway(options={"intercept": "~q"},
                       extra_args=["-s", script, "--set", f"hold_dir={tmp_path}"])
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-test", max_retries=0, timeout=30)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        answer = pool.submit(client.chat.completions.create, model="gemini-2.5-flash",
                             messages=[{"role": "user", "content": "held"}])
        deadline = time.monotonic() + 20
        while not (tmp_path / "held").exists():
            assert time.monotonic() < deadline and not answer.done(), "the flow was never held"
            time.sleep(0.02)
        assert emulator.requests(rpc="generateContent") == []  # held in mitmproxy: no attempt made yet
        (tmp_path / "release").touch()
        completion = answer.result(timeout=20)
    assert completion.choices[0].message.content == "echo: held"
    sent = emulator.requests(rpc="generateContent")
    assert len(sent) == 1
    # the edit of the client's request was translated and went upstream
    assert sent[0]["body"]["request"]["generationConfig"]["temperature"] == 0.123


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
def test_saved_flow_shows_client_request_real_upstream_request_account_and_attempts(
        start_gateway, emulator, tmp_path, stream):
    saved = tmp_path / "flows.mitm"
    gw = start_gateway(extra_args=["-w", str(saved)])
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-test", max_retries=0, timeout=30)
    answer = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "saved"}],
                                            stream=stream)
    if stream:
        list(answer)
    gw.stop()
    with saved.open("rb") as fh:
        flows = [f for f in mitm_io.FlowReader(fh).stream()
                 if f.metadata.get("ag.route") == "chat.completions"]
    assert len(flows) == 1
    f = flows[0]
    rpc = "streamGenerateContent?alt=sse" if stream else "generateContent"
    # The flow is the client's request (what a replay sends again); the upstream call is in ag.upstream.
    assert (f.request.method, f.request.path) == ("POST", "/v1/chat/completions")
    assert orjson.loads(f.request.content)["model"] == "gpt-4o"
    upstream = f.metadata["ag.upstream"]["request"]
    assert upstream["url"] == f"{emulator.cloudcode_bases[0]}:{rpc}"
    sent = orjson.loads(upstream["body"])
    assert (sent["project"], sent["model"]) == ("proj-acc1", "gemini-2.5-flash")  # the envelope really sent
    assert dict(upstream["headers"])["authorization"] == "[redacted]"
    assert f.metadata["ag.upstream"]["account"] == "acc1@example.com"
    assert f.comment.startswith("gpt-4o → gemini-2.5-flash · acc1@example.com · ")
    assert f.comment.endswith(" ms") and not f.marked
