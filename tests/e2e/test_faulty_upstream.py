"""Faulty upstreams end to end: openai client -> real mitmdump -> relay -> emulator scripted with faults.

A bad 200 (HTML, invalid JSON, an error object, a cut, an invalid event, an empty body, a stall) is a
failed attempt: with a healthy account beside it every request succeeds; with only faulty accounts every
client gets its OpenAI-shaped error in time. Stalls and trickles are bounded, a client that leaves
cancels its upstream call and costs its account nothing, and errors say what happened.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import openai
import orjson
import pytest

from support.emulator import Emulator
from support.gateway import Gateway, free_port, write_account

pytestmark = pytest.mark.e2e

FLASH = "gemini-2.5-flash"
# Quick faults: each is over within a moment, so a whole matrix of them stays fast.
QUICK_FAULTS = ["html", "invalid_json", "error_in_200", "cut", "invalid_event", "empty"]
ALL_BAD = {"match": {}, "times": None}
FIRST_BYTE = 2  # ag_first_byte_timeout of these gateways, seconds


def bad_and_good(dialect: str) -> dict[str, dict[str, Any]]:
    if dialect == "cloudcode":
        return {"bad": {}, "good": {}}
    return {"bad": {"api_key": "AIza-bad"}, "good": {"api_key": "AIza-good"}}


def credential(dialect: str, name: str) -> str:
    return f"at-{name}" if dialect == "cloudcode" else f"AIza-{name}"


@pytest.fixture(scope="module", params=["cloudcode", "gemini"])
def pair_gateway(request: pytest.FixtureRequest, emulator_process: Emulator, mitm_confdir,
                 tmp_path_factory) -> Iterator[Gateway]:
    """A faulty and a healthy account of one dialect; lru, so every request after the first starts with
    the account used longest ago and the faulty one is asked in every pair of requests."""
    accounts = tmp_path_factory.mktemp(f"faulty-{request.param}")
    for name, fields in bad_and_good(request.param).items():
        write_account(accounts, name, **fields)
    options = {"ag_scheduling": "lru", "ag_first_byte_timeout": FIRST_BYTE, "ag_keepalive": 5,
               "ag_upstream_timeout": 20}
    with Gateway(emulator_process, accounts, confdir=mitm_confdir, options=options) as gw:
        gw.dialect = request.param
        yield gw


@pytest.fixture
def pair(pair_gateway: Gateway, emulator: Emulator) -> Gateway:
    return pair_gateway


def client_for(gw: Gateway, timeout: float = 30) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-test", max_retries=0, timeout=timeout)


def ask(client: openai.OpenAI, api: str, stream: bool, text: str = "hello there") -> str:
    """One request through the openai client; the answer's text (raises the SDK's error on failure)."""
    if api == "chat":
        messages = [{"role": "user", "content": text}]
        if not stream:
            return client.chat.completions.create(model=FLASH, messages=messages).choices[0].message.content
        chunks = list(client.chat.completions.create(model=FLASH, messages=messages, stream=True))
        assert chunks[-1].choices[0].finish_reason == "stop"
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    if not stream:
        return client.responses.create(model=FLASH, input=text).output_text
    events = list(client.responses.create(model=FLASH, input=text, stream=True))
    if events[-1].type in ("response.failed", "error"):  # the SDK raises only for some error events
        raise openai.APIError(str(events[-1]), request=None, body=None)  # type: ignore[arg-type]
    assert events[-1].type == "response.completed", [e.type for e in events]
    return events[-1].response.output_text


API_STREAM = pytest.mark.parametrize(("api", "stream"), [("chat", False), ("chat", True),
                                                         ("responses", False), ("responses", True)])


@pytest.mark.parametrize("fault", QUICK_FAULTS)
@API_STREAM
def test_a_bad_200_beside_a_healthy_account_costs_no_request(pair, emulator, fault, api, stream):
    bad = credential(pair.dialect, "bad")
    emulator.add_rule(match={"credential": bad}, times=None, reply={"fault": fault})
    client = client_for(pair)
    for i in range(2):
        assert ask(client, api, stream, f"question {i}") == f"echo: question {i}"
    asked = [r["credential"] for r in emulator.requests(kind="api")]
    assert bad in asked  # the faulty account was asked, and rotated away from
    assert "Traceback" not in pair.log()


@API_STREAM
def test_a_stalled_200_beside_a_healthy_account_rotates_after_the_first_byte_timeout(pair, emulator, api,
                                                                                      stream):
    emulator.add_rule(match={"credential": credential(pair.dialect, "bad"), "base": "/sandbox"
                             if pair.dialect == "cloudcode" else "/v1beta"},
                      times=None, reply={"fault": "stall", "stall_ms": 30_000})
    client = client_for(pair)
    for i in range(2):
        assert ask(client, api, stream, f"q{i}") == f"echo: q{i}"
    # the gateway gave up on the stalled call (the first-byte time-out, not the emulator's 30 s) and closed it
    assert "sent no usable data in time" in pair.log()
    # the emulator learns of the close when its handler next wakes: wait for it (no wall-clock ceiling)
    deadline = time.monotonic() + 15
    while not any(r.get("client_closed") for r in emulator.requests(kind="api")):
        assert time.monotonic() < deadline, emulator.requests(kind="api")
        time.sleep(0.05)


@pytest.mark.parametrize("fault", [*QUICK_FAULTS, "stall"])
@API_STREAM
def test_with_only_faulty_accounts_every_client_gets_an_openai_error_in_time(pair, emulator, fault, api,
                                                                             stream):
    if fault == "stall" and (api, stream) not in (("chat", True), ("responses", False)):
        pytest.skip("a stall takes ag_first_byte_timeout per attempt: two shapes cover it")
    emulator.add_rule(**ALL_BAD, reply={"fault": fault, "stall_ms": 30_000})
    with pytest.raises(openai.APIError) as caught:
        ask(client_for(pair), api, stream)
    err = caught.value
    # the gateway's answer, not the client giving up (no wall-clock ceiling: what follows says who ended it)
    assert not isinstance(err, openai.APIConnectionError), err
    if fault == "stall":  # every stalled attempt was cut by the first-byte time-out, none waited 30 s
        deadline = time.monotonic() + 15
        while not all(r.get("client_closed") for r in emulator.requests(kind="api")):
            assert time.monotonic() < deadline, emulator.requests(kind="api")
            time.sleep(0.05)
    if isinstance(err, openai.APIStatusError):  # the error before any byte: a status and an OpenAI body
        assert err.status_code == 503
        body = err.response.json()["error"]
        assert body["type"] == "api_error" and set(body) == {"message", "type", "param", "code"}
        assert "bad@example.com" in body["message"] and "good@example.com" in body["message"]
        assert "x-account-email" not in err.response.headers  # no account served
        assert "server" not in err.response.headers
    else:  # committed to a stream by keep-alives first: the error ends the stream
        assert "failed" in str(err.message) or "upstream" in str(err.message).lower()
    assert "Traceback" not in pair.log()


def test_many_clients_at_once_each_get_their_error_in_time(pair, emulator):
    from concurrent.futures import ThreadPoolExecutor

    emulator.add_rule(**ALL_BAD, reply={"fault": "invalid_event"})
    shapes = [("chat", False), ("chat", True), ("responses", False), ("responses", True)] * 3

    def one(shape: tuple[str, bool]) -> tuple[float, BaseException | None]:
        started = time.monotonic()
        try:
            ask(client_for(pair), *shape)
        except openai.APIError as e:
            return time.monotonic() - started, e
        return time.monotonic() - started, None

    with ThreadPoolExecutor(len(shapes)) as pool:
        results = list(pool.map(one, shapes))
    # each got the gateway's error (a client time-out is an APIConnectionError, and would mean a hang)
    assert all(isinstance(err, openai.APIError) and not isinstance(err, openai.APIConnectionError)
               for _, err in results), results
    assert "Traceback" not in pair.log()


def test_a_bad_200_is_a_failed_attempt_in_the_log_and_the_account_stays_ready(pair, emulator):
    emulator.add_rule(match={"credential": credential(pair.dialect, "bad")}, times=None,
                      reply={"fault": "html"})
    client = client_for(pair)
    for i in range(3):
        ask(client, "chat", False, f"q{i}")
    assert "attempt failed: bad@example.com" in pair.log() and "HTML page" in pair.log()
    bad = credential(pair.dialect, "bad")
    bad_calls = [r for r in emulator.requests(kind="api") if r["credential"] == bad]
    assert len(bad_calls) >= 2  # asked again in a later request: no long cooldown for a bad 200


# ---- deadlines: stalls, trickles --------------------------------------------------------------
@pytest.fixture
def lone(start_gateway) -> Gateway:
    """One Cloud Code account on one base; quick keep-alives; short time limits."""
    return start_gateway(options={"ag_keepalive": 1, "ag_first_byte_timeout": 3, "ag_upstream_timeout": 6,
                                  "ag_max_attempts": 1})


def raw_stream(gw: Gateway, api: str = "chat", timeout: float = 30) -> tuple[float, list[bytes]]:
    """POST a stream request with a plain socket; (seconds until the end, the raw lines received)."""
    path, body = ("/v1/chat/completions", {"model": FLASH, "stream": True,
                                           "messages": [{"role": "user", "content": "hi"}]})
    if api == "responses":
        path, body = "/v1/responses", {"model": FLASH, "stream": True, "input": "hi"}
    data = orjson.dumps(body)
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", gw.port), timeout=timeout) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Connection: close\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return time.monotonic() - started, received.split(b"\n")


def test_a_stall_after_the_first_event_gets_keepalives_then_an_error_event(lone, emulator):
    emulator.add_rule(match={}, times=None, reply={"fault": "stall", "fault_after": 1, "stall_ms": 30_000})
    elapsed, lines = raw_stream(lone)
    assert elapsed >= 3  # ag_first_byte_timeout of silence; the error below says it was that, not the 30 s
    assert lines[0].startswith(b"HTTP/1.1 200")
    keepalives = [i for i, line in enumerate(lines) if line.startswith(b": keep-alive")]
    errors = [i for i, line in enumerate(lines) if line.startswith(b"data: {\"error\"")]
    assert len(keepalives) >= 2 and len(errors) == 1 and max(keepalives) < errors[0]
    error = orjson.loads(lines[errors[0]].removeprefix(b"data: "))["error"]
    assert "ag_first_byte_timeout" in error["message"] and set(error) == {"message", "type", "param", "code"}
    assert wait_for_close(emulator)  # the stalled upstream call was closed


def wait_for_close(emulator: Emulator, timeout: float = 10.0) -> bool:
    """Has the emulator seen its client (the gateway) hang up on the latest call? Waits up to ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if emulator.requests(kind="api")[-1].get("client_closed"):
            return True
        time.sleep(0.02)
    return False


