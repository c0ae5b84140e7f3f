"""Claude Code (npm ``@anthropic-ai/claude-code``, ``claude -p --output-format json``) -> mitmdump with the
addon (/v1/messages) -> emulator, end to end.

Claude Code is installed once into ``.claude-code-cache/`` (git-ignored) by a session fixture; the tests
skip, saying why, only when npm cannot install it. Each run gets its own HOME and config directory in a
temp dir (nothing of the user's is read or written), a scratch working directory, stdin closed, and its
telemetry, auto-updater and other nonessential traffic off: it talks to the gateway only.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from support.gateway import ROOT, Gateway
from support.npm import client_env, npm_cli, run_cli

CLAUDE_CODE_VERSION = "2.1.332"
CLAUDE_CODE_DIR = ROOT / ".claude-code-cache"
RUN_TIMEOUT = 180
MODEL = "gemini-2.5-flash"
SIDE_MODEL = "gemini-2.5-flash-lite"  # Claude Code's small/fast model, for its side requests (titles etc.)
CLAUDE = "claude-opus-4-6-thinking"
CLAUDE_UPSTREAM = "claude-opus-4-6-thinking"  # as the gateway names it to Cloud Code
KEY = "sk-gw-claude-code"
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="session")
def claude() -> Path:
    return npm_cli(CLAUDE_CODE_DIR, f"@anthropic-ai/claude-code@{CLAUDE_CODE_VERSION}", "claude")


@pytest.fixture(scope="module")
def gateway_options() -> dict[str, Any]:
    return {"ag_api_key": KEY, "ag_auth_mode": "strict"}


@pytest.fixture(scope="module")
def gw(cloudcode_gateway: Gateway) -> Gateway:
    return cloudcode_gateway


@pytest.fixture
def run_claude(claude: Path, gw: Gateway, emulator, tmp_path: Path, workdir: Path):
    home = tmp_path / "home"
    home.mkdir()
    env = client_env("ANTHROPIC_", "CLAUDE_")  # none of the user's Claude settings
    env.update(
        HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), CLAUDE_CONFIG_DIR=str(home / ".claude"),
        ANTHROPIC_BASE_URL=gw.url, ANTHROPIC_API_KEY=KEY,
        ANTHROPIC_SMALL_FAST_MODEL=SIDE_MODEL, ANTHROPIC_DEFAULT_HAIKU_MODEL=SIDE_MODEL,
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1", DISABLE_AUTOUPDATER="1", DISABLE_TELEMETRY="1",
        DISABLE_ERROR_REPORTING="1", DISABLE_BUG_COMMAND="1", CLAUDE_CODE_MAX_RETRIES="0")

    def run(prompt: str, *args: str, model: str = MODEL) -> dict[str, Any]:
        command = [str(claude), "-p", prompt, "--output-format", "json", "--model", model, *args]
        stdout, context = run_cli(command, cwd=workdir, env=env, timeout=RUN_TIMEOUT)
        result = orjson.loads(stdout)
        assert result["type"] == "result" and result["is_error"] is False, context
        return result

    return run


def main_requests(emulator, model: str = MODEL) -> list[dict[str, Any]]:
    """The Gemini requests of Claude Code's main loop (not its side requests on SIDE_MODEL)."""
    return [r["body"]["request"] for r in emulator.requests() if r.get("model") == model]


def function_names(request: dict[str, Any]) -> set[str]:
    return {d["name"] for tool in request.get("tools", []) for d in tool.get("functionDeclarations", [])}


def test_claude_code_plain_answer(run_claude, emulator):
    emulator.add_rule(match={"model": MODEL}, times=1, reply={"text": ["Hello from Gemini via the gateway."]})
    result = run_claude("say hi")
    assert result["result"] == "Hello from Gemini via the gateway."
    assert result["subtype"] == "success" and result["num_turns"] == 1
    [request] = main_requests(emulator)
    assert request["systemInstruction"]["parts"]  # Claude Code's system prompt
    assert {"Bash", "Read", "Edit", "Write"} <= function_names(request)
    [turn] = request["contents"]  # the prompt, and Claude Code's mid-conversation system message after it
    assert turn["role"] == "user"
    texts = [part["text"] for part in turn["parts"]]
    assert "say hi" in texts and any("# Environment" in text for text in texts)


