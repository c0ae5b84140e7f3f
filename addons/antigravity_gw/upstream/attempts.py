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
- a 2xx is only a winner once it is usable (``answer_check``): a non-stream body is read, parsed and
  shape-checked, a stream's chunks are held until its first usable event; an unusable one (HTML,
  invalid JSON, an error object, a cut or empty stream, silence for ``first_byte_timeout``) is a
  failed attempt treated like a 502;
- a DNS or connection failure is ``UpstreamUnreachable`` (502), not a rate limit;
- a cancelled request (the client left) is nobody's failure: nothing is reported or cooled down;
- an account that failed in this request is not asked again, except: after a refresh (401), after
  a backoff when nobody else is ready (503/5xx), and after a short cooldown (≤ ``GRACE_WAIT``)
  when every other account is cooling for longer;
- a bare 429 (no reason, no hint) cools nobody at once: when a second account of the same request
  says the same, the request is answered 429 there and then and no account is cooled (one oversized
  request must never lock the pool out); otherwise, once the request is over, the account that said
  it alone cools for a few seconds for that model;
- when every account is exhausted or cooling for the model and ``ag_model_fallback`` names another,
  the request is served by that one (before the first attempt, or once the accounts ran out);
- when nobody is left, the answer names every account with its state and until when, and its
  ``retry-after`` is the earliest moment one of them is ready again.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
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
from .answer_check import BadAnswer, FirstEventProbe, check_other, check_whole
from .catalog import fallback_for
from .dialects import API_KEY_ONLY_RPCS, CallContext, Dialect, UpstreamCall
from .google_errors import GoogleError, anthropic_error_message, parse_google_error
from .oauth import ProjectResolver, ProjectUnavailable, RefreshFailed, TokenService
from .policy import (
    BARE_429_COOLDOWN,
    BARE_429_LIMIT,
    BARE_429_REASON,
    MODEL_NOT_FOUND,
    NO_PROJECT_COOLDOWN,
    PROJECT_FAILURE_COOLDOWN,
    RATE_LIMIT_REASONS,
    REFRESH_FAILURE_COOLDOWN,
    Action,
    Decision,
    Scope,
    decide,
    is_version_gate,
)
from .pool import AccountStatus, Pool

logger = logging.getLogger(__name__)

UNREACHABLE = "UNREACHABLE"  # GoogleError.status of a DNS or connection failure (no HTTP answer)
INVALID_ANSWER = "INVALID_ANSWER"  # GoogleError.status of an unusable 2xx answer
FALLBACK_STATUSES = frozenset({404, 408})  # plus every 5xx: try the next Cloud Code base URL
GRACE_WAIT = 2.0  # seconds worth waiting for a cooling account instead of failing the request
MAX_WAITS = 32  # waits per request: a guard against a state that says "ready" but picks nobody
MAX_FALLBACK_HOPS = 3  # FROM=TO chains followed per request (a cycle ends where it began)
VERSION = re.compile(r"\b\d+\.\d+\.\d+\b")


class UpstreamContent(Protocol):
    """A response body as it arrives (aiohttp's ``StreamReader``)."""

    async def readany(self) -> bytes: ...  # the next chunk; b"" at the end
    def at_eof(self) -> bool: ...


class UpstreamResponse(Protocol):
    """What the runner and the relay use of an upstream answer (``aiohttp.ClientResponse`` in production)."""

    @property
    def status(self) -> int: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def content(self) -> UpstreamContent: ...  # a stream's body, pumped by the relay

    async def read(self) -> bytes: ...
    def release(self) -> Any: ...  # done with it: the connection goes back to the pool
    def close(self) -> None: ...  # abandon it: the connection is closed, the rest never read


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
    number: int = 0  # this request's attempt number, from 1
    reason: str = ""  # Google's status or reason (QUOTA_EXHAUSTED, RESOURCE_EXHAUSTED, ...)
    cooldown: float = 0.0  # seconds the account (or its model) now cools down for
    request_headers: Mapping[str, str] | None = None  # as sent: credentials in here, shown only redacted


