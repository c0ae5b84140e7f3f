"""The Vercel AI SDK (npm ``ai`` + ``@ai-sdk/openai``) -> mitmdump -> emulator, end to end.

Its default OpenAI provider speaks the Responses API with ``store`` on, so from the second turn on it
sends earlier assistant output as ``item_reference`` items: they must resolve from the gateway's store.
The packages are installed once into ``.aisdk-cache/`` (git-ignored) by a session fixture; the test
skips, saying why, only when npm or node cannot install or run them.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import orjson
import pytest

from support.gateway import ROOT, Gateway, sent
from support.npm import npm_install

PACKAGES = ("ai@7.0.185", "@ai-sdk/openai@4.0.126")
CACHE = ROOT / ".aisdk-cache"
pytestmark = pytest.mark.timeout(300)

SCRIPT = """
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, streamText, tool, stepCountIs } from "ai";
import { z } from "zod";
const openai = createOpenAI({ baseURL: process.env.GW_URL + "/v1", apiKey: "sk-test" });
const model = openai("gemini-2.5-flash");
const out = {};
const first = await generateText({ model, maxRetries: 0, messages: [{ role: "user", content: "hello" }] });
out.first = first.text;
const messages = [{ role: "user", content: "hello" }, ...first.response.messages,
                  { role: "user", content: "again" }];
const second = await generateText({ model, maxRetries: 0, messages });
out.second = second.text;
const third = streamText({ model, maxRetries: 0, messages: [
  ...messages, ...second.response.messages, { role: "user", content: "third" }] });
out.third = await third.text;
const withTool = await generateText({
  model, maxRetries: 0, stopWhen: stepCountIs(3), messages: [{ role: "user", content: "weather?" }],
  tools: { weather: tool({ description: "weather", inputSchema: z.object({ city: z.string() }),
                           execute: async ({ city }) => ({ city, temp: 21 }) }) },
});
out.tool = withTool.text;
out.steps = withTool.steps.length;
console.log(JSON.stringify(out));
"""


@pytest.fixture(scope="session")
def ai_sdk() -> Path:
    if shutil.which("node") is None:
        pytest.skip("node is not installed, so the Vercel AI SDK cannot run")
    marker = CACHE / "node_modules" / "@ai-sdk" / "openai" / "package.json"
    if not marker.exists() or orjson.loads(marker.read_bytes())["version"] != PACKAGES[1].rsplit("@", 1)[1]:
        npm_install(CACHE, *PACKAGES)
    script = CACHE / "multi_turn.mjs"
    script.write_text(SCRIPT)
    return script


def test_multi_turn_with_the_default_store_and_a_tool_loop(ai_sdk: Path, gw: Gateway, emulator):
    emulator.add_rules([
        {"match": {"rpc": "generateContent"}, "times": 1, "reply": {"text": ["first answer"]}},
        {"match": {"rpc": "generateContent"}, "times": 1, "reply": {"text": ["second answer"]}},
    ])
    emulator.add_rule(times=1, reply={"text": ["third answer"]})
    emulator.add_rule(times=1, reply={"function_calls": [{"name": "weather", "args": {"city": "Paris"}}]})
    emulator.add_rule(times=1, reply={"text": ["It is 21 C in Paris."]})
    run = subprocess.run(["node", str(ai_sdk)], capture_output=True, text=True, timeout=120, cwd=CACHE,
                         env={"PATH": "/usr/bin:/bin", "GW_URL": gw.url})
    assert run.returncode == 0, run.stderr[-3000:]
    out = orjson.loads(run.stdout.strip().splitlines()[-1])
    assert out == {"first": "first answer", "second": "second answer", "third": "third answer",
                   "tool": "It is 21 C in Paris.", "steps": 2}
    generate = [r for r in emulator.requests(kind="api") if r["rpc"] in ("generateContent",
                                                                          "streamGenerateContent")]
    second = generate[1]["body"]
    second = second["request"] if gw.dialect == "cloudcode" else second
    assert second["contents"] == [  # the item_reference to the first answer, resolved from the store
        {"role": "user", "parts": [{"text": "hello"}]},
        {"role": "model", "parts": [{"text": "first answer"}]},
        {"role": "user", "parts": [{"text": "again"}]},
    ]
    last = sent(emulator, gw)
    assert last["contents"][1]["parts"][0]["functionCall"] == {"name": "weather", "args": {"city": "Paris"}}
    assert last["contents"][2]["parts"][0]["functionResponse"]["name"] == "weather"
