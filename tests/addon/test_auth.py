"""The Auth addon with mitmproxy's test helpers: modes, key headers, 401 bodies, redaction, refusals."""

from __future__ import annotations

import base64

import orjson
import pytest
from mitmproxy import exceptions
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import taddons, tflow, tutils

from antigravity_gw.mitm import flows
from antigravity_gw.mitm.auth import Auth

KEY = "sk-gw-secret-0123"


def flow(path: str = "/v1/models", method: str = "GET", headers: tuple = (), mode: str = "reverse:http://x@8045",
         host: str = "127.0.0.1") -> tflow.HTTPFlow:
    req = tutils.treq(method=method.encode(), path=path.encode(), content=b"",
                      headers=((b"host", f"{host}:8045".encode()), *headers))
    f = tflow.tflow(req=req)
    f.client_conn.proxy_mode = ProxyMode.parse(mode)
    return f


@pytest.fixture
def auth():
    addon = Auth()
    with taddons.context(addon) as tctx:
        yield addon, tctx


def configured(auth, **opts):
    addon, tctx = auth
    tctx.configure(addon, **opts)
    return addon


def error_of(f: tflow.HTTPFlow) -> dict:
    assert f.response is not None
    assert f.response.headers["content-type"] == "application/json"
    return orjson.loads(f.response.content)["error"]


@pytest.mark.parametrize("header", [
    (b"authorization", f"Bearer {KEY}".encode()),
    (b"authorization", f"bearer   {KEY}".encode()),
    (b"x-api-key", KEY.encode()),
    (b"x-goog-api-key", KEY.encode()),
])
def test_each_key_header_is_accepted_in_strict_mode(auth, header):
    addon = configured(auth, ag_auth_mode="strict", ag_api_key=KEY)
    f = flow(headers=(header,))
    addon.requestheaders(f)
    assert f.response is None
    assert f.metadata[flows.AUTH] == "key"


@pytest.mark.parametrize(("headers", "words"), [
    ((), "Missing API key"),
    (((b"authorization", b"Bearer sk-wrong"),), "Incorrect API key"),
    (((b"x-api-key", b"sk-wrong"),), "Incorrect API key"),
    (((b"authorization", b"Basic Zm9vOmJhcg=="),), "Incorrect API key"),
])
def test_missing_or_wrong_key_is_a_401_openai_error_with_a_body(auth, headers, words):
    addon = configured(auth, ag_auth_mode="strict", ag_api_key=KEY)
    f = flow(headers=headers)
    addon.requestheaders(f)
    assert f.response.status_code == 401
    err = error_of(f)
    assert err["code"] == "invalid_api_key"
    assert err["type"] == "invalid_request_error"
    assert words in err["message"]
    assert "sk-wrong" not in err["message"]
    assert f.response.headers["www-authenticate"].startswith("Bearer")
    assert f.marked == ":warning:"
    assert f.comment.startswith("⚠ 401 invalid_api_key · ")
    assert f.metadata[flows.AUTH] == "denied"


def test_the_401_is_shaped_by_the_api_the_request_came_in_on(auth):
    addon = configured(auth, ag_auth_mode="strict", ag_api_key=KEY)
    messages, chat = flow("/v1/messages", "POST"), flow("/v1/chat/completions", "POST")
    addon.requestheaders(messages)
    addon.requestheaders(chat)
    assert (messages.response.status_code, chat.response.status_code) == (401, 401)
    body = orjson.loads(messages.response.content)
    assert (body["type"], body["error"]["type"]) == ("error", "authentication_error")
    assert body["error"]["message"].startswith("Missing API key")
    assert messages.response.headers["request-id"] == body["request_id"]
    assert error_of(chat)["code"] == "invalid_api_key" and "request-id" not in chat.response.headers


def test_one_good_key_among_several_headers_is_enough(auth):
    addon = configured(auth, ag_auth_mode="strict", ag_api_key=KEY)
    f = flow(headers=((b"authorization", b"Bearer sk-other"), (b"x-goog-api-key", KEY.encode())))
    addon.requestheaders(f)
    assert f.response is None


@pytest.mark.parametrize(("mode", "health_open"), [("strict", False), ("all_except_health", True)])
@pytest.mark.parametrize("path", ["/healthz", "/v1/healthz", "/health"])
def test_health_is_open_only_in_all_except_health(auth, mode, health_open, path):
    addon = configured(auth, ag_auth_mode=mode, ag_api_key=KEY)
    f = flow(path=path)
    addon.requestheaders(f)
    assert (f.response is None) is health_open
    g = flow(path="/v1/models")
    addon.requestheaders(g)
    assert g.response.status_code == 401


