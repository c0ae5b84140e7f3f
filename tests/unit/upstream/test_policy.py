import pytest

from antigravity_gw.upstream.google_errors import ErrorReason, GoogleError
from antigravity_gw.upstream.policy import MAX_BACKOFF, MAX_COOLDOWN, Action, Scope, decide

QUOTA = ErrorReason.QUOTA_EXHAUSTED
RATE = ErrorReason.RATE_LIMIT_EXCEEDED


@pytest.mark.parametrize(("err", "refreshed", "action", "cooldown", "scope"), [
    # 429: only this account cools down; per model when Google says the quota is the model's
    (GoogleError(429, reason=QUOTA, model="m", retry_after=45.8), False, Action.ROTATE, 45.8, Scope.MODEL),
    (GoogleError(429, reason=QUOTA, retry_after=12), False, Action.ROTATE, 12, Scope.ACCOUNT),
    (GoogleError(429, reason=QUOTA, model="m"), False, Action.ROTATE, 60.0, Scope.MODEL),
    (GoogleError(429, reason=RATE), False, Action.ROTATE, 10.0, Scope.ACCOUNT),
    (GoogleError(429, reason=RATE, model="m", retry_after=1.5), False, Action.ROTATE, 1.5, Scope.MODEL),
    (GoogleError(429), False, Action.ROTATE, 0.0, Scope.MODEL),  # bare: the attempts decide (see below)
    (GoogleError(429, reason="SOMETHING_NEW"), False, Action.ROTATE, 30.0, Scope.ACCOUNT),
    (GoogleError(429, retry_after=7), False, Action.ROTATE, 7, Scope.ACCOUNT),
    (GoogleError(429, model="m", retry_after=45, quota_per_model=True), False, Action.ROTATE, 45,
     Scope.MODEL),
    (GoogleError(429, model="m", retry_after=45), False, Action.ROTATE, 45, Scope.ACCOUNT),
    (GoogleError(429, reason=QUOTA, retry_after=0.0), False, Action.ROTATE, 1.0, Scope.ACCOUNT),  # floor
    (GoogleError(429, reason=QUOTA, retry_after=1e9), False, Action.ROTATE, MAX_COOLDOWN, Scope.ACCOUNT),
    # capacity and server errors: no cooldown, retry after a backoff
    (GoogleError(503, reason=ErrorReason.MODEL_CAPACITY_EXHAUSTED), False, Action.RETRY, 0, Scope.ACCOUNT),
    (GoogleError(529), False, Action.RETRY, 0, Scope.ACCOUNT),
    (GoogleError(500), False, Action.RETRY, 0, Scope.ACCOUNT),
    (GoogleError(502), False, Action.RETRY, 0, Scope.ACCOUNT),
    (GoogleError(504), False, Action.RETRY, 0, Scope.ACCOUNT),
    (GoogleError(408), False, Action.RETRY, 0, Scope.ACCOUNT),
    # auth
    (GoogleError(401), False, Action.REFRESH, 0, Scope.ACCOUNT),
    (GoogleError(401), True, Action.ROTATE, 60.0, Scope.ACCOUNT),
    (GoogleError(403), False, Action.ROTATE, 600.0, Scope.ACCOUNT),
    (GoogleError(403, reason=ErrorReason.VALIDATION_REQUIRED), False, Action.ROTATE, 600.0, Scope.ACCOUNT),
    (GoogleError(404), False, Action.ROTATE, 300.0, Scope.MODEL),
    # the request's fault
    (GoogleError(400), False, Action.FAIL, 0, Scope.ACCOUNT),
    (GoogleError(413), False, Action.FAIL, 0, Scope.ACCOUNT),
])
def test_decision_table(err, refreshed, action, cooldown, scope):
    d = decide(err, refreshed=refreshed)
    assert (d.action, d.cooldown, d.scope) == (action, pytest.approx(cooldown), scope)


@pytest.mark.parametrize(("status", "retries", "hint", "backoff"), [
    (503, 0, None, 0.5), (503, 1, None, 1.0), (503, 2, None, 2.0), (503, 5, None, MAX_BACKOFF),
    (503, 0, 1.5, 1.5), (503, 0, 300.0, MAX_BACKOFF),  # a Retry-After hint, but never a long sleep
    (500, 0, None, 0.25), (500, 3, None, 2.0),
])
def test_backoff_grows_and_is_capped(status, retries, hint, backoff):
    assert decide(GoogleError(status, retry_after=hint), refreshed=False, retries=retries).backoff == backoff


def test_reasons_say_what_happened():
    assert decide(GoogleError(429, reason=QUOTA), refreshed=False).reason == "quota exhausted"
    assert decide(GoogleError(403, reason=ErrorReason.VALIDATION_REQUIRED), refreshed=False).reason == \
        "account verification required"
    assert decide(GoogleError(503, reason=ErrorReason.MODEL_CAPACITY_EXHAUSTED), refreshed=False).reason == \
        "MODEL_CAPACITY_EXHAUSTED"


def test_only_a_429_without_reason_hint_or_model_is_bare():
    assert decide(GoogleError(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
                  refreshed=False).bare
    assert not decide(GoogleError(429, retry_after=3), refreshed=False).bare
    assert not decide(GoogleError(429, reason=QUOTA), refreshed=False).bare
    assert not decide(GoogleError(429, model="m", quota_per_model=True), refreshed=False).bare
    assert not decide(GoogleError(503), refreshed=False).bare


@pytest.mark.parametrize("status", [400, 403, 426])
def test_the_version_gate_fails_at_once_and_blames_no_account(status):
    err = GoogleError(status, "INVALID_ARGUMENT", "This version of Antigravity is no longer supported. "
                                                  "Please update to the latest version.")
    d = decide(err, refreshed=False)
    assert (d.action, d.cooldown) == (Action.FAIL, 0.0)
