"""upstream/quota.py: Cloud Code's quota answers read as data, and what they rule out."""

from __future__ import annotations

import pytest

from antigravity_gw.upstream.quota import (
    AccountQuota,
    Bucket,
    ModelQuota,
    QuotaBook,
    blocked_models,
    parse_buckets,
    parse_models,
    summary_base,
    tier_of,
)

NOW = 1_800_000_000.0
LATER = "2027-01-15T13:00:00Z"  # NOW + 5 h
LATER_TS = NOW + 5 * 3600


def test_fetch_available_models_gives_each_models_fraction_and_reset():
    data = {"models": {"gemini-2.5-pro": {"displayName": "Pro", "quotaInfo": {"remainingFraction": 0.25,
                                                                            "resetTime": LATER}},
                       "claude-sonnet-4-6": {"quotaInfo": {"resetTime": LATER}},  # fraction left out
                       "chat_20706": {}},
            "deprecatedModelIds": {}}
    models = parse_models(data)
    assert models["gemini-2.5-pro"] == ModelQuota(0.25, LATER_TS)
    assert models["claude-sonnet-4-6"] == ModelQuota(None, LATER_TS)
    assert models["chat_20706"] == ModelQuota(None, None)
    assert parse_models({"models": []}) == {} and parse_models({}) == {}


def test_garbled_fractions_and_times_are_not_reported():
    models = parse_models({"models": {"m": {"quotaInfo": {"remainingFraction": "x", "resetTime": "soon"}},
                                      "n": {"quotaInfo": {"remainingFraction": 7, "resetTime": 5}}}})
    assert models == {"m": ModelQuota(None, None), "n": ModelQuota(1.0, None)}


def test_quota_summary_buckets_keep_their_group():
    data = {"groups": [{"displayName": "Gemini Models", "buckets": [
        {"bucketId": "gemini-5h", "window": "5h", "remainingFraction": 0.5, "resetTime": LATER},
        {"bucketId": "gemini-weekly", "window": "weekly", "remainingFraction": 0.9, "resetTime": LATER}]},
        {"displayName": "Claude and GPT models", "buckets": [{"bucketId": "3p-5h", "remainingFraction": 0}]},
        "junk"]}
    assert parse_buckets(data) == (
        Bucket("gemini-5h", "Gemini Models", "5h", 0.5, LATER_TS),
        Bucket("gemini-weekly", "Gemini Models", "weekly", 0.9, LATER_TS),
        Bucket("3p-5h", "Claude and GPT models", "", 0.0, None))


@pytest.mark.parametrize(("data", "tier"), [
    ({"paidTier": {"id": "g1-ultra-tier", "name": "Google AI Ultra"}, "currentTier": {"id": "standard-tier"}},
     "Google AI Ultra"),
    ({"currentTier": {"id": "free-tier", "name": "Gemini Code Assist for individuals"}},
     "Gemini Code Assist for individuals"),
    ({"allowedTiers": [{"id": "legacy-tier"}, {"id": "free-tier", "isDefault": True}]}, "free-tier"),
    ({}, ""),
])
def test_the_tier_is_the_paid_one_then_the_current_one_then_the_default(data, tier):
    assert tier_of(data) == tier


def test_exhausted_models_and_buckets_block_until_their_reset():
    quota = AccountQuota(models={"gemini-2.5-pro": ModelQuota(0.0, LATER_TS),
                                 "gemini-2.5-flash": ModelQuota(0.4, LATER_TS),
                                 "claude-sonnet-4-6": ModelQuota(None, LATER_TS),  # absent + reset: exhausted
                                 "claude-opus-4-6-thinking": ModelQuota(None, None),  # free tier omits it
                                 "gpt-oss-120b": ModelQuota(1.0, LATER_TS)})
    assert blocked_models(quota, 0.0, NOW) == {"gemini-2.5-pro": LATER_TS, "claude-sonnet-4-6": LATER_TS}
    assert blocked_models(quota, 0.0, LATER_TS + 1) == {}  # the reset passed
    assert blocked_models(quota, 0.5, NOW) == {"gemini-2.5-pro": LATER_TS, "gemini-2.5-flash": LATER_TS,
                                               "claude-sonnet-4-6": LATER_TS}  # a 50 % floor


def test_a_bucket_at_zero_blocks_its_family_only():
    quota = AccountQuota(models={"gemini-2.5-pro": ModelQuota(1.0, None),
                                 "claude-sonnet-4-6": ModelQuota(1.0, None)},
                         buckets=(Bucket("3p-weekly", "Claude and GPT models", "weekly", 0.0, LATER_TS + 99),
                                  Bucket("gemini-5h", "Gemini Models", "5h", 0.3, LATER_TS)))
    assert blocked_models(quota, 0.0, NOW) == {"claude-sonnet-4-6": LATER_TS + 99}


def test_the_book_indexes_by_model_and_keeps_the_last_snapshot_on_failure():
    book = QuotaBook(floor_percent=10, clock=lambda: NOW)
    assert book.blocked("m") == {}
    book.store("a", AccountQuota(models={"m": ModelQuota(0.05, LATER_TS)}, fetched_at=NOW - 10))
    book.store("b", AccountQuota(models={"m": ModelQuota(0.5, LATER_TS)}, fetched_at=NOW - 10))
    assert book.blocked("m") == {"a": LATER_TS}
    book.failed("a", "fetchAvailableModels answered 500")
    kept = book.get("a")
    assert kept is not None and kept.models["m"].remaining == 0.05 and kept.fetched_at == NOW - 10
    assert (kept.error, kept.error_at) == ("fetchAvailableModels answered 500", NOW)
    book.set_floor(0)
    assert book.blocked("m") == {}
    book.forget(["b"])
    assert book.get("a") is None


def test_the_summary_is_asked_of_the_daily_host():
    sandbox, daily, prod = ("https://daily-cloudcode-pa.sandbox.googleapis.com/v1internal",
                            "https://daily-cloudcode-pa.googleapis.com/v1internal",
                            "https://cloudcode-pa.googleapis.com/v1internal")
    assert summary_base((sandbox, daily, prod)) == daily
    assert summary_base((prod,)) == prod
    assert summary_base((sandbox, prod)) == sandbox


def test_remaining_lists_the_reported_fractions_of_an_account() -> None:
    book = QuotaBook()
    book.store("a", AccountQuota(models={"gemini-2.5-pro": ModelQuota(0.25, None),
                                         "gemini-2.5-flash": ModelQuota(None, 1e9)}))
    assert book.remaining("a") == [("gemini-2.5-pro", 0.25)]  # a model with no fraction has no sample
    assert book.remaining("unknown") == []
