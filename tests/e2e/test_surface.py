"""The client-facing surface end to end, through a real mitmdump: inbound auth, refusal to listen publicly
without auth, path handling, body limits, /v1/models, the mapping file, the intercepting (regular) proxy
mode with the openai SDK and no base_url, and what a ``-w`` flow file may contain (no secret)."""

from __future__ import annotations

import http.client
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
from mitmproxy import io as mitm_io

from support.gateway import ROOT

CLIENT_KEY = "sk-gw-client-key-7f3a9c"
CONNECT_LOG_SCRIPT = ROOT / "tests" / "support" / "connect_log.py"
CHAT = {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "ping"}]}


def call(gw, method: str, path: str, body: Any = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict, Any]:
    """One raw request (no SDK), so status, headers and the exact body can be asserted."""
    data = body if isinstance(body, bytes | None) else orjson.dumps(body)
    hdrs = {**({"content-type": "application/json"} if data is not None else {}), **(headers or {})}
    req = urllib.request.Request(gw.url + path, data=data, method=method, headers=hdrs)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=30) as r:
            return r.status, lower(r.headers), orjson.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, lower(e.headers), orjson.loads(raw) if raw else None


def lower(headers: Any) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


# ---- inbound auth ------------------------------------------------------------------------------
@pytest.mark.parametrize("header", [bearer(CLIENT_KEY), {"x-api-key": CLIENT_KEY},
                                    {"x-goog-api-key": CLIENT_KEY}])
def test_strict_mode_accepts_the_key_in_each_header_and_closes_health(start_gateway, header):
    gw = start_gateway(options={"ag_auth_mode": "strict", "ag_api_key": CLIENT_KEY})
    assert call(gw, "GET", "/v1/models", headers=header)[0] == 200
    assert call(gw, "GET", "/healthz", headers=header)[0] == 200
    status, _, body = call(gw, "GET", "/healthz")
    assert status == 401
    assert body["error"]["code"] == "invalid_api_key"


def test_a_wrong_or_missing_key_is_a_401_with_an_openai_body(start_gateway):
    gw = start_gateway(options={"ag_auth_mode": "strict", "ag_api_key": CLIENT_KEY})
    for headers, words in ((bearer("sk-wrong"), "Incorrect API key"),
                           ({"x-goog-api-key": "nope"}, "Incorrect"), ({}, "Missing API key")):
        status, resp_headers, body = call(gw, "POST", "/v1/chat/completions", CHAT, headers)
        assert status == 401
        assert resp_headers["content-type"] == "application/json"
        assert body["error"]["code"] == "invalid_api_key"
        assert body["error"]["type"] == "invalid_request_error"
        assert words in body["error"]["message"]
        assert resp_headers["access-control-allow-origin"] == "*"
    with pytest.raises(openai.AuthenticationError) as e:
        openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-wrong", max_retries=0).models.list()
    assert e.value.code == "invalid_api_key"


def test_all_except_health_leaves_only_health_open(start_gateway, emulator):
    gw = start_gateway(options={"ag_auth_mode": "all_except_health", "ag_api_key": CLIENT_KEY})
    assert call(gw, "GET", "/healthz")[0] == 200
    assert call(gw, "GET", "/v1/models")[0] == 401
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=30)
    reply = client.chat.completions.create(model="gemini-2.5-flash", messages=user("hi"))
    assert reply.choices[0].message.content == "echo: hi"
    assert CLIENT_KEY.encode() not in orjson.dumps(emulator.requests())  # the client's key never travels on


@pytest.mark.parametrize("mode", ["off", "auto"])
def test_off_and_auto_on_loopback_need_no_key(start_gateway, mode):
    gw = start_gateway(options={"ag_auth_mode": mode, "ag_api_key": CLIENT_KEY})
    assert call(gw, "GET", "/v1/models")[0] == 200


