"""The Gateway addon's hooks with mitmproxy's test helpers (no sockets, no subprocess)."""

from __future__ import annotations

from typing import ClassVar

import orjson
import pytest
from mitmproxy import exceptions
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import taddons, tflow, tutils

from antigravity_gw.mitm.gateway import Gateway
from antigravity_gw.mitm.stream import StreamAdapter
from antigravity_gw.upstream.relay import FLOW_HEADER


def chat_flow(body: dict | bytes, path: str = "/v1/chat/completions", method: str = "POST",
              headers: tuple = ()) -> tflow.HTTPFlow:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    req = tutils.treq(method=method.encode(), path=path.encode(), content=content,
                      headers=((b"host", b"127.0.0.1:8045"), (b"content-type", b"application/json"),
                               (b"authorization", b"Bearer sk-client"), *headers))
    f = tflow.tflow(req=req)
    f.client_conn.proxy_mode = ProxyMode.parse("reverse:http://127.0.0.1:9@8045")
    return f


@pytest.fixture
def gw(tmp_path):
    addon = Gateway()
    with taddons.context(Proxyserver(), addon) as tctx:
        # hooks of the relay path
        tctx.configure(addon, ag_accounts=str(tmp_path), ag_inline_non_stream=False)
        yield addon


def test_bad_options_refuse_to_start(tmp_path):
    addon = Gateway()
    with taddons.context(Proxyserver(), addon) as tctx:
        with pytest.raises(exceptions.OptionsError, match="ag_model_map"):
            tctx.configure(addon, ag_model_map=["broken"])
        with pytest.raises(exceptions.OptionsError, match="stream_large_bodies"):
            tctx.configure(addon, stream_large_bodies="1m")
        with pytest.raises(exceptions.OptionsError, match="ag_gemini_url"):
            tctx.configure(addon, ag_gemini_url="ftp://x")


def test_safe_defaults_listen_on_loopback_and_connect_lazily(gw):
    from mitmproxy import ctx
    assert ctx.options.listen_host == "127.0.0.1"
    assert ctx.options.connection_strategy == "lazy"
    assert ctx.options.keep_host_header  # reverse mode: flows show the gateway's address, not Google's


async def test_healthz_says_starting_until_the_first_account_load_then_counts(gw, tmp_path):
    f = chat_flow(b"", path="/healthz", method="GET")
    await gw.request(f)
    assert (f.response.status_code, f.response.headers["retry-after"]) == (503, "1")
    assert orjson.loads(f.response.content) == {"status": "starting"}
    (tmp_path / "a.json").write_bytes(orjson.dumps({"id": "a", "api_key": "k-a"}))
    (tmp_path / "b.json").write_bytes(orjson.dumps({"id": "b", "api_key": "k-b"}))
    (tmp_path / "c.json").write_bytes(orjson.dumps({"id": "c", "api_key": "k-c", "disabled": True}))
    await gw.reload_accounts()
    gw.loaded = True  # what running() does after that first load
    await gw.pool.cool_down(gw.pool.find("b"), 60, "rate limited")
    f = chat_flow(b"", path="/healthz", method="GET")
    await gw.request(f)
    assert f.response.status_code == 200
    assert orjson.loads(f.response.content) == {"status": "ok",
                                                "accounts": {"ready": 1, "cooling": 1, "disabled": 1}}


