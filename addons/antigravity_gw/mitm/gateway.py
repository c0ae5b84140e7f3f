"""The Gateway addon: OpenAI requests in, Gemini calls out through the relay, OpenAI answers back.

Hooks are guard clauses plus one call:
- ``requestheaders``: refuse a body over the limit from its Content-Length, before it is read (P18);
- ``request``: is this flow ours? Answer it directly (health, models, errors) or translate it into
  the canonical upstream request; a non-stream request is answered right here when nothing could
  still intercept or rewrite it (no relay hop), everything else is pointed at the loopback relay
  (while an intercept filter is set, as the client's request, which the relay translates again if it
  was edited while held);
- ``responseheaders``: restore the display URL, add our headers, install the stream translator;
- ``response``: translate a non-stream body;
- ``error``: forget the flow's state (the client left before the relay saw it);
- ``client_disconnected``: cancel the attempts an inline answer is still making for that client (the
  relay's are cancelled by their own connection closing);
- ``server_connect``: never let mitmproxy itself connect to an intercepted host (api.openai.com).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from mitmproxy import ctx, exceptions, http
from mitmproxy.addonmanager import Loader
from mitmproxy.hooks import UpdateHook
from mitmproxy.proxy import server_hooks

from .. import errors, readable
from ..account_view import account_view, utc
from ..error_shapes import shape_for_path
from ..idle_work import IdleWork
from ..openai_api import inbound
from ..openai_api.decoding import decode_body
from ..openai_api.routes import Route, RouteKind, match_route
from ..settings import Settings
from ..translate.endpoints import Endpoint, Endpoints, Ids, NeedsStoredState, ParsedRequest
from ..upstream.account_watch import AccountWatcher
from ..upstream.accounts import Account, AccountFiles
from ..upstream.attempts import AttemptRecord, AttemptRunner, Winner, aiohttp_sender
from ..upstream.available_models import GoogleModels
from ..upstream.background import BackgroundTasks
from ..upstream.dialects import (
    CallContext,
    CloudCode,
    Dialect,
    PublicGemini,
    canonical_path,
    new_request_id,
    unwrap_any,
)
from ..upstream.media import ImageFetcher
from ..upstream.oauth import OAuthClient, OAuthTokenEndpoint, ProjectResolver, TokenService
from ..upstream.periodic import Periodic
from ..upstream.pool import Pool, conversation_key
from ..upstream.quota import QuotaMonitor
from ..upstream.redis_link import RedisLink
from ..upstream.relay import ERROR_HEADER, FLOW_HEADER, Relay, RelayJob, read_whole
from ..upstream.shared_state import StateSharing, shared_scheduler_for
from . import flows, options
from .access_log import error_object, tokens_of, usage_tokens
from .commands import AccountCommands, refresh_note, summary
from .model_map import ModelMap
from .models import ModelsEndpoint
from .stored_responses import StoredResponses
from .stream import StreamAdapter

logger = logging.getLogger(__name__)

STALE_PLAN_AGE = 6 * 3600.0  # seconds; longer than any request, intercepted ones included
CLIENT_SECRET_HEADERS = flows.CLIENT_SECRET_HEADERS
MAPPED_MODEL_FIELD = flows.MAPPED_MODEL_HEADER.encode()
ACCOUNT_FIELD = flows.ACCOUNT_HEADER.encode()
ATTEMPTS_FIELD = b"x-ag-attempts"
ERROR_FIELD = ERROR_HEADER.encode()
FLOW_FIELD = FLOW_HEADER.encode()
UPSTREAM_HOST = b"generativelanguage.googleapis.com"  # what the relay request names as its Host (P9)
# accept-encoding identity: the stream callable must see raw bytes (P4). The body is sent unencoded, its
# length set from it (P10).
RELAY_FIELDS = ((b"content-type", b"application/json"), (b"accept-encoding", b"identity"))
RELAY_REPLACED = frozenset({*flows.SECRET_NAMES, FLOW_FIELD, b"host", b"transfer-encoding",
                            b"content-length", b"content-encoding", *(name for name, _ in RELAY_FIELDS)})
SSE_FIELDS = ((b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
              (b"x-accel-buffering", b"no"))
CHUNKED_FIELD = (b"transfer-encoding", b"chunked")
# "server" names the loopback relay (aiohttp), not anything the client talks to: never on any answer.
RELAY_ONLY = frozenset({b"server", ERROR_FIELD})
# Replaced on a stream answer.
SSE_REPLACED = frozenset({b"content-length", b"transfer-encoding", b"server", ERROR_FIELD,
                          *(name for name, _ in SSE_FIELDS)})
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
REWRITING_OPTIONS = ("map_remote", "map_local", "modify_headers", "modify_body")
STARTING_RETRY = {"retry-after": "1"}
STORED_ROUTES = frozenset({RouteKind.RESPONSE, RouteKind.RESPONSE_INPUT_ITEMS, RouteKind.RESPONSE_CANCEL})
PREVIOUS_RESPONSE_NOT_FOUND = "previous_response_not_found"
INLINE_INPUTS = frozenset({"ag_inline_non_stream", "intercept", "intercept_active", *REWRITING_OPTIONS})
# A held flow goes to the relay as the client's request: these are replaced (framing, our flow id).
HELD_REPLACED = frozenset({FLOW_FIELD, b"transfer-encoding", b"content-length"})


@dataclass(slots=True, frozen=True)
class HeldRequest:
    """A flow sent to the relay as the client's request, so that an intercept filter holds what the client
    sent (mitmweb shows it, the user edits it): the request as the hook translated it, that translation,
    and the client's address, shown again once the answer comes."""

    method: str
    path: str
    body: bytes
    route: RouteKind
    upstream: dict[str, Any]  # the hook's translation: what the relay sends if nothing was edited
    address: tuple[bytes, str, int]  # scheme, host, port


