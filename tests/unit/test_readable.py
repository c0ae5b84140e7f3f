"""readable.py: the comments mitmweb's flow list shows, short and never cut mid-word."""

from __future__ import annotations

import pytest

from antigravity_gw import readable


def test_a_served_request_reads_models_account_attempts_tokens_and_time():
    assert readable.request_comment("gpt-4o", "gemini-2.5-flash", account="a@example.com", attempts=2,
                                    tokens=(7, 5, 0, 0), ms=45.4) == (
        "gpt-4o → gemini-2.5-flash · a@example.com · 2 attempts · 7+5 tok · 45 ms")


def test_one_attempt_and_unknown_parts_are_left_out():
    assert readable.request_comment("gpt-4o", "gemini-2.5-flash", attempts=1) == "gpt-4o → gemini-2.5-flash"


def test_a_problem_comes_first_with_a_warning():
    text = readable.request_comment("gpt-4o", "gemini-2.5-flash", account="a@example.com", attempts=1,
                                    problem="stream ended with an error: broke off")
    assert text == "⚠ stream ended with an error: broke off · gpt-4o → gemini-2.5-flash · a@example.com"


def test_a_fallback_is_named():
    assert readable.models("gpt-4o", "gemini-2.5-flash", "gemini-2.5-pro") == (
        "gpt-4o → gemini-2.5-flash (fallback from gemini-2.5-pro)")


def test_a_failed_attempt_reads_number_total_status_account_and_cooldown():
    assert readable.attempt_comment(1, 2, 429, "QUOTA_EXHAUSTED", "a@example.com", cooldown=3.2) == (
        "⚠ attempt 1/2: 429 QUOTA_EXHAUSTED · a@example.com · cooling 3 s")


def test_a_failed_attempt_without_an_answer_says_what_went_wrong():
    assert readable.attempt_comment(2, 0, None, "", "b@example.com", error="connection refused") == (
        "⚠ attempt 2: connection refused · b@example.com")


@pytest.mark.parametrize(("value", "shown"), [(3, "3 s"), (90, "90 s"), (600, "10 min"), (7200, "2 h")])
def test_cooldowns_read_in_the_unit_people_use(value, shown):
    assert readable.seconds(value) == shown


def test_an_error_answer_puts_status_and_code_first():
    assert readable.error_comment(404, "not_found", "Unknown path /v1/v1/chat/completions.") == (
        "⚠ 404 not_found · Unknown path /v1/v1/chat/completions.")


def test_long_text_is_cut_at_a_word_boundary_with_an_ellipsis():
    text = "word " * 100
    short = readable.shorten(text, 50)
    assert len(short) <= 50 and short.endswith("word…") and "  " not in short


def test_newlines_do_not_reach_the_one_line_column():
    assert readable.shorten("Google said:\n  quota\texhausted") == "Google said: quota exhausted"


def test_a_word_longer_than_the_limit_is_still_cut():
    assert readable.shorten("x" * 100, 10) == "x" * 9 + "…"
