"""Every error type answers with its status and OpenAI's error fields."""

from __future__ import annotations

import pytest

from antigravity_gw import errors


@pytest.mark.parametrize(("error", "status", "kind", "code"), [
    (errors.GatewayError("x"), 500, "server_error", "internal_error"),
    (errors.InvalidRequest("x", param="messages"), 400, "invalid_request_error", "invalid_request"),
    (errors.ClientError("x"), 400, "invalid_request_error", None),
    (errors.Unauthorized("x"), 401, "invalid_request_error", "invalid_api_key"),
    (errors.UnknownRoute("x"), 404, "invalid_request_error", "unknown_url"),
    (errors.UpstreamRateLimited("x"), 429, "rate_limit_error", "rate_limit_exceeded"),
    (errors.UpstreamTimeout("x"), 504, "timeout_error", "upstream_timeout"),
    (errors.UpstreamUnreachable("x"), 502, "upstream_error", "upstream_unreachable"),
])
def test_each_type_knows_its_status_and_fields(error, status, kind, code):
    assert error.status == status
    assert error.to_openai() == {"error": {"message": "x", "type": kind, "param": error.param, "code": code}}


def test_a_status_or_code_given_to_one_error_leaves_its_class_alone():
    one = errors.UpstreamError("x", status=503, code="capacity")
    assert (one.status, one.code) == (503, "capacity")
    assert (errors.UpstreamError.status, errors.UpstreamError("y").code) == (502, "upstream_error")


def test_pool_exhausted_is_a_rate_limit_only_while_accounts_cool():
    assert errors.PoolExhausted("cooling").to_openai()["error"]["type"] == "rate_limit_error"
    none_usable = errors.PoolExhausted("none", status=503)
    assert (none_usable.status, none_usable.type) == (503, "api_error")
    assert errors.PoolExhausted.type == "rate_limit_error"


def test_a_timeout_is_also_a_timeout_error():
    assert isinstance(errors.UpstreamTimeout("x"), TimeoutError)


@pytest.mark.parametrize(("seconds", "after", "after_ms"),
                         [(0, "1", "1"), (0.2, "1", "200"), (2.5, "3", "2500")])
def test_retry_hints_are_never_zero(seconds, after, after_ms):
    assert errors.retry_after_headers(seconds) == {"retry-after": after, "retry-after-ms": after_ms}
