"""Helpers of the e2e tests of the account pool (one gateway or several, several accounts): an openai
client, a chat whose raw answer names the account that served it, and polling for what happens later."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import openai

FLASH = "gemini-2.5-flash"


def client_for(gw: Any, timeout: float = 30, *, key: str = "sk-test") -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0, timeout=timeout)


def chat(client: openai.OpenAI, text: str, model: str = FLASH, **kw: Any) -> Any:
    """One chat completion; its raw answer, whose headers say which account served it."""
    return client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": text}], **kw)


def account_of(raw: Any) -> str:
    return raw.headers["x-account-email"].split("@")[0]


def credentials(emulator: Any, **filters: Any) -> list[str]:
    """The credential of each API call Google received, in order."""
    return [r["credential"] for r in emulator.requests(kind="api", **filters)]


def wait_until[T](predicate: Callable[[], T], timeout: float = 8.0, interval: float = 0.1) -> T:
    """The first true value of ``predicate``, polled until ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(interval)
    raise AssertionError(f"not true within {timeout}s")
