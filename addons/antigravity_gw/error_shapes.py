"""How each client-facing API spells an error body: one strategy per API, chosen by where a request came in.

``errors.GatewayError`` knows *what* went wrong (status, type, code, param, message); an ``ErrorShape``
knows how the API the client speaks writes that down: OpenAI's on the OpenAI routes, Anthropic's
``{"type": "error", "error": {...}}`` on the Messages API's paths (``shape_for_path``), and every error
answer (the 401 from ``Auth``, the path-diagnosis 404, the relay's and the hooks' errors) follows.
A shape may add the headers its API promises with every error (Anthropic's ``request-id``) to the
error's ``headers`` as it writes the body: callers build the body first, then the headers.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Protocol

from .errors import GatewayError

ErrorBody = Callable[[GatewayError], dict[str, Any]]  # an error as one API's JSON body


class ErrorShape(Protocol):
    name: str

    def body(self, err: GatewayError) -> dict[str, Any]: ...


class OpenAIErrorShape:
    """``{"error": {"message", "type", "param", "code"}}``: what the openai SDKs parse."""

    name = "openai"

    def body(self, err: GatewayError) -> dict[str, Any]:
        return err.to_openai()


OPENAI_ERRORS: ErrorShape = OpenAIErrorShape()


# Anthropic's error types by HTTP status (https://docs.anthropic.com/en/api/errors); other 5xx: api_error.
_ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                    404: "not_found_error", 405: "invalid_request_error", 413: "request_too_large",
                    415: "invalid_request_error", 429: "rate_limit_error", 503: "overloaded_error",
                    529: "overloaded_error", 504: "timeout_error"}


class AnthropicErrorShape:
    """``{"type": "error", "error": {"type", "message"}, "request_id"}`` and a ``request-id`` header: what the
    anthropic SDKs and Claude Code parse. The status stays the error's own (Anthropic's are HTTP's)."""

    name = "anthropic"

    def body(self, err: GatewayError) -> dict[str, Any]:
        request_id = err.headers.setdefault("request-id", "req_" + os.urandom(12).hex())
        return {**anthropic_error_event(err), "request_id": request_id}


def anthropic_error_event(err: GatewayError) -> dict[str, Any]:
    """The error as Anthropic writes it, also in-band as a stream's ``error`` event. Anthropic's body has no
    ``param``: the message starts with it, as Anthropic's own do (``messages.0.content: ...``)."""
    kind = _ANTHROPIC_TYPES.get(err.status)
    kind = kind or ("api_error" if err.status >= 500 else "invalid_request_error")
    message = err.message
    if err.param and err.param not in message:
        message = f"{err.param}: {message}"
    return {"type": "error", "error": {"type": kind, "message": message}}


ANTHROPIC_ERRORS: ErrorShape = AnthropicErrorShape()


def is_messages_path(path: str) -> bool:
    """Does ``path`` belong to the Messages API (``/v1/messages`` and below, however many ``/v1`` or a
    stacked base URL come before it)? Only asked when an error is answered."""
    path = path.split("?", 1)[0].rstrip("/")
    return path.endswith("/messages") or "/messages/" in path


def shape_for_path(path: str) -> ErrorShape:
    """The error shape of the API ``path`` belongs to; a path no API serves gets the default (OpenAI's)."""
    return ANTHROPIC_ERRORS if is_messages_path(path) else OPENAI_ERRORS
