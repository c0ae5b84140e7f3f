"""How each client-facing API spells an error body: one strategy per API, chosen by where a request came in.

``errors.GatewayError`` knows *what* went wrong (status, type, code, param, message); an ``ErrorShape``
knows how the API the client speaks writes that down. Today every route is OpenAI's; an API with its
own error body (Anthropic's ``{"type": "error", "error": {...}}``) adds a shape and claims its paths in
``shape_for_path``, and every error answer (the 401 from ``Auth``, the path-diagnosis 404, the relay's
and the hooks' errors) follows.
"""

from __future__ import annotations

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


def shape_for_path(path: str) -> ErrorShape:
    """The error shape of the API ``path`` belongs to; a path no API serves gets the default (OpenAI's)."""
    return OPENAI_ERRORS
