"""Which account serves the next attempt: selection modes and cooldowns over an injected clock, no I/O.

Rules:
- an account cooling down for a model (or as a whole) is skipped for that model; a cooldown belongs
  to the one account that earned it, never to the pool;
- modes: ``round_robin`` (a shared cursor over the ready accounts), ``lru`` (the ready account used
  longest ago) and ``sticky`` (a conversation stays on the account it started on while that account
  is ready; new conversations, and ones whose account is not ready, go to the LRU account and are
  bound to it): Google caches prompts per account, so a conversation that moves pays full price;
- whatever several gateway instances would share (cooldowns, the cursor, last-use times, sticky
  bindings) sits behind ``PoolState``, whose methods are async so that a network-backed state
  (Redis) fits the same interface; ``MemoryState`` is the single-process implementation.
- an account whose quota snapshot (``QuotaBook``) says a model is exhausted is skipped for that
  model until the reported reset, like a cooldown (one dict lookup per request, one per candidate);
Times are wall-clock seconds (``time.time``): another instance's clock must mean the same.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import orjson

from .accounts import Account
from .policy import QUOTA_SNAPSHOT_REASON
from .quota import QuotaBook

STICKY_TTL = 3600.0  # seconds a conversation stays bound to its account after its last request


@dataclass(frozen=True, slots=True)
class Cooldown:
    until: float
    reason: str
    model: str = ""  # "" = the whole account


class PoolState(Protocol):
    async def cooldowns(self, account_ids: Iterable[str], now: float) -> dict[str, list[Cooldown]]: ...
    async def add_cooldown(self, account_id: str, cooldown: Cooldown) -> None: ...
    async def clear_cooldowns(self, account_id: str) -> None: ...
    async def next_cursor(self) -> int: ...
    async def last_used(self, account_ids: Iterable[str]) -> dict[str, float]: ...
    async def touch(self, account_id: str, now: float) -> None: ...
    async def binding(self, session_key: str, now: float) -> str | None: ...
    async def bind(self, session_key: str, account_id: str, until: float) -> None: ...


class MemoryState:
    """``PoolState`` in this process's memory; expired entries are dropped as they are met."""

    def __init__(self, max_bindings: int = 100_000, max_model_cooldowns: int = 256) -> None:
        self._cooldowns: dict[str, dict[str, Cooldown]] = {}
        # Model names are the client's choice: a client inventing names (each one a 404 cooldown per
        # account) must not grow memory and every request's cooldown scan without bound.
        self._max_model_cooldowns = max_model_cooldowns
        self._cursor = 0
        self._last_used: dict[str, float] = {}
        self._bindings: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._max_bindings = max_bindings

    async def cooldowns(self, account_ids: Iterable[str], now: float) -> dict[str, list[Cooldown]]:
        out: dict[str, list[Cooldown]] = {}
        for account_id in account_ids:
            slot = self._cooldowns.get(account_id)
            if not slot:
                continue
            for model in [m for m, c in slot.items() if c.until <= now]:
                del slot[model]
            if slot:
                out[account_id] = list(slot.values())
        return out

    async def add_cooldown(self, account_id: str, cooldown: Cooldown) -> None:
        slot = self._cooldowns.setdefault(account_id, {})
        old = slot.get(cooldown.model)
        if old is None or old.until < cooldown.until:
            slot[cooldown.model] = cooldown
        if old is None and len(slot) - ("" in slot) > self._max_model_cooldowns:
            # the one that would end soonest goes (an account-wide cooldown, model "", always stays)
            del slot[min((c for c in slot.values() if c.model), key=lambda c: c.until).model]

    async def clear_cooldowns(self, account_id: str) -> None:
        self._cooldowns.pop(account_id, None)

    def cooling_accounts(self) -> list[str]:
        """The accounts that may have a live cooldown (a shared state's resync pushes theirs)."""
        return list(self._cooldowns)

    async def next_cursor(self) -> int:
        self._cursor += 1
        return self._cursor - 1

    async def last_used(self, account_ids: Iterable[str]) -> dict[str, float]:
        return {a: self._last_used[a] for a in account_ids if a in self._last_used}

    async def touch(self, account_id: str, now: float) -> None:
        self._last_used[account_id] = now

    async def binding(self, session_key: str, now: float) -> str | None:
        entry = self._bindings.get(session_key)
        if entry is None:
            return None
        if entry[1] <= now:
            del self._bindings[session_key]
            return None
        return entry[0]

    async def bind(self, session_key: str, account_id: str, until: float) -> None:
        self._bindings[session_key] = (account_id, until)
        self._bindings.move_to_end(session_key)
        while len(self._bindings) > self._max_bindings:  # bounded: the oldest conversations go first
            self._bindings.popitem(last=False)