def test_claude_code_tool_loop_runs_bash_and_answers_from_its_output(run_claude, emulator, workdir):
    command = "echo claude-code-ran > ran.txt && cat ran.txt"
    emulator.add_rule(match={"model": MODEL}, times=1, reply={"function_calls": [
        {"name": "Bash", "args": {"command": command, "description": "Write and show a marker file"}}]})
    emulator.add_rule(match={"model": MODEL}, times=1,
                      reply={"text": ["The command printed claude-code-ran."]})
    result = run_claude("run the marker command", "--allowedTools", "Bash")
    assert result["result"] == "The command printed claude-code-ran."
    assert (workdir / "ran.txt").read_text() == "claude-code-ran\n"  # the command really ran, here
    first, second = main_requests(emulator)
    model_turn, tool_turn = second["contents"][len(first["contents"]):]
    [call] = [part["functionCall"] for part in model_turn["parts"] if "functionCall" in part]
    assert call["name"] == "Bash" and call["args"]["command"] == command
    [response] = [part["functionResponse"] for part in tool_turn["parts"] if "functionResponse" in part]
    assert response["name"] == "Bash"
    assert "claude-code-ran" in orjson.dumps(response["response"]).decode()


def test_claude_code_tool_loop_on_claude_replays_the_thinking_block(run_claude, emulator, workdir):
    """Claude through Claude Code: the emulator's Claude rejects a tool turn without its signed thinking
    block (or with a forged one), so the second request passing is the proof; then it is checked exactly."""
    from gemini_emulator import claude_signature

    emulator.add_rule(match={"model": CLAUDE_UPSTREAM}, times=1, reply={
        "thoughts": ["I will run echo."],
        "function_calls": [{"name": "Bash", "args": {"command": "echo claude-ran > claude.txt"}}]})
    emulator.add_rule(match={"model": CLAUDE_UPSTREAM}, times=1,
                      reply={"thoughts": ["It ran."], "text": ["Claude ran it."]})
    result = run_claude("run echo", "--allowedTools", "Bash", model=CLAUDE)
    assert result["result"] == "Claude ran it."
    assert (workdir / "claude.txt").read_text() == "claude-ran\n"
    first, second = main_requests(emulator, CLAUDE_UPSTREAM)
    model_turn = second["contents"][len(first["contents"])]
    assert model_turn["parts"][0] == {"thought": True, "text": "I will run echo.",
                                      "thoughtSignature": claude_signature("I will run echo.")}


def test_the_readme_block_runs_claude_code_through_the_gateway(claude, gw, emulator, tmp_path, workdir):
    """README's Claude Code block as written, its interactive ``claude`` made a ``-p`` run."""
    from test_readme import block

    script = block("export ANTHROPIC_BASE_URL=http://127.0.0.1:8045").replace("http://127.0.0.1:8045", gw.url)
    script = script.replace("<ag_api_key or anything>", KEY).rstrip("\n")
    *exports, command = script.split("\n")
    command = re.sub(r"\s{2,}#\s.*$", "", command) + " -p 'say hi' --output-format json"
    emulator.add_rule(match={"model": CLAUDE_UPSTREAM}, times=1, reply={"text": ["Hi from the README."]})
    home = tmp_path / "home"
    home.mkdir()
    env = client_env("ANTHROPIC_", "CLAUDE_")
    env.update(HOME=str(home), PATH=f"{claude.parent}{os.pathsep}{env['PATH']}", DISABLE_AUTOUPDATER="1")
    script = "\n".join([*exports, command])
    stdout, _ = run_cli(["bash", "-c", script], cwd=workdir, env=env, timeout=RUN_TIMEOUT)
    assert orjson.loads(stdout)["result"] == "Hi from the README."
    assert main_requests(emulator, CLAUDE_UPSTREAM)