def leave_during_the_call(emulator: Emulator, gw: Gateway, stream: bool = False) -> None:
    """Send a chat request on a raw connection and hang up once its upstream call is under way."""
    body = orjson.dumps({"model": FLASH, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not emulator.requests(kind="api"):
            time.sleep(0.02)
        time.sleep(0.3)  # the upstream call is under way (and stalled)


def test_a_stall_before_any_event_keeps_the_client_patient_then_ends_with_an_error_event(lone, emulator):
    emulator.add_rule(match={}, times=None, reply={"fault": "stall", "stall_ms": 30_000})
    elapsed, lines = raw_stream(lone, "responses")
    assert elapsed >= 3
    assert lines[0].startswith(b"HTTP/1.1 200")  # committed by the first keep-alive, after ag_keepalive
    assert any(line.startswith(b": keep-alive") for line in lines)
    failed = [line for line in lines if b"response.failed" in line or b'"error"' in line]
    # one of the gateway's own time limits ended it, not the emulator's 30 s
    assert failed and any(b"sent no usable data in time" in line or b"ag_first_byte_timeout" in line
                          for line in failed), failed


@pytest.mark.parametrize("stream", [False, True])
def test_a_trickling_upstream_cannot_hold_a_client_past_the_deadline(lone, emulator, stream):
    emulator.add_rule(match={}, times=None, reply={"fault": "trickle", "trickle_ms": 50})
    with pytest.raises(openai.APIError) as caught:
        ask(client_for(lone), "chat", stream)
    # the gateway's deadline ended it (before the first usable event, or after), whatever the clock
    message = str(caught.value)
    assert "ag_upstream_timeout" in message or "sent no usable data in time" in message, message
    assert "Traceback" not in lone.log()


# ---- a client that leaves -----------------------------------------------------------------------
@pytest.mark.parametrize("stream", [False, True])
def test_a_client_that_leaves_cancels_the_upstream_call_and_costs_the_account_nothing(lone, emulator, stream):
    emulator.add_rule(match={}, times=1, reply={"fault": "stall", "stall_ms": 30_000})
    leave_during_the_call(emulator, lone, stream)
    # cancelled at once: well before the emulator's 30 s stall would end (waited for, not timed)
    assert wait_for_close(emulator, timeout=15)
    # No cooldown: the lone account answers the next request at once.
    assert ask(client_for(lone), "chat", False, "again") == "echo: again"
    log = lone.log()
    assert "attempt failed" not in log and "Traceback" not in log


# ---- errors say what happened ---------------------------------------------------------------------
def test_an_unreachable_upstream_is_a_502_upstream_unreachable(start_gateway):
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    gw = start_gateway(options={"ag_cloudcode_urls": [f"{closed}/v1internal"]})
    raw = client_for(gw).chat.completions.with_raw_response
    with pytest.raises(openai.APIStatusError) as caught:
        raw.create(model=FLASH, messages=[{"role": "user", "content": "hi"}])
    err = caught.value
    assert err.status_code == 502
    body = err.response.json()["error"]
    assert (body["type"], body["code"]) == ("upstream_error", "upstream_unreachable")
    assert "x-account-email" not in err.response.headers and "server" not in err.response.headers


@pytest.mark.parametrize("stream", [False, True])
def test_no_accounts_is_a_503_api_error(start_gateway, stream):
    gw = start_gateway(accounts={})
    with pytest.raises(openai.APIStatusError) as caught:
        ask(client_for(gw), "chat", stream)
    err = caught.value
    body = err.response.json()["error"]
    assert err.status_code == 503 and (body["type"], body["code"]) == ("api_error", "no_accounts")
    headers = err.response.headers
    assert "x-account-email" not in headers and "server" not in headers and "x-ag-attempts" not in headers


# ---- the same through the relay (non-stream answers when ag_inline_non_stream=false) --------------
def test_through_the_relay_a_bad_200_rotates_and_a_client_that_leaves_cancels(start_gateway, emulator):
    gw = start_gateway(accounts={"bad": {}, "good": {}},
                       options={"ag_inline_non_stream": False, "ag_scheduling": "lru", "ag_keepalive": 1})
    client = client_for(gw)
    for fault in QUICK_FAULTS:
        emulator.set_rules([{"match": {"credential": "at-bad"}, "times": None, "reply": {"fault": fault}}])
        for i in range(2):
            assert ask(client, "chat", False, f"{fault} {i}") == f"echo: {fault} {i}"
    assert {r["credential"] for r in emulator.requests(kind="api")} == {"at-bad", "at-good"}

    emulator.reset()
    failed_before = gw.log().count("attempt failed")
    emulator.add_rule(match={}, times=1, reply={"fault": "stall", "stall_ms": 30_000})
    leave_during_the_call(emulator, gw)
    assert wait_for_close(emulator, timeout=15)
    time.sleep(0.5)  # a late report would show by now
    log = gw.log()
    assert log.count("attempt failed") == failed_before  # none for the leaver
    assert "Traceback" not in log
