"""Every failure a client can see, as a type that knows its HTTP status and OpenAI error fields.

    GatewayError                     500 server_error / internal_error: our own bug
    ├── ClientError                  400 invalid_request_error: the caller's fault
    │   ├── InvalidRequest           400, with ``param`` pointing at the bad field
    │   ├── UnknownRoute             404, names the path and the likely fix
    │   ├── MethodNotAllowed         405, carries the Allow header
    │   ├── PayloadTooLarge          413
    │   ├── UnsupportedMediaType     415
    │   ├── Unauthorized             401 invalid_api_key
    │   ├── ModelNotAllowed          403 model_not_allowed: the client key may not use that model
    │   ├── KeyRateLimited           429 rate_limit_exceeded: the client key's rpm (+ retry-after)
    │   ├── BudgetExceeded           429 budget_exceeded: the client key's daily tokens (+ retry-after)
    │   └── NotFound                 404 (unknown model, unknown response id)
    ├── UpstreamError                502 upstream_error: Google's fault
    │   ├── UpstreamRateLimited      429 rate_limit_exceeded (+ retry-after headers)
    │   ├── UpstreamUnavailable      503 (capacity, 5xx)
    │   ├── UpstreamTimeout          504, also a TimeoutError
    │   ├── UpstreamUnreachable      502 upstream_unreachable: DNS or connection failure, no HTTP answer
    │   └── UpstreamProtocolError    502, malformed SSE / JSON from Google
    └── PoolExhausted                429 rate_limit_error (accounts cooling) or 503 api_error (none usable),
                                     with the soonest retry hint and a per-account summary

Only three places catch everything: the hook boundary, the relay handler and the stream adapter.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar


class GatewayError(Exception):
    status: ClassVar[int] = 500
    type: ClassVar[str] = "server_error"
    code: ClassVar[str | None] = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code  # type: ignore[misc]
        if status is not None:
            self.status = status  # type: ignore[misc]
        self.headers: dict[str, str] = dict(headers or {})

    def to_openai(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class ClientError(GatewayError):
    status = 400
    type = "invalid_request_error"
    code: ClassVar[str | None] = None  # annotated: a bare None would fix the subclasses' codes to None


class InvalidRequest(ClientError):
    code = "invalid_request"


class UnknownRoute(ClientError):
    status = 404
    code = "unknown_url"


class MethodNotAllowed(ClientError):
    status = 405
    code = "method_not_allowed"


class PayloadTooLarge(ClientError):
    status = 413
    code = "request_too_large"


class UnsupportedMediaType(ClientError):
    status = 415
    code = "unsupported_media_type"


class Unauthorized(ClientError):
    status = 401
    code = "invalid_api_key"


class ModelNotAllowed(ClientError):
    status = 403
    type = "permission_error"
    code = "model_not_allowed"


class KeyRateLimited(ClientError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class BudgetExceeded(ClientError):
    status = 429
    type = "insufficient_quota"
    code = "budget_exceeded"


class NotFound(ClientError):
    status = 404
    code = "not_found"


class UpstreamError(GatewayError):
    status = 502
    type = "upstream_error"
    code = "upstream_error"


class UpstreamRateLimited(UpstreamError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class UpstreamUnavailable(UpstreamError):
    status = 503
    type = "server_error"
    code = "upstream_unavailable"


class UpstreamTimeout(UpstreamError, TimeoutError):
    status = 504
    type = "timeout_error"
    code = "upstream_timeout"


class UpstreamProtocolError(UpstreamError):
    code = "upstream_protocol_error"


class UpstreamUnreachable(UpstreamError):
    code = "upstream_unreachable"


class PoolExhausted(GatewayError):
    """No account could serve: a 429 ``rate_limit_error`` only while they cool down after rate limits,
    otherwise (none configured, all disabled, all failing) an ``api_error``."""

    status = 429
    type = "rate_limit_error"
    code = "all_accounts_unavailable"

    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        if self.status != 429:
            self.type = "api_error"  # type: ignore[misc]


def retry_after_headers(seconds: float) -> dict[str, str]:
    """The hints the openai SDK reads (``retry-after-ms`` first); never 0, which it treats as "no hint"."""
    seconds = max(seconds, 0.001)
    return {"retry-after": str(max(1, math.ceil(seconds))),
            "retry-after-ms": str(max(1, math.ceil(seconds * 1000)))}
