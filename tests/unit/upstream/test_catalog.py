import pytest

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