def test_cors_preflight_needs_no_key(start_gateway):
    gw = start_gateway(options={"ag_auth_mode": "strict", "ag_api_key": CLIENT_KEY})
    status, headers, _ = call(gw, "OPTIONS", "/v1/chat/completions",
                              headers={"origin": "http://localhost:3000",
                                       "access-control-request-method": "POST"})
    assert status == 204
    assert headers["access-control-allow-origin"] == "*"
    assert headers["access-control-allow-methods"] == "GET, POST, OPTIONS"
    assert "content-length" not in headers  # RFC 9110 §8.6: none on a 204


@pytest.mark.parametrize("opts", [{"ag_auth_mode": "off"}, {"ag_auth_mode": "auto"}])
def test_listening_publicly_without_auth_refuses_to_start(start_gateway, opts):
    # mitmproxy starts its listeners while it loads -s scripts, so hold the port on loopback: whatever
    # happens, nothing can listen on a public address during this test. The refusal must still be ours.
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        gw_port = holder.getsockname()[1]
        with pytest.raises(RuntimeError) as e:
            start_gateway(options={"listen_host": "0.0.0.0", **opts}, port=gw_port)
    out = str(e.value)
    assert "mitmdump exited with 1" in out
    assert "Refusing to listen on 0.0.0.0 (reachable from other machines)" in out
    assert "ag_allow_unauthenticated_public=true" in out


# ---- paths and bodies --------------------------------------------------------------------------
@pytest.mark.parametrize(("path", "meant"), [
    ("/v1/chat/completions/responses", "/v1/responses"),
    ("/v1/chat/completions/chat/completions", "/v1/chat/completions"),
    ("/v1/responses/v1/responses", "/v1/responses"),
    ("/api/v1/chat/completions", "/v1/chat/completions"),
])
def test_stacked_paths_get_a_helpful_404(gateway, emulator, path, meant):
    status, _, body = call(gateway, "POST", path, CHAT)
    assert status == 404
    message = body["error"]["message"]
    assert body["error"]["code"] == "unknown_url"
    assert repr(path) in message
    assert f"It most likely meant {meant!r}" in message
    assert f"set the client's base URL to '{gateway.url}/v1'" in message
    assert emulator.requests() == []


@pytest.mark.parametrize("base", ["/v1/v1", "", "/v1"])
def test_doubled_or_missing_v1_works_with_the_sdk(gateway, base):
    client = openai.OpenAI(base_url=gateway.url + base, api_key="sk-test", max_retries=0, timeout=30)
    reply = client.chat.completions.create(model="gemini-2.5-flash", messages=user("v1"))
    assert reply.choices[0].message.content == "echo: v1"
    assert any(m.id == "gemini-2.5-flash" for m in client.models.list())


def test_wrong_method_content_type_and_body_size(start_gateway, emulator):
    gw = start_gateway(options={"ag_body_limit": "2k"})
    status, headers, body = call(gw, "GET", "/v1/chat/completions")
    assert (status, headers["allow"], body["error"]["code"]) == (405, "POST", "method_not_allowed")
    text_plain = {"content-type": "text/plain"}
    assert call(gw, "POST", "/v1/chat/completions", orjson.dumps(CHAT), text_plain)[0] == 415
    status, _, body = call(gw, "POST", "/v1/chat/completions", b"model=gemini")
    assert status == 400
    big = orjson.dumps({**CHAT, "messages": [{"role": "user", "content": "x" * 5000}]})
    status, _, body = call(gw, "POST", "/v1/chat/completions", big)
    assert status == 413 and body["error"]["code"] == "request_too_large"
    # Answered, not a stalled upload (P18): a stall would end in call()'s socket time-out, not in a 413
    # (no wall-clock ceiling here: on this shared machine it would measure the load, not the gateway).
    assert chunked_post(gw, "/v1/chat/completions", big)[0] == 413  # no content-length: checked once read
    assert emulator.requests() == []


def chunked_post(gw, path: str, body: bytes) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
    try:
        conn.request("POST", path, body=iter([body[:1000], body[1000:]]),
                     headers={"content-type": "application/json"}, encode_chunked=True)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


