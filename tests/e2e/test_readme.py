"""README.md is true: its options table lists every ag_* option with its default, and every command it
shows works as written (run through real processes: scripts/gateway, scripts/ag, curl, python)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from mitmproxy.test import taddons

from antigravity_gw import make_addons
from support.gateway import ROOT, free_port, write_account


def readme_rows() -> dict[str, str]:
    rows = {}
    for line in (ROOT / "README.md").read_text().splitlines():
        if m := re.match(r"^\| `(ag_\w+)` \| (.*?) \| .* \|$", line):
            rows[m[1]] = m[2]
    return rows


def shown(default: object) -> str:
    """How a default is written in the table's second column."""
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, Sequence) and not isinstance(default, str):
        return f"`{list(default)}`".replace("'", "")
    return f"`{default}`"


def declared() -> dict[str, object]:
    with taddons.context(*make_addons()) as tctx:
        opts = tctx.options._options
        return {name: opt.default for name, opt in opts.items() if name.startswith("ag_")}


def test_every_declared_option_is_in_the_readme_table_with_its_default():
    options, rows = declared(), readme_rows()
    assert options, "no ag_* option declared?"
    missing = sorted(set(options) - set(rows))
    assert not missing, f"README's options table lacks {missing}"
    for name, default in options.items():
        assert shown(default) in rows[name], f"README: {name} = {rows[name]!r}, not {shown(default)}"


def test_the_readme_table_documents_no_option_that_does_not_exist():
    assert not sorted(set(readme_rows()) - set(declared()))


def test_each_option_is_declared_by_exactly_one_addon():
    from antigravity_gw.mitm import auth, dispatch, options, stored_responses, usage
    names = ([o[0] for o in options.OPTIONS] + [o[0] for o in auth.AUTH_OPTIONS]
             + [o[0] for o in usage.USAGE_OPTIONS] + [o[0] for o in stored_responses.STORE_OPTIONS]
             + [o[0] for o in dispatch.DISPATCH_OPTIONS])
    assert len(names) == len(set(names))


# ---- every command README shows, run as written ----------------------------------------------------
# Each ```bash / ```python block of README.md is run by one test below (HANDLED names it by its first
# line), in a throwaway home, on free ports: 8045 and 8080 in a block become free ports, and 0.0.0.0
# becomes 127.0.0.1 (tests only ever listen on loopback). Gateway blocks get the options that point them
# at the emulator appended to their last command.
SHARED_STATE_BLOCK = ("scripts/gateway --set ag_state_url=redis://10.0.0.5:6379/0          "
                      "# or rediss://, or env:AG_STATE_URL")
HANDLED = {
    "scripts/gateway": "test_plain_gateway_starts_with_no_accounts_and_says_how_to_add_one",
    "scripts/test": "tests/e2e/test_bootstrap.py (runs it on fresh clones)",
    "scripts/gateway --demo": "test_the_demo_block_then_curl_and_python_answer_as_shown",
    "curl -s http://127.0.0.1:8045/v1/chat/completions -H 'content-type: application/json' \\":
        "test_the_demo_block_then_curl_and_python_answer_as_shown",
    "from openai import OpenAI": "test_the_demo_block_then_curl_and_python_answer_as_shown",
    "scripts/ag accounts list                        # state on disk: ready, disabled (reason), token expiry":
        "test_the_accounts_cli_block",
    'export GW_API_KEY="$(openssl rand -hex 24)" AG_OAUTH_SECRET="<the client secret>"':
        "test_the_secrets_block_starts_a_gateway_that_takes_the_key_from_the_environment",
    'export GW_API_KEY="$(openssl rand -hex 24)"; echo "clients send: $GW_API_KEY"':
        "test_the_lan_block_starts_and_requires_the_printed_key",
    "scripts/gateway --set 'ag_model_map=gpt-4o=gemini-3-pro-preview' "
    "--set 'ag_model_map=claude-*=gemini-2.5-pro' \\":
        "test_the_model_map_block_maps_as_documented",
    "scripts/gateway --mode 'regular@8080' --allow-hosts '^api\\.openai\\.com:443$' \\":
        "test_the_intercept_blocks_answer_api_openai_com_through_the_proxy",
    "export HTTPS_PROXY=http://127.0.0.1:8080 NO_PROXY=127.0.0.1,localhost":
        "test_the_intercept_blocks_answer_api_openai_com_through_the_proxy",
    "AG_UI=web scripts/gateway": "test_the_mitmweb_block_prints_the_url_with_its_token",
    "import anthropic": "tests/e2e/test_messages.py::test_the_readme_block_answers",
    "export ANTHROPIC_BASE_URL=http://127.0.0.1:8045":
        "tests/e2e/test_claude_code.py::test_the_readme_block_runs_claude_code_through_the_gateway",
    SHARED_STATE_BLOCK: "test_the_shared_state_block_starts_a_gateway_on_redis",
    "scripts/ag usage                          # the last 24 hours, one row per day":
        "test_the_usage_block_reports_the_ledger_in_the_default_data_dir",
}