# ---- selection modes ---------------------------------------------------------------------------
class Scheduler(Protocol):
    async def choose(self, ready: Sequence[Account], state: PoolState, session_key: str,
                     now: float) -> Account: ...


class RoundRobin:
    async def choose(self, ready: Sequence[Account], state: PoolState, session_key: str,
                     now: float) -> Account:
        return ready[await state.next_cursor() % len(ready)]


class LeastRecentlyUsed:
    async def choose(self, ready: Sequence[Account], state: PoolState, session_key: str,
                     now: float) -> Account:
        used = await state.last_used(a.id for a in ready)
        return min(ready, key=lambda a: used.get(a.id, 0.0))  # min() keeps file order among ties


class Sticky:
    def __init__(self, fallback: Scheduler | None = None, ttl: float = STICKY_TTL) -> None:
        self.fallback = fallback or LeastRecentlyUsed()
        self.ttl = ttl

    async def choose(self, ready: Sequence[Account], state: PoolState, session_key: str,
                     now: float) -> Account:
        if not session_key:
            return await self.fallback.choose(ready, state, session_key, now)
        bound = await state.binding(session_key, now)
        account = next((a for a in ready if a.id == bound), None)
        if account is None:
            account = await self.fallback.choose(ready, state, session_key, now)
        await state.bind(session_key, account.id, now + self.ttl)
        return account


def scheduler_for(mode: str) -> Scheduler:
    if mode == "round_robin":
        return RoundRobin()
    if mode == "lru":
        return LeastRecentlyUsed()
    if mode == "sticky":
        return Sticky()
    raise ValueError(f"unknown scheduling mode {mode!r}: round_robin, lru or sticky")


# ---- the pool ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AccountStatus:
    """One account as the commands and the "all accounts unavailable" answer describe it."""

    account: Account
    state: Literal["ready", "cooling", "disabled"]
    until: float | None = None  # when the state ends (cooling only)
    reason: str = ""
    cooldowns: tuple[Cooldown, ...] = ()  # every live cooldown, other models' included

    @property
    def label(self) -> str:
        return self.account.label


