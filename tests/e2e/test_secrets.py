"""Secrets stay out of sight, through a real mitmweb: ``env:``/``file:`` references are resolved and used,
and neither mitmweb's options (``/options.json``, what its Options page shows), the log, the command line
nor a ``-w`` flow file holds a secret."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import openai
import orjson
import pytest
from mitmproxy import io as mitm_io

from support.gateway import Gateway, free_port, write_account

pytestmark = pytest.mark.e2e

API_KEY = "sk-gw-e2e-key-typed-on-the-command-line"
FILE_KEY = "sk-gw-e2e-key-from-a-file-0000"
CLIENT_SECRET = "oauth-client-secret-from-the-environment"
WEB_PASSWORD = "web-password-for-this-test"


def options_json(web_port: int) -> str:
    request = urllib.request.Request(f"http://127.0.0.1:{web_port}/options.json",
                                     headers={"authorization": f"Bearer {WEB_PASSWORD}"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as r:
        return r.read().decode()


@pytest.mark.parametrize("key_option", ["raw", "file"])
def test_mitmweb_never_shows_the_secrets(emulator, mitm_confdir, tmp_path, monkeypatch, key_option):
    monkeypatch.setenv("GW_E2E_CLIENT_SECRET", CLIENT_SECRET)
    emulator.configure(oauth={"client_id": "e2e-client", "client_secret": CLIENT_SECRET})
    key_file = tmp_path / "gw-key"
    key_file.write_text(FILE_KEY + "\n")
    key, key_value = (API_KEY, API_KEY) if key_option == "raw" else (FILE_KEY, f"file:{key_file}")
    accounts = tmp_path / "accounts"
    accounts.mkdir()
    write_account(accounts, "acc1", token={"access_token": "", "expiry_timestamp": 0})  # refreshed first
    web_port, flows_file = free_port(), tmp_path / "flows.mitm"
    gw = Gateway(emulator, accounts, confdir=mitm_confdir, tool="mitmweb",
                 options={"ag_api_key": key_value, "ag_auth_mode": "all_except_health",
                          "ag_oauth_client_id": "e2e-client",
                          "ag_oauth_client_secret": "env:GW_E2E_CLIENT_SECRET", "web_port": web_port,
                          "web_open_browser": False, "web_password": WEB_PASSWORD,
                          "ag_inline_non_stream": True},
                 extra_args=["-w", str(flows_file)])
    with gw:
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0, timeout=30)
        answer = client.chat.completions.create(model="gemini-2.5-flash",
                                                messages=[{"role": "user", "content": "hi"}])
        assert answer.choices[0].message.content == "echo: hi"  # the key and the client secret worked
        assert emulator.requests(kind="token"), "the access token was not refreshed with the client secret"
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=gw.url + "/v1", api_key="wrong", max_retries=0).models.list()
        shown = options_json(web_port)
        command_line = Path(f"/proc/{gw.proc.pid}/cmdline").read_bytes().decode()
        deadline = time.monotonic() + 10  # mitmweb writes each flow as it ends: wait for the first
        while not flows_file.exists() or not flows_file.stat().st_size:
            assert time.monotonic() < deadline, "mitmweb wrote no flow"
            time.sleep(0.05)
    values = {name: o["value"] for name, o in orjson.loads(shown).items()}
    assert values["ag_oauth_client_secret"] == "env:GW_E2E_CLIENT_SECRET"
    assert values["ag_api_key"] == ("[hidden …line]" if key_option == "raw" else f"file:{key_file}")
    flows = flows_file.read_bytes()
    assert list(mitm_io.FlowReader(flows_file.open("rb")).stream()), "no flow written"
    for secret in (key, CLIENT_SECRET):
        assert secret not in shown, "mitmweb's options show a secret"
        assert secret not in gw.log(), "the log shows a secret"
        assert secret.encode() not in flows, "the -w file holds a secret"
    assert CLIENT_SECRET not in command_line and FILE_KEY not in command_line
