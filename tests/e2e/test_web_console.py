"""mitmweb as the gateway's console, through mitmweb's own HTTP API (the JSON its web UI renders).

A real ``mitmweb`` with the addon on 127.0.0.1, the real openai client, the emulator upstream. mitmweb 12
wants a password or token for its API: the tests set ``web_password`` and send it as ``Authorization:
Bearer``; POSTs (clear, replay, commands) also need tornado's XSRF pair, a cookie and a header that match.
"""

from __future__ import annotations

import html
import os
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import openai
import orjson
import pytest

from support.gateway import Gateway, free_port, write_account

pytestmark = pytest.mark.e2e

PASSWORD = "console-test-password"
XSRF = "console-test-xsrf"
FLASH = "gemini-2.5-flash"


class Web:
    """mitmweb's HTTP API, logged in with the password."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def call(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"authorization": f"Bearer {PASSWORD}", "cookie": f"_mitmproxy_xsrf={XSRF}",
                   "x-xsrftoken": XSRF}
        data = None
        if body is not None:
            data, headers["content-type"] = orjson.dumps(body), "application/json"
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        with self._opener.open(req, timeout=15) as r:
            raw = r.read()
        return orjson.loads(raw) if raw else None

    def flows(self) -> list[dict[str, Any]]:
        return self.call("GET", "/flows")

    def view(self, flow_id: str, message: str, view: str) -> dict[str, Any]:
        return self.call("GET", f"/flows/{flow_id}/{message}/content/{urllib.parse.quote(view)}.json")

    def clear(self) -> None:
        self.call("POST", "/clear")

    def command(self, name: str, *arguments: str) -> Any:
        return self.call("POST", f"/commands/{name}", {"arguments": list(arguments)})


def wait_for(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        if result := predicate():
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def console(emulator_process, mitm_confdir, tmp_path_factory) -> Iterator[tuple[Gateway, Web]]:
    accounts = tmp_path_factory.mktemp("console-accounts")
    write_account(accounts, "a")
    write_account(accounts, "b")
    web_port = free_port()
    gw = Gateway(emulator_process, accounts, confdir=mitm_confdir, tool="mitmweb",
                 options={"web_password": PASSWORD, "web_port": web_port, "web_open_browser": False,
                          "ag_scheduling": "round_robin"})
    with gw:
        yield gw, Web(web_port)


@pytest.fixture
def web(console, emulator) -> Web:
    web = console[1]
    web.clear()
    return web


@pytest.fixture
def client(console) -> openai.OpenAI:
    gw, _ = console
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-test", max_retries=0, timeout=30)


def finished(web: Web, path: str, count: int = 1):
    """The flows for ``path`` once ``count`` of them have a response and a comment."""
    def ready():
        found = [f for f in web.flows()
                 if f["request"]["path"] == path and f.get("response") and f["comment"]]
        return found if len(found) >= count else None
    return wait_for(ready)


def test_a_chat_flow_is_the_clients_request_with_a_readable_comment(console, web, client):
    gw, _ = console
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hello console"}])
    (f,) = finished(web, "/v1/chat/completions")
    req = f["request"]
    shown = (req["method"], req["scheme"], req["pretty_host"], req["port"])
    assert shown == ("POST", "http", "127.0.0.1", gw.port)
    assert f["comment"].startswith(f"gpt-4o → {FLASH} · ")
    assert "@example.com · " in f["comment"] and f["comment"].endswith(" ms") and not f["marked"]
    assert not [x for x in web.flows() if "googleapis" in x["request"]["pretty_host"] or "v1internal" in
                x["request"]["path"]], "no flow reads as Google's host or RPC"
    upstream = web.view(f["id"], "request", "Gemini request")["text"]
    assert upstream.startswith("POST " + gw.emulator.url) and ":generateContent" in upstream.splitlines()[0]
    assert "authorization: [redacted]" in upstream and "at-a" not in upstream and "at-b" not in upstream
    assert "hello console" in upstream
    command = web.command("ag.flow.upstream", "~u /v1/chat/completions")
    assert command["value"].splitlines()[0] == upstream.splitlines()[0]
    web.call("PUT", f"/flows/{f['id']}", {"marked": ":star:"})
    assert web.command("ag.flow.upstream", "@marked")["value"] == command["value"]


def test_the_comment_column_is_shown_by_default(web):
    options = web.call("GET", "/options")
    assert "comment" in options["web_columns"]["value"]
    assert options["store_streamed_bodies"]["value"] is True


def test_ag_accounts_in_the_command_bar_is_a_readable_table(console, web):
    lines = web.command("ag.accounts")["value"]
    assert any("a@example.com" in line and "ready" in line for line in lines)
    assert any("b@example.com" in line and "ready" in line for line in lines)
    table = "\n".join(web.command("ag.accounts")["value"])
    assert "ACCOUNT" in table and "at-a" not in table and "rt-a" not in table  # no secret
    # the command bar shows a result as JSON on one line: the event log (a <pre>) shows the table aligned
    logged = wait_for(lambda: [e["message"].split("] ", 1)[-1] for e in web.call("GET", "/events")
                               if "] ag.accounts:\n" in e["message"]])
    assert logged[-1] == "ag.accounts:\n" + table


def test_a_stream_reads_assembled_with_tokens_in_its_comment(web, client, emulator):
    emulator.add_rule(times=1, reply={"thoughts": ["pondering"], "text": ["Hello ", "stream"]})
    chunks = client.chat.completions.create(model="gpt-4o", stream=True,
                                            stream_options={"include_usage": True},
                                            messages=[{"role": "user", "content": "s"}])
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello stream"
    (f,) = finished(web, "/v1/chat/completions")
    assert " tok · " in f["comment"] and not f["marked"]
    auto = web.view(f["id"], "response", "auto")
    assert auto["view_name"] == "OpenAI stream"
    assert "── reasoning ──\npondering" in auto["text"] and "── text ──\nHello stream" in auto["text"]
    assert "finish: stop" in auto["text"]
    upstream = web.view(f["id"], "response", "Gemini stream")["text"]  # Google's side, kept under mitmweb
    assert upstream.startswith("gemini: ") and "── text ──\nHello stream" in upstream
    assert "finish: STOP" in upstream and "candidatesTokenCount=" in upstream


def test_a_responses_stream_reads_assembled(web, client):
    events = list(client.responses.create(model="gpt-4o", input="resp console", stream=True))
    assert events[-1].type == "response.completed"
    (f,) = finished(web, "/v1/responses")
    assert f["comment"].startswith(f"gpt-4o → {FLASH} · ") and not f["marked"]
    shown = web.view(f["id"], "response", "OpenAI stream")["text"]
    assert shown.startswith("responses: ") and "── text ──\necho: resp console" in shown
    assert "finish: completed" in shown


def test_a_retried_request_shows_its_failed_attempt_numbered_with_reason_and_cooldown(web, client, emulator):
    emulator.add_rule(times=1, reply={"error": {"kind": "quota_exhausted", "retry_delay": "3s"}})
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "retry me"}])
    (f,) = finished(web, "/v1/chat/completions")
    assert " · 2 attempts · " in f["comment"] and not f["marked"]
    failed = wait_for(lambda: [x for x in web.flows() if x["comment"].startswith("⚠ attempt 1/2: ")])
    assert len(failed) == 1
    comment = failed[0]["comment"]
    assert comment.startswith("⚠ attempt 1/2: 429 QUOTA_EXHAUSTED · ") and comment.endswith(" · cooling 3 s")
    assert failed[0]["marked"] and failed[0]["response"]["status_code"] == 429
    assert "v1internal" in failed[0]["request"]["path"]  # a failed attempt is the upstream call it was
    headers = dict(failed[0]["request"]["headers"])
    assert headers["authorization"] == "[redacted]" and headers["content-type"] == "application/json"
    assert "at-a" not in str(headers) and "at-b" not in str(headers)
    shown = web.view(failed[0]["id"], "request", "auto")
    assert shown["view_name"] == "Gemini request" and "── user ──\nretry me" in shown["text"]


def test_a_cut_stream_is_marked_with_the_reason(web, client, emulator):
    emulator.add_rule(times=1, reply={"text": ["one ", "two ", "three"], "cut_after": 1})
    with pytest.raises(openai.APIError):
        list(client.chat.completions.create(model="gpt-4o", stream=True,
                                            messages=[{"role": "user", "content": "cut"}]))
    (f,) = finished(web, "/v1/chat/completions")
    assert f["marked"] and f["comment"].startswith("⚠ stream ended with an error: ")
    assert "gpt-4o → " in f["comment"]
    shown = web.view(f["id"], "response", "auto")["text"]
    assert "⚠ ended with an error" in shown


def test_a_stacked_path_is_a_marked_404_on_the_clients_route(console, web, client):
    gw, _ = console
    with pytest.raises(openai.NotFoundError):
        client.post("/chat/completions/responses", cast_to=object,
                    body={"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]})
    (f,) = finished(web, "/v1/chat/completions/responses")
    assert f["request"]["pretty_host"] == "127.0.0.1" and f["request"]["port"] == gw.port
    assert f["marked"] and f["comment"].startswith("⚠ 404 unknown_url · Unknown path")


def test_replaying_a_translated_flow_sends_the_clients_request_through_the_gateway_again(
        web, client, emulator):
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "replay me"}])
    (f,) = finished(web, "/v1/chat/completions")
    sent = len(emulator.requests(rpc="generateContent"))
    web.call("POST", f"/flows/{f['id']}/replay")

    def replayed():
        ended = f["response"]["timestamp_end"]
        found = [x for x in web.flows() if x["id"] == f["id"] and x["is_replay"] == "request"
                 and x.get("response") and (x["response"]["timestamp_end"] or 0) > ended and x["comment"]]
        return found[0] if found else None

    again = wait_for(replayed)
    assert again["response"]["status_code"] == 200, again["comment"]
    assert again["request"]["path"] == "/v1/chat/completions" and not again["marked"]
    assert again["comment"].startswith(f"gpt-4o → {FLASH} · ")
    assert len(emulator.requests(rpc="generateContent")) == sent + 1  # a new translation, a new attempt
    answer = web.view(f["id"], "response", "auto")["text"]
    assert "echo: replay me" in answer


def test_a_client_that_leaves_mid_stream_is_marked_with_the_reason(web, client, emulator):
    emulator.add_rule(times=1, reply={"text": ["first ", "second ", "third ", "fourth"],
                                      "chunk_delay_ms": 700})
    stream = client.chat.completions.create(model="gpt-4o", stream=True,
                                            messages=[{"role": "user", "content": "leave"}])
    next(iter(stream))
    stream.close()  # the client leaves while the answer is still coming

    def marked():
        found = [f for f in web.flows() if f["request"]["path"] == "/v1/chat/completions" and f["comment"]]
        return found[0] if found else None

    f = wait_for(marked)
    assert f["marked"] and f["comment"].startswith("⚠ client left before the answer ended · gpt-4o → ")


# ---- the web UI itself, in a headless browser -------------------------------------------------------
def chromium() -> str:
    """Debian's chromium; installed here (apt, as root) when missing, else the test is skipped saying why."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("chromium is not installed and cannot be installed here (needs root and apt-get): "
                    "apt-get install chromium")
    result = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "chromium"],
                            capture_output=True, text=True, timeout=900,
                            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    found = shutil.which("chromium")
    if result.returncode != 0 or not found:
        pytest.skip(f"chromium could not be installed with apt-get: {result.stderr.strip()[-300:]}")
    return found


