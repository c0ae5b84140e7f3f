"""OAuth access tokens for Cloud Code accounts: refreshed before they expire, one refresh at a time.

Rules:
- single flight: N concurrent requests on an expired account cause one token call; the others
  await the same future (shielded, so one caller's cancellation does not cancel the refresh);
- a rotated refresh token is written to disk *before* the new access token is used, so a crash
  can never leave the only valid refresh token in memory;
- ``invalid_grant`` disables the account on disk with its reason and time; any other failure is
  temporary (``RefreshFailed``) and the caller cools the account down.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import orjson

from .accounts import Account

logger = logging.getLogger(__name__)

REFRESH_MARGIN = 120.0  # seconds before expiry at which a token counts as stale


class RefreshFailed(Exception):
    """The token endpoint did not give us a token this time."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True, slots=True)
class OAuthClient:
    token_url: str
    client_id: str
    client_secret: str
    user_agent: str = ""


Persist = Callable[[Account], Awaitable[None]]


class TokenService:
    def __init__(self, client: OAuthClient, session: aiohttp.ClientSession, persist: Persist,
                 clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self._session = session
        self._persist = persist
        self._clock = clock
        self._inflight: dict[str, asyncio.Future[str]] = {}
        self._tasks: set[asyncio.Future[None]] = set()  # the loop only keeps weak references

    async def credential(self, account: Account, *, force: bool = False) -> str:
        """The secret to send for ``account``: its API key, or a fresh-enough access token."""
        if account.kind == "api_key":
            return account.api_key
        if not force and not account.token_expires_within(REFRESH_MARGIN, self._clock()):
            return account.access_token
        fut = self._inflight.get(account.id)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            self._inflight[account.id] = fut
            fut.add_done_callback(lambda _f, key=account.id: self._inflight.pop(key, None))
            refresh = asyncio.ensure_future(self._refresh_into(account, fut))
            self._tasks.add(refresh)
            refresh.add_done_callback(self._tasks.discard)
            refresh.add_done_callback(_consume)
        return await asyncio.shield(fut)

    async def _refresh_into(self, account: Account, fut: asyncio.Future[str]) -> None:
        try:
            token = await self._refresh(account)
        except BaseException as e:
            if not fut.done():
                fut.set_exception(e if isinstance(e, Exception) else RefreshFailed("refresh cancelled"))
                fut.exception()  # mark retrieved: nobody may be waiting any more
            if not isinstance(e, Exception):
                raise
        else:
            fut.set_result(token)

    async def _refresh(self, account: Account) -> str:
        if not account.refresh_token:
            raise RefreshFailed(f"{account.label}: no refresh token and the access token is expired", permanent=True)
        if not (self.client.client_id and self.client.client_secret):
            raise RefreshFailed("set ag_oauth_client_id and ag_oauth_client_secret to refresh OAuth tokens")
        status, data = await self._post(account.refresh_token)
        if status != 200 or not isinstance(data.get("access_token"), str):
            await self._refresh_rejected(account, status, data)
        if isinstance(data.get("refresh_token"), str) and data["refresh_token"] != account.refresh_token:
            account.refresh_token = data["refresh_token"]
        account.access_token = data["access_token"]
        account.expiry_timestamp = self._clock() + float(data.get("expires_in") or 3599)
        await self._persist(account)  # before first use: the old refresh token may be dead now
        logger.info("refreshed the access token of %s", account.label)
        return account.access_token

    async def _post(self, refresh_token: str) -> tuple[int, dict]:
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token,
                "client_id": self.client.client_id, "client_secret": self.client.client_secret}
        headers = {"user-agent": self.client.user_agent} if self.client.user_agent else {}
        try:
            async with self._session.post(self.client.token_url, data=form, headers=headers,
                                          timeout=aiohttp.ClientTimeout(total=30)) as resp:
                body = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as e:
            raise RefreshFailed(f"token endpoint unreachable: {type(e).__name__}") from e
        try:
            data = orjson.loads(body) if body else {}
        except orjson.JSONDecodeError:
            data = {}
        return status, data if isinstance(data, dict) else {}

    async def _refresh_rejected(self, account: Account, status: int, data: dict) -> None:
        error = str(data.get("error") or f"http {status}")
        detail = str(data.get("error_description") or "")[:300]
        if error == "invalid_grant":
            account.disabled = True
            account.disabled_reason = f"invalid_grant: {detail}".strip()[:800]
            account.raw["disabled_at"] = int(self._clock())
            await self._persist(account)
            logger.warning("disabled %s: the refresh token was revoked (%s)", account.label, detail)
            raise RefreshFailed(f"{account.label}: refresh token revoked (invalid_grant)", permanent=True)
        raise RefreshFailed(f"{account.label}: token refresh failed: {error} {detail}".strip())


def _consume(task: asyncio.Future) -> None:
    if not task.cancelled():
        task.exception()
