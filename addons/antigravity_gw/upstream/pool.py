"""Which account serves the next attempt: selection and cooldowns over an injected clock, no I/O.

State that several gateway instances would share (cooldowns, the rotation cursor) sits behind
``PoolState``; ``MemoryState`` is the single-process implementation.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from .accounts import Account


@dataclass(frozen=True, slots=True)
class Cooldown:
    until: float
    reason: str
    model: str = ""  # "" = the whole account


class PoolState(Protocol):
    def cooldowns(self, account_id: str) -> list[Cooldown]: ...
    def add_cooldown(self, account_id: str, cooldown: Cooldown) -> None: ...
    def clear(self, account_id: str) -> None: ...
    def next_cursor(self) -> int: ...


class MemoryState:
    def __init__(self) -> None:
        self._cooldowns: dict[str, dict[str, Cooldown]] = {}
        self._cursor = itertools.count()

    def cooldowns(self, account_id: str) -> list[Cooldown]:
        return list(self._cooldowns.get(account_id, {}).values())

    def add_cooldown(self, account_id: str, cooldown: Cooldown) -> None:
        slot = self._cooldowns.setdefault(account_id, {})
        old = slot.get(cooldown.model)
        if old is None or old.until < cooldown.until:
            slot[cooldown.model] = cooldown

    def clear(self, account_id: str) -> None:
        self._cooldowns.pop(account_id, None)

    def next_cursor(self) -> int:
        return next(self._cursor)


@dataclass(frozen=True, slots=True)
class Unavailable:
    """Why an account cannot serve a model right now."""

    label: str
    until: float | None  # None = not a matter of time (disabled)
    reason: str


class Pool:
    def __init__(self, state: PoolState | None = None, clock: Callable[[], float] = time.time) -> None:
        self._state: PoolState = state or MemoryState()
        self._clock = clock
        self._accounts: list[Account] = []

    @property
    def accounts(self) -> list[Account]:
        return list(self._accounts)

    def replace(self, accounts: Iterable[Account]) -> None:
        self._accounts = list(accounts)

    def find(self, account_id: str) -> Account | None:
        return next((a for a in self._accounts if a.id == account_id), None)

    def blocked_until(self, account: Account, model: str) -> float:
        now = self._clock()
        until = 0.0
        for c in self._state.cooldowns(account.id):
            if c.until > now and (not c.model or c.model == model):
                until = max(until, c.until)
        return until

    def eligible(self, model: str, exclude: set[str] = frozenset()) -> list[Account]:  # type: ignore[assignment]
        """Usable accounts not excluded and not cooling down for ``model``, in rotation order."""
        ready = [a for a in self._accounts
                 if a.usable and a.id not in exclude and not self.blocked_until(a, model)]
        if len(ready) > 1:
            k = self._state.next_cursor() % len(ready)
            ready = ready[k:] + ready[:k]
        return ready

    def pick(self, model: str, exclude: set[str] = frozenset()) -> Account | None:  # type: ignore[assignment]
        ready = self.eligible(model, exclude)
        return ready[0] if ready else None

    def cool_down(self, account: Account, seconds: float, reason: str, model: str = "") -> None:
        if seconds > 0:
            self._state.add_cooldown(account.id, Cooldown(self._clock() + seconds, reason, model))

    def unavailable(self, model: str) -> list[Unavailable]:
        out = []
        for a in self._accounts:
            if not a.usable:
                out.append(Unavailable(a.label, None, a.disabled_reason or "disabled"))
            elif until := self.blocked_until(a, model):
                reasons = [c.reason for c in self._state.cooldowns(a.id) if c.until == until]
                out.append(Unavailable(a.label, until, reasons[0] if reasons else "cooling down"))
        return out