@dataclass(slots=True)
class Plan:
    """Everything the response side needs about a translated flow."""

    endpoint: Endpoint
    request: ParsedRequest
    mapped_model: str
    ids: Ids
    job: RelayJob
    client: flows.ClientSnapshot | None = None  # the client's request, while the flow shows the relay's
    held: HeldRequest | None = None  # sent as the client's request (an intercept filter is on)

    @property
    def served_model(self) -> str:
        """The model that answered: the mapped one, or its ``ag_model_fallback`` target."""
        return self.job.model or self.mapped_model

    @property
    def client_model(self) -> str:
        return self.request.model

    @property
    def stream(self) -> bool:
        return self.request.stream


class Gateway:
    def __init__(self, idle: IdleWork | None = None) -> None:
        self.settings = Settings()
        self.idle = idle if idle is not None else IdleWork()  # runs as upstream calls wait (_make_runner)
        self.pool = Pool()
        self.watcher = AccountWatcher(self.pool, self.settings.accounts_dir)
        self.endpoints = Endpoints()  # the APIs served, and the Responses API's stored conversations
        self.stored = StoredResponses(self.endpoints.response_store)  # ... on disk, and their routes
        # mitmproxy loads children: ag.accounts*
        self.commands = AccountCommands(self.pool, self.watcher, self._can_refresh, views=self.account_views,
                                        refresh_quota=self.refresh_quota)
        self.addons = [self.commands, self.stored]
        self.plans: dict[str, Plan] = {}
        self.model_map = ModelMap()
        self.models = ModelsEndpoint(self.pool, self.model_map)
        self.relay = Relay(self._job_for, self._make_runner, keepalive_interval=15.0)
        self._session: aiohttp.ClientSession | None = None
        self._tokens: TokenService | None = None
        self._runner: AttemptRunner | None = None
        self._images: ImageFetcher | None = None  # made on the first image URL: other requests pay nothing
        # Test seam (tests/support/pretend_public.py): ImageFetcher's refusal/resolver_factory arguments.
        self.image_fetcher_seams: dict[str, Any] = {}
        self.tasks = BackgroundTasks("ag-gateway")
        self._next_sweep = 0.0
        self._inline = False  # see _inline_allowed(); decided in configure, not per request
        self._keep_upstream_stream = False  # under mitmweb: keep Google's raw stream for its content view
        self._intercepting = False  # an intercept filter is on: flows go to the relay as the client's request
        self.loaded = False  # the first account load is done: /healthz answers "ok" (503 "starting" before)
        # client connection id -> the request hooks awaiting their attempts (see _run_for_client)
        self._inline_runs: dict[str, set[asyncio.Task[Any]]] = {}
        self._left: set[asyncio.Task[Any]] = set()  # of those, the ones cancelled because their client left
        self._quota: QuotaMonitor | None = None  # made after running(): it needs the session and tokens
        self._quota_timer = Periodic(self.refresh_quota, name="ag-quota")
        self._client_secret = options.SecretOption("ag_oauth_client_secret")
        # Set by the composition root to the Usage addon's check of the caller's key (its model list, rpm
        # and daily tokens); raises the GatewayError the client gets. Called once the model is known.
        # With ag_state_url a limited key's check goes to Redis: then it returns the awaitable check.
        self.admit_client: Callable[[http.HTTPFlow, str], Awaitable[None] | None] | None = None
        self.sharing: StateSharing | None = None  # ag_state_url: the state several instances share

    # ---- lifecycle -------------------------------------------------------------------------
    def load(self, loader: Loader) -> None:
        options.declare(loader)

    def configure(self, updated: set[str]) -> None:
        try:
            self._configure(updated)
        except exceptions.OptionsError as e:
            options.refuse(str(e))  # at start-up: one line, no traceback

    def _configure(self, updated: set[str]) -> None:
        if "stream_large_bodies" in updated and ctx.options.stream_large_bodies:
            raise exceptions.OptionsError(
                "stream_large_bodies cannot be used with the gateway: non-stream answers must be translated "
                "whole (clients would get raw Gemini JSON).")
        self._apply_safe_defaults(updated)
        if any(name.startswith("ag_") for name in updated):
            self.settings = options.read_settings(ctx.options, self._client_secret)
            try:
                self.model_map.configure(self.settings.model_map, self.settings.model_map_file)
            except ValueError as e:
                raise exceptions.OptionsError(str(e)) from e
            self.relay.keepalive_interval = self.settings.keepalive_interval
            self.relay.first_byte_timeout = self.settings.timeouts.first_byte
            if self.settings.state_url != (self.shared.url if self.shared else ""):
                self._use_state(self.settings.state_url)
            # stateless: the state keeps the bindings (Redis, for sticky, when the state is shared)
            self.pool.scheduler = shared_scheduler_for(self.settings.scheduling, self.shared)
            self.watcher.retarget(self.settings.accounts_dir)
            self.pool.quota.set_floor(self.settings.quota_floor)
            self.pool.source = str(self.settings.accounts_dir)
            self._runner = None  # rebuilt lazily with the new settings
            self._quota = None  # likewise (base URLs, User-Agent)
            if self._session is not None and "ag_quota_refresh" in updated:
                self.tasks.spawn(self._restart_quota_timer(), "restart-quota-timer")
            self._drop_image_fetcher()
            if self._session is not None and "ag_accounts" in updated:
                self.tasks.spawn(self.reload_accounts(), "reload-accounts")
        if updated & INLINE_INPUTS:
            self._inline = self._inline_allowed()
            opts = ctx.options
            self._intercepting = bool(getattr(opts, "intercept_active", False)
                                      and getattr(opts, "intercept", None))
        # mitmweb keeps every flow (and streamed bodies, see mitm/console.py): the raw Gemini stream is kept
        # too, for its "Gemini stream" view. mitmdump keeps no flow, so nothing.
        opts = ctx.options
        self._keep_upstream_stream = "web_columns" in opts and bool(getattr(opts, "store_streamed_bodies",
                                                                           False))

    @property
    def shared(self) -> RedisLink | None:
        return self.sharing.link if self.sharing is not None else None

    def _use_state(self, url: str) -> None:
        """Embedded state, or state shared through Redis; this instance's cooldowns stay either way."""
        old = self.sharing
        if old is not None:
            old.detach()
            if old.link.started:
                self.tasks.spawn(old.link.stop(), "stop-shared-state")
        store = self.endpoints.response_store
        self.sharing = StateSharing(url, self.pool, store, self.tasks) if url else None
        tokens = self.sharing.tokens if self.sharing is not None else None
        if self._tokens is not None:
            self._tokens.shared = tokens
        self.commands.share_disabled = tokens.account_state if tokens is not None else None
        if self.sharing is not None and self._session is not None:  # changed while running (mitmweb)
            self.tasks.spawn(self.sharing.link.start(), "start-shared-state")

    def _apply_safe_defaults(self, updated: set[str]) -> None:
        """Listen on loopback and connect lazily unless the user chose otherwise."""
        opts = ctx.options
        options.apply_loopback_default(opts)
        if not opts._options["connection_strategy"].has_changed():
            opts.update(connection_strategy="lazy")
        # Reverse mode would show Google's host on every flow; the gateway never lets mitmproxy itself
        # connect there (the relay does, with its own Host), so keep the one the client used.
        if not opts._options["keep_host_header"].has_changed():
            opts.update(keep_host_header=True)

    async def running(self) -> None:
        # No cookie jar: one session serves every account (images have their own), so a cookie set for one
        # must not ride along with another's calls. Proxies from the environment: see aiohttp_sender.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=256, ttl_dns_cache=300, enable_cleanup_closed=True),
            cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False)
        await self.relay.start()
        try:
            await self.reload_accounts()
        finally:
            if self.shared is not None:  # after the accounts: its first resync adopts their shared tokens
                await self.shared.start()  # at most about a second when Redis is down: then degraded mode
            self.loaded = True  # even a failed first load: from here on /healthz reports the counts
        self.watcher.start()  # files added, removed or edited apply without a restart
        self.model_map.start()
        await self._restart_quota_timer()
        known = [n for n in ctx.options.keys() if n.startswith("ag_")]  # noqa: SIM118 (not a dict)
        options.warn_unknown(ctx.options.deferred, known)
        # Everything loaded so far (mitmproxy, its addons, ours) lives as long as the process: keep it out
        # of the collector's full passes, which otherwise walk it again and again under load.
        gc.freeze()
        line, warnings = summary(await self.pool.status(), self._can_refresh(),
                                 str(self.settings.accounts_dir), time.time())
        for warning in warnings:
            logger.warning(warning)
        logger.info("antigravity gateway ready: %s", line)

    def _can_refresh(self) -> bool:
        """Whether expired OAuth access tokens can be refreshed: an OAuth client is configured."""
        return bool(self.settings.oauth_client_id and self.settings.oauth_client_secret)

    async def done(self) -> None:
        self._client_secret.close()
        await self._quota_timer.stop()
        await self.tasks.cancel_all()
        await self.watcher.stop()
        await self.model_map.stop()
        await self.relay.stop()
        if self.shared is not None:
            await self.shared.stop()
        if self._images is not None:
            await self._images.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def reload_accounts(self) -> None:
        await self.watcher.poll()

    # ---- quota -----------------------------------------------------------------------------
    def _quota_monitor(self) -> QuotaMonitor:
        if self._quota is None:
            st = self.settings
            self._quota = QuotaMonitor(self.pool.quota, self._session_or_fail(), self._make_runner().tokens,
                                       bases=st.cloudcode_urls, user_agent=st.user_agent,
                                       accounts=lambda: self.pool.accounts)
        return self._quota

    def _session_or_fail(self) -> aiohttp.ClientSession:
        assert self._session is not None, "upstream calls start only after running()"
        return self._session

    async def refresh_quota(self) -> None:
        """Every OAuth account's quota, now (the timer, ``ag.quota.refresh``, ``/ag/accounts?refresh=1``)."""
        if self._session is not None:
            await self._quota_monitor().refresh_all()

    def _after_429(self, account: Account) -> None:
        self._quota_monitor().after_429(account)

    async def _restart_quota_timer(self) -> None:
        """``ag_quota_refresh`` seconds apart, the first one at once; 0 = no automatic refreshes."""
        await self._quota_timer.stop()
        if self.settings.quota_refresh > 0:
            self.tasks.spawn(self.refresh_quota(), "refresh-quota")
            self._quota_timer.start(self.settings.quota_refresh)

    async def account_views(self) -> list[dict[str, Any]]:
        """Every account's live state and quota, as ``GET /ag/accounts`` answers it."""
        now = time.time()
        pool = self.pool
        can_refresh = self._can_refresh()
        return [account_view(s, pool.quota.get(s.account.id), now=now, floor=pool.quota.floor,
                             served=pool.served.get(s.account.id, 0),
                             last_used=pool.last_served.get(s.account.id),
                             can_refresh=can_refresh, note=refresh_note(s, can_refresh, now))
                for s in await pool.status()]

    async def _accounts_answer(self, flow: http.HTTPFlow) -> http.Response:
        if flow.request.query.get("refresh", "").lower() in ("1", "true", "yes"):
            await self.refresh_quota()
        return flows.json_response(200, {"object": "list", "generated_at": utc(time.time()),
                                         "accounts": await self.account_views()})

    def _drop_image_fetcher(self) -> None:
        """New settings: the next image URL gets a fetcher made with them (the old one closes its session)."""
        old, self._images = self._images, None
        if old is not None:
            self.tasks.spawn(old.close(), "close-image-fetcher")

    def _image_fetcher(self) -> ImageFetcher:
        if self._images is None:
            st = self.settings
            self._images = ImageFetcher(st.image_fetch, max_bytes=st.image_max_bytes,
                                        timeout=st.image_timeout, **self.image_fetcher_seams)
        return self._images

    def _make_runner(self) -> AttemptRunner:
        if self._runner is None:
            assert self._session is not None, "the relay runs only after running()"
            st = self.settings
            endpoint = OAuthTokenEndpoint(self._session, OAuthClient(
                st.oauth_token_url, st.oauth_client_id, st.oauth_client_secret))
            # Kept across settings changes: its single-flight map must outlive a reconfigure.
            self._tokens = self._tokens or TokenService(endpoint, AccountFiles())
            self._tokens.endpoint = endpoint
            shared_tokens = self.sharing.tokens if self.sharing is not None else None
            self._tokens.shared = shared_tokens
            projects = ProjectResolver(self._session, st.cloudcode_urls[0], st.user_agent, AccountFiles())
            projects.shared = shared_tokens
            dialects: dict[str, Dialect] = {"oauth": CloudCode(st.cloudcode_urls, st.user_agent,
                                                                  gemini3_thinking=st.cloudcode_gemini3_thinking),
                        "api_key": PublicGemini(st.gemini_url)}
            # The finished requests' bookkeeping runs while each call waits for Google (idle_work.py).
            send = aiohttp_sender(self._session, st.timeouts, on_wait=self.idle.run_while_waiting)
            self._runner = AttemptRunner(self.pool, self._tokens, dialects, send,
                                         max_attempts=st.max_attempts, total_timeout=st.timeouts.total,
                                         projects=projects, first_byte_timeout=st.timeouts.first_byte,
                                         fallbacks=st.model_fallback,
                                         on_rate_limited=self._after_429 if st.quota_refresh > 0 else None)
        return self._runner

    def _model_fetcher(self) -> GoogleModels | None:
        """Asks Google which models an account has; None until running() opened the session."""
        if self._session is None:
            return None
        st = self.settings
        return GoogleModels(self._session, self._make_runner().tokens, cloudcode_bases=st.cloudcode_urls,
                            user_agent=st.user_agent, gemini_url=st.gemini_url)

    def _job_for(self, flow_id: str) -> RelayJob | None:
        plan = self.plans.get(flow_id)
        return plan.job if plan else None

    # ---- hooks -----------------------------------------------------------------------------
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.error or not flows.is_ours(flow):
            return
        flows.show_gateway_address(flow)
        if flow.response:
            return
        with self._error_boundary(flow):
            self._refuse_large_body(flow)

    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.metadata.get(flows.ROUTE) == flows.TOO_LARGE:
            # refused in requestheaders; mitmproxy read it anyway: don't store it
            flow.request.raw_content = b""
        if flow.response or flow.error or not flows.is_ours(flow):
            return
        with self._error_boundary(flow):
            await self._handle_request(flow)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        plan = self.plans.get(flow.id)
        if plan is None or flow.response is None:
            return
        with self._error_boundary(flow):
            self._handle_response_headers(flow, plan)

    def response(self, flow: http.HTTPFlow) -> None:
        plan = self.plans.pop(flow.id, None)
        if plan is None or flow.response is None:
            return
        with self._error_boundary(flow, plan):
            self._handle_response(flow, plan)

    def error(self, flow: http.HTTPFlow) -> None:
        plan = self.plans.pop(flow.id, None)
        if plan is not None:
            self._client_left(flow, plan)

    def client_disconnected(self, client: Any) -> None:
        for task in self._inline_runs.pop(client.id, ()):
            self._left.add(task)
            task.cancel()  # the client left: its attempts stop now (nobody's failure, see _run_for_client)

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        """Belt and braces besides connection_strategy=lazy: the gateway answers these hosts itself."""
        host = (data.server.address or ("",))[0]
        if host in flows.INTERCEPT_HOSTS or data.server.sni in flows.INTERCEPT_HOSTS:
            target = host or data.server.sni
            data.server.error = f"antigravity gateway: not connecting to {target}, it is answered locally"
            logger.warning("refused a connection to %s (client %s): the gateway answers it itself; check "
                           "that connection_strategy is lazy", target, data.client.peername)

    # ---- request side ----------------------------------------------------------------------
    def _refuse_large_body(self, flow: http.HTTPFlow) -> None:
        try:
            inbound.check_declared_size(flows.header(flow.request.headers, b"content-length"),
                                        self.settings.body_limit)
        except errors.PayloadTooLarge:
            flow.metadata[flows.ROUTE] = flows.TOO_LARGE
            raise

    async def _handle_request(self, flow: http.HTTPFlow) -> None:
        self._expire_stale_plans()
        req = flow.request
        if req.method == "OPTIONS":
            flow.response = flows.answer(204, b"", flows.header_fields(flows.CORS_PREFLIGHT_HEADERS))
            return
        route = match_route(req.method, req.path, functools.partial(flows.public_base_url, flow))
        flow.metadata[flows.ROUTE] = route.kind.value
        if route.kind == RouteKind.HEALTH:
            flow.response = await self._health()
            return
        if route.kind in (RouteKind.MODELS, RouteKind.MODEL):
            anthropic = "anthropic-version" in req.headers  # the anthropic SDKs send it with every request
            flow.response = await self.models.answer(route, self._model_fetcher(), anthropic=anthropic)
            return
        if route.kind == RouteKind.ACCOUNTS:
            flow.response = await self._accounts_answer(flow)
            return
        if route.kind in STORED_ROUTES:
            flow.response = await self.stored.answer(flow, route)
            return
        if req.method in BODY_METHODS:
            inbound.check_size(len(req.raw_content or b""), self.settings.body_limit)  # chunked: no length
            await self._decode_body(req)
            check_json_body(req.headers, req.raw_content or b"", route.kind)
        await self._translate_request(flow, route)

    async def _health(self) -> http.Response:
        """Readiness for load balancers: 503 until the first account load is done, then the counts."""
        if not self.loaded:
            return flows.json_response(503, {"status": "starting"}, STARTING_RETRY)
        counts = dict.fromkeys(("ready", "cooling", "disabled"), 0)
        for status in await self.pool.status():  # whole-account cooldowns; per-model ones count as ready
            counts[status.state] += 1
        return flows.json_response(200, {"status": "ok", "accounts": counts})

    async def _decode_body(self, req: http.Request) -> None:
        """Undo the client's Content-Encoding under the body limit (never ``req.content``: mitmproxy decodes
        without a cap), and keep the decoded body on the flow so nothing downstream decodes it again.
        Decoding up to the limit takes a CPU moment, so it runs off the event loop."""
        coding = flows.header(req.headers, b"content-encoding")
        if not coding:
            return
        try:
            body = await asyncio.to_thread(decode_body, req.raw_content or b"", coding,
                                           self.settings.body_limit)
        except errors.GatewayError:
            req.raw_content = b""  # nothing left for a viewer (mitmweb, -w files) to inflate without a cap
            raise
        req.headers.pop("content-encoding", None)
        if "content-length" in req.headers:  # what a saved (-w) flow replays must frame the decoded body
            req.headers["content-length"] = str(len(body))
        req.raw_content = body

    async def _translate_request(self, flow: http.HTTPFlow, route: Route) -> None:
        endpoint = self.endpoints.for_route(route.kind)
        raw = flow.request.raw_content or b""  # decoded by _decode_body
        request = await self._parse_client_body(endpoint, raw)
        client_model = request.model
        if self.admit_client is not None and (check := self.admit_client(flow, client_model)) is not None:
            await check
        mapped, gemini_request = await self._upstream_request(flow, request)
        stream = request.stream
        ids, call = call_identity(endpoint, request, mapped, gemini_request, new_request_id())
        job = RelayJob(flow.id, call, error_body=request.error_body,
                       report=functools.partial(record_failed_attempt, flow))
        plan = self.plans[flow.id] = Plan(endpoint, request, mapped, ids, job)
        # The flow itself shows the client's request (restored once it has left for the relay).
        flows.note_client_request(flow, client_model)
        if not stream and (self._inline or request.rpc):  # other calls than generate: never through the relay
            await self._answer_inline(flow, plan, mapped, gemini_request)
        elif self._intercepting:  # the flow may be held: it must stay the client's request, editable
            self._point_at_relay_as_client(flow, plan, route.kind, gemini_request)
        else:
            plan.client = flows.client_snapshot(flow.request)
            self._point_at_relay(flow, job, mapped, stream, gemini_request)

    async def _parse_client_body(self, endpoint: Endpoint, raw: bytes) -> ParsedRequest:
        """The client's body parsed by its API; stored state read when memory no longer holds it (one
        coroutine for both: this is every request's path)."""
        try:
            try:
                return endpoint.parse(raw)
            except NeedsStoredState as need:  # stored state memory no longer holds: read it in a thread
                return await self._parse_with_stored_state(need)
        except errors.NotFound as e:  # a previous_response_id another instance may have stored (ag_state_url)
            if not await self._fetch_shared_response(e, raw):
                raise
            return await self._parse(endpoint, raw)

    async def _upstream_request(self, flow: http.HTTPFlow,
                                request: ParsedRequest) -> tuple[str, dict[str, Any]]:
        """The mapped model and the canonical upstream body of a parsed request (its images fetched)."""
        mapped = self.model_map.resolve(request.model)
        flow.metadata[flows.UPSTREAM] = {"model": mapped}  # error answers from here on name it too
        params = request.image_urls()
        images = await self._fetch_images(params) if params else {}
        return mapped, request.to_gemini(mapped, images)

    async def _parse(self, endpoint: Endpoint, raw: bytes) -> ParsedRequest:
        try:
            return endpoint.parse(raw)
        except NeedsStoredState as need:  # stored state memory no longer holds: read it in a thread
            return await self._parse_with_stored_state(need)

    async def _parse_with_stored_state(self, need: NeedsStoredState) -> ParsedRequest:
        while True:  # at most twice: ``ResponsesEndpoint._parse`` bounds its lookups
            await self.stored.load_needed(need)
            try:
                return need.reparse()
            except NeedsStoredState as again:
                need = again

    async def _fetch_shared_response(self, missing: errors.NotFound, raw: bytes) -> bool:
        if self.sharing is None or missing.code != PREVIOUS_RESPONSE_NOT_FOUND:
            return False
        previous = orjson.loads(raw).get("previous_response_id")  # parsed fine a moment ago
        return await self.sharing.responses.fetch_into(self.endpoints.response_store, previous)

    def _inline_allowed(self) -> bool:
        """A non-stream answer needs no socket to stream from, so the hook may make the attempts itself,
        unless something could still stop or rewrite the request after this hook: an intercept filter
        (mitmweb, console) or mitmproxy's request-rewriting options. Then the relay keeps that promise."""
        if not self.settings.inline_non_stream:
            return False
        opts = ctx.options
        if getattr(opts, "intercept_active", False) and getattr(opts, "intercept", None):
            return False
        return not any(getattr(opts, name, None) for name in REWRITING_OPTIONS)

    async def _answer_inline(self, flow: http.HTTPFlow, plan: Plan, model: str, body: dict[str, Any]) -> None:
        try:
            attempts = self._make_runner().run(model, False, body, plan.job.ctx, plan.job.failed)
            winner = await self._run_for_client(flow, attempts)
        except ClientLeft:
            self.plans.pop(flow.id, None)
            self._client_left(flow, plan)
            if flow.killable:
                flow.kill()
            return
        plan.job.won(winner)
        data = await read_whole(winner)
        status = winner.response.status
        tokens = None
        if status == 200:  # may raise: the plan is still there for the error's headers
            data, tokens = self._translated(plan, data, winner.parsed)
        self.plans.pop(flow.id, None)
        self._restore_display(flow, plan, tokens)
        flow.response = flows.answer(status, data, (flows.JSON_FIELD, *self._answer_fields(plan)))
        self._comment(flow, plan)

    async def _run_for_client(self, flow: http.HTTPFlow, attempts: Awaitable[Winner]) -> Winner:
        """Await ``attempts`` where ``client_disconnected`` can cancel them; ``ClientLeft`` when it did.

        mitmproxy lets a request hook run on after its client left; without this, the attempts would run
        to their end, and their failures would be reported and cooled down for nobody. What is cancelled
        is the hook's own task, while it awaits here (no task of its own: one less per request); that
        cancellation is taken back once it has stopped the attempts, so mitmproxy's hook runs on."""
        task = asyncio.current_task()
        assert task is not None, "a request hook runs in a task"
        key = flow.client_conn.id
        runs = self._inline_runs.setdefault(key, set())
        runs.add(task)
        try:
            return await attempts
        except asyncio.CancelledError:
            if task in self._left:
                self._left.discard(task)
                if task.uncancel() == 0:  # nobody else (a shutdown) cancelled it too
                    raise ClientLeft from None
            raise
        finally:
            self._left.discard(task)
            runs.discard(task)
            if not runs and self._inline_runs.get(key) is runs:
                del self._inline_runs[key]

    async def _fetch_images(self, params: dict[str, str]) -> dict[str, Any]:
        """Download the http(s) images a request names; a bad one is the client's 400, not Google's."""
        fetcher = self._image_fetcher()
        fetched = await asyncio.gather(*(fetcher.fetch(url, param=param) for url, param in params.items()))
        return dict(zip(params, fetched, strict=True))

    def _point_at_relay(self, flow: http.HTTPFlow, job: RelayJob, model: str, stream: bool,
                        body: dict[str, Any]) -> None:
        """Send the flow to the loopback relay: the canonical upstream request, in one pass over the headers
        (this runs before every stream's first chunk). The client's gateway key never travels on."""
        raw = orjson.dumps(body)
        job.planned = (raw, body)  # the relay skips parsing it again when mitmproxy sends it unchanged
        req = flow.request
        data = req.data
        data.method, data.scheme, data.host, data.port = b"POST", b"http", "127.0.0.1", self.relay.port
        data.path = canonical_path(model, stream).encode()
        if data.authority:
            data.authority = UPSTREAM_HOST
        fields = [field for field in req.headers.fields if field[0].lower() not in RELAY_REPLACED]
        if not (req.is_http2 or req.is_http3):  # there :authority is the Host header
            fields.append((b"host", UPSTREAM_HOST))
        fields += [*RELAY_FIELDS, (FLOW_FIELD, flow.id.encode()), (b"content-length", b"%d" % len(raw))]
        req.headers.fields = tuple(fields)
        data.content = raw

    def _point_at_relay_as_client(self, flow: http.HTTPFlow, plan: Plan, route: RouteKind,
                                  upstream: dict[str, Any]) -> None:
        """An intercept filter is on: send the flow to the relay as the client's request (its method, route,
        headers and OpenAI body), so that a held flow is what the client sent and an edit is an edit of
        that. Only the address changes (shown again once the answer comes). The relay calls
        ``_translate_on_arrival``: unchanged, this hook's translation goes upstream; edited, the edit is
        translated as a new request would be. Flows the filter lets through take the same way."""
        req = flow.request
        data = req.data
        body = data.content or b""
        address = (data.scheme, data.host, data.port)
        plan.held = HeldRequest(req.method, req.path, body, route, upstream, address)
        plan.job.translate = functools.partial(self._translate_on_arrival, flow)
        data.scheme, data.host, data.port = b"http", "127.0.0.1", self.relay.port
        fields = [field for field in req.headers.fields if field[0].lower() not in HELD_REPLACED]
        fields += [(FLOW_FIELD, flow.id.encode()), (b"content-length", b"%d" % len(body))]
        req.headers.fields = tuple(fields)
        flow.comment = (f"{readable.models(plan.client_model, plan.mapped_model)} · not sent yet: "
                        "edit the client's request, then resume")

    async def _translate_on_arrival(self, flow: http.HTTPFlow, method: str, path: str,
                                    raw: bytes) -> tuple[str, bool, dict[str, Any]]:
        """The relay's ``RelayJob.translate``: the client's request as it left mitmproxy, as the upstream
        model, stream flag and body. Unchanged, that is the hook's translation; edited while held, it is
        parsed and translated again (model, stream and mapping from the edited body, its images fetched,
        the caller's key checked for a new model), and the plan follows it: the answer is translated,
        commented and logged as the edited request's. A bad edit is the client's 400, as it would have
        been at the door."""
        plan = self.plans.get(flow.id)
        held = plan.held if plan is not None else None
        if plan is None or held is None:
            raise errors.GatewayError("The relay got a client request for a flow the gateway does not know.")
        if method == held.method and path == held.path and raw == held.body:
            return plan.mapped_model, plan.stream, held.upstream
        route = match_route(method, path, functools.partial(flows.public_base_url, flow))
        if route.kind != held.route:
            raise errors.InvalidRequest(
                f"The held request came in as {held.method} {held.path} and was edited into {method} {path}: "
                "a held request keeps its route (send the other one as a new request).")
        inbound.check_size(len(raw), self.settings.body_limit)
        check_json_body(flow.request.headers, raw, route.kind)
        request = await self._parse_client_body(plan.endpoint, raw)
        if (request.model != plan.client_model and self.admit_client is not None
                and (check := self.admit_client(flow, request.model)) is not None):
            await check  # the key's model list applies to the edited model (admitted once already)
        mapped, upstream = await self._upstream_request(flow, request)
        plan.request, plan.mapped_model = request, mapped
        request_id = plan.job.ctx.request_id
        plan.ids, plan.job.ctx = call_identity(plan.endpoint, request, mapped, upstream, request_id)
        plan.job.error_body = request.error_body
        flows.note_client_request(flow, request.model, method, path)
        return mapped, request.stream, upstream

    def _expire_stale_plans(self) -> None:
        """Plans end in response()/error() (P17); this only bounds memory if a hook was ever skipped,
        so it sweeps at most once a minute rather than scanning every in-flight plan per request."""
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + 60.0
        stale = [fid for fid, p in self.plans.items() if now - p.job.created > STALE_PLAN_AGE]
        for fid in stale:
            del self.plans[fid]

    # ---- response side ---------------------------------------------------------------------
    def _handle_response_headers(self, flow: http.HTTPFlow, plan: Plan) -> None:
        resp = flow.response
        assert resp is not None
        self._restore_display(flow, plan)
        fields = resp.headers.fields
        relayed_error = any(name.lower() == ERROR_FIELD for name, _ in fields)  # already an OpenAI error
        if relayed_error or resp.status_code != 200 or not plan.stream:
            kept = tuple(f for f in fields if f[0].lower() not in RELAY_ONLY)
            resp.headers.fields = kept + self._answer_fields(plan)
            if not relayed_error and resp.status_code == 200:
                resp.stream = False  # P7: a non-stream body is always translated whole
            return
        translator = plan.request.stream_translator(plan.ids)
        resp.stream = StreamAdapter(translator, plan.endpoint.stream_format, unwrap_any, flow.id,
                                    keep_upstream=self._keep_upstream_stream)
        # One pass, and no header the client does not need: mitmproxy scans them all for every chunk (P3).
        framing = (*SSE_FIELDS, CHUNKED_FIELD) if flow.request.http_version == "HTTP/1.1" else SSE_FIELDS
        resp.headers.fields = (tuple(f for f in fields if f[0].lower() not in SSE_REPLACED) + framing
                               + self._answer_fields(plan))

    def _handle_response(self, flow: http.HTTPFlow, plan: Plan) -> None:
        resp = flow.response
        assert resp is not None
        if plan.stream or resp.status_code != 200:
            if resp.status_code >= 400:
                self._mark_error_answer(flow, plan)
            else:
                self._comment(flow, plan)
            return
        resp.content, tokens = self._translated(plan, resp.content or b"")
        flow.metadata.setdefault(flows.UPSTREAM, {})["tokens"] = tokens
        resp.headers["content-type"] = "application/json"
        self._comment(flow, plan)

    @staticmethod
    def _translated(plan: Plan, data: bytes, parsed: dict[str, Any] | None = None,
                    ) -> tuple[bytes, tuple[int, int, int, int] | None]:
        """A whole Gemini answer as the client's OpenAI answer, and its prompt/completion tokens
        (``parsed``: already checked and unwrapped by the attempts)."""
        if parsed is not None:
            return orjson.dumps(plan.request.complete(parsed, plan.ids)), tokens_of(parsed)
        try:
            gemini = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise errors.UpstreamProtocolError("Google answered with a body that is not JSON.") from None
        if not isinstance(gemini, dict):
            raise errors.UpstreamProtocolError("Google answered with JSON that is not an object.")
        gemini = unwrap_any(gemini)
        return orjson.dumps(plan.request.complete(gemini, plan.ids)), tokens_of(gemini)

    def _restore_display(self, flow: http.HTTPFlow, plan: Plan,
                         tokens: tuple[int, int, int, int] | None = None) -> None:
        """The request has left: the flow shows the client's request again (mitmweb's list, replay), and
        what went upstream is kept in ``ag.upstream`` (its ``request``: URL, redacted headers, body)."""
        job = plan.job
        if plan.client is not None:
            flows.restore_client_request(flow.request, plan.client)
            plan.client = None
        elif plan.held is not None:  # it went as the client's request (edited, perhaps): only its address
            req = flow.request
            data = req.data
            data.scheme, data.host, data.port = plan.held.address
            req.headers.fields = tuple(f for f in req.headers.fields if f[0].lower() != FLOW_FIELD)
            plan.held = None
        upstream = {"url": job.url, "account": job.account, "attempts": job.attempts,
                    "model": plan.served_model, "tokens": tokens}
        if job.url:  # what went upstream, one click away (ag.flow.upstream, the "Gemini request" view)
            upstream["request"] = flows.upstream_request(job.url, job.sent_headers, job.sent_body)
        if job.fallback_from:
            upstream["fallback_from"] = job.fallback_from
        flow.metadata[flows.UPSTREAM] = upstream

    @staticmethod
    def _answer_fields(plan: Plan) -> tuple[tuple[bytes, bytes], ...]:
        """X-Mapped-Model, X-Account-Email and the attempt count, as raw fields (appended, not looked up)."""
        job = plan.job
        fields: tuple[tuple[bytes, bytes], ...] = ((MAPPED_MODEL_FIELD, plan.served_model.encode()),)
        if job.shown_account:
            fields += ((ACCOUNT_FIELD, job.shown_account.encode()),)
        return (*fields, (ATTEMPTS_FIELD, b"%d" % job.attempts)) if job.attempts else fields

    def _comment(self, flow: http.HTTPFlow, plan: Plan, problem: str = "") -> None:
        """The flow's comment, once, as it ends (plain string joins: nothing per chunk). A stream whose last
        event was an error is no success: marked ⚠ with the reason."""
        job = plan.job
        resp = flow.response
        stream = resp.stream if resp is not None and isinstance(resp.stream, StreamAdapter) else None
        if stream is not None:
            tokens = stream_tokens(stream)
            upstream = flow.metadata.get(flows.UPSTREAM)
            if upstream is not None:
                upstream["tokens"] = tokens  # counted once: the access log and the ledger read them here
                if stream.upstream is not None:  # mitmweb: Google's stream as it came, for "Gemini stream"
                    upstream["stream"] = b"".join(stream.upstream)
            if not problem and stream.error is not None:
                problem = f"stream ended with an error: {stream.error.message}"
        else:
            tokens = flow.metadata.get(flows.UPSTREAM, {}).get("tokens")
        end = (resp.timestamp_end if resp is not None else None) or time.time()
        flow.comment = readable.request_comment(
            plan.client_model, plan.served_model, account=job.account or job.last_failed,
            attempts=job.attempts or len(job.shown_failures or ()), tokens=tokens,
            ms=(end - flow.request.timestamp_start) * 1000, fallback_from=job.fallback_from, problem=problem)
        if problem:
            flow.marked = ":warning:"
        self._number_failed_attempts(plan)

    def _mark_error_answer(self, flow: http.HTTPFlow, plan: Plan) -> None:
        resp = flow.response
        assert resp is not None
        err = error_object(resp) or {}  # what the client was told (the relay's error, or Google's relayed)
        code = str(err.get("code") or err.get("type") or "")
        message = str(err.get("message") or (plan.job.error.message if plan.job.error else ""))
        attempts = plan.job.attempts or len(plan.job.shown_failures or ())
        context = readable.models(plan.client_model, plan.served_model, plan.job.fallback_from)
        if attempts:
            context += f" · {attempts} attempt{'s' if attempts > 1 else ''}"
        flows.mark_error(flow, readable.error_comment(resp.status_code, code, message, context))
        self._number_failed_attempts(plan)

    def _client_left(self, flow: http.HTTPFlow, plan: Plan) -> None:
        """The client went away (or the flow was killed): say so on the flow instead of nothing."""
        try:
            self._restore_display(flow, plan)
            reason = flow.error.msg if flow.error else "the client left"
            if "disconnect" in reason.lower():
                reason = "client left before the answer ended"
            self._comment(flow, plan, problem=reason)
        except Exception:  # a hook's last words: never let display work break mitmproxy's cleanup
            logger.exception("could not describe flow %s", flow.id)

    @staticmethod
    def _number_failed_attempts(plan: Plan) -> None:
        """Failed attempts were shown as they happened ("attempt 1"); now the total is known: "1/2"."""
        shown = plan.job.shown_failures
        if not shown:
            return
        total = plan.job.attempts or len(shown)
        for f in shown:
            attempt = f.metadata.get(flows.ATTEMPT) or {}
            f.comment = readable.attempt_comment(total=total, **attempt_fields(attempt))
        ctx.master.addons.trigger(UpdateHook(shown))  # mitmweb redraws them

    @contextlib.contextmanager
    def _error_boundary(self, flow: http.HTTPFlow, plan: Plan | None = None) -> Iterator[None]:
        """Hook exceptions don't stop mitmproxy's flow (P5): every failure becomes an OpenAI error answer."""
        try:
            yield
        except errors.GatewayError as e:
            self._answer_error(flow, e, plan)
        except Exception:
            logger.exception("gateway hook failed for flow %s", flow.id)
            internal = errors.GatewayError("Internal gateway error; see the gateway log.")
            self._answer_error(flow, internal, plan)

    def _answer_error(self, flow: http.HTTPFlow, err: errors.GatewayError, plan: Plan | None) -> None:
        plan = plan or self.plans.pop(flow.id, None)
        mapped = plan.mapped_model if plan else flow.metadata.get(flows.UPSTREAM, {}).get("model")
        extra = {flows.MAPPED_MODEL_HEADER: mapped} if mapped else {}
        if plan and plan.job.shown_account:
            extra[flows.ACCOUNT_HEADER] = plan.job.shown_account
        error_body = plan.request.error_body if plan else shape_for_path(flow.request.path).body
        flow.response = flows.error_response(err, extra, error_body)
        context = ""
        if plan is not None:
            context = readable.models(plan.client_model, plan.served_model, plan.job.fallback_from)
        flows.mark_error(flow, readable.error_comment(err.status, err.code or "", err.message, context))
        if plan is not None:
            self._number_failed_attempts(plan)


