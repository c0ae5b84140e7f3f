"""The Gateway addon: OpenAI requests in, Gemini calls out through the relay, OpenAI answers back.

Hooks are guard clauses plus one call:
- ``request``: is this flow ours? Answer it directly (health, models, errors) or translate it into
  the canonical upstream request and point it at the loopback relay;
- ``responseheaders``: restore the display URL, add our headers, install the stream translator;
- ``response``: translate a non-stream body;
- ``error``: forget the flow's state (the client left before the relay saw it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from mitmproxy import ctx, exceptions, http
from mitmproxy.addonmanager import Loader
from mitmproxy.proxy import mode_specs

from .. import errors
from ..openai_api.routes import Route, RouteKind, match_route
from ..settings import Settings
from ..translate.endpoints import Endpoint, Ids, endpoint_for
from ..upstream import accounts as account_files
from ..upstream.attempts import AttemptRecord, AttemptRunner, aiohttp_sender
from ..upstream.catalog import resolve_model
from ..upstream.dialects import CallContext, CloudCode, PublicGemini, canonical_path, new_request_id, unwrap_any
from ..upstream.media import fetch_image
from ..upstream.oauth import OAuthClient, TokenService
from ..upstream.pool import Pool
from ..upstream.relay import ERROR_HEADER, FLOW_HEADER, Relay, RelayJob
from . import flows, options
from .stream import StreamAdapter

logger = logging.getLogger(__name__)

INTERCEPT_HOSTS = frozenset({"api.openai.com"})
STALE_PLAN_AGE = 6 * 3600.0  # seconds; longer than any request, intercepted ones included
CLIENT_SECRET_HEADERS = ("authorization", "x-api-key", "x-goog-api-key", "api-key", "cookie", "proxy-authorization")


@dataclass(slots=True)
class Plan:
    """Everything the response side needs about a translated flow."""

    endpoint: Endpoint
    parsed: Any
    client_model: str
    mapped_model: str
    stream: bool
    ids: Ids
    job: RelayJob


class Gateway:
    def __init__(self) -> None:
        self.settings = Settings()
        self.pool = Pool()
        self.plans: dict[str, Plan] = {}
        self.relay = Relay(self._job_for, self._make_runner, keepalive_interval=15.0)
        self._session: aiohttp.ClientSession | None = None
        self._tokens: TokenService | None = None
        self._runner: AttemptRunner | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # ---- lifecycle -------------------------------------------------------------------------
    def load(self, loader: Loader) -> None:
        options.declare(loader)

    def configure(self, updated: set[str]) -> None:
        if "stream_large_bodies" in updated and ctx.options.stream_large_bodies:
            raise exceptions.OptionsError(
                "stream_large_bodies cannot be used with the gateway: non-stream answers must be translated "
                "whole (clients would get raw Gemini JSON).")
        self._apply_safe_defaults(updated)
        if any(name.startswith("ag_") for name in updated):
            self.settings = options.read_settings(ctx.options)
            self.relay.keepalive_interval = self.settings.keepalive_interval
            self._runner = None  # rebuilt lazily with the new settings
            if self._session is not None and "ag_accounts" in updated:
                self._spawn(self.reload_accounts())

    def _apply_safe_defaults(self, updated: set[str]) -> None:
        """Listen on loopback and connect lazily unless the user chose otherwise."""
        opts = ctx.options
        if "listen_host" in updated and not opts.listen_host and not opts._options["listen_host"].has_changed():
            opts.update(listen_host="127.0.0.1")
        if "connection_strategy" in updated and not opts._options["connection_strategy"].has_changed():
            opts.update(connection_strategy="lazy")

    async def running(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=256, ttl_dns_cache=300, enable_cleanup_closed=True),
            auto_decompress=False, trust_env=True)
        await self.relay.start()
        await self.reload_accounts()
        logger.info("antigravity gateway ready: %d account(s) from %s", len(self.pool.accounts),
                    self.settings.accounts_dir)

    async def done(self) -> None:
        await self.relay.stop()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def reload_accounts(self) -> None:
        loaded, problems = await asyncio.to_thread(account_files.load_accounts, self.settings.accounts_dir)
        for p in problems:
            logger.warning("accounts: %s", p)
        self.pool.replace(loaded)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _make_runner(self) -> AttemptRunner:
        if self._runner is None:
            assert self._session is not None, "the relay runs only after running()"
            st = self.settings
            self._tokens = self._tokens or TokenService(
                OAuthClient(st.oauth_token_url, st.oauth_client_id, st.oauth_client_secret), self._session,
                persist=lambda a: asyncio.to_thread(account_files.save_account, a))
            self._tokens.client = OAuthClient(st.oauth_token_url, st.oauth_client_id, st.oauth_client_secret)
            dialects = {"oauth": CloudCode(st.cloudcode_urls, st.user_agent), "api_key": PublicGemini(st.gemini_url)}
            self._runner = AttemptRunner(self.pool, self._tokens, dialects, aiohttp_sender(self._session, st.timeouts),
                                         max_attempts=st.max_attempts, total_timeout=st.timeouts.total)
        return self._runner

    def _job_for(self, flow_id: str) -> RelayJob | None:
        plan = self.plans.get(flow_id)
        return plan.job if plan else None

    # ---- hooks -----------------------------------------------------------------------------
    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not self._is_ours(flow):
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
        self.plans.pop(flow.id, None)

    # ---- request side ----------------------------------------------------------------------
    def _is_ours(self, flow: http.HTTPFlow) -> bool:
        if flow.metadata.get(flows.SYNTHETIC):
            return False
        if isinstance(flow.client_conn.proxy_mode, mode_specs.ReverseMode):
            return True
        return flow.request.pretty_host in INTERCEPT_HOSTS

    async def _handle_request(self, flow: http.HTTPFlow) -> None:
        self._expire_stale_plans()
        req = flow.request
        if req.method == "OPTIONS":
            flow.response = http.Response.make(204, b"", flows.CORS_HEADERS)
            return
        route = match_route(req.method, req.path)
        flow.metadata[flows.ROUTE] = route.kind.value
        if route.kind == RouteKind.HEALTH:
            flow.response = flows.json_response(200, {"status": "ok"})
            return
        if route.kind in (RouteKind.MODELS, RouteKind.MODEL):
            flow.response = self._models_response(route)
            return
        await self._translate_request(flow, route)

    def _models_response(self, route: Route) -> http.Response:
        names = sorted({t for _, t in self.settings.model_map} | {"gemini-2.5-flash", "gemini-2.5-pro"})
        data = [{"id": n, "object": "model", "created": 1700000000, "owned_by": "google"} for n in names]
        if route.kind == RouteKind.MODEL:
            return flows.json_response(200, {"id": route.param, "object": "model", "created": 1700000000,
                                             "owned_by": "google"})
        return flows.json_response(200, {"object": "list", "data": data})

    async def _translate_request(self, flow: http.HTTPFlow, route: Route) -> None:
        endpoint = endpoint_for(route.kind)
        raw = flow.request.get_content(strict=False) or b""
        parsed = endpoint.parse(raw)
        client_model = endpoint.model(parsed)
        mapped = resolve_model(client_model, self.settings.model_map)
        images = await self._fetch_images(endpoint.image_urls(parsed))
        gemini_request = endpoint.to_gemini(parsed, mapped, images)
        stream = endpoint.stream(parsed)
        ids = Ids.new(endpoint.id_prefix)
        job = RelayJob(flow.id, CallContext(new_request_id()), on_failure=self._failure_recorder(flow))
        self.plans[flow.id] = Plan(endpoint, parsed, client_model, mapped, stream, ids, job)
        flow.metadata[flows.CLIENT_REQUEST] = {"method": flow.request.method, "path": flow.request.path,
                                               "body": raw[:65536].decode("utf-8", "replace")}
        self._point_at_relay(flow, mapped, stream, gemini_request)

    async def _fetch_images(self, urls: list[str]) -> dict[str, Any]:
        if not urls:
            return {}
        assert self._session is not None
        st = self.settings
        fetched = await asyncio.gather(*(fetch_image(self._session, u, max_bytes=st.image_max_bytes,
                                                     timeout=st.image_timeout) for u in urls))
        return dict(zip(urls, fetched, strict=True))

    def _point_at_relay(self, flow: http.HTTPFlow, model: str, stream: bool, body: dict[str, Any]) -> None:
        req = flow.request
        for name in CLIENT_SECRET_HEADERS:  # the client's gateway key never travels on
            req.headers.pop(name, None)
        req.headers.pop("transfer-encoding", None)  # P10: content-length is set from the new body
        req.method = "POST"
        req.scheme, req.host, req.port = "http", "127.0.0.1", self.relay.port
        req.path = canonical_path(model, stream)
        req.host_header = "generativelanguage.googleapis.com"
        req.headers["content-type"] = "application/json"
        req.headers["accept-encoding"] = "identity"  # P4: the stream callable sees raw bytes
        req.headers[FLOW_HEADER] = flow.id
        req.content = orjson.dumps(body)

    def _expire_stale_plans(self) -> None:
        """Plans end in response()/error() (P17); this only bounds memory if a hook was ever skipped."""
        now = time.monotonic()
        stale = [fid for fid, p in self.plans.items() if now - p.job.created > STALE_PLAN_AGE]
        for fid in stale:
            del self.plans[fid]

    def _failure_recorder(self, flow: http.HTTPFlow):  # noqa: ANN202
        async def record(attempt: AttemptRecord) -> None:
            await record_failed_attempt(flow, attempt)
        return record

    # ---- response side ---------------------------------------------------------------------
    def _handle_response_headers(self, flow: http.HTTPFlow, plan: Plan) -> None:
        resp = flow.response
        assert resp is not None
        self._restore_display(flow, plan)
        self._add_headers(resp, plan)
        if resp.headers.pop(ERROR_HEADER, None) is not None or resp.status_code != 200:
            return
        if plan.stream:
            translator = plan.endpoint.stream_translator(plan.parsed, plan.ids)
            resp.stream = StreamAdapter(translator, plan.endpoint.stream_format, unwrap_any, flow.id)
            resp.headers.pop("content-length", None)
            resp.headers["content-type"] = "text/event-stream; charset=utf-8"
            resp.headers["cache-control"] = "no-cache"
            resp.headers["x-accel-buffering"] = "no"
            if flow.request.http_version == "HTTP/1.1":
                resp.headers["transfer-encoding"] = "chunked"  # P3
        else:
            resp.stream = False  # P7: a non-stream body is always translated whole

    def _handle_response(self, flow: http.HTTPFlow, plan: Plan) -> None:
        resp = flow.response
        assert resp is not None
        job = plan.job
        if plan.stream or resp.status_code != 200:
            if resp.status_code >= 400:
                flows.mark_error(flow, f"{plan.endpoint.name} → {plan.mapped_model}: {resp.status_code} "
                                       f"after {job.attempts} attempt(s)")
            else:
                self._comment(flow, plan)
            return
        try:
            gemini = orjson.loads(resp.content or b"")
        except orjson.JSONDecodeError:
            raise errors.UpstreamProtocolError("Google answered with a body that is not JSON.") from None
        if not isinstance(gemini, dict):
            raise errors.UpstreamProtocolError("Google answered with JSON that is not an object.")
        answer = plan.endpoint.complete(plan.parsed, unwrap_any(gemini), plan.ids)
        resp.content = orjson.dumps(answer)
        resp.headers["content-type"] = "application/json"
        self._comment(flow, plan)

    def _restore_display(self, flow: http.HTTPFlow, plan: Plan) -> None:
        """The request has left: show where it really went instead of the relay's address."""
        flow.request.headers.pop(FLOW_HEADER, None)
        if plan.job.url:
            host_header = flow.request.host_header
            flow.request.url = plan.job.url
            flow.request.host_header = host_header and flow.request.host
        flow.metadata[flows.UPSTREAM] = {"url": plan.job.url, "account": plan.job.account,
                                         "attempts": plan.job.attempts, "model": plan.mapped_model}

    def _add_headers(self, resp: http.Response, plan: Plan) -> None:
        resp.headers[flows.MAPPED_MODEL_HEADER] = plan.mapped_model
        if plan.job.account:
            resp.headers[flows.ACCOUNT_HEADER] = plan.job.account
        resp.headers["x-ag-attempts"] = str(plan.job.attempts)

    def _comment(self, flow: http.HTTPFlow, plan: Plan) -> None:
        flow.comment = (f"{plan.endpoint.name}: {plan.client_model} → {plan.mapped_model} via "
                        f"{plan.job.account or '-'} ({plan.job.attempts} attempt(s))")

    @contextlib.contextmanager
    def _error_boundary(self, flow: http.HTTPFlow, plan: Plan | None = None) -> Iterator[None]:
        """Hook exceptions don't stop mitmproxy's flow (P5): every failure becomes an OpenAI error answer."""
        try:
            yield
        except errors.GatewayError as e:
            self._answer_error(flow, e, plan)
        except Exception:
            logger.exception("gateway hook failed for flow %s", flow.id)
            self._answer_error(flow, errors.GatewayError("Internal gateway error; see the gateway log."), plan)

    def _answer_error(self, flow: http.HTTPFlow, err: errors.GatewayError, plan: Plan | None) -> None:
        plan = plan or self.plans.pop(flow.id, None)
        extra = {flows.MAPPED_MODEL_HEADER: plan.mapped_model} if plan else {}
        if plan and plan.job.account:
            extra[flows.ACCOUNT_HEADER] = plan.job.account
        flow.response = flows.error_response(err, extra)
        flows.mark_error(flow, f"{err.status} {err.code}: {err.message}")


async def record_failed_attempt(flow: http.HTTPFlow, attempt: AttemptRecord) -> None:
    """A failed upstream attempt as its own flow in mitmweb, mitmdump's output and ``-w`` files."""
    from mitmproxy.proxy.layers.http import HttpRequestHeadersHook, HttpRequestHook, HttpResponseHook

    f = flow.copy()
    f.metadata = {flows.SYNTHETIC: True, flows.ROUTE: "failed-attempt"}
    f.request.url = attempt.url
    for name in CLIENT_SECRET_HEADERS:
        f.request.headers.pop(name, None)
    f.request.headers.pop(FLOW_HEADER, None)
    f.request.content = attempt.request_body
    headers = {k: v for k, v in attempt.headers.items() if k not in ("content-length", "transfer-encoding")}
    f.response = http.Response.make(attempt.status or 502, attempt.body or attempt.error.encode(), headers)
    f.comment = f"failed attempt of {flow.id[:8]} via {attempt.account}: {attempt.decision}"
    f.marked = ":warning:"
    for hook in (HttpRequestHeadersHook(f), HttpRequestHook(f), HttpResponseHook(f)):
        await ctx.master.addons.handle_lifecycle(hook)