def readme_blocks() -> list[tuple[str, str]]:
    """(language, text) of every bash and python block, in README order."""
    text = (ROOT / "README.md").read_text()
    return [(m[1], m[2]) for m in re.finditer(r"^```(bash|python)\n(.*?)^```$", text, re.S | re.M)]


def block(first_line: str) -> str:
    found = [text for _, text in readme_blocks() if text.splitlines()[0] == first_line]
    assert len(found) == 1, f"README has {len(found)} blocks starting with {first_line!r}"
    return found[0]


def test_every_readme_command_block_is_run_by_a_test():
    firsts = [text.splitlines()[0] for _, text in readme_blocks()]
    assert sorted(firsts) == sorted(HANDLED), "a README block without a test, or a test without its block"
    this_module = (ROOT / "tests" / "e2e" / "test_readme.py").read_text()
    for name in HANDLED.values():
        assert name.startswith("tests/") or f"def {name}(" in this_module, name


class Run:
    """A README block run by bash in its own process group, with a throwaway HOME and free ports."""

    def __init__(self, text: str, home: Path, log: Path, *, append: str = "",
                 env: dict[str, str] | None = None, stdin: str | None = None) -> None:
        self.port, self.proxy_port = free_port(), free_port()
        script = text.replace("\\\n", " ").replace("8045", str(self.port))
        script = script.replace("8080", str(self.proxy_port))
        script = script.replace("0.0.0.0", "127.0.0.1").rstrip("\n")
        if append:
            lines = script.split("\n")
            lines[-1] = re.sub(r"\s{2,}#\s.*$", "", lines[-1]) + " " + append
            script = "\n".join(lines)
        self.script, self.log_path = script, log
        proxies = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")
        base = {k: v for k, v in os.environ.items() if k.upper() not in proxies}
        self.env = {**base, "HOME": str(home), "AG_PORT": str(self.port), "NO_PROXY": "*",
                    "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", **(env or {})}
        with log.open("wb") as out:
            self.proc = subprocess.Popen(["bash", "-c", script], cwd=ROOT, env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL)
        if stdin is not None:
            assert self.proc.stdin is not None
            self.proc.stdin.write(stdin.encode())
            self.proc.stdin.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            assert self.proc.poll() is None, (
                f"{self.script!r} exited with {self.proc.returncode}:\n{self.log()}")
            assert time.monotonic() < deadline, f"{self.script!r}: no {text!r} in {timeout}s:\n{self.log()}"
            time.sleep(0.1)

    def finish(self, timeout: float = 60.0) -> str:
        assert self.proc.wait(timeout=timeout) == 0, f"{self.script!r} failed:\n{self.log()}"
        return self.log()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # bash and the gateway it started
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    return h


@pytest.fixture
def run(home: Path, tmp_path: Path) -> Iterator[Callable[..., Run]]:
    started: list[Run] = []

    def start(text: str, **kwargs: Any) -> Run:
        r = Run(text, home, tmp_path / f"run-{len(started)}.log", **kwargs)
        started.append(r)
        return r

    yield start
    for r in started:
        r.stop()