class ClientLeft(Exception):
    """The client disconnected while its answer was being made: nothing to answer, nobody to blame."""


def attempt_fields(meta: dict[str, Any]) -> dict[str, Any]:
    """A failed attempt's ``ag.attempt`` metadata as ``readable.attempt_comment``'s arguments."""
    return {"number": meta.get("number") or 0, "status": meta.get("status"),
            "reason": meta.get("reason") or "", "account": meta.get("account") or "",
            "cooldown": meta.get("cooldown") or 0.0, "error": meta.get("error") or ""}


def stream_tokens(stream: StreamAdapter) -> tuple[int, int, int, int] | None:
    return usage_tokens(stream.usage)


def check_json_body(headers: http.Headers, raw: bytes, kind: RouteKind) -> None:
    """A body route's body is JSON (image edits may also come as the form the openai SDK uploads)."""
    multipart_ok = kind == RouteKind.IMAGE_EDITS
    inbound.check_json_body(flows.header(headers, b"content-type"), raw, multipart_ok=multipart_ok)


def call_identity(endpoint: Endpoint, request: ParsedRequest, mapped: str, upstream: dict[str, Any],
                  request_id: str) -> tuple[Ids, CallContext]:
    """The answer's ids and the upstream call's context (its conversation key keeps a session on one
    account), for a request translated at the door or again after an edit while held."""
    session = conversation_key(upstream, request.session_key)
    return Ids.new(endpoint.id_prefix, upstream_model=mapped), CallContext(request_id, session, request.rpc)


