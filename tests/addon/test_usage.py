"""The Usage addon with mitmproxy's test helpers: key limits, /metrics, /ag/usage and the record sink."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from mitmproxy import ctx
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import taddons, tflow, tutils
from prometheus_client.parser import text_string_to_metric_families

from antigravity_gw import errors
from antigravity_gw.mitm import flows
from antigravity_gw.mitm.client_keys import ClientKeys
from antigravity_gw.mitm.usage import Usage
from antigravity_gw.upstream.accounts import Account
from antigravity_gw.upstream.pool import Pool
from antigravity_gw.usage.keys import ClientKey
from antigravity_gw.usage.record import RequestRecord


def flow(
    path: str = "/v1/chat/completions", method: str = "POST", body: bytes = b"", key: str = ""
) -> tflow.HTTPFlow:
    req = tutils.treq(
        method=method.encode(),
        path=path.encode(),
        content=body,
        headers=((b"host", b"127.0.0.1:8045"), (b"content-type", b"application/json")),
    )
    f = tflow.tflow(req=req)
    f.client_conn.proxy_mode = ProxyMode.parse("reverse:http://x@8045")
    if key:
        f.metadata[flows.KEY] = key
    return f


@pytest.fixture
def usage(tmp_path: Path):
    keys = ClientKeys()
    keys.by_name = {
        "bob": ClientKey("bob", b"", ("gemini-2.5-f*",), rpm=2),
        "carol": ClientKey("carol", b"", daily_tokens=10),
        "alice": ClientKey("alice", b""),
    }
    pool = Pool()
    pool.replace([Account("a1", "a1@example.com", "api_key", tmp_path / "a1.json", api_key="k")])
    addon = Usage(pool, keys)
    with taddons.context(addon) as tctx:
        tctx.configure(addon, ag_data_dir=str(tmp_path / "data"))
        yield addon


def chat(model: str) -> bytes:
    return orjson.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]})


def status_of(f: tflow.HTTPFlow) -> tuple[int, str]:
    assert f.response is not None
    return f.response.status_code, orjson.loads(f.response.content)["error"]["code"]


def refusal(usage: Usage, key: str, model: str = "gemini-2.5-flash") -> errors.GatewayError | None:
    f = flow(body=chat(model), key=key)
    try:
        usage.admit(f, model)
    except errors.GatewayError as e:
        assert f.metadata[flows.CLIENT_REQUEST]["model"] == model, "the refusal's row names the model"
        return e
    return None


def test_a_model_outside_the_keys_list_is_refused_403(usage):
    e = refusal(usage, "bob", "gemini-2.5-pro")
    assert e is not None and (e.status, e.code) == (403, "model_not_allowed")


def test_the_rpm_limit_answers_429_with_retry_after(usage):
    assert refusal(usage, "bob") is None
    assert refusal(usage, "bob") is None
    e = refusal(usage, "bob")
    assert e is not None and (e.status, e.code) == (429, "rate_limit_exceeded")
    assert 1 <= int(e.headers["retry-after"]) <= 60


def chat_record(**fields: Any) -> RequestRecord:
    """The record of a finished chat completion, with ``fields``."""
    return RequestRecord(ts=0, method="POST", path="/v1/chat/completions", route="chat.completions", **fields)


def test_the_daily_budget_counts_what_the_sink_recorded(usage):
    assert refusal(usage, "carol") is None
    usage.record(chat_record(key_name="carol", has_tokens=True, prompt_tokens=6, completion_tokens=5))
    e = refusal(usage, "carol")
    assert e is not None and (e.status, e.code) == (429, "budget_exceeded")


async def test_a_budget_check_counts_the_records_still_queued_as_idle_work(usage):
    """The access log queues a finished request's record until the gateway next waits for Google; the
    key's next request is checked before that wait, so the check runs the queue first."""
    assert refusal(usage, "carol") is None
    usage.idle.defer(usage.record, chat_record(key_name="carol", has_tokens=True, prompt_tokens=6,
                                               completion_tokens=5))
    assert usage.idle.pending == 1
    e = refusal(usage, "carol")
    assert e is not None and (e.status, e.code) == (429, "budget_exceeded")


async def test_metrics_count_the_records_still_queued_as_idle_work(usage):
    usage.idle.defer(usage.record, chat_record(key_name="alice", mapped_model="g", account="a1", status=200))
    f = flow(path="/metrics", method="GET")
    await usage.request(f)
    families = {fam.name: fam for fam in text_string_to_metric_families(f.response.text)}
    assert [s.value for s in families["ag_requests"].samples if s.name == "ag_requests_total"] == [1.0]


def test_unlimited_keys_and_requests_without_a_named_key_pass(usage):
    for _ in range(5):
        assert refusal(usage, "alice") is None
        assert refusal(usage, "") is None
        assert refusal(usage, "gone-from-the-file") is None


async def test_posts_are_left_to_the_gateway(usage):
    f = flow(body=chat("x"), key="bob", path="/metrics")
    assert usage.request(f) is None  # no coroutine made for the requests the Gateway answers
    assert f.response is None


def test_model_calls_cost_the_hook_no_coroutine(usage):
    assert usage.request(flow(path="/v1/models", method="GET")) is None


