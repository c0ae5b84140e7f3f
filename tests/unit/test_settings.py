"""The pure option parsers behind the Auth addon, the body limit and the mapping file."""

from __future__ import annotations

import pytest

from antigravity_gw.settings import (
    InboundAuth,
    parse_model_map_file,
    parse_size,
    resolve_inbound_auth,
    resolve_secret,
)


@pytest.mark.parametrize(("mode", "hosts", "expected"), [
    ("auto", ["127.0.0.1"], "off"),
    ("auto", ["localhost", "::1"], "off"),
    ("auto", ["0.0.0.0"], "all_except_health"),
    ("auto", ["127.0.0.1", "192.168.1.5"], "all_except_health"),
    ("strict", ["127.0.0.1"], "strict"),
    ("all_except_health", ["0.0.0.0"], "all_except_health"),
    ("off", ["127.0.0.1"], "off"),
])
def test_auto_is_resolved_against_where_the_gateway_listens(mode, hosts, expected):
    assert resolve_inbound_auth(mode, "k", hosts, allow_public=False).mode == expected


@pytest.mark.parametrize(("mode", "key", "hosts", "words"), [
    ("off", "k", ["0.0.0.0"], "with inbound auth off"),
    ("off", "", [""], "Refusing to listen on *"),
    ("auto", "", ["0.0.0.0"], "without ag_api_key"),
    ("strict", "", ["10.0.0.1"], "without ag_api_key"),
    ("strict", "", ["127.0.0.1"], "requires ag_api_key"),
    ("all_except_health", "", ["127.0.0.1"], "requires ag_api_key"),
    ("maybe", "k", ["127.0.0.1"], "is not one of"),
])
def test_configurations_that_expose_the_accounts_are_refused(mode, key, hosts, words):
    with pytest.raises(ValueError, match=words.replace("*", r"\*")):
        resolve_inbound_auth(mode, key, hosts, allow_public=False)


def test_the_refusal_says_how_to_fix_it():
    with pytest.raises(ValueError) as e:
        resolve_inbound_auth("off", "", ["0.0.0.0"], allow_public=False)
    for fix in ("ag_api_key", "listen_host=127.0.0.1", "ag_allow_unauthenticated_public=true"):
        assert fix in str(e.value)


def test_forcing_a_public_gateway_without_a_key_opens_it():
    forced = resolve_inbound_auth("auto", "", ["0.0.0.0"], allow_public=True)
    assert forced == InboundAuth("off", "", ("0.0.0.0",))
    assert resolve_inbound_auth("strict", "k", ["0.0.0.0"], allow_public=True).mode == "strict"


@pytest.mark.parametrize(("text", "size"), [("32m", 32 << 20), ("512k", 512 << 10), ("1g", 1 << 30),
                                            ("1048576", 1 << 20), ("16MiB", 16 << 20), (" 2 MB ", 2 << 20)])
def test_sizes(text, size):
    assert parse_size(text, what="ag_body_limit") == size


@pytest.mark.parametrize("text", ["", "0", "-1", "12x", "m"])
def test_bad_sizes_name_the_option(text):
    with pytest.raises(ValueError, match="ag_body_limit"):
        parse_size(text, what="ag_body_limit")


def test_mapping_file_keeps_file_order():
    assert parse_model_map_file(b'{"b": "x", "a*": "y"}', path="m.json") == (("b", "x"), ("a*", "y"))


@pytest.mark.parametrize(("data", "words"), [(b"nope", "not valid JSON"), (b"[]", "JSON object"),
                                             (b'{"a": 3}', "not a string"), (b'{"a": ""}', "not FROM=TO"),
                                             (b'{"a": "x*"}', "cannot contain")])
def test_bad_mapping_files_name_the_file_and_the_problem(data, words):
    with pytest.raises(ValueError, match=words) as e:
        parse_model_map_file(data, path="/etc/m.json")
    assert "ag_model_map_file: /etc/m.json" in str(e.value)


def test_secret_references_are_resolved_from_the_environment_and_files(tmp_path, monkeypatch):
    monkeypatch.setenv("GW_TEST_SECRET", "from-env")
    (tmp_path / "secret").write_text("from-file\n")
    assert resolve_secret("env:GW_TEST_SECRET", what="ag_api_key") == "from-env"
    assert resolve_secret(f"file:{tmp_path / 'secret'}", what="ag_api_key") == "from-file"
    assert resolve_secret("plain-value", what="ag_api_key") == "plain-value"
    assert resolve_secret("", what="ag_api_key") == ""