@pytest.mark.parametrize("mode", ["off", "auto"])
def test_off_and_auto_on_loopback_let_everyone_in(auth, mode):
    addon = configured(auth, ag_auth_mode=mode, ag_api_key=KEY, listen_host="127.0.0.1")
    f = flow()
    addon.requestheaders(f)
    assert f.response is None
    assert f.metadata[flows.AUTH] == "open"


def test_auto_requires_the_key_when_listening_beyond_loopback(auth):
    addon = configured(auth, ag_auth_mode="auto", ag_api_key=KEY, listen_host="0.0.0.0")
    assert addon.settings.mode == "all_except_health"
    f = flow()
    addon.requestheaders(f)
    assert f.response.status_code == 401
    h = flow(path="/healthz")
    addon.requestheaders(h)
    assert h.response is None


def test_cors_preflight_passes_without_a_key(auth):
    addon = configured(auth, ag_auth_mode="strict", ag_api_key=KEY)
    f = flow(method="OPTIONS", path="/v1/chat/completions")
    addon.requestheaders(f)
    assert f.response is None
    assert f.metadata[flows.AUTH] == "preflight"


def test_the_request_hook_checks_flows_that_skipped_requestheaders_and_never_twice(auth):
    addon = configured(auth, ag_auth_mode="strict", ag_api_key=KEY)
    f = flow(headers=((b"authorization", f"Bearer {KEY}".encode()),))
    addon.requestheaders(f)
    addon.request(f)  # the key is redacted by now: a second check would wrongly refuse
    assert f.response is None
    g = flow()
    addon.request(g)
    assert g.response.status_code == 401


@pytest.mark.parametrize("verdict_key", [KEY, "sk-wrong"])
def test_the_clients_credentials_are_redacted_whatever_the_verdict(auth, verdict_key):
    addon = configured(auth, ag_auth_mode="strict", ag_api_key=KEY)
    f = flow(headers=((b"authorization", f"Bearer {verdict_key}".encode()), (b"x-api-key", b"k2"),
                      (b"cookie", b"session=s3cret")))
    addon.requestheaders(f)
    for name in ("authorization", "x-api-key", "cookie"):
        assert f.request.headers[name] == flows.REDACTED
    assert verdict_key not in str(f.request.headers)
    assert "s3cret" not in str(f.request.headers)


def test_credentials_are_redacted_even_with_auth_off(auth):
    addon = configured(auth, ag_auth_mode="off")
    f = flow(headers=((b"authorization", b"Bearer sk-proj-real-openai-key"),))
    addon.requestheaders(f)
    assert f.request.headers["authorization"] == flows.REDACTED


def other_host_flow(*headers: tuple[bytes, bytes], method: str = "GET") -> tflow.HTTPFlow:
    f = flow(mode="regular", host="example.com", method=method,
             headers=((b"authorization", b"Bearer theirs"), *headers))
    f.request.host = "example.com"
    return f


def test_regular_mode_with_auth_off_leaves_other_hosts_untouched(auth):
    addon = configured(auth, ag_auth_mode="off")
    other = other_host_flow()
    addon.requestheaders(other)
    assert other.response is None
    assert other.request.headers["authorization"] == "Bearer theirs"  # not ours: untouched


def test_regular_mode_needs_the_key_as_proxy_credentials_for_other_hosts(auth):
    addon = configured(auth, ag_auth_mode="strict", ag_api_key=KEY)
    other = other_host_flow()
    addon.requestheaders(other)
    assert other.response.status_code == 407
    assert other.response.headers.get_all("proxy-authenticate") == [
        'Basic realm="antigravity-gateway"', 'Bearer realm="antigravity-gateway"']
    assert error_of(other)["code"] == "proxy_authentication_required"
    ours = flow(mode="regular")
    ours.request.host = "api.openai.com"
    addon.requestheaders(ours)
    assert ours.response.status_code == 401  # an intercepted host: the API key, as before


@pytest.mark.parametrize("value", [f"Bearer {KEY}",
                                   "Basic " + base64.b64encode(f"anyone:{KEY}".encode()).decode(),
                                   "basic " + base64.b64encode(f":{KEY}".encode()).decode()])
def test_proxy_credentials_admit_other_hosts_and_are_never_forwarded(auth, value):
    addon = configured(auth, ag_auth_mode="strict", ag_api_key=KEY)
    other = other_host_flow((b"proxy-authorization", value.encode()))
    addon.requestheaders(other)
    assert other.response is None
    assert "proxy-authorization" not in other.request.headers
    assert other.request.headers["authorization"] == "Bearer theirs"  # theirs, for the origin


