"""The AccessLog addon: one line per client request in mitmdump's output, at its default verbosity.

    [12:00:01.234][127.0.0.1:50312] POST /v1/chat/completions gpt-4o → gemini-2.5-flash account=me@gmail.com
        status=200 attempts=1 tokens=12/34 first=180ms total=950ms

(one line; ``error=CODE`` is added to failures, ``stream`` to streams). They replace mitmdump's own flow
lines: ``flow_detail`` defaults to 0 unless you set it. Failed upstream attempts keep
their own ``attempt failed`` lines. mitmproxy's own per-connection lines (``client connect``, ``client
disconnect``, ``server connect`` / ``server disconnect`` and ``Streaming response from``, which for the
gateway are mostly about the loopback relay) are demoted to debug: ``--set termlog_verbosity=debug``
shows them again, and ``termlog_verbosity=warn`` hides the access lines too.

Cheap by design: it runs once per request, reads what the Gateway already recorded on the flow
(``ag.client_request``, ``ag.upstream``) or the stream adapter, and parses a body only for an error answer.
That reading happens once, into a ``RequestRecord``: the line, the usage ledger and the metrics all take
that same record.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from mitmproxy import ctx, http

from ..idle_work import IdleWork
from ..translate.usage import gemini_usage_counts
from ..usage.record import RequestRecord
from . import flows
from .stream import StreamAdapter

logger = logging.getLogger("antigravity_gw.access")

SERVER_LOGGER = "mitmproxy.proxy.server"
CONNECTION_LINES = frozenset({"client connect", "client disconnect"})
CONNECTION_PREFIXES = ("server connect ", "server disconnect ", "Streaming response from ")
ERROR_BODY_LIMIT = 65536


class ConnectionNoise(logging.Filter):
    """Demotes mitmproxy's per-connection info lines to debug (a logger filter may change the record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO and isinstance(record.msg, str) and (
                record.msg in CONNECTION_LINES or record.msg.startswith(CONNECTION_PREFIXES)):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