def headless(browser: str, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The page after its scripts ran (virtual time lets the flow list load over the API and websocket)."""
    profile = tempfile.mkdtemp(prefix="ag-chromium-")
    try:
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 f"--user-data-dir={profile}", "--virtual-time-budget=8000", "--window-size=1600,900"]
        return subprocess.run([browser, *flags, *args, url], capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def test_the_web_ui_shows_routes_and_comments_in_its_flow_list(console, web, client, emulator, tmp_path):
    browser = chromium()
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "in the browser"}])
    with pytest.raises(openai.NotFoundError):
        client.post("/chat/completions/responses", cast_to=object,
                    body={"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]})
    finished(web, "/v1/chat/completions")
    finished(web, "/v1/chat/completions/responses")
    page = f"{web.base}/?token={PASSWORD}"
    dom = headless(browser, page, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = html.unescape(dom.stdout)
    assert "/v1/chat/completions" in text and "/v1/chat/completions/responses" in text
    assert f"gpt-4o → {FLASH} · " in text  # the comment column, shown by default
    assert "⚠ 404 unknown_url · Unknown path" in text
    assert "v1internal" not in text and "googleapis" not in text
    shot = tmp_path / "flow-list.png"
    taken = headless(browser, page, f"--screenshot={shot}")
    assert taken.returncode == 0 and shot.exists(), taken.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


# ---- interception: the held flow is the client's request ---------------------------------------------
CHAT = "/v1/chat/completions"


@pytest.fixture
def intercepting(web):
    """An intercept filter on the chat route, as a user sets it in mitmweb; off again after the test."""
    web.call("PUT", "/options", {"intercept": f"~u {CHAT} & ~q"})
    try:
        yield web
    finally:
        web.call("PUT", "/options", {"intercept": ""})


def held_flow(web: Web, answer) -> dict[str, Any]:
    def held():
        assert not answer.done(), answer.exception() if answer.done() else None
        return [f for f in web.flows() if f["intercepted"]]
    (f,) = wait_for(held)
    return f


def edit_and_resume(web: Web, flow_id: str, content: str | bytes) -> None:
    text = content.decode() if isinstance(content, bytes) else content
    web.call("PUT", f"/flows/{flow_id}", {"request": {"content": text}})
    web.call("POST", f"/flows/{flow_id}/resume")


def test_a_held_request_is_the_clients_and_the_edited_one_is_answered(console, intercepting, client,
                                                                     emulator):
    from concurrent.futures import ThreadPoolExecutor

    gw, web = console
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(client.chat.completions.with_raw_response.create, model="gpt-4o",
                             messages=[{"role": "user", "content": "hold me"}])
        held = held_flow(web, answer)
        req = held["request"]
        assert (req["method"], req["path"], req["pretty_host"]) == ("POST", CHAT, "127.0.0.1")
        assert held["comment"] == f"gpt-4o → {FLASH} · not sent yet: edit the client's request, then resume"
        assert dict(held["request"]["headers"])["authorization"] == "[redacted]"  # never the key
        body = web.call("GET", f"/flows/{held['id']}/request/content.data")  # the client's OpenAI JSON
        assert body == {"model": "gpt-4o", "messages": [{"role": "user", "content": "hold me"}]}
        assert emulator.requests(rpc="generateContent") == []  # nothing sent while held
        body["model"], body["messages"][0]["content"] = "gemini-2.5-pro", "edited while held"
        body["temperature"] = 0.123
        edit_and_resume(web, held["id"], orjson.dumps(body))
        raw = answer.result(timeout=30)
    assert raw.parse().choices[0].message.content == "echo: edited while held"  # the edited request's answer
    assert raw.headers["x-mapped-model"] == "gemini-2.5-pro"  # the edited model, mapped again
    (sent,) = emulator.requests(rpc="generateContent")
    assert sent["body"]["model"] == "gemini-2.5-pro"
    assert sent["body"]["request"]["generationConfig"]["temperature"] == 0.123
    (done,) = finished(web, CHAT)
    assert done["comment"].startswith("gemini-2.5-pro → gemini-2.5-pro · ") and not done["marked"]
    assert (done["request"]["pretty_host"], done["request"]["port"]) == ("127.0.0.1", gw.port)
    assert "x-ag-flow" not in dict(done["request"]["headers"])
    shown = web.call("GET", f"/flows/{done['id']}/request/content.data")
    assert shown["messages"][0]["content"] == "edited while held"  # what a replay sends again
    upstream = web.view(done["id"], "request", "Gemini request")["text"]
    assert "edited while held" in upstream and "at-a" not in upstream and "at-b" not in upstream
    web.call("POST", f"/flows/{done['id']}/replay")  # a replay is not held, and sends the edited request

    def replayed():
        found = [x for x in web.flows() if x["id"] == done["id"] and x["is_replay"] == "request"
                 and x.get("response") and x["response"]["timestamp_end"] > done["response"]["timestamp_end"]
                 and x["comment"]]
        return found[0] if found else None

    again = wait_for(replayed)
    assert again["comment"].startswith("gemini-2.5-pro → gemini-2.5-pro · ") and not again["marked"]
    assert len(emulator.requests(rpc="generateContent")) == 2
    assert "echo: edited while held" in web.view(done["id"], "response", "auto")["text"]


def test_a_held_request_edited_into_invalid_json_is_the_clients_400(intercepting, client, emulator):
    from concurrent.futures import ThreadPoolExecutor

    web = intercepting
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(client.chat.completions.create, model="gpt-4o",
                             messages=[{"role": "user", "content": "break me"}])
        held = held_flow(web, answer)
        edit_and_resume(web, held["id"], '{"model": "gpt-4o", "messages": [')
        with pytest.raises(openai.BadRequestError) as caught:
            answer.result(timeout=30)
    err = caught.value.response.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["type"] == "invalid_request_error"
    assert emulator.requests(rpc="generateContent") == []
    (done,) = finished(web, CHAT)
    assert done["marked"] and done["comment"].startswith("⚠ 400 ")


def test_a_held_stream_resumed_streams_the_edited_request(intercepting, client, emulator):
    from concurrent.futures import ThreadPoolExecutor

    web = intercepting
    emulator.add_rule(times=1, reply={"text": ["Hello ", "held ", "stream"]})

    def read_stream() -> str:
        chunks = client.chat.completions.create(model="gpt-4o", stream=True,
                                                stream_options={"include_usage": True},
                                                messages=[{"role": "user", "content": "s"}])
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(read_stream)
        held = held_flow(web, answer)
        body = web.call("GET", f"/flows/{held['id']}/request/content.data")
        assert body["stream"] is True and held["request"]["path"] == CHAT
        body["messages"][0]["content"] = "edited stream"
        edit_and_resume(web, held["id"], orjson.dumps(body))
        assert answer.result(timeout=30) == "Hello held stream"
    (sent,) = emulator.requests(rpc="streamGenerateContent")
    assert sent["body"]["request"]["contents"] == [{"role": "user", "parts": [{"text": "edited stream"}]}]
    (done,) = finished(web, CHAT)
    assert done["comment"].startswith(f"gpt-4o → {FLASH} · ") and " tok · " in done["comment"]
    assert not done["marked"]
    assert web.view(done["id"], "response", "auto")["view_name"] == "OpenAI stream"
