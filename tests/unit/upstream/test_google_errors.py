import orjson
import pytest

from antigravity_gw.upstream.google_errors import (
    ErrorReason,
    GoogleError,
    parse_duration,
    parse_google_error,
    parse_retry_after_header,
)

NOW = 1_800_000_000.0


@pytest.mark.parametrize(("text", "seconds"), [
    ("45.837906927s", 45.837906927), ("1h16m0.667s", 4560.667), ("500ms", 0.5), ("33740.9s", 33740.9),
    ("2", 2.0), ("0s", 0.0),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "soon", "5x", "1h5"])
def test_parse_duration_rejects_garbage(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_quota_exhausted_per_model_with_retry_info():
    body = orjson.dumps({"error": {"code": 429, "message": "Individual quota reached.",
                                   "status": "RESOURCE_EXHAUSTED", "details": [
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "45.837906927s"},
        {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "QUOTA_EXHAUSTED",
         "domain": "cloudcode-pa.googleapis.com",
         "metadata": {"quotaResetDelay": "33740.9s", "quotaResetTimeStamp": "2026-09-20T21:03:14Z",
                      "model": "gemini-3-flash"}}]}})
    err = parse_google_error(429, body, now=NOW)
    assert err.reason == ErrorReason.QUOTA_EXHAUSTED
    assert err.model == "gemini-3-flash"
    assert err.is_per_model
    assert err.retry_after == pytest.approx(45.837906927)  # RetryInfo is read by @type, not position
    assert err.status == "RESOURCE_EXHAUSTED"


def test_quota_reset_delay_when_no_retry_info():
    body = orjson.dumps({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "x", "details": [
        {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "RATE_LIMIT_EXCEEDED",
         "metadata": {"quotaResetDelay": "1m30s"}}]}})
    err = parse_google_error(429, body, now=NOW)
    assert (err.reason, err.retry_after, err.is_per_model) == (ErrorReason.RATE_LIMIT_EXCEEDED, 90.0, False)


def test_reset_timestamp_then_retry_after_header():
    body = orjson.dumps({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "x", "details": [
        {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "QUOTA_EXHAUSTED",
         "metadata": {"quotaResetTimeStamp": "2027-01-15T08:00:10Z"}}]}})
    from datetime import UTC, datetime
    now = datetime(2027, 1, 15, 8, 0, 0, tzinfo=UTC).timestamp()
    assert parse_google_error(429, body, now=now).retry_after == pytest.approx(10.0)
    generic = orjson.dumps({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
                                      "message": "Resource has been exhausted (e.g. check quota)."}})
    err = parse_google_error(429, generic, retry_after_header="7", now=NOW)
    assert (err.reason, err.retry_after) == (ErrorReason.UNKNOWN, 7.0)


def test_capacity_and_unknown_reason_and_text_body():
    body = orjson.dumps({"error": {"code": 503, "message": "No capacity available", "status": "UNAVAILABLE",
                                   "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                                "reason": "MODEL_CAPACITY_EXHAUSTED",
                                                "metadata": {"model": "claude-opus-4-6-thinking"}}]}})
    err = parse_google_error(503, body, now=NOW)
    assert err.reason == ErrorReason.MODEL_CAPACITY_EXHAUSTED and not err.is_per_model
    odd = orjson.dumps({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "m", "details": [
        {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "INSUFFICIENT_G1_CREDITS_BALANCE"}]}})
    assert parse_google_error(429, odd, now=NOW).reason == "INSUFFICIENT_G1_CREDITS_BALANCE"
    text = parse_google_error(502, b"<html>Bad Gateway</html>", now=NOW)
    assert (text.reason, text.message) == (ErrorReason.UNKNOWN, "<html>Bad Gateway</html>")


# Real bodies, as Google sends them (shapes from google-gemini/gemini-cli#29425, Antigravity-Manager's
# fixtures, and the public Gemini API's free-tier 429).
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
CLOUD_CODE_QUOTA = {"error": {
    "code": 429, "status": "RESOURCE_EXHAUSTED",
    "message": "You have exhausted your capacity on this model. Your quota will reset after 9h22m20s.",
    "details": [
        {"@type": ERROR_INFO, "reason": "QUOTA_EXHAUSTED", "domain": "cloudcode-pa.googleapis.com",
         "metadata": {"uiMessage": "true", "model": "gemini-3-pro-preview", "quotaResetDelay": "9h22m20.5s",
                      "quotaResetTimeStamp": "2026-09-20T21:03:14Z"}},
        {"@type": RETRY_INFO, "retryDelay": "33740.5s"}]}}
