"""mitm/access_log.py with mitmproxy's test flows: the line's fields, failures, and what it leaves out."""

from __future__ import annotations

import asyncio
import logging

import orjson
from mitmproxy import flow as mflow
from mitmproxy import http
from mitmproxy.test import taddons, tflow

from antigravity_gw.idle_work import IdleWork
from antigravity_gw.mitm import flows
from antigravity_gw.mitm.access_log import SERVER_LOGGER, AccessLog, ConnectionNoise, access_line, logger


def gateway_flow(status: int = 200, body: bytes = b"{}") -> http.HTTPFlow:
    f = tflow.tflow(resp=http.Response.make(status, body, {"content-type": "application/json"}))
    f.request.timestamp_start = 100.0
    f.response.timestamp_start, f.response.timestamp_end = 100.25, 101.5
    f.metadata[flows.CLIENT_REQUEST] = {"method": "POST", "path": "/v1/chat/completions?key=secret",
                                        "model": "gpt-4o", "body": "{}"}
    f.metadata[flows.UPSTREAM] = {"url": "https://x", "account": "me@gmail.com", "attempts": 2,
                                  "model": "gemini-2.5-flash", "tokens": (12, 34)}
    return f


def test_a_translated_request_is_one_line_with_every_field():
    assert access_line(gateway_flow()) == ("POST /v1/chat/completions gpt-4o → gemini-2.5-flash "
                                           "account=me@gmail.com status=200 attempts=2 tokens=12/34 "
                                           "first=250ms total=1500ms")


def test_a_model_fallback_names_the_model_it_stands_in_for():
    f = gateway_flow()
    f.metadata[flows.UPSTREAM]["fallback_from"] = "gemini-3-pro"
    assert access_line(f) == ("POST /v1/chat/completions gpt-4o → gemini-2.5-flash (fallback from "
                              "gemini-3-pro) account=me@gmail.com status=200 attempts=2 tokens=12/34 "
                              "first=250ms total=1500ms")
    assert "fallback" not in access_line(gateway_flow())


def test_an_error_answer_names_its_code_and_a_query_string_never_shows():
    body = orjson.dumps({"error": {"message": "m", "type": "rate_limit_error", "param": None,
                                   "code": "all_accounts_unavailable"}})
    line = access_line(gateway_flow(429, body))
    assert line.endswith("status=429 attempts=2 tokens=12/34 first=250ms total=1500ms "
                         "error=all_accounts_unavailable")
    assert "secret" not in line


def test_a_client_that_left_is_logged_with_the_error():
    f = gateway_flow()
    f.response = None
    f.error = mflow.Error("Client disconnected.")
    f.error.timestamp = 100.75
    assert access_line(f).endswith(
        "status=- attempts=2 tokens=12/34 total=750ms error='Client disconnected.'")


def test_failed_attempt_flows_are_not_client_requests(caplog):
    addon = AccessLog()
    with taddons.context(addon), caplog.at_level(logging.INFO, logger="antigravity_gw.access"):
        synthetic = gateway_flow()
        synthetic.metadata[flows.SYNTHETIC] = True
        addon.response(synthetic)
        addon.response(gateway_flow())
    assert len([r for r in caplog.records if r.name == "antigravity_gw.access"]) == 1


def test_access_lines_skip_the_deprecated_add_log_event_and_other_lines_keep_it():
    """add_log would cost a hook call on every addon per request (nothing in mitmproxy needs it any more)."""
    addon = AccessLog()
    with taddons.context(addon) as tctx:
        legacy = tctx.master._legacy_log_events
        access = logging.LogRecord(logger.name, logging.INFO, __file__, 1, "POST /v1/chat", None, None)
        other = logging.LogRecord("antigravity_gw.pool", logging.INFO, __file__, 1, "accounts", None, None)
        assert not legacy.filter(access)
        assert legacy.filter(other)
        # mitmproxy's per-connection lines, once ConnectionNoise demoted them ("Streaming response from"
        # is logged as a stream's headers go out, before its first chunk), and its own debug lines
        streaming = logging.LogRecord(SERVER_LOGGER, logging.INFO, __file__, 1, "Streaming response from x.",
                                      None, None)
        assert ConnectionNoise().filter(streaming) and streaming.levelno == logging.DEBUG
        assert not legacy.filter(streaming)
        problem = logging.LogRecord(SERVER_LOGGER, logging.WARNING, __file__, 1, "server connection failed",
                                    None, None)
        assert legacy.filter(problem)
        addon.done()
        assert legacy.filter(access)  # nothing left behind