@pytest.mark.parametrize("value", ["Bearer wrong",
                                   "Basic " + base64.b64encode(f"{KEY}:wrong".encode()).decode(),
                                   "Basic !!notbase64", f"Digest {KEY}", KEY])
def test_wrong_proxy_credentials_get_a_407(auth, value):
    addon = configured(auth, ag_auth_mode="all_except_health", ag_api_key=KEY)
    other = other_host_flow((b"proxy-authorization", value.encode()))
    addon.requestheaders(other)
    assert other.response.status_code == 407
    assert KEY not in other.request.headers.get("proxy-authorization", "")


def test_connect_needs_the_key_except_to_an_intercepted_host(auth):
    addon = configured(auth, ag_auth_mode="strict", ag_api_key=KEY)
    tunnel = other_host_flow(method="CONNECT")
    addon.http_connect(tunnel)
    assert tunnel.response.status_code == 407
    to_openai = flow(mode="regular", method="CONNECT")
    to_openai.request.host = "api.openai.com"
    addon.http_connect(to_openai)
    assert to_openai.response is None  # the requests inside are checked with the API key
    assert to_openai.client_conn not in addon.proxy_authenticated


def test_a_connect_with_the_key_trusts_the_requests_in_its_tunnel(auth):
    addon = configured(auth, ag_auth_mode="strict", ag_api_key=KEY)
    tunnel = other_host_flow((b"proxy-authorization", f"Bearer {KEY}".encode()), method="CONNECT")
    addon.http_connect(tunnel)
    assert tunnel.response is None
    inner = other_host_flow()
    inner.client_conn = tunnel.client_conn
    addon.requestheaders(inner)
    assert inner.response is None and inner.metadata[flows.AUTH] == "proxy"
    elsewhere = other_host_flow()  # another client connection
    addon.requestheaders(elsewhere)
    assert elsewhere.response.status_code == 407


def test_reverse_mode_has_no_proxy_gate(auth):
    addon = configured(auth, ag_auth_mode="strict", ag_api_key=KEY)
    f = flow(headers=((b"authorization", f"Bearer {KEY}".encode()),))
    addon.requestheaders(f)
    assert f.response is None and f.metadata[flows.AUTH] == "key"


def test_replays_by_the_operator_are_trusted(auth):
    addon = configured(auth, ag_auth_mode="strict", ag_api_key=KEY)
    f = flow()
    f.is_replay = "request"
    addon.requestheaders(f)
    assert f.response is None


def test_nothing_is_served_before_the_options_are_accepted():
    addon = Auth()
    with taddons.context(addon):
        f = flow()
        addon.requestheaders(f)
        assert f.response.status_code == 401
        assert "refused its configuration" in error_of(f)["message"]


@pytest.mark.parametrize(("opts", "words"), [
    ({"listen_host": "0.0.0.0", "ag_auth_mode": "off"}, "with inbound auth off"),
    ({"listen_host": "0.0.0.0", "ag_auth_mode": "auto"}, "without ag_api_key"),
    ({"listen_host": "0.0.0.0", "ag_auth_mode": "strict"}, "without ag_api_key"),
    ({"listen_host": "127.0.0.1", "mode": ["regular@0.0.0.0:8080"]}, "0.0.0.0"),
    ({"listen_host": "127.0.0.1", "ag_auth_mode": "strict"}, "requires ag_api_key"),
    ({"ag_auth_mode": "sometimes"}, "ag_auth_mode"),
])
def test_unsafe_or_invalid_configurations_are_refused(auth, opts, words):
    addon, tctx = auth
    with pytest.raises(exceptions.OptionsError, match=words):
        tctx.configure(addon, **opts)


def test_public_listening_can_be_forced(auth, caplog):
    addon = configured(auth, listen_host="0.0.0.0", ag_auth_mode="off", ag_allow_unauthenticated_public=True)
    assert addon.settings.mode == "off"
    assert addon.settings.exposed_on == ("0.0.0.0",)
    assert "inbound auth is OFF" in caplog.text
    forced_with_key = configured(auth, listen_host="0.0.0.0", ag_auth_mode="auto", ag_api_key=KEY)
    assert forced_with_key.settings.mode == "all_except_health"


def test_unset_listen_host_becomes_loopback_before_it_is_judged(auth):
    from mitmproxy import ctx
    addon = configured(auth, ag_auth_mode="auto")
    assert ctx.options.listen_host == "127.0.0.1"
    assert addon.settings.mode == "off"