PUBLIC_API_QUOTA = {"error": {
    "code": 429, "status": "RESOURCE_EXHAUSTED",
    "message": "You exceeded your current quota, please check your plan and billing details.\n"
               "* Quota exceeded for metric: generativelanguage.googleapis.com/"
               "generate_content_free_tier_requests, limit: 10, model: gemini-2.5-flash\n"
               "Please retry in 45.837906927s.",
    "details": [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [
            {"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
             "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
             "quotaDimensions": {"location": "global", "model": "gemini-2.5-flash"}, "quotaValue": "10"}]},
        {"@type": "type.googleapis.com/google.rpc.Help", "links": [
            {"description": "Learn more about Gemini API quotas",
             "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]},
        {"@type": RETRY_INFO, "retryDelay": "45s"}]}}
VERIFY_ACCOUNT = {"error": {
    "code": 403, "message": "Verify your account to continue.", "status": "PERMISSION_DENIED",
    "details": [{"@type": ERROR_INFO, "reason": "VALIDATION_REQUIRED",
                 "domain": "cloudcode-pa.googleapis.com",
                 "metadata": {"validation_url": "https://accounts.google.com/signin/continue"}}]}}


def test_cloud_code_quota_lock_with_every_hint():
    err = parse_google_error(429, orjson.dumps(CLOUD_CODE_QUOTA), retry_after_header="99", now=NOW)
    assert err == GoogleError(429, "RESOURCE_EXHAUSTED", CLOUD_CODE_QUOTA["error"]["message"],
                              ErrorReason.QUOTA_EXHAUSTED, "gemini-3-pro-preview", pytest.approx(33740.5))
    assert err.is_per_model


def test_public_api_quota_failure_names_its_model_and_is_per_model():
    err = parse_google_error(429, orjson.dumps(PUBLIC_API_QUOTA), now=NOW)
    assert (err.reason, err.model, err.retry_after, err.quota_per_model, err.is_per_model) == (
        ErrorReason.UNKNOWN, "gemini-2.5-flash", 45.0, True, True)


def test_a_per_project_quota_failure_is_not_per_model():
    body = {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "m", "details": [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [
            {"quotaId": "GenerateRequestsPerDayPerProject",
             "quotaDimensions": {"model": "gemini-2.5-pro"}}]}]}}
    err = parse_google_error(429, orjson.dumps(body), now=NOW)
    assert (err.model, err.is_per_model) == ("gemini-2.5-pro", False)


def test_verification_required_403():
    err = parse_google_error(403, orjson.dumps(VERIFY_ACCOUNT), now=NOW)
    assert (err.reason, err.status, err.retry_after) == (
        ErrorReason.VALIDATION_REQUIRED, "PERMISSION_DENIED", None)


def test_status_wrapped_in_a_list_and_protobuf_duration_object():
    body = orjson.dumps([{"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "m", "details": [
        {"@type": RETRY_INFO, "retryDelay": {"seconds": 3, "nanos": 500000000}}]}}])
    assert parse_google_error(429, body, now=NOW).retry_after == pytest.approx(3.5)


@pytest.mark.parametrize(("header", "seconds"), [
    ("120", 120.0), ("Thu, 15 Jan 2027 08:00:30 GMT", 30.0), ("soon", None), (None, None), ("-5", 0.0)])
def test_retry_after_header_forms(header, seconds):
    from datetime import UTC, datetime
    now = datetime(2027, 1, 15, 8, 0, 0, tzinfo=UTC).timestamp()
    expected = pytest.approx(seconds) if seconds is not None else None
    assert parse_retry_after_header(header, now=now) == expected


def test_empty_body_keeps_the_status_and_the_header_hint():
    err = parse_google_error(503, b"", retry_after_header="2", now=NOW)
    assert (err.http_status, err.reason, err.retry_after, err.message) == (503, ErrorReason.UNKNOWN, 2.0, "")


# --- R-C7: Claude's own error inside Google's 400 ---------------------------------------------------------

from antigravity_gw.upstream.attempts import upstream_error_for  # noqa: E402
from antigravity_gw.upstream.google_errors import anthropic_error_message  # noqa: E402

ANTHROPIC = ('{"type":"error","error":{"type":"invalid_request_error","message":"messages.1.content.0: '
             'Invalid `signature` in `thinking` block"},"request_id":"req_vrtx_011"}')


@pytest.mark.parametrize(("message", "expected"), [
    (ANTHROPIC, "messages.1.content.0: Invalid `signature` in `thinking` block (invalid_request_error)"),
    (f"Upstream said: {ANTHROPIC}", "messages.1.content.0: Invalid `signature` in `thinking` block "
                                    "(invalid_request_error)"),
    ("Request contains an invalid argument.", None),
    ('{"error": "just a string"}', None),
    ('{"error": {"message": ', None),
])
def test_anthropic_error_message(message, expected):
    assert anthropic_error_message(message) == expected


def test_a_claude_400_becomes_a_clear_openai_error():
    body = orjson.dumps({"error": {"code": 400, "message": ANTHROPIC, "status": "INVALID_ARGUMENT"}})
    err = upstream_error_for(parse_google_error(400, body, now=NOW), "acc")
    assert err.status == 400
    assert err.to_openai()["error"] == {
        "message": "Claude (through Google) rejected the request: messages.1.content.0: Invalid "
                   "`signature` in `thinking` block (invalid_request_error)",
        "type": "invalid_request_error", "param": None, "code": "upstream_invalid_argument"}
