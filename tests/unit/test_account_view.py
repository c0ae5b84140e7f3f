"""account_view.py: an account's live state and quota as ``GET /ag/accounts``'s JSON, and as ``ag.accounts``'s
table rendered from that JSON."""

from __future__ import annotations

from antigravity_gw.account_view import account_view, table, utc
from antigravity_gw.upstream.accounts import Account
from antigravity_gw.upstream.pool import AccountStatus
from antigravity_gw.upstream.quota import AccountQuota, Bucket, ModelQuota

NOW = 1_800_000_000.0


def oauth(**kw):
    return Account(id="a1", email="a@example.com", kind="oauth", path=None, refresh_token="rt-secret",
                   access_token="at-secret", **kw)


def test_an_exhausted_model_shows_until_its_reset_and_no_secret_leaks():
    quota = AccountQuota(tier="standard-tier", fetched_at=NOW - 30, models={
        "gemini-2.5-pro": ModelQuota(remaining=0.0, reset=NOW + 3600),
        "gemini-2.5-flash": ModelQuota(remaining=0.75, reset=NOW + 600),
    })
    view = account_view(AccountStatus(oauth(), "ready"), quota, now=NOW, floor=0.0, served=3,
                        last_used=NOW - 5, can_refresh=True)

    assert view["state"] == "ready" and not view["cannot_refresh"] and view["tier"] == "standard-tier"
    assert view["requests_served"] == 3 and view["last_used"] == utc(NOW - 5)
    models = view["quota"]["models"]
    assert models["gemini-2.5-pro"]["exhausted_until"] == utc(NOW + 3600)
    assert models["gemini-2.5-flash"] == {"remaining_fraction": 0.75, "reset_time": utc(NOW + 600),
                                          "exhausted_until": None}
    assert view["quota"]["age_seconds"] == 30
    assert "secret" not in repr(view)


def test_a_floor_reserves_part_of_the_quota_and_an_empty_bucket_blocks_its_models():
    low = {"gemini-2.5-flash": ModelQuota(remaining=0.05, reset=NOW + 60)}
    quota = AccountQuota(fetched_at=NOW, models=low)
    view = account_view(AccountStatus(oauth(), "ready"), quota, now=NOW, floor=0.1, served=0,
                        last_used=None, can_refresh=True)
    assert view["quota"]["models"]["gemini-2.5-flash"]["exhausted_until"] == utc(NOW + 60)

    half = {"gemini-2.5-flash": ModelQuota(remaining=0.5, reset=NOW + 60)}
    roomy = AccountQuota(fetched_at=NOW, models=half,
                         buckets=(Bucket("gemini-5h", "Gemini Models", "5h", 0.0, NOW + 900),))
    view = account_view(AccountStatus(oauth(), "ready"), roomy, now=NOW, floor=0.0, served=0,
                        last_used=None, can_refresh=True)
    assert view["quota"]["models"]["gemini-2.5-flash"]["exhausted_until"] == utc(NOW + 900)


def test_an_oauth_account_without_a_client_cannot_refresh_and_an_api_key_has_no_quota():
    view = account_view(AccountStatus(oauth(), "ready"), None, now=NOW, floor=0.0, served=0, last_used=None,
                        can_refresh=False, note="set the client")
    assert view["state"] == "cannot refresh" and view["cannot_refresh"] and view["note"] == "set the client"
    assert view["quota"]["fetched_at"] is None

    key = Account(id="k1", email="", kind="api_key", path=None, api_key="AIza-secret")
    assert account_view(AccountStatus(key, "ready"), None, now=NOW, floor=0.0, served=0, last_used=None,
                        can_refresh=False)["quota"] is None


def test_the_table_has_a_row_per_account_and_the_quota_indented_below():
    quota = AccountQuota(fetched_at=NOW - 10, models={"gemini-2.5-pro": ModelQuota(remaining=0.0,
                                                                                     reset=NOW + 3600)})
    views = [account_view(AccountStatus(oauth(), "ready"), quota, now=NOW, floor=0.0, served=2,
                          last_used=None, can_refresh=True),
             account_view(AccountStatus(oauth(disabled=True, disabled_reason="invalid_grant"), "disabled",
                                        reason="invalid_grant"), None, now=NOW, floor=0.0, served=0,
                          last_used=None, can_refresh=True)]
    lines = table(views, NOW)

    assert lines[0].split() == ["ACCOUNT", "KIND", "STATE", "TIER", "SERVED", "LAST", "USED"]
    assert lines[1].split()[:4] == ["a@example.com", "oauth", "ready", "-"]
    assert lines[2].strip() == f"quota as of {utc(NOW - 10)} (10s ago)"
    assert lines[3].split() == ["gemini-2.5-pro", "0%", "EXHAUSTED", "until", utc(NOW + 3600), "(in",
                                "1h00m)"]
    assert "disabled (invalid_grant)" in lines[4]
    assert table([], NOW) == ["no accounts loaded"]
