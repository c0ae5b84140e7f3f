"""Token refreshes across instances on a real redis-server: one refresh, rotations and disables shared."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from antigravity_gw.upstream.accounts import Account
from antigravity_gw.upstream.redis_link import RedisLink
from antigravity_gw.upstream.shared_tokens import SharedTokens


class Files:
    def __init__(self) -> None:
        self.saved: list[tuple[str, str]] = []
        self.disabled: list[str] = []

    async def save_tokens(self, account: Account) -> None:
        self.saved.append((account.access_token, account.refresh_token))

    async def save_disabled(self, account: Account) -> None:
        self.disabled.append(account.disabled_reason)


def expired(name: str = "a") -> Account:
    return Account(name, f"{name}@example.com", "oauth", Path(f"{name}.json"), access_token="at-old",
                   refresh_token="rt-1", expiry_timestamp=1.0)


class Instance:
    def __init__(self, url: str) -> None:
        self.link = RedisLink(url, retry_every=0.1)
        self.files = Files()
        self.account = expired()
        self.tokens = SharedTokens(self.link, self.files, lambda i: self.account if i == "a" else None,
                                   lambda: [self.account])
        self.refreshes = 0

    async def refresh_here(self) -> str:
        """What TokenService._refresh does, against a token endpoint that rotates and is slow."""
        self.refreshes += 1
        used = self.account.refresh_token
        await asyncio.sleep(0.3)
        self.account.apply_refresh(used, f"at-new-by-{id(self)}", time.time() + 3600, "rt-2")
        return self.account.access_token


@pytest.fixture
async def pair(redis_server) -> AsyncIterator[tuple[Instance, Instance]]:
    """Two instances on one redis-server, linked."""
    a, b = Instance(redis_server.url), Instance(redis_server.url)
    await a.link.start()
    await b.link.start()
    try:
        yield a, b
    finally:
        await a.link.stop()
        await b.link.stop()


async def until(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    """Wait until ``condition`` holds or ``timeout`` s have passed (the caller asserts it)."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


async def test_two_instances_refresh_an_account_once_and_both_use_the_rotated_token(pair):
    a, b = pair
    got = await asyncio.gather(a.tokens.refresh(a.account, a.refresh_here),
                               b.tokens.refresh(b.account, b.refresh_here))
    assert a.refreshes + b.refreshes == 1
    assert got[0] == got[1]
    assert a.account.refresh_token == b.account.refresh_token == "rt-2"
    waiter = b if a.refreshes else a
    assert "rt-1" in waiter.account.retired_refresh_tokens  # a stale file can never bring it back
    assert waiter.files.saved == [(got[0], "rt-2")]  # written to that host's own copy of the file


async def test_without_redis_each_instance_refreshes_on_its_own(redis_server):
    a = Instance(redis_server.url)
    await a.link.start()
    redis_server.stop()
    try:
        started = time.monotonic()
        assert (await a.tokens.refresh(a.account, a.refresh_here)).startswith("at-new")
        assert a.refreshes == 1 and time.monotonic() - started < 1.5
    finally:
        await a.link.stop()


async def test_a_revoked_grant_disables_the_account_on_every_instance(pair):
    a, b = pair
    a.account.disable("invalid_grant: Token has been expired or revoked.", int(time.time()))
    await a.tokens.disabled(a.account)
    await until(lambda: b.account.disabled)
    assert b.account.disabled
    assert b.files.disabled == ["invalid_grant: Token has been expired or revoked."]


async def test_a_disable_and_an_enable_made_by_hand_reach_every_instance(pair):
    a, b = pair
    for disabled in (True, False):
        if disabled:
            a.account.disable("disabled with ag.accounts.disable", int(time.time()))
        else:
            a.account.enable()
        await a.tokens.account_state(a.account)
        await until(lambda: b.account.disabled == disabled)  # noqa: B023 (awaited within the iteration)
        assert b.account.disabled is disabled
    # written to b's own copy of the file each time
    assert b.files.disabled == ["disabled with ag.accounts.disable", ""]


async def test_a_project_found_by_one_instance_is_saved_by_the_others(pair):
    a, b = pair
    a.account.project_id = b.account.project_id = ""
    a.account.set_project("proj-found")
    await a.tokens.share_project(a.account)
    await until(lambda: bool(b.account.project_id))
    assert b.account.project_id == "proj-found" and len(b.files.saved) == 1
