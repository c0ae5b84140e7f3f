"""Runs one request's upstream attempts: accounts × base URLs, until one answers 2xx or the budget ends.

The only I/O is the ``send`` seam (``aiohttp`` in production, a fake in tests), the token service
and the ``on_failure`` callback, through which each failed attempt becomes visible (a synthetic
flow in mitmweb, a log line). Decisions come from ``policy.decide``; cooldowns go to the pool.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
import orjson

from .. import errors
from .accounts import Account
from .dialects import CallContext, Dialect, UpstreamCall
from .google_errors import GoogleError, parse_google_error
from .oauth import RefreshFailed, TokenService
from .policy import Action, Decision, Scope, decide
from .pool import Pool

logger = logging.getLogger(__name__)

FALLBACK_STATUSES = frozenset({404, 408})  # plus every 5xx: try the next Cloud Code base URL


class UpstreamResponse(Protocol):
    status: int
    headers: Mapping[str, str]

    async def read(self) -> bytes: ...
    def release(self) -> Any: ...


Send = Callable[[UpstreamCall], Awaitable[UpstreamResponse]]


@dataclass(slots=True)
class AttemptRecord:
    """One failed attempt, as shown in mitmweb and the log (no secrets in here)."""

    account: str
    url: str
    status: int | None
    body: bytes
    headers: dict[str, str]
    request_body: bytes
    error: str
    decision: str
    duration: float


@dataclass(slots=True)
class Winner:
    response: UpstreamResponse
    account: Account
    dialect: Dialect
    url: str
    attempts: int


@dataclass(slots=True)
class AttemptBudget:
    max_attempts: int
    deadline: float
    used: int = 0
    tried: set[str] = field(default_factory=set)
    refreshed: set[str] = field(default_factory=set)
    prefer: str = ""  # the account to ask next (a refreshed token is retried on its own account)


class AttemptRunner:
    def __init__(self, pool: Pool, tokens: TokenService, dialects: Mapping[str, Dialect], send: Send, *,
                 max_attempts: int, total_timeout: float,
                 on_failure: Callable[[AttemptRecord], Awaitable[None]] | None = None,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.pool = pool
        self.tokens = tokens
        self.dialects = dialects  # by account kind: "oauth" -> Cloud Code, "api_key" -> public API
        self._send = send
        self.max_attempts = max_attempts
        self.total_timeout = total_timeout
        self._on_failure = on_failure
        self._sleep = sleep
        self._clock = clock

    async def run(self, model: str, stream: bool, request: dict[str, Any], ctx: CallContext,
                  on_failure: Callable[[AttemptRecord], Awaitable[None]] | None = None) -> Winner:
        budget = AttemptBudget(self.max_attempts, self._clock() + self.total_timeout)
        report = on_failure or self._on_failure
        last: errors.GatewayError | None = None
        while budget.used < budget.max_attempts and self._clock() < budget.deadline:
            account = self._next_account(model, budget)
            if account is None:
                break
            try:
                credential = await self.tokens.credential(account, force=account.id in budget.refreshed)
            except RefreshFailed as e:
                budget.tried.add(account.id)
                if not e.permanent:
                    self.pool.cool_down(account, 60.0, f"token refresh failed: {e}")
                last = errors.UpstreamUnavailable(str(e))
                continue
            outcome = await self._try_bases(account, credential, model, stream, request, ctx, budget, report)
            if isinstance(outcome, Winner):
                return outcome
            last = outcome
            if isinstance(outcome, errors.ClientError):
                raise outcome
        raise self._exhausted(model, last)

    def _next_account(self, model: str, budget: AttemptBudget) -> Account | None:
        preferred, budget.prefer = budget.prefer, ""
        if preferred and (account := self.pool.find(preferred)) and account.usable:
            return account
        return self.pool.pick(model, budget.tried)

    async def _try_bases(self, account: Account, credential: str, model: str, stream: bool,
                         request: dict[str, Any], ctx: CallContext, budget: AttemptBudget,
                         report: Callable[[AttemptRecord], Awaitable[None]] | None,
                         ) -> Winner | errors.GatewayError:
        dialect = self.dialects[account.kind]
        failure: GoogleError | None = None
        for i, base in enumerate(dialect.bases):
            if budget.used >= budget.max_attempts:
                break
            call = dialect.build(base, model, stream, request, account, credential, ctx)
            budget.used += 1
            started = self._clock()
            try:
                resp = await self._send(call)
            except (aiohttp.ClientError, TimeoutError, OSError) as e:
                failure = GoogleError(502, "UNAVAILABLE", f"{type(e).__name__}: {e}".strip())
                await self._report(report, account, call, None, b"", {}, failure.message, "next base", started)
                continue
            if resp.status < 300:
                return Winner(resp, account, dialect, call.url, budget.used)
            body = await resp.read()
            resp.release()
            headers = {k.lower(): v for k, v in resp.headers.items()}
            failure = parse_google_error(resp.status, body, retry_after_header=headers.get("retry-after"),
                                         now=time.time())
            last_base = i == len(dialect.bases) - 1
            if (resp.status in FALLBACK_STATUSES or resp.status >= 500) and not last_base:
                await self._report(report, account, call, resp.status, body, headers, failure.message,
                                   "next base", started)
                continue
            decision = decide(failure, refreshed=account.id in budget.refreshed)
            await self._report(report, account, call, resp.status, body, headers, failure.message,
                               decision.action.value, started)
            return await self._apply(decision, failure, account, model, budget)
        if failure is None:
            return errors.UpstreamUnavailable("no attempt left")
        return await self._apply(decide(failure, refreshed=True), failure, account, model, budget)

    async def _apply(self, decision: Decision, failure: GoogleError, account: Account, model: str,
                     budget: AttemptBudget) -> errors.GatewayError:
        if decision.cooldown:
            scope_model = model if decision.scope == Scope.MODEL else ""
            self.pool.cool_down(account, decision.cooldown, decision.reason, scope_model)
        if decision.action == Action.REFRESH:
            budget.refreshed.add(account.id)
            budget.prefer = account.id
        elif decision.action == Action.RETRY and not self.pool.eligible(model, budget.tried | {account.id}):
            await self._sleep(decision.backoff)  # nobody else to ask: the same account, a moment later
        else:
            budget.tried.add(account.id)
        return upstream_error_for(failure, account.label)

    async def _report(self, report: Callable[[AttemptRecord], Awaitable[None]] | None, account: Account,
                      call: UpstreamCall, status: int | None, body: bytes, headers: dict[str, str],
                      error: str, decision: str, started: float) -> None:
        logger.info("attempt failed: %s %s -> %s %s (%s)", account.label, call.url, status or "-", error[:200],
                    decision)
        if report is not None:
            await report(AttemptRecord(account.label, call.url, status, body, headers, call.body, error, decision,
                                       self._clock() - started))

    def _exhausted(self, model: str, last: errors.GatewayError | None) -> errors.GatewayError:
        accounts = self.pool.accounts
        if not accounts:
            return errors.PoolExhausted(
                "No upstream accounts are configured: put account files into the ag_accounts directory.",
                status=503, code="no_accounts")
        blocked = self.pool.unavailable(model)
        now = time.time()
        timed = [b.until for b in blocked if b.until]
        if len(blocked) == len([a for a in accounts]) and timed:
            wait = max(min(timed) - now, 0.001)
            summary = "; ".join(
                f"{b.label}: {b.reason}" + (f" until {time.strftime('%H:%M:%S', time.gmtime(b.until))}Z"
                                            if b.until else "") for b in blocked)
            return errors.PoolExhausted(
                f"All {len(accounts)} accounts are unavailable for model {model!r} ({summary}). "
                f"The first is ready again in {wait:.1f}s.",
                headers=errors.retry_after_headers(wait))
        if last is not None:
            return last
        return errors.PoolExhausted(f"No account can serve model {model!r} right now.", status=503)


def upstream_error_for(err: GoogleError, account_label: str) -> errors.GatewayError:
    """The client-facing error for a Google error that ended the attempts."""
    text = f"Upstream ({account_label}) answered {err.http_status} {err.status}: {err.message}".strip()
    if err.http_status == 400:
        return errors.InvalidRequest(f"Google rejected the request: {err.message or err.status}",
                                     code="upstream_invalid_argument")
    if err.http_status == 429:
        headers = errors.retry_after_headers(err.retry_after) if err.retry_after is not None else {}
        return errors.UpstreamRateLimited(text, headers=headers)
    if err.http_status in (503, 529):
        return errors.UpstreamUnavailable(text)
    if err.http_status in (504, 408):
        return errors.UpstreamTimeout(text)
    return errors.UpstreamError(text)


def aiohttp_sender(session: aiohttp.ClientSession, timeouts: Any) -> Send:
    """The production ``send``: one pooled session, headers first (the body is streamed by the caller)."""
    timeout = aiohttp.ClientTimeout(total=None, connect=timeouts.connect, sock_read=timeouts.first_byte)

    async def send(call: UpstreamCall) -> UpstreamResponse:
        return await session.post(call.url, data=call.body, headers=call.headers, timeout=timeout,
                                  allow_redirects=False)

    return send


def error_event(message: str) -> bytes:
    """A Google-style in-band SSE error frame, for an upstream stream that broke mid-way."""
    return b"data: " + orjson.dumps({"error": {"code": 502, "message": message, "status": "UNAVAILABLE"}}) + b"\r\n\r\n"