def test_on_the_event_loop_the_line_waits_for_the_next_upstream_wait(caplog):
    """The line, the ledger row and the metrics are idle work: not in the step that sends the answer, nor
    in the next ones (the client's next request), but once the Gateway waits for Google."""
    recorded: list[object] = []
    idle = IdleWork(latest=60)
    addon = AccessLog(sinks=[recorded.append], idle=idle)

    async def answer_then_wait_upstream() -> tuple[int, int, int]:
        flow = gateway_flow()
        flow.metadata[flows.ROUTE] = "chat.completions"
        addon.response(flow)
        during = len(recorded)
        for _ in range(3):
            await asyncio.sleep(0)
        later = len(recorded)
        idle.run_while_waiting()  # what the Gateway's upstream sender calls as a call starts
        await asyncio.sleep(0)
        return during, later, len(recorded)

    with taddons.context(addon), caplog.at_level(logging.INFO, logger="antigravity_gw.access"):
        assert asyncio.run(answer_then_wait_upstream()) == (0, 0, 1)
    assert len([r for r in caplog.records if r.name == "antigravity_gw.access"]) == 1


def test_without_upstream_calls_the_line_comes_at_the_latest_after_a_moment(caplog):
    recorded: list[object] = []
    addon = AccessLog(sinks=[recorded.append], idle=IdleWork(latest=0.01))

    async def answer_then_idle() -> tuple[int, int]:
        flow = gateway_flow()
        flow.metadata[flows.ROUTE] = "chat.completions"
        addon.error(flow)
        during = len(recorded)
        await asyncio.sleep(0.05)
        return during, len(recorded)

    with taddons.context(addon), caplog.at_level(logging.INFO, logger="antigravity_gw.access"):
        assert asyncio.run(answer_then_idle()) == (0, 1)


def test_done_logs_the_lines_still_waiting():
    recorded: list[object] = []
    addon = AccessLog(sinks=[recorded.append], idle=IdleWork(latest=60))

    async def answer_then_quit() -> int:
        flow = gateway_flow()
        flow.metadata[flows.ROUTE] = "chat.completions"
        addon.response(flow)
        addon.done()
        return len(recorded)

    with taddons.context(addon):
        assert asyncio.run(answer_then_quit()) == 1


def test_connection_lines_are_demoted_to_debug_and_others_kept():
    noise = ConnectionNoise()
    for message, level in (("client connect", logging.DEBUG),
                           ("server connect 127.0.0.1:4321", logging.DEBUG),
                           ("Streaming response from 127.0.0.1.", logging.DEBUG),
                           ("server connection to x killed before connect: y", logging.INFO)):
        record = logging.LogRecord(SERVER_LOGGER, logging.INFO, __file__, 1, message, None, None)
        assert noise.filter(record) and record.levelno == level, message


# ---- the record: collected once, for the line, the ledger and the metrics ------------------------------
def test_the_record_carries_what_the_line_shows_and_the_key_name():
    from antigravity_gw.mitm.access_log import record_of

    f = gateway_flow()
    f.metadata[flows.KEY] = "alice"
    f.metadata[flows.ROUTE] = "chat.completions"
    f.metadata[flows.UPSTREAM]["tokens"] = (12, 34, 5, 6)
    r = record_of(f)
    assert (r.key_name, r.route, r.client_model, r.mapped_model, r.account, r.status, r.attempts) == (
        "alice", "chat.completions", "gpt-4o", "gemini-2.5-flash", "me@gmail.com", 200, 2)
    assert (r.prompt_tokens, r.completion_tokens, r.cached_tokens, r.reasoning_tokens) == (12, 34, 5, 6)
    assert (r.first_chunk_ms, r.duration_ms, r.path) == (250.0, 1500.0, "/v1/chat/completions")
    assert access_line(f) == ("POST /v1/chat/completions gpt-4o → gemini-2.5-flash key=alice "
                              "account=me@gmail.com status=200 attempts=2 tokens=12/34 first=250ms "
                              "total=1500ms")


def test_only_model_routes_reach_the_sinks_and_each_gets_the_same_record():
    got: list = []
    addon = AccessLog(sinks=[got.append, got.append])
    with taddons.context(addon):
        billed = gateway_flow()
        billed.metadata[flows.ROUTE] = "chat.completions"
        addon.response(billed)
        models = gateway_flow()
        models.metadata[flows.ROUTE] = "models"
        addon.response(models)
        synthetic = gateway_flow()
        synthetic.metadata[flows.ROUTE] = "chat.completions"
        synthetic.metadata[flows.SYNTHETIC] = True
        addon.response(synthetic)
    assert len(got) == 2 and got[0] is got[1] and got[0].route == "chat.completions"
