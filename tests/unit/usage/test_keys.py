"""usage/keys.py: the keys file, constant-time identification, model lists, rpm and daily budgets."""

from __future__ import annotations

import orjson
import pytest

from antigravity_gw import errors
from antigravity_gw.usage.keys import DAY, ClientKey, KeyLimits, KeyRing, digest, parse_keys_file


def parse(keys: object) -> tuple[ClientKey, ...]:
    return parse_keys_file(orjson.dumps(keys), path="keys.json")


def test_a_keys_file_keeps_names_limits_and_only_a_digest_of_each_key():
    keys = parse(
        {
            "keys": [
                {"name": "alice", "key": "sk-alice-123"},
                {
                    "name": "bob",
                    "key": "sk-bob-1234",
                    "models": ["gemini-*"],
                    "rpm": 60,
                    "daily_tokens": 2000000,
                },
            ]
        }
    )
    assert keys == (
        ClientKey("alice", digest("sk-alice-123")),
        ClientKey("bob", digest("sk-bob-1234"), ("gemini-*",), 60, 2000000),
    )
    assert "sk-alice-123" not in repr(keys)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ([], 'must hold {"keys"'),
        ({"keys": [{"key": "sk-12345678"}]}, "keys[0]: 'name' must be a non-empty string"),
        ({"keys": [{"name": "a", "key": "short"}]}, "keys[0] (a): 'key' must be a string of at least 8"),
        ({"keys": [{"name": "a", "key": "sk-12345678", "rpm": -1}]}, "'rpm' must be a whole number"),
        ({"keys": [{"name": "a", "key": "sk-12345678", "models": "gemini-*"}]}, "'models' must be a list"),
        ({"keys": [{"name": "a", "key": "sk-12345678", "rmp": 3}]}, "unknown field(s) rmp"),
        (
            {"keys": [{"name": "a", "key": "sk-12345678"}, {"name": "a", "key": "sk-87654321"}]},
            "'a' is used twice",
        ),
        (
            {"keys": [{"name": "a", "key": "sk-12345678"}, {"name": "b", "key": "sk-12345678"}]},
            "the same key",
        ),
    ],
)
def test_a_bad_keys_file_is_a_value_error_naming_the_entry(content: object, message: str):
    with pytest.raises(ValueError, match=r"ag_api_keys_file: keys\.json") as e:
        parse(content)
    assert message in str(e.value)
    assert "sk-" not in str(e.value), "a key must not appear in an error"


def test_not_json_is_a_value_error():
    with pytest.raises(ValueError, match="is not valid JSON"):
        parse_keys_file(b"{", path="keys.json")


def test_the_ring_finds_the_presented_key_among_several_offered():
    ring = KeyRing(
        parse({"keys": [{"name": "alice", "key": "sk-alice-123"}, {"name": "bob", "key": "sk-bob-1234"}]})
    )
    assert ring.identify(["nope", "sk-bob-1234"]).name == "bob"
    assert ring.identify(["sk-bob-123"]) is None
    assert ring.identify([]) is None


def test_model_patterns():
    key = ClientKey("a", b"", ("gemini-2.5-*", "gpt-4o"))
    assert key.allows("gemini-2.5-pro") and key.allows("gpt-4o")
    assert not key.allows("gemini-3-pro") and not key.allows("gpt-4o-mini")
    assert ClientKey("b", b"").allows("anything")


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_model_outside_the_list_is_403_model_not_allowed_and_not_counted():
    limits, key = KeyLimits(Clock(0.0)), ClientKey("a", b"", ("gemini-*",), rpm=1)
    with pytest.raises(errors.ModelNotAllowed) as e:
        limits.admit(key, "gpt-4o")
    assert (e.value.status, e.value.code, e.value.param) == (403, "model_not_allowed", "model")
    limits.admit(key, "gemini-2.5-flash")  # the refused request did not use up the one per minute


def test_rpm_is_a_sliding_minute_with_the_wait_in_retry_after():
    clock = Clock(1000.0)
    limits, key = KeyLimits(clock), ClientKey("a", b"", rpm=2)
    limits.admit(key, None)
    clock.now = 1020.0
    limits.admit(key, None)
    clock.now = 1030.0
    with pytest.raises(errors.KeyRateLimited) as e:
        limits.admit(key, None)
    assert (e.value.status, e.value.code, e.value.headers) == (
        429,
        "rate_limit_exceeded",
        {"retry-after": "30"},
    )
    clock.now = 1060.0  # the first request left the window
    limits.admit(key, None)


def test_the_daily_budget_counts_spent_tokens_and_resets_at_utc_midnight():
    clock = Clock(3 * DAY + 80000.0)
    limits, key = KeyLimits(clock), ClientKey("a", b"", daily_tokens=100)
    limits.seed({"a": 60})
    limits.admit(key, None)
    limits.spend("a", 40)
    with pytest.raises(errors.BudgetExceeded) as e:
        limits.admit(key, None)
    assert (e.value.status, e.value.code, e.value.headers) == (
        429,
        "budget_exceeded",
        {"retry-after": "6400"},
    )
    clock.now = 4 * DAY + 1
    limits.admit(key, None)
    assert limits.spent("a") == 0
