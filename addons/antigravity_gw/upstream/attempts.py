"""Runs one request's upstream attempts: accounts x base URLs, until one answers 2xx or the budget ends.

The only I/O is the ``send`` seam (``aiohttp`` in production, a fake in tests), the token and
project services, and the ``on_failure`` callback through which each failed attempt becomes
visible (a synthetic flow in mitmweb, a log line). Decisions come from ``policy.decide``;
cooldowns go to the pool.

Rules:
- the budget is ``max_attempts`` upstream calls and ``total_timeout`` seconds, whichever ends
  first; every wait (token refresh, upstream headers, backoff) is cut at the deadline, and a
  backoff that would end after it is not slept at all;
- a Cloud Code account falls back to its next base URL on 404/408/5xx and connection errors;
  a 429 does not (the quota is the account's, whatever the host);
- an account that failed in this request is not asked again, except: after a refresh (401), after
  a backoff when nobody else is ready (503/5xx), and after a short cooldown (≤ ``GRACE_WAIT``)
  when every other account is cooling for longer;
- when nobody is left, the answer names every account with its state and until when, and its
  ``retry-after`` is the earliest moment one of them is ready again.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
import orjson
import yarl

from .. import errors
from .accounts import Account
from .dialects import CallContext, Dialect, UpstreamCall
from .google_errors import GoogleError, parse_google_error
from .oauth import ProjectResolver, ProjectUnavailable, RefreshFailed, TokenService
from .policy import (
    MODEL_NOT_FOUND,
    NO_PROJECT_COOLDOWN,
    PROJECT_FAILURE_COOLDOWN,
    REFRESH_FAILURE_COOLDOWN,
    Action,
    Decision,
    Scope,
    decide,
)
from .pool import AccountStatus, Pool

logger = logging.getLogger(__name__)

FALLBACK_STATUSES = frozenset({404, 408})  # plus every 5xx: try the next Cloud Code base URL
GRACE_WAIT = 2.0  # seconds worth waiting for a cooling account instead of failing the request
MAX_WAITS = 32  # waits per request: a guard against a state that says "ready" but picks nobody


class UpstreamResponse(Protocol):
    status: int
    headers: Mapping[str, str]

    async def read(self) -> bytes: ...
    def release(self) -> Any: ...


Send = Callable[[UpstreamCall], Awaitable[UpstreamResponse]]
Report = Callable[["AttemptRecord"], Awaitable[None]]


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
    request_body: bytes = b""  # what went upstream, envelope included (no secrets: those are headers)


@dataclass(slots=True)
class AttemptBudget:
    """One request's progress: what it may still spend and what it learnt about the accounts."""

    max_attempts: int
    deadline: float  # on the runner's (monotonic) clock
    used: int = 0
    waits: int = 0
    tried: set[str] = field(default_factory=set)  # not to be asked again in this request
    backing_off: set[str] = field(default_factory=set)  # asked again after ``backoff`` if nobody else is
    backoff: float = 0.0
    retries: int = 0
    rejected: dict[str, str] = field(default_factory=dict)  # account id -> access token that got a 401
    refreshed: set[str] = field(default_factory=set)
    prefer: str = ""  # the account to ask next (a refreshed token is retried on its own account)
    failures: dict[str, str] = field(default_factory=dict)  # account id -> what went wrong in this request
    last: errors.GatewayError | None = None

    def excluded(self) -> set[str]:
        return self.tried | self.backing_off


