"""What to do after a failed upstream attempt: a pure table from ``GoogleError`` to a ``Decision``.

Rules:
- a 429 cools down only the account that got it: per model when Google says the quota is per model
  (QUOTA_EXHAUSTED with ``metadata.model``), per account otherwise;
- capacity errors (503/529) are the model's, not the account's: short backoff, no cooldown;
- 401 means the access token is stale: refresh once, then the same account again;
- 4xx other than 401/403/404/408/429 are the request's fault: no retry, the client sees them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from .google_errors import ErrorReason, GoogleError


class Action(StrEnum):
    ROTATE = "rotate"  # another account
    RETRY = "retry"  # any account, the same one included, after a short backoff
    REFRESH = "refresh"  # refresh this account's token, then try it again
    FAIL = "fail"  # give the error to the client


class Scope(StrEnum):
    ACCOUNT = "account"
    MODEL = "model"


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    cooldown: float = 0.0  # seconds; 0 = none
    scope: Scope = Scope.ACCOUNT
    backoff: float = 0.0  # seconds to wait before the next attempt
    reason: str = ""


DEFAULT_QUOTA_COOLDOWN = 60.0
DEFAULT_RATE_LIMIT_COOLDOWN = 10.0
DEFAULT_GENERIC_429_COOLDOWN = 30.0
FORBIDDEN_COOLDOWN = 600.0
NOT_FOUND_COOLDOWN = 300.0
UNAUTHORIZED_COOLDOWN = 60.0
CAPACITY_BACKOFF = 0.5


def decide(err: GoogleError, *, refreshed: bool) -> Decision:
    status = err.http_status
    if status == 429:
        return _rate_limited(err)
    if status in (503, 529):
        return Decision(Action.RETRY, backoff=CAPACITY_BACKOFF, reason=str(err.reason or "unavailable"))
    if status >= 500 or status == 408:
        return Decision(Action.RETRY, backoff=0.2, reason=f"http {status}")
    if status == 401:
        if refreshed:
            return Decision(Action.ROTATE, UNAUTHORIZED_COOLDOWN, reason="token rejected after refresh")
        return Decision(Action.REFRESH, reason="token rejected")
    if status == 403:
        return Decision(Action.ROTATE, FORBIDDEN_COOLDOWN, reason=str(err.reason or "forbidden"))
    if status == 404:
        return Decision(Action.ROTATE, NOT_FOUND_COOLDOWN, Scope.MODEL, reason="model not found on this account")
    return Decision(Action.FAIL, reason=f"http {status}")


def _rate_limited(err: GoogleError) -> Decision:
    if err.reason == ErrorReason.QUOTA_EXHAUSTED:
        seconds = err.retry_after if err.retry_after is not None else DEFAULT_QUOTA_COOLDOWN
        scope = Scope.MODEL if err.is_per_model else Scope.ACCOUNT
        return Decision(Action.ROTATE, seconds, scope, reason="quota exhausted")
    if err.reason == ErrorReason.RATE_LIMIT_EXCEEDED:
        seconds = err.retry_after if err.retry_after is not None else DEFAULT_RATE_LIMIT_COOLDOWN
        return Decision(Action.ROTATE, seconds, Scope.MODEL if err.model else Scope.ACCOUNT, reason="rate limited")
    seconds = err.retry_after if err.retry_after is not None else DEFAULT_GENERIC_429_COOLDOWN
    return Decision(Action.ROTATE, seconds, reason="resource exhausted")
