"""The two dialects build the real call for an account from one canonical request; one builder makes every
Cloud Code call's headers."""

from __future__ import annotations

import orjson
import pytest

from antigravity_gw.upstream.accounts import Account
from antigravity_gw.upstream.dialects import (
    CallContext,
    CloudCode,
    PublicGemini,
    canonical_path,
    cloudcode_headers,
    parse_canonical_path,
    session_id_for,
    unwrap_any,
)

REQUEST = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}


@pytest.mark.parametrize("stream", [True, False])
def test_canonical_paths_round_trip(stream):
    path = canonical_path("gemini-2.5-flash", stream)
    assert parse_canonical_path(path) == ("gemini-2.5-flash", stream)


@pytest.mark.parametrize("path", ["/v1beta/models/m:countTokens", "/v1/chat/completions",
                                  "/v1beta/models/a/b:x"])
def test_other_paths_are_not_canonical(path):
    with pytest.raises(ValueError, match="not a generateContent path"):
        parse_canonical_path(path)


def test_cloud_code_wraps_the_request_in_its_envelope_for_the_account():
    account = Account("acc-1", "a@example.com", "oauth", None, project_id="proj-1")
    call = CloudCode(("https://cc.example/v1internal",), "antigravity/1.0").build(
        "https://cc.example/v1internal", "gemini-2.5-pro", True, REQUEST, account, "ya29.token",
        CallContext("req-7"))
    assert call.url == "https://cc.example/v1internal:streamGenerateContent?alt=sse"
    assert call.headers["authorization"] == "Bearer ya29.token"
    assert call.headers["x-goog-user-project"] == "proj-1"
    assert call.headers["user-agent"] == "antigravity/1.0"
    assert call.headers == cloudcode_headers("ya29.token", "antigravity/1.0", "proj-1")
    envelope = orjson.loads(call.body)
    assert (envelope["project"], envelope["model"]) == ("proj-1", "gemini-2.5-pro")
    assert envelope["request"] == {**REQUEST, "sessionId": session_id_for("acc-1")}
    assert envelope["requestId"].endswith("req-7")


def test_cloudcode_headers_name_the_project_only_when_known():
    assert cloudcode_headers("tok", "antigravity/1.0") == {
        "authorization": "Bearer tok", "content-type": "application/json", "user-agent": "antigravity/1.0",
        "accept-encoding": "identity"}
    assert cloudcode_headers("tok", "ua", "proj-1")["x-goog-user-project"] == "proj-1"


def test_the_public_api_sends_the_canonical_request_with_the_key():
    account = Account("k1", "k1@example.com", "api_key", None, api_key="AIza-key")
    call = PublicGemini("https://gl.example").build("https://gl.example", "gemini-2.5-flash", False, REQUEST,
                                                     account, "AIza-key", CallContext("req-8"))
    assert call.url == "https://gl.example/v1beta/models/gemini-2.5-flash:generateContent"
    assert call.headers["x-goog-api-key"] == "AIza-key" and "authorization" not in call.headers
    assert orjson.loads(call.body) == REQUEST


def test_session_ids_are_stable_signed_64_bit_decimals():
    ids = {session_id_for(f"account-{i}") for i in range(100)}
    assert len(ids) == 100 and session_id_for("account-1") == session_id_for("account-1")
    assert all(-(1 << 63) <= int(i) < (1 << 63) for i in ids)


def test_unwrap_any_takes_cloud_codes_response_and_leaves_errors_and_public_events():
    event = {"candidates": []}
    assert unwrap_any({"response": event}) is event
    assert unwrap_any(event) is event
    error = {"response": {"x": 1}, "error": {"code": 429}}
    assert unwrap_any(error) is error


def test_count_tokens_is_wrapped_as_each_api_wants_it():
    oauth = Account("acc-1", "a@example.com", "oauth", None, project_id="proj-1")
    request = {"systemInstruction": {"parts": [{"text": "sys"}]}, **REQUEST}
    ctx = CallContext("r1", rpc="countTokens")
    call = CloudCode(("https://cc/v1internal",), "ua").build("https://cc/v1internal", "m", False, request,
                                                               oauth, "tok", ctx)
    assert call.url == "https://cc/v1internal:countTokens"
    assert orjson.loads(call.body) == {"request": {"model": "models/m", "contents": [
        {"role": "user", "parts": [{"text": "sys"}]}, *REQUEST["contents"]]}}
    key = Account("k", "k", "api_key", None, api_key="AIza")
    call = PublicGemini("https://g").build("https://g", "m", False, request, key, "AIza", ctx)
    assert call.url == "https://g/v1beta/models/m:countTokens"
    assert orjson.loads(call.body) == {"generateContentRequest": {"model": "models/m", **request}}
    embed = PublicGemini("https://g").build("https://g", "e", False, {"requests": []}, key, "AIza",
                                            CallContext("r1", rpc="batchEmbedContents"))
    assert (embed.url, orjson.loads(embed.body)) == ("https://g/v1beta/models/e:batchEmbedContents",
                                                     {"requests": []})


@pytest.mark.parametrize(("mode", "thinking"), [
    ("level", {"includeThoughts": True, "thinkingLevel": "low"}),
    ("budget", {"includeThoughts": True, "thinkingBudget": 4096}),
])
def test_gemini_3_thinking_level_goes_as_level_or_as_budget_never_both(mode, thinking):
    account = Account("acc-1", "a@example.com", "oauth", None, project_id="proj-1")
    level = {"includeThoughts": True, "thinkingLevel": "low"}
    request = {**REQUEST, "generationConfig": {"thinkingConfig": level}}
    base = "https://cc.example/v1internal"
    call = CloudCode((base,), "ua", gemini3_thinking=mode).build(
        base, "gemini-3.1-pro-high", False, request, account, "t", CallContext("r"))
    assert orjson.loads(call.body)["request"]["generationConfig"]["thinkingConfig"] == thinking
    assert level["thinkingLevel"] == "low"  # the flow's copy is left untouched


def test_image_models_go_as_image_gen_without_a_session():
    account = Account("acc-1", "a@example.com", "oauth", None, project_id="proj-1")
    base = "https://cc.example/v1internal"
    call = CloudCode((base,), "ua").build(base, "gemini-3.1-flash-image", False, REQUEST, account, "t",
                                          CallContext("r"))
    envelope = orjson.loads(call.body)
    assert (envelope["requestType"], envelope["request"]) == ("image_gen", REQUEST)