class AttemptRunner:
    def __init__(self, pool: Pool, tokens: TokenService, dialects: Mapping[str, Dialect], send: Send, *,
                 max_attempts: int, total_timeout: float, projects: ProjectResolver | None = None,
                 on_failure: Report | None = None,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.pool = pool
        self.tokens = tokens
        self.projects = projects
        self.dialects = dialects  # by account kind: "oauth" -> Cloud Code, "api_key" -> public API
        self._send = send
        self.max_attempts = max_attempts
        self.total_timeout = total_timeout
        self._on_failure = on_failure
        self._sleep = sleep
        self._clock = clock

    async def run(self, model: str, stream: bool, request: dict[str, Any], ctx: CallContext,
                  on_failure: Report | None = None) -> Winner:
        budget = AttemptBudget(self.max_attempts, self._clock() + self.total_timeout)
        report = on_failure or self._on_failure
        while budget.used < budget.max_attempts:
            account = await self._next_account(model, ctx.session_key, budget)
            if account is None:
                break
            credential = await self._prepare(account, budget)
            if credential is None:
                continue
            outcome = await self._try_bases(account, credential, model, stream, request, ctx, budget, report)
            if isinstance(outcome, Winner):
                return outcome
            if outcome == Action.FAIL and budget.last is not None:
                raise budget.last
        raise await self._exhausted(model, budget)

    # ---- choosing -------------------------------------------------------------------------------
    def _remaining(self, budget: AttemptBudget) -> float:
        return budget.deadline - self._clock()

    async def _next_account(self, model: str, session_key: str, budget: AttemptBudget) -> Account | None:
        while self._remaining(budget) > 0:
            if budget.prefer:
                account, budget.prefer = self.pool.find(budget.prefer), ""
                if account is not None and account.usable:
                    return account
            account = await self.pool.pick(model, exclude=budget.excluded(), session_key=session_key)
            if account is not None:
                return account
            wait = await self._worth_waiting(model, budget)
            if wait is None:
                return None
            await self._sleep(wait)
            budget.backing_off.clear()
        budget.last = self._deadline_error(budget)
        return None

    async def _worth_waiting(self, model: str, budget: AttemptBudget) -> float | None:
        """How long to wait for an account to become ready again; None when not worth it."""
        options = [budget.backoff] if budget.backing_off else []
        cooling = await self.pool.ready_in(model, exclude=budget.excluded())
        if cooling is not None and 0 < cooling <= GRACE_WAIT:
            options.append(cooling)
        if not options or budget.waits >= MAX_WAITS:
            return None
        wait = max(min(options), 0.0)
        if wait >= self._remaining(budget):  # the deadline comes first: waiting would only delay the error
            return None
        budget.waits += 1
        return wait

    async def _prepare(self, account: Account, budget: AttemptBudget) -> str | None:
        """The account's credential (and Cloud Code project), or None after recording why not."""
        stale = budget.rejected.pop(account.id, None)
        credential = self.tokens.ready_credential(account, stale=stale)
        if credential is not None and (self.projects is None or self.projects.known(account)):
            return credential  # nothing to wait for: no deadline to arm
        try:
            async with asyncio.timeout(max(self._remaining(budget), 0.0)):
                credential = credential or await self.tokens.credential(account, stale=stale)
                if self.projects is not None:
                    await self.projects.ensure(account, credential)
            return credential
        except RefreshFailed as e:
            cooldown = 0.0 if e.permanent else REFRESH_FAILURE_COOLDOWN
            self._unprepared(account, budget, str(e))
            await self.pool.cool_down(account, cooldown, "token refresh failed")
        except ProjectUnavailable as e:
            self._unprepared(account, budget, f"{account.label}: {e}")
            await self.pool.cool_down(account, NO_PROJECT_COOLDOWN if e.missing else PROJECT_FAILURE_COOLDOWN,
                                      "no Cloud Code project" if e.missing else "project lookup failed")
        except TimeoutError:
            budget.last = self._deadline_error(budget)
            budget.tried.add(account.id)
        return None

    def _unprepared(self, account: Account, budget: AttemptBudget, message: str) -> None:
        logger.warning("%s", message)
        budget.tried.add(account.id)
        budget.failures[account.id] = message.removeprefix(f"{account.label}: ")
        budget.last = errors.UpstreamUnavailable(message)

    # ---- calling --------------------------------------------------------------------------------
    async def _try_bases(self, account: Account, credential: str, model: str, stream: bool,
                         request: dict[str, Any], ctx: CallContext, budget: AttemptBudget,
                         report: Report | None) -> Winner | Action | None:
        dialect = self.dialects[account.kind]
        failure: GoogleError | None = None
        for i, base in enumerate(dialect.bases):
            if budget.used >= budget.max_attempts or self._remaining(budget) <= 0:
                break
            call = dialect.build(base, model, stream, request, account, credential, ctx)
            budget.used += 1
            started = self._clock()
            last_base = i == len(dialect.bases) - 1 or budget.used >= budget.max_attempts
            try:
                async with asyncio.timeout(self._remaining(budget)):
                    resp = await self._send(call)
            except (aiohttp.ClientError, TimeoutError, OSError) as e:
                failure = GoogleError(504 if isinstance(e, TimeoutError) else 502, "UNAVAILABLE",
                                      f"{type(e).__name__}: {e}".strip(" :"))
                await self._report(report, account, call, None, b"", {}, failure.message,
                                   "retry" if last_base else "next base", started)
                continue
            if resp.status < 300:
                return Winner(resp, account, dialect, call.url, budget.used, call.body)
            body, headers = await self._read_failure(resp, budget)
            failure = parse_google_error(resp.status, body, retry_after_header=headers.get("retry-after"),
                                         now=time.time())
            if (resp.status in FALLBACK_STATUSES or resp.status >= 500) and not last_base:
                await self._report(report, account, call, resp.status, body, headers, failure.message,
                                   "next base", started)
                continue
            decision = decide(failure, refreshed=account.id in budget.refreshed, retries=budget.retries)
            await self._report(report, account, call, resp.status, body, headers, failure.message,
                               decision.action.value, started)
            return await self._apply(decision, failure, account, credential, model, budget)
        if failure is None:
            return None
        if self._remaining(budget) <= 0:
            budget.last = self._deadline_error(budget)
            return None
        return await self._apply(decide(failure, refreshed=True, retries=budget.retries), failure, account,
                                 credential, model, budget)

    async def _read_failure(self, resp: UpstreamResponse,
                            budget: AttemptBudget) -> tuple[bytes, dict[str, str]]:
        headers = {k.lower(): v for k, v in resp.headers.items()}
        try:
            async with asyncio.timeout(max(self._remaining(budget), 0.0)):
                body = await resp.read()
        except (aiohttp.ClientError, TimeoutError):
            body = b""
        finally:
            resp.release()
        return body, headers

    async def _apply(self, decision: Decision, failure: GoogleError, account: Account, credential: str,
                     model: str, budget: AttemptBudget) -> Action:
        budget.failures[account.id] = f"{failure.http_status} {failure.status or decision.reason}".strip()
        budget.last = upstream_error_for(failure, account.label)
        if decision.cooldown:
            await self.pool.cool_down(account, decision.cooldown, decision.reason,
                                      model if decision.scope == Scope.MODEL else "")
        if decision.action == Action.REFRESH:
            budget.refreshed.add(account.id)
            budget.rejected[account.id] = credential
            budget.prefer = account.id
        elif decision.action == Action.RETRY:
            budget.backing_off.add(account.id)
            budget.backoff = decision.backoff
            budget.retries += 1
        elif not decision.cooldown:  # a cooldown keeps it away already, and lets a short one come back
            budget.tried.add(account.id)
        return decision.action

    async def _report(self, report: Report | None, account: Account, call: UpstreamCall,
                      status: int | None, body: bytes, headers: dict[str, str], error: str, decision: str,
                      started: float) -> None:
        logger.info("attempt failed: %s %s -> %s %s (%s)", account.label, call.url, status or "-",
                    error[:200], decision)
        if report is not None:
            await report(AttemptRecord(account.label, call.url, status, body, headers, call.body, error,
                                       decision, self._clock() - started))

    # ---- giving up ------------------------------------------------------------------------------
    def _deadline_error(self, budget: AttemptBudget) -> errors.GatewayError:
        return errors.UpstreamTimeout(
            f"No upstream answer within ag_upstream_timeout ({self.total_timeout:g}s) after {budget.used} "
            f"attempt(s)." + (f" Last error: {budget.last.message}" if budget.last else ""))

    async def _exhausted(self, model: str, budget: AttemptBudget) -> errors.GatewayError:
        accounts = self.pool.accounts
        if not accounts:
            return errors.PoolExhausted(
                "No upstream accounts are configured: put account files into the ag_accounts directory.",
                status=503, code="no_accounts")
        now = self.pool.clock()
        lines: list[str] = []
        ready_again: list[float] = []
        failed_now = disabled = 0
        statuses = await self.pool.status(model)
        for s in statuses:
            if s.state == "disabled":
                disabled += 1
                lines.append(f"{s.label}: disabled ({s.reason})")
            elif s.state == "cooling" and s.until is not None:
                ready_again.append(s.until)
                lines.append(f"{s.label}: {s.reason} until {_utc(s.until)} (in {max(s.until - now, 0):.0f}s)")
            elif s.account.id in budget.failures:
                failed_now += 1
                lines.append(f"{s.label}: failed in this request ({budget.failures[s.account.id]})")
            else:  # still ready: the attempts or the time ran out first
                return budget.last or errors.PoolExhausted(
                    f"No account answered for model {model!r} within the attempt budget.", status=503)
        summary = "; ".join(lines)
        if _model_unknown(statuses, model):
            return errors.NotFound(
                f"The model {model!r} was not found on any account ({summary}). GET /v1/models lists the "
                "models this gateway serves; ag_model_map can map a client's name onto one of them.",
                param="model", code="model_not_found")
        if disabled == len(accounts):
            return errors.PoolExhausted(f"All {len(accounts)} accounts are disabled ({summary}).", status=503,
                                        code="no_usable_accounts")
        if not ready_again:  # every usable account failed in this request, none is cooling
            status = budget.last.status if budget.last is not None else 503
            return errors.PoolExhausted(
                f"All {len(accounts)} accounts failed for model {model!r} ({summary}).",
                status=status if status in (429, 502, 503, 504) else 503,
                headers=budget.last.headers if budget.last is not None else None)
        wait = max(min(ready_again) - now, 0.001)
        status = 429 if not failed_now or budget.last is None else budget.last.status
        return errors.PoolExhausted(
            f"All {len(accounts)} accounts are unavailable for model {model!r} ({summary}). "
            f"The first is ready again in {wait:.1f}s.",
            status=status if status in (429, 502, 503, 504) else 503,
            headers=errors.retry_after_headers(wait))


def _model_unknown(statuses: list[AccountStatus], model: str) -> bool:
    """Did every usable account answer that ``model`` does not exist? The client named a model no account
    has (a typo, a name that needs an ag_model_map entry): its 404, not a rate limit or an outage."""
    usable = [s for s in statuses if s.state != "disabled"]
    return bool(usable) and all(
        any(c.model == model and c.reason == MODEL_NOT_FOUND for c in s.cooldowns) for s in usable)


def _utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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
    """The production ``send``: one pooled session, headers first (the body is streamed by the caller).

    The session does not ``trust_env`` (aiohttp would then read ~/.netrc in a thread on every request);
    proxy variables (HTTPS_PROXY, NO_PROXY) are honoured here instead, decided once per host (P14).
    """
    timeout = aiohttp.ClientTimeout(total=None, connect=timeouts.connect, sock_read=timeouts.first_byte)
    proxies = urllib.request.getproxies()
    decided: dict[str, str | None] = {}

    def proxy_for(url: str) -> str | None:
        parts = urlsplit(url)
        if parts.netloc not in decided:
            bypass = not proxies or urllib.request.proxy_bypass(parts.hostname or "")
            decided[parts.netloc] = None if bypass else proxies.get(parts.scheme)
        return decided[parts.netloc]

    async def send(call: UpstreamCall) -> UpstreamResponse:
        return await session.post(parsed_url(call.url), data=call.body, headers=call.headers, timeout=timeout,
                                  allow_redirects=False, proxy=proxy_for(call.url))

    return send


@functools.lru_cache(maxsize=256)
def parsed_url(url: str) -> yarl.URL:
    """aiohttp parses a string URL on every call (about a tenth of its client CPU); a gateway calls few
    distinct URLs (bases x models x RPCs), so each is parsed once."""
    return yarl.URL(url)


def error_event(message: str) -> bytes:
    """A Google-style in-band SSE error frame, for an upstream stream that broke mid-way."""
    frame = {"error": {"code": 502, "message": message, "status": "UNAVAILABLE"}}
    return b"data: " + orjson.dumps(frame) + b"\r\n\r\n"
