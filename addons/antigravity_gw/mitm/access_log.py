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
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from mitmproxy import ctx, http

from ..translate.usage import gemini_usage_counts
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


class AccessLog:
    def __init__(self) -> None:
        self._noise = ConnectionNoise()

    def load(self, loader: Any) -> None:
        logging.getLogger(SERVER_LOGGER).addFilter(self._noise)

    def configure(self, updated: set[str]) -> None:
        """These lines replace mitmdump's two per flow (``flow_detail=1``) unless the user chose a detail."""
        opts = ctx.options
        chosen = "flow_detail" not in opts or opts._options["flow_detail"].has_changed()  # mitmweb has none
        if "flow_detail" in updated and not chosen:
            opts.update(flow_detail=0)

    def done(self) -> None:
        logging.getLogger(SERVER_LOGGER).removeFilter(self._noise)

    def response(self, flow: http.HTTPFlow) -> None:
        if logger.isEnabledFor(logging.INFO) and not flow.metadata.get(flows.SYNTHETIC):
            logger.info(access_line(flow), extra={"client": flow.client_conn.peername})

    def error(self, flow: http.HTTPFlow) -> None:
        if logger.isEnabledFor(logging.INFO) and not flow.metadata.get(flows.SYNTHETIC):
            logger.info(access_line(flow), extra={"client": flow.client_conn.peername})


def access_line(flow: http.HTTPFlow) -> str:
    """The request as one line: what the client asked, what the gateway did, how it ended, how long."""
    meta = flow.metadata
    client = meta.get(flows.CLIENT_REQUEST) or {}
    upstream = meta.get(flows.UPSTREAM) or {}
    method = client.get("method") or flow.request.method
    path = (client.get("path") or flow.request.path).split("?", 1)[0]  # a query string may carry a key
    parts = [method, path if client or flows.is_ours(flow) else flow.request.pretty_url.split("?", 1)[0]]
    if "model" in upstream:
        parts.append(f"{client.get('model') or '?'} → {upstream['model']}")
    if upstream.get("account"):
        parts.append(f"account={upstream['account']}")
    resp = flow.response
    parts.append(f"status={resp.status_code if resp is not None else '-'}")
    if upstream.get("attempts"):
        parts.append(f"attempts={upstream['attempts']}")
    stream = resp.stream if resp is not None and isinstance(resp.stream, StreamAdapter) else None
    tokens = _tokens(stream.usage) if stream is not None else upstream.get("tokens")
    if tokens:
        parts.append(f"tokens={tokens[0]}/{tokens[1]}")
    start = flow.request.timestamp_start
    if resp is not None and resp.timestamp_start:
        first = (stream.first_chunk_at if stream is not None and stream.first_chunk_at
                 else resp.timestamp_start)
        parts.append(f"first={(first - start) * 1000:.0f}ms")
    end = (resp.timestamp_end if resp is not None else None) or (flow.error.timestamp if flow.error else None)
    if end:
        parts.append(f"total={(end - start) * 1000:.0f}ms")
    if stream is not None:
        parts.append("stream")
    code = _error_code(resp) if resp is not None and resp.status_code >= 400 else None
    if code:
        parts.append(f"error={code}")
    if flow.error:
        parts.append(f"error={flow.error.msg!r}")
    return " ".join(parts)


def _tokens(usage: dict[str, Any] | None) -> tuple[int, int] | None:
    if not usage:
        return None
    try:
        counts = gemini_usage_counts(usage)
    except ValueError:
        return None
    return counts.prompt, counts.completion


def tokens_of(gemini_answer: dict[str, Any]) -> tuple[int, int] | None:
    """Prompt and completion tokens of a whole Gemini answer (for ``ag.upstream``'s ``tokens``)."""
    usage = gemini_answer.get("usageMetadata")
    return _tokens(usage) if isinstance(usage, dict) else None


def _error_code(resp: http.Response) -> str | None:
    """The OpenAI error's code (or type) of an error answer the gateway made or relayed."""
    raw = resp.raw_content or b""
    if not raw or len(raw) > ERROR_BODY_LIMIT or resp.headers.get("content-encoding"):
        return None
    try:
        err = orjson.loads(raw).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return str(err.get("code") or err.get("type")) if isinstance(err, dict) else None
