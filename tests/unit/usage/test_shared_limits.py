"""Client keys' limits across instances on a real redis-server."""

from __future__ import annotations

import pytest

from antigravity_gw import errors
from antigravity_gw.upstream.redis_link import RedisLink
from antigravity_gw.usage.keys import ClientKey, KeyLimits, digest
from antigravity_gw.usage.shared_limits import SharedKeyLimits

NOW = 1_765_000_000.0
BOB = ClientKey("bob", digest("sk-bob-123456"), rpm=3)
CAROL = ClientKey("carol", digest("sk-carol-12345"), daily_tokens=100)


@pytest.fixture
async def two(redis_server):
    links = [RedisLink(redis_server.url, retry_every=0.1) for _ in range(2)]
    for link in links:
        await link.start()
    clock = [NOW]
    yield [SharedKeyLimits(link, KeyLimits(lambda: clock[0]), lambda: clock[0]) for link in links], clock
    for link in links:
        await link.stop()


async def test_a_keys_rpm_holds_across_instances(two):
    (a, b), clock = two
    await a.admit(BOB, "m")
    await b.admit(BOB, "m")
    await a.admit(BOB, "m")
    with pytest.raises(errors.KeyRateLimited) as refused:
        await b.admit(BOB, "m")
    assert refused.value.headers == {"retry-after": "60"}
    clock[0] += 60.5  # the minute slid past the first three
    await b.admit(BOB, "m")


async def test_tokens_spent_on_one_instance_count_against_the_budget_on_the_other(two):
    (a, b), _ = two
    await b.admit(CAROL, "m")
    await a.spend("carol", 100)
    with pytest.raises(errors.BudgetExceeded):
        await b.admit(CAROL, "m")


async def test_the_model_list_is_checked_before_redis(two):
    (a, _), _ = two
    with pytest.raises(errors.ModelNotAllowed):
        await a.admit(ClientKey("dan", digest("sk-dan-1234567"), models=("gemini-*",), rpm=1), "gpt-4o")


async def test_without_redis_the_instances_own_count_decides(two, redis_server):
    (a, _), _ = two
    redis_server.stop()
    for _ in range(3):
        await a.admit(BOB, "m")
    with pytest.raises(errors.KeyRateLimited):
        await a.admit(BOB, "m")
