"""One access-log line per client request in a real mitmdump's output, at its default verbosity, instead of
mitmproxy's per-connection lines; failed upstream attempts keep their own lines."""

from __future__ import annotations

import re
import time

import openai
import pytest

pytestmark = pytest.mark.e2e

NOISE = ("client connect", "client disconnect", "server connect", "server disconnect", "Streaming response")


def access_lines(gw, marker: str = "") -> list[str]:
    return [line for line in gw.log().splitlines()
            if re.search(r"\] (GET|POST|OPTIONS) /", line) and marker in line and "/healthz" not in line]


def wait_lines(gw, count: int) -> list[str]:
    deadline = time.monotonic() + 10
    while len(lines := access_lines(gw)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return lines


def test_one_line_per_request_with_models_account_status_attempts_tokens_and_times(start_gateway, emulator):
    gw = start_gateway(accounts={"a": {}, "b": {}},
                       options={"ag_scheduling": "lru", "termlog_verbosity": None})  # mitmdump's default
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-x", max_retries=0, timeout=30)
    emulator.add_rule(match={"credential": "at-a"}, times=1, reply={"error": {"kind": "capacity"}})
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    stream = client.chat.completions.create(model="gemini-2.5-pro", stream=True,
                                            messages=[{"role": "user", "content": "hi there"}])
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "echo: hi there"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="gemini-2.5-flash", messages=[])
    client.models.list()

    lines = wait_lines(gw, 4)
    assert len(lines) == 4, gw.log()
    first, streamed, refused, models = lines
    assert re.search(r"\[127\.0\.0\.1:\d+\] POST /v1/chat/completions gpt-4o → gemini-2\.5-flash "
                     r"account=a@example\.com status=200 attempts=2 tokens=\d+/\d+ "
                     r"first=\d+ms total=\d+ms$", first), first
    assert re.search(r"POST /v1/chat/completions gemini-2\.5-pro → gemini-2\.5-pro "
                     r"account=b@example\.com status=200 attempts=1 tokens=\d+/\d+ "
                     r"first=\d+ms total=\d+ms stream$", streamed), streamed
    assert re.search(r"POST /v1/chat/completions status=400 first=\d+ms total=\d+ms error=\w+$",
                     refused), refused
    assert re.search(r"GET /v1/models status=200", models), models
    failed = [line for line in gw.log().splitlines() if "attempt failed" in line]
    assert len(failed) == 1 and "a@example.com" in failed[0] and "503" in failed[0]
    assert "<< 200" not in gw.log()  # mitmdump's own flow lines (flow_detail=1) are replaced
    for noise in NOISE:
        assert noise not in gw.log(), f"{noise!r} at the default verbosity"


def test_debug_verbosity_brings_the_connection_lines_back(start_gateway):
    gw = start_gateway(options={"termlog_verbosity": "debug"})
    openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-x", max_retries=0).models.list()
    wait_lines(gw, 1)
    assert "client connect" in gw.log()
