"""Codex CLI (npm ``@openai/codex``, ``codex exec --json``) -> mitmdump -> emulator, end to end.

Codex is installed once into ``.codex-cache/`` (git-ignored) by a session fixture; the tests skip,
saying why, only when npm cannot install it. Each run gets its own ``CODEX_HOME`` (config.toml with a
``gw`` provider on the gateway, plus a model catalog that enables the freeform ``apply_patch`` tool and
reasoning summaries) and a scratch git repository as its working directory, with stdin closed.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest

from support.gateway import ROOT, Gateway
from support.npm import client_env, npm_cli, run_cli

CODEX_VERSION = "0.169.0"
CODEX_DIR = ROOT / ".codex-cache"
RUN_TIMEOUT = 180
MODEL = "gemini-2.5-flash"
SIGNATURE = "CiQBVKhc7sZ2dGhvdWdodC1zaWduYXR1cmUtZnJvbS1jb2RleA=="
CATALOG = {"models": [{
    "slug": MODEL, "display_name": MODEL, "description": "gateway model", "default_reasoning_level": "medium",
    "supported_reasoning_levels": [{"effort": e, "description": e} for e in ("low", "medium", "high")],
    "shell_type": "shell_command", "visibility": "list", "supported_in_api": True, "priority": 1,
    "base_instructions": "You are a coding agent.", "supports_reasoning_summaries": True,
    "default_reasoning_summary": "auto", "support_verbosity": False, "apply_patch_tool_type": "freeform",
    "truncation_policy": {"mode": "tokens", "limit": 10000}, "supports_parallel_tool_calls": True,
    "context_window": 1000000, "max_context_window": 1000000, "effective_context_window_percent": 95,
    "experimental_supported_tools": [], "input_modalities": ["text", "image"], "supports_search_tool": False,
}]}
CLAUDE = "claude-opus-4-6-thinking"
CATALOG["models"].append({**CATALOG["models"][0], "slug": CLAUDE, "display_name": CLAUDE, "priority": 2})
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="session")
def codex() -> Path:
    return npm_cli(CODEX_DIR, f"@openai/codex@{CODEX_VERSION}", "codex")


@pytest.fixture(scope="module")
def gw(cloudcode_gateway: Gateway) -> Gateway:
    return cloudcode_gateway


@pytest.fixture
def run_codex(codex: Path, gw: Gateway, emulator, tmp_path: Path, workdir: Path):
    subprocess.run(["git", "init", "-q", str(workdir)], check=True, timeout=30)  # Codex works in a repository
    home = tmp_path / "codex-home"
    home.mkdir()
    (home / "catalog.json").write_bytes(orjson.dumps(CATALOG))
    (home / "config.toml").write_text(
        f'model = "{MODEL}"\nmodel_provider = "gw"\n\n[model_providers.gw]\nname = "antigravity gateway"\n'
        f'base_url = "{gw.url}/v1"\nenv_key = "GW_API_KEY"\nwire_api = "responses"\n'
        "request_max_retries = 0\nstream_max_retries = 0\n")
    env = client_env()
    env.update(CODEX_HOME=str(home), GW_API_KEY="sk-local")

    def run(prompt: str, *args: str) -> list[dict[str, Any]]:
        command = [str(codex), "exec", "--skip-git-repo-check", "--json",
                   "-c", f'model_catalog_json="{home / "catalog.json"}"', *args, prompt]
        stdout, context = run_cli(command, cwd=workdir, env=env, timeout=RUN_TIMEOUT)
        events = [orjson.loads(line) for line in stdout.splitlines() if line.startswith("{")]
        assert events[-1]["type"] == "turn.completed", context
        return events

    return run


def gemini_requests(emulator) -> list[dict[str, Any]]:
    return [r["body"]["request"] for r in emulator.requests(rpc="streamGenerateContent")]


def items(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e["item"] for e in events if e["type"] == "item.completed" and e["item"]["type"] == kind]


def function_names(request: dict[str, Any]) -> set[str]:
    return {d["name"] for tool in request.get("tools", []) for d in tool.get("functionDeclarations", [])}


def test_codex_plain_turn(run_codex, emulator):
    emulator.add_rule(times=1, reply={"thoughts": ["Greeting the user."], "text": ["Hello from Gemini."]})
    events = run_codex("say hi")
    assert [m["text"] for m in items(events, "agent_message")] == ["Hello from Gemini."]
    assert [r["text"] for r in items(events, "reasoning")] == ["Greeting the user."]
    [request] = gemini_requests(emulator)
    assert request["systemInstruction"]["parts"]  # Codex's developer messages
    assert request["contents"][-1]["role"] == "user"
    assert request["contents"][-1]["parts"][-1] == {"text": "say hi"}
    names = function_names(request)
    assert {"exec_command", "apply_patch", "multi_agent_v1__spawn_agent"} <= names
    assert all("googleSearch" not in tool for tool in request["tools"])
    assert request["generationConfig"]["thinkingConfig"]["includeThoughts"] is True


def test_codex_tool_loop_runs_a_command_and_answers_from_its_output(run_codex, emulator):
    emulator.add_rule(times=1, reply={"function_calls": [
        {"name": "exec_command", "args": {"cmd": "echo codex-tool-ran"}, "thought_signature": SIGNATURE}]})
    emulator.add_rule(times=1, reply={"text": ["The command printed codex-tool-ran."]})
    events = run_codex("run echo")
    [command] = items(events, "command_execution")
    assert "codex-tool-ran" in command["aggregated_output"]
    assert command["exit_code"] == 0
    assert [m["text"] for m in items(events, "agent_message")] == ["The command printed codex-tool-ran."]
    first, second = gemini_requests(emulator)
    assert second["contents"][: len(first["contents"])] == first["contents"]
    model_turn, tool_turn = second["contents"][len(first["contents"]):]
    assert model_turn == {"role": "model", "parts": [{
        "functionCall": {"name": "exec_command", "args": {"cmd": "echo codex-tool-ran"}},
        "thoughtSignature": SIGNATURE}]}
    [response] = tool_turn["parts"]
    assert response["functionResponse"]["name"] == "exec_command"
    assert "codex-tool-ran" in response["functionResponse"]["response"]["output"]


def test_codex_applies_a_freeform_apply_patch(run_codex, emulator, workdir):
    patch = "*** Begin Patch\n*** Add File: hello.txt\n+hello from apply_patch\n*** End Patch\n"
    emulator.add_rule(times=1, reply={"function_calls": [{"name": "apply_patch", "args": {"input": patch}}]})
    emulator.add_rule(times=1, reply={"text": ["Created hello.txt."]})
    events = run_codex("create hello.txt", "-s", "workspace-write")
    assert (workdir / "hello.txt").read_text() == "hello from apply_patch\n"
    [change] = items(events, "file_change")
    assert change["status"] == "completed"
    assert [m["text"] for m in items(events, "agent_message")] == ["Created hello.txt."]
    second = gemini_requests(emulator)[1]
    model_turn, tool_turn = second["contents"][-2:]
    assert model_turn["parts"] == [{"functionCall": {"name": "apply_patch", "args": {"input": patch}}}]
    response = tool_turn["parts"][0]["functionResponse"]
    assert response["name"] == "apply_patch"
    assert "hello.txt" in response["response"]["output"]


def test_codex_tool_loop_on_claude_replays_the_thinking_block(run_codex, emulator):
    """Claude through Codex: the emulator's Claude rejects a tool turn without its signed thinking block
    (or with a fabricated one), so the second request passing is the proof; then it is checked exactly."""
    from gemini_emulator import claude_signature

    emulator.add_rule(times=1, reply={"thoughts": ["I will run echo."], "function_calls": [
        {"name": "exec_command", "args": {"cmd": "echo claude-ran"}}]})
    emulator.add_rule(times=1, reply={"thoughts": ["It printed it."], "text": ["Claude saw claude-ran."]})
    events = run_codex("run echo", "-m", CLAUDE)
    assert [m["text"] for m in items(events, "agent_message")] == ["Claude saw claude-ran."]
    first, second = gemini_requests(emulator)
    assert first["toolConfig"] == {"functionCallingConfig": {"mode": "VALIDATED"}}
    model_turn = second["contents"][len(first["contents"])]
    assert model_turn["parts"][0] == {"thought": True, "text": "I will run echo.",
                                      "thoughtSignature": claude_signature("I will run echo.")}
    assert "thinkingConfig" in second["generationConfig"]
