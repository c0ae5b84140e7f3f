"""The Gateway's client-facing surface with mitmproxy's test helpers: paths, 404/405/413/415/400, the
intercepting-mode guard, CORS, and the composition of the addons."""

from __future__ import annotations

import orjson
import pytest
from mitmproxy import hooks
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.proxy import layers, server_hooks  # noqa: F401  (layers: registers its hooks in all_hooks)
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import taddons, tflow, tutils

from antigravity_gw import make_addons
from antigravity_gw.mitm import flows
from antigravity_gw.mitm.auth import Auth
from antigravity_gw.mitm.cors import Cors
from antigravity_gw.mitm.gateway import Gateway

CHAT = {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}]}


def make_flow(body: dict | bytes = b"", path: str = "/v1/chat/completions", method: str = "POST",
              headers: tuple = ((b"content-type", b"application/json"),), mode: str = "reverse:http://x@8045",
              host: str = "127.0.0.1:8045") -> tflow.HTTPFlow:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    req = tutils.treq(method=method.encode(), path=path.encode(), content=content,
                      headers=((b"host", host.encode()), *headers))
    f = tflow.tflow(req=req)
    f.client_conn.proxy_mode = ProxyMode.parse(mode)
    f.client_conn.sockname = ("127.0.0.1", 8045)
    return f


@pytest.fixture
def gw(tmp_path):
    addon = Gateway()
    with taddons.context(Proxyserver(), addon) as tctx:  # proxyserver declares connection_strategy
        tctx.configure(addon, ag_accounts=str(tmp_path), ag_body_limit="1k", ag_inline_non_stream=False)
        addon.relay.port = 40000
        yield addon


def error_of(f: tflow.HTTPFlow) -> dict:
    assert f.response is not None
    return orjson.loads(f.response.content)["error"]


# ---- paths -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("path", "meant"), [
    ("/v1/chat/completions/responses", "/v1/responses"),
    ("/v1/chat/completions/chat/completions", "/v1/chat/completions"),
    ("/v1/responses/v1/responses", "/v1/responses"),
    ("/api/v1/chat/completions", "/v1/chat/completions"),
])
async def test_stacked_paths_get_a_404_naming_path_route_and_the_base_url_fix(gw, path, meant):
    f = make_flow(CHAT, path=path)
    await gw.request(f)
    assert f.response.status_code == 404
    err = error_of(f)
    assert err["code"] == "unknown_url"
    assert repr(path) in err["message"]
    assert f"It most likely meant {meant!r}" in err["message"]
    assert "'http://127.0.0.1:8045/v1'" in err["message"]  # the address this client used, not a placeholder
    assert f.marked == ":warning:"
    assert f.comment.startswith("⚠ 404 unknown_url · Unknown path")
    assert path in f.comment


async def test_the_404_fix_names_the_intercepted_host_in_regular_mode(gw):
    f = make_flow(CHAT, path="/v1/chat/completions/responses", mode="regular", host="api.openai.com")
    f.request.host, f.request.scheme, f.request.port = "api.openai.com", "https", 443
    await gw.request(f)
    assert "'https://api.openai.com/v1'" in error_of(f)["message"]


@pytest.mark.parametrize("path", ["/v1/v1/chat/completions", "/chat/completions", "/v1/chat/completions/"])
async def test_doubled_or_missing_v1_reaches_the_chat_route(gw, path):
    f = make_flow(CHAT, path=path)
    await gw.request(f)
    assert f.response is None
    assert f.request.port == 40000  # pointed at the relay
    assert f.metadata[flows.ROUTE] == "chat.completions"


async def test_wrong_method_is_a_405_with_allow(gw):
    f = make_flow(b"", path="/v1/chat/completions", method="GET")
    await gw.request(f)
    assert f.response.status_code == 405
    assert f.response.headers["allow"] == "POST"
    assert error_of(f)["code"] == "method_not_allowed"


# ---- bodies ------------------------------------------------------------------------------------
def test_body_over_the_limit_is_refused_from_content_length_before_it_is_read(gw):
    f = make_flow(b"", headers=((b"content-type", b"application/json"), (b"content-length", b"4096")))
    f.request.data.content = None  # requestheaders: the body has not arrived yet
    gw.requestheaders(f)
    assert f.response.status_code == 413
    err = error_of(f)
    assert err["code"] == "request_too_large"
    assert "4096" in err["message"] and "1024" in err["message"] and "ag_body_limit" in err["message"]
    assert f.marked == ":warning:"


async def test_a_refused_body_is_not_kept_once_mitmproxy_has_read_it(gw):
    f = make_flow(b"", headers=((b"content-type", b"application/json"), (b"content-length", b"4096")))
    gw.requestheaders(f)
    f.request.data.content = b"x" * 4096  # mitmproxy reads the body anyway (P18) before the request hook
    await gw.request(f)
    assert f.request.raw_content == b""
    assert f.response.status_code == 413