@dataclass(slots=True)
class Winner:
    response: UpstreamResponse
    account: Account
    dialect: Dialect
    url: str
    attempts: int
    request_body: bytes = b""  # what went upstream, envelope included (no secrets: those are headers)
    deadline: float = 0.0  # the request's deadline on the runner's (monotonic) clock
    body: bytes | None = None  # a non-stream answer, read whole and checked
    parsed: dict[str, Any] | None = None  # ... and parsed, unwrapped (Cloud Code's envelope removed)
    head: tuple[bytes, ...] = ()  # a stream's first chunks, up to its first usable event, to send first
    model: str = ""  # the upstream model that answered
    fallback_from: str = ""  # the model asked for, when ag_model_fallback served another one
    request_headers: Mapping[str, str] | None = None  # what went upstream: secrets in here, never stored


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
    bare_429s: list[str] = field(default_factory=list)  # accounts that answered a bare 429
    request_blamed: bool = False  # bare 429s from BARE_429_LIMIT accounts: the request is at fault

    def excluded(self) -> set[str]:
        return self.tried | self.backing_off


class AttemptRunner:
    def __init__(self, pool: Pool, tokens: TokenService, dialects: Mapping[str, Dialect], send: Send, *,
                 max_attempts: int, total_timeout: float, projects: ProjectResolver | None = None,
                 on_failure: Report | None = None, first_byte_timeout: float | None = None,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 fallbacks: tuple[tuple[str, str], ...] = (),
                 on_rate_limited: Callable[[Account], object] | None = None) -> None:
        self.pool = pool
        self.tokens = tokens
        self.projects = projects
        self.dialects = dialects  # by account kind: "oauth" -> Cloud Code, "api_key" -> public API
        self._send = send
        self.max_attempts = max_attempts
        self.total_timeout = total_timeout
        self.first_byte_timeout = first_byte_timeout
        self._on_failure = on_failure
        self._sleep = sleep
        self._clock = clock
        self.fallbacks = fallbacks  # ag_model_fallback: (FROM pattern, TO)
        self._on_rate_limited = on_rate_limited  # a 429 says the quota snapshot may be stale

    async def run(self, model: str, stream: bool, request: dict[str, Any], ctx: CallContext,
                  on_failure: Report | None = None) -> Winner:
        deadline = self._clock() + self.total_timeout
        report = on_failure or self._on_failure
        asked, current, seen = model, model, {model}
        if self.fallbacks:
            current = await self._fallback_before(model, seen)
        while True:
            budget = AttemptBudget(self.max_attempts, deadline)
            try:
                winner = await self._attempts(current, stream, request, ctx, budget, report)
            except errors.PoolExhausted:
                await self._settle_bare_429s(current, budget)
                target = await self._fallback_after(current, seen) if self.fallbacks else None
                if target is None:
                    raise
                current = target
                continue
            except BaseException:
                await self._settle_bare_429s(current, budget)
                raise
            await self._settle_bare_429s(current, budget)
            self.pool.record_served(winner.account)
            winner.model = current
            winner.fallback_from = asked if current != asked else ""
            return winner

    async def _attempts(self, model: str, stream: bool, request: dict[str, Any], ctx: CallContext,
                        budget: AttemptBudget, report: Report | None) -> Winner:
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

    # ---- model fallback (ag_model_fallback) -----------------------------------------------------
    async def _fallback_before(self, model: str, seen: set[str]) -> str:
        """The model to ask first: ``model``, or its fallback when no account can serve it now."""
        current = model
        while (target := await self._fallback_after(current, seen)) is not None:
            current = target
        return current

    async def _fallback_after(self, model: str, seen: set[str]) -> str | None:
        """``model``'s fallback when every usable account is exhausted or cooling for it, else None."""
        target = fallback_for(model, self.fallbacks)
        if target is None or target in seen or len(seen) > MAX_FALLBACK_HOPS:
            return None
        wait = await self.pool.ready_in(model)
        if wait is None or wait <= 0:  # someone can serve it (or nobody can serve anything)
            return None
        seen.add(target)
        logger.info("model fallback: %s -> %s (every account is exhausted or cooling for %s for %.0fs)",
                    model, target, model, wait)
        return target

    # ---- bare 429s (one request never locks the pool out) ---------------------------------------
    async def _settle_bare_429s(self, model: str, budget: AttemptBudget) -> None:
        """A bare 429 no other account repeated was probably the account's: a few seconds for that model.
        When two accounts said it, the request was at fault and nobody is cooled."""
        if budget.request_blamed:
            return
        for account_id in budget.bare_429s:
            account = self.pool.find(account_id)
            if account is not None:
                await self.pool.cool_down(account, BARE_429_COOLDOWN, BARE_429_REASON, model)

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
            # the reason says why, so "all accounts unavailable" tells the client what to fix
            await self.pool.cool_down(account, cooldown,
                                      f"token refresh failed: {str(e).removeprefix(account.label + ': ')}")
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
        if ctx.rpc in API_KEY_ONLY_RPCS and account.kind != "api_key":
            budget.tried.add(account.id)  # not a failure of the account: it cannot make this call
            budget.failures[account.id] = f"{ctx.rpc} needs a Gemini API key account"
            budget.last = budget.last or errors.UpstreamUnavailable(
                f"{ctx.rpc} needs a Gemini API key account (Cloud Code accounts cannot make it); add one.")
            return None
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
                failure = connection_failure(e)
                await self._report(report, account, call, None, b"", {}, failure.message,
                                   "retry" if last_base else "next base", started, budget.used)
                continue
            if resp.status < 300:
                try:
                    return await self._winner(resp, stream, budget, account, dialect, call, ctx.rpc)
                except BadAnswer as e:  # shown in its failed-attempt flow as Google sent it
                    body, headers = e.body, {k.lower(): v for k, v in resp.headers.items()}
                    failure = GoogleError(502, INVALID_ANSWER, str(e))
            else:
                body, headers = await self._read_failure(resp, budget)
                failure = parse_google_error(resp.status, body, retry_after_header=headers.get("retry-after"),
                                             now=time.time())
            if (failure.http_status in FALLBACK_STATUSES or failure.http_status >= 500) and not last_base:
                await self._report(report, account, call, resp.status, body, headers, failure.message,
                                   "next base", started, budget.used, failure.reason_name)
                continue
            decision = decide(failure, refreshed=account.id in budget.refreshed, retries=budget.retries)
            await self._report(report, account, call, resp.status, body, headers, failure.message,
                               decision.action.value, started, budget.used, failure.reason_name,
                               decision.cooldown)
            return await self._apply(decision, failure, account, credential, model, budget)
        if failure is None:
            return None
        if self._remaining(budget) <= 0:
            budget.last = self._deadline_error(budget)
            return None
        return await self._apply(decide(failure, refreshed=True, retries=budget.retries), failure, account,
                                 credential, model, budget)

    async def _winner(self, resp: UpstreamResponse, stream: bool, budget: AttemptBudget, account: Account,
                      dialect: Dialect, call: UpstreamCall, rpc: str = "") -> Winner:
        """The 2xx answer once it proved usable; ``BadAnswer`` (response closed) when it did not."""
        winner = Winner(resp, account, dialect, call.url, budget.used, call.body, budget.deadline,
                        request_headers=call.headers)
        try:
            async with asyncio.timeout(max(self._remaining(budget), 0.0)):
                if stream:
                    winner.head = await self._first_event(resp)
                else:
                    winner.body = await resp.read()
                    winner.parsed = check_other(winner.body) if rpc else check_whole(winner.body)
                    resp.release()
        except (aiohttp.ClientError, TimeoutError) as e:
            resp.close()
            what = "stream" if stream else "answer"
            if isinstance(e, TimeoutError):
                raise BadAnswer(f"the 200 {what} sent no usable data in time ({type(e).__name__})") from None
            raise BadAnswer(f"the 200 {what} broke off ({type(e).__name__})") from None
        except BaseException:  # BadAnswer, or the client left (cancelled): never drain a bad answer
            resp.close()
            raise
        return winner

    async def _first_event(self, resp: UpstreamResponse) -> tuple[bytes, ...]:
        """A stream's chunks up to its first usable event (usually its first chunk: no copy of the rest)."""
        probe = FirstEventProbe()
        content = resp.content
        while True:
            chunk = await asyncio.wait_for(content.readany(), self.first_byte_timeout)
            if not chunk:
                probe.end()
                return tuple(probe.held)
            if probe.feed(chunk):
                return tuple(probe.held)

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
        if failure.status in (INVALID_ANSWER, UNREACHABLE):  # no Google status to name: say what happened
            budget.failures[account.id] = failure.message[:200]
        else:
            budget.failures[account.id] = f"{failure.http_status} {failure.status or decision.reason}".strip()
        budget.last = upstream_error_for(failure, account.label)
        if failure.http_status == 429 and self._on_rate_limited is not None:
            self._on_rate_limited(account)
        if decision.bare:
            return self._bare_429(failure, account, budget)
        if is_version_gate(failure):
            budget.last = version_gate_error(failure, getattr(self.dialects[account.kind], "user_agent", ""))
            logger.warning("%s", budget.last.message)
            return Action.FAIL
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

    def _bare_429(self, failure: GoogleError, account: Account, budget: AttemptBudget) -> Action:
        budget.bare_429s.append(account.id)
        budget.tried.add(account.id)
        if len(budget.bare_429s) < BARE_429_LIMIT:
            return Action.ROTATE
        budget.request_blamed = True
        labels = ", ".join(a.label for a in map(self.pool.find, budget.bare_429s) if a is not None)
        budget.last = errors.UpstreamRateLimited(
            f"Google answered 429 {failure.status or 'RESOURCE_EXHAUSTED'} \"{failure.message}\" with no "
            f"quota reason and no retry hint from {len(budget.bare_429s)} accounts ({labels}) for this "
            "request: the request itself is the likely cause (a very long conversation, too many tokens or "
            "images), so no account was cooled down and they keep serving other requests. Shorten the "
            "request, or retry in a moment.", code="request_resource_exhausted")
        logger.warning("bare 429 from %s for one request: answered 429, no account cooled down", labels)
        return Action.FAIL

    async def _report(self, report: Report | None, account: Account, call: UpstreamCall,
                      status: int | None, body: bytes, headers: dict[str, str], error: str, decision: str,
                      started: float, number: int = 0, reason: str = "", cooldown: float = 0.0) -> None:
        logger.info("attempt failed: %s %s -> %s %s (%s)", account.label, call.url, status or "-",
                    error[:200], decision)
        if report is not None:
            await report(AttemptRecord(account.label, call.url, status, body, headers, call.body, error,
                                       decision, self._clock() - started, number, reason, cooldown,
                                       call.headers))

    # ---- giving up ------------------------------------------------------------------------------
    def _deadline_error(self, budget: AttemptBudget) -> errors.GatewayError:
        return errors.UpstreamTimeout(
            f"No upstream answer within ag_upstream_timeout ({self.total_timeout:g}s) after {budget.used} "
            f"attempt(s)." + (f" Last error: {budget.last.message}" if budget.last else ""))

    async def _exhausted(self, model: str, budget: AttemptBudget) -> errors.GatewayError:
        accounts = self.pool.accounts
        if not accounts:
            where = self.pool.source or "the ag_accounts directory"
            return errors.PoolExhausted(
                f"No upstream accounts are configured: {where} holds no account file. Add one with "
                "'scripts/ag accounts add --refresh-token - --email you@gmail.com' or "
                "'scripts/ag accounts add --api-key -', or point ag_accounts at your accounts; the gateway "
                "picks them up within seconds.",
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
            if isinstance(budget.last, errors.UpstreamUnreachable):
                return errors.UpstreamUnreachable(
                    f"Upstream could not be reached for model {model!r} ({summary}). Check the network, a "
                    "proxy (HTTPS_PROXY) and ag_cloudcode_urls / ag_gemini_url.")
            return errors.PoolExhausted(
                f"All {len(accounts)} accounts failed for model {model!r} ({summary}).", status=503,
                headers=budget.last.headers if budget.last is not None else None)
        wait = max(min(ready_again) - now, 0.001)
        rate_limited = any(s.state == "cooling" and s.reason in RATE_LIMIT_REASONS for s in statuses)
        if failed_now and budget.last is not None:
            status = budget.last.status
        else:
            status = 429 if rate_limited else 503
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


def connection_failure(e: BaseException) -> GoogleError:
    """A call that got no HTTP answer: a time-out (504) or an unreachable host (DNS, refused, reset)."""
    text = f"{type(e).__name__}: {e}".strip(" :")
    if isinstance(e, TimeoutError):
        return GoogleError(504, "DEADLINE_EXCEEDED", text)
    if isinstance(e, (aiohttp.ClientConnectionError, OSError)):
        return GoogleError(502, UNREACHABLE, text)
    return GoogleError(502, "UNAVAILABLE", text)


def upstream_error_for(err: GoogleError, account_label: str) -> errors.GatewayError:
    """The client-facing error for a Google error that ended the attempts."""
    if err.status == UNREACHABLE:
        return errors.UpstreamUnreachable(f"Upstream ({account_label}) could not be reached: {err.message}")
    if err.status == INVALID_ANSWER:
        return errors.UpstreamProtocolError(f"Upstream ({account_label}) gave an unusable answer: "
                                            f"{err.message}")
    text = f"Upstream ({account_label}) answered {err.http_status} {err.status}: {err.message}".strip()
    if err.http_status == 400:
        if (claude := anthropic_error_message(err.message)) is not None:  # R-C7: Anthropic's error inside
            return errors.InvalidRequest(f"Claude (through Google) rejected the request: {claude}",
                                         code="upstream_invalid_argument")
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


def version_gate_error(err: GoogleError, user_agent: str) -> errors.GatewayError:
    """R-Q4: Cloud Code refuses the client version in ``ag_user_agent``; say what to set."""
    named = VERSION.findall(err.message)
    current = VERSION.findall(user_agent)
    if named:
        advice = f"--set ag_user_agent={named[-1]}"
    else:
        newer = f"newer than {current[0]}" if current else "current"
        advice = (f"--set ag_user_agent=<version> with a {newer} Antigravity version (the one the "
                  "Antigravity app shows in its About box, or the latest at "
                  "https://antigravity.google/changelog)")
    return errors.UpstreamError(
        f"Cloud Code rejected the client version the gateway sends (ag_user_agent = {user_agent!r}): "
        f"\"{err.message}\". This is the gateway's setting, not your request or account: {advice}. "
        "A version alone (such as 4.5.0) is enough for ag_user_agent.", code="client_version_rejected")


def aiohttp_sender(session: aiohttp.ClientSession, timeouts: Any,
                   on_wait: Callable[[], None] | None = None) -> Send:
    """The production ``send``: one pooled session, headers first (the body is streamed by the caller).
    ``on_wait`` is called as each call starts: what it schedules on the loop runs while the call waits.

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
        if on_wait is not None:
            on_wait()
        return await session.post(parsed_url(call.url), data=call.body, headers=call.headers, timeout=timeout,
                                  allow_redirects=False, proxy=proxy_for(call.url))

    return send


@functools.lru_cache(maxsize=256)
def parsed_url(url: str) -> yarl.URL:
    """aiohttp parses a string URL on every call (about a tenth of its client CPU); a gateway calls few
    distinct URLs (bases x models x RPCs), so each is parsed once."""
    return yarl.URL(url)


def error_event(message: str, code: int = 502) -> bytes:
    """A Google-style in-band SSE error frame, for an upstream stream that broke mid-way."""
    frame = {"error": {"code": code, "message": message, "status": "UNAVAILABLE"}}
    return b"data: " + orjson.dumps(frame) + b"\r\n\r\n"