# ---- models ------------------------------------------------------------------------------------
def test_models_lists_what_the_accounts_have_plus_aliases(start_gateway, emulator):
    emulator.configure(models_by_credential={"at-acc1": ["gemini-3-pro-preview", "claude-sonnet-4-5"],
                                             "AIza-e2e-key": ["gemini-2.5-flash"]})
    gw = start_gateway(accounts={"acc1": {}, "key1": {"api_key": "AIza-e2e-key"}},
                       options={"ag_model_map": ["gpt-4o=gemini-3-pro-preview", "claude-*=gemini-2.5-pro"]})
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-test", max_retries=0, timeout=30)
    models = {m.id: m.owned_by for m in client.models.list()}
    assert models == {"claude-sonnet-4-5": "google", "gemini-2.5-flash": "google",
                      "gemini-3-pro-preview": "google", "gpt-4o": "antigravity-gateway"}
    assert client.models.retrieve("gpt-4o").id == "gpt-4o"
    with pytest.raises(openai.NotFoundError) as e:
        client.models.retrieve("no-such-model")
    assert e.value.code == "model_not_found"
    asked = emulator.requests(rpc="fetchAvailableModels")
    assert [r["credential"] for r in asked] == ["at-acc1"]
    assert asked[0]["body"] == {"project": "proj-acc1"}
    client.models.list()
    assert len(emulator.requests(rpc="fetchAvailableModels")) == 1  # cached


def test_models_never_fail_when_upstream_does(start_gateway, emulator):
    emulator.add_rule(match={"rpc": "fetchAvailableModels"}, times=None,
                      reply={"error": {"kind": "internal"}})
    gw = start_gateway(options={"ag_model_map": ["team=gemini-3-flash"]})
    status, _, body = call(gw, "GET", "/v1/models")
    assert status == 200
    ids = [m["id"] for m in body["data"]]
    assert "team" in ids and "gemini-3-flash" in ids
    empty = start_gateway(accounts={})
    assert call(empty, "GET", "/v1/models")[0] == 200


def test_the_mapping_file_is_reloaded_without_restart(start_gateway, tmp_path):
    mapping = tmp_path / "models.json"
    mapping.write_bytes(orjson.dumps({"team-model": "gemini-2.5-pro"}))
    gw = start_gateway(options={"ag_model_map_file": str(mapping)})
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-test", max_retries=0, timeout=30)

    def mapped() -> str:
        raw = client.chat.completions.with_raw_response.create(
            model="team-model", messages=[{"role": "user", "content": "x"}])
        return raw.headers["x-mapped-model"]

    assert mapped() == "gemini-2.5-pro"
    mapping.write_bytes(orjson.dumps({"team-model": "gemini-3-flash", "other": "gemini-2.5-flash"}))
    deadline = time.monotonic() + 10
    while mapped() != "gemini-3-flash":
        assert time.monotonic() < deadline, "the mapping file was not reloaded"
        time.sleep(0.2)


# ---- intercepting mode -------------------------------------------------------------------------
def test_regular_mode_answers_api_openai_com_without_ever_connecting_to_it(start_gateway, emulator, tmp_path,
                                                                           monkeypatch):
    connect_log = tmp_path / "connects.log"
    gw = start_gateway(mode="regular", extra_args=[
        "--allow-hosts", r"^api\.openai\.com:443$",
        "-s", str(CONNECT_LOG_SCRIPT), "--set", f"connect_log={connect_log}"])
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", gw.url)
    monkeypatch.setenv("SSL_CERT_FILE", str(gw.ca_cert))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    client = openai.OpenAI(api_key="sk-proj-my-real-openai-key", max_retries=0, timeout=30)  # no base_url
    assert str(client.base_url) == "https://api.openai.com/v1/"

    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "intercepted"}])
    assert raw.parse().choices[0].message.content == "echo: intercepted"
    assert raw.headers["x-mapped-model"] == "gemini-2.5-flash"
    chunks = client.chat.completions.create(model="gemini-2.5-flash", stream=True,
                                            messages=[{"role": "user", "content": "streamed"}])
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: streamed"
    assert any(m.id == "gemini-2.5-flash" for m in client.models.list())
    with pytest.raises(openai.NotFoundError) as e:
        client.post("/chat/completions/responses", cast_to=object, body=CHAT)
    assert "'https://api.openai.com/v1'" in str(e.value)

    assert len(emulator.requests(rpc="generateContent")) == 1
    attempted = connect_log.read_text()
    assert "127.0.0.1" in attempted  # the relay: the log does record connections
    assert "api.openai.com" not in attempted
    assert "refused a connection" not in gw.log()  # not even the guard had to step in


