"""upstream/pool.py: selection modes, cooldowns and state over an injected clock (no I/O)."""

from pathlib import Path

import pytest

from antigravity_gw.upstream.accounts import Account
from antigravity_gw.upstream.pool import (
    Cooldown,
    LeastRecentlyUsed,
    MemoryState,
    Pool,
    RoundRobin,
    Sticky,
    conversation_key,
    scheduler_for,
)


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def acct(name: str, **kw) -> Account:
    return Account(name, f"{name}@example.com", "oauth", Path(f"/accounts/{name}.json"),
                   access_token=f"at-{name}", refresh_token=f"rt-{name}", expiry_timestamp=2e9, **kw)


def make_pool(names="abc", scheduler=None, clock=None) -> Pool:
    pool = Pool(clock=clock or Clock(), scheduler=scheduler or RoundRobin())
    pool.replace([acct(n) for n in names])
    return pool


async def picks(pool: Pool, n: int, model: str = "m", **kw) -> list[str]:
    out = []
    for _ in range(n):
        a = await pool.pick(model, **kw)
        out.append(a.id if a else None)
    return out


async def test_round_robin_cycles_through_the_ready_accounts():
    assert await picks(make_pool(), 6) == ["a", "b", "c", "a", "b", "c"]


async def test_lru_picks_the_account_used_longest_ago():
    clock = Clock()
    pool = make_pool(scheduler=LeastRecentlyUsed(), clock=clock)
    seen = []
    for _ in range(4):
        clock.now += 1
        seen.append((await pool.pick("m")).id)
    assert seen == ["a", "b", "c", "a"]
    await pool.state.touch("b", clock.now + 1)  # b just served someone else: c and a are older
    clock.now += 2
    assert (await pool.pick("m")).id == "c"


async def test_a_cooling_account_is_skipped_for_its_model_only():
    clock = Clock()
    pool = make_pool(scheduler=LeastRecentlyUsed(), clock=clock)
    await pool.cool_down(pool.find("a"), 30, "quota exhausted", model="m")
    clock.now += 1
    assert "a" not in await picks(pool, 4, "m")
    assert (await pool.pick("other")).id == "a"  # other models of the account still work
    clock.now += 30
    assert "a" in await picks(pool, 3, "m")


async def test_an_account_cooldown_blocks_every_model_and_the_longer_cooldown_wins():
    clock = Clock()
    pool = make_pool("ab", clock=clock)
    a = pool.find("a")
    await pool.cool_down(a, 10, "forbidden")
    await pool.cool_down(a, 5, "shorter")  # does not shorten it
    assert set(await picks(pool, 4, "x")) == {"b"}
    assert await pool.ready_in("x", exclude={"b"}) == pytest.approx(10)
    clock.now += 10
    assert await pool.ready_in("x", exclude={"b"}) == 0.0


async def test_excluded_disabled_and_credential_less_accounts_are_never_picked():
    pool = make_pool("abcd")
    pool.find("b").disabled = True
    pool.find("c").refresh_token = pool.find("c").access_token = ""
    assert set(await picks(pool, 6, exclude={"a"})) == {"d"}
    assert await pool.pick("m", exclude={"a", "d"}) is None
    assert await pool.ready_in("m", exclude={"a", "d"}) is None


async def test_sticky_keeps_a_conversation_on_its_account_while_it_is_ready():
    clock = Clock()
    pool = make_pool(scheduler=Sticky(), clock=clock)
    first = (await pool.pick("m", session_key="conv-1")).id
    second = (await pool.pick("m", session_key="conv-2")).id
    assert first != second  # new conversations spread (least recently used)
    for _ in range(5):
        clock.now += 1
        assert (await pool.pick("m", session_key="conv-1")).id == first
    await pool.cool_down(pool.find(first), 60, "quota exhausted", model="m")
    moved = (await pool.pick("m", session_key="conv-1")).id
    assert moved != first
    clock.now += 61  # the old account is ready again; the conversation (and its cache) lives on the new one
    assert (await pool.pick("m", session_key="conv-1")).id == moved


async def test_sticky_moves_away_from_an_account_excluded_for_this_request():
    pool = make_pool(scheduler=Sticky())
    bound = (await pool.pick("m", session_key="k")).id
    other = (await pool.pick("m", session_key="k", exclude={bound})).id
    assert other != bound
    assert (await pool.pick("m", session_key="k")).id == other


