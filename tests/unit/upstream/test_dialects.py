"""The two dialects: the canonical path, Cloud Code's envelope and headers (one builder for every Cloud Code
call), the public API's plain call, and unwrapping either's answer."""

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
    unwrap_any,
)


def test_cloudcode_headers_name_the_project_only_when_known() -> None:
    assert cloudcode_headers("tok", "antigravity/1.0") == {
        "authorization": "Bearer tok", "content-type": "application/json", "user-agent": "antigravity/1.0",
        "accept-encoding": "identity"}
    assert cloudcode_headers("tok", "ua", "proj-1")["x-goog-user-project"] == "proj-1"


def test_a_cloudcode_call_wraps_the_request_and_uses_the_shared_headers() -> None:
    account = Account("a1", "a@example.com", "oauth", None, access_token="tok", project_id="proj-1")
    call = CloudCode(("https://cc.example/v1internal",), "ua/1").build(
        "https://cc.example/v1internal", "gemini-2.5-pro", True, {"contents": []}, account, "tok",
        CallContext("rid", ""))
    assert call.url == "https://cc.example/v1internal:streamGenerateContent?alt=sse"
    assert call.headers == cloudcode_headers("tok", "ua/1", "proj-1")
    envelope = orjson.loads(call.body)
    assert (envelope["project"], envelope["model"], envelope["requestId"]) == (
        "proj-1", "gemini-2.5-pro", "agent/antigravity/rid")
    assert envelope["request"]["contents"] == []


def test_a_public_call_is_the_canonical_path_with_the_key_header() -> None:
    account = Account("k1", "k", "api_key", None, api_key="key")
    call = PublicGemini("https://g.example").build("https://g.example", "m", False, {"contents": []}, account,
                                                   "key", CallContext("rid"))
    assert call.url == "https://g.example/v1beta/models/m:generateContent"
    assert call.headers["x-goog-api-key"] == "key" and "authorization" not in call.headers
    assert orjson.loads(call.body) == {"contents": []}


@pytest.mark.parametrize("stream", [True, False])
def test_the_canonical_path_round_trips(stream: bool) -> None:
    assert parse_canonical_path(canonical_path("gemini-2.5-pro", stream)) == ("gemini-2.5-pro", stream)


def test_unwrap_removes_cloudcodes_envelope_but_never_hides_an_error() -> None:
    inner = {"candidates": []}
    assert unwrap_any({"response": inner}) is inner
    assert unwrap_any(inner) is inner
    error = {"response": inner, "error": {"code": 500}}
    assert unwrap_any(error) is error
