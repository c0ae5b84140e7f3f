"""The error shapes: the OpenAI body is exactly the SDK's fields; every path is OpenAI's until another API
claims some."""

from __future__ import annotations

from antigravity_gw import errors
from antigravity_gw.error_shapes import OPENAI_ERRORS, shape_for_path


def test_the_openai_shape_names_all_four_fields() -> None:
    err = errors.InvalidRequest("bad 'n'", param="n")
    assert OPENAI_ERRORS.body(err) == {"error": {
        "message": "bad 'n'", "type": "invalid_request_error", "param": "n", "code": "invalid_request"}}


def test_every_path_is_openai_shaped_today() -> None:
    for path in ("/v1/chat/completions", "/v1/responses", "/nope", "/v1/models/x", "/healthz"):
        assert shape_for_path(path) is OPENAI_ERRORS
