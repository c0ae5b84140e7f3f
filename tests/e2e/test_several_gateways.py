"""Several gateways, one pool: two real mitmdump instances sharing a real redis-server (``ag_state_url``).

Each instance has its own copy of the accounts directory, as instances on different hosts would.
"""

from __future__ import annotations

import asyncio
import time

import openai
import orjson
import pytest

from support.pool import FLASH, account_of, chat, client_for, credentials, wait_until

pytestmark = pytest.mark.e2e




@pytest.fixture
def pair(start_gateway, redis_server):
    """Two gateways, A and B, on one Redis, each with its own copy of accounts a and b."""

    def start(accounts=None, **options):
        opts = {"ag_state_url": redis_server.url, "ag_scheduling": "lru", **options}
        accounts = accounts or {"a": {}, "b": {}}
        return (start_gateway(accounts=accounts, options=dict(opts)),
                start_gateway(accounts=accounts, options=dict(opts)))

    return start


def test_a_429_seen_by_one_instance_cools_that_account_for_the_other(pair, emulator):
    gw_a, gw_b = pair()
    emulator.add_rule(match={"credential": "at-a"}, times=1,
                      reply={"error": {"kind": "quota_exhausted", "retry_delay": "30s"}})
    first = chat(client_for(gw_a), "one")
    assert account_of(first) == "b" and credentials(emulator) == ["at-a", "at-b"]
    emulator.reset()
    # B never saw account a fail; its own LRU order would try a first. It must not.
    client_b = client_for(gw_b)
    served = [account_of(chat(client_b, f"q{i}")) for i in range(3)]
    assert served == ["b", "b", "b"]
    assert credentials(emulator) == ["at-b"] * 3
    assert "shared state: Redis at" in gw_b.log()


async def test_concurrent_expired_token_requests_on_both_instances_refresh_once(pair, emulator):
    gw_a, gw_b = pair(accounts={"a": {"token": {"expiry_timestamp": 1}}})
    # slow, and rotating: the refresh token used once is revoked, so a second refresh anywhere would be an
    # invalid_grant that disables the account
    emulator.configure(oauth={"delay_ms": 800, "rotate": True})
    clients = [openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="sk-test", max_retries=0, timeout=30)
               for gw in (gw_a, gw_b)]
    answers = await asyncio.gather(*(clients[i % 2].chat.completions.create(
        model=FLASH, messages=[{"role": "user", "content": f"q{i}"}]) for i in range(16)))
    for c in clients:
        await c.close()
    assert sorted(a.choices[0].message.content for a in answers) == sorted(f"echo: q{i}" for i in range(16))
    assert [r["credential"] for r in emulator.requests(kind="token")] == ["rt-a"]
    fresh = set(credentials(emulator))
    assert len(fresh) == 1 and next(iter(fresh)).startswith("ya29.emu-")
    # each host's own copy of the file holds the rotated refresh token, and neither disabled the account
    files = [orjson.loads((gw.accounts_dir / "a.json").read_bytes()) for gw in (gw_a, gw_b)]
    rotated = {f["token"]["refresh_token"] for f in files}
    assert len(rotated) == 1 and rotated != {"rt-a"}
    assert [f["disabled"] for f in files] == [False, False]


def test_a_keys_rpm_holds_across_both_instances(pair, tmp_path):
    keys = tmp_path / "keys.json"
    keys.write_bytes(orjson.dumps({"keys": [{"name": "bob", "key": "sk-bob-0123456789", "rpm": 3}]}))
    gw_a, gw_b = pair(ag_api_keys_file=str(keys))

    def ask(gw):
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-bob-0123456789", max_retries=0,
                               timeout=30)
        return client.chat.completions.create(model=FLASH, messages=[{"role": "user", "content": "hi"}])

    ask(gw_a)
    ask(gw_b)
    ask(gw_a)
    with pytest.raises(openai.RateLimitError) as refused:  # B has seen one request of bob's; the pool three
        ask(gw_b)
    assert refused.value.body["code"] == "rate_limit_exceeded"
    with pytest.raises(openai.RateLimitError):
        ask(gw_a)


@pytest.mark.parametrize("stream", [False, True])
def test_a_previous_response_id_created_on_one_instance_continues_on_the_other(pair, emulator, stream):
    gw_a, gw_b = pair()
    first = client_for(gw_a).responses.create(model=FLASH, input="remember the word kumquat")
    if stream:
        with client_for(gw_b).responses.stream(model=FLASH, input="which word?",
                                               previous_response_id=first.id) as events:
            second = events.get_final_response()
    else:
        second = client_for(gw_b).responses.create(model=FLASH, input="which word?",
                                                   previous_response_id=first.id)
    assert second.output_text == "echo: which word?"
    calls = [r for r in emulator.requests() if r["rpc"] in ("generateContent", "streamGenerateContent")]
    sent = calls[-1]["body"]["request"]["contents"]
    texts = [p.get("text") for c in sent for p in c["parts"]]
    assert texts == ["remember the word kumquat", "echo: remember the word kumquat", "which word?"]