# ---- what mitmproxy stores ---------------------------------------------------------------------
def test_a_flow_file_holds_the_flows_but_no_secret(start_gateway, emulator, tmp_path):
    flows_path = tmp_path / "flows.mitm"
    emulator.add_rule(match={"credential": "at-acc1"}, times=None, reply={"error": {"kind": "rate_limited"}})
    gw = start_gateway(
        accounts={"acc1": {}, "acc2": {}, "key1": {"api_key": "AIza-secret-key-e2e"}},
        options={"ag_auth_mode": "strict", "ag_api_key": CLIENT_KEY, "flow_detail": 2},
        extra_args=["-w", str(flows_path)])
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=30)
    for i in range(3):
        client.chat.completions.create(model="gemini-2.5-flash", messages=user(f"q{i}"))
    client.models.list()
    assert call(gw, "GET", "/v1/models", headers=bearer("sk-wrong-key-e2e"))[0] == 401
    assert call(gw, "POST", "/v1/chat/completions/responses", CHAT, bearer(CLIENT_KEY))[0] == 404
    gw.stop()

    data = flows_path.read_bytes()
    secrets = ["at-acc1", "at-acc2", "rt-acc1", "rt-acc2", "AIza-secret-key-e2e", CLIENT_KEY,
               "sk-wrong-key-e2e"]
    for secret in secrets:
        assert secret.encode() not in data, f"{secret} leaked into the flow file"
        assert secret not in gw.log(), f"{secret} leaked into mitmdump's output"
    with flows_path.open("rb") as fh:
        saved = list(mitm_io.FlowReader(fh).stream())
    failed = [f for f in saved if f.metadata.get("ag.synthetic")]
    assert failed and all(f.response.status_code == 429 and f.marked for f in failed)
    served = [f for f in saved if f.metadata.get("ag.route") == "chat.completions"]
    assert len(served) == 3
    for f in served:  # what mitmweb shows: client request, upstream really called, account, attempts
        assert f.request.path == "/v1/chat/completions"
        assert orjson.loads(f.request.content)["model"] == "gemini-2.5-flash"
        upstream = f.metadata["ag.upstream"]
        sent_to = upstream["request"]["url"]
        assert sent_to.startswith(emulator.url) and sent_to == upstream["url"]
        assert upstream["account"] in f.comment
        assert upstream["attempts"] == 1 or f"{upstream['attempts']} attempts" in f.comment
    denied = [f for f in saved if f.response and f.response.status_code == 401]
    assert denied and denied[0].request.headers["authorization"] == "[redacted]" and denied[0].marked
    lost = [f for f in saved if f.response and f.response.status_code == 404]
    assert lost and "/v1/chat/completions/responses" in lost[0].comment and lost[0].marked == ":warning:"


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a LISTEN socket on ``port``, from /proc/net/tcp{,6} (hex, as the kernel shows)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, _, hexport = local.rpartition(":")
            if state == "0A" and int(hexport, 16) == port:
                found.add(addr)
    return found


def test_without_listen_host_the_gateway_ends_up_on_loopback_only(start_gateway):
    # mitmproxy binds before it loads scripts; the gateway must rebind rather than stay on all interfaces.
    gw = start_gateway(options={"listen_host": None})
    deadline = time.monotonic() + 10
    while _listening_addresses(gw.port) != {"0100007F"} and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _listening_addresses(gw.port) == {"0100007F"}  # 127.0.0.1, and no 0.0.0.0 / :: socket