async def test_sticky_without_a_key_and_after_the_binding_expired_falls_back_to_lru():
    clock = Clock()
    pool = make_pool(scheduler=Sticky(ttl=100), clock=clock)
    assert await picks(pool, 3) == ["a", "b", "c"]
    clock.now += 1
    assert (await pool.pick("m", session_key="k")).id == "a"
    clock.now += 1
    await pool.pick("m")  # b
    clock.now += 150  # the binding expired: LRU decides again (c is the oldest)
    assert (await pool.pick("m", session_key="k")).id == "c"


async def test_memory_state_bounds_its_bindings_and_drops_expired_cooldowns():
    state = MemoryState(max_bindings=2)
    for i in range(3):
        await state.bind(f"k{i}", "a", until=100.0)
    assert [await state.binding(f"k{i}", now=0.0) for i in range(3)] == [None, "a", "a"]
    await state.add_cooldown("a", Cooldown(10.0, "r", "m"))
    await state.add_cooldown("a", Cooldown(50.0, "r2"))
    assert await state.cooldowns(["a", "b"], now=20.0) == {"a": [Cooldown(50.0, "r2")]}
    assert await state.cooldowns(["a"], now=60.0) == {}
    assert await state.next_cursor() == 0 and await state.next_cursor() == 1


async def test_membership_changes_keep_objects_tokens_and_cooldowns():
    pool = make_pool("ab")
    a = pool.find("a")
    a.access_token, a.expiry_timestamp = "fresh", 3e9  # refreshed in memory
    await pool.cool_down(a, 60, "rate limited")
    pool.replace([acct("a"), acct("c")])  # a's file re-read, b removed, c added
    assert [x.id for x in pool.accounts] == ["a", "c"]
    assert pool.find("a") is a and a.access_token == "fresh"
    assert [s.state for s in await pool.status()] == ["cooling", "ready"]
    assert pool.find("a@example.com") is a and pool.find("b") is None


async def test_status_describes_every_account():
    clock = Clock()
    pool = make_pool("abc", clock=clock)
    pool.find("a").disabled, pool.find("a").disabled_reason = True, "invalid_grant: revoked"
    await pool.cool_down(pool.find("b"), 30, "quota exhausted", model="m")
    await pool.cool_down(pool.find("c"), 20, "rate limited", model="other")
    by_model = {s.account.id: (s.state, s.until, s.reason) for s in await pool.status("m")}
    assert by_model == {"a": ("disabled", None, "invalid_grant: revoked"),
                        "b": ("cooling", clock.now + 30, "quota exhausted"), "c": ("ready", None, "")}
    overall = await pool.status()
    assert [s.state for s in overall] == ["disabled", "ready", "ready"]  # model cooldowns only listed
    assert [c.model for c in overall[2].cooldowns] == ["other"]


def test_scheduler_for_knows_the_three_modes():
    modes = ("round_robin", "lru", "sticky")
    assert [type(scheduler_for(m)) for m in modes] == [RoundRobin, LeastRecentlyUsed, Sticky]
    with pytest.raises(ValueError, match="fastest"):
        scheduler_for("fastest")


def test_conversation_key_follows_the_system_prompt_and_the_first_user_turn():
    system = {"parts": [{"text": "You are terse."}]}
    turn1 = {"role": "user", "parts": [{"text": "Plan a trip"}]}
    later = [turn1, {"role": "model", "parts": [{"text": "Where?"}]},
             {"role": "user", "parts": [{"text": "Rome"}]}]
    k1 = conversation_key({"systemInstruction": system, "contents": [turn1]})
    assert k1.startswith("c-") and k1 == conversation_key({"systemInstruction": system, "contents": later})
    assert k1 != conversation_key({"contents": [turn1]})
    other_opening = [{"role": "user", "parts": [{"text": "x"}]}]
    assert k1 != conversation_key({"systemInstruction": system, "contents": other_opening})
    assert conversation_key({"contents": []}) == ""
    assert conversation_key({"contents": [turn1]}, hint="cache-7") == conversation_key({}, hint="cache-7")


async def test_invented_model_names_cannot_grow_an_accounts_cooldowns_without_bound() -> None:
    state = MemoryState(max_model_cooldowns=3)
    await state.add_cooldown("a", Cooldown(500.0, "account-wide"))
    for i in range(10):  # a client sending a new unknown model name each time: a 404 cooldown each
        await state.add_cooldown("a", Cooldown(100.0 + i, "model not found", f"typo-{i}"))
    live = (await state.cooldowns(["a"], now=0.0))["a"]
    assert sorted(c.model for c in live) == ["", "typo-7", "typo-8", "typo-9"]  # the latest-ending stay