async def record_failed_attempt(flow: http.HTTPFlow, attempt: AttemptRecord) -> http.HTTPFlow:
    """A failed upstream attempt as its own flow in mitmweb, mitmdump's output and ``-w`` files."""
    from mitmproxy.proxy.layers.http import HttpRequestHeadersHook, HttpRequestHook, HttpResponseHook

    f = flow.copy()
    shown = {"number": attempt.number, "status": attempt.status, "reason": attempt.reason,
             "account": attempt.account, "cooldown": attempt.cooldown,
             "error": readable.shorten(attempt.error, 200),
             "of": flow.id}
    f.metadata = {flows.SYNTHETIC: True, flows.ROUTE: "failed-attempt", flows.ATTEMPT: shown}
    f.request.url = attempt.url
    if attempt.request_headers is not None:  # the call as it went to Google, its credentials redacted
        sent = flows.upstream_request(attempt.url, attempt.request_headers, b"")["headers"]
        f.request.headers = http.Headers(flows.header_fields(sent))
    else:
        for name in CLIENT_SECRET_HEADERS:
            f.request.headers.pop(name, None)
        f.request.headers.pop(FLOW_HEADER, None)
    f.request.content = attempt.request_body
    headers = {k: v for k, v in attempt.headers.items() if k not in ("content-length", "transfer-encoding")}
    f.response = http.Response.make(attempt.status or 502, attempt.body or attempt.error.encode(), headers)
    f.comment = readable.attempt_comment(total=0, **attempt_fields(shown))
    f.marked = ":warning:"
    for hook in (HttpRequestHeadersHook(f), HttpRequestHook(f), HttpResponseHook(f)):
        await ctx.master.addons.handle_lifecycle(hook)
    return f
