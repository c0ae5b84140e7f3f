"""Quota you can see and routing that respects it, end to end: openai client -> real mitmdump -> emulator.

Quota snapshots in GET /ag/accounts, ag.accounts and ``accounts list --live``; an exhausted
account+model skipped until its reset while the account serves other models; bare 429s from two
accounts for one request (the request's fault) cool nobody; ag_model_fallback; the version gate.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import openai
import orjson
import pytest

from support.gateway import ROOT
from support.pool import FLASH, account_of, chat, client_for
from support.pool import wait_until as poll_until

pytestmark = pytest.mark.e2e

PRO = "gemini-2.5-pro"
RUN_COMMAND = str(ROOT / "tests" / "support" / "run_command.py")


def get(gw, path: str, key: str = "") -> tuple[int, bytes]:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(urllib.request.Request(gw.url + path, headers=headers), timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def accounts(gw, refresh: bool = False, key: str = "") -> dict[str, dict]:
    status, body = get(gw, "/ag/accounts" + ("?refresh=1" if refresh else ""), key)
    assert status == 200, body
    return {a["id"]: a for a in orjson.loads(body)["accounts"]}


def iso(seconds_from_now: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds_from_now)).strftime("%Y-%m-%dT%H:%M:%SZ")


def wait_until[T](predicate: Callable[[], T]) -> T:
    return poll_until(predicate, timeout=10.0)


QUOTA_ON = {"ag_quota_refresh": 300, "ag_scheduling": "round_robin"}


def test_quota_shows_in_the_endpoint_the_command_and_the_cli(start_gateway, emulator):
    emulator.configure(paid_tier={"id": "g1-pro-tier", "name": "Google AI Pro"}, models_by_credential={
        "at-a": [{"name": FLASH, "remainingFraction": 0.25, "resetTime": iso(3600)},
                 {"name": PRO, "remainingFraction": 0.0, "resetTime": iso(7200)}]})
    options = {**QUOTA_ON, "ag_api_key": "sk-gw", "ag_auth_mode": "strict"}
    gw = start_gateway(accounts={"a": {}, "k": {"api_key": "AIza-k"}}, options=options,
                       extra_args=["-s", RUN_COMMAND])
    view = wait_until(lambda: (a := accounts(gw, key="sk-gw")["a"])["quota"]["fetched_at"] and a)
    assert view["tier"] == "Google AI Pro" and view["state"] == "ready"
    assert view["quota"]["models"][FLASH]["remaining_fraction"] == 0.25
    assert view["quota"]["models"][PRO]["exhausted_until"] is not None
    assert {b["id"] for b in view["quota"]["buckets"]} == {"gemini-5h", "gemini-weekly", "3p-5h", "3p-weekly"}
    assert accounts(gw, key="sk-gw")["k"]["quota"] is None  # API keys have no quota to report
    summary = emulator.requests(rpc="retrieveUserQuotaSummary")
    assert summary and {r["base"] for r in summary} == {"/daily"}  # the daily host (R-Q2)
    assert get(gw, "/ag/accounts")[0] == 401  # guarded like /v1

    chat(client_for(gw, key="sk-gw"), "count me")  # requests served and last use show up
    served = accounts(gw, key="sk-gw")
    assert served["a"]["requests_served"] + served["k"]["requests_served"] == 1

    def command_lines():  # ag.accounts shows a snapshot refreshed every second
        status, text = get(gw, "/_test/command/ag.accounts", "sk-gw")
        lines = text.decode().splitlines()
        return status == 200 and any(line.split()[:2] == [FLASH, "25%"] for line in lines) and lines

    lines = wait_until(command_lines)
    assert lines[0].split()[:3] == ["ACCOUNT", "KIND", "STATE"]
    assert any(line.split()[:2] == [FLASH, "25%"] for line in lines)
    assert any(line.split()[:3] == [PRO, "0%", "EXHAUSTED"] for line in lines)

    env = {**os.environ, "GW_KEY": "sk-gw"}
    cli = subprocess.run([str(ROOT / "scripts" / "ag"), "accounts", "list", "--live", "--url", gw.url,
                          "--set", "ag_api_key=env:GW_KEY"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert cli.returncode == 0, cli.stderr
    out = cli.stdout.splitlines()
    assert any(line.split()[:2] == [FLASH, "25%"] for line in out)
    assert any("Google AI Pro" in line for line in out) and "sk-gw" not in cli.stdout


def test_an_exhausted_model_skips_the_account_until_its_reset_while_it_serves_other_models(
        start_gateway, emulator):
    gw = start_gateway(accounts={"a": {}, "b": {}}, options=QUOTA_ON)
    wait_until(lambda: accounts(gw)["a"]["quota"]["fetched_at"])
    emulator.configure(models_by_credential={
        "at-a": [{"name": FLASH, "remainingFraction": 0.0, "resetTime": iso(6)},
                 {"name": PRO, "remainingFraction": 0.5, "resetTime": iso(3600)}]})
    assert accounts(gw, refresh=True)["a"]["quota"]["models"][FLASH]["exhausted_until"]  # on demand
    reset_at = time.monotonic() + 5
    client = client_for(gw)
    assert {account_of(chat(client, f"flash {i}")) for i in range(4)} == {"b"}
    assert "a" in {account_of(chat(client, f"pro {i}", PRO)) for i in range(2)}
    assert not [r for r in emulator.requests(credential="at-a", model=FLASH) if r["rpc"] == "generateContent"]
    time.sleep(max(0.0, reset_at - time.monotonic()) + 1.5)
    assert "a" in {account_of(chat(client, f"after reset {i}")) for i in range(2)}


def test_bare_429s_from_two_accounts_answer_429_and_leave_both_serving(start_gateway, emulator):
    gw = start_gateway(accounts={"a": {}, "b": {}}, options={"ag_scheduling": "round_robin"})
    emulator.add_rule(match={"rpc": "generateContent"}, times=2,
                      reply={"error": {"kind": "resource_exhausted"}})
    client = client_for(gw)
    started = time.monotonic()
    with pytest.raises(openai.RateLimitError) as e:
        chat(client, "a conversation far too long")
    assert time.monotonic() - started < 5
    assert e.value.body["code"] == "request_resource_exhausted"
    assert "no account was cooled down" in e.value.body["message"]
    assert [r["credential"] for r in emulator.requests(rpc="generateContent")] == ["at-a", "at-b"]
    assert {account_of(chat(client, f"next {i}")) for i in range(4)} == {"a", "b"}
    assert all(a["state"] == "ready" and not a["cooldowns"] for a in accounts(gw).values())


def test_fallback_serves_the_target_when_the_model_is_exhausted_everywhere(start_gateway, emulator):
    wanted = "gemini-3-pro-preview"
    gw = start_gateway(accounts={"a": {}, "b": {}}, options={"ag_model_fallback": ["gemini-3-*=" + FLASH]})
    emulator.add_rule(match={"model": wanted},
                      reply={"error": {"kind": "quota_exhausted", "retry_delay": "600s"}})
    client = client_for(gw)
    first = chat(client, "hello", wanted)
    assert first.headers["x-mapped-model"] == FLASH
    assert first.parse().choices[0].message.content == "echo: hello"
    assert [r["model"] for r in emulator.requests(rpc="generateContent")] == [wanted, wanted, FLASH]
    second = chat(client, "again", wanted)  # known now: straight to the fallback
    assert second.headers["x-mapped-model"] == FLASH
    assert [r["model"] for r in emulator.requests(rpc="generateContent")][3:] == [FLASH]
    with client.chat.completions.with_streaming_response.create(
            model=wanted, messages=[{"role": "user", "content": "streamed"}], stream=True) as streamed:
        assert streamed.headers["x-mapped-model"] == FLASH  # the relay path says so too
        text = "".join(c.choices[0].delta.content or "" for c in streamed.parse() if c.choices)
    assert text == "echo: streamed"
    wait_until(lambda: f"model fallback: {wanted} -> {FLASH}" in gw.log())
    wait_until(lambda: f"{wanted} → {FLASH} (fallback from {wanted})" in gw.log())  # the access line


def test_the_version_gate_names_ag_user_agent_and_cools_no_account(start_gateway, emulator):
    emulator.configure(min_client_version="9.0.0")
    gw = start_gateway(accounts={"a": {}, "b": {}})
    with pytest.raises(openai.APIStatusError) as e:
        chat(client_for(gw), "hi")
    assert e.value.status_code == 502 and e.value.body["code"] == "client_version_rejected"
    assert "ag_user_agent" in e.value.body["message"] and "newer than 4.3.0" in e.value.body["message"]
    assert len(emulator.requests(rpc="generateContent")) == 1  # every account would say the same
    assert all(a["state"] == "ready" and not a["cooldowns"] for a in accounts(gw).values())
    assert "ag_user_agent" in gw.log()

    fixed = start_gateway(accounts={"a": {}}, options={"ag_user_agent": "9.1.0"})
    assert chat(client_for(fixed), "hi").parse().choices[0].message.content == "echo: hi"
    sent = emulator.requests(rpc="generateContent")[-1]
    assert sent["headers"]["user-agent"].startswith("Antigravity/9.1.0 (")
