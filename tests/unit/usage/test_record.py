"""RequestRecord: which requests are billed, and their token total."""

from __future__ import annotations

import pytest

from antigravity_gw.usage.record import MODEL_ROUTES, RequestRecord


@pytest.mark.parametrize("route", sorted(MODEL_ROUTES))
def test_model_routes_are_billed(route: str) -> None:
    assert RequestRecord(ts=0, method="POST", path="/v1/x", route=route).billed


@pytest.mark.parametrize("route", ["", "models", "health", "metrics"])
def test_other_routes_are_not_billed(route: str) -> None:
    assert not RequestRecord(ts=0, method="GET", path="/v1/x", route=route).billed


def test_total_counts_prompt_and_completion_tokens_once() -> None:
    # cached and reasoning tokens are parts of prompt and completion: counting them again would bill twice
    record = RequestRecord(ts=0, method="POST", path="/v1/chat/completions", route="chat.completions",
                           prompt_tokens=12, completion_tokens=34, cached_tokens=5, reasoning_tokens=6)
    assert record.total_tokens == 46