def emulator_options(emulator: Any, home: Path, *accounts: str) -> str:
    """Options that point a README gateway command at the emulator, with API-key accounts."""
    directory = home / "readme-accounts"
    directory.mkdir(exist_ok=True)
    for name in accounts or ("key1",):
        write_account(directory, name, api_key=f"AIza-{name}")
    return f"--set ag_accounts={directory} --set ag_gemini_url={emulator.gemini_url}"


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(urllib.request.Request(url, headers=headers or {}), timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def chat(port: int, model: str = "gemini-2.5-flash",
         key: str = "sk-anything") -> tuple[int, dict[str, str], Any]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    body = orjson.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]})
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=body, headers={
        "content-type": "application/json", "authorization": f"Bearer {key}"})
    try:
        with opener.open(request, timeout=30) as r:
            return r.status, dict(r.headers), orjson.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), orjson.loads(e.read())


def test_plain_gateway_starts_with_no_accounts_and_says_how_to_add_one(run, home):
    gw = run(block("scripts/gateway"))
    gw.wait_for("antigravity gateway ready")
    assert f"0 accounts in {home}/.antigravity_tools/accounts" in gw.log()
    assert "scripts/ag accounts add" in gw.log()
    assert get(f"http://127.0.0.1:{gw.port}/healthz")[0] == 200


def test_the_demo_block_then_curl_and_python_answer_as_shown(run):
    demo = run(block("scripts/gateway --demo"))
    demo.wait_for("antigravity gateway ready")
    port = str(demo.port)
    curl = run(block("curl -s http://127.0.0.1:8045/v1/chat/completions "
                     "-H 'content-type: application/json' \\")
               .replace("8045", port))
    answer = orjson.loads(curl.finish())
    assert answer["object"] == "chat.completion" and answer["choices"][0]["message"]["content"] == "echo: hi"
    snippet = block("from openai import OpenAI").replace("8045", port)
    result = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, timeout=60,
                            env={**demo.env, "PYTHONPATH": ""})
    assert (result.returncode, result.stdout) == (0, "echo: hi\n"), result.stderr


def test_the_accounts_cli_block(run, home):
    lines = [line for line in block(
        "scripts/ag accounts list                        "
        "# state on disk: ready, disabled (reason), token expiry"
    ).splitlines() if line.strip()]
    stdin = {"--refresh-token -": "1//0g-readme-refresh-token-abcd\n",
             "--api-key -": "AIza-readme-key-0000\n"}
    outputs = []
    for line in lines:
        given = next((v for k, v in stdin.items() if k in line), None)
        outputs.append(run(line, stdin=given).finish())
    assert "no accounts in" in outputs[0] and "scripts/ag accounts add" in outputs[0]
    assert outputs[1].startswith("added me@gmail.com") and outputs[2].startswith("added API key")
    assert "already the gateway's account directory" in outputs[3]
    assert outputs[4].startswith("disabled me@gmail.com")
    listing = run("scripts/ag accounts list").finish()
    assert "me@gmail.com" in listing and "disabled" in listing and "key-0000" in listing
    assert "readme-refresh-token" not in listing and "readme-key" not in listing  # secrets masked


def test_the_usage_block_reports_the_ledger_in_the_default_data_dir(run, home):
    from antigravity_gw.usage.ledger import Ledger
    from antigravity_gw.usage.record import RequestRecord

    ledger = Ledger(home / ".antigravity_gw" / "usage.sqlite3")
    ledger.open()
    for key, tokens in (("alice", 10), ("bob", 7)):
        ledger.append(RequestRecord(ts=time.time() - 60, method="POST", path="/v1/chat/completions",
                                    route="chat.completions", key_name=key, mapped_model="gemini-2.5-flash",
                                    status=200, has_tokens=True, prompt_tokens=tokens, completion_tokens=1))
    ledger.close()
    first_line = "scripts/ag usage                          # the last 24 hours, one row per day"
    lines = [line for line in block(first_line).splitlines() if line.strip()]
    outputs = [run(line).finish() for line in lines]
    assert outputs[0].splitlines()[-1].split()[:5] == ["total", "2", "0", "17", "2"], outputs[0]
    assert [line.split()[:4] for line in outputs[1].splitlines()[1:]] == [
        ["alice", "1", "0", "10"], ["bob", "1", "0", "7"], ["total", "2", "0", "17"]], outputs[1]
    report = orjson.loads(outputs[2][outputs[2].index("{"):])
    assert [(r["model"], r["requests"]) for r in report["rows"]] == [("gemini-2.5-flash", 2)]