class NotForAddLog(logging.Filter):
    """Keeps the access lines, and the debug lines of mitmproxy's connection handler (its own, and the
    per-connection lines ``ConnectionNoise`` demoted), out of mitmproxy's deprecated ``add_log`` event.

    mitmproxy turns every log record, debug ones included, into an ``add_log`` hook call on every loaded
    addon (~45), scheduled through the event loop's self-pipe: for the one line per request that cost more
    than making and writing the line (py-spy under scripts/bench's c=16 load), and a stream's "Streaming
    response from" line, logged as its headers go out, put that hook call before its first chunk. Nothing
    in mitmproxy consumes the event any more (the terminal, mitmweb's and the console's event logs are
    plain logging handlers, which still get every line); only scripts written for mitmproxy < 9 would
    miss these lines.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == SERVER_LOGGER:
            return record.levelno > logging.DEBUG
        return record.name != logger.name


class AccessLog:
    """Collects each finished request's ``RequestRecord`` once, logs it as the access line and hands billed
    ones to the ``sinks`` (the usage ledger and the metrics, see ``mitm/usage.py``).

    That is done as ``idle`` work (``idle_work.py``): after the answer has gone out, in the next moment
    the gateway waits for Google, so no client waits for it."""

    def __init__(self, sinks: Sequence[Callable[[RequestRecord], None]] = (), idle: IdleWork | None = None,
                 ) -> None:
        self._noise = ConnectionNoise()
        self._not_for_add_log = NotForAddLog()
        self.sinks = tuple(sinks)
        self.idle = idle if idle is not None else IdleWork()

    def load(self, loader: Any) -> None:
        logging.getLogger(SERVER_LOGGER).addFilter(self._noise)
        if legacy := _legacy_log_events():
            legacy.addFilter(self._not_for_add_log)

    def configure(self, updated: set[str]) -> None:
        """These lines replace mitmdump's two per flow (``flow_detail=1``) unless the user chose a detail."""
        opts = ctx.options
        chosen = "flow_detail" not in opts or opts._options["flow_detail"].has_changed()  # mitmweb has none
        if "flow_detail" in updated and not chosen:
            opts.update(flow_detail=0)

    def done(self) -> None:
        self.idle.run_now()  # the last requests' lines (Usage.done ran it already if the ledger was on)
        logging.getLogger(SERVER_LOGGER).removeFilter(self._noise)
        if legacy := _legacy_log_events():
            legacy.removeFilter(self._not_for_add_log)

    def response(self, flow: http.HTTPFlow) -> None:
        self.idle.defer(self._finished, flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self.idle.defer(self._finished, flow)

    def _finished(self, flow: http.HTTPFlow) -> None:
        if flow.metadata.get(flows.SYNTHETIC):
            return
        logged = logger.isEnabledFor(logging.INFO)
        if not (logged or self.sinks):
            return
        record = record_of(flow)
        if logged:
            # makeRecord + handle is logger.info minus findCaller, which walks the stack for a file and line
            # that no handler here shows: the one line per request costs that much less.
            line = line_of(record, flow.error.msg if flow.error else None)
            logger.handle(logger.makeRecord(logger.name, logging.INFO, "", 0, line, (), None,
                                            extra={"client": flow.client_conn.peername}))
        if record.billed:
            for sink in self.sinks:
                sink(record)


def _legacy_log_events() -> logging.Handler | None:
    """mitmproxy's handler behind ``add_log`` (``Master._legacy_log_events``, private: absent → nothing)."""
    try:
        handler = getattr(ctx.master, "_legacy_log_events", None)
    except AttributeError:  # no master (unit tests without taddons)
        return None
    return handler if isinstance(handler, logging.Handler) else None


def access_line(flow: http.HTTPFlow) -> str:
    """The request as one line: what the client asked, what the gateway did, how it ended, how long."""
    return line_of(record_of(flow), flow.error.msg if flow.error else None)


def record_of(flow: http.HTTPFlow) -> RequestRecord:
    """Everything about a finished request, from what the Gateway recorded on the flow (``ag.client_request``,
    ``ag.upstream``, ``ag.key``) and the stream adapter; a body is parsed only for an error answer."""
    meta = flow.metadata
    client = meta.get(flows.CLIENT_REQUEST) or {}
    upstream = meta.get(flows.UPSTREAM) or {}
    req, resp = flow.request, flow.response
    path = (client.get("path") or req.path).split("?", 1)[0]  # a query string may carry a key
    if not (client or flows.is_ours(flow)):
        path = req.pretty_url.split("?", 1)[0]
    route = meta.get(flows.ROUTE)
    record = RequestRecord(
        ts=req.timestamp_start, method=client.get("method") or req.method, path=path,
        route=route if isinstance(route, str) else "", key_name=meta.get(flows.KEY) or "",
        client_model=client.get("model") or "", mapped_model=upstream.get("model") or "",
        account=upstream.get("account") or "", status=resp.status_code if resp is not None else 0,
        attempts=upstream.get("attempts") or 0, fallback_from=upstream.get("fallback_from") or "")
    stream = resp.stream if resp is not None and isinstance(resp.stream, StreamAdapter) else None
    record.stream = stream is not None
    tokens = upstream.get("tokens")  # a stream's, once the Gateway counted them for its comment
    if tokens is None and stream is not None:
        tokens = usage_tokens(stream.usage)
    if tokens:
        record.has_tokens = True
        record.prompt_tokens, record.completion_tokens = tokens[0], tokens[1]
        if len(tokens) > 3:
            record.cached_tokens, record.reasoning_tokens = tokens[2], tokens[3]
    start = req.timestamp_start
    if resp is not None and resp.timestamp_start:
        first = resp.timestamp_start
        if stream is not None and stream.first_chunk_at:
            first = stream.first_chunk_at  # the first translated bytes, not the relay's headers
        record.first_chunk_ms = (first - start) * 1000
    end = (resp.timestamp_end if resp is not None else None) or (flow.error.timestamp if flow.error else None)
    if end:
        record.duration_ms = (end - start) * 1000
    code = error_code(resp) if resp is not None and resp.status_code >= 400 else None
    record.error_code = code or (flow.error.msg if flow.error else "")
    return record


def line_of(r: RequestRecord, connection_error: str | None = None) -> str:
    parts = [r.method, r.path]
    if r.mapped_model:
        parts.append(f"{r.client_model or '?'} → {r.mapped_model}")
        if r.fallback_from:
            parts.append(f"(fallback from {r.fallback_from})")
    if r.key_name:
        parts.append(f"key={r.key_name}")
    if r.account:
        parts.append(f"account={r.account}")
    parts.append(f"status={r.status or '-'}")
    if r.attempts:
        parts.append(f"attempts={r.attempts}")
    if r.has_tokens:
        parts.append(f"tokens={r.prompt_tokens}/{r.completion_tokens}")
    if r.first_chunk_ms is not None:
        parts.append(f"first={r.first_chunk_ms:.0f}ms")
    if r.duration_ms is not None:
        parts.append(f"total={r.duration_ms:.0f}ms")
    if r.stream:
        parts.append("stream")
    if r.error_code and r.error_code != connection_error:
        parts.append(f"error={r.error_code}")
    if connection_error:
        parts.append(f"error={connection_error!r}")
    return " ".join(parts)


def usage_tokens(usage: dict[str, Any] | None) -> tuple[int, int, int, int] | None:
    """Prompt, completion, cached and reasoning tokens of Google's ``usageMetadata``."""
    if not usage:
        return None
    try:
        counts = gemini_usage_counts(usage)
    except ValueError:
        return None
    return counts.prompt, counts.completion, counts.cached, counts.reasoning


def tokens_of(gemini_answer: dict[str, Any]) -> tuple[int, int, int, int] | None:
    """Prompt, completion, cached and reasoning tokens of a whole Gemini answer (``ag.upstream``'s
    ``tokens``; cached is part of prompt, reasoning of completion)."""
    usage = gemini_answer.get("usageMetadata")
    return usage_tokens(usage) if isinstance(usage, dict) else None


def error_code(resp: http.Response) -> str | None:
    """The OpenAI error's code (or type) of an error answer the gateway made or relayed."""
    err = error_object(resp)
    return str(err.get("code") or err.get("type")) if err is not None else None


def error_object(resp: http.Response) -> dict[str, Any] | None:
    """The ``error`` object of an error answer the gateway made or relayed (None: not one, or too big)."""
    raw = resp.raw_content or b""
    if not raw or len(raw) > ERROR_BODY_LIMIT or resp.headers.get("content-encoding"):
        return None
    try:
        err = orjson.loads(raw).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return err if isinstance(err, dict) else None
