"""What quota each OAuth account has left, as Cloud Code reports it, and which account+model it rules out.

Sources (reference: cloudcode-models-quota.md R-Q1..R-Q3):
- ``loadCodeAssist``: the tier (``paidTier``, else ``currentTier``, else the default allowed tier);
- ``fetchAvailableModels``: per model ``quotaInfo{remainingFraction, resetTime}``;
- ``retrieveUserQuotaSummary`` (asked of the *daily* host: prod answers stale weekly fractions):
  ``groups[{displayName, buckets[{bucketId, window, remainingFraction, resetTime}]}]`` (best effort).

Rules:
- a model is exhausted when its remaining fraction is at or below the floor (``ag_quota_floor``
  percent, 0 = only when nothing is left), or when the fraction is absent but a reset time is given;
  a bucket at or below the floor rules out every model of its family ("Gemini ..." -> gemini models,
  "Claude and GPT ..." -> the others) on that account; each until its reset time;
- the snapshot only ever *adds* reasons to skip an account: live 429 cooldowns live in the pool and
  a refresh never clears them (Claude/GPT fractions can stay near 1.0 while exhausted, PR AM#3331);
- a failed refresh keeps the last snapshot, with its age and the error;
- the hot path asks ``blocked(model)``: one dict lookup, an empty dict when nothing is exhausted.

Parsing is pure; ``QuotaMonitor`` does the I/O (aiohttp, the account's own token).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import aiohttp
import orjson

from .accounts import Account
from .dialects import cloudcode_headers
from .google_json import GoogleAnswerError, first_answer, json_object
from .oauth import (
    LOAD_CODE_ASSIST_BODY,
    ProjectUnavailable,
    RefreshFailed,
    TokenService,
    project_from_load_code_assist,
)

logger = logging.getLogger(__name__)

AFTER_429_MIN_GAP = 30.0  # seconds between two 429-triggered refreshes of one account
REFRESH_BUDGET = 20.0  # seconds one account's refresh may take, all three calls together


# ---- data --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ModelQuota:
    remaining: float | None  # 0..1; None = not reported
    reset: float | None  # epoch seconds; None = not reported


@dataclass(frozen=True, slots=True)
class Bucket:
    bucket_id: str  # gemini-5h, gemini-weekly, 3p-5h, 3p-weekly
    group: str  # "Gemini Models", "Claude and GPT models"
    window: str
    remaining: float | None
    reset: float | None


@dataclass(frozen=True, slots=True)
class AccountQuota:
    """One account's last snapshot; ``fetched_at`` 0 = never fetched."""

    tier: str = ""
    models: dict[str, ModelQuota] = field(default_factory=dict)
    buckets: tuple[Bucket, ...] = ()
    fetched_at: float = 0.0
    error: str = ""  # the last refresh's problem ("" = it worked)
    error_at: float = 0.0
    buckets_error: str = ""  # retrieveUserQuotaSummary is best effort


