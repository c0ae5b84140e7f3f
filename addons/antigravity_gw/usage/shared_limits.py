"""Client keys' ``rpm`` and ``daily_tokens`` across gateway instances that share a Redis (``ag_state_url``).

Rules:
- one script per admitted request of a limited key (one round trip): the day's budget is checked, then
  the rate as a sliding minute (a sorted set of admission times), and the request is counted;
- a key's tokens are added to the day's shared counter as its requests finish (``spend``, in the
  background); the budget check takes the larger of the shared count and this instance's own
  (``KeyLimits``, seeded from its ledger), so an empty Redis after a restart does not reset a budget;
- Redis down or slow: ``KeyLimits`` (this instance's own counts) decides, as without ``ag_state_url``.

Keys: ``ag:rpm:<key name>`` (sorted set, expires after a quiet minute), ``ag:spent:<UTC day>:<key name>``
(tokens, expires after two days).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from collections.abc import Callable
from typing import Any

from ..upstream.redis_link import PREFIX, RedisLink, Unavailable
from .keys import DAY, ClientKey, KeyLimits, budget_exceeded, check_model, rate_limited

RPM_PREFIX = PREFIX + "rpm:"
SPENT_PREFIX = PREFIX + "spent:"

# KEYS = rate set, day's tokens; ARGV = now ms, rpm, daily tokens, this instance's own count, member.
# Returns {0} admitted (and counted), {1} over budget, {2, oldest admission ms} over the rate.
ADMIT = """
if tonumber(ARGV[3]) > 0 then
  local spent = math.max(tonumber(redis.call('GET', KEYS[2]) or '0'), tonumber(ARGV[4]))
  if spent >= tonumber(ARGV[3]) then return {1, 0} end
end
if tonumber(ARGV[2]) > 0 then
  local now = tonumber(ARGV[1])
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 60000)
  if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
    return {2, redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2]}
  end
  redis.call('ZADD', KEYS[1], now, ARGV[5])
  redis.call('PEXPIRE', KEYS[1], 60000)
end
return {0, 0}
"""


class SharedKeyLimits:
    def __init__(self, link: RedisLink, local: KeyLimits, clock: Callable[[], float] = time.time) -> None:
        self.link = link
        self.local = local
        self.clock = clock
        self._admit = link.client.register_script(ADMIT)
        self._serial = itertools.count()

    async def admit(self, key: ClientKey, model: str | None) -> None:
        """``KeyLimits.admit`` across every instance; the same errors."""
        check_model(key, model)
        now = self.clock()
        day = math.floor(now / DAY) * DAY
        args: list[str | int] = [math.floor(now * 1000), key.rpm, key.daily_tokens,
                                 self.local.spent(key.name), f"{self.link.instance}:{next(self._serial)}"]
        keys = [RPM_PREFIX + key.name, f"{SPENT_PREFIX}{int(day)}:{key.name}"]
        try:
            verdict, oldest = await self.link.run(lambda r: self._admit(keys=keys, args=args, client=r))
        except Unavailable:
            self.local.admit(key, model)
            return
        if int(verdict) == 1:
            raise budget_exceeded(key, day + DAY - now)
        if int(verdict) == 2:
            raise rate_limited(key, float(oldest) / 1000 + 60.0 - now)

    async def spend(self, name: str, tokens: int) -> None:
        day = int(math.floor(self.clock() / DAY) * DAY)

        async def add(r: Any) -> None:
            async with r.pipeline(transaction=True) as p:
                p.incrby(f"{SPENT_PREFIX}{day}:{name}", tokens)
                p.expire(f"{SPENT_PREFIX}{day}:{name}", int(2 * DAY))
                await p.execute()

        with contextlib.suppress(Unavailable):  # this instance's own count still holds the budget
            await self.link.run(add)