class Pool:
    def __init__(self, state: PoolState | None = None, clock: Callable[[], float] = time.time,
                 scheduler: Scheduler | None = None) -> None:
        self.state: PoolState = state or MemoryState()
        self.scheduler: Scheduler = scheduler or Sticky()
        self.clock = clock
        self.source = ""  # where the accounts come from (the ag_accounts directory), for error messages
        self._accounts: dict[str, Account] = {}
        self.quota: QuotaBook = QuotaBook(clock=clock)
        self.served: dict[str, int] = {}  # account id -> requests it answered (this process)
        self.last_served: dict[str, float] = {}

    def record_served(self, account: Account) -> None:
        self.served[account.id] = self.served.get(account.id, 0) + 1
        self.last_served[account.id] = self.clock()

    @property
    def accounts(self) -> list[Account]:
        return list(self._accounts.values())

    def find(self, key: str) -> Account | None:
        """By id, or else by email/label (what the commands and the CLI accept)."""
        return self._accounts.get(key) or next((a for a in self._accounts.values() if a.label == key), None)

    # ---- membership (the directory watcher keeps it in step with the files) ---------------------
    def replace(self, accounts: Iterable[Account]) -> None:
        """The whole set; accounts already known keep their object, tokens and cooldowns."""
        accounts = list(accounts)
        self.remove({a.id for a in self._accounts.values()} - {a.id for a in accounts})
        self.upsert(accounts)

    def upsert(self, accounts: Iterable[Account]) -> None:
        for loaded in accounts:
            current = self._accounts.get(loaded.id)
            if current is None:
                self._accounts[loaded.id] = loaded
            else:
                current.merge_file(loaded)
        ordered = sorted(self._accounts.values(), key=lambda a: (a.path.name if a.path else "", a.id))
        self._accounts = {a.id: a for a in ordered}

    def remove(self, account_ids: Iterable[str]) -> None:
        for account_id in account_ids:
            self._accounts.pop(account_id, None)

    # ---- selection ------------------------------------------------------------------------------
    async def pick(self, model: str, *, exclude: Iterable[str] = (), session_key: str = "") -> Account | None:
        """The account for the next attempt at ``model``, or None when no account is ready for it."""
        now = self.clock()
        ready = await self._ready(model, set(exclude), now)
        if not ready:
            return None
        account = await self.scheduler.choose(ready, self.state, session_key, now)
        await self.state.touch(account.id, now)
        return account

    async def ready_in(self, model: str, *, exclude: Iterable[str] = ()) -> float | None:
        """Seconds until the first cooling (not excluded, usable) account is ready for ``model``."""
        now = self.clock()
        skip = set(exclude)
        candidates = [a for a in self._accounts.values() if a.usable and a.id not in skip]
        blocked = await self._blocked(candidates, model, now)
        if not candidates or len(blocked) < len(candidates):
            return 0.0 if candidates else None
        return max(min(blocked.values()) - now, 0.0)

    async def _ready(self, model: str, exclude: set[str], now: float) -> list[Account]:
        candidates = [a for a in self._accounts.values() if a.usable and a.id not in exclude]
        blocked = await self._blocked(candidates, model, now)
        return [a for a in candidates if a.id not in blocked]

    async def _blocked(self, accounts: Sequence[Account], model: str, now: float) -> dict[str, float]:
        """Account id -> until when it is blocked for ``model``, for the blocked ones."""
        live = await self.state.cooldowns((a.id for a in accounts), now)
        out: dict[str, float] = {}
        for account_id, cooldowns in live.items():
            ends = [c.until for c in cooldowns if not c.model or c.model == model]
            if ends:
                out[account_id] = max(ends)
        if exhausted := self.quota.blocked(model):  # empty (falsy) unless a snapshot says so
            for a in accounts:
                until = exhausted.get(a.id)
                if until is not None and until > now and until > out.get(a.id, 0.0):
                    out[a.id] = until
        return out

    # ---- cooldowns ------------------------------------------------------------------------------
    async def cool_down(self, account: Account, seconds: float, reason: str, model: str = "") -> None:
        if seconds > 0:
            await self.state.add_cooldown(account.id, Cooldown(self.clock() + seconds, reason, model))

    async def clear_cooldowns(self, account: Account) -> None:
        await self.state.clear_cooldowns(account.id)

    async def status(self, model: str = "") -> list[AccountStatus]:
        """Every account's state; ``model`` = "" counts only whole-account cooldowns as cooling."""
        now = self.clock()
        live = await self.state.cooldowns(self._accounts, now)
        exhausted = self.quota.blocked(model) if model else {}
        out = []
        for a in self._accounts.values():
            mine = tuple(sorted(live.get(a.id, ()), key=lambda c: c.until))
            blocking = [c for c in mine if not c.model or c.model == model]
            if (until := exhausted.get(a.id)) is not None and until > now:
                blocking.append(Cooldown(until, QUOTA_SNAPSHOT_REASON, model))
            if not a.usable:
                reason = a.disabled_reason or ("disabled" if a.disabled else "no credential")
                out.append(AccountStatus(a, "disabled", None, reason, mine))
            elif blocking:
                last = max(blocking, key=lambda c: c.until)
                out.append(AccountStatus(a, "cooling", last.until, last.reason, mine))
            else:
                out.append(AccountStatus(a, "ready", None, "", mine))
        return out


def conversation_key(gemini_request: dict[str, Any], hint: str = "") -> str:
    """A stable key for "the same conversation": the client's own key (e.g. the Responses API's
    ``prompt_cache_key``) when it sends one, else a hash of the system instruction and the first
    user turn, which every later request of the conversation repeats. "" when there is neither.

    Conversations that share both (one system prompt, one opening message) share a key; they also
    share the cacheable prefix, so keeping them on one account is what caching wants anyway.
    """
    if hint:
        return "k-" + hashlib.sha256(hint.encode()).hexdigest()[:24]
    contents = gemini_request.get("contents")
    turns = contents if isinstance(contents, list) else []
    first_user = next((c for c in turns if isinstance(c, dict) and c.get("role", "user") == "user"), None)
    if first_user is None:
        return ""
    digest = hashlib.sha256(orjson.dumps(gemini_request.get("systemInstruction")))
    digest.update(b"\0")
    digest.update(orjson.dumps(first_user))
    return "c-" + digest.hexdigest()[:24]
