"""mitmproxy commands for the account pool, for mitmweb's command bar and mitmproxy's console.

    ag.accounts                  a table: each account's state (ready, cooling until, disabled, cannot
                                 refresh), tier, requests served, last use; below it, its quota per
                                 model (remaining, reset) and buckets, and per-model cooldowns
    ag.quota.refresh             ask Cloud Code for every OAuth account's quota now
    ag.accounts.reload           re-read the account directory now
    ag.accounts.disable <id>     disable an account (written to its file) / enable it again
    ag.accounts.enable <id>
    ag.accounts.reset <id>       forget its cooldowns: ready again now

Cooldowns live in the running gateway (``PoolState``), which the CLI cannot see: these commands are
how to look at them. mitmproxy commands are synchronous and the pool state is async (a shared
backend answers over the network), so ``ag.accounts`` shows a snapshot refreshed every second and
right after each command here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any

from mitmproxy import command, exceptions

from ..account_view import table
from ..upstream.account_watch import AccountWatcher
from ..upstream.accounts import Account, AccountFiles
from ..upstream.background import BackgroundTasks
from ..upstream.oauth import NO_OAUTH_CLIENT
from ..upstream.periodic import Periodic
from ..upstream.pool import AccountStatus, Pool

logger = logging.getLogger(__name__)

SNAPSHOT_INTERVAL = 1.0


ADD_HINT = ("add one with 'scripts/ag accounts add --refresh-token - --email you@gmail.com' or "
            "'scripts/ag accounts add --api-key -' (picked up within seconds), "
            "or try 'scripts/gateway --demo'")


def cannot_refresh(s: AccountStatus, can_refresh: bool) -> bool:
    """An enabled OAuth account that works only until its access token expires: no OAuth client is set."""
    return not can_refresh and s.account.kind == "oauth" and s.state != "disabled"


def token_expiry(a: Account, now: float) -> str:
    if not a.access_token:
        return "it has no access token, so it cannot be used"
    if a.expiry_timestamp <= now:
        return f"its access token expired at {_utc(a.expiry_timestamp)}, so it cannot be used"
    minutes = (a.expiry_timestamp - now) / 60
    return f"its access token expires at {_utc(a.expiry_timestamp)} (in {minutes:.0f} min)"


def summary(statuses: Sequence[AccountStatus], can_refresh: bool, source: str,
            now: float) -> tuple[str, list[str]]:
    """The ready line's account part, and one warning per account that needs the user's attention."""
    if not statuses:
        return f"0 accounts in {source}", [f"no accounts in {source}: {ADD_HINT}"]
    stuck = [s for s in statuses if cannot_refresh(s, can_refresh)]
    disabled = sum(s.state == "disabled" for s in statuses)
    line = (f"{len(statuses)} account(s) from {source}: {len(statuses) - disabled - len(stuck)} ready, "
            f"{disabled} disabled, {len(stuck)} cannot refresh")
    warnings = [f"account {s.label} cannot refresh its access token ({NO_OAUTH_CLIENT}); "
                f"{token_expiry(s.account, now)}" for s in stuck]
    return line, warnings


def describe(s: AccountStatus, now: float, can_refresh: bool = True) -> str:
    """One account as a line of text (no secrets: label, id, kind and state only)."""
    a = s.account
    head = f"{a.label} [{a.id}, {'oauth' if a.kind == 'oauth' else 'api key'}]"
    if s.state == "disabled":
        return f"{head}: disabled ({s.reason})"
    models = [c for c in s.cooldowns if c.model]
    if s.state == "cooling" and s.until is not None:
        state = f"cooling until {_utc(s.until)} (in {s.until - now:.0f}s): {s.reason}"
    else:
        state = "ready"
    if models:
        state += "; " + ", ".join(f"{c.model} cooling until {_utc(c.until)} ({c.reason})" for c in models)
    if note := refresh_note(s, can_refresh, now):
        state += f"; {note}"
    return f"{head}: {state}"


def refresh_note(s: AccountStatus, can_refresh: bool, now: float) -> str:
    """Why an OAuth account will stop working, and when; "" when it can refresh (or is disabled)."""
    if not cannot_refresh(s, can_refresh):
        return ""
    expiry = token_expiry(s.account, now)
    return f"CANNOT REFRESH (set ag_oauth_client_id and ag_oauth_client_secret): {expiry}"


def _utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


Views = Callable[[], Awaitable[list[dict[str, Any]]]]


class AccountCommands:
    def __init__(self, pool: Pool, watcher: AccountWatcher,
                 can_refresh: Callable[[], bool] = lambda: True, views: Views | None = None,
                 refresh_quota: Callable[[], Awaitable[None]] | None = None) -> None:
        self.pool = pool
        self.watcher = watcher
        self.can_refresh = can_refresh  # is an OAuth client configured (the Gateway's settings)
        self.files = AccountFiles()
        self.snapshot: list[AccountStatus] = []
        self.views: list[dict[str, Any]] = []  # what GET /ag/accounts answers, for the table
        self._views = views
        self._refresh_quota = refresh_quota
        self._snapshots = Periodic(self.refresh, name="ag-accounts-snapshot")
        self.tasks = BackgroundTasks("ag-accounts")
        # ag_state_url: tells the other gateway instances of a disable/enable made here
        self.share_disabled: Callable[[Account], Coroutine[Any, Any, None]] | None = None

    # ---- lifecycle ------------------------------------------------------------------------------
    async def running(self) -> None:
        await self.refresh()
        self._snapshots.start(SNAPSHOT_INTERVAL)

    async def done(self) -> None:
        await self._snapshots.stop()
        await self.tasks.cancel_all()

    async def refresh(self) -> None:
        self.snapshot = await self.pool.status()
        if self._views is not None:
            self.views = await self._views()

    # ---- commands -------------------------------------------------------------------------------
    @command.command("ag.accounts")
    def accounts(self) -> Sequence[str]:
        """Every account with its live state (ready, cooling until when and why, disabled), tier, requests
        served, last use, and its quota per model and bucket."""
        if not self.snapshot:
            return ["no accounts loaded"]
        now, can_refresh = time.time(), self.can_refresh()
        if self._views is not None:
            rows = table(self.views, now)
        else:
            rows = [describe(s, now, can_refresh) for s in self.snapshot]
        # mitmweb's command bar shows a result as one line of JSON; its event log is a <pre>, where the
        # table keeps its columns (mitmproxy's console shows the returned lines as they are).
        logger.info("ag.accounts:\n%s", "\n".join(rows))
        return rows

    @command.command("ag.quota.refresh")
    def quota_refresh(self) -> None:
        """Ask Cloud Code for every OAuth account's quota now (ag.accounts shows it once it arrived)."""
        if self._refresh_quota is not None:
            self.tasks.spawn(self._after(self._refresh_quota()), "refresh-quota")

    @command.command("ag.accounts.reload")
    def reload(self) -> None:
        """Re-read the account directory now (it is also watched: changes apply within seconds)."""
        self.tasks.spawn(self._after(self._reload()), "reload")

    @command.command("ag.accounts.disable")
    def disable(self, account: str) -> None:
        """Disable an account (by id or email); written to its file."""
        self._set_disabled(self._find(account), True)

    @command.command("ag.accounts.enable")
    def enable(self, account: str) -> None:
        """Enable a disabled account (by id or email); written to its file."""
        self._set_disabled(self._find(account), False)

    @command.command("ag.accounts.reset")
    def reset(self, account: str) -> None:
        """Forget an account's cooldowns (by id or email): it is ready again now."""
        found = self._find(account)
        self.tasks.spawn(self._after(self.pool.clear_cooldowns(found)), "reset")
        logger.info("accounts: cooldowns of %s cleared", found.label)

    # ---- helpers --------------------------------------------------------------------------------
    def _find(self, key: str) -> Account:
        found = self.pool.find(key)
        if found is None:
            raise exceptions.CommandError(f"no account {key!r}; ag.accounts lists them")
        return found

    def _set_disabled(self, account: Account, disabled: bool) -> None:
        if disabled:
            account.disable("disabled with ag.accounts.disable", int(time.time()))
        else:
            account.enable()
        logger.info("accounts: %s %s", "disabled" if disabled else "enabled", account.label)
        self.tasks.spawn(self._after(self._save_disabled(account)), "save-disabled")
        if self.share_disabled is not None:
            self.tasks.spawn(self.share_disabled(account), "share-disabled")

    async def _save_disabled(self, account: Account) -> None:
        try:
            await self.files.save_disabled(account)
        except (OSError, ValueError) as e:
            logger.error("accounts: could not write %s: %s", account.label, e)

    async def _reload(self) -> None:
        changed = await self.watcher.poll()
        logger.info("accounts: reloaded from %s (%s)", self.watcher.directory,
                    "changed" if changed else "no change")

    async def _after(self, coro: Any) -> None:
        await coro
        await self.refresh()