async def test_chunked_body_over_the_limit_is_refused_in_the_request_hook(gw):
    body = orjson.dumps({**CHAT, "messages": [{"role": "user", "content": "x" * 2000}]})
    f = make_flow(body, headers=((b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")))
    gw.requestheaders(f)
    assert f.response is None  # no length announced
    await gw.request(f)
    assert f.response.status_code == 413


@pytest.mark.parametrize("content_type", [b"text/plain", b"application/x-www-form-urlencoded",
                                          b"multipart/form-data"])
async def test_a_body_that_is_not_declared_json_is_a_415(gw, content_type):
    f = make_flow(CHAT, headers=((b"content-type", content_type),))
    await gw.request(f)
    assert f.response.status_code == 415
    assert "application/json" in error_of(f)["message"]


@pytest.mark.parametrize("content_type", [b"application/json; charset=utf-8", b"application/vnd.api+json",
                                          None])
async def test_json_content_types_and_a_missing_one_are_accepted(gw, content_type):
    headers = ((b"content-type", content_type),) if content_type else ()
    f = make_flow(CHAT, headers=headers)
    await gw.request(f)
    assert f.response is None


@pytest.mark.parametrize(("body", "words"), [(b"", "empty"), (b"   ", "empty"), (b"model=x", "JSON")])
async def test_empty_or_non_json_bodies_are_a_clear_400(gw, body, words):
    f = make_flow(body)
    await gw.request(f)
    assert f.response.status_code == 400
    assert words in error_of(f)["message"]


# ---- intercepting mode -------------------------------------------------------------------------
@pytest.mark.parametrize(("address", "sni", "refused"), [
    (("api.openai.com", 443), "api.openai.com", True),
    (("104.18.7.192", 443), "api.openai.com", True),
    (("api.openai.com", 80), None, True),
    (("127.0.0.1", 40000), None, False),
    (("example.com", 443), "example.com", False),
])
def test_server_connect_guard_never_lets_mitmproxy_reach_intercepted_hosts(gw, caplog, address, sni, refused):
    server = tflow.tserver_conn()
    server.address, server.sni, server.error = address, sni, None
    gw.server_connect(server_hooks.ServerConnectionHookData(server, tflow.tclient_conn()))
    assert bool(server.error) is refused
    assert ("refused a connection to" in caplog.text) is refused


# ---- CORS and composition ----------------------------------------------------------------------
def test_cors_headers_go_on_every_answer_the_gateway_gives():
    cors = Cors()
    ours = make_flow(b"")
    ours.response = flows.json_response(401, {"error": {}})
    cors.responseheaders(ours)
    assert ours.response.headers["access-control-allow-origin"] == "*"
    assert "x-mapped-model" in ours.response.headers["access-control-expose-headers"]
    replaced = make_flow(b"")
    replaced.response = flows.json_response(502, {"error": {}})  # as if replaced in the response hook
    cors.response(replaced)
    assert replaced.response.headers["access-control-allow-origin"] == "*"
    other = make_flow(b"", mode="regular", host="example.com")
    other.request.host = "example.com"
    other.response = tutils.tresp()
    cors.responseheaders(other)
    assert "access-control-allow-origin" not in other.response.headers


async def test_preflight_is_answered_without_a_key_by_the_whole_chain(tmp_path):
    auth, gateway, cors = Auth(), Gateway(), Cors()
    with taddons.context(Proxyserver(), auth, gateway, cors) as tctx:
        tctx.configure(auth, ag_auth_mode="strict", ag_api_key="sk-k")
        tctx.configure(gateway, ag_accounts=str(tmp_path), ag_inline_non_stream=False)
        f = make_flow(b"", method="OPTIONS", headers=((b"access-control-request-method", b"POST"),))
        auth.requestheaders(f)
        gateway.requestheaders(f)
        auth.request(f)
        await gateway.request(f)
        cors.responseheaders(f)
        assert f.response.status_code == 204
        assert f.response.headers["access-control-allow-methods"] == "GET, POST, OPTIONS"


def test_auth_comes_before_the_gateway_and_cors_after_it():
    chain = make_addons()
    kinds = [type(a) for a in chain]
    # nothing may see a flow (or its key) before the inbound check: what comes first has no flow or
    # connection hook, only lifecycle ones
    flow_hooks = set(hooks.all_hooks) - {"load", "configure", "running", "done"}
    assert {"request", "client_connected", "http_connect", "websocket_message"} <= flow_hooks
    assert not [(a, h) for a in chain[:kinds.index(Auth)] for h in flow_hooks if hasattr(a, h)]
    assert kinds.index(Auth) < kinds.index(Gateway) < kinds.index(Cors)


def test_is_ours_is_shared_and_skips_synthetic_flows():
    f = make_flow(b"")
    assert flows.is_ours(f)
    f.metadata[flows.SYNTHETIC] = True
    assert not flows.is_ours(f)
