import pytest

from antigravity_gw.upstream import catalog
from antigravity_gw.upstream.catalog import resolve_model


@pytest.mark.parametrize(("model", "table", "expected"), [
    ("gpt-4o", (("gpt-4o", "gemini-3-pro"),), "gemini-3-pro"),
    ("gpt-4o", (("gpt-*", "a"), ("gpt-4*", "b")), "b"),  # most specific wildcard wins
    ("gpt-4o", (("*-4o", "a"), ("gpt*", "b")), "a"),  # ties by literal length: "-4o" (3) = "gpt" (3) -> order
    ("gpt-4o", (("gpt*", "b"), ("*-4o", "a")), "b"),
    ("x-mini-y", (("*mini*", "m"),), "m"),
    ("gpt-4o-mini", (), "gemini-2.5-flash"),  # built-in default
    ("gemini-2.5-pro", (), "gemini-2.5-pro"),  # pass-through
    ("gpt-4o", (("gpt-4o", "exact"), ("gpt-4o*", "wild")), "exact"),
])
def test_resolve_model_order(model, table, expected):
    assert resolve_model(model, table) == expected


def test_model_list_puts_upstream_models_first_and_aliases_once():
    from antigravity_gw.upstream.catalog import model_list
    listed = model_list(["gpt-4o", "gemini-2.5-pro", "gpt-4o"], ["gemini-2.5-pro", "gemini-2.5-flash"])
    assert [(m["id"], m["owned_by"]) for m in listed] == [
        ("gemini-2.5-flash", "google"), ("gemini-2.5-pro", "google"), ("gpt-4o", "antigravity-gateway")]
    assert set(listed[0]) == {"id", "object", "created", "owned_by"}


def test_aliases_are_the_exact_names_and_fallback_the_targets():
    from antigravity_gw.upstream.catalog import aliases, fallback_models
    table = (("gpt-4o", "g1"), ("o*", "g2"))
    assert aliases(table) == ["gpt-4o"]
    assert fallback_models(table)[:2] == ["g1", "g2"]
    assert "gemini-2.5-flash" in fallback_models(())


def test_fallback_for_matches_exact_then_the_most_specific_wildcard():
    from antigravity_gw.upstream.catalog import fallback_for

    table = (("gemini-*", "a"), ("gemini-3-*", "b"), ("gemini-3-pro", "c"))
    assert fallback_for("gemini-3-pro", table) == "c"
    assert fallback_for("gemini-3-flash", table) == "b"
    assert fallback_for("gemini-2.5-pro", table) == "a"
    assert fallback_for("claude-sonnet-4-6", table) is None
    assert fallback_for("gpt-4o", ()) is None  # no built-in defaults, unlike model mapping


@pytest.mark.parametrize(("client", "upstream"), [
    ("claude-opus-4-6", "claude-opus-4-6-thinking"), ("claude-opus-4.6-thinking", "claude-opus-4-6-thinking"),
    ("claude-opus-4-6-20260201", "claude-opus-4-6-thinking"),
    ("claude-opus-4-5-thinking", "claude-opus-4-6-thinking"),
    ("claude-opus-4-6-thinking", "claude-opus-4-6-thinking"),
    ("claude-sonnet-4-5-20250929", "claude-sonnet-4-6"),
    ("claude-3-5-sonnet-latest", "claude-sonnet-4-6"), ("claude-haiku-4-5", "claude-sonnet-4-6"),
    ("claude-sonnet-4-6", "claude-sonnet-4-6"),
])
def test_claude_names_clients_send_reach_antigravitys_claude(client: str, upstream: str) -> None:
    assert catalog.resolve_model(client, ()) == upstream


def test_builtin_claude_aliases_are_listed_only_where_their_target_is_served() -> None:
    assert catalog.builtin_aliases(["gemini-2.5-flash"]) == []
    served = catalog.builtin_aliases(["claude-opus-4-6-thinking"])
    assert served == ["claude-opus-4-6", "claude-opus-4-5", "claude-opus-4"]


def test_the_anthropic_model_list_is_one_page_of_anthropic_models():
    from antigravity_gw.upstream.catalog import anthropic_model_list, model_list

    page = anthropic_model_list(model_list(["my-alias"], ["gemini-2.5-flash"]))
    assert page == {"data": [
        {"type": "model", "id": "gemini-2.5-flash", "display_name": "gemini-2.5-flash",
         "created_at": "2023-11-14T22:13:20Z"},
        {"type": "model", "id": "my-alias", "display_name": "my-alias",
         "created_at": "2023-11-14T22:13:20Z"}],
        "has_more": False, "first_id": "gemini-2.5-flash", "last_id": "my-alias"}
    assert anthropic_model_list([]) == {"data": [], "has_more": False, "first_id": None, "last_id": None}
