"""e2e: the usage ledger, /ag/usage, scripts/ag usage, /metrics and the named client keys' limits, through
a real mitmdump with the addon, the openai client and the emulator.

Every expected number comes from what the client was answered (its ``usage``, its X-Account-Email), never
from a constant: the ledger, the report and the metrics must agree with what the client saw.
"""

from __future__ import annotations

import gzip
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from support.gateway import ROOT, Gateway

pytestmark = pytest.mark.e2e

ALICE, BOB, CAROL = "sk-alice-0123456789", "sk-bob-0123456789", "sk-carol-0123456789"
FLASH, PRO = "gemini-2.5-flash", "gemini-2.5-pro"
USAGE = {
    "promptTokenCount": 11,
    "candidatesTokenCount": 7,
    "cachedContentTokenCount": 3,
    "thoughtsTokenCount": 2,
    "totalTokenCount": 20,
}


def write_keys(path: Path, keys: list[dict[str, Any]]) -> Path:
    path.write_bytes(orjson.dumps({"keys": keys}))
    return path


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    return write_keys(
        tmp_path / "keys.json",
        [
            {"name": "alice", "key": ALICE},
            {"name": "bob", "key": BOB, "models": ["gemini-2.5-f*"], "rpm": 3},
            {"name": "carol", "key": CAROL, "daily_tokens": 10},
        ],
    )


@pytest.fixture
def gw(start_gateway: Any, emulator: Any, keys_file: Path) -> Gateway:
    emulator.add_rule(reply={"text": "counted answer", "usage": USAGE})
    return start_gateway(
        accounts={"acc1": {}, "acc2": {}},
        options={"ag_api_keys_file": str(keys_file), "ag_scheduling": "round_robin"},
    )


def client_for(gw: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0, timeout=30)


def ask(gw: Gateway, key: str, model: str, *, stream: bool = False) -> dict[str, Any]:
    """One chat request; what the client got: account, prompt/completion/cached/reasoning tokens."""
    c = client_for(gw, key)
    messages = [{"role": "user", "content": "count me"}]
    if stream:
        with c.chat.completions.with_streaming_response.create(
            model=model, messages=messages, stream=True, stream_options={"include_usage": True}
        ) as raw:
            account = raw.headers["x-account-email"]
            usage = [chunk.usage for chunk in raw.parse() if chunk.usage][-1]
    else:
        raw = c.chat.completions.with_raw_response.create(model=model, messages=messages)
        account, usage = raw.headers["x-account-email"], raw.parse().usage
    return {
        "account": account,
        "model": model,
        "prompt": usage.prompt_tokens,
        "completion": usage.completion_tokens,
        "cached": usage.prompt_tokens_details.cached_tokens,
        "reasoning": usage.completion_tokens_details.reasoning_tokens,
    }


