"""mitm/console.py: content views, mitmweb defaults and ag.flow.upstream, on tflow flows."""

from __future__ import annotations

import orjson
import pytest
from mitmproxy import contentviews, exceptions
from mitmproxy.test import taddons, tflow, tutils

from antigravity_gw.mitm import flows
from antigravity_gw.mitm.console import Console

UPSTREAM_URL = "https://cloudcode.example/v1internal:streamGenerateContent?alt=sse"
SENT = {"model": "gemini-2.5-flash", "project": "p1",
        "request": {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}}


def served_stream_flow() -> tflow.HTTPFlow:
    f = tflow.tflow(req=tutils.treq(method=b"POST", path=b"/v1/chat/completions",
                                    content=b'{"model":"gpt-4o","stream":true}'),
                    resp=tutils.tresp(headers=((b"content-type", b"text/event-stream"),), content=(
                        b'data: {"object":"chat.completion.chunk","model":"gpt-4o","choices":[{"index":0,'
                        b'"delta":{"content":"Hello"},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n')))
    f.metadata[flows.ROUTE] = "chat.completions"
    f.metadata[flows.UPSTREAM] = {"url": UPSTREAM_URL, "request": flows.upstream_request(
        UPSTREAM_URL, {"authorization": "Bearer ya29.secret", "user-agent": "antigravity"},
        orjson.dumps(SENT))}
    return f


def test_a_stream_answer_shows_assembled_by_default():
    with taddons.context(Console()):
        f = served_stream_flow()
        shown = contentviews.prettify_message(f.response, f)
    assert shown.view_name == "OpenAI stream"
    assert "── text ──\nHello" in shown.text and "finish: stop" in shown.text


def test_the_gemini_request_view_shows_the_upstream_call_without_credentials():
    with taddons.context(Console()):
        f = served_stream_flow()
        auto = contentviews.prettify_message(f.request, f)
        shown = contentviews.prettify_message(f.request, f, view_name="Gemini request")
    assert auto.view_name != "Gemini request"  # the client's own request reads as what it is
    assert shown.text.startswith(f"POST {UPSTREAM_URL}\nauthorization: [redacted]")
    assert "ya29" not in shown.text and "── user ──\nhi" in shown.text


def test_ag_flow_upstream_returns_the_upstream_call():
    console = Console()
    with taddons.context(console) as tctx:
        text = tctx.master.commands.call("ag.flow.upstream", [served_stream_flow()])
        assert text.startswith(f"POST {UPSTREAM_URL}") and '"project": "p1"' in text
        assert "ya29" not in text
        two = tctx.master.commands.call("ag.flow.upstream", [served_stream_flow(), tflow.tflow(resp=True)])
        assert two.startswith("── flow ") and two.endswith("no upstream call (the gateway answered this flow "
                                                           "itself)")
        with pytest.raises(exceptions.CommandError, match="No flow matched"):
            tctx.master.commands.call("ag.flow.upstream", [])


def test_under_mitmweb_the_comment_column_is_shown_unless_the_user_chose_columns():
    from mitmproxy.tools.web.webaddons import WebAddon

    console = Console()
    with taddons.context(WebAddon(), console) as tctx:
        tctx.configure(console, web_columns=["path"])  # the user's choice stands
        assert tctx.options.web_columns == ["path"]
    console = Console()
    with taddons.context(WebAddon(), console) as tctx:
        tctx.master.addons.invoke_addon_sync(console, __import__("mitmproxy").hooks.ConfigureHook(
            set(tctx.options.keys())))
        assert tctx.options.web_columns[-1] == "comment" and "path" in tctx.options.web_columns
