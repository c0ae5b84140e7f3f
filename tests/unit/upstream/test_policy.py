import pytest

from antigravity_gw.upstream.google_errors import ErrorReason, GoogleError
from antigravity_gw.upstream.policy import Action, Scope, decide


@pytest.mark.parametrize(("err", "refreshed", "action", "cooldown", "scope"), [
    (GoogleError(429, reason=ErrorReason.QUOTA_EXHAUSTED, model="m", retry_after=45.8), False, Action.ROTATE, 45.8,
     Scope.MODEL),
    (GoogleError(429, reason=ErrorReason.QUOTA_EXHAUSTED, retry_after=12), False, Action.ROTATE, 12, Scope.ACCOUNT),
    (GoogleError(429, reason=ErrorReason.RATE_LIMIT_EXCEEDED), False, Action.ROTATE, 10.0, Scope.ACCOUNT),
    (GoogleError(429), False, Action.ROTATE, 30.0, Scope.ACCOUNT),
    (GoogleError(503, reason=ErrorReason.MODEL_CAPACITY_EXHAUSTED), False, Action.RETRY, 0, Scope.ACCOUNT),
    (GoogleError(529), False, Action.RETRY, 0, Scope.ACCOUNT),
    (GoogleError(500), False, Action.RETRY, 0, Scope.ACCOUNT),
    (GoogleError(401), False, Action.REFRESH, 0, Scope.ACCOUNT),
    (GoogleError(401), True, Action.ROTATE, 60.0, Scope.ACCOUNT),
    (GoogleError(403), False, Action.ROTATE, 600.0, Scope.ACCOUNT),
    (GoogleError(404), False, Action.ROTATE, 300.0, Scope.MODEL),
    (GoogleError(400), False, Action.FAIL, 0, Scope.ACCOUNT),
])
def test_decision_table(err, refreshed, action, cooldown, scope):
    d = decide(err, refreshed=refreshed)
    assert (d.action, d.cooldown, d.scope) == (action, pytest.approx(cooldown), scope)
