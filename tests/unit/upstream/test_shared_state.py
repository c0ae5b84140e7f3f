"""Shared pool state on a real redis-server: two instances (two links) in one process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from antigravity_gw.upstream.accounts import Account
from antigravity_gw.upstream.background import BackgroundTasks
from antigravity_gw.upstream.pool import Cooldown, MemoryState, Pool
from antigravity_gw.upstream.quota import AccountQuota, Bucket, ModelQuota, QuotaBook
from antigravity_gw.upstream.redis_link import RedisLink
from antigravity_gw.upstream.shared_state import (
    SharedPoolState,
    SharedQuota,
    SharedSticky,
    decode_quota,
    encode_quota,
    shared_scheduler_for,
)


def account(name: str) -> Account:
    return Account(name, f"{name}@example.com", "oauth", Path(f"{name}.json"), access_token="at",
                   refresh_token="rt", expiry_timestamp=time.time() + 3600)


async def eventually(check: Callable[[], Any], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("not within the time")


@pytest.fixture
async def links(redis_server) -> AsyncIterator[Callable[[], RedisLink]]:
    made: list[RedisLink] = []

    async def make() -> RedisLink:
        link = RedisLink(redis_server.url, retry_every=0.1)
        made.append(link)
        return link

    yield make  # type: ignore[misc]
    for link in made:
        await link.stop()


async def test_a_cooldown_on_one_instance_reaches_the_other(links):
    a_link, b_link = await links(), await links()
    a, b = SharedPoolState(a_link), SharedPoolState(b_link)
    await a_link.start()
    await b_link.start()
    until = time.time() + 30
    await a.add_cooldown("acc1", Cooldown(until, "rate limited", "gemini-2.5-pro"))

    async def b_sees_it() -> bool:
        live = await b.cooldowns(["acc1"], time.time())
        return live.get("acc1") == [Cooldown(until, "rate limited", "gemini-2.5-pro")]

    await eventually(b_sees_it)
    await a.clear_cooldowns(Account("acc1", "", "oauth", None).id)

    async def b_forgot_it() -> bool:
        return not await b.cooldowns(["acc1"], time.time())

    await eventually(b_forgot_it)


async def test_a_later_cooldown_is_not_shortened_by_an_earlier_one(links):
    a_link, b_link = await links(), await links()
    a, b = SharedPoolState(a_link), SharedPoolState(b_link)
    await a_link.start()
    await b_link.start()
    now = time.time()
    await a.add_cooldown("acc1", Cooldown(now + 60, "long"))
    await b.add_cooldown("acc1", Cooldown(now + 5, "short"))
    stored = await a_link.client.hgetall("ag:cd:acc1")
    assert stored == {b"": f"{now + 60!r}|long".encode()}
    assert 55_000 < await a_link.client.pttl("ag:cd:acc1") <= 60_000  # the key lives as long as its cooldown


async def test_instances_that_prefer_different_accounts_bind_a_conversation_to_one(links):
    a_link, b_link = await links(), await links()
    await a_link.start()
    await b_link.start()
    pool_a, pool_b = Pool(SharedPoolState(a_link)), Pool(SharedPoolState(b_link))
    accounts = [account("acc1"), account("acc2")]
    for pool, link in ((pool_a, a_link), (pool_b, b_link)):
        pool.replace(accounts)
        pool.scheduler = shared_scheduler_for("sticky", link)
    await pool_a.state.touch("acc1", time.time())  # A's least recently used: acc2; B's: acc1
    first_a, first_b = await asyncio.gather(pool_a.pick("m", session_key="c-1"),
                                            pool_b.pick("m", session_key="c-1"))
    assert first_a is not None and first_b is not None and first_a.id == first_b.id
    # the bound account cools down (seen by B): B rebinds, and A follows B's binding
    await pool_b.cool_down(first_b, 30, "rate limited")
    moved = await pool_b.pick("m", session_key="c-1")
    assert moved is not None and moved.id != first_b.id
    await eventually(lambda: _picks(pool_a, "c-1", moved.id))


async def _picks(pool: Pool, session: str, expected: str) -> bool:
    chosen = await pool.pick("m", session_key=session)
    return chosen is not None and chosen.id == expected


async def test_without_redis_the_pool_serves_from_local_state_and_says_so_once(redis_server, links, caplog):
    link = await links()
    state = SharedPoolState(link)
    pool = Pool(state, scheduler=SharedSticky(link))
    pool.replace([account("acc1"), account("acc2")])
    await link.start()
    redis_server.stop()
    started = time.monotonic()
    for _ in range(5):  # every call after the first failure skips Redis at once
        chosen = await pool.pick("m", session_key="c-1")
        assert chosen is not None
        await pool.cool_down(chosen, 0.01, "blip")
        await asyncio.sleep(0.02)
    assert time.monotonic() - started < 2.0
    assert [r.message for r in caplog.records].count(
        f"shared state: Redis at {link.where} is unreachable (ConnectionError); serving from this instance's "
        "local state (degraded) until it returns") == 1
    assert not link.up


async def test_cooldowns_learned_during_an_outage_are_shared_when_redis_returns(redis_server, links, caplog):
    a_link, b_link = await links(), await links()
    a, b = SharedPoolState(a_link), SharedPoolState(b_link)
    await a_link.start()
    await b_link.start()
    redis_server.stop()
    await eventually(_down(a_link))
    until = time.time() + 60
    await a.add_cooldown("acc2", Cooldown(until, "quota"))
    assert not await b.cooldowns(["acc2"], time.time())
    redis_server.start()  # an empty server, as after a restart
    await eventually(lambda: _has(b, "acc2"), timeout=5)
    assert any("is back; resyncing" in r.message for r in caplog.records)


def _down(link: RedisLink) -> Callable[[], Any]:
    async def check() -> bool:
        return not link.up

    return check


async def _has(state: SharedPoolState, account_id: str) -> bool:
    return account_id in await state.cooldowns([account_id], time.time())


async def test_a_redis_that_is_down_at_start_up_is_degraded_mode_not_an_error(redis_server, caplog):
    port = redis_server.port
    redis_server.stop()
    link = RedisLink(f"redis://127.0.0.1:{port}/0", retry_every=0.1)
    state = SharedPoolState(link, MemoryState())
    try:
        await link.start()
        assert not link.up
        await state.add_cooldown("acc1", Cooldown(time.time() + 30, "x"))  # local only, at once
        assert await state.cooldowns(["acc1"], time.time())
        redis_server.start()
        await eventually(lambda: _stored(link, "ag:cd:acc1"), timeout=5)
    finally:
        await link.stop()
    assert any("not reachable at start-up" in r.message for r in caplog.records)


async def _stored(link: RedisLink, key: str) -> bool:
    return link.up and bool(await link.client.exists(key))


QUOTA = AccountQuota(tier="Google AI Pro", fetched_at=1000.0,
                     models={"gemini-2.5-pro": ModelQuota(0.0, 5000.0),
                             "gemini-2.5-flash": ModelQuota(0.25, None)},
                     buckets=(Bucket("gemini-5h", "Gemini Models", "5h", 0.9, 6000.0),))


def test_a_quota_snapshot_survives_the_trip_through_redis():
    assert decode_quota(encode_quota(QUOTA)) == QUOTA
    assert decode_quota({"tier": "x"}) is None


async def test_a_quota_snapshot_taken_by_one_instance_informs_the_others_routing(links):
    a_link, b_link = await links(), await links()
    tasks = BackgroundTasks("test")
    a_book, b_book = QuotaBook(clock=lambda: 2000.0), QuotaBook(clock=lambda: 2000.0)
    SharedQuota(a_link, a_book, tasks)
    SharedQuota(b_link, b_book, tasks)
    await a_link.start()
    await b_link.start()
    a_book.store("acc1", QUOTA)

    async def b_routes_around_it() -> bool:
        return b_book.blocked("gemini-2.5-pro") == {"acc1": 5000.0}

    await eventually(b_routes_around_it)
    b_book.load("acc1", replace(QUOTA, fetched_at=3000.0, tier="newer"))
    a_book.store("acc1", QUOTA)  # an older snapshot does not replace a newer one
    await tasks.wait()
    await asyncio.sleep(0.2)
    assert b_book.get("acc1").tier == "newer"