@pytest.mark.parametrize("query", [f"?key={KEY}", f"?alt=sse&api_key={KEY}", f"?access_token={KEY}&x=1"])
def test_credentials_in_the_query_are_redacted_too(auth, query):
    addon = configured(auth, ag_auth_mode="strict", ag_api_key=KEY)
    f = flow(path="/v1/models" + query, headers=((b"authorization", f"Bearer {KEY}".encode()),))
    addon.requestheaders(f)
    assert f.response is None
    assert KEY not in f.request.path and "redacted" in f.request.path


def test_a_query_without_credentials_is_left_alone(auth):
    addon = configured(auth, ag_auth_mode="off")
    f = flow(path="/v1/models?alt=sse&b=%2F")
    addon.requestheaders(f)
    assert f.request.path == "/v1/models?alt=sse&b=%2F"


# ---- named client keys (ag_api_keys_file) ------------------------------------------------------------
def keys_file(tmp_path, *keys: dict) -> str:
    path = tmp_path / "keys.json"
    path.write_bytes(orjson.dumps({"keys": list(keys)}))
    return str(path)


ALICE = {"name": "alice", "key": "sk-alice-0123456789"}


def test_a_named_key_is_admitted_and_its_name_goes_on_the_flow(auth, tmp_path):
    addon = configured(auth, ag_api_keys_file=keys_file(tmp_path, ALICE))
    assert addon.settings.mode == "all_except_health", "a keys file turns auto on, even on loopback"
    f = flow(headers=((b"authorization", b"Bearer sk-alice-0123456789"),))
    addon.requestheaders(f)
    assert f.response is None
    assert (f.metadata[flows.AUTH], f.metadata[flows.KEY]) == ("key", "alice")
    assert f.request.headers["authorization"] == "[redacted]"


def test_with_a_keys_file_the_single_key_still_works_and_has_no_name(auth, tmp_path):
    addon = configured(auth, ag_api_key=KEY, ag_api_keys_file=keys_file(tmp_path, ALICE))
    f = flow(headers=((b"x-api-key", KEY.encode()),))
    addon.requestheaders(f)
    assert f.response is None and flows.KEY not in f.metadata
    f = flow(headers=((b"x-api-key", b"sk-alice-012345678"),))
    addon.requestheaders(f)
    assert f.response.status_code == 401


def test_metrics_need_a_key_unless_public(auth, tmp_path):
    addon = configured(auth, ag_api_keys_file=keys_file(tmp_path, ALICE))
    f = flow(path="/metrics")
    addon.requestheaders(f)
    assert f.response.status_code == 401
    configured(auth, ag_metrics_public=True)
    f = flow(path="/metrics")
    addon.requestheaders(f)
    assert f.response is None and f.metadata[flows.AUTH] == "exempt"
    f = flow(path="/ag/usage")
    addon.requestheaders(f)
    assert f.response.status_code == 401


def test_a_named_key_is_still_recognised_when_inbound_auth_is_off(auth, tmp_path):
    addon = configured(auth, ag_auth_mode="off", ag_api_keys_file=keys_file(tmp_path, ALICE))
    f = flow(headers=((b"authorization", b"Bearer sk-alice-0123456789"),))
    addon.requestheaders(f)
    assert (f.metadata[flows.AUTH], f.metadata[flows.KEY]) == ("open", "alice")


def test_a_bad_keys_file_is_refused_with_its_reason(auth, tmp_path):
    addon, tctx = auth
    with pytest.raises(exceptions.OptionsError, match=r"keys\[0\] \(alice\): 'rpm' must be a whole number"):
        tctx.configure(addon, ag_api_keys_file=keys_file(tmp_path, {**ALICE, "rpm": "many"}))
    with pytest.raises(exceptions.OptionsError, match="cannot read"):
        tctx.configure(addon, ag_api_keys_file=str(tmp_path / "missing.json"))


def test_a_named_key_is_a_proxy_credential_too(auth, tmp_path):
    addon = configured(auth, ag_api_keys_file=keys_file(tmp_path, ALICE))
    token = base64.b64encode(b"u:sk-alice-0123456789")
    f = flow(path="http://example.com/", mode="regular", host="example.com",
             headers=((b"proxy-authorization", b"Basic " + token),))
    f.request.host, f.request.scheme = "example.com", "http"
    addon.requestheaders(f)
    assert f.response is None and f.metadata[flows.AUTH] == "proxy"
