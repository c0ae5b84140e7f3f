"""The pool's state shared by several gateway instances through Redis (``ag_state_url``).

Rules:
- reads stay local: ``SharedPoolState`` keeps a ``MemoryState`` that answers every selection (cooldowns,
  cursor, last use) without a round trip; what the other instances do arrives as events (pub/sub) and
  is applied to it, so a 429 seen by one instance cools that account on every instance within
  milliseconds, and an instance whose Redis is gone keeps serving from what it knows;
- a cooldown is written locally first, then to Redis (one script: keep the later end, extend the
  key's expiry, publish) — never blocking the answer on Redis: it runs after the local write, with
  the link's short deadline;
- sticky bindings are decided in Redis, atomically (``SharedSticky``, one script per pick that has a
  session key): the binding stays while its account is among the caller's ready accounts, otherwise
  the caller's candidate (its least recently used ready account) is bound. Two instances can never
  bind one conversation differently;
- the round-robin cursor and last-use times stay per instance: each instance spreads its own
  requests, which spreads the pool's too, and costs no round trip;
- when Redis returns after an outage (or at start-up), the instance pushes its live cooldowns and
  pulls everyone's (``resync``).

- quota snapshots (``SharedQuota``): a snapshot one instance takes is stored and published; the others
  keep it when it is newer than theirs (``fetched_at``), so one refresh after a 429 informs every
  instance's quota-aware routing.

Keys: ``ag:cd:<account>`` (hash: model -> "until|reason", "" = the whole account; expires with its
last cooldown), ``ag:sticky:<session key>`` (account id, ``STICKY_TTL``), ``ag:quota:<account>`` (the
last snapshot as JSON, a day).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from ..translate.responses_store import ResponseStore
from .accounts import Account, AccountFiles
from .background import BackgroundTasks
from .pool import STICKY_TTL, Cooldown, LeastRecentlyUsed, MemoryState, Pool, PoolState, Scheduler, Sticky
from .pool import scheduler_for as local_scheduler_for
from .quota import AccountQuota, Bucket, ModelQuota, QuotaBook
from .redis_link import CHANNEL, PREFIX, RESYNC_TIMEOUT, RedisLink, Unavailable
from .shared_responses import SharedResponses
from .shared_tokens import SharedTokens

logger = logging.getLogger(__name__)

COOLDOWN_PREFIX = PREFIX + "cd:"
QUOTA_PREFIX = PREFIX + "quota:"
QUOTA_TTL = 86400  # seconds a shared snapshot is kept
STICKY_PREFIX = PREFIX + "sticky:"
MAX_SHARED_MODEL_COOLDOWNS = 256  # per account, as MemoryState keeps: invented model names stay bounded

# KEYS[1] = ag:cd:<account>; ARGV = model, until (s), reason, ms left, max model entries, channel, event
ADD_COOLDOWN = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old and tonumber(string.match(old, '^[^|]+')) >= tonumber(ARGV[2]) then return 0 end
if not old and ARGV[1] ~= '' and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[5]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '|' .. ARGV[3])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[4]) then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
redis.call('PUBLISH', ARGV[6], ARGV[7])
return 1
"""

# KEYS[1] = ag:sticky:<session>; ARGV = ttl ms, candidate, the other ready account ids...
CLAIM_BINDING = """
local bound = redis.call('GET', KEYS[1])
if bound then
  for i = 2, #ARGV do
    if ARGV[i] == bound then redis.call('PEXPIRE', KEYS[1], ARGV[1]); return bound end
  end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[1])
return ARGV[2]
"""


def decode_cooldown(model: str, value: str) -> Cooldown | None:
    """A cooldown as the add script stores it: ``until|reason``."""
    until, _, reason = value.partition("|")
    try:
        return Cooldown(float(until), reason, model)
    except ValueError:
        return None


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


