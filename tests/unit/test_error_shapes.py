"""The error shapes: the OpenAI body is exactly the SDK's fields; the Messages API's paths get Anthropic's
body, type and request-id; every other path is OpenAI's."""

from __future__ import annotations

import pytest

from antigravity_gw import errors
from antigravity_gw.error_shapes import ANTHROPIC_ERRORS, OPENAI_ERRORS, anthropic_error_event, shape_for_path


def test_the_openai_shape_names_all_four_fields() -> None:
    err = errors.InvalidRequest("bad 'n'", param="n")
    assert OPENAI_ERRORS.body(err) == {"error": {
        "message": "bad 'n'", "type": "invalid_request_error", "param": "n", "code": "invalid_request"}}


def test_every_other_path_is_openai_shaped() -> None:
    paths = ("/v1/chat/completions", "/v1/responses", "/nope", "/v1/models/x", "/healthz", "/v1/messagesx")
    for path in paths:
        assert shape_for_path(path) is OPENAI_ERRORS


def test_the_messages_paths_are_anthropic_shaped() -> None:
    for path in ("/v1/messages", "/v1/v1/messages", "/v1/messages/count_tokens", "/v1/messages?beta=true",
                 "/v1/messages/v1/messages", "/messages/"):
        assert shape_for_path(path) is ANTHROPIC_ERRORS


@pytest.mark.parametrize(("err", "kind"), [
    (errors.InvalidRequest("bad"), "invalid_request_error"),
    (errors.Unauthorized("who"), "authentication_error"),
    (errors.ModelNotAllowed("no"), "permission_error"), (errors.UnknownRoute("where"), "not_found_error"),
    (errors.PayloadTooLarge("big"), "request_too_large"),
    (errors.UpstreamRateLimited("slow"), "rate_limit_error"),
    (errors.UpstreamUnavailable("busy"), "overloaded_error"), (errors.UpstreamError("broke"), "api_error"),
    (errors.GatewayError("bug"), "api_error"), (errors.UpstreamTimeout("late"), "timeout_error"),
])
def test_the_anthropic_shape_uses_anthropics_types_and_a_request_id(err: errors.GatewayError,
                                                                    kind: str) -> None:
    body = ANTHROPIC_ERRORS.body(err)
    assert body["type"] == "error" and body["error"]["type"] == kind
    assert body["request_id"].startswith("req_") and err.headers["request-id"] == body["request_id"]
    assert ANTHROPIC_ERRORS.body(err)["request_id"] == body["request_id"]  # one error, one id


def test_the_anthropic_message_names_the_param_it_has_no_field_for() -> None:
    event = anthropic_error_event(errors.InvalidRequest("Field required", param="max_tokens"))
    assert event == {"type": "error", "error": {"type": "invalid_request_error",
                                                "message": "max_tokens: Field required"}}