def get(gw: Gateway, path: str, key: str | None = ALICE) -> tuple[int, dict[str, str], bytes]:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(urllib.request.Request(gw.url + path, headers=headers), timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def ledger_rows(gw: Gateway) -> list[dict[str, Any]]:
    get(gw, "/ag/usage")  # flushes the pending batch
    conn = sqlite3.connect(gw.data_dir / "usage.sqlite3")
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM requests ORDER BY id")]
    finally:
        conn.close()


def test_requests_of_two_keys_are_rows_with_their_names_models_accounts_and_tokens(gw: Gateway):
    answers = {
        "alice": [ask(gw, ALICE, FLASH), ask(gw, ALICE, PRO, stream=True)],
        "bob": [ask(gw, BOB, FLASH, stream=True)],
    }
    rows = ledger_rows(gw)
    got = sorted(
        (
            r["key_name"],
            r["client_model"],
            r["account"],
            r["prompt_tokens"],
            r["completion_tokens"],
            r["cached_tokens"],
            r["reasoning_tokens"],
            r["status"],
            r["route"],
        )
        for r in rows
    )
    expected = sorted(
        (
            name,
            a["model"],
            a["account"],
            a["prompt"],
            a["completion"],
            a["cached"],
            a["reasoning"],
            200,
            "chat.completions",
        )
        for name, asked in answers.items()
        for a in asked
    )
    assert got == expected
    assert {a["account"] for asked in answers.values() for a in asked} == {
        "acc1@example.com",
        "acc2@example.com",
    }
    assert all(r["duration_ms"] > 0 and r["first_chunk_ms"] > 0 and r["attempts"] == 1 for r in rows), rows
    assert not any(key in str(rows) for key in (ALICE, BOB)), "a key reached the ledger"
    access_lines = [line for line in gw.log().splitlines() if "POST /v1/chat/completions" in line]
    assert sum("key=alice" in line for line in access_lines) == 2
    assert sum("key=bob" in line for line in access_lines) == 1


def test_a_responses_request_is_a_row_of_its_route_with_its_usage(gw: Gateway):
    raw = client_for(gw, ALICE).responses.with_raw_response.create(model=FLASH, input="count me")
    usage = raw.parse().usage
    rows = ledger_rows(gw)
    assert [(r["route"], r["key_name"], r["account"], r["prompt_tokens"], r["completion_tokens"],
             r["cached_tokens"], r["reasoning_tokens"]) for r in rows] == [
        ("responses", "alice", raw.headers["x-account-email"], usage.input_tokens, usage.output_tokens,
         usage.input_tokens_details.cached_tokens, usage.output_tokens_details.reasoning_tokens)]


def test_usage_report_and_the_cli_sum_the_rows(gw: Gateway):
    answers = [("alice", ask(gw, ALICE, FLASH)), ("alice", ask(gw, ALICE, PRO)), ("bob", ask(gw, BOB, FLASH))]
    expected: dict[str, Counter[str]] = defaultdict(Counter)
    for name, a in answers:
        expected[name].update(
            requests=1,
            prompt_tokens=a["prompt"],
            completion_tokens=a["completion"],
            cached_tokens=a["cached"],
            reasoning_tokens=a["reasoning"],
        )
    status, _, body = get(gw, "/ag/usage?by=key&since=1h")
    assert status == 200, body
    report = orjson.loads(body)
    fields = ("requests", "prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens")
    assert {r["key"]: {f: r[f] for f in fields} for r in report["rows"]} == {
        n: {f: c[f] for f in fields} for n, c in expected.items()
    }
    assert report["total"]["requests"] == 3 and report["total"]["errors"] == 0
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "antigravity_gw",
            "usage",
            "--by",
            "key",
            "--json",
            "--data-dir",
            str(gw.data_dir),
        ],
        capture_output=True,
        cwd=ROOT,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT / "addons")},
    )
    assert cli.returncode == 0, cli.stderr
    assert orjson.loads(cli.stdout)["rows"] == report["rows"]
    table = subprocess.run(
        [sys.executable, "-m", "antigravity_gw", "usage", "--by", "model", "--data-dir", str(gw.data_dir)],
        capture_output=True,
        cwd=ROOT,
        timeout=60,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "addons")},
    )
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["model", "requests", "errors"], table.stdout
    total = sum(a["prompt"] for _, a in answers)
    assert lines[-1].split()[:4] == ["total", "3", "0", str(total)], table.stdout


def test_usage_report_refuses_a_bad_period_with_an_openai_error(gw: Gateway):
    status, _, body = get(gw, "/ag/usage?since=yesterday")
    assert status == 400 and orjson.loads(body)["error"]["param"] == "since"
    status, _, body = get(gw, "/ag/usage?by=planet")
    assert status == 400 and orjson.loads(body)["error"]["param"] == "by"


def metric_samples(text: str) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = defaultdict(list)
    for family in text_string_to_metric_families(text):
        out[family.name] += family.samples
    return out