def parse_time(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def parse_fraction(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return min(max(float(value), 0.0), 1.0)
    except ValueError:
        return None


def parse_models(data: dict[str, Any]) -> dict[str, ModelQuota]:
    """``fetchAvailableModels`` -> model id -> its quota (models without ``quotaInfo`` included)."""
    models = data.get("models")
    out: dict[str, ModelQuota] = {}
    if not isinstance(models, dict):
        return out
    for model_id, info in models.items():
        quota = info.get("quotaInfo") if isinstance(info, dict) else None
        quota = quota if isinstance(quota, dict) else {}
        out[str(model_id)] = ModelQuota(parse_fraction(quota.get("remainingFraction")),
                                        parse_time(quota.get("resetTime")))
    return out


def parse_buckets(data: dict[str, Any]) -> tuple[Bucket, ...]:
    """``retrieveUserQuotaSummary`` -> its buckets, each with its group's name."""
    out: list[Bucket] = []
    for group in data.get("groups") or ():
        if not isinstance(group, dict):
            continue
        name = str(group.get("displayName") or "")
        for b in group.get("buckets") or ():
            if isinstance(b, dict):
                out.append(Bucket(str(b.get("bucketId") or ""), name, str(b.get("window") or ""),
                                  parse_fraction(b.get("remainingFraction")), parse_time(b.get("resetTime"))))
    return tuple(out)


def tier_of(data: dict[str, Any]) -> str:
    """``loadCodeAssist`` -> the tier's name (paid first, then current, then the default allowed one)."""
    for key in ("paidTier", "currentTier"):
        tier = data.get(key)
        if isinstance(tier, dict) and (tier.get("name") or tier.get("id")):
            return str(tier.get("name") or tier.get("id"))
    for tier in data.get("allowedTiers") or ():
        if isinstance(tier, dict) and tier.get("isDefault"):
            return str(tier.get("name") or tier.get("id") or "")
    return ""


def bucket_covers(bucket: Bucket, model: str) -> bool:
    """Gemini buckets count the gemini models; the "Claude and GPT" (3p) ones every other model."""
    gemini_bucket = bucket.bucket_id.startswith("gemini") or bucket.group.lower().startswith("gemini")
    return model.startswith("gemini") == gemini_bucket


def exhausted(remaining: float | None, reset: float | None, floor: float) -> bool:
    if remaining is None:
        return reset is not None  # no fraction but a reset time: nothing left until then (R-Q1)
    return remaining <= floor


def blocked_models(quota: AccountQuota, floor: float, now: float) -> dict[str, float]:
    """Model -> until when this account must not be asked for it (reset passed: not blocked)."""
    out: dict[str, float] = {}
    for model, q in quota.models.items():
        if exhausted(q.remaining, q.reset, floor) and q.reset is not None and q.reset > now:
            out[model] = q.reset
    for b in quota.buckets:
        if b.reset is None or b.reset <= now or not exhausted(b.remaining, b.reset, floor):
            continue
        for model in quota.models:
            if bucket_covers(b, model):
                out[model] = max(out.get(model, 0.0), b.reset)
    return out


# ---- the book ----------------------------------------------------------------------------------
class QuotaBook:
    """Every account's last snapshot, and an index model -> account id -> blocked until."""

    def __init__(self, floor_percent: float = 0.0, clock: Callable[[], float] = time.time) -> None:
        self.floor = floor_percent / 100.0
        self.clock = clock
        self.snapshots: dict[str, AccountQuota] = {}
        self._blocked: dict[str, dict[str, float]] = {}
        # Called with every snapshot stored here (not those loaded from elsewhere): ag_state_url shares them.
        self.sink: Callable[[str, AccountQuota], None] | None = None

    def set_floor(self, floor_percent: float) -> None:
        self.floor = floor_percent / 100.0
        self._reindex()

    def blocked(self, model: str) -> dict[str, float]:
        """Account id -> until when it is out of quota for ``model`` (may hold passed times: compare)."""
        return self._blocked.get(model, EMPTY)

    def get(self, account_id: str) -> AccountQuota | None:
        return self.snapshots.get(account_id)

    def remaining(self, account_id: str) -> list[tuple[str, float]]:
        """(model, remaining fraction) of every model the account's last snapshot reported a fraction for
        (what ``ag_quota_remaining_ratio`` exports)."""
        quota = self.snapshots.get(account_id)
        if quota is None:
            return []
        return [(model, q.remaining) for model, q in quota.models.items() if q.remaining is not None]

    def store(self, account_id: str, quota: AccountQuota) -> None:
        self.load(account_id, quota)
        if self.sink is not None:
            self.sink(account_id, quota)

    def load(self, account_id: str, quota: AccountQuota) -> None:
        """Keep ``quota`` (a snapshot taken here, or one another gateway instance took)."""
        self.snapshots[account_id] = quota
        self._reindex()

    def failed(self, account_id: str, error: str) -> None:
        """Keep the last snapshot (and its age); remember what went wrong."""
        old = self.snapshots.get(account_id, AccountQuota())
        self.snapshots[account_id] = replace(old, error=error, error_at=self.clock())

    def forget(self, keep: Iterable[str]) -> None:
        keep = set(keep)
        for account_id in [a for a in self.snapshots if a not in keep]:
            del self.snapshots[account_id]
        self._reindex()

    def _reindex(self) -> None:
        now = self.clock()
        index: dict[str, dict[str, float]] = {}
        for account_id, quota in self.snapshots.items():
            for model, until in blocked_models(quota, self.floor, now).items():
                index.setdefault(model, {})[account_id] = until
        self._blocked = index


EMPTY: dict[str, float] = {}


# ---- fetching ----------------------------------------------------------------------------------
class QuotaError(GoogleAnswerError):
    """A quota call did not answer usefully (no secret in the message)."""


def summary_base(bases: tuple[str, ...]) -> str:
    """The daily host for retrieveUserQuotaSummary (prod answers a sentinel and stale weekly fractions)."""
    daily = [b for b in bases if "daily" in b]
    return next((b for b in daily if "sandbox" not in b), daily[0] if daily else bases[0])


class QuotaMonitor:
    """Refreshes the book: every OAuth account every ``interval`` s, one account after a 429, or on demand.

    One refresh per account at a time (a second ask joins the running one); a failure is logged once
    per refresh and kept in the book beside the last good snapshot.
    """

    def __init__(self, book: QuotaBook, session: aiohttp.ClientSession, tokens: TokenService, *,
                 bases: tuple[str, ...], user_agent: str, timeout: float = 10.0,
                 accounts: Callable[[], Iterable[Account]] = list) -> None:
        self.book = book
        self._session = session
        self._tokens = tokens
        self.bases = bases
        self.user_agent = user_agent
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._accounts = accounts
        self._running: dict[str, asyncio.Task[None]] = {}
        self._last_nudge: dict[str, float] = {}

    async def refresh_all(self, budget: float = REFRESH_BUDGET) -> None:
        accounts = [a for a in self._accounts() if a.kind == "oauth" and a.usable]
        self.book.forget(a.id for a in self._accounts())
        tasks = [self._start(a) for a in accounts]
        if tasks:
            await asyncio.wait(tasks, timeout=budget)

    async def refresh(self, account: Account) -> None:
        await asyncio.shield(self._start(account))

    def after_429(self, account: Account) -> None:
        """A live 429: ask again soon (at most once per AFTER_429_MIN_GAP s per account)."""
        if account.kind != "oauth":
            return
        now = time.monotonic()
        if now - self._last_nudge.get(account.id, -AFTER_429_MIN_GAP) < AFTER_429_MIN_GAP:
            return
        self._last_nudge[account.id] = now
        self._start(account)

    def _start(self, account: Account) -> asyncio.Task[None]:
        task = self._running.get(account.id)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._refresh_one(account))
            key = account.id
            self._running[key] = task
            task.add_done_callback(lambda _: self._running.pop(key, None))
        return task

    async def _refresh_one(self, account: Account) -> None:
        try:
            async with asyncio.timeout(REFRESH_BUDGET):
                quota = await self.fetch(account)
        except (QuotaError, RefreshFailed, ProjectUnavailable, aiohttp.ClientError, TimeoutError,
                ValueError) as e:
            message = str(e) or type(e).__name__
            logger.info("quota of %s: %s (keeping the last snapshot)", account.label, message)
            self.book.failed(account.id, message)
            return
        self.book.store(account.id, quota)

    async def fetch(self, account: Account) -> AccountQuota:
        token = await self._tokens.credential(account)
        load = await self._call(self.bases[0], "loadCodeAssist", token, LOAD_CODE_ASSIST_BODY)
        project = account.project_id or project_from_load_code_assist(load)
        body = {"project": project} if project else {}
        models = parse_models(await first_answer(
            self.bases, lambda base: self._call(base, "fetchAvailableModels", token, body), QuotaError))
        buckets: tuple[Bucket, ...] = ()
        buckets_error = ""
        try:
            buckets = parse_buckets(await self._call(summary_base(self.bases), "retrieveUserQuotaSummary",
                                                     token, body))
        except (QuotaError, aiohttp.ClientError, TimeoutError, ValueError) as e:
            buckets_error = str(e) or type(e).__name__
            old = self.book.get(account.id)
            buckets = old.buckets if old else ()
        return AccountQuota(tier_of(load), models, buckets, self.book.clock(), buckets_error=buckets_error)

    async def _call(self, base: str, rpc: str, token: str, body: dict[str, Any]) -> dict[str, Any]:
        headers = cloudcode_headers(token, self.user_agent)
        return await json_object(self._session, "POST", f"{base}:{rpc}", headers=headers,
                                 body=orjson.dumps(body), timeout=self._timeout, name=rpc, error=QuotaError)