class SharedPoolState:
    """``PoolState``: this instance's ``MemoryState`` for reads, Redis for what the others must see."""

    def __init__(self, link: RedisLink, local: MemoryState | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.link = link
        self.local = local or MemoryState()
        self.clock = clock
        # Reads and per-instance state are the local state's own methods: no extra await on the hot path.
        self.cooldowns = self.local.cooldowns
        self.next_cursor = self.local.next_cursor
        self.last_used = self.local.last_used
        self.touch = self.local.touch
        self.binding = self.local.binding
        self.bind = self.local.bind
        self._add_script = link.client.register_script(ADD_COOLDOWN)
        link.on_event("cooldown", self._remote_cooldown)
        link.on_event("clear", self._remote_clear)
        link.on_up(self.resync)

    async def add_cooldown(self, account_id: str, cooldown: Cooldown) -> None:
        await self.local.add_cooldown(account_id, cooldown)
        with contextlib.suppress(Unavailable):  # kept locally; the resync shares it when Redis returns
            await self.link.run(lambda r: self._share(account_id, cooldown, r))

    async def clear_cooldowns(self, account_id: str) -> None:
        await self.local.clear_cooldowns(account_id)
        event = self.link.event("clear", a=account_id)

        async def clear(r: Any) -> None:
            async with r.pipeline(transaction=True) as p:
                p.delete(COOLDOWN_PREFIX + account_id)
                p.publish(CHANNEL, event)
                await p.execute()

        with contextlib.suppress(Unavailable):
            await self.link.run(clear)

    def _share(self, account_id: str, c: Cooldown, client: Any) -> Any:
        left_ms = max(1, math.ceil((c.until - self.clock()) * 1000))
        event = self.link.event("cooldown", a=account_id, m=c.model, u=c.until, r=c.reason)
        return self._add_script(keys=[COOLDOWN_PREFIX + account_id], client=client,
                                args=[c.model, repr(c.until), c.reason, left_ms, MAX_SHARED_MODEL_COOLDOWNS,
                                      CHANNEL, event])

    async def _remote_cooldown(self, event: dict[str, Any]) -> None:
        try:
            cooldown = Cooldown(float(event["u"]), str(event.get("r", "")), str(event.get("m", "")))
            account_id = str(event["a"])
        except (KeyError, TypeError, ValueError):
            return
        if cooldown.until > self.clock():
            await self.local.add_cooldown(account_id, cooldown)

    async def _remote_clear(self, event: dict[str, Any]) -> None:
        await self.local.clear_cooldowns(str(event.get("a", "")))

    async def resync(self) -> None:
        """Push this instance's live cooldowns, pull every instance's (at start-up and after an outage)."""
        now = self.clock()
        mine = await self.local.cooldowns(self.local.cooling_accounts(), now)

        async def exchange(r: Any) -> list[tuple[str, dict[Any, Any]]]:
            async with r.pipeline(transaction=False) as p:
                for account_id, cooldowns in mine.items():
                    for c in cooldowns:
                        await self._share(account_id, c, p)
                await p.execute()
            names = [_text(k) async for k in r.scan_iter(match=COOLDOWN_PREFIX + "*", count=500)]
            async with r.pipeline(transaction=False) as p:
                for name in names:
                    p.hgetall(name)
                tables = await p.execute()
            return list(zip(names, tables, strict=True))

        for name, table in await self.link.run(exchange, timeout=RESYNC_TIMEOUT):
            account_id = name.removeprefix(COOLDOWN_PREFIX)
            for model, value in table.items():
                c = decode_cooldown(_text(model), _text(value))
                if c is not None and c.until > now:
                    await self.local.add_cooldown(account_id, c)


class SharedSticky:
    """``sticky`` across instances: the binding is claimed in Redis, atomically, in one round trip."""

    def __init__(self, link: RedisLink, ttl: float = STICKY_TTL) -> None:
        self.link = link
        self.ttl = ttl
        self.fallback = LeastRecentlyUsed()
        self.local = Sticky(self.fallback, ttl)  # without Redis: this instance's own bindings
        self._claim = link.client.register_script(CLAIM_BINDING)

    async def choose(self, ready: Sequence[Account], state: PoolState, session_key: str,
                     now: float) -> Account:
        if not session_key or not self.link.up:
            return await self.local.choose(ready, state, session_key, now)
        mine = await state.binding(session_key, now)
        candidate = next((a for a in ready if a.id == mine), None) or await self.fallback.choose(
            ready, state, session_key, now)
        ids = [candidate.id, *(a.id for a in ready if a is not candidate)]
        try:
            claimed = _text(await self.link.run(lambda r: self._claim(
                keys=[STICKY_PREFIX + session_key], args=[math.ceil(self.ttl * 1000), *ids], client=r)))
        except Unavailable:
            claimed = candidate.id
        account = next((a for a in ready if a.id == claimed), candidate)
        await state.bind(session_key, account.id, now + self.ttl)  # what degraded mode goes on with
        return account


def shared_scheduler_for(mode: str, link: RedisLink | None) -> Scheduler:
    """The scheduler for ``ag_scheduling``: sticky bindings go through Redis when it is configured."""
    if link is not None and mode == "sticky":
        return SharedSticky(link)
    return local_scheduler_for(mode)


def encode_quota(q: AccountQuota) -> dict[str, Any]:
    return {"tier": q.tier, "fetched_at": q.fetched_at, "error": q.error, "error_at": q.error_at,
            "buckets_error": q.buckets_error,
            "models": {m: [v.remaining, v.reset] for m, v in q.models.items()},
            "buckets": [[b.bucket_id, b.group, b.window, b.remaining, b.reset] for b in q.buckets]}


def decode_quota(obj: Any) -> AccountQuota | None:
    try:
        return AccountQuota(
            tier=str(obj["tier"]), fetched_at=float(obj["fetched_at"]), error=str(obj["error"]),
            error_at=float(obj["error_at"]), buckets_error=str(obj["buckets_error"]),
            models={str(m): ModelQuota(_number(r), _number(t)) for m, (r, t) in obj["models"].items()},
            buckets=tuple(Bucket(str(i), str(g), str(w), _number(r), _number(t))
                          for i, g, w, r, t in obj["buckets"]))
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


class SharedQuota:
    """Quota snapshots shared by the instances: stored with a day's TTL, published, resynced."""

    def __init__(self, link: RedisLink, book: QuotaBook, tasks: BackgroundTasks) -> None:
        self.link = link
        self.book = book
        self.tasks = tasks
        book.sink = self._sink
        link.on_event("quota", self._remote)
        link.on_up(self.resync)

    def _sink(self, account_id: str, quota: AccountQuota) -> None:
        if self.link.up:
            self.tasks.spawn(self._share(account_id, quota), "share-quota")

    async def _share(self, account_id: str, quota: AccountQuota) -> None:
        data = encode_quota(quota)
        event = self.link.event("quota", a=account_id, q=data)

        async def write(r: Any) -> None:
            async with r.pipeline(transaction=True) as p:
                p.set(QUOTA_PREFIX + account_id, orjson.dumps(data), ex=QUOTA_TTL)
                p.publish(CHANNEL, event)
                await p.execute()

        with contextlib.suppress(Unavailable):
            await self.link.run(write)

    def _keep_if_newer(self, account_id: str, quota: AccountQuota | None) -> None:
        mine = self.book.get(account_id)
        if quota is not None and (mine is None or quota.fetched_at > mine.fetched_at):
            self.book.load(account_id, quota)

    def _remote(self, event: dict[str, Any]) -> None:
        self._keep_if_newer(str(event.get("a", "")), decode_quota(event.get("q")))

    async def resync(self) -> None:
        async def fetch(r: Any) -> list[tuple[str, Any]]:
            names = [_text(k) async for k in r.scan_iter(match=QUOTA_PREFIX + "*", count=500)]
            values = await r.mget(names) if names else []
            return list(zip(names, values, strict=True))

        for name, value in await self.link.run(fetch, timeout=RESYNC_TIMEOUT):
            if value:
                with contextlib.suppress(orjson.JSONDecodeError):
                    self._keep_if_newer(name.removeprefix(QUOTA_PREFIX), decode_quota(orjson.loads(value)))
        for account_id, quota in list(self.book.snapshots.items()):
            if quota.fetched_at:
                await self._share(account_id, quota)


def local_state(pool: Pool) -> MemoryState:
    """The pool's own state, shared or not (it keeps this instance's cooldowns across a change)."""
    state = pool.state
    local = state.local if isinstance(state, SharedPoolState) else state
    assert isinstance(local, MemoryState)
    return local


class StateSharing:
    """Everything ``ag_state_url`` shares, wired into one gateway instance: its pool (cooldowns, sticky
    bindings through ``shared_scheduler_for``, quota snapshots), token refreshes (``tokens``, for the
    token service, the project resolver and the account commands) and stored responses."""

    def __init__(self, url: str, pool: Pool, response_store: ResponseStore, tasks: BackgroundTasks) -> None:
        self.link = RedisLink(url)
        self.pool = pool
        self.response_store = response_store
        pool.state = SharedPoolState(self.link, local_state(pool))
        self.tokens = SharedTokens(self.link, AccountFiles(), pool.find, lambda: pool.accounts)
        self.quota = SharedQuota(self.link, pool.quota, tasks)
        self.responses = SharedResponses(self.link, tasks)
        self.responses.attach(response_store)

    def detach(self) -> None:
        """Back to the embedded state, this instance's cooldowns kept; the caller stops the link."""
        self.pool.state = local_state(self.pool)
        self.pool.quota.sink = None
        self.response_store.share = None
