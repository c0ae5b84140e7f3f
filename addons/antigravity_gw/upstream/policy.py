"""What to do after a failed upstream attempt: a pure table from ``GoogleError`` to a ``Decision``.

Rules:
- a 429 cools down only the account that got it: per model when Google says the quota is per model
  (QUOTA_EXHAUSTED with ``metadata.model``, or a public-API QuotaFailure counted per model), per
  account otherwise; for as long as Google says, or a default per kind when it says nothing;
- a *bare* 429 (no ErrorInfo reason, no QuotaFailure, no retry hint: "Resource has been exhausted")
  may be the request's own fault (an oversized conversation, AM#3506), so it cools nobody here: the
  attempts decide once they know whether another account says the same (``Decision.bare``);
- "This version of Antigravity is no longer supported" is the gateway's User-Agent, not the account:
  no cooldown, no rotation (every account would say the same), the client is told what to set;
- capacity errors (503/529) are the model's, not the account's: no cooldown, a short exponential
  backoff before the same account is asked again (another account is asked at once);
- 500/502/504/408 are transient: the same treatment with a shorter backoff;
- 401 means the access token is stale: refresh once, then the same account again; a second 401
  after the refresh cools the account down;
- 403 (permission, "verify your account") rotates and cools the account down for a while;
- 404 on the last base URL means this account lacks the model: rotate, cool down that model only;
- other 4xx are the request's fault: no retry, the client sees them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from .google_errors import ErrorReason, GoogleError


class Action(StrEnum):
    ROTATE = "rotate"  # another account
    RETRY = "retry"  # another account now, or the same one after ``backoff``
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
    backoff: float = 0.0  # seconds to wait before the same account is asked again
    reason: str = ""
    bare: bool = False  # a 429 without reason or hint: the account or the request may be at fault




DEFAULT_QUOTA_COOLDOWN = 60.0
DEFAULT_RATE_LIMIT_COOLDOWN = 10.0
DEFAULT_GENERIC_429_COOLDOWN = 30.0  # a 429 with a reason we do not know and no hint
BARE_429_COOLDOWN = 2.0  # a bare 429 that another account did not repeat: a few seconds, per model
BARE_429_LIMIT = 2  # bare 429s from this many accounts in one request: the request is at fault
VERSION_GATE_TEXT = "version of antigravity is no longer supported"
MIN_RATE_LIMIT_COOLDOWN = 1.0  # a "0s" hint must not make the next attempt hammer the same account
MAX_COOLDOWN = 24 * 3600.0  # a garbled hint of years must not retire an account for good
FORBIDDEN_COOLDOWN = 600.0
NOT_FOUND_COOLDOWN = 300.0
UNAUTHORIZED_COOLDOWN = 60.0
REFRESH_FAILURE_COOLDOWN = 60.0  # the token endpoint failed for a reason other than invalid_grant
PROJECT_FAILURE_COOLDOWN = 60.0  # loadCodeAssist could not be asked
NO_PROJECT_COOLDOWN = 600.0  # loadCodeAssist answered without a project: the account is not set up
# the reasons of a 429 that put the account in a cooldown
BARE_429_REASON = "resource exhausted (no reason given)"
QUOTA_SNAPSHOT_REASON = "quota exhausted (reported by Cloud Code)"
RATE_LIMIT_REASONS = frozenset({"quota exhausted", "rate limited", "resource exhausted",
                                BARE_429_REASON, QUOTA_SNAPSHOT_REASON})
CAPACITY_BACKOFF = 0.5
SERVER_ERROR_BACKOFF = 0.25
MAX_BACKOFF = 4.0
MODEL_NOT_FOUND = "model not found on this account"  # a cooldown's reason, read back by attempts._exhausted


def decide(err: GoogleError, *, refreshed: bool, retries: int = 0) -> Decision:
    """``refreshed``: this account's token was already refreshed after a 401 in this request;
    ``retries``: how many transient failures this request has already backed off from."""
    status = err.http_status
    if is_version_gate(err):
        return Decision(Action.FAIL, reason="client version rejected")
    if status == 429:
        return _rate_limited(err)
    if status in (503, 529):
        return Decision(Action.RETRY, backoff=_backoff(CAPACITY_BACKOFF, retries, err.retry_after),
                        reason=str(err.reason if err.reason != ErrorReason.UNKNOWN else "unavailable"))
    if status >= 500 or status == 408:
        return Decision(Action.RETRY, backoff=_backoff(SERVER_ERROR_BACKOFF, retries, err.retry_after),
                        reason=f"http {status}")
    if status == 401:
        if refreshed:
            return Decision(Action.ROTATE, UNAUTHORIZED_COOLDOWN, reason="token rejected after a refresh")
        return Decision(Action.REFRESH, reason="token rejected")
    if status == 403:
        return Decision(Action.ROTATE, FORBIDDEN_COOLDOWN, reason=_forbidden_reason(err))
    if status == 404:
        return Decision(Action.ROTATE, NOT_FOUND_COOLDOWN, Scope.MODEL, reason=MODEL_NOT_FOUND)
    return Decision(Action.FAIL, reason=f"http {status}")


def is_version_gate(err: GoogleError) -> bool:
    """Cloud Code refuses the client version the User-Agent names (R-Q4), whatever the status."""
    return 400 <= err.http_status < 500 and VERSION_GATE_TEXT in err.message.lower()


def is_bare_429(err: GoogleError) -> bool:
    return (err.http_status == 429 and err.reason == ErrorReason.UNKNOWN and err.retry_after is None
            and not err.model and not err.quota_per_model)


def _rate_limited(err: GoogleError) -> Decision:
    if is_bare_429(err):
        return Decision(Action.ROTATE, scope=Scope.MODEL, reason=BARE_429_REASON, bare=True)
    if err.reason == ErrorReason.QUOTA_EXHAUSTED:
        default, reason = DEFAULT_QUOTA_COOLDOWN, "quota exhausted"
    elif err.reason == ErrorReason.RATE_LIMIT_EXCEEDED:
        default, reason = DEFAULT_RATE_LIMIT_COOLDOWN, "rate limited"
    else:
        default, reason = DEFAULT_GENERIC_429_COOLDOWN, "resource exhausted"
    seconds = err.retry_after if err.retry_after is not None else default
    seconds = min(max(seconds, MIN_RATE_LIMIT_COOLDOWN), MAX_COOLDOWN)
    per_model = err.is_per_model or (err.reason == ErrorReason.RATE_LIMIT_EXCEEDED and bool(err.model))
    return Decision(Action.ROTATE, seconds, Scope.MODEL if per_model else Scope.ACCOUNT, reason=reason)


def _backoff(base: float, retries: int, hint: float | None) -> float:
    if hint is not None:
        return min(max(hint, 0.0), MAX_BACKOFF)
    return min(base * 2 ** max(retries, 0), MAX_BACKOFF)


def _forbidden_reason(err: GoogleError) -> str:
    if err.reason == ErrorReason.VALIDATION_REQUIRED:
        return "account verification required"
    return f"forbidden ({err.reason})" if err.reason != ErrorReason.UNKNOWN else "forbidden"
