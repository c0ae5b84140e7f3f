"""The account pool end to end: openai client -> real mitmdump -> relay -> emulator, several accounts.

Scheduling, cooldowns from Google's own error bodies, retries that keep streams streaming, OAuth
refresh (single flight, invalid_grant, crash safety), the directory watcher, and failed attempts
as flows in a saved flow file.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections import Counter
from pathlib import Path

import openai
import orjson
import pytest

from antigravity_gw.upstream.accounts import account_paths, read_account
from support.gateway import write_account
from support.pool import FLASH, account_of, chat, client_for, credentials, wait_until

pytestmark = pytest.mark.e2e

PRO = "gemini-2.5-pro"


THREE = {"a": {}, "b": {}, "c": {}}


@pytest.mark.parametrize("mode", ["round_robin", "lru"])
def test_rotation_spreads_the_load_over_every_account(start_gateway, emulator, mode):
    gw = start_gateway(accounts=THREE, options={"ag_scheduling": mode})
    client = client_for(gw)
    served = [account_of(chat(client, f"question {i}")) for i in range(6)]
    assert Counter(served) == {"a": 2, "b": 2, "c": 2}
    assert Counter(credentials(emulator)) == {"at-a": 2, "at-b": 2, "at-c": 2}


def test_a_429_cools_exactly_that_account_for_the_retry_delay(start_gateway, emulator):
    gw = start_gateway(accounts={"a": {}, "b": {}}, options={"ag_scheduling": "lru"})
    emulator.add_rule(match={"credential": "at-a"}, times=1,
                      reply={"error": {"kind": "quota_exhausted", "retry_delay": "5s"}})
    client = client_for(gw)
    before_429 = time.monotonic()
    first = chat(client, "one")
    assert account_of(first) == "b" and first.headers["x-ag-attempts"] == "2"
    assert credentials(emulator) == ["at-a", "at-b"]

    # Five quick requests inside a 5 s cooldown: a slow moment of the machine makes them slower, and
    # the cooldown is long enough that no ceiling on their time is needed.
    assert account_of(chat(client, "another model", model=PRO)) == "a"  # the quota was per model
    during = [account_of(chat(client, f"while cooling {i}")) for i in range(4)]
    assert during == ["b"] * 4

    # Then "a" comes back, and not before its retry delay: asked until it serves (b answers meanwhile).
    deadline = before_429 + 30
    while account_of(chat(client, "after the delay")) != "a":
        assert time.monotonic() < deadline, "account a never came back after its cooldown"
        time.sleep(0.2)
    assert time.monotonic() - before_429 >= 5.0
    assert credentials(emulator, model=FLASH)[-1] == "at-a"
    assert credentials(emulator).count("at-a") == 3  # the 429, the pro request, and now


def test_a_retried_stream_still_streams(start_gateway, emulator):
    gw = start_gateway(accounts={"a": {}, "b": {}}, options={"ag_scheduling": "lru"})
    emulator.add_rule(match={"credential": "at-a"}, times=1,
                      reply={"error": {"kind": "quota_exhausted", "retry_delay": "30s"}})
    emulator.add_rule(match={"credential": "at-b"}, times=1,
                      reply={"text": ["one ", "two ", "three ", "four"], "chunk_delay_ms": 700})
    started = time.monotonic()
    arrivals = []
    stream = client_for(gw).chat.completions.create(
        model=FLASH, messages=[{"role": "user", "content": "count"}], stream=True)
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append((time.monotonic() - started, chunk.choices[0].delta.content))
    assert "".join(text for _, text in arrivals) == "one two three four"
    assert credentials(emulator) == ["at-a", "at-b"]
    first, last = arrivals[0][0], arrivals[-1][0]
    assert last >= 2.0  # three 700 ms gaps upstream
    assert last - first >= 1.8, f"the retried answer was buffered: chunks at {arrivals}"


def test_a_401_refreshes_the_token_and_succeeds(start_gateway, emulator):
    gw = start_gateway(accounts={"a": {}})
    emulator.configure(expired_tokens=["at-a"])
    assert chat(client_for(gw), "ping").parse().choices[0].message.content == "echo: ping"
    assert [r["credential"] for r in emulator.requests(kind="token")] == ["rt-a"]
    fresh = credentials(emulator)[-1]
    assert credentials(emulator) == ["at-a", fresh] and fresh.startswith("ya29.emu-")
    saved = orjson.loads((gw.accounts_dir / "a.json").read_bytes())
    assert saved["token"]["access_token"] == fresh
    assert saved["token"]["expiry_timestamp"] > time.time() + 3000


def test_invalid_grant_disables_the_account_on_disk(start_gateway, emulator):
    gw = start_gateway(accounts={"a": {"token": {"expiry_timestamp": 1}}, "b": {}},
                       options={"ag_scheduling": "lru"})
    emulator.configure(oauth={"invalid_grant": ["rt-a"]})
    before = int(time.time())
    assert account_of(chat(client_for(gw), "hello")) == "b"
    saved = orjson.loads((gw.accounts_dir / "a.json").read_bytes())
    assert saved["disabled"] is True
    assert saved["disabled_reason"] == "invalid_grant: Token has been expired or revoked."
    assert before <= saved["disabled_at"] <= time.time()
    assert saved["token"]["refresh_token"] == "rt-a" and saved["created_at"]  # the rest of the file is kept
    assert credentials(emulator) == ["at-b"]


async def test_21_concurrent_requests_on_an_expired_token_make_one_refresh_call(start_gateway, emulator):
    gw = start_gateway(accounts={"a": {"token": {"expiry_timestamp": 1}}})
    emulator.configure(oauth={"delay_ms": 800})
    client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="sk-test", max_retries=0, timeout=30)
    answers = await asyncio.gather(*(client.chat.completions.create(
        model=FLASH, messages=[{"role": "user", "content": f"q{i}"}]) for i in range(21)))
    await client.close()
    assert sorted(a.choices[0].message.content for a in answers) == sorted(f"echo: q{i}" for i in range(21))
    assert len(emulator.requests(kind="token")) == 1
    assert len(set(credentials(emulator))) == 1 and len(credentials(emulator)) == 21


def test_pool_exhausted_is_a_429_with_the_earliest_retry_after(start_gateway, emulator):
    gw = start_gateway(accounts={"a": {}, "b": {}}, options={"ag_scheduling": "lru"})
    emulator.add_rules([{"match": {"credential": f"at-{name}"}, "times": 1,
                         "reply": {"error": {"kind": "quota_exhausted", "retry_delay": delay}}}
                        for name, delay in (("a", "30s"), ("b", "50s"))])
    client = client_for(gw)
    with pytest.raises(openai.RateLimitError) as e:
        chat(client, "anyone?")
    err = e.value
    assert err.status_code == 429
    assert err.response.headers["retry-after"] == "30"
    assert 28_000 <= int(err.response.headers["retry-after-ms"]) <= 30_000
    message = err.body["message"]
    assert message.startswith(f"All 2 accounts are unavailable for model '{FLASH}'")
    assert "a@example.com: quota exhausted until" in message and "(in 30s)" in message
    assert "b@example.com: quota exhausted until" in message and "(in 50s)" in message
    assert err.body["code"] == "all_accounts_unavailable"
    assert credentials(emulator) == ["at-a", "at-b"]

    with pytest.raises(openai.RateLimitError):  # nobody is asked while everyone cools down
        chat(client, "still nobody?")
    assert credentials(emulator) == ["at-a", "at-b"]
    assert account_of(chat(client, "other model", model=PRO)) in ("a", "b")  # per-model cooldowns


def test_kill_9_during_refreshes_leaves_every_account_file_valid(start_gateway, emulator, tmp_path):
    directory = tmp_path / "killed"
    directory.mkdir()
    names = ("a", "b", "c", "d")
    # Rotating refresh tokens, slow, and so short-lived that every request refreshes and rewrites its file.
    emulator.configure(oauth={"rotate": True, "delay_ms": 150, "expires_in": 1})
    rng = random.Random(7)
    saved_by_gateway = 0
    for round_ in range(3):
        # A kill during the token call loses a rotated grant for good (Google completes it anyway), so
        # every round starts from fresh grants: what is tested is the files, not the grants.
        for name in names:
            grant = {"refresh_token": f"rt-{name}-{round_}", "expiry_timestamp": 1}
            write_account(directory, name, token=grant)
        gw = start_gateway(accounts={}, accounts_dir=directory, options={"ag_scheduling": "round_robin"})
        client = client_for(gw, timeout=5)
        stop = threading.Event()

        def hammer(client=client, stop=stop) -> None:
            while not stop.is_set():
                with contextlib.suppress(openai.OpenAIError):
                    chat(client, "x")

        threads = [threading.Thread(target=hammer, daemon=True) for _ in range(4)]
        for t in threads:
            t.start()
        refreshes = len(emulator.requests(kind="token"))
        wait_until(lambda n=refreshes: len(emulator.requests(kind="token")) > n + 4)
        time.sleep(rng.uniform(0.0, 0.3))
        gw.proc.kill()  # SIGKILL: no cleanup, no flush, mid-refresh or mid-write
        gw.proc.wait(timeout=10)
        stop.set()
        for t in threads:
            t.join(timeout=10)
        gw.stop()
        loaded = [read_account(p) for p in account_paths(directory)]  # what the next start reads; raises
        assert sorted(a.id for a in loaded) == list(names), round_                # if a file is unusable
        for path in sorted(directory.glob("*.json")):
            token = orjson.loads(path.read_bytes())["token"]  # raises if a file was left half written
            assert token["refresh_token"] and token["access_token"], (round_, path)
            saved_by_gateway += token["access_token"].startswith("ya29.emu-")
    assert saved_by_gateway > 0  # the gateway did write the files it was killed among


def test_the_watcher_picks_up_added_and_removed_accounts(start_gateway, emulator):
    gw = start_gateway(accounts={"a": {}}, options={"ag_scheduling": "round_robin"})
    client = client_for(gw)
    assert account_of(chat(client, "before")) == "a"

    write_account(gw.accounts_dir, "b")
    wait_until(lambda: account_of(chat(client, "is b here?")) == "b")
    assert {account_of(chat(client, f"both {i}")) for i in range(2)} == {"a", "b"}

    (gw.accounts_dir / "a.json").unlink()
    wait_until(lambda: all(account_of(chat(client, f"only b? {i}")) == "b" for i in range(2)))
    assert [account_of(chat(client, f"after {i}")) for i in range(3)] == ["b"] * 3
    assert "accounts: added b@example.com" in gw.log()
    assert "accounts: removed a@example.com" in gw.log()


def test_sticky_mode_keeps_a_conversation_on_one_account(start_gateway, emulator):
    gw = start_gateway(accounts=THREE, options={"ag_scheduling": "sticky"})
    client = client_for(gw)

    def conversation(opening: str, turns: int) -> list[str]:
        messages = [{"role": "system", "content": "You are a travel agent."},
                    {"role": "user", "content": opening}]
        served = []
        for i in range(turns):
            raw = client.chat.completions.with_raw_response.create(model=FLASH, messages=messages)
            served.append(account_of(raw))
            messages += [{"role": "assistant", "content": raw.parse().choices[0].message.content},
                         {"role": "user", "content": f"and then {i}?"}]
        return served

    rome = conversation("Plan a trip to Rome", 4)
    oslo = conversation("Plan a trip to Oslo", 3)
    assert len(set(rome)) == 1 and len(set(oslo)) == 1
    assert rome[0] != oslo[0]  # a new conversation goes to the least recently used account
    assert conversation("Plan a trip to Rome", 2) == rome[:2]


def test_failed_attempts_are_their_own_flows_in_a_saved_flow_file(start_gateway, emulator, tmp_path):
    from mitmproxy import io as mitm_io

    flow_file = tmp_path / "flows.mitm"
    gw = start_gateway(accounts={"a": {}, "b": {}}, options={"ag_scheduling": "lru"},
                       extra_args=["-w", str(flow_file)])
    emulator.add_rule(match={"credential": "at-a"}, times=1,
                      reply={"error": {"kind": "quota_exhausted", "retry_delay": "20s"}})
    assert account_of(chat(client_for(gw), "hello")) == "b"
    gw.stop()
    with open(flow_file, "rb") as fh:
        saved = list(mitm_io.FlowReader(fh).stream())
    failed = [f for f in saved if f.metadata.get("ag.synthetic")]
    assert len(failed) == 1
    f = failed[0]
    assert f.response.status_code == 429
    assert f.marked == ":warning:"
    # written to the file as it happened, before the request knew its total ("1/2" in mitmweb, later)
    assert f.comment == "⚠ attempt 1: 429 QUOTA_EXHAUSTED · a@example.com · cooling 20 s"
    assert f.request.url == f"{emulator.url}/sandbox/v1internal:generateContent"
    assert orjson.loads(f.response.content)["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert b"at-a" not in f.request.headers.get("authorization", "").encode()
    assert orjson.loads(f.request.content)["project"] == "proj-a"
    main = [x for x in saved if not x.metadata.get("ag.synthetic") and x.request.path != "/healthz"]
    assert len(main) == 1 and main[0].response.status_code == 200 and " · 2 attempts · " in main[0].comment
    assert f.metadata["ag.attempt"]["of"] == main[0].id
    assert "attempt failed: a@example.com" in Path(gw.log_path).read_text()


def test_a_missing_project_is_asked_from_load_code_assist_once_and_saved(start_gateway, emulator):
    gw = start_gateway(accounts={"a": {"token": {"project_id": ""}}})
    emulator.configure(projects={"at-a": "resolved-proj"})
    client = client_for(gw)
    for text in ("first", "second"):
        assert chat(client, text).parse().choices[0].message.content == f"echo: {text}"
    asked = emulator.requests(rpc="loadCodeAssist")
    assert len(asked) == 1
    assert asked[0]["base"] == "/sandbox" and asked[0]["headers"]["authorization"] == "Bearer at-a"
    assert asked[0]["body"] == {"metadata": {"ideType": "ANTIGRAVITY", "platform": "PLATFORM_UNSPECIFIED",
                                             "pluginType": "GEMINI"}}
    assert [r["body"]["project"] for r in emulator.requests(rpc="generateContent")] == ["resolved-proj"] * 2
    saved = orjson.loads((gw.accounts_dir / "a.json").read_bytes())
    assert saved["token"]["project_id"] == "resolved-proj"


def test_the_attempt_and_time_budgets_are_options(start_gateway, emulator):
    gw = start_gateway(accounts=THREE, options={"ag_max_attempts": 2, "ag_upstream_timeout": 3})
    emulator.add_rule(match={}, times=None, reply={"error": {"kind": "capacity"}})
    started = time.monotonic()
    with pytest.raises(openai.InternalServerError) as e:
        chat(client_for(gw), "busy?")
    assert e.value.status_code == 503
    assert len(emulator.requests(kind="api")) == 2  # ag_max_attempts, across base URLs and accounts

    emulator.set_rules([{"match": {}, "times": None, "reply": {"delay_ms": 4_500}}])
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as e:
        chat(client_for(gw), "slow?")
    # the gateway's own deadline answered (the 504 names it), not the upstream's 4.5 s reply
    assert e.value.status_code == 504 and "ag_upstream_timeout (3s)" in e.value.message
    assert time.monotonic() - started > 2.5
