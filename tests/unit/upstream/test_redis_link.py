"""The link to the shared Redis: deadlines, degraded mode, events (on a real redis-server)."""

from __future__ import annotations

import asyncio
import time

import pytest

from antigravity_gw.upstream.redis_link import CHANNEL, RedisLink, Unavailable, describe


def test_the_description_never_holds_the_password():
    assert describe("redis://user:s3cret@cache.internal:6380/2") == "redis://cache.internal:6380/2"
    assert describe("rediss://:s3cret@h/0") == "rediss://h/0"


async def test_a_call_to_a_link_that_is_down_fails_at_once(redis_server):
    link = RedisLink(redis_server.url, retry_every=0.1)
    await link.start()
    try:
        assert await link.run(lambda r: r.ping())
        redis_server.stop()
        with pytest.raises(Unavailable):
            await link.run(lambda r: r.ping())
        assert not link.up
        started = time.monotonic()
        for _ in range(100):
            with pytest.raises(Unavailable):
                await link.run(lambda r: r.ping())
        assert time.monotonic() - started < 0.1  # no request waits for a server known to be down
    finally:
        await link.stop()


async def test_a_slow_redis_costs_a_call_at_most_its_deadline(redis_server):
    link = RedisLink(redis_server.url, timeout=0.2, retry_every=0.1)
    await link.start()
    try:
        started = time.monotonic()
        with pytest.raises(Unavailable):
            await link.run(lambda r: r.execute_command("DEBUG", "SLEEP", "1"))
        assert time.monotonic() - started < 0.6
        assert link.up  # one slow moment is not an outage
        for _ in range(2):
            with pytest.raises(Unavailable):
                await link.run(lambda r: r.ping())  # the server still sleeps
        assert not link.up  # three slow calls in a row are
    finally:
        await link.stop()


async def test_events_reach_the_other_instances_handlers_not_their_own(redis_server):
    a, b = RedisLink(redis_server.url), RedisLink(redis_server.url)
    seen_by: dict[str, list[dict]] = {"a": [], "b": []}
    a.on_event("ping", seen_by["a"].append)
    b.on_event("ping", seen_by["b"].append)
    await a.start()
    await b.start()
    try:
        await a.publish("ping", n=1)
        await a.run(lambda r: r.publish(CHANNEL, b"not json"))  # ignored, the listener goes on
        await a.publish("ping", n=2)
        deadline = time.monotonic() + 3
        while len(seen_by["b"]) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert [e["n"] for e in seen_by["b"]] == [1, 2]
        assert seen_by["a"] == []
    finally:
        await a.stop()
        await b.stop()