@pytest.mark.parametrize(("value", "words"), [
    ("env:GW_TEST_UNSET_VARIABLE", "GW_TEST_UNSET_VARIABLE is not set"),
    ("file:/nonexistent/secret", "cannot read /nonexistent/secret"),
])
def test_a_broken_secret_reference_names_the_option_and_the_reference(value, words):
    with pytest.raises(ValueError, match="ag_oauth_client_secret") as e:
        resolve_secret(value, what="ag_oauth_client_secret")
    assert words in str(e.value) and value in str(e.value)


@pytest.mark.parametrize(("value", "sent"), [
    ("4.5.0", "Antigravity/4.5.0 (X11; Linux x86_64) Chrome/132.0.6834.160 Electron/39.2.3"),
    (" 1.14.2 ", "Antigravity/1.14.2 (X11; Linux x86_64) Chrome/132.0.6834.160 Electron/39.2.3"),
    ("Antigravity/9.9.9 (Macintosh)", "Antigravity/9.9.9 (Macintosh)"),
])
def test_ag_user_agent_takes_a_version_alone_or_a_whole_string(value, sent):
    from antigravity_gw.settings import parse_user_agent

    assert parse_user_agent(value) == sent


@pytest.mark.parametrize("value", ["", "Antigravity/1\r\nX-Evil: 1"])
def test_ag_user_agent_refuses_empty_and_control_characters(value):
    from antigravity_gw.settings import parse_user_agent

    with pytest.raises(ValueError, match="ag_user_agent"):
        parse_user_agent(value)


def test_quota_and_fallback_options_are_checked():
    from antigravity_gw.settings import parse_model_map, parse_non_negative, parse_percent

    assert parse_model_map(["gemini-3-*=gemini-2.5-pro"], what="ag_model_fallback") == (
        ("gemini-3-*", "gemini-2.5-pro"),)
    with pytest.raises(ValueError, match="ag_model_fallback: 'x' is not FROM=TO"):
        parse_model_map(["x"], what="ag_model_fallback")
    assert parse_percent(10, what="ag_quota_floor") == 10.0
    for bad in (-1, 100):
        with pytest.raises(ValueError, match="ag_quota_floor"):
            parse_percent(bad, what="ag_quota_floor")
    with pytest.raises(ValueError, match="ag_quota_refresh"):
        parse_non_negative(-5, what="ag_quota_refresh")


def test_a_keys_file_counts_as_a_key_and_turns_auto_on_even_on_loopback():
    assert resolve_inbound_auth("auto", "", ["127.0.0.1"], allow_public=False, client_keys=True).mode == (
        "all_except_health")
    assert resolve_inbound_auth("strict", "", ["0.0.0.0"], allow_public=False,
                                client_keys=True).mode == "strict"
    assert resolve_inbound_auth("off", "", ["127.0.0.1"], allow_public=False, client_keys=True).mode == "off"


def test_gemini3_thinking_mode_is_level_or_budget() -> None:
    from antigravity_gw.settings import parse_gemini3_thinking

    assert parse_gemini3_thinking("budget") == "budget"
    with pytest.raises(ValueError, match="ag_cloudcode_gemini3_thinking: 'both' is not one of level, budget"):
        parse_gemini3_thinking("both")


def test_state_url_takes_redis_urls_and_references_and_never_quotes_a_password(monkeypatch):
    from antigravity_gw.settings import parse_state_url

    assert parse_state_url("") == ""
    assert parse_state_url(" redis://127.0.0.1:6379/0 ") == "redis://127.0.0.1:6379/0"
    assert parse_state_url("rediss://:pw@cache:6380") == "rediss://:pw@cache:6380"
    monkeypatch.setenv("AG_TEST_STATE_URL", "redis://:pw@cache/1")
    assert parse_state_url("env:AG_TEST_STATE_URL") == "redis://:pw@cache/1"
    with pytest.raises(ValueError, match="not a redis://") as bad:
        parse_state_url("http://:hunter2@cache:6379")
    assert "hunter2" not in str(bad.value)
    with pytest.raises(ValueError, match="database number"):
        parse_state_url("redis://cache/zero")
