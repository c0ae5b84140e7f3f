"""OAuth token refreshes across gateway instances that share a Redis (``ag_state_url``).

Rules:
- one refresh per account across all instances: the refreshing instance holds ``ag:lock:tok:<account>``
  (``SET NX PX``, so a crashed holder frees it after ``LOCK_TTL``); the others wait for its result and
  adopt it. Asking for the token and taking the lock is one script, one round trip;
- the newest tokens of each account live in ``ag:tok:<account>`` (access token, its expiry, refresh
  token, project); "newest" is the later expiry, so an older write never replaces a newer one. An
  instance adopting them retires its own refresh token (``Account.apply_refresh``) and writes them to
  its own copy of the account file: no instance ever sends a refresh token another one rotated;
- every refresh and every ``invalid_grant`` disable is also published, so the other instances adopt it
  at once, not only at their next refresh; so are disables and enables made by hand
  (``ag.accounts.disable``/``enable``): each instance writes them to its own copy of the file;
- Redis down or slow: the instance refreshes on its own (``TokenService``'s local single flight), as
  it would without ``ag_state_url``; after an outage, ``resync`` publishes the tokens it refreshed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from .accounts import Account
from .redis_link import CHANNEL, PREFIX, RESYNC_TIMEOUT, RedisLink, Unavailable

logger = logging.getLogger(__name__)

TOKEN_PREFIX = PREFIX + "tok:"
LOCK_PREFIX = PREFIX + "lock:tok:"
LOCK_TTL = 30.0  # seconds: longer than one token call (its own timeout is 30 s)
WAIT_STEP = 0.05  # seconds between looks while another instance refreshes
TOKEN_KEY_TTL = 30 * 86400  # seconds an account's shared tokens are kept after their last change

# KEYS = token hash, lock; ARGV = instance, lock ms, the caller's access token, fresh when expiry > this.
# Returns {lock taken 0/1, access token, expiry, refresh token, project}; the lock is not taken when the
# hash already holds a fresh token other than the caller's.
TOKEN_OR_LOCK = """
local t = redis.call('HMGET', KEYS[1], 'access_token', 'expiry', 'refresh_token', 'project_id')
local at, exp, rt, p = t[1] or '', t[2] or '0', t[3] or '', t[4] or ''
if at ~= '' and at ~= ARGV[3] and tonumber(exp) > tonumber(ARGV[4]) then return {0, at, exp, rt, p} end
local got = redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2])
if got then got = 1 else got = 0 end
return {got, at, exp, rt, p}
"""

RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS = token hash; ARGV = access token, expiry, refresh token, project, ttl s, channel, event
SHARE_TOKENS = """
local cur = tonumber(redis.call('HGET', KEYS[1], 'expiry') or '0')
if cur >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'access_token', ARGV[1], 'expiry', ARGV[2], 'refresh_token', ARGV[3],
           'project_id', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('PUBLISH', ARGV[6], ARGV[7])
