"""The Console addon: mitmweb (and mitmproxy's console) as the gateway's console.

- under mitmweb, the flow list shows the comment column unless the user chose ``web_columns``, and
  streamed answers are kept (``store_streamed_bodies``) unless the user chose otherwise, so the content
  views below have something to show;
- content views: "OpenAI stream" (a chat, completions or Responses SSE answer put together: text,
  reasoning, tool calls, usage, the error it ended with), "Gemini request" (the upstream call a flow made,
  from ``ag.upstream``, or a failed attempt's own request) and "Gemini stream" (Google's SSE: a stream's
  upstream side, which the Gateway keeps under mitmweb, or a failed attempt's answer);
- ``ag.flow.upstream <flows>``: the upstream request each flow sent (URL, redacted headers, body), e.g.
  ``ag.flow.upstream @marked``.

Nothing here runs per request: the views run when someone opens a flow, the options once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import orjson
from mitmproxy import command, contentviews, ctx, exceptions, flow, http

from .. import assembled
from . import flows

logger = logging.getLogger(__name__)

WEB_COLUMNS = ["tls", "icon", "path", "method", "status", "size", "time", "comment"]
STREAM_ROUTES = frozenset({"chat.completions", "responses", "completions", "messages"})


def _http_flow(metadata: contentviews.Metadata) -> http.HTTPFlow | None:
    f = metadata.flow
    return f if isinstance(f, http.HTTPFlow) else None


class OpenAIStreamView(contentviews.Contentview):
    """A translated SSE answer, put together."""

    @property
    def name(self) -> str:
        return "OpenAI stream"

    def prettify(self, data: bytes, metadata: contentviews.Metadata) -> str:
        return assembled.openai_stream(data).render()

    def render_priority(self, data: bytes, metadata: contentviews.Metadata) -> float:
        f = _http_flow(metadata)
        if (f is None or metadata.http_message is not f.response or f.metadata.get(flows.SYNTHETIC)
                or f.metadata.get(flows.ROUTE) not in STREAM_ROUTES):
            return -1
        return 2 if assembled.looks_like_sse(data) else -1


class GeminiRequestView(contentviews.Contentview):
    """The upstream generateContent call: the one ``ag.upstream`` recorded, or a failed attempt's request."""

    @property
    def name(self) -> str:
        return "Gemini request"

    def prettify(self, data: bytes, metadata: contentviews.Metadata) -> str:
        f = _http_flow(metadata)
        if f is not None and metadata.http_message is f.request and not f.metadata.get(flows.SYNTHETIC):
            shown = upstream_request_text(f)
            if shown:
                return shown
        body = orjson.loads(data)
        if not isinstance(body, dict):
            raise ValueError("not a JSON object")
        return assembled.gemini_request(body)

    def render_priority(self, data: bytes, metadata: contentviews.Metadata) -> float:
        f = _http_flow(metadata)
        if f is not None and f.metadata.get(flows.SYNTHETIC) and metadata.http_message is f.request:
            return 1.5  # a failed attempt's request is Google's format: read it as such
        return -1  # chosen by hand on a gateway flow's request: it shows the upstream call


class GeminiStreamView(contentviews.Contentview):
    """Google's own SSE, put together: a translated stream's upstream side (kept under mitmweb, in
    ``ag.upstream``'s ``stream``), or a failed attempt's answer."""

    @property
    def name(self) -> str:
        return "Gemini stream"

    def prettify(self, data: bytes, metadata: contentviews.Metadata) -> str:
        f = _http_flow(metadata)
        if f is not None and metadata.http_message is f.response:
            kept = (f.metadata.get(flows.UPSTREAM) or {}).get("stream")
            if isinstance(kept, bytes):
                return assembled.gemini_stream(kept).render()
        return assembled.gemini_stream(data).render()

    def render_priority(self, data: bytes, metadata: contentviews.Metadata) -> float:
        f = _http_flow(metadata)
        if f is not None and f.metadata.get(flows.SYNTHETIC) and assembled.looks_like_sse(data):
            return 2
        return -1


VIEWS = (OpenAIStreamView, GeminiRequestView, GeminiStreamView)


def upstream_request_text(f: http.HTTPFlow) -> str:
    """A flow's upstream call as text: URL, headers (credentials redacted) and the body, summarised and
    as JSON. Empty when the flow made none (answered by the gateway itself, or not ours)."""
    shown = (f.metadata.get(flows.UPSTREAM) or {}).get("request")
    if not isinstance(shown, dict):
        return ""
    body = shown.get("body") or b""
    lines = [f"POST {shown.get('url', '')}"]
    lines += [f"{k}: {v}" for k, v in (shown.get("headers") or {}).items()]
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
        return "\n".join([*lines, "", text])
    summary = assembled.gemini_request(parsed) if isinstance(parsed, dict) else ""
    pretty = orjson.dumps(parsed, option=orjson.OPT_INDENT_2).decode()
    return "\n".join([*lines, "", summary, "", "── body ──", pretty]) if summary else "\n".join(
        [*lines, "", pretty])


def flow_upstream_text(f: flow.Flow) -> str:
    if not isinstance(f, http.HTTPFlow):
        return "not an HTTP flow"
    if f.metadata.get(flows.SYNTHETIC):  # a failed attempt: its request is the upstream call
        req = f.request
        head = [f"{req.method} {req.pretty_url}", *(f"{k}: {v}" for k, v in req.headers.items())]
        return "\n".join([*head, "", (req.content or b"").decode("utf-8", "replace")])
    return upstream_request_text(f) or "no upstream call (the gateway answered this flow itself)"


class Console:
    def __init__(self) -> None:
        self._registered = False

    def load(self, loader: Any) -> None:
        if not self._registered:  # the registry is mitmproxy's, process-wide; a reload replaces by name
            for view in VIEWS:
                contentviews.add(view)
            self._registered = True

    def configure(self, updated: set[str]) -> None:
        opts = ctx.options
        if "web_columns" not in opts:  # mitmdump: nothing to show
            return
        if "web_columns" in updated and not opts._options["web_columns"].has_changed():
            opts.update(web_columns=WEB_COLUMNS)
        if ("store_streamed_bodies" in updated and "store_streamed_bodies" in opts
                and not opts._options["store_streamed_bodies"].has_changed()):
            opts.update(store_streamed_bodies=True)  # the stream views need the answer that was sent

    @command.command("ag.flow.upstream")
    def flow_upstream(self, flows_: Sequence[flow.Flow]) -> str:
        """The upstream request each given flow sent (e.g. @marked): URL, headers (credentials redacted),
        body. Also written to the event log, where mitmweb shows it with its line breaks."""
        if not flows_:
            raise exceptions.CommandError("No flow matched (mark one and use @marked, or give a filter).")
        text = "\n\n".join(f"── flow {f.id} ──\n{flow_upstream_text(f)}" if len(flows_) > 1
                            else flow_upstream_text(f) for f in flows_)
        logger.info("ag.flow.upstream:\n%s", text)
        return text
