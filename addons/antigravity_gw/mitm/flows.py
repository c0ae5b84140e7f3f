"""How the gateway's state shows on a flow: metadata keys, answers it makes itself, marks and comments."""

from __future__ import annotations

from typing import Any

import orjson
from mitmproxy import http

from .. import errors

# flow.metadata keys (saved with -w and shown in mitmweb: never a secret in here)
CLIENT_REQUEST = "ag.client_request"
UPSTREAM = "ag.upstream"
ROUTE = "ag.route"
SYNTHETIC = "ag.synthetic"

MAPPED_MODEL_HEADER = "X-Mapped-Model"
ACCOUNT_HEADER = "X-Account-Email"

CORS_HEADERS = {
    "access-control-allow-origin": "*",
    "access-control-allow-methods": "GET, POST, OPTIONS",
    "access-control-allow-headers": "*",
    "access-control-max-age": "3600",
}


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> http.Response:
    return http.Response.make(status, orjson.dumps(body), {"content-type": "application/json", **(headers or {})})


def error_response(err: errors.GatewayError, extra_headers: dict[str, str] | None = None) -> http.Response:
    """The only way the gateway answers with an error: an OpenAI error body with the right status."""
    return json_response(err.status, err.to_openai(), {**err.headers, **(extra_headers or {})})


def mark_error(flow: http.HTTPFlow, message: str) -> None:
    flow.marked = ":warning:"
    flow.comment = message[:300]
