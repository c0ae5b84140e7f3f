"""A newcomer's first minutes, through real processes: the demo, start-up messages that say what is wrong
and how to fix it, and the CLI from the checkout."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import openai
import pytest

from support.gateway import ROOT, Gateway, free_port, write_account

pytestmark = pytest.mark.e2e

GATEWAY = ROOT / "scripts" / "gateway"
AG = ROOT / "scripts" / "ag"


def script_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The user's environment, with an empty home (no accounts) and no proxy settings."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k.upper() not in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")}
    return {**env, "HOME": str(home), "NO_PROXY": "*", **extra}


class Started:
    """A script started in its own process group, with its output in a file."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log_path = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            assert self.proc.poll() is None, f"exited with {self.proc.returncode}:\n{self.log()}"
            assert time.monotonic() < deadline, f"no {text!r} within {timeout}s:\n{self.log()}"
            time.sleep(0.1)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()  # the launcher only: it must take its children down itself
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        return self.proc.returncode


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_demo_answers_from_the_emulator_and_says_so_loudly_and_cleans_up(tmp_path):
    port = free_port()
    demo = Started([str(GATEWAY), "--demo"], script_env(tmp_path, AG_PORT=str(port)), tmp_path / "demo.log")
    try:
        demo.wait_for("antigravity gateway ready")
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-anything", max_retries=0,
                               timeout=30)
        answer = client.chat.completions.create(model="gemini-2.5-flash",
                                                messages=[{"role": "user", "content": "hi"}])
        assert answer.choices[0].message.content == "echo: hi"
        log = demo.log()
        assert "DEMO MODE: answers come from the bundled EMULATOR" in log
        assert "1 account(s) from" in log and "1 ready, 0 disabled, 0 cannot refresh" in log
        emulator_port = int(re.search(r"on http://127\.0\.0\.1:(\d+), not from Google", log)[1])
        accounts = Path(re.search(r"Throwaway account directory: (\S+) ", log)[1])
        assert listening(emulator_port) and accounts.is_dir()
    finally:
        code = demo.stop()
    assert code in (0, -signal.SIGTERM, 128 + signal.SIGTERM), demo.log()
    assert not listening(port)
    assert not listening(emulator_port), "the emulator outlived the gateway"
    assert not accounts.exists(), "the demo's account directory was left behind"


def test_a_port_in_use_is_one_line_naming_ag_port(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run([str(GATEWAY)], cwd=ROOT, env=script_env(tmp_path, AG_PORT=str(port)),
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"port {port} is already in use" in lines[0] and "AG_PORT=" in lines[0], lines


def test_scripts_ag_runs_the_cli_and_an_empty_directory_says_what_to_do(tmp_path):
    env = script_env(tmp_path)
    result = subprocess.run([str(AG), "accounts", "list"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    default_dir = Path(env["HOME"]) / ".antigravity_tools" / "accounts"
    assert result.stdout.startswith(f"no accounts in {default_dir} (the directory does not exist yet)")
    assert "scripts/ag accounts add" in result.stdout


@pytest.mark.parametrize(("setting", "words"), [
    ("ag_scheduling=foo", ["ag_scheduling", "'foo'", "round_robin, lru, sticky"]),
    ("ag_body_limit=abc", ["ag_body_limit", "'abc'", "32m, 512k"]),
    ("ag_max_attempts=x", ["ag_max_attempts", "not an integer", "x"]),
    ("ag_auth_mode=sometimes", ["ag_auth_mode", "'sometimes'", "off, strict, all_except_health, auto"]),
])
def test_an_invalid_option_value_stops_mitmdump_with_one_line(emulator, accounts_dir, mitm_confdir, setting,
                                                               words):
    gw = Gateway(emulator, accounts_dir, confdir=mitm_confdir, extra_args=["--set", setting])
    result = subprocess.run(gw.args(), cwd=ROOT, capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    named = [line for line in output.splitlines() if setting.split("=")[0] in line]
    assert len(named) == 1 and all(w in named[0] for w in words), output


def test_fixed_choice_options_declare_their_choices():
    from mitmproxy.test import taddons

    from antigravity_gw import make_addons

    with taddons.context(*make_addons()) as tctx:
        opts = tctx.options._options
        assert list(opts["ag_scheduling"].choices) == ["round_robin", "lru", "sticky"]
        assert list(opts["ag_auth_mode"].choices) == ["off", "strict", "all_except_health", "auto"]


def test_a_misspelt_option_gets_a_warning_naming_the_real_one(start_gateway):
    gw = start_gateway(extra_args=["--set", "ag_schedulng=lru", "--set", "ag_nonsense_here=1"])
    log = gw.log()
    assert "unknown option ag_schedulng (ignored): did you mean ag_scheduling?" in log
    assert "unknown option ag_nonsense_here (ignored)" in log


def test_no_accounts_names_the_directory_and_the_command_that_adds_one(start_gateway, tmp_path):
    empty = tmp_path / "nothing-here"
    empty.mkdir()
    gw = start_gateway(accounts={}, accounts_dir=empty)
    assert f"0 accounts in {empty}" in gw.log() and "scripts/ag accounts add" in gw.log()
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-x", max_retries=0, timeout=30)
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model="gemini-2.5-flash", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 503
    message = e.value.body["message"]
    assert str(empty) in message and "scripts/ag accounts add" in message


def test_oauth_accounts_without_an_oauth_client_are_flagged_and_their_error_says_what_to_set(
        start_gateway, tmp_path):
    directory = tmp_path / "mixed"
    directory.mkdir()
    write_account(directory, "key1", api_key="AIza-test-key-1")
    write_account(directory, "off1", api_key="AIza-test-key-2", disabled=True)
    write_account(directory, "stale", token={"expiry_timestamp": int(time.time()) - 60})
    gw = start_gateway(accounts={}, accounts_dir=directory,
                       options={"ag_oauth_client_id": None, "ag_oauth_client_secret": None})
    log = gw.log()
    assert "3 account(s) from" in log and "1 ready, 1 disabled, 1 cannot refresh" in log
    warning = next(line for line in log.splitlines() if "stale@example.com cannot refresh" in line)
    assert "ag_oauth_client_id" in warning and "its access token expired at" in warning

    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-x", max_retries=0, timeout=30)
    client.chat.completions.create(model="gemini-2.5-flash", messages=[{"role": "user", "content": "hi"}])
    (directory / "key1.json").unlink()  # only the OAuth account is left
    deadline = time.monotonic() + 10
    while "removed key1" not in gw.log():
        assert time.monotonic() < deadline, gw.log()
        time.sleep(0.1)
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model="gemini-2.5-flash", messages=[{"role": "user", "content": "hi"}])
    message = e.value.body["message"]
    assert "cannot be refreshed" in message and "ag_oauth_client_id and ag_oauth_client_secret" in message



def test_scripts_gateway_takes_the_options_it_defaults_from_the_user(tmp_path):
    """It used to pass listen_host and connection_strategy itself: the user's own got "multiple values"."""
    # AG_PORT=0: the kernel picks the port (nothing connects here, so nobody needs to know it)
    gw = Started([str(GATEWAY), "--set", "listen_host=127.0.0.1", "--set", "connection_strategy=lazy",
                  "--set", "flow_detail=1"], script_env(tmp_path, AG_PORT="0"), tmp_path / "gw.log")
    try:
        gw.wait_for("antigravity gateway ready")
        assert "multiple values" not in gw.log()
    finally:
        gw.stop()
