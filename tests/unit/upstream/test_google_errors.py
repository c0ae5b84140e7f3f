import orjson
import pytest

from antigravity_gw.upstream.google_errors import ErrorReason, parse_duration, parse_google_error

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
    body = orjson.dumps({"error": {"code": 429, "message": "Individual quota reached.", "status": "RESOURCE_EXHAUSTED",
                                   "details": [
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
    generic = orjson.dumps({"error": {"code": 429, "message": "Resource has been exhausted (e.g. check quota).",
                                      "status": "RESOURCE_EXHAUSTED"}})
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
