"""Client keys: who is calling, which models they may use, how fast and how much.

The keys file (``ag_api_keys_file``) is JSON::

    {"keys": [{"name": "alice", "key": "sk-…", "models": ["gemini-*"], "rpm": 60, "daily_tokens": 2000000}]}

Every field but ``name`` and ``key`` is optional. Only a SHA-256 digest of each key is kept in memory;
a presented key is hashed and compared against every digest in constant time (``hmac.compare_digest``,
all of them, whatever matches), so timing says nothing about which key is close. Names, never keys,
go to the ledger, metrics, logs and flows.

``KeyLimits`` applies a key's limits with an injected clock and no I/O: ``rpm`` is a sliding minute
over admitted requests; ``daily_tokens`` counts the tokens of the key's finished requests since UTC
midnight (``spend``), seeded from the ledger at start-up, so a restart does not reset a budget.
"""

from __future__ import annotations

import collections
import fnmatch
import hashlib
import hmac
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import orjson

from .. import errors

DAY = 86400.0


@dataclass(frozen=True, slots=True)
class ClientKey:
    name: str
    digest: bytes  # sha256 of the key: the key itself is not kept
    models: tuple[str, ...] = ()  # fnmatch patterns; () = every model
    rpm: int = 0  # 0 = unlimited
    daily_tokens: int = 0  # 0 = unlimited

    @property
    def limited(self) -> bool:
        return bool(self.models or self.rpm or self.daily_tokens)

    def allows(self, model: str) -> bool:
        return not self.models or any(fnmatch.fnmatchcase(model, p) for p in self.models)


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def parse_keys_file(data: bytes, *, path: str) -> tuple[ClientKey, ...]:
    """The file's keys; ``ValueError`` naming the file and the entry that is wrong."""
    what = f"ag_api_keys_file: {path}"
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise ValueError(f"{what} is not valid JSON ({e})") from None
    entries = obj.get("keys") if isinstance(obj, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f'{what} must hold {{"keys": [{{"name": ..., "key": ...}}, ...]}}')
    keys = [_parse_entry(entry, i, what) for i, entry in enumerate(entries)]
    seen: set[str] = set()
    for k in keys:
        if k.name in seen:
            raise ValueError(f"{what}: the name {k.name!r} is used twice")
        seen.add(k.name)
    if len({k.digest for k in keys}) != len(keys):
        raise ValueError(f"{what}: two entries have the same key")
    return tuple(keys)


def _parse_entry(entry: object, i: int, what: str) -> ClientKey:
    where = f"{what}: keys[{i}]"
    if not isinstance(entry, dict):
        raise ValueError(f"{where} is not an object")
    name, key = entry.get("name"), entry.get("key")
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{where}: 'name' must be a non-empty string")
    if not isinstance(key, str) or len(key.strip()) < 8:
        raise ValueError(f"{where} ({name}): 'key' must be a string of at least 8 characters")
    models = entry.get("models", [])
    if not isinstance(models, list) or not all(isinstance(m, str) and m for m in models):
        raise ValueError(f"{where} ({name}): 'models' must be a list of model names or patterns")
    unknown = set(entry) - {"name", "key", "models", "rpm", "daily_tokens"}
    if unknown:
        raise ValueError(f"{where} ({name}): unknown field(s) {', '.join(sorted(unknown))}")
    return ClientKey(
        name.strip(),
        digest(key.strip()),
        tuple(models),
        _limit(entry, "rpm", where, name),
        _limit(entry, "daily_tokens", where, name),
    )


def _limit(entry: dict[str, object], field: str, where: str, name: str) -> int:
    value = entry.get(field, 0)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{where} ({name}): {field!r} must be a whole number >= 0 (0: no limit)")
    return value


class KeyRing:
    """The keys clients may present, looked up in constant time."""

    def __init__(self, keys: Iterable[ClientKey] = ()) -> None:
        self.keys: tuple[ClientKey, ...] = tuple(keys)

    def __bool__(self) -> bool:
        return bool(self.keys)

    def identify(self, presented: Sequence[str]) -> ClientKey | None:
        """The key among ``presented`` that is one of ours; every pair is compared, in constant time."""
        found = None
        for offered in presented:
            d = digest(offered)
            for k in self.keys:
                if hmac.compare_digest(d, k.digest):
                    found = k
        return found


class KeyLimits:
    """Per-key request rate and daily token budget; raises the error the client gets."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._recent: dict[str, collections.deque[float]] = {}
        self._day = self._today()
        self._spent: dict[str, int] = {}

    def _today(self) -> float:
        return math.floor(self.clock() / DAY) * DAY

    def _roll(self) -> None:
        today = self._today()
        if today != self._day:
            self._day, self._spent = today, {}

    def seed(self, spent: dict[str, int]) -> None:
        """Tokens each key already spent today, from the ledger (which holds what this process counted
        too, unless a batch is still on its way: the larger count wins)."""
        self._roll()
        for name, tokens in spent.items():
            self._spent[name] = max(self._spent.get(name, 0), tokens)

    def spent(self, name: str) -> int:
        self._roll()
        return self._spent.get(name, 0)

    def spend(self, name: str, tokens: int) -> None:
        if tokens:
            self._roll()
            self._spent[name] = self._spent.get(name, 0) + tokens

    def admit(self, key: ClientKey, model: str | None) -> None:
        """Model first (403), then the day's budget, then the rate (429s); an admitted request counts
        towards the rate."""
        check_model(key, model)
        now = self.clock()
        if key.daily_tokens and self.spent(key.name) >= key.daily_tokens:
            raise budget_exceeded(key, self._day + DAY - now)
        if key.rpm:
            self._count(key, now)

    def _count(self, key: ClientKey, now: float) -> None:
        recent = self._recent.setdefault(key.name, collections.deque())
        while recent and recent[0] <= now - 60.0:
            recent.popleft()
        if len(recent) >= key.rpm:
            raise rate_limited(key, recent[0] + 60.0 - now)
        recent.append(now)


def check_model(key: ClientKey, model: str | None) -> None:
    if model is not None and not key.allows(model):
        raise errors.ModelNotAllowed(
            f"The key {key.name!r} may not use the model {model!r}; it may use: {', '.join(key.models)}.",
            param="model",
        )


def budget_exceeded(key: ClientKey, resets_in: float) -> errors.GatewayError:
    wait = max(1, math.ceil(resets_in))
    return errors.BudgetExceeded(
        f"The key {key.name!r} has used its {key.daily_tokens} tokens for today (UTC); it resets in "
        f"{wait} s.",
        headers={"retry-after": str(wait)},
    )


def rate_limited(key: ClientKey, free_in: float) -> errors.GatewayError:
    wait = max(1, math.ceil(free_in))
    return errors.KeyRateLimited(
        f"The key {key.name!r} is limited to {key.rpm} requests per minute; retry in {wait} s.",
        headers={"retry-after": str(wait)},
    )