return 1
"""


class AccountFilesStore(Protocol):
    async def save_tokens(self, account: Account) -> None: ...
    async def save_disabled(self, account: Account) -> None: ...


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class SharedTokens:
    def __init__(self, link: RedisLink, store: AccountFilesStore, find: Callable[[str], Account | None],
                 accounts: Callable[[], list[Account]], clock: Callable[[], float] = time.time,
                 margin: float = 120.0, lock_ttl: float = LOCK_TTL) -> None:
        self.link = link
        self.store = store
        self.find = find
        self.accounts = accounts
        self.clock = clock
        self.margin = margin
        self.lock_ttl = lock_ttl
        self._token_or_lock = link.client.register_script(TOKEN_OR_LOCK)
        self._release = link.client.register_script(RELEASE)
        self._share_script = link.client.register_script(SHARE_TOKENS)
        link.on_event("token", self._remote_token)
        link.on_event("disabled", self._remote_disabled)
        link.on_event("account_state", self._remote_account_state)
        link.on_event("project", self._remote_project)
        link.on_up(self.resync)

    async def refresh(self, account: Account, refresh_here: Callable[[], Awaitable[str]]) -> str:
        """A fresh access token for ``account``: another instance's, or ``refresh_here()`` under the lock."""
        ours = account.access_token
        deadline = time.monotonic() + self.lock_ttl + 5.0
        lock = LOCK_PREFIX + account.id
        while True:
            fresh_after = self.clock() + self.margin
            args = [self.link.instance, math.ceil(self.lock_ttl * 1000), ours, fresh_after]
            keys = [TOKEN_PREFIX + account.id, lock]
            try:
                answer = await self.link.run(functools.partial(self._ask_or_lock, keys, args))
                got, at, exp, rt, project = (_text(v) for v in answer)
            except Unavailable:
                return await refresh_here()
            if at and at != ours and float(exp) > fresh_after:  # refreshed by another instance
                await self._adopt(account, at, float(exp), rt, project)
                return account.access_token
            if got == "1":
                try:
                    if rt and rt != account.refresh_token and float(exp) >= account.expiry_timestamp:
                        await self._adopt(account, at, float(exp), rt, project)  # its newer rotation first
                    token = await refresh_here()
                    await self.share(account)
                    return token
                finally:
                    with contextlib.suppress(Unavailable):
                        await self.link.run(lambda r: self._release(keys=[lock], args=[self.link.instance],
                                                                    client=r))
            if time.monotonic() > deadline:  # the holder is stuck past its lock: refresh ourselves
                return await refresh_here()
            await asyncio.sleep(WAIT_STEP)

    def _ask_or_lock(self, keys: list[str], args: list[Any], client: Any) -> Awaitable[Any]:
        return self._token_or_lock(keys=keys, args=args, client=client)

    async def share(self, account: Account) -> None:
        """This account's tokens to Redis and the other instances, unless Redis holds newer ones."""
        event = self.link.event("token", a=account.id, at=account.access_token, exp=account.expiry_timestamp,
                                rt=account.refresh_token, p=account.project_id)
        with contextlib.suppress(Unavailable):
            await self.link.run(lambda r: self._share_script(
                keys=[TOKEN_PREFIX + account.id], client=r,
                args=[account.access_token, repr(account.expiry_timestamp), account.refresh_token,
                      account.project_id, TOKEN_KEY_TTL, CHANNEL, event]))

    async def disabled(self, account: Account) -> None:
        """``invalid_grant``: every instance disables the account in its own copy of the file."""
        await self.link.publish("disabled", a=account.id, reason=account.disabled_reason,
                                at=account.disabled_at, rt=account.refresh_token)

    async def share_project(self, account: Account) -> None:
        """A project found with loadCodeAssist: the other instances need not ask again."""
        event = self.link.event("project", a=account.id, p=account.project_id)

        async def write(r: Any) -> None:
            async with r.pipeline(transaction=True) as p:
                p.hset(TOKEN_PREFIX + account.id, "project_id", account.project_id)
                p.publish(CHANNEL, event)
                await p.execute()

        with contextlib.suppress(Unavailable):
            await self.link.run(write)

    async def _remote_project(self, event: dict[str, Any]) -> None:
        account = self.find(str(event.get("a", "")))
        project = str(event.get("p") or "")
        if account is None or account.kind != "oauth" or not project or account.project_id:
            return
        account.set_project(project)
        try:
            await self.store.save_tokens(account)
        except (OSError, ValueError) as e:
            logger.error("%s: could not save its project id (%s)", account.label, e)

    async def account_state(self, account: Account) -> None:
        """A disable or enable made by hand here: every instance applies it to its own file."""
        await self.link.publish("account_state", a=account.id, disabled=account.disabled,
                                reason=account.disabled_reason, at=account.disabled_at)

    async def _remote_account_state(self, event: dict[str, Any]) -> None:
        account = self.find(str(event.get("a", "")))
        disabled = bool(event.get("disabled"))
        if account is None or account.disabled == disabled:
            return
        if disabled:
            account.disable(str(event.get("reason") or "disabled"), int(event.get("at") or self.clock()))
        else:
            account.enable()
        logger.info("accounts: %s %s (by another gateway instance)", "disabled" if disabled else "enabled",
                    account.label)
        try:
            await self.store.save_disabled(account)
        except (OSError, ValueError) as e:
            logger.error("%s: could not write the account's state (%s)", account.label, e)

    async def _adopt(self, account: Account, access_token: str, expiry: float, refresh_token: str,
                     project: str) -> None:
        if account.access_token == access_token and account.refresh_token == (refresh_token or
                                                                              account.refresh_token):
            return  # already adopted (its event and the waiter's look both bring it)
        account.apply_refresh(account.refresh_token, access_token, expiry, refresh_token)
        if project and not account.project_id:
            account.set_project(project)
        try:
            await self.store.save_tokens(account)  # this host's copy of the file
        except (OSError, ValueError) as e:
            logger.error("%s: could not save the shared token (%s); it lives in memory only",
                         account.label, e)

    async def _remote_token(self, event: dict[str, Any]) -> None:
        account = self.find(str(event.get("a", "")))
        try:
            expiry = float(event["exp"])
            access_token, refresh_token = str(event["at"]), str(event.get("rt") or "")
        except (KeyError, TypeError, ValueError):
            return
        if account is None or account.kind != "oauth" or expiry <= account.expiry_timestamp:
            return
        await self._adopt(account, access_token, expiry, refresh_token, str(event.get("p") or ""))

    async def _remote_disabled(self, event: dict[str, Any]) -> None:
        account = self.find(str(event.get("a", "")))
        if account is None or account.disabled or account.refresh_token != event.get("rt"):
            return  # unknown here, already disabled, or this host holds another grant for it
        account.disable(str(event.get("reason") or "invalid_grant"), int(event.get("at") or self.clock()))
        logger.warning("disabled %s: another gateway instance found its refresh token revoked", account.label)
        try:
            await self.store.save_disabled(account)
        except (OSError, ValueError) as e:
            logger.error("%s: could not mark the account disabled on disk (%s)", account.label, e)

    async def resync(self) -> None:
        """At start-up and after an outage: adopt the newer tokens other instances shared, and share the
        ones this instance refreshed meanwhile (the script keeps whichever is newer)."""
        oauth = [a for a in self.accounts() if a.kind == "oauth"]

        async def fetch(r: Any) -> list[list[Any]]:
            async with r.pipeline(transaction=False) as p:
                for a in oauth:
                    p.hmget(TOKEN_PREFIX + a.id, "access_token", "expiry", "refresh_token", "project_id")
                return list(await p.execute())

        shared = await self.link.run(fetch, timeout=RESYNC_TIMEOUT)
        for account, (at, exp, rt, project) in zip(oauth, shared, strict=True):
            if at and float(exp) > account.expiry_timestamp:
                await self._adopt(account, _text(at), float(exp), _text(rt or b""), _text(project or b""))
            elif account.access_token and account.expiry_timestamp > self.clock():
                await self.share(account)