async def test_metrics_are_answered_with_the_records_counted(usage):
    usage.record(chat_record(key_name="alice", mapped_model="g", account="a1", status=200, attempts=2,
                             duration_ms=5.0))
    f = flow(path="/metrics", method="GET")
    await usage.request(f)
    assert f.response.status_code == 200
    families = {fam.name: fam for fam in text_string_to_metric_families(f.response.text)}
    assert [s.value for s in families["ag_requests"].samples if s.name == "ag_requests_total"] == [1.0]
    assert {
        s.labels["outcome"]: s.value
        for s in families["ag_upstream_attempts"].samples
        if s.name == "ag_upstream_attempts_total"
    } == {"ok": 1.0, "failed": 1.0}
    assert {
        (s.labels["account"], s.labels["state"]): s.value for s in families["ag_account_state"].samples
    } == {
        ("a1@example.com", "ready"): 1.0,
        ("a1@example.com", "cooling"): 0.0,
        ("a1@example.com", "disabled"): 0.0,
    }


async def test_usage_report_flushes_and_sums_the_ledger(usage):
    await usage.running()
    try:
        for tokens in (3, 4):
            usage.record(
                RequestRecord(
                    ts=1.7e9,
                    method="POST",
                    path="/v1/responses",
                    route="responses",
                    key_name="alice",
                    has_tokens=True,
                    prompt_tokens=tokens,
                    status=200,
                )
            )
        f = flow(path="/ag/usage?by=key&since=2020-01-01", method="GET")
        await usage.request(f)
        report = orjson.loads(f.response.content)
        assert [(r["key"], r["requests"], r["prompt_tokens"]) for r in report["rows"]] == [("alice", 2, 7)]
    finally:
        await usage.done()


async def test_done_writes_the_records_still_queued_before_the_ledger_closes(usage, tmp_path: Path):
    await usage.running()
    usage.idle.defer(usage.record, RequestRecord(ts=time.time(), method="POST", path="/v1/chat/completions",
                                                 route="chat.completions", key_name="alice", status=200))
    try:
        assert usage.idle.pending == 1
    finally:
        await usage.done()
    with sqlite3.connect(tmp_path / "data" / "usage.sqlite3") as db:
        assert db.execute("SELECT key_name FROM requests").fetchall() == [("alice",)]


async def test_usage_report_says_when_the_ledger_is_off(usage):
    f = flow(path="/ag/usage", method="GET")
    await usage.request(f)  # not running: no ledger opened
    assert status_of(f)[0] == 404


async def test_quota_ratios_come_from_the_seam(usage):
    usage.quota_of = lambda account_id: [("gemini-2.5-pro", 0.4)] if account_id == "a1" else []
    f = flow(path="/metrics", method="GET")
    await usage.request(f)
    families = {fam.name: fam for fam in text_string_to_metric_families(f.response.text)}
    assert [(s.labels, s.value) for s in families["ag_quota_remaining_ratio"].samples] == [
        ({"account": "a1@example.com", "model": "gemini-2.5-pro"}, 0.4)
    ]


def test_a_data_dir_that_cannot_be_written_is_refused(tmp_path: Path):
    from mitmproxy import exceptions

    a_file = tmp_path / "a-file"
    a_file.write_text("")
    addon = Usage()
    with taddons.context(addon) as tctx:
        with pytest.raises(exceptions.OptionsError, match="ag_data_dir: cannot keep the usage ledger"):
            tctx.configure(addon, ag_data_dir=str(a_file))
        tctx.configure(addon, ag_data_dir=str(a_file), ag_usage=False)  # no ledger: nothing to check


def test_the_addon_chain_exports_the_pools_quota_snapshots() -> None:
    from antigravity_gw import make_addons
    from antigravity_gw.mitm.gateway import Gateway
    from antigravity_gw.upstream.quota import AccountQuota, ModelQuota

    addons = make_addons()
    usage = next(a for a in addons if isinstance(a, Usage))
    gateway = next(a for a in addons if isinstance(a, Gateway))
    gateway.pool.quota.store("a1", AccountQuota(models={"gemini-2.5-pro": ModelQuota(0.5, None)}))
    assert list(usage.quota_of("a1")) == [("gemini-2.5-pro", 0.5)]


def test_the_default_data_dir_is_never_the_real_home(own_home: Path, usage):
    """The test context configures ag_data_dir's default before the fixture sets its own (tests/addon/
    conftest.py gives every addon test a home of its own, or this made ~/.antigravity_gw in the real one)."""
    assert Path("~/.antigravity_gw").expanduser().parent == own_home


def ledger_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "ag-usage-ledger"]


async def test_a_new_data_dir_moves_the_running_ledger(usage, tmp_path: Path):
    await usage.running()
    try:
        assert usage.ledger is not None and usage.ledger.path.parent == tmp_path / "data"
        ctx.options.update(ag_data_dir=str(tmp_path / "moved"))  # as mitmweb's Options page does
        await usage.tasks.wait()
        assert usage.ledger is not None and usage.ledger.path.parent == tmp_path / "moved"
        assert len(ledger_threads()) == 1  # the old one was closed
    finally:
        await usage.done()
    assert ledger_threads() == []


async def test_done_while_the_ledger_reopens_leaves_nothing_open(usage, tmp_path: Path):
    await usage.running()
    ctx.options.update(ag_data_dir=str(tmp_path / "moved"))
    await usage.done()  # the reopen is still under way: cancelled, and what it opened is closed
    assert usage.ledger is None and len(usage.tasks) == 0
    assert ledger_threads() == []
