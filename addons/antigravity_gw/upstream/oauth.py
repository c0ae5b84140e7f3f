"""What a Cloud Code account needs before a call: a fresh access token and its project id.

Rules:
- single flight: N concurrent requests on an expired account cause one token call; the others
  await the same task (shielded, so one caller's cancellation does not cancel the refresh);
- a token counts as stale ``REFRESH_MARGIN`` seconds before it expires, so no request leaves with
  a token that dies on the way;
- a 401 forces a refresh only if the rejected token is still the current one: N requests that all
  got a 401 with the same token cause one refresh, not N;
- a rotated refresh token is written to disk *before* the new access token is used, so a crash
  can never leave the only valid refresh token in memory;
- ``invalid_grant`` first re-reads the file (another program may have rotated the token since we
  loaded it) and tries that token; only then is the account disabled on disk, with its reason and
  time. Any other failure is temporary (``RefreshFailed``) and the caller cools the account down;
- a missing ``project_id`` is asked from ``loadCodeAssist`` once (single flight too) and saved.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp
import orjson

from .accounts import Account
from .dialects import cloudcode_headers

if TYPE_CHECKING:
    from .shared_tokens import SharedTokens

logger = logging.getLogger(__name__)

REFRESH_MARGIN = 120.0  # seconds before expiry at which a token counts as stale
DEFAULT_TOKEN_LIFETIME = 3599.0
NO_OAUTH_CLIENT = ("no OAuth client is configured: set ag_oauth_client_id and ag_oauth_client_secret to the "
                   "client that issued the refresh tokens (README: Accounts)")
LOAD_CODE_ASSIST_BODY = {"metadata": {"ideType": "ANTIGRAVITY", "platform": "PLATFORM_UNSPECIFIED",
                                      "pluginType": "GEMINI"}}


class RefreshFailed(Exception):
    """The token endpoint did not give us a token this time (``permanent``: not until a human acts)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class ProjectUnavailable(Exception):
    """``loadCodeAssist`` gave no project: ``missing`` when it answered without one (not set up)."""

    def __init__(self, message: str, *, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing


@dataclass(frozen=True, slots=True)
class OAuthClient:
    token_url: str
    client_id: str
    client_secret: str
    user_agent: str = ""


class TokenStore(Protocol):
    async def save_tokens(self, account: Account) -> None: ...
    async def save_disabled(self, account: Account) -> None: ...
    async def stored_refresh_token(self, account: Account) -> str: ...


TokenEndpoint = Callable[[str], Awaitable[tuple[int, dict[str, Any]]]]  # refresh token -> (status, JSON)


class SingleFlight:
    """At most one run per key; concurrent callers await the same task."""

    def __init__(self) -> None:
        self._inflight: dict[str, asyncio.Task[Any]] = {}

    async def run[R](self, key: str, start: Callable[[], Awaitable[R]]) -> R:
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(_as_coroutine(start))
            self._inflight[key] = task  # also the strong reference the loop does not keep
            task.add_done_callback(functools.partial(self._forget, key))
        return await asyncio.shield(task)

    def _forget(self, key: str, task: asyncio.Task[Any]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may have gone away

    def __len__(self) -> int:
        return len(self._inflight)


async def _as_coroutine[R](start: Callable[[], Awaitable[R]]) -> R:
    return await start()


class OAuthTokenEndpoint:
    """The production ``TokenEndpoint``: Google's refresh_token grant over the pooled session."""

    def __init__(self, session: aiohttp.ClientSession, client: OAuthClient, timeout: float = 30.0) -> None:
        self.client = client
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    @property
    def can_refresh(self) -> bool:
        return bool(self.client.client_id and self.client.client_secret)

    async def __call__(self, refresh_token: str) -> tuple[int, dict[str, Any]]:
        if not self.can_refresh:
            raise RefreshFailed(f"cannot refresh OAuth tokens: {NO_OAUTH_CLIENT}")
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token,
                "client_id": self.client.client_id, "client_secret": self.client.client_secret}
        headers = {"user-agent": self.client.user_agent} if self.client.user_agent else {}
        try:
            async with self._session.post(self.client.token_url, data=form, headers=headers,
                                          timeout=self._timeout) as resp:
                return resp.status, _json_object(await resp.read())
        except (aiohttp.ClientError, TimeoutError) as e:
            raise RefreshFailed(f"token endpoint unreachable: {type(e).__name__}") from e


class TokenService:
    def __init__(self, endpoint: TokenEndpoint, store: TokenStore, clock: Callable[[], float] = time.time,
                 margin: float = REFRESH_MARGIN) -> None:
        self.endpoint = endpoint
        self._store = store
        self._clock = clock
        self.margin = margin
        self._flights = SingleFlight()
        # ag_state_url: refreshes single-flight across instances too (upstream/shared_tokens.py)
        self.shared: SharedTokens | None = None

    async def credential(self, account: Account, *, stale: str | None = None) -> str:
        """The secret to send for ``account``: its API key, or a fresh-enough access token.

        ``stale``: an access token upstream just rejected; it is refreshed unless it was already.
        """
        ready = self.ready_credential(account, stale=stale)
        if ready is not None:
            return ready
        return await self._flights.run(account.id, lambda: self._refresh_anywhere(account))

    def _refresh_anywhere(self, account: Account) -> Awaitable[str]:
        if self.shared is None:
            return self._refresh(account)
        return self.shared.refresh(account, lambda: self._refresh(account))

    def ready_credential(self, account: Account, *, stale: str | None = None) -> str | None:
        """The credential when no refresh is needed (the common case, without a trip through the loop)."""
        if account.kind == "api_key":
            return account.api_key
        expiring = account.token_expires_within(self.margin, self._clock())
        if not expiring and (stale is None or stale != account.access_token):
            return account.access_token
        return None

    async def _refresh(self, account: Account) -> str:
        if not account.refresh_token:
            raise RefreshFailed(f"{account.label}: the access token is expired and there is no refresh token")
        if not getattr(self.endpoint, "can_refresh", True):
            when = "has no access token" if not account.access_token else (
                f"its access token expire{'d' if account.expiry_timestamp <= self._clock() else 's'} at "
                f"{datetime.fromtimestamp(account.expiry_timestamp, UTC):%Y-%m-%dT%H:%M:%SZ}")
            raise RefreshFailed(f"{account.label}: {when} and it cannot be refreshed: {NO_OAUTH_CLIENT}")
        used = account.refresh_token
        status, data = await self.endpoint(used)
        if _error_of(status, data) == "invalid_grant":
            on_disk = await self._store.stored_refresh_token(account)
            if on_disk and on_disk != used and on_disk not in account.retired_refresh_tokens:
                logger.info("%s: the refresh token on disk changed; trying it", account.label)
                account.adopt_refresh_token(on_disk)
                used = on_disk
                status, data = await self.endpoint(used)
        if status != 200 or not isinstance(data.get("access_token"), str):
            await self._rejected(account, status, data)
        new_refresh = data.get("refresh_token")
        account.apply_refresh(used, data["access_token"], self._clock() + _lifetime(data),
                              new_refresh if isinstance(new_refresh, str) else "")
        try:
            await self._store.save_tokens(account)  # before first use: the old refresh token may be dead now
        except (OSError, ValueError) as e:
            logger.error("%s: could not save the refreshed token (%s); it lives in memory only",
                         account.label, e)
        logger.info("refreshed the access token of %s", account.label)
        return account.access_token

    async def _rejected(self, account: Account, status: int, data: dict[str, Any]) -> None:
        error = _error_of(status, data)
        detail = str(data.get("error_description") or "")[:300]
        if error != "invalid_grant":
            raise RefreshFailed(f"{account.label}: token refresh failed: {error} {detail}".strip())
        account.disable(f"invalid_grant: {detail}".strip()[:800], int(self._clock()))
        try:
            await self._store.save_disabled(account)
        except (OSError, ValueError) as e:
            logger.error("%s: could not mark the account disabled on disk (%s)", account.label, e)
        logger.warning("disabled %s: its refresh token was revoked (%s)", account.label,
                       detail or "invalid_grant")
        if self.shared is not None:
            await self.shared.disabled(account)
        raise RefreshFailed(f"{account.label}: refresh token revoked (invalid_grant)", permanent=True)


class ProjectResolver:
    """``project_id`` for Cloud Code accounts that have none, from ``loadCodeAssist``; saved once known."""

    def __init__(self, session: aiohttp.ClientSession, base: str, user_agent: str, store: TokenStore,
                 timeout: float = 30.0) -> None:
        self.base = base
        self.user_agent = user_agent
        self._session = session
        self._store = store
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._flights = SingleFlight()
        self.shared: SharedTokens | None = None  # ag_state_url: a project found here reaches every instance

    @staticmethod
    def known(account: Account) -> bool:
        """Nothing to look up: an API key account, or a project already known."""
        return account.kind != "oauth" or bool(account.project_id)

    async def ensure(self, account: Account, token: str) -> str:
        if self.known(account):
            return account.project_id
        return await self._flights.run(account.id, lambda: self._resolve(account, token))

    async def _resolve(self, account: Account, token: str) -> str:
        project = await self._load_code_assist(token)
        account.set_project(project)
        try:
            await self._store.save_tokens(account)
        except (OSError, ValueError) as e:
            logger.error("%s: could not save its project id (%s)", account.label, e)
        logger.info("%s: project %s (from loadCodeAssist)", account.label, project)
        if self.shared is not None:
            await self.shared.share_project(account)
        return project

    async def _load_code_assist(self, token: str) -> str:
        headers = cloudcode_headers(token, self.user_agent)
        try:
            async with self._session.post(f"{self.base}:loadCodeAssist", headers=headers,
                                          data=orjson.dumps(LOAD_CODE_ASSIST_BODY),
                                          timeout=self._timeout) as resp:
                status, data = resp.status, _json_object(await resp.read())
        except (aiohttp.ClientError, TimeoutError) as e:
            raise ProjectUnavailable(f"loadCodeAssist unreachable: {type(e).__name__}") from e
        if status != 200:
            raise ProjectUnavailable(f"loadCodeAssist answered {status}")
        project = project_from_load_code_assist(data)
        if not project:
            raise ProjectUnavailable("loadCodeAssist answered without a cloudaicompanionProject "
                                     "(sign in to Antigravity once with this account)", missing=True)
        return project


def project_from_load_code_assist(data: dict[str, Any]) -> str:
    """``cloudaicompanionProject`` is a string, or an object with an ``id``."""
    value = data.get("cloudaicompanionProject")
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) else ""


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def _error_of(status: int, data: dict[str, Any]) -> str:
    error = data.get("error")
    if isinstance(error, dict):  # some Google endpoints nest a google.rpc.Status here
        error = error.get("status")
    return str(error or f"http {status}")


def _lifetime(data: dict[str, Any]) -> float:
    try:
        return float(data.get("expires_in") or DEFAULT_TOKEN_LIFETIME)
    except (TypeError, ValueError):
        return DEFAULT_TOKEN_LIFETIME
