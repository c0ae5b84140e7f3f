"""cli_options.py: the gateway's options as ``--set ag_name=value`` on the tools' command line."""

import pytest

from antigravity_gw.cli_options import parse_sets, settings_from


def test_sets_convert_like_mitmdump_and_lists_repeat():
    values = parse_sets(["ag_max_attempts=7", "ag_inline_non_stream=false", "ag_model_fallback=a=b",
                         "ag_model_fallback=c*=d", "ag_api_key=sk-x"])
    assert values.ag_max_attempts == 7 and values.ag_inline_non_stream is False
    assert values.ag_model_fallback == ["a=b", "c*=d"] and values.ag_api_key == "sk-x"
    assert values.ag_quota_refresh == 300  # defaults for the rest


@pytest.mark.parametrize(("spec", "message"), [
    ("ag_max_attempts", "expected ag_name=value"),
    ("ag_schedulng=lru", "did you mean ag_scheduling"),
    ("ag_max_attempts=many", "expected a whole number"),
    ("ag_inline_non_stream=maybe", "expected true or false"),
])
def test_bad_sets_say_what_is_wrong(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_sets([spec])


def test_settings_come_from_the_same_parser_as_the_gateways(monkeypatch):
    monkeypatch.setenv("AG_TEST_SECRET", "GOCSPX-from-env")
    settings, _ = settings_from(["ag_oauth_client_secret=env:AG_TEST_SECRET", "ag_user_agent=4.6.0",
                                 "ag_oauth_auth_url=http://127.0.0.1:9/auth"])
    assert settings.oauth_client_secret == "GOCSPX-from-env"
    assert settings.user_agent.startswith("Antigravity/4.6.0 (")
    assert settings.oauth_auth_url == "http://127.0.0.1:9/auth"
    with pytest.raises(ValueError, match="ag_oauth_userinfo_url"):
        settings_from(["ag_oauth_userinfo_url=not a url"])