def test_an_unknown_previous_response_id_is_still_a_404(pair):
    gw_a, _ = pair()
    with pytest.raises(openai.NotFoundError) as e:
        client_for(gw_a).responses.create(model=FLASH, input="x", previous_response_id="resp_nowhere")
    assert e.value.body["code"] == "previous_response_not_found"


def test_killing_redis_mid_traffic_loses_no_request_and_its_return_restores_sharing(pair, emulator,
                                                                                     redis_server):
    gw_a, gw_b = pair()
    clients = [client_for(gw_a), client_for(gw_b)]
    outcomes: list[str] = []

    def traffic(n: int, label: str) -> None:
        for i in range(n):
            for c in clients:
                try:
                    outcomes.append(chat(c, f"{label}{i}").parse().choices[0].message.content)
                except openai.APIError as e:
                    outcomes.append(f"failed: {e}")

    traffic(5, "before")
    redis_server.stop()  # kill -9, mid-traffic: the gateways find out on their next call
    traffic(10, "during")
    for gw in (gw_a, gw_b):
        wait_until(lambda gw=gw: "(degraded)" in gw.log())
    assert [o for o in outcomes if o.startswith("failed")] == []
    assert len(outcomes) == 30
    for gw in (gw_a, gw_b):
        assert gw.log().count("(degraded)") == 1, "degraded mode is said once per outage"

    redis_server.start()  # the same port, empty (no persistence)
    for gw in (gw_a, gw_b):
        wait_until(lambda gw=gw: "is back; resyncing" in gw.log())
    emulator.reset()
    emulator.add_rule(match={"credential": "at-a"}, times=1,
                      reply={"error": {"kind": "quota_exhausted", "retry_delay": "30s"}})
    for i in range(3):  # A's least recently used account gets the 429 on the first or the second request
        assert account_of(chat(clients[0], f"a{i}")) == "b"
        if "at-a" in credentials(emulator):
            break
    wait_until(lambda: redis_server_has_cooldown(redis_server))
    emulator.reset()
    assert [account_of(chat(clients[1], f"q{i}")) for i in range(3)] == ["b", "b", "b"]


def redis_server_has_cooldown(server) -> bool:
    import socket

    with socket.create_connection(("127.0.0.1", server.port), timeout=1) as s:
        s.sendall(b"EXISTS ag:cd:a\r\n")
        return s.recv(16).startswith(b":1")


def test_a_conversation_stays_on_one_account_whichever_instance_serves_it(pair, emulator):
    gw_a, gw_b = pair(ag_scheduling="sticky")
    chat(client_for(gw_a), "warm-up")  # A's least recently used account is now b; B's is still a
    history = [{"role": "user", "content": "plan a trip"}]
    served = []
    for turn, gw in enumerate((gw_b, gw_a, gw_b, gw_a)):
        raw = client_for(gw).chat.completions.with_raw_response.create(model=FLASH, messages=history)
        served.append(account_of(raw))
        history += [{"role": "assistant", "content": raw.parse().choices[0].message.content},
                    {"role": "user", "content": f"and then {turn}?"}]
    assert len(set(served)) == 1, served


def test_a_redis_that_hangs_costs_a_request_at_most_a_moment_and_fails_none(pair, redis_server):
    import socket
    import threading

    gw_a, _ = pair(ag_scheduling="sticky")
    client = client_for(gw_a)

    def hang(seconds: float) -> None:  # the server stops answering everyone for a while
        with socket.create_connection(("127.0.0.1", redis_server.port), timeout=10) as s:
            s.sendall(f"DEBUG SLEEP {seconds}\r\n".encode())
            s.recv(16)

    hanging = threading.Thread(target=hang, args=(3,))
    hanging.start()
    time.sleep(0.2)
    slowest = 0.0
    for i in range(8):
        started = time.monotonic()
        answer = chat(client, f"conversation {i}").parse().choices[0].message.content
        assert answer == f"echo: conversation {i}"
        slowest = max(slowest, time.monotonic() - started)
    hanging.join()
    assert slowest < 2.0  # each Redis call gives up after 0.3 s; three slow ones in a row: degraded mode
    wait_until(lambda: "(degraded)" in gw_a.log())