def test_metrics_parse_and_their_counters_match_the_requests(gw: Gateway):
    answers = [
        ("alice", ask(gw, ALICE, FLASH)),
        ("alice", ask(gw, ALICE, PRO, stream=True)),
        ("bob", ask(gw, BOB, FLASH)),
    ]
    assert get(gw, "/metrics", key=None)[0] == 401, "metrics are guarded by inbound auth"
    status, headers, body = get(gw, "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    samples = metric_samples(body.decode())
    requests = Counter()
    for s in samples["ag_requests"]:
        if s.name == "ag_requests_total":
            requests[(s.labels["key"], s.labels["model"], s.labels["account"], s.labels["status"])] += s.value
    assert requests == Counter((n, a["model"], a["account"], "200") for n, a in answers)
    tokens = Counter()
    for s in samples["ag_tokens"]:
        if s.name == "ag_tokens_total":
            tokens[(s.labels["kind"], s.labels["key"])] += s.value
    for kind, field in (
        ("prompt", "prompt"),
        ("completion", "completion"),
        ("cached", "cached"),
        ("reasoning", "reasoning"),
    ):
        for name in ("alice", "bob"):
            assert tokens[(kind, name)] == sum(a[field] for n, a in answers if n == name), (kind, name)
    counts = {
        s.labels.get("route"): s.value
        for s in samples["ag_request_duration_seconds"]
        if s.name == "ag_request_duration_seconds_count"
    }
    assert counts == {"chat.completions": 3}
    firsts = [s.value for s in samples["ag_first_chunk_seconds"] if s.name == "ag_first_chunk_seconds_count"]
    assert firsts == [3]
    attempts = {
        s.labels["outcome"]: s.value
        for s in samples["ag_upstream_attempts"]
        if s.name == "ag_upstream_attempts_total"
    }
    assert attempts == {"ok": 3, "failed": 0}
    states = {(s.labels["account"], s.labels["state"]): s.value for s in samples["ag_account_state"]}
    assert states[("acc1@example.com", "ready")] == 1 and states[("acc1@example.com", "cooling")] == 0
    assert states[("acc2@example.com", "ready")] == 1


def test_metrics_can_be_public(start_gateway: Any, emulator: Any, keys_file: Path):
    gw = start_gateway(options={"ag_api_keys_file": str(keys_file), "ag_metrics_public": True})
    status, _, body = get(gw, "/metrics", key=None)
    assert status == 200 and b"ag_account_state" in body
    assert get(gw, "/ag/usage", key=None)[0] == 401, "only /metrics is public"


def error_of(exc: openai.APIStatusError) -> dict[str, Any]:
    return exc.response.json()["error"]


def test_a_model_outside_the_keys_list_is_refused_403(gw: Gateway):
    with pytest.raises(openai.PermissionDeniedError) as e:
        client_for(gw, BOB).chat.completions.create(model=PRO, messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 403 and error_of(e.value)["code"] == "model_not_allowed"
    assert ask(gw, ALICE, PRO)["model"] == PRO, "another key's list does not apply"
    refused = [r for r in ledger_rows(gw) if r["key_name"] == "bob"]
    assert [(r["status"], r["error_code"], r["client_model"]) for r in refused] == [
        (403, "model_not_allowed", PRO)
    ]
    assert len(emulator_calls(gw)) == 1, "only alice's request reached Google"


def test_a_compressed_body_does_not_slip_past_the_model_list(gw: Gateway):
    body = gzip.compress(orjson.dumps({"model": PRO, "messages": [{"role": "user", "content": "hi"}]}))
    request = urllib.request.Request(
        gw.url + "/v1/chat/completions", data=body, method="POST",
        headers={"authorization": f"Bearer {BOB}", "content-type": "application/json",
                 "content-encoding": "gzip"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with pytest.raises(urllib.error.HTTPError) as e:
        opener.open(request, timeout=10)
    assert e.value.code == 403 and orjson.loads(e.value.read())["error"]["code"] == "model_not_allowed"
    assert emulator_calls(gw) == []


def test_over_its_rpm_a_key_gets_429_with_retry_after(gw: Gateway):
    for _ in range(3):
        ask(gw, BOB, FLASH)
    with pytest.raises(openai.RateLimitError) as e:
        ask(gw, BOB, FLASH)
    assert error_of(e.value)["code"] == "rate_limit_exceeded"
    assert 1 <= int(e.value.response.headers["retry-after"]) <= 60
    ask(gw, ALICE, FLASH)  # other keys are not limited by bob's rate
    assert len([r for r in emulator_calls(gw)]) == 4, "the refused request never reached Google"


def emulator_calls(gw: Gateway) -> list[dict[str, Any]]:
    return [r for r in gw.emulator.requests() if r["rpc"] in ("generateContent", "streamGenerateContent")]


def test_over_its_daily_tokens_a_key_gets_429_budget_exceeded(gw: Gateway):
    first = ask(gw, CAROL, FLASH)
    assert first["prompt"] + first["completion"] > 10
    with pytest.raises(openai.RateLimitError) as e:
        ask(gw, CAROL, FLASH)
    assert error_of(e.value)["code"] == "budget_exceeded"
    assert 1 <= int(e.value.response.headers["retry-after"]) <= 86400
    assert len(emulator_calls(gw)) == 1


def test_the_budget_survives_a_restart(start_gateway: Any, emulator: Any, keys_file: Path, tmp_path: Path):
    emulator.add_rule(reply={"text": "counted answer", "usage": USAGE})
    options = {"ag_api_keys_file": str(keys_file), "ag_data_dir": str(tmp_path / "data")}
    gw = start_gateway(options=options)
    ask(gw, CAROL, FLASH)
    gw.stop()
    gw = start_gateway(options=options)
    with pytest.raises(openai.RateLimitError) as e:
        ask(gw, CAROL, FLASH)
    assert error_of(e.value)["code"] == "budget_exceeded"


def test_the_keys_file_is_reloaded_when_it_changes(gw: Gateway, keys_file: Path):
    dave = "sk-dave-0123456789"
    with pytest.raises(openai.AuthenticationError):
        ask(gw, dave, FLASH)
    write_keys(keys_file, [{"name": "alice", "key": ALICE}, {"name": "dave", "key": dave}])
    deadline = time.monotonic() + 10
    while True:
        try:
            ask(gw, dave, FLASH)
            break
        except openai.AuthenticationError:
            assert time.monotonic() < deadline, "the new key was never accepted"
            time.sleep(0.2)
    with pytest.raises(openai.AuthenticationError):
        ask(gw, BOB, FLASH)  # removed from the file
    assert [r["key_name"] for r in ledger_rows(gw) if r["status"] == 200] == ["dave"]


def test_no_ledger_when_usage_is_off(start_gateway: Any, emulator: Any):
    gw = start_gateway(options={"ag_usage": False})
    client_for(gw, "x").chat.completions.create(model=FLASH, messages=[{"role": "user", "content": "hi"}])
    status, _, body = get(gw, "/ag/usage", key=None)
    assert status == 404 and "ag_usage=false" in orjson.loads(body)["error"]["message"]
    assert not (gw.data_dir / "usage.sqlite3").exists()


def test_kill_9_during_a_burst_leaves_a_readable_ledger(start_gateway: Any, emulator: Any):
    emulator.add_rule(reply={"text": "burst", "usage": USAGE})
    gw = start_gateway()
    done = Counter()
    stop = threading.Event()

    def hammer() -> None:
        c = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0, timeout=5)
        for _ in range(500):  # bounded, and stopped by the kill
            if stop.is_set():
                return
            try:
                c.chat.completions.create(model=FLASH, messages=[{"role": "user", "content": "hi"}])
                done["ok"] += 1
            except openai.APIError:
                return

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while done["ok"] < 150 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gw.proc is not None
    os.kill(gw.proc.pid, signal.SIGKILL)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    gw.proc.wait(timeout=10)
    conn = sqlite3.connect(gw.data_dir / "usage.sqlite3")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = conn.execute("SELECT COUNT(*), SUM(prompt_tokens) FROM requests").fetchone()
    finally:
        conn.close()
    assert 0 < rows[0] <= done["ok"] + 8, (rows, done)
    assert rows[1] == rows[0] * USAGE["promptTokenCount"]


def test_an_unwritable_data_dir_stops_the_gateway_with_one_line(start_gateway: Any, tmp_path: Path):
    not_a_dir = tmp_path / "a-file"
    not_a_dir.write_text("")
    with pytest.raises(RuntimeError) as e:
        start_gateway(options={"ag_data_dir": str(not_a_dir)})
    assert (f"ag_data_dir: cannot keep the usage ledger in {not_a_dir} (File exists): choose a writable "
            "folder, or set ag_usage=false") in str(e.value)
    assert "Traceback" not in str(e.value)


def test_a_failed_attempt_is_counted_in_the_row_and_the_metrics(gw: Gateway, emulator: Any):
    emulator.set_rules([{"times": 1, "reply": {"error": {"kind": "capacity"}}},
                        {"reply": {"text": "counted answer", "usage": USAGE}}])
    raw = client_for(gw, ALICE).chat.completions.with_raw_response.create(
        model=FLASH, messages=[{"role": "user", "content": "hi"}])
    attempts = int(raw.headers["x-ag-attempts"])
    assert attempts == 2
    assert [r["attempts"] for r in ledger_rows(gw)] == [attempts]
    samples = metric_samples(get(gw, "/metrics")[2].decode())
    outcomes = {s.labels["outcome"]: s.value for s in samples["ag_upstream_attempts"]
                if s.name == "ag_upstream_attempts_total"}
    assert outcomes == {"ok": 1, "failed": attempts - 1}
