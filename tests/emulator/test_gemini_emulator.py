"""Tests of scripts/gemini_emulator.py: Google's wire format, scripting rules, recording, OAuth.

Most tests run the app in-process with aiohttp's TestServer/TestClient; a few go through the
subprocess helper in tests/support/emulator.py, the way gateway tests use it.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from gemini_emulator import STATE, EmulatorState, make_app, merge_events, parse_duration, split_text
from support.emulator import SCRIPT, Emulator, EmulatorError

pytestmark = pytest.mark.timeout(30)

TOKEN = "ya29.test-token"
API_KEY = "AIza-test-key"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
KEY = {"x-goog-api-key": API_KEY}
MODEL = "gemini-2.5-flash"


@dataclass
class Emu:
    client: TestClient
    state: EmulatorState

    async def cloudcode(self, rpc: str, body: Any, base: str = "", headers: dict[str, str] | None = None,
                        query: str = "") -> aiohttp.ClientResponse:
        return await self.client.post(f"{base}/v1internal:{rpc}{query}", data=orjson.dumps(body),
                                      headers=BEARER if headers is None else headers)

    async def gemini(self, rpc: str, body: Any, model: str = MODEL, headers: dict[str, str] | None = None,
                     query: str = "") -> aiohttp.ClientResponse:
        return await self.client.post(f"/v1beta/models/{model}:{rpc}{query}", data=orjson.dumps(body),
                                      headers=KEY if headers is None else headers)

    async def token(self, **form: str) -> aiohttp.ClientResponse:
        return await self.client.post("/token", data=form)


@pytest.fixture
async def emu() -> AsyncIterator[Emu]:
    app = make_app()
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield Emu(client, app[STATE])


def gen_request(text: str = "hi", **generation_config: Any) -> dict[str, Any]:
    request: dict[str, Any] = {"contents": [{"role": "user", "parts": [{"text": text}]}]}
    if generation_config:
        request["generationConfig"] = generation_config
    return request


def envelope(request: dict[str, Any] | None = None, model: str = MODEL) -> dict[str, Any]:
    return {"project": "p-1", "model": model, "request": request or gen_request(), "requestId": "agent/x/1",
            "userAgent": "antigravity", "requestType": "agent"}


async def http_chunks(resp: aiohttp.ClientResponse) -> list[bytes]:
    """The body as the server wrote it: one item per HTTP chunk (one per write)."""
    chunks, pending = [], b""
    async for data, end_of_chunk in resp.content.iter_chunks():
        pending += data
        if end_of_chunk:
            chunks.append(pending)
            pending = b""
    return chunks + ([pending] if pending else [])


def sse_payloads(body: bytes) -> list[Any]:
    frames = body.split(b"\r\n\r\n")
    assert frames[-1] == b"", body
    assert all(frame.startswith(b"data: ") for frame in frames[:-1]), body
    return [orjson.loads(frame[6:]) for frame in frames[:-1]]


def texts(payloads: list[Any], unwrap: bool = True) -> list[str]:
    events = [p["response"] if unwrap else p for p in payloads]
    candidates = [c for e in events for c in e.get("candidates", [])]
    return [part.get("text", "") for c in candidates for part in c["content"]["parts"]]


# ---------------------------------------------------------------------------------------------
# Generation: both dialects, stream and not
# ---------------------------------------------------------------------------------------------


def frame(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\r\n\r\n"


def echo_event(text: str, final: bool, seq: int) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": text}]}}
    if final:
        candidate["finishReason"] = "STOP"
    event: dict[str, Any] = {"candidates": [{**candidate, "index": 0}]}
    if final:
        event["usageMetadata"] = {"promptTokenCount": 1, "candidatesTokenCount": 2, "totalTokenCount": 3}
    return {**event, "modelVersion": MODEL, "responseId": f"emu-{seq}"}


async def test_cloudcode_stream_is_enveloped_three_frames_each_written_in_two_halves(emu: Emu) -> None:
    resp = await emu.cloudcode("streamGenerateContent", envelope(), base="/sandbox", query="?alt=sse")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/event-stream"
    chunks = await http_chunks(resp)
    trace = "0000000000000001"
    pieces = ("ec", "ho:", " hi")
    expected = [frame({"response": echo_event(t, t == " hi", 1), "traceId": trace}) for t in pieces]
    assert b"".join(chunks) == b"".join(expected)
    assert len(chunks) == 6
    for index, whole in enumerate(expected):
        head, tail = chunks[2 * index], chunks[2 * index + 1]
        assert head + tail == whole
        assert head.startswith(b'data: {"') and not head.endswith(b"\r\n\r\n"), head


async def test_gemini_stream_frames_carry_no_envelope(emu: Emu) -> None:
    resp = await emu.gemini("streamGenerateContent", gen_request(), query="?alt=sse")
    assert resp.status == 200
    body = await resp.read()
    assert body == b"".join(frame(echo_event(t, t == " hi", 1)) for t in ("ec", "ho:", " hi"))


async def test_split_false_writes_each_frame_at_once(emu: Emu) -> None:
    emu.state.add_rules([{"reply": {"split": False}}])
    resp = await emu.gemini("streamGenerateContent", gen_request(), query="?alt=sse")
    chunks = await http_chunks(resp)
    assert [c.endswith(b"\r\n\r\n") for c in chunks] == [True, True, True]


async def test_cloudcode_non_stream_is_one_enveloped_response(emu: Emu) -> None:
    resp = await emu.cloudcode("generateContent", envelope(gen_request("what is up")))
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/json; charset=UTF-8"
    assert await resp.json() == {
        "response": {
            "candidates": [{"content": {"role": "model", "parts": [{"text": "echo: what is up"}]},
                            "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 4, "totalTokenCount": 7},
            "modelVersion": MODEL, "responseId": "emu-1",
        },
        "traceId": "0000000000000001",
    }


async def test_gemini_non_stream_is_a_plain_response(emu: Emu) -> None:
    resp = await emu.gemini("generateContent", {"contents": [{"parts": [{"text": "a"}, {"text": "b"}]}]})
    assert await resp.json() == {
        "candidates": [{"content": {"role": "model", "parts": [{"text": "echo: a\nb"}]},
                        "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 3, "totalTokenCount": 4},
        "modelVersion": MODEL, "responseId": "emu-1",
    }


async def test_api_key_may_come_in_the_query(emu: Emu) -> None:
    resp = await emu.gemini("generateContent", gen_request(), headers={}, query=f"?key={API_KEY}")
    assert resp.status == 200
    assert emu.state.requests[0]["credential"] == API_KEY


async def test_no_user_text_answers_hello(emu: Emu) -> None:
    request = {"contents": [{"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]}]}
    resp = await emu.gemini("generateContent", request)
    assert texts([await resp.json()], unwrap=False) == ["Hello from the emulator"]


async def test_candidate_count_gives_indexed_candidates_with_suffix(emu: Emu) -> None:
    body = envelope(gen_request(candidateCount=2))
    resp = await emu.cloudcode("streamGenerateContent", body, query="?alt=sse")
    events = [p["response"] for p in sse_payloads(await resp.read())]
    assert [[c["index"] for c in e["candidates"]] for e in events] == [[0, 1]] * 3
    by_candidate = ["".join(texts([{"candidates": [e["candidates"][i]]} for e in events], unwrap=False))
                    for i in (0, 1)]
    assert by_candidate == ["echo: hi", "echo: hi [1]"]
    assert [c["finishReason"] for c in events[-1]["candidates"]] == ["STOP", "STOP"]


async def test_small_max_output_tokens_truncates_with_max_tokens(emu: Emu) -> None:
    resp = await emu.gemini("generateContent", gen_request("hello there", maxOutputTokens=1))
    candidate = (await resp.json())["candidates"][0]
    assert candidate["content"]["parts"] == [{"text": "echo"}]
    assert candidate["finishReason"] == "MAX_TOKENS"


async def test_thoughts_text_and_function_call_with_signatures(emu: Emu) -> None:
    reply = {"thoughts": ["plan", " more"], "thought_signature": "sig-t", "text": ["ok"],
             "function_calls": [{"name": "read_file", "args": {"path": "a.txt"}, "thought_signature": "sig-f",
                                 "id": "call-1"}],
             "usage": {"promptTokenCount": 5, "candidatesTokenCount": 3, "totalTokenCount": 20,
                       "thoughtsTokenCount": 12}}
    emu.state.add_rules([{"reply": reply}])
    resp = await emu.cloudcode("streamGenerateContent", envelope(), query="?alt=sse")
    events = [p["response"] for p in sse_payloads(await resp.read())]
    assert [e["candidates"][0]["content"]["parts"] for e in events] == [
        [{"text": "plan", "thought": True}],
        [{"text": " more", "thought": True, "thoughtSignature": "sig-t"}],
        [{"text": "ok"}],
        [{"functionCall": {"name": "read_file", "args": {"path": "a.txt"}, "id": "call-1"},
          "thoughtSignature": "sig-f"}],
    ]
    assert ["finishReason" in e["candidates"][0] for e in events] == [False, False, False, True]
    assert events[-1]["usageMetadata"] == reply["usage"]
    assert "usageMetadata" not in events[0]


async def test_non_stream_merges_thought_and_text_runs(emu: Emu) -> None:
    emu.state.add_rules([{"reply": {"thoughts": ["a", "b"], "thought_signature": "s", "text": "xyz",
                                    "function_calls": [{"name": "f", "args": {}}]}}])
    resp = await emu.gemini("generateContent", gen_request())
    body = await resp.json()
    assert body["candidates"][0]["content"]["parts"] == [
        {"text": "ab", "thought": True, "thoughtSignature": "s"}, {"text": "xyz"},
        {"functionCall": {"name": "f", "args": {}}},
    ]
    # "ab" is 1 token, "xyz" 1, the call's JSON {"name":"f","args":{}} 22 characters = 6.
    assert body["usageMetadata"] == {"promptTokenCount": 1, "candidatesTokenCount": 7, "totalTokenCount": 9,
                                     "thoughtsTokenCount": 1}


async def test_prompt_feedback_without_candidates(emu: Emu) -> None:
    emu.state.add_rules([{"reply": {"prompt_feedback": {"blockReason": "SAFETY"}, "usage": None}}])
    resp = await emu.gemini("streamGenerateContent", gen_request(), query="?alt=sse")
    assert sse_payloads(await resp.read()) == [
        {"promptFeedback": {"blockReason": "SAFETY"}, "modelVersion": MODEL, "responseId": "emu-1"}]


async def test_events_are_sent_verbatim_and_wrapped_for_cloudcode(emu: Emu) -> None:
    events = [{"candidates": [{"content": {"parts": [{"text": "x"}]}}]},
              {"usageMetadata": {"totalTokenCount": 1}}]
    emu.state.add_rules([{"reply": {"events": events}}])
    resp = await emu.cloudcode("streamGenerateContent", envelope(), query="?alt=sse")
    assert sse_payloads(await resp.read()) == [{"response": e, "traceId": "0000000000000001"} for e in events]


async def test_finish_reason_null_and_rule_without_content_keeps_echo(emu: Emu) -> None:
    emu.state.add_rules([{"reply": {"finish_reason": None, "chunk_delay_ms": 1}}])
    resp = await emu.gemini("streamGenerateContent", gen_request(), query="?alt=sse")
    events = sse_payloads(await resp.read())
    assert "".join(texts(events, unwrap=False)) == "echo: hi"
    assert all("finishReason" not in e["candidates"][0] for e in events)


async def test_stream_without_alt_sse_is_a_json_array(emu: Emu) -> None:
    resp = await emu.gemini("streamGenerateContent", gen_request())
    assert "".join(texts(await resp.json(), unwrap=False)) == "echo: hi"


async def test_count_tokens(emu: Emu) -> None:
    body = {"request": {"model": f"models/{MODEL}", **gen_request("12345678")}}
    resp = await emu.cloudcode("countTokens", body)
    assert await resp.json() == {"totalTokens": 2}
    assert emu.state.requests[0]["model"] == MODEL


async def test_count_tokens_in_the_gemini_dialect_counts_the_whole_request(emu: Emu) -> None:
    body = {"generateContentRequest": {"model": f"models/{MODEL}", **gen_request("12345678"),
                                       "systemInstruction": {"parts": [{"text": "abcd"}]}}}
    resp = await emu.gemini("countTokens", body)
    assert await resp.json() == {"totalTokens": 3}


async def test_embeddings_are_deterministic_unit_vectors_of_the_asked_size(emu: Emu) -> None:
    one = {"model": "models/text-embedding-004", "content": {"parts": [{"text": "hello"}]}}
    resp = await emu.gemini("batchEmbedContents", {"requests": [one, {**one, "outputDimensionality": 4}]},
                            model="text-embedding-004")
    first, short = (await resp.json())["embeddings"]
    assert len(first["values"]) == 768 and len(short["values"]) == 4
    assert abs(sum(v * v for v in first["values"]) - 1) < 1e-3
    single = await (await emu.gemini("embedContent", one, model="text-embedding-004")).json()
    assert single["embedding"]["values"] == first["values"]


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------

ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
CLOUDCODE = "cloudcode-pa.googleapis.com"
CAPACITY = "You have exhausted your capacity on this model. Your quota will reset after"
UNAUTHENTICATED = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other "
    "valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project."
)

ERROR_CASES = [
    ({"kind": "quota_exhausted", "quota_reset_delay": "3723.5s",
      "quota_reset_timestamp": "2030-01-01T00:00:00Z"},
     429, {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": f"{CAPACITY} 1h2m3s.",
           "details": [{"@type": ERROR_INFO, "reason": "QUOTA_EXHAUSTED", "domain": CLOUDCODE,
                        "metadata": {"uiMessage": "true", "model": MODEL, "quotaResetDelay": "3723.5s",
                                     "quotaResetTimeStamp": "2030-01-01T00:00:00Z"}},
                       {"@type": RETRY_INFO, "retryDelay": "3723.5s"}]}),
    ({"kind": "rate_limited", "retry_delay": "0.5s"},
     429, {"code": 429, "status": "RESOURCE_EXHAUSTED",
           "message": f"{CAPACITY} 0s.",
           "details": [{"@type": ERROR_INFO, "reason": "RATE_LIMIT_EXCEEDED", "domain": CLOUDCODE,
                        "metadata": {"model": MODEL, "quotaResetDelay": "0.5s"}},
                       {"@type": RETRY_INFO, "retryDelay": "0.5s"}]}),
    ({"kind": "resource_exhausted"},
     429, {"code": 429, "status": "RESOURCE_EXHAUSTED",
           "message": "Resource has been exhausted (e.g. check quota)."}),
    ({"kind": "capacity", "model": "claude-opus-4-6-thinking"},
     503, {"code": 503, "status": "UNAVAILABLE",
           "message": "No capacity available for model claude-opus-4-6-thinking on the server",
           "details": [{"@type": ERROR_INFO, "reason": "MODEL_CAPACITY_EXHAUSTED",
                        "domain": CLOUDCODE, "metadata": {"model": "claude-opus-4-6-thinking"}}]}),
    ({"kind": "unavailable"}, 503,
     {"code": 503, "status": "UNAVAILABLE", "message": "The service is currently unavailable."}),
    ({"kind": "unauthenticated"}, 401,
     {"code": 401, "status": "UNAUTHENTICATED", "message": UNAUTHENTICATED}),
    ({"kind": "permission_denied"}, 403,
     {"code": 403, "status": "PERMISSION_DENIED", "message": "The caller does not have permission"}),
    ({"kind": "permission_denied", "reason": "VALIDATION_REQUIRED", "validation_url": "https://v.example/x"},
     403,
     {"code": 403, "status": "PERMISSION_DENIED", "message": "Verify your account to continue.",
      "details": [{"@type": ERROR_INFO, "reason": "VALIDATION_REQUIRED", "domain": CLOUDCODE,
                   "metadata": {"validation_error_message": "Verify your account to continue.",
                                "validation_url_link_text": "Verify your account",
                                "validation_url": "https://v.example/x",
                                "validation_learn_more_link_text": "Learn more",
                                "validation_learn_more_url": "https://support.google.com/accounts?p=al_alert"}}]}),
    ({"kind": "not_found"}, 404,
     {"code": 404, "status": "NOT_FOUND", "message": "Requested entity was not found."}),
    ({"kind": "internal"}, 500,
     {"code": 500, "status": "INTERNAL", "message": "Internal error encountered."}),
    ({"kind": "bad_request", "message": "Corrupted thought signature."}, 400,
     {"code": 400, "status": "INVALID_ARGUMENT", "message": "Corrupted thought signature."}),
    ({"kind": "unavailable", "status": 529}, 529,
     {"code": 529, "status": "UNAVAILABLE", "message": "The service is currently unavailable."}),
]


@pytest.mark.parametrize(("spec", "status", "error"), ERROR_CASES, ids=[c[0]["kind"] for c in ERROR_CASES])
async def test_error_kind_status_and_body(emu: Emu, spec: dict[str, Any], status: int,
                                          error: dict[str, Any]) -> None:
    emu.state.add_rules([{"reply": {"error": spec}}])
    resp = await emu.cloudcode("streamGenerateContent", envelope(), query="?alt=sse")
    assert resp.status == status
    assert resp.headers["Content-Type"] == "application/json; charset=UTF-8"
    assert await resp.json() == {"error": error}


async def test_quota_exhausted_defaults_name_a_future_reset(emu: Emu) -> None:
    emu.state.add_rules([{"reply": {"error": {"kind": "quota_exhausted"}}}])
    before = datetime.now(UTC).replace(microsecond=0)
    body = await (await emu.cloudcode("generateContent", envelope())).json()
    info, retry = body["error"]["details"]
    assert retry == {"@type": RETRY_INFO, "retryDelay": "3600s"}
    stamp = datetime.fromisoformat(info["metadata"]["quotaResetTimeStamp"])
    assert 3599 <= (stamp - before).total_seconds() <= 3602
    assert body["error"]["message"].endswith("reset after 1h0m0s.")


async def test_api_quota_is_the_public_api_shape(emu: Emu) -> None:
    emu.state.add_rules([{"reply": {"error": {"kind": "api_quota"}}}])
    body = await (await emu.gemini("generateContent", gen_request())).json()
    kinds = [d["@type"].rsplit(".", 1)[1] for d in body["error"]["details"]]
    assert kinds == ["QuotaFailure", "Help", "RetryInfo"]
    assert body["error"]["details"][2]["retryDelay"] == "45s"
    assert body["error"]["message"].endswith("Please retry in 45.837906927s.")


async def test_retry_after_header(emu: Emu) -> None:
    emu.state.add_rules([{"times": 1, "reply": {"error": {"kind": "rate_limited", "retry_delay": "2.2s",
                                                          "retry_after_header": True}}},
                         {"times": 1,
                          "reply": {"error": {"kind": "resource_exhausted", "retry_after_header": 7}}}])
    assert (await emu.cloudcode("generateContent", envelope())).headers["Retry-After"] == "3"
    assert (await emu.cloudcode("generateContent", envelope())).headers["Retry-After"] == "7"


async def test_raw_status_and_body(emu: Emu) -> None:
    emu.state.add_rules([{"times": 1, "reply": {"status": 502, "body": "<html>bad gateway</html>"}},
                         {"times": 1,
                          "reply": {"status": 418, "body": {"odd": True}, "headers": {"X-A": "b"}}}])
    first = await emu.cloudcode("generateContent", envelope())
    assert (first.status, await first.text()) == (502, "<html>bad gateway</html>")
    second = await emu.cloudcode("generateContent", envelope())
    assert (second.status, await second.json(), second.headers["X-A"]) == (418, {"odd": True}, "b")


async def test_cut_after_drops_the_connection_before_finish_reason(emu: Emu) -> None:
    emu.state.add_rules([{"reply": {"text": ["a", "b", "c"], "cut_after": 2}}])
    resp = await emu.cloudcode("streamGenerateContent", envelope(), query="?alt=sse")
    received = b""
    with pytest.raises(aiohttp.ClientPayloadError):
        async for data in resp.content.iter_any():
            received += data
    payloads = sse_payloads(received)
    assert texts(payloads) == ["a", "b"]
    assert all("finishReason" not in p["response"]["candidates"][0] for p in payloads)


async def test_cut_after_on_non_stream_truncates_the_body(emu: Emu) -> None:
    emu.state.add_rules([{"reply": {"cut_after": 0}}])
    resp = await emu.cloudcode("generateContent", envelope())
    with pytest.raises(aiohttp.ClientPayloadError):
        await resp.read()


async def test_error_mid_stream_sends_an_in_band_error_then_ends(emu: Emu) -> None:
    emu.state.add_rules([{"reply": {"text": ["a", "b", "c"], "cut_after": 2,
                                    "error_mid_stream": {"kind": "unavailable"}}}])
    resp = await emu.cloudcode("streamGenerateContent", envelope(), query="?alt=sse")
    payloads = sse_payloads(await resp.read())
    assert texts(payloads[:2]) == ["a", "b"]
    assert payloads[2] == {"error": {"code": 503, "message": "The service is currently unavailable.",
                                     "status": "UNAVAILABLE"}}


async def test_delay_ms_holds_the_headers(emu: Emu) -> None:
    emu.state.add_rules([{"reply": {"delay_ms": 150}}])
    started = time.monotonic()
    resp = await emu.gemini("generateContent", gen_request())
    assert resp.status == 200
    assert time.monotonic() - started >= 0.15


# ---------------------------------------------------------------------------------------------
# Built-in checks: auth, envelope, models, unknown paths
# ---------------------------------------------------------------------------------------------


async def test_missing_bearer_is_401(emu: Emu) -> None:
    resp = await emu.cloudcode("streamGenerateContent", envelope(), headers={}, query="?alt=sse")
    body = await resp.json()
    assert (resp.status, body["error"]["status"]) == (401, "UNAUTHENTICATED")
    assert body["error"]["message"].startswith("Request is missing required authentication credential.")


async def test_expired_token_is_401_and_other_tokens_still_work(emu: Emu) -> None:
    emu.state.configure({"expired_tokens": [TOKEN]})
    resp = await emu.cloudcode("generateContent", envelope())
    assert resp.status == 401
    assert await resp.json() == {"error": ERROR_CASES[5][2]}
    other = await emu.cloudcode("generateContent", envelope(), headers={"Authorization": "Bearer ya29.other"})
    assert other.status == 200


async def test_missing_api_key_is_permission_denied(emu: Emu) -> None:
    resp = await emu.gemini("generateContent", gen_request(), headers={})
    assert resp.status == 403
    assert await resp.json() == {"error": {
        "code": 403, "status": "PERMISSION_DENIED",
        "message": "Method doesn't allow unregistered callers (callers without established identity). "
                   "Please use API Key or other form of API consumer identity to call this API."}}


async def test_unknown_api_key_is_rejected_when_keys_are_listed(emu: Emu) -> None:
    emu.state.configure({"valid_api_keys": ["AIza-good"]})
    resp = await emu.gemini("generateContent", gen_request())
    body = await resp.json()
    assert (resp.status, body["error"]["details"][0]["reason"]) == (400, "API_KEY_INVALID")


@pytest.mark.parametrize("missing", ["model", "request"])
async def test_envelope_without_model_or_request_is_invalid_argument(emu: Emu, missing: str) -> None:
    body = envelope()
    del body[missing]
    resp = await emu.cloudcode("streamGenerateContent", body, query="?alt=sse")
    assert resp.status == 400
    assert await resp.json() == {"error": {
        "code": 400, "message": "Request contains an invalid argument.", "status": "INVALID_ARGUMENT",
        "details": [{"@type": "type.googleapis.com/google.rpc.BadRequest",
                     "fieldViolations": [{"field": missing,
                                          "description": f"Required field {missing} is missing"}]}]}}


async def test_empty_contents_is_invalid_argument(emu: Emu) -> None:
    resp = await emu.gemini("generateContent", {"contents": []})
    assert resp.status == 400
    message = (await resp.json())["error"]["message"]
    assert message == "* GenerateContentRequest.contents: contents is not specified\n"


async def test_unknown_path_is_google_shaped_404_and_recorded(emu: Emu) -> None:
    resp = await emu.client.post("/v1/v1/chat/completions", json={})
    assert resp.status == 404
    assert await resp.json() == {"error": {
        "code": 404, "message": "The requested URL /v1/v1/chat/completions was not found on this server.",
        "status": "NOT_FOUND"}}
    recorded = [(r["endpoint"], r["path"]) for r in emu.state.requests]
    assert recorded == [("unknown", "/v1/v1/chat/completions")]


async def test_account_without_a_model_gets_404(emu: Emu) -> None:
    emu.state.configure({"models_by_credential": {TOKEN: ["gemini-2.5-pro"]}})
    missing = await emu.cloudcode("generateContent", envelope(model="gemini-2.5-flash"))
    assert missing.status == 404
    assert await missing.json() == {"error": ERROR_CASES[8][2]}
    assert (await emu.cloudcode("generateContent", envelope(model="gemini-2.5-pro"))).status == 200
    other = await emu.cloudcode("generateContent", envelope(), headers={"Authorization": "Bearer ya29.other"})
    assert other.status == 200


# ---------------------------------------------------------------------------------------------
# Rules and recording
# ---------------------------------------------------------------------------------------------


async def test_rule_times_then_default(emu: Emu) -> None:
    emu.state.add_rules([{"times": 2, "reply": {"error": {"kind": "internal"}}}])
    statuses = [(await emu.gemini("generateContent", gen_request())).status for _ in range(3)]
    assert statuses == [500, 500, 200]
    assert emu.state.rules[0]["times"] == 0


async def test_rules_match_by_credential_model_and_base(emu: Emu) -> None:
    emu.state.add_rules([
        {"match": {"credential": "ya29.a", "model": "gemini-2.5-pro"}, "reply": {"text": ["a-pro"]}},
        {"match": {"base": "/daily"}, "reply": {"text": ["daily"]}},
        {"match": {"endpoint": "gemini", "rpc": "generateContent"}, "reply": {"text": ["gemini"]}},
    ])

    async def answer(base: str, token: str, model: str) -> str:
        resp = await emu.cloudcode("generateContent", envelope(model=model), base=base,
                                   headers={"Authorization": f"Bearer {token}"})
        return "".join(texts([await resp.json()]))

    assert await answer("", "ya29.a", "gemini-2.5-pro") == "a-pro"
    assert await answer("", "ya29.b", "gemini-2.5-pro") == "echo: hi"
    assert await answer("/daily", "ya29.b", MODEL) == "daily"
    assert await answer("/sandbox", "ya29.a", MODEL) == "echo: hi"
    gemini = await emu.gemini("generateContent", gen_request())
    assert texts([await gemini.json()], unwrap=False) == ["gemini"]


async def test_requests_record_every_call_with_its_fields(emu: Emu) -> None:
    body = envelope(gen_request("rec"))
    await emu.cloudcode("streamGenerateContent", body, base="/sandbox", query="?alt=sse")
    await emu.gemini("generateContent", gen_request(), headers={**KEY, "X-Custom": "1"})
    await emu.token(grant_type="refresh_token", refresh_token="1//r", client_id="c", client_secret="s")
    resp = await emu.client.get("/_emulator/requests")
    records = await resp.json()
    assert [(r["seq"], r["endpoint"], r["rpc"], r["base"], r["model"], r["credential"]) for r in records] == [
        (1, "cloudcode", "streamGenerateContent", "/sandbox", MODEL, TOKEN),
        (2, "gemini", "generateContent", "/v1beta", MODEL, API_KEY),
        (3, "oauth", "token", "", None, "1//r"),
    ]
    assert records[0]["body"] == body
    assert records[0]["query"] == {"alt": "sse"}
    assert records[0]["path"] == "/sandbox/v1internal:streamGenerateContent"
    assert records[1]["headers"]["x-custom"] == "1"
    assert records[2]["body"] == {"grant_type": "refresh_token", "refresh_token": "1//r", "client_id": "c",
                                  "client_secret": "s"}
    token_calls = await (await emu.client.get("/_emulator/requests?kind=token")).json()
    assert [r["seq"] for r in token_calls] == [3]
    api_calls = await (await emu.client.get("/_emulator/requests?kind=api&base=/sandbox")).json()
    assert [r["seq"] for r in api_calls] == [1]


async def test_errors_are_recorded_too(emu: Emu) -> None:
    await emu.cloudcode("generateContent", envelope(), headers={})
    assert [(r["rpc"], r["credential"]) for r in emu.state.requests] == [("generateContent", None)]


async def test_control_api_rules_config_and_reset(emu: Emu) -> None:
    bad = await emu.client.post("/_emulator/rules", json={"rules": [{"reply": {"txet": "typo"}}]})
    assert bad.status == 400
    bad_kind = await emu.client.post("/_emulator/rules",
                                     json={"rules": [{"reply": {"error": {"kind": "nope"}}}]})
    assert bad_kind.status == 400
    added = await emu.client.post("/_emulator/rules",
                                  json={"rules": [{"times": 1, "reply": {"text": ["x"]}}]})
    assert (await added.json())["rules"] == [{"match": {}, "times": 1, "reply": {"text": ["x"]}}]
    replaced = await emu.client.put("/_emulator/rules", json={"rules": []})
    assert (await replaced.json())["rules"] == []
    config = await (await emu.client.post("/_emulator/config", json={"oauth": {"rotate": True}})).json()
    assert config["oauth"]["rotate"] is True and config["oauth"]["expires_in"] == 3599
    assert (await emu.client.post("/_emulator/config", json={"oath": {}})).status == 400
    await emu.gemini("generateContent", gen_request())
    assert (await emu.client.post("/_emulator/reset")).status == 200
    assert (emu.state.requests, emu.state.rules, emu.state.config["oauth"]["rotate"]) == ([], [], False)
    assert await (await emu.client.get("/_emulator/health")).json() == {"status": "ok"}


# ---------------------------------------------------------------------------------------------
# OAuth token endpoint
# ---------------------------------------------------------------------------------------------

SCOPE = ("https://www.googleapis.com/auth/cloud-platform https://www.googleapis.com/auth/userinfo.email "
         "https://www.googleapis.com/auth/userinfo.profile openid https://www.googleapis.com/auth/cclog "
         "https://www.googleapis.com/auth/experimentsandconfigs")


def refresh_form(refresh_token: str = "1//refresh-a") -> dict[str, str]:
    return {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": "cid",
            "client_secret": "secret"}


async def test_refresh_issues_a_token_the_api_accepts(emu: Emu) -> None:
    emu.state.configure({"valid_access_tokens": []})  # only issued tokens are accepted
    resp = await emu.token(**refresh_form())
    body = await resp.json()
    assert resp.status == 200
    assert body == {"access_token": body["access_token"], "expires_in": 3599, "scope": SCOPE,
                    "token_type": "Bearer"}
    assert body["access_token"].startswith("ya29.emu-") and body["access_token"].endswith("-1")
    issued = {"Authorization": f"Bearer {body['access_token']}"}
    ok = await emu.cloudcode("generateContent", envelope(), headers=issued)
    assert ok.status == 200
    assert (await emu.cloudcode("generateContent", envelope())).status == 401


async def test_issued_token_expires_after_expires_in(emu: Emu) -> None:
    emu.state.configure({"oauth": {"expires_in": 0}})
    token = (await (await emu.token(**refresh_form())).json())["access_token"]
    await asyncio.sleep(0.01)
    resp = await emu.cloudcode("generateContent", envelope(), headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 401


async def test_rotation_invalidates_the_old_refresh_token(emu: Emu) -> None:
    emu.state.configure({"oauth": {"rotate": True}, "valid_refresh_tokens": ["1//refresh-a"]})
    first = await (await emu.token(**refresh_form())).json()
    rotated = first["refresh_token"]
    assert rotated != "1//refresh-a"
    old = await emu.token(**refresh_form())
    invalid_grant = {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
    assert (old.status, await old.json()) == (400, invalid_grant)
    again = await emu.token(**refresh_form(rotated))
    assert again.status == 200
    assert (await again.json())["access_token"].endswith("-2")


async def test_invalid_grant_listed_and_unknown_refresh_tokens(emu: Emu) -> None:
    emu.state.configure({"oauth": {"invalid_grant": ["1//dead"]}})
    dead = await emu.token(**refresh_form("1//dead"))
    assert (dead.status, (await dead.json())["error"]) == (400, "invalid_grant")
    emu.state.configure({"valid_refresh_tokens": ["1//known"]})
    assert (await emu.token(**refresh_form("1//unknown"))).status == 400
    assert (await emu.token(**refresh_form("1//known"))).status == 200


async def test_wrong_client_is_invalid_client() -> None:
    app = make_app(EmulatorState({"oauth": {"client_id": "cid", "client_secret": "right"}}))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        wrong_secret = await client.post("/token", data=refresh_form())
        assert (wrong_secret.status, await wrong_secret.json()) == (
            401, {"error": "invalid_client", "error_description": "Unauthorized"})
        wrong_id = await client.post("/token", data={**refresh_form(), "client_id": "x"})
        assert (await wrong_id.json())["error_description"] == "The OAuth client was not found."
        ok = await client.post("/token", data={**refresh_form(), "client_secret": "right"})
        assert ok.status == 200
        await client.post("/_emulator/reset")
        assert app[STATE].config["oauth"]["client_secret"] == "right"  # reset keeps the startup client


async def test_token_delay_fail_status_and_grant_type(emu: Emu) -> None:
    emu.state.configure({"oauth": {"delay_ms": 150}})
    started = time.monotonic()
    results = await asyncio.gather(*(emu.token(**refresh_form()) for _ in range(2)))
    assert [r.status for r in results] == [200, 200]
    # both were held (no upper bound: on this shared machine a wall-clock ceiling only measures the load)
    assert time.monotonic() - started >= 0.15
    emu.state.configure({"oauth": {"delay_ms": 0, "fail_status": 503}})
    failed = await emu.token(**refresh_form())
    assert (failed.status, await failed.json()) == (503, {"error": "internal_failure",
                                                          "error_description": "Backend Error"})
    emu.state.configure({"oauth": {"fail_status": None}})
    wrong_grant = await emu.token(**{**refresh_form(), "grant_type": "password"})
    assert (wrong_grant.status, (await wrong_grant.json())["error"]) == (400, "unsupported_grant_type")
    assert len(emu.state.find_requests({"kind": "token"})) == 4


async def test_token_rule_and_id_token(emu: Emu) -> None:
    emu.state.configure({"oauth": {"id_token": True}})
    emu.state.add_rules([{"match": {"rpc": "token"}, "times": 1,
                          "reply": {"status": 500, "body": {"error": "backend"}}}])
    assert (await emu.token(**refresh_form())).status == 500
    body = await (await emu.token(**refresh_form())).json()
    assert body["id_token"].count(".") == 2


# ---------------------------------------------------------------------------------------------
# loadCodeAssist, fetchAvailableModels, models list
# ---------------------------------------------------------------------------------------------


async def test_load_code_assist_shape_and_projects(emu: Emu) -> None:
    body = await (await emu.cloudcode("loadCodeAssist", {"metadata": {"ideType": "ANTIGRAVITY"}})).json()
    tier = {"id": "standard-tier", "name": "Gemini Code Assist",
            "description": "Unlimited coding assistant with the most powerful Gemini models",
            "userDefinedCloudaicompanionProject": True}
    assert body == {"currentTier": tier, "allowedTiers": [{**tier, "isDefault": True}],
                    "cloudaicompanionProject": body["cloudaicompanionProject"], "gcpManaged": False}
    assert body["cloudaicompanionProject"].startswith("emu-project-")
    emu.state.configure({"projects": {TOKEN: "swift-core-abc12", "ya29.none": None},
                         "paid_tier": {"id": "g1-pro-tier", "name": "Pro"}})
    configured = await (await emu.cloudcode("loadCodeAssist", {})).json()
    assert configured["cloudaicompanionProject"] == "swift-core-abc12"
    assert configured["paidTier"] == {"id": "g1-pro-tier", "name": "Pro"}
    none = await emu.cloudcode("loadCodeAssist", {}, headers={"Authorization": "Bearer ya29.none"})
    assert "cloudaicompanionProject" not in await none.json()


async def test_fetch_available_models_shape_and_per_credential_lists(emu: Emu) -> None:
    body = await (await emu.cloudcode("fetchAvailableModels", {"project": "p"})).json()
    assert list(body["models"]) == ["gemini-2.5-flash", "gemini-2.5-pro", "gemini-3-flash",
                                    "gemini-3-pro-preview"]
    flash = body["models"]["gemini-2.5-flash"]
    reset = flash["quotaInfo"].pop("resetTime")
    assert flash == {"displayName": "Gemini 2.5 Flash", "maxTokens": 1048576, "maxOutputTokens": 65536,
                     "supportsThinking": True, "quotaInfo": {"remainingFraction": 0.8}}
    assert datetime.fromisoformat(reset) > datetime.now(UTC)
    emu.state.configure({"models_by_credential": {TOKEN: [{"name": "gemini-3-flash", "remainingFraction": 0.1,
                                                           "resetTime": "2030-01-01T00:00:00Z"}]}})
    own = await (await emu.cloudcode("fetchAvailableModels", {})).json()
    assert own == {"models": {"gemini-3-flash": {
        "displayName": "Gemini 3 Flash", "maxTokens": 1048576, "maxOutputTokens": 65536,
        "supportsThinking": True,
        "quotaInfo": {"remainingFraction": 0.1, "resetTime": "2030-01-01T00:00:00Z"}}}}


async def test_gemini_list_models(emu: Emu) -> None:
    emu.state.configure({"models": ["gemini-2.5-flash"]})
    body = await (await emu.client.get("/v1beta/models", headers=KEY)).json()
    assert body == {"models": [{"name": "models/gemini-2.5-flash", "displayName": "Gemini 2.5 Flash",
                                "inputTokenLimit": 1048576, "outputTokenLimit": 65536,
                                "supportedGenerationMethods": ["generateContent", "countTokens",
                                                               "streamGenerateContent"]}]}


# ---------------------------------------------------------------------------------------------
# Pure helpers
# ---------------------------------------------------------------------------------------------


def test_split_text_is_nearly_equal_and_lossless() -> None:
    assert split_text("echo: hi") == ["ec", "ho:", " hi"]
    assert split_text("ab") == ["a", "b"]
    assert split_text("") == []


def test_parse_duration_forms() -> None:
    assert [parse_duration(t) for t in ("45.5s", "539ms", "1h2m3s", "2m")] == [45.5, 0.539, 3723.0, 120.0]
    with pytest.raises(ValueError):
        parse_duration("soon")


def test_merge_events_keeps_last_metadata() -> None:
    events = [{"candidates": [{"content": {"parts": [{"text": "a"}]}, "index": 0}]},
              {"candidates": [{"content": {"parts": [{"text": "b"}]}, "finishReason": "STOP", "index": 0}],
               "usageMetadata": {"totalTokenCount": 2}}]
    assert merge_events(events) == {
        "candidates": [{"content": {"role": "model", "parts": [{"text": "ab"}]}, "finishReason": "STOP",
                        "index": 0}],
        "usageMetadata": {"totalTokenCount": 2}}


# ---------------------------------------------------------------------------------------------
# The script and the subprocess helper
# ---------------------------------------------------------------------------------------------


def test_help_documents_running_and_the_control_api() -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stderr
    for needle in ("/_emulator/", "curl", "--ready-file", "--port", "reset", "rules", "requests", "config",
                   "quota_exhausted", "expired_tokens"):
        assert needle in done.stdout, needle


def post_json(url: str, body: Any, headers: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=orjson.dumps(body), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_subprocess_helper_scripts_base_fallback_and_stops_cleanly() -> None:
    with Emulator("--client-id", "cid", "--client-secret", "secret") as emu:
        assert emu.health() == {"status": "ok"}
        assert emu.cloudcode_bases == [f"{emu.url}/sandbox/v1internal", f"{emu.url}/daily/v1internal",
                                       f"{emu.url}/v1internal"]
        assert (emu.gemini_url, emu.oauth_token_url) == (emu.url, f"{emu.url}/token")
        emu.add_rule(match={"base": "/sandbox"}, times=1, reply={"error": {"kind": "capacity"}})
        bases = emu.cloudcode_bases[:2]
        statuses = [post_json(f"{base}:generateContent", envelope(), BEARER)[0] for base in bases]
        assert statuses == [503, 200]
        recorded = [(r["base"], r["credential"]) for r in emu.requests(kind="api")]
        assert recorded == [("/sandbox", TOKEN), ("/daily", TOKEN)]
        assert emu.requests(rpc="generateContent", base="/daily")[0]["seq"] == 2
        config = emu.configure(oauth={"rotate": True})
        assert (config["oauth"]["rotate"], config["oauth"]["client_id"]) == (True, "cid")
        emu.set_rules([])
        assert emu.rules() == []
        emu.reset()
        assert emu.requests() == []
        with pytest.raises(EmulatorError):
            emu.add_rule(reply={"nonsense": 1})
    assert emu.returncode == 0  # SIGTERM is a clean shutdown, not a kill
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{emu.url}/_emulator/health", timeout=2)


def test_subprocess_helper_reports_a_crash_with_stderr() -> None:
    with pytest.raises(EmulatorError, match="unrecognized arguments"):
        Emulator("--no-such-flag").start()


# ---- faulty 200s (scripted with reply.fault) ---------------------------------------------------
STREAM_QUERY = "?alt=sse"


def generate_body(endpoint: str) -> dict[str, Any]:
    request = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    return {"model": MODEL, "project": "p", "request": request} if endpoint == "cloudcode" else request


async def call(emu: Emu, endpoint: str, stream: bool) -> aiohttp.ClientResponse:
    rpc = "streamGenerateContent" if stream else "generateContent"
    query = STREAM_QUERY if stream else ""
    if endpoint == "cloudcode":
        return await emu.cloudcode(rpc, generate_body(endpoint), query=query)
    return await emu.gemini(rpc, generate_body(endpoint), query=query)


BOTH = pytest.mark.parametrize("endpoint", ["cloudcode", "gemini"])
STREAMS = pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])


@BOTH
@STREAMS
async def test_fault_html_is_a_200_html_page(emu: Emu, endpoint: str, stream: bool) -> None:
    emu.state.add_rules([{"match": {"endpoint": endpoint}, "times": 1, "reply": {"fault": "html"}}])
    resp = await call(emu, endpoint, stream)
    assert resp.status == 200 and resp.content_type == "text/html"
    assert (await resp.read()).startswith(b"<!DOCTYPE html>")
    assert (await call(emu, endpoint, stream)).status == 200  # times=1: the next one is healthy


@BOTH
@STREAMS
@pytest.mark.parametrize("fault", ["invalid_json", "invalid_event"])
async def test_fault_invalid_json_and_event_are_not_json(emu: Emu, endpoint: str, stream: bool,
                                                         fault: str) -> None:
    emu.state.add_rules([{"match": {}, "times": 1, "reply": {"fault": fault}}])
    resp = await call(emu, endpoint, stream)
    body = await resp.read()
    assert resp.status == 200
    payload = body.removeprefix(b"data: ") if stream and fault == "invalid_event" else body
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(payload)


@BOTH
@STREAMS
async def test_fault_error_in_200_is_a_status_object(emu: Emu, endpoint: str, stream: bool) -> None:
    emu.state.add_rules([{"match": {}, "times": 1, "reply": {"fault": "error_in_200"}}])
    resp = await call(emu, endpoint, stream)
    body = await resp.read()
    assert resp.status == 200
    error = orjson.loads(body.removeprefix(b"data: ") if stream else body)["error"]
    assert error["status"] == "INTERNAL"


@BOTH
@STREAMS
async def test_fault_empty_is_a_clean_200_without_a_body(emu: Emu, endpoint: str, stream: bool) -> None:
    emu.state.add_rules([{"match": {}, "times": 1, "reply": {"fault": "empty"}}])
    resp = await call(emu, endpoint, stream)
    assert resp.status == 200 and await resp.read() == b""


@BOTH
@STREAMS
async def test_fault_cut_drops_the_connection_mid_body(emu: Emu, endpoint: str, stream: bool) -> None:
    emu.state.add_rules([{"match": {}, "times": 1, "reply": {"fault": "cut"}}])
    resp = await call(emu, endpoint, stream)
    assert resp.status == 200
    with pytest.raises(aiohttp.ClientPayloadError):
        await resp.read()


async def test_fault_after_sends_normal_frames_first(emu: Emu) -> None:
    emu.state.add_rules([{"match": {}, "times": 1, "reply": {"fault": "invalid_event", "fault_after": 1}}])
    body = await (await call(emu, "gemini", True)).read()
    first, second = [f for f in body.split(b"\r\n\r\n") if f]
    assert "candidates" in orjson.loads(first.removeprefix(b"data: "))
    assert second == b"data: {not json at all"


@STREAMS
def test_fault_stall_sends_headers_then_nothing_and_notes_the_client_leaving(emulator: Emulator,
                                                                              stream: bool) -> None:
    import socket

    emulator.add_rule(match={}, times=1, reply={"fault": "stall", "stall_ms": 5000})
    rpc = "streamGenerateContent?alt=sse" if stream else "generateContent"
    body = orjson.dumps(generate_body("cloudcode"))
    with socket.create_connection(("127.0.0.1", emulator.port), timeout=2) as sock:
        sock.sendall(f"POST /v1internal:{rpc} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        head = sock.recv(4096)
        assert head.startswith(b"HTTP/1.1 200")
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(4096)  # headers, then silence
    deadline = time.monotonic() + 2  # the client hung up during the stall
    while time.monotonic() < deadline and not emulator.requests(kind="api")[-1].get("client_closed"):
        time.sleep(0.02)
    assert emulator.requests(kind="api")[-1]["client_closed"] is True


async def test_fault_stall_ends_cleanly_after_stall_ms(emu: Emu) -> None:
    emu.state.add_rules([{"match": {}, "times": 1, "reply": {"fault": "stall", "stall_ms": 50}}])
    resp = await call(emu, "gemini", True)
    assert await resp.read() == b"" and "client_closed" not in emu.state.requests[-1]


@BOTH
async def test_fault_trickle_sends_the_normal_answer_byte_by_byte(emu: Emu, endpoint: str) -> None:
    emu.state.add_rules([{"match": {}, "times": 1, "reply": {"fault": "trickle", "trickle_ms": 1,
                                                              "text": "ok"}}])
    resp = await call(emu, endpoint, True)
    reads = []
    while chunk := await resp.content.readany():
        reads.append(chunk)
    body = b"".join(reads)
    assert len(reads) > 20 and body.count(b"data: ") == 2  # "ok" is two one-letter frames
    assert orjson.loads(body.split(b"\r\n\r\n")[0].removeprefix(b"data: "))


async def test_fault_matches_per_credential(emu: Emu) -> None:
    emu.state.add_rules([{"match": {"credential": API_KEY}, "times": None, "reply": {"fault": "html"}}])
    assert (await call(emu, "gemini", False)).content_type == "text/html"
    assert (await call(emu, "cloudcode", False)).content_type == "application/json"


async def test_an_unknown_fault_is_refused(emu: Emu) -> None:
    with pytest.raises(ValueError, match="fault must be one of"):
        emu.state.add_rules([{"match": {}, "reply": {"fault": "gremlins"}}])


# ---- quota, onboarding, the version gate, the sign-in (issue 14) ------------------------------------
async def test_fetch_available_models_carries_scriptable_quota_info(emu):
    emu.state.configure({"models": [{"name": MODEL, "remainingFraction": 0.0,
                                     "resetTime": "2030-01-01T00:00:00Z"},
                                    {"name": "claude-sonnet-4-6", "remainingFraction": None},
                                    "gemini-2.5-pro"]})
    models = (await (await emu.cloudcode("fetchAvailableModels", {"project": "p"})).json())["models"]
    assert models[MODEL]["quotaInfo"] == {"remainingFraction": 0.0, "resetTime": "2030-01-01T00:00:00Z"}
    assert "remainingFraction" not in models["claude-sonnet-4-6"]["quotaInfo"]  # Google leaves it out
    assert models["gemini-2.5-pro"]["quotaInfo"]["remainingFraction"] == 0.8


async def test_retrieve_user_quota_summary_has_default_and_scripted_buckets(emu):
    groups = (await (await emu.cloudcode("retrieveUserQuotaSummary", {"project": "p"})).json())["groups"]
    assert [g["displayName"] for g in groups] == ["Gemini Models", "Claude and GPT models"]
    assert [b["bucketId"] for b in groups[0]["buckets"]] == ["gemini-5h", "gemini-weekly"]
    mine = [{"displayName": "Gemini Models", "buckets": [{"bucketId": "gemini-5h", "remainingFraction": 0}]}]
    emu.state.configure({"quota_groups": {TOKEN: mine}})
    assert (await (await emu.cloudcode("retrieveUserQuotaSummary", {})).json())["groups"] == mine


async def test_onboarding_gives_a_project_that_load_code_assist_then_names(emu):
    emu.state.configure({"onboarding": True})
    before = await (await emu.cloudcode("loadCodeAssist", {"metadata": {}})).json()
    assert "cloudaicompanionProject" not in before and before["allowedTiers"][0]["isDefault"]
    op = await (await emu.cloudcode("onboardUser", {"tierId": "standard-tier"})).json()
    project = op["response"]["cloudaicompanionProject"]["id"]
    assert op["done"] is True and project.startswith("emu-onboarded-")
    after = await (await emu.cloudcode("loadCodeAssist", {"metadata": {}})).json()
    assert after["cloudaicompanionProject"] == project


@pytest.mark.parametrize(("agent", "gated"), [
    ("Antigravity/4.3.0 (X11; Linux x86_64) Chrome/1 Electron/1", True),
    ("Antigravity/4.10.0 (X11)", False), ("curl/8", True)])
async def test_min_client_version_answers_googles_version_gate(emu, agent, gated):
    emu.state.configure({"min_client_version": "4.5.0"})
    resp = await emu.cloudcode("generateContent", {"model": MODEL, "project": "p", "request": {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}]}}, headers={**BEARER, "User-Agent": agent})
    assert (resp.status == 400) == gated
    if gated:
        message = (await resp.json())["error"]["message"]
        assert message.startswith("This version of Antigravity is no longer supported")


def pkce_pair() -> tuple[str, str]:
    import base64
    import hashlib

    verifier = "v" * 50
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


async def authorize(emu, challenge: str, **over: str) -> aiohttp.ClientResponse:
    query = {"client_id": "cid", "redirect_uri": "http://127.0.0.1:5555/cb", "response_type": "code",
             "scope": "openid https://www.googleapis.com/auth/cloud-platform", "state": "st-1",
             "code_challenge": challenge, "code_challenge_method": "S256", **over}
    return await emu.client.get("/o/oauth2/v2/auth", params=query, allow_redirects=False)


async def test_authorize_redirects_with_code_and_state_and_the_code_needs_the_verifier(emu):
    from urllib.parse import parse_qs, urlsplit

    verifier, challenge = pkce_pair()
    resp = await authorize(emu, challenge)
    assert resp.status == 302
    target = urlsplit(resp.headers["Location"])
    params = {k: v[0] for k, v in parse_qs(target.query).items()}
    assert target.netloc == "127.0.0.1:5555" and params["state"] == "st-1"
    form = {"grant_type": "authorization_code", "code": params["code"], "client_id": "cid",
            "redirect_uri": "http://127.0.0.1:5555/cb"}
    wrong = await emu.token(**form, code_verifier="w" * 50)
    assert wrong.status == 400 and (await wrong.json())["error"] == "invalid_grant"
    # a failed verifier burns the code, as Google does: sign in again
    resp = await authorize(emu, challenge)
    code = parse_qs(urlsplit(resp.headers["Location"]).query)["code"][0]
    ok = await emu.token(**{**form, "code": code}, code_verifier=verifier)
    tokens = await ok.json()
    assert ok.status == 200 and tokens["refresh_token"].startswith("1//emu-login-")
    again = await emu.token(**{**form, "code": code}, code_verifier=verifier)
    assert again.status == 400  # a code works once
    info = await emu.client.get("/oauth2/v2/userinfo",
                                headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert (await info.json())["email"] == "emu-user@example.com"
    refreshed = await (await emu.token(grant_type="refresh_token",
                                       refresh_token=tokens["refresh_token"])).json()
    info = await emu.client.get("/oauth2/v2/userinfo",
                                headers={"Authorization": f"Bearer {refreshed['access_token']}"})
    assert (await info.json())["email"] == "emu-user@example.com"
    assert (await emu.client.get("/oauth2/v2/userinfo", headers=BEARER)).status == 401


@pytest.mark.parametrize("bad", [{"code_challenge_method": "plain"}, {"redirect_uri": "https://evil.example/cb"},
                                 {"response_type": "token"}, {"scope": "openid"},
                                 {"code_challenge": "short"}])
async def test_authorize_refuses_what_google_refuses(emu, bad):
    _, challenge = pkce_pair()
    resp = await authorize(emu, challenge, **bad)
    assert resp.status == 400 and (await resp.json())["error"] == "invalid_request"


# --- model rules: Claude and Gemini 3 behind Cloud Code (MODEL_RULES_DOC) ---------------------------

from gemini_emulator import claude_signature, gemini3_signature  # noqa: E402

CLAUDE = "claude-opus-4-6-thinking"
GEMINI3 = "gemini-3.1-pro-high"
TOOL = {"functionDeclarations": [{"name": "get_weather", "parameters": {
    "type": "OBJECT", "properties": {"city": {"type": "STRING"}}, "required": ["city"]}}]}


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "parts": [{"text": text}]}


def call_turn(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"role": "model", "parts": list(parts)}


def fc(name: str = "get_weather", signature: str | None = None) -> dict[str, Any]:
    part: dict[str, Any] = {"functionCall": {"name": name, "args": {"city": "Paris"}}}
    if signature:
        part["thoughtSignature"] = signature
    return part


RESULT = {"role": "user",
          "parts": [{"functionResponse": {"name": "get_weather", "response": {"output": "9C"}}}]}
THINK_ON = {"thinkingConfig": {"includeThoughts": True, "thinkingBudget": 4096}, "maxOutputTokens": 8192}


async def rejected(emu: Emu, model: str, request: dict[str, Any]) -> str:
    resp = await emu.cloudcode("generateContent", envelope(request, model=model))
    assert resp.status == 400, await resp.text()
    error = (await resp.json())["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    return error["message"]


async def anthropic_message(emu: Emu, request: dict[str, Any]) -> str:
    inner = orjson.loads(await rejected(emu, CLAUDE, request))  # Claude's JSON inside Google's message
    assert inner["type"] == "error" and inner["request_id"].startswith("req_vrtx_")
    return inner["error"]["message"]


def thought(text: str, signature: str | None) -> dict[str, Any]:
    part: dict[str, Any] = {"text": text, "thought": True}
    if signature:
        part["thoughtSignature"] = signature
    return part


async def test_claude_accepts_its_own_signed_thinking_leading_the_tool_turn(emu: Emu) -> None:
    signed = thought("I should look it up.", claude_signature("I should look it up."))
    request = {"tools": [TOOL], "generationConfig": THINK_ON,
               "contents": [user("weather?"), call_turn(signed, fc()), RESULT]}
    resp = await emu.cloudcode("generateContent", envelope(request, model=CLAUDE))
    assert resp.status == 200, await resp.text()


@pytest.mark.parametrize(("turn", "expected"), [
    (call_turn(thought("I should look it up.", None), fc()),
     "messages.1.content.0.thinking.signature: Field required"),
    (call_turn(thought("I should look it up.", claude_signature("something else")), fc()),
     "messages.1.content.0: Invalid `signature` in `thinking` block"),
    (call_turn(thought("x", "skip_thought_signature_validator"), fc()),
     "Invalid `signature` in `thinking` block"),
    (call_turn(fc(signature=gemini3_signature())), "messages.1.content.0: Invalid `signature`"),
    (call_turn(fc()), "a final `assistant` message must start with a thinking block"),
])
async def test_claude_rejects_fabricated_missing_or_misplaced_thinking(emu: Emu, turn: dict[str, Any],
                                                                       expected: str) -> None:
    request = {"tools": [TOOL], "generationConfig": THINK_ON, "contents": [user("weather?"), turn, RESULT]}
    assert expected in await anthropic_message(emu, request)


async def test_claude_tool_turn_without_thinking_is_fine_when_thinking_is_off(emu: Emu) -> None:
    request = {"tools": [TOOL], "contents": [user("weather?"), call_turn(fc()), RESULT]}
    assert (await emu.cloudcode("generateContent", envelope(request, model=CLAUDE))).status == 200


@pytest.mark.parametrize(("request_patch", "expected"), [
    ({"contents": [user("hi"), call_turn({"text": "Sure,"})]}, "does not support assistant message prefill"),
    ({"tools": [{"functionDeclarations": [{"name": "ns.tool", "parameters": TOOL["functionDeclarations"][0][
        "parameters"]}]}]}, "tools.0.custom.name: String should match pattern"),
    ({"tools": [{"functionDeclarations": [{"name": "now"}]}]}, "tools.0.custom.input_schema: Field required"),
    ({"tools": [{"functionDeclarations": [{"name": "now", "parameters": {"type": "OBJECT"}}]}],
      "toolConfig": {"functionCallingConfig": {"mode": "VALIDATED"}}}, "at least one property"),
    ({"generationConfig": {"thinkingConfig": {"thinkingBudget": 8192}, "maxOutputTokens": 8192}},
     "`max_tokens` must be greater than `thinking.budget_tokens`"),
    ({"generationConfig": {"thinkingConfig": {"thinkingBudget": 512}}}, "greater than or equal to 1024"),
    ({"generationConfig": {"maxOutputTokens": 65536}}, "maximum allowed number of output tokens"),
])
async def test_claude_rejects_prefill_bad_tools_and_token_limits(emu: Emu, request_patch: dict[str, Any],
                                                                 expected: str) -> None:
    request = {"contents": [user("hi")], **request_patch}
    assert expected in await anthropic_message(emu, request)


async def test_claude_signs_its_thoughts_over_their_whole_text(emu: Emu) -> None:
    emu.state.add_rules([{"match": {"model": CLAUDE},
                          "reply": {"thoughts": ["Let me ", "think."], "text": "ok"}}])
    resp = await emu.cloudcode("generateContent", envelope(gen_request(), model=CLAUDE))
    parts = (await resp.json())["response"]["candidates"][0]["content"]["parts"]
    assert parts[0] == {"text": "Let me think.", "thought": True,
                        "thoughtSignature": claude_signature("Let me think.")}


async def test_gemini3_signs_the_first_call_and_accepts_it_back(emu: Emu) -> None:
    emu.state.add_rules([{"match": {"model": GEMINI3}, "reply": {"function_calls": [
        {"name": "get_weather", "args": {"city": "Paris"}},
        {"name": "get_weather", "args": {"city": "Rome"}}]}}])
    resp = await emu.cloudcode("generateContent", envelope(gen_request(), model=GEMINI3))
    parts = (await resp.json())["response"]["candidates"][0]["content"]["parts"]
    assert "thoughtSignature" in parts[0] and "thoughtSignature" not in parts[1]
    request = {"tools": [TOOL], "contents": [user("weather?"), call_turn(*parts), RESULT]}
    assert (await emu.cloudcode("generateContent", envelope(request, model=GEMINI3))).status == 200


@pytest.mark.parametrize(("turn", "expected"), [
    (call_turn(fc()), "Function call is missing a thought_signature"),
    (call_turn(fc(signature="c2lnLWZyb20tMi41")), "Invalid thought signature."),
    (call_turn(fc(signature=claude_signature("x"))), "Invalid thought signature."),
    (call_turn(fc(signature="skip_thought_signature_validator"),
               fc(signature="skip_thought_signature_validator")),
     "Request contains an invalid argument."),
])
async def test_gemini3_rejects_missing_foreign_and_escape_on_every_call(emu: Emu, turn: dict[str, Any],
                                                                       expected: str) -> None:
    request = {"tools": [TOOL], "contents": [user("weather?"), turn, RESULT]}
    assert expected in await rejected(emu, GEMINI3, request)


async def test_gemini3_takes_the_escape_value_on_the_first_call_only(emu: Emu) -> None:
    turn = call_turn(fc(signature="skip_thought_signature_validator"), fc())
    request = {"tools": [TOOL], "contents": [user("weather?"), turn, RESULT]}
    assert (await emu.cloudcode("generateContent", envelope(request, model=GEMINI3))).status == 200


async def test_gemini3_rejects_level_and_budget_together_and_older_turns_need_nothing(emu: Emu) -> None:
    both = {"thinkingConfig": {"thinkingLevel": "high", "thinkingBudget": 1024}}
    assert "both set" in await rejected(emu, GEMINI3, gen_request(**both))
    old = {"contents": [user("weather?"), call_turn(fc()), RESULT, call_turn({"text": "9C"}), user("thanks")]}
    assert (await emu.cloudcode("generateContent", envelope(old, model=GEMINI3))).status == 200


async def test_model_rules_only_behind_their_names(emu: Emu) -> None:
    request = {"tools": [TOOL],
               "contents": [user("weather?"), call_turn(fc()), RESULT, call_turn({"text": "a"})]}
    assert (await emu.cloudcode("generateContent", envelope(request, model="gemini-3-flash"))).status == 200
    emu.state.configure({"strict_models": ["gemini-3-flash"]})
    request["contents"] = request["contents"][:3]
    assert "missing a thought_signature" in await rejected(emu, "gemini-3-flash", request)


IMAGE = "gemini-3.1-flash-image"


def image_envelope(request: dict[str, Any]) -> dict[str, Any]:
    return {**envelope(request, model=IMAGE), "requestType": "image_gen"}


async def test_image_model_answers_a_signed_png(emu: Emu) -> None:
    request = gen_request("a cat", imageConfig={"aspectRatio": "16:9", "imageSize": "2K"})
    resp = await emu.cloudcode("generateContent", image_envelope(request))
    parts = (await resp.json())["response"]["candidates"][0]["content"]["parts"]
    assert parts[0] == {"text": "echo: a cat"}
    assert parts[1]["inlineData"]["mimeType"] == "image/png" and parts[1]["thoughtSignature"]


@pytest.mark.parametrize(("body", "status", "expected"), [
    (envelope(gen_request("a cat"), model=IMAGE), 400, "invalid argument"),  # requestType agent
    (image_envelope(gen_request("a cat", imageConfig={"aspectRatio": "7:3"})), 400, "aspect_ratio"),
    (image_envelope(gen_request("a cat", imageConfig={"imageSize": "8K"})), 400, "image_size"),
    (image_envelope(gen_request("a cat", imageConfig={"imageSize": "1K"}, responseModalities=["IMAGE"])),
     500, "Internal error"),
])
async def test_image_model_rejects_what_cloud_code_rejects(emu: Emu, body: dict[str, Any], status: int,
                                                           expected: str) -> None:
    resp = await emu.cloudcode("generateContent", body)
    assert resp.status == status
    assert expected in (await resp.json())["error"]["message"]


async def test_image_model_takes_back_its_signed_image_and_rejects_it_unsigned_or_escaped(emu: Emu) -> None:
    first = await emu.cloudcode("generateContent", image_envelope(gen_request("a cat")))
    model_turn = (await first.json())["response"]["candidates"][0]["content"]
    request = {"contents": [user("a cat"), model_turn, user("make it blue")]}
    assert (await emu.cloudcode("generateContent", image_envelope(request))).status == 200
    image = model_turn["parts"][1]
    for signature, expected in [(None, "Image part is missing a thought_signature in content position 2, "
                                       "part position 2"),
                                ("skip_thought_signature_validator", "invalid argument"),
                                ("forged", "Invalid thought signature.")]:
        part = {"inlineData": image["inlineData"], **({"thoughtSignature": signature} if signature else {})}
        request["contents"][1] = {"role": "model", "parts": [model_turn["parts"][0], part]}
        resp = await emu.cloudcode("generateContent", image_envelope(request))
        assert resp.status == 400
        assert expected in (await resp.json())["error"]["message"]
