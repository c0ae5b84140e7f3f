"""The Usage addon: the usage ledger, ``/metrics``, ``/ag/usage`` and the client keys' limits.

- ``record`` is the access log's sink (``AccessLog(sinks=[usage.record])``): every billed request's
  ``RequestRecord`` goes to the ledger (an append; a writer thread commits), the metrics and the key's
  daily token count. Nothing here blocks the event loop.
- ``request`` (after ``Auth``, before the ``Gateway``) answers ``GET /metrics`` and ``GET /ag/usage``;
- ``admit`` is called by the Gateway once it has parsed a request's model, and applies the limits of
  the caller's named key: a model outside its list (403 ``model_not_allowed``), its daily tokens spent
  (429 ``budget_exceeded``), its requests per minute (429 ``rate_limit_exceeded`` with ``retry-after``).
  Requests from other keys pay one dict lookup.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from mitmproxy import ctx, http
from mitmproxy.addonmanager import Loader

from .. import errors
from .. import settings as s
from ..idle_work import IdleWork
from ..openai_api.routes import METRICS_PATH, USAGE_PATH, normalize
from ..upstream.background import BackgroundTasks
from ..upstream.pool import Pool
from ..upstream.redis_link import RedisLink
from ..usage import report
from ..usage.keys import DAY, KeyLimits
from ..usage.ledger import FILE_NAME, Ledger
from ..usage.metrics import CONTENT_TYPE, AccountGauge, Metrics
from ..usage.record import RequestRecord
from ..usage.shared_limits import SharedKeyLimits
from . import flows, options
from .client_keys import ClientKeys

logger = logging.getLogger(__name__)

USAGE_OPTIONS: tuple[tuple[str, type | object, object, str], ...] = (
    (
        "ag_data_dir",
        str,
        s.DEFAULT_DATA_DIR,
        "Where the gateway keeps its own state: the usage ledger is usage.sqlite3 in it.",
    ),
    (
        "ag_usage",
        bool,
        True,
        "Record one row per client request in the usage ledger (scripts/ag usage, "
        "/ag/usage); false: no ledger (metrics stay on).",
    ),
    (
        "ag_usage_retention_days",
        int,
        90,
        "Days of usage ledger rows kept; older rows are deleted (0: keep all).",
    ),
)
WATCHED = frozenset(name for name, *_ in USAGE_OPTIONS)


def read_usage_settings(o: Any) -> s.UsageSettings:
    return s.UsageSettings(
        data_dir=Path(o.ag_data_dir).expanduser(),
        enabled=o.ag_usage,
        retention_days=s.parse_retention_days(o.ag_usage_retention_days),
    )


def check_data_dir(directory: Path) -> None:
    """Create ``ag_data_dir`` if needed and check that the ledger can be written there (at start-up, so a
    bad folder stops mitmdump with one line instead of a gateway that silently records nothing)."""
    why = ""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        why = e.strerror or str(e)
    else:
        if not os.access(directory, os.W_OK | os.X_OK):
            why = "not writable"
    if why:
        raise ValueError(f"ag_data_dir: cannot keep the usage ledger in {directory} ({why}): choose a "
                         "writable folder, or set ag_usage=false")


class Usage:
    def __init__(self, pool: Pool | None = None, keys: ClientKeys | None = None,
                 idle: IdleWork | None = None) -> None:
        self.pool = pool or Pool()
        self.keys = keys or ClientKeys()
        # Where the access log queues the finished requests' records for ``record`` (idle_work.py): what
        # reads their sums runs it first.
        self.idle = idle if idle is not None else IdleWork()
        self.settings = s.UsageSettings()
        self.metrics = Metrics()
        self.limits = KeyLimits()
        self.ledger: Ledger | None = None
        # (model, remaining fraction) of an account id, from the last quota refresh: the composition root
        # points it at the pool's quota snapshots; none by default.
        self.quota_of: Callable[[str], Iterable[tuple[str, float]]] = lambda account_id: ()
        self._running = False
        # ag_state_url: the composition root points it at the Gateway's link; the limits then hold across
        # every instance sharing that Redis.
        self.shared_link: Callable[[], RedisLink | None] = lambda: None
        self._shared: SharedKeyLimits | None = None
        self.tasks = BackgroundTasks("ag-usage")

    # ---- lifecycle ---------------------------------------------------------------------------------
    def load(self, loader: Loader) -> None:
        options.declare(loader, USAGE_OPTIONS)

    def configure(self, updated: set[str]) -> None:
        if not updated & WATCHED:
            return
        try:
            new = read_usage_settings(ctx.options)
            if new.enabled:
                check_data_dir(new.data_dir)
        except ValueError as e:
            options.refuse(str(e))
            return
        changed, self.settings = new != self.settings, new
        if changed and self._running:  # mitmweb's options: the ledger moves (or stops) now
            self.tasks.spawn(self._open_ledger(), "reopen-ledger")  # done() cancels it if still opening

    async def running(self) -> None:
        self._running = True
        await self._open_ledger()

    async def done(self) -> None:
        self._running = False
        self.idle.run_now()  # the last requests' rows, before the ledger closes
        await self.tasks.cancel_all()
        await self._close_ledger()

    async def _open_ledger(self) -> None:
        await self._close_ledger()
        st = self.settings
        if not st.enabled:
            return
        ledger = Ledger(st.data_dir / FILE_NAME, retention_days=st.retention_days)
        today = math.floor(time.time() / DAY) * DAY
        opening = asyncio.ensure_future(asyncio.to_thread(_open_and_sum, ledger, today))
        try:
            spent = await asyncio.shield(opening)
        except asyncio.CancelledError:  # done() while it opened: the thread finishes, then nothing stays open
            await asyncio.wait([opening])
            await asyncio.to_thread(ledger.close)
            raise
        except (sqlite3.Error, OSError) as e:  # say which file and why, in one line
            await asyncio.to_thread(ledger.close)
            logger.error("usage ledger: cannot open %s (%s: %s); set ag_data_dir to a writable folder or "
                         "ag_usage=false", ledger.path, type(e).__name__, e)
            return
        self.limits.seed(spent)
        self.ledger = ledger
        logger.debug("usage ledger: %s", ledger.path)

    async def _close_ledger(self) -> None:
        ledger, self.ledger = self.ledger, None
        if ledger is not None:
            await asyncio.to_thread(ledger.close)

    # ---- the access log's sink ------------------------------------------------------------------------
    def record(self, r: RequestRecord) -> None:
        if self.ledger is not None:
            self.ledger.append(r)
        self.metrics.observe(r)
        if r.key_name and r.has_tokens:
            self.limits.spend(r.key_name, r.total_tokens)
            if (shared := self._shared_limits()) is not None:
                self.tasks.spawn(shared.spend(r.key_name, r.total_tokens), "share-spent-tokens")

    def _shared_limits(self) -> SharedKeyLimits | None:
        link = self.shared_link()
        if link is None:
            return None
        if self._shared is None or self._shared.link is not link:
            self._shared = SharedKeyLimits(link, self.limits)
        return self._shared

    # ---- hooks -------------------------------------------------------------------------------------
    def request(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        """Not ``async``: on every other request (all the model calls) it returns before making a
        coroutine; mitmproxy awaits what a hook returns when it is awaitable."""
        if (
            flow.response
            or flow.error
            or flow.request.method not in ("GET", "HEAD")
            or not flows.is_ours(flow)
        ):
            return None
        path = normalize(flow.request.path)
        return self._answer(flow, path) if path in (METRICS_PATH, USAGE_PATH) else None

    async def _answer(self, flow: http.HTTPFlow, path: str) -> None:
        self.idle.run_now()  # the requests that just finished count
        if path == METRICS_PATH:
            flow.metadata[flows.ROUTE] = "metrics"
            flow.response = await self._metrics()
        else:
            flow.metadata[flows.ROUTE] = "ag.usage"
            flow.response = await self._usage(flow.request)

    def admit(self, flow: http.HTTPFlow, model: str) -> Awaitable[None] | None:
        """The Gateway's check of the caller's named key, once the body is parsed (decoded under the body
        limit, so nothing here reads it again); raises the ``GatewayError`` the client gets. With
        ``ag_state_url`` a key with rpm or daily tokens is checked in Redis: then the check is returned
        for the Gateway to await (None otherwise: unlimited callers pay no await)."""
        name = flow.metadata.get(flows.KEY)
        key = self.keys.by_name.get(name) if name else None
        if key is None or not key.limited:
            return None
        if key.daily_tokens:
            self.idle.run_now()  # the tokens of the key's requests that just finished count
        if (key.rpm or key.daily_tokens) and (shared := self._shared_limits()) is not None:
            return self._admit_shared(flow, shared, key, model)
        try:
            self.limits.admit(key, model)
        except errors.GatewayError:
            self._refused(flow, model)
            raise
        return None

    async def _admit_shared(self, flow: http.HTTPFlow, shared: SharedKeyLimits, key: Any, model: str) -> None:
        try:
            await shared.admit(key, model)
        except errors.GatewayError:
            self._refused(flow, model)
            raise

    @staticmethod
    def _refused(flow: http.HTTPFlow, model: str) -> None:
        flows.note_client_request(flow, model)  # the refusal's ledger row and access line name the model

    async def _metrics(self) -> http.Response:
        statuses = await self.pool.status()
        body = self.metrics.render(
            AccountGauge(st.label, st.state, tuple(self.quota_of(st.account.id))) for st in statuses
        )
        return flows.answer(200, body, ((b"content-type", CONTENT_TYPE.encode()),))

    async def _usage(self, request: http.Request) -> http.Response:
        ledger = self.ledger
        if ledger is None:
            why = (
                "is off (ag_usage=false)"
                if not self.settings.enabled
                else "could not be opened (see the log)"
            )
            return flows.error_response(errors.NotFound(f"The usage ledger {why}."))
        try:
            since = report.parse_since(request.query.get("since", report.DEFAULT_SINCE), time.time())
        except ValueError as e:
            return flows.error_response(errors.InvalidRequest(str(e).replace("--", ""), param="since"))
        by = request.query.get("by", "day")
        if by not in report.GROUPS:
            return flows.error_response(
                errors.InvalidRequest(f"by: {by!r} is not one of {', '.join(report.GROUPS)}", param="by")
            )
        await asyncio.to_thread(ledger.flush)  # the answer includes the requests that just finished
        result = await asyncio.to_thread(report.summarize, ledger.path, since, by)
        return flows.json_response(200, result)


def _open_and_sum(ledger: Ledger, since: float) -> dict[str, int]:
    """Open the ledger and sum what each key spent since ``since`` (one thread hop: one place to wait)."""
    ledger.open()
    return report.spent_since(ledger.path, since)
