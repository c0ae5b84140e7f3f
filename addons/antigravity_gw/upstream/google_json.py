"""The side calls the gateway makes to Google with an account's credential (listing models, asking
quota): one JSON object back, and for Cloud Code the same base-URL fallback order as the attempts.

A call that does not answer usefully (a status other than 200, JSON that is not an object) raises the
caller's own ``GoogleAnswerError`` subclass, whose message names the call and the status, never a
secret; a body that is not JSON at all is a ``ValueError`` (``orjson.JSONDecodeError``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import orjson


class GoogleAnswerError(Exception):
    """Google did not answer a side call usefully (no secret in the message)."""


async def json_object(session: aiohttp.ClientSession, method: str, url: str, *, headers: dict[str, str],
                      body: bytes | None, timeout: aiohttp.ClientTimeout, name: str,
                      error: type[GoogleAnswerError] = GoogleAnswerError) -> dict[str, Any]:
    """The JSON object ``url`` answers; ``name`` says which call it was in an ``error``."""
    async with session.request(method, url, headers=headers, data=body, timeout=timeout) as resp:
        raw = await resp.read()
        if resp.status != 200:
            raise error(f"{name} answered {resp.status}")
    data = orjson.loads(raw)
    if not isinstance(data, dict):
        raise error(f"{name} answered JSON that is not an object")
    return data


async def first_answer[T](bases: Sequence[str], ask: Callable[[str], Awaitable[T]],
                          error: type[GoogleAnswerError] = GoogleAnswerError) -> T:
    """``ask(base)`` of each Cloud Code base in turn (the attempts' fallback order): the first answer;
    the last failure when none answers."""
    problem: Exception = error("no Cloud Code base URL")
    for base in bases:
        try:
            return await ask(base)
        except (GoogleAnswerError, aiohttp.ClientError, TimeoutError) as e:
            problem = e
    raise problem