async def test_unknown_path_gets_an_openai_404_and_a_marked_flow(gw):
    f = chat_flow({"model": "m", "messages": []}, path="/v1/chat/completions/responses")
    await gw.request(f)
    assert f.response.status_code == 404
    err = orjson.loads(f.response.content)["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert "/v1/chat/completions/responses" in err["message"]
    assert f.marked == ":warning:"
    assert "404" in f.comment


async def test_the_path_diagnosis_404_is_shaped_by_the_api_the_request_came_in_on(gw):
    f = chat_flow({"model": "m", "messages": []}, path="/v1/messages/extra")
    await gw.request(f)
    assert f.response.status_code == 404
    body = orjson.loads(f.response.content)
    assert body["type"] == "error" and body["error"]["type"] == "not_found_error"
    message = body["error"]["message"]
    assert "/v1/messages/extra" in message and "ANTHROPIC_BASE_URL" in message
    assert f.response.headers["request-id"] == body["request_id"]


async def test_a_bad_messages_body_is_an_anthropic_400_and_a_chat_one_stays_openais(gw):
    f = chat_flow({"model": "m", "messages": [{"role": "user", "content": "x"}]}, path="/v1/messages")
    await gw.request(f)
    body = orjson.loads(f.response.content)
    assert f.response.status_code == 400
    assert body["error"] == {"type": "invalid_request_error", "message": "max_tokens: Field required"}
    chat = chat_flow({"model": "m", "messages": []})
    await gw.request(chat)
    assert set(orjson.loads(chat.response.content)) == {"error"} and "request-id" not in chat.response.headers


async def test_invalid_json_is_a_400_openai_error(gw):
    f = chat_flow(b"{not json")
    await gw.request(f)
    assert f.response.status_code == 400
    assert orjson.loads(f.response.content)["error"]["type"] == "invalid_request_error"


async def test_a_request_without_image_urls_makes_no_image_fetcher(gw):
    """ag_image_fetch costs nothing to requests that carry no image URL: no session, no resolver."""
    gw.relay.port = 40000
    f = chat_flow({"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    await gw.request(f)
    assert f.response is None and gw._images is None


async def test_an_image_url_is_refused_by_the_default_policy_before_any_connection(gw):
    f = chat_flow({"model": "gpt-4o", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://169.254.169.254/latest/meta-data/x.png"}}]}]})
    await gw.request(f)
    assert f.response.status_code == 400
    err = orjson.loads(f.response.content)["error"]
    assert err["param"] == "messages[0].content[0].image_url"
    assert err["message"].startswith("Could not fetch the image at http://169.254.169.254/latest/meta-data/x.png.")
    assert gw._images is not None and gw._images.mode == "public"
    await gw._images.close()


async def test_chat_request_is_rewritten_to_the_canonical_upstream_request_at_the_relay(gw):
    gw.relay.port = 40000
    f = chat_flow({"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    await gw.request(f)
    assert f.response is None
    req = f.request
    assert (req.scheme, req.host, req.port) == ("http", "127.0.0.1", 40000)
    assert req.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert req.host_header == "generativelanguage.googleapis.com"  # P9: set explicitly
    assert req.headers[FLOW_HEADER] == f.id
    assert "authorization" not in req.headers  # the client's key never travels on
    assert req.headers["accept-encoding"] == "identity"
    assert orjson.loads(req.content)["contents"] == [{"role": "user", "parts": [{"text": "hi"}]}]
    assert f.metadata["ag.client_request"]["model"] == "gpt-4o"
    assert orjson.loads(gw.plans[f.id].client[-1])["model"] == "gpt-4o"  # restored when the answer comes
    assert req.headers.get_all("content-length") == [str(len(req.raw_content))]
    assert gw.plans[f.id].job.planned[0] == req.raw_content  # the relay need not parse it again


async def test_the_relay_request_is_sent_unencoded_whatever_the_client_used(gw):
    import gzip

    gw.relay.port = 40000
    body = orjson.dumps({"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    f = chat_flow(gzip.compress(body),
                  headers=((b"content-encoding", b"gzip"), (b"transfer-encoding", b"chunked")))
    await gw.request(f)
    assert f.response is None
    assert "content-encoding" not in f.request.headers and "transfer-encoding" not in f.request.headers
    assert orjson.loads(f.request.raw_content)["contents"][0]["parts"] == [{"text": "hi"}]


async def test_a_refused_compressed_body_leaves_nothing_on_the_flow_to_inflate(gw):
    """mitmweb or a -w file would decode what is left with mitmproxy's uncapped decoder."""
    import brotli

    bomb = brotli.compress(b'{"model": "' + b"a" * (64 * 1024 * 1024) + b'"}', quality=5)
    f = chat_flow(bomb, headers=((b"content-encoding", b"br"),))
    await gw.request(f)
    assert f.response.status_code == 413  # 64 MiB decoded, over the default 32 MiB
    assert f.request.raw_content == b""


async def test_a_decoded_body_replaces_the_encoded_one_on_the_flow(gw):
    import zlib

    f = chat_flow(zlib.compress(b'{"model": "m"}'), headers=((b"content-encoding", b"deflate"),))
    f.request.headers["content-length"] = str(len(f.request.raw_content))
    await gw.request(f)
    assert f.response.status_code == 400  # no messages: parsed, so it was decoded
    assert "content-encoding" not in f.request.headers
    assert f.request.raw_content == b'{"model": "m"}' and f.request.headers["content-length"] == "14"


async def test_an_http2_request_names_the_upstream_in_its_authority(gw):
    gw.relay.port = 40000
    f = chat_flow({"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    f.request.http_version = "HTTP/2.0"
    f.request.authority = "127.0.0.1:8045"
    f.request.headers.pop("host")
    await gw.request(f)
    assert f.request.authority == "generativelanguage.googleapis.com"
    assert "host" not in f.request.headers
    assert (f.request.host, f.request.port) == ("127.0.0.1", 40000)


async def test_stream_response_headers_install_the_translator(gw):
    f = chat_flow({"model": "gemini-2.5-flash", "stream": True,
                   "messages": [{"role": "user", "content": "hi"}]})
    await gw.request(f)
    gw.plans[f.id].job.account = "a@example.com"
    gw.plans[f.id].job.url = "https://cloudcode.example/v1internal:streamGenerateContent?alt=sse"
    f.response = tutils.tresp(status_code=200, content=None,
                              headers=((b"content-type", b"text/event-stream"), (b"content-length", b"0"),
                                       (b"server", b"Python/3.12 aiohttp/3"), (b"date", b"today")))
    gw.responseheaders(f)
    assert isinstance(f.response.stream, StreamAdapter)
    assert f.response.headers.get_all("content-type") == ["text/event-stream; charset=utf-8"]
    assert "server" not in f.response.headers  # the loopback relay's name is nothing the client talks to
    assert f.response.headers["date"] == "today"
    assert f.response.headers["transfer-encoding"] == "chunked"  # P3
    assert "content-length" not in f.response.headers
    assert f.response.headers["X-Mapped-Model"] == "gemini-2.5-flash"
    assert f.response.headers["X-Account-Email"] == "a@example.com"
    # The flow shows the client's request again (mitmweb's list, replay); the upstream call is metadata.
    assert (f.request.method, f.request.path, f.request.host) == ("POST", "/v1/chat/completions", "address")
    assert FLOW_HEADER not in f.request.headers
    assert orjson.loads(f.request.content)["model"] == "gemini-2.5-flash"
    assert f.metadata["ag.upstream"]["request"]["url"] == gw.plans[f.id].job.url


async def test_non_stream_body_is_translated_in_response(gw):
    f = chat_flow({"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}]})
    await gw.request(f)
    upstream = {"response": {"candidates": [{"index": 0,
                                             "content": {"role": "model", "parts": [{"text": "Hello"}]},
                                             "finishReason": "STOP"}],
                             "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 1,
                                               "totalTokenCount": 4}}}
    f.response = tutils.tresp(status_code=200, content=orjson.dumps(upstream),
                              headers=((b"content-type", b"application/json"),))
    gw.responseheaders(f)
    gw.response(f)
    body = orjson.loads(f.response.content)
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == "Hello"
    assert body["usage"]["total_tokens"] == 4
    assert f.id not in gw.plans


async def test_relay_error_body_passes_through_with_headers(gw):
    f = chat_flow({"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}]})
    await gw.request(f)
    err = {"error": {"message": "all busy", "type": "rate_limit_error", "param": None, "code": "x"}}
    f.response = tutils.tresp(status_code=429, content=orjson.dumps(err),
                              headers=((b"content-type", b"application/json"), (b"x-ag-error", b"1")))
    gw.responseheaders(f)
    gw.response(f)
    assert orjson.loads(f.response.content) == err
    assert "x-ag-error" not in f.response.headers
    assert f.response.headers["X-Mapped-Model"] == "gemini-2.5-flash"
    assert f.marked == ":warning:"


async def test_hook_exception_becomes_a_500_openai_error(gw, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("bug")
    monkeypatch.setattr(gw, "_translate_request", boom)
    f = chat_flow({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    await gw.request(f)
    assert f.response.status_code == 500
    assert orjson.loads(f.response.content)["error"]["code"] == "internal_error"


async def test_regular_mode_touches_only_api_openai_com(gw):
    f = chat_flow(b"", path="/healthz", method="GET")
    f.client_conn.proxy_mode = ProxyMode.parse("regular")
    f.request.host = "example.com"
    await gw.request(f)
    assert f.response is None
    f.request.host = "api.openai.com"
    await gw.request(f)
    assert f.response.status_code == 503  # /healthz: "starting", as running() never ran


# ---- the inline non-stream path (attempts made from the request hook) ----------------------------
GEMINI_ANSWER = {"candidates": [{"index": 0, "content": {"role": "model", "parts": [{"text": "pong"}]},
                                 "finishReason": "STOP"}],
                 "usageMetadata": {"promptTokenCount": 2, "candidatesTokenCount": 1, "totalTokenCount": 3}}


class CannedUpstream:
    """The runner's ``send`` seam: answers every call with one Gemini body, and remembers the calls."""

    def __init__(self, status: int = 200, body: bytes = orjson.dumps(GEMINI_ANSWER)) -> None:
        self.status, self.body, self.calls = status, body, []

    async def __call__(self, call):
        self.calls.append(call)
        outer = self

        class Answer:
            status = outer.status
            headers: ClassVar = {"content-type": "application/json"}

            async def read(self):
                return outer.body

            def release(self):
                pass

            def close(self):
                pass

        return Answer()


@pytest.fixture
async def inline_gw(tmp_path):
    import aiohttp

    from support.gateway import write_account

    write_account(tmp_path, "k1", api_key="AIza-one")
    addon = Gateway()
    with taddons.context(Proxyserver(), addon) as tctx:
        tctx.configure(addon, ag_accounts=str(tmp_path), ag_inline_non_stream=True)
        addon._session = aiohttp.ClientSession()
        await addon.reload_accounts()
        addon.upstream = CannedUpstream()
        addon._make_runner()._send = addon.upstream
        yield addon
        await addon._session.close()


async def test_inline_answer_has_final_headers_and_shows_the_upstream_request(inline_gw):
    f = chat_flow({"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "ping"}]},
                  headers=((b"content-encoding", b"identity"),))
    await inline_gw.request(f)
    resp = f.response
    assert resp.status_code == 200
    assert orjson.loads(resp.content)["choices"][0]["message"]["content"] == "pong"
    assert resp.headers["content-length"] == str(len(resp.raw_content))
    assert resp.headers["content-type"] == "application/json"
    assert resp.headers["X-Mapped-Model"] == "gemini-2.5-flash"
    assert resp.headers["X-Account-Email"] == "k1@example.com"
    assert resp.headers["x-ag-attempts"] == "1"
    assert len(resp.headers.get_all("x-mapped-model")) == 1
    # The flow is the client's request; the call that really went out is in its metadata, no secret in it.
    sent = inline_gw.upstream.calls[0]
    assert f.request.path == "/v1/chat/completions"
    upstream = f.metadata["ag.upstream"]["request"]
    assert (upstream["url"], upstream["body"]) == (sent.url, sent.body)
    shown = dict(upstream["headers"])
    assert shown.keys() == sent.headers.keys()
    secret = ("authorization", "x-goog-api-key")
    assert all(v == "[redacted]" for k, v in shown.items() if k.lower() in secret)
    assert set(shown.values()).isdisjoint({sent.headers.get(name) for name in secret})
    assert f.id not in inline_gw.plans


async def test_inline_answer_leaves_no_reference_cycle_behind(inline_gw):
    """A finished request's state is freed when its last reference goes, not by a later GC pass: a
    cycle (a failure callback closing over its own job) kept every flow alive until the collector ran."""
    import gc

    from antigravity_gw.upstream.relay import RelayJob

    def live_jobs() -> int:
        return sum(isinstance(o, RelayJob) for o in gc.get_objects())

    gc.collect()
    gc.disable()
    try:
        before = live_jobs()
        for _ in range(3):
            f = chat_flow({"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "ping"}]})
            await inline_gw.request(f)
            assert f.response.status_code == 200
        assert live_jobs() == before
    finally:
        gc.enable()


async def test_inline_answer_of_an_untranslatable_body_is_a_failed_attempt_and_names_no_account(inline_gw):
    inline_gw.upstream.body = b"<html>not json</html>"
    f = chat_flow({"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "ping"}]})
    await inline_gw.request(f)
    assert f.response.status_code == 503  # every account (the one) failed: an api_error, not a rate limit
    error = orjson.loads(f.response.content)["error"]
    assert error["type"] == "api_error"
    assert "HTML page" in error["message"] and "k1@example.com" in error["message"]
    assert "X-Account-Email" not in f.response.headers  # no account served
    assert "x-ag-attempts" not in f.response.headers or f.response.headers["x-ag-attempts"] != "0"
    assert f.id not in inline_gw.plans


async def test_done_cancels_the_gateways_background_tasks(gw):
    import asyncio
    pending = gw.tasks.spawn(asyncio.sleep(3600), "test-sleeper")
    await gw.done()
    assert pending.cancelled() and len(gw.tasks) == 0


# ---- how a flow reads when it ends (mitmweb's list) ---------------------------------------------------
SSE_HEADERS = ((b"content-type", b"text/event-stream"),)


async def streamed(gw, chunks: list[bytes]) -> tflow.HTTPFlow:
    f = chat_flow({"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    await gw.request(f)
    gw.plans[f.id].job.account, gw.plans[f.id].job.attempts = "a@example.com", 1
    f.response = tutils.tresp(status_code=200, content=None, headers=SSE_HEADERS)
    gw.responseheaders(f)
    for chunk in [*chunks, b""]:
        f.response.stream(chunk)
    f.response.content = b""
    gw.response(f)
    return f


GOOD = (b'data: {"candidates":[{"content":{"parts":[{"text":"hi"}]},"finishReason":"STOP"}],'
        b'"usageMetadata":{"promptTokenCount":7,"candidatesTokenCount":5,"totalTokenCount":12}}\n\n')


async def test_a_stream_that_ended_well_has_a_plain_comment_with_its_tokens(gw):
    f = await streamed(gw, [GOOD])
    assert f.comment.startswith("gpt-4o → gemini-2.5-flash · a@example.com · 7+5 tok · ")
    assert not f.marked


async def test_a_stream_that_ended_with_an_error_event_is_marked_with_the_reason(gw):
    cut = (b'data: {"error":{"code":502,"message":"The upstream stream broke off.",'
           b'"status":"UNAVAILABLE"}}\n\n')
    f = await streamed(gw, [GOOD.replace(b',"finishReason":"STOP"', b""), cut])
    assert f.marked == ":warning:"
    assert f.comment.startswith("⚠ stream ended with an error: Google returned an error mid-stream (502 ")
    assert "The upstream stream broke off. · gpt-4o → gemini-2.5-flash · a@example.com" in f.comment
    assert f.response.status_code == 200  # the status was sent before the error: the mark tells the truth


async def test_a_client_that_left_is_marked_and_the_flow_shows_its_request(gw):
    from mitmproxy import flow as mflow

    f = chat_flow({"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    await gw.request(f)
    assert f.request.path != "/v1/chat/completions"  # on its way to the relay
    f.error = mflow.Error("Client disconnected.")
    gw.error(f)
    assert f.marked == ":warning:" and f.comment.startswith("⚠ client left before the answer ended · gpt-4o")
    assert f.request.path == "/v1/chat/completions" and f.id not in gw.plans


async def test_failed_attempts_are_numbered_once_the_total_is_known(gw):
    from antigravity_gw.mitm.gateway import attempt_fields
    from antigravity_gw.readable import attempt_comment

    f = chat_flow({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
    await gw.request(f)
    job = gw.plans[f.id].job
    failed = tflow.tflow(resp=True)
    meta = {"number": 1, "status": 429, "reason": "QUOTA_EXHAUSTED", "account": "a@example.com",
            "cooldown": 3.0, "error": "", "of": f.id}
    failed.metadata = {"ag.synthetic": True, "ag.attempt": meta}
    failed.comment = attempt_comment(total=0, **attempt_fields(meta))
    assert failed.comment == "⚠ attempt 1: 429 QUOTA_EXHAUSTED · a@example.com · cooling 3 s"
    job.shown_failures = [failed]
    job.account, job.attempts = "b@example.com", 2
    f.response = tutils.tresp(status_code=200, headers=((b"content-type", b"application/json"),), content=(
        b'{"candidates":[{"content":{"parts":[{"text":"ok"}]},"finishReason":"STOP"}]}'))
    gw.responseheaders(f)
    gw.response(f)
    assert failed.comment == "⚠ attempt 1/2: 429 QUOTA_EXHAUSTED · a@example.com · cooling 3 s"
    assert f.comment.startswith("gpt-4o → gemini-2.5-flash · b@example.com · 2 attempts · ")


async def test_an_error_answer_from_the_relay_says_status_code_models_attempts_and_message(gw):
    f = chat_flow({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
    await gw.request(f)
    gw.plans[f.id].job.attempts = 2
    body = {"error": {"message": "Every account is cooling down.", "type": "rate_limit_error",
                      "param": None, "code": "rate_limit_exceeded"}}
    f.response = tutils.tresp(status_code=429, content=orjson.dumps(body),
                              headers=((b"content-type", b"application/json"), (b"x-ag-error", b"1")))
    gw.responseheaders(f)
    gw.response(f)
    assert f.marked == ":warning:"
    assert f.comment == ("⚠ 429 rate_limit_exceeded · gpt-4o → gemini-2.5-flash · 2 attempts · "
                         "Every account is cooling down.")


def test_ag_state_url_moves_the_pool_onto_redis_and_back_keeping_this_instances_cooldowns(tmp_path):
    from antigravity_gw.upstream.pool import MemoryState, Sticky
    from antigravity_gw.upstream.shared_state import SharedPoolState, SharedSticky

    gw = Gateway()
    with taddons.context(Proxyserver(), gw) as tctx:
        tctx.configure(gw, ag_accounts=str(tmp_path))
        embedded = gw.pool.state
        assert type(embedded) is MemoryState and type(gw.pool.scheduler) is Sticky  # the default, as before
        assert gw.endpoints.response_store.share is None and gw.pool.quota.sink is None
        tctx.configure(gw, ag_state_url="redis://127.0.0.1:1/0")  # configured; connects in running()
        assert isinstance(gw.pool.state, SharedPoolState) and gw.pool.state.local is embedded
        assert isinstance(gw.pool.scheduler, SharedSticky)
        assert gw.endpoints.response_store.share is not None and gw.pool.quota.sink is not None
        tctx.configure(gw, ag_state_url="")
        assert gw.pool.state is embedded and type(gw.pool.scheduler) is Sticky
        assert gw.endpoints.response_store.share is None and gw.pool.quota.sink is None


def test_a_bad_state_url_refuses_to_start_without_quoting_its_password(tmp_path):
    addon = Gateway()
    with (taddons.context(Proxyserver(), addon) as tctx,
          pytest.raises(exceptions.OptionsError, match="ag_state_url") as refused):
        tctx.configure(addon, ag_state_url="http://:hunter2@cache:6379")
    assert "hunter2" not in str(refused.value)


# ---- an intercept filter is set: flows go to the relay as the client's request ----------------------
@pytest.fixture
def intercepting_gw(tmp_path):
    from mitmproxy.addons.intercept import Intercept

    addon = Gateway()
    with taddons.context(Proxyserver(), Intercept(), addon) as tctx:
        tctx.configure(addon, ag_accounts=str(tmp_path), intercept="~q")
        addon.relay.port = 40000
        yield addon


HELD_BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hold me"}]}


async def test_a_flow_that_may_be_held_is_the_clients_request_pointed_at_the_relay(intercepting_gw):
    gw = intercepting_gw
    f = chat_flow(HELD_BODY, headers=((b"transfer-encoding", b"chunked"),))
    client_body = f.request.raw_content
    await gw.request(f)
    assert f.response is None  # not answered inline: an intercept filter may still hold it
    req = f.request
    assert (req.method, req.path, req.content) == ("POST", "/v1/chat/completions", client_body)
    assert (req.scheme, req.host, req.port) == ("http", "127.0.0.1", 40000)
    assert req.host_header == "127.0.0.1:8045" and req.headers[FLOW_HEADER] == f.id
    assert "transfer-encoding" not in req.headers
    assert req.headers.get_all("content-length") == [str(len(client_body))]
    assert f.comment == "gpt-4o → gemini-2.5-flash · not sent yet: edit the client's request, then resume"
    plan = gw.plans[f.id]
    assert plan.client is None and plan.job.translate is not None


async def test_an_unchanged_held_request_goes_upstream_as_the_hook_translated_it(intercepting_gw):
    gw = intercepting_gw
    f = chat_flow(HELD_BODY)
    await gw.request(f)
    plan = gw.plans[f.id]
    model, stream, body = await plan.job.translate("POST", "/v1/chat/completions", f.request.content)
    assert (model, stream) == ("gemini-2.5-flash", False)
    assert body is plan.held.upstream  # not parsed and translated a second time
    assert body["contents"] == [{"role": "user", "parts": [{"text": "hold me"}]}]


async def test_an_edited_held_request_is_translated_again_and_the_answer_follows_the_edit(intercepting_gw):
    gw = intercepting_gw
    f = chat_flow(HELD_BODY)
    await gw.request(f)
    edited = {"model": "gemini-2.5-pro", "stream": True, "messages": [{"role": "user", "content": "edited"}]}
    f.request.content = orjson.dumps(edited)  # what mitmweb does with an edit
    translate = gw.plans[f.id].job.translate
    model, stream, body = await translate("POST", "/v1/chat/completions", f.request.content)
    assert (model, stream) == ("gemini-2.5-pro", True)  # from the edited body, not the original request
    assert body["contents"] == [{"role": "user", "parts": [{"text": "edited"}]}]
    assert f.metadata["ag.client_request"]["model"] == "gemini-2.5-pro"
    f.response = tutils.tresp(status_code=200, content=None, headers=SSE_HEADERS)
    gw.responseheaders(f)
    assert isinstance(f.response.stream, StreamAdapter)  # the edit made it a stream: translated as one
    assert f.response.headers["X-Mapped-Model"] == "gemini-2.5-pro"
    # The flow shows the client's (edited) request at the client's address again, without our header.
    req = f.request
    assert (req.host, req.port, req.path) == ("address", 22, "/v1/chat/completions")
    assert orjson.loads(req.content) == edited and FLOW_HEADER not in req.headers
    for chunk in [GOOD, b""]:
        f.response.stream(chunk)
    f.response.content = b""
    gw.response(f)
    assert f.comment.startswith("gemini-2.5-pro → gemini-2.5-pro · ") and not f.marked


@pytest.mark.parametrize(("method", "path", "raw", "words"), [
    ("POST", "/v1/chat/completions", b'{"model": "gpt-4o", "messages": [', "JSON"),
    ("POST", "/v1/chat/completions", b'{"model": "gpt-4o"}', "messages"),
    ("POST", "/v1/responses", orjson.dumps(HELD_BODY), "keeps its route"),
])
async def test_a_bad_edit_of_a_held_request_is_the_clients_400(intercepting_gw, method, path, raw, words):
    from antigravity_gw import errors

    gw = intercepting_gw
    f = chat_flow(HELD_BODY)
    await gw.request(f)
    with pytest.raises(errors.GatewayError, match=words) as caught:
        await gw.plans[f.id].job.translate(method, path, raw)
    assert caught.value.status == 400


async def test_a_held_flow_killed_before_it_left_shows_the_clients_address_again(intercepting_gw):
    from mitmproxy import flow as mflow

    gw = intercepting_gw
    f = chat_flow(HELD_BODY)
    await gw.request(f)
    f.error = mflow.Error(mflow.Error.KILLED_MESSAGE)
    gw.error(f)
    assert (f.request.host, f.request.path) == ("address", "/v1/chat/completions")
    assert FLOW_HEADER not in f.request.headers and f.marked == ":warning:"


async def test_without_an_intercept_filter_the_relay_gets_the_upstream_request_as_before(gw):
    gw.relay.port = 40000
    f = chat_flow({**HELD_BODY, "stream": True})
    await gw.request(f)
    assert f.request.path.startswith("/v1beta/models/") and gw.plans[f.id].job.translate is None