def test_the_lan_block_starts_and_requires_the_printed_key(run, emulator, home):
    text = block('export GW_API_KEY="$(openssl rand -hex 24)"; echo "clients send: $GW_API_KEY"')
    gw = run(text, append=emulator_options(emulator, home) + " --set ag_auth_mode=strict")
    gw.wait_for("antigravity gateway ready")
    key = re.search(r"clients send: (\w+)", gw.log())[1]
    assert chat(gw.port, key=key)[0] == 200
    assert chat(gw.port, key="not-the-key")[0] == 401
    assert key not in gw.log().replace(f"clients send: {key}", "")


def test_the_secrets_block_starts_a_gateway_that_takes_the_key_from_the_environment(run, emulator, home):
    text = block('export GW_API_KEY="$(openssl rand -hex 24)" AG_OAUTH_SECRET="<the client secret>"')
    # the gateway runs in the background of the block's shell, so the shell can say which key it exported
    gw = run(text, append=emulator_options(emulator, home)
             + ' --set ag_auth_mode=strict & echo "key=$GW_API_KEY"; wait')
    gw.wait_for("antigravity gateway ready")
    key = re.search(r"key=(\w+)", gw.log())[1]
    assert chat(gw.port, key=key)[0] == 200
    assert chat(gw.port, key="not-the-key")[0] == 401
    assert key not in gw.log().replace(f"key={key}", "")


def test_the_model_map_block_maps_as_documented(run, emulator, home):
    text = block("scripts/gateway --set 'ag_model_map=gpt-4o=gemini-3-pro-preview' "
                 "--set 'ag_model_map=claude-*=gemini-2.5-pro' \\")
    (home / "gw-models.json").write_text(re.search(r"# (\{.*\})", text)[1])
    gw = run(text, append=emulator_options(emulator, home))
    gw.wait_for("antigravity gateway ready")
    for model, mapped in (("gpt-4o", "gemini-3-pro-preview"), ("claude-3-opus", "gemini-2.5-pro"),
                          ("team-default", "gemini-3-flash"), ("fast-lane", "gemini-2.5-flash")):
        status, headers, _ = chat(gw.port, model)
        assert (status, headers.get("X-Mapped-Model")) == (200, mapped), model


def test_the_intercept_blocks_answer_api_openai_com_through_the_proxy(run, emulator, home):
    proxy = run(block("scripts/gateway --mode 'regular@8080' --allow-hosts '^api\\.openai\\.com:443$' \\"),
                append=emulator_options(emulator, home))
    proxy.wait_for("antigravity gateway ready")
    client_text = block("export HTTPS_PROXY=http://127.0.0.1:8080 NO_PROXY=127.0.0.1,localhost")
    client_text = client_text.replace("8080", str(proxy.proxy_port))
    client = run(client_text, env={"HTTPS_PROXY": "", "NO_PROXY": "", "PYTHONPATH": ""})
    assert client.finish().strip().splitlines()[-1] == "echo: hi"
    assert get(f"http://127.0.0.1:{proxy.port}/healthz")[0] == 200  # the reverse listener too


def test_the_mitmweb_block_prints_the_url_with_its_token(run, emulator, home):
    web_port = free_port()
    web = run(block("AG_UI=web scripts/gateway"),
              append=emulator_options(emulator, home)
              + f" --set web_port={web_port} --set web_open_browser=false")
    web.wait_for("antigravity gateway ready")
    web.wait_for("Web server listening at")
    url = re.search(rf"(http://127\.0\.0\.1:{web_port}/\?token=\w+)", web.log())[1]
    assert get(url)[0] == 200
    assert get(f"http://127.0.0.1:{web_port}/options.json")[0] in (401, 403)  # the token is what lets you in
    assert chat(web.port)[0] == 200


def test_the_shared_state_block_starts_a_gateway_on_redis(run, emulator, home, redis_server):
    text = block(SHARED_STATE_BLOCK).replace("redis://10.0.0.5:6379/0", redis_server.url)
    gw = run(text, append=emulator_options(emulator, home))
    gw.wait_for("antigravity gateway ready")
    assert f"shared state: Redis at {redis_server.url}" in gw.log()
    status, _, body = chat(gw.port)
    assert status == 200 and body["choices"][0]["message"]["content"]
