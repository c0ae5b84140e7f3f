"""Several gateways, one pool: two real mitmdump instances sharing a real redis-server (``ag_state_url``).

Each instance has its own copy of the accounts directory, as instances on different hosts would.
"""

from __future__ import annotations

import time

import openai
import pytest

pytestmark = pytest.mark.e2e

FLASH = "gemini-2.5-flash"


def client_for(gw, timeout: float = 30) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-test", max_retries=0, timeout=timeout)


def chat(client, text: str, model: str = FLASH, **kw):
    return client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": text}], **kw)


def account_of(raw) -> str:
    return raw.headers["x-account-email"].split("@")[0]


def credentials(emulator) -> list[str]:
    return [r["credential"] for r in emulator.requests(kind="api")]


def wait_until(predicate, timeout: float = 8.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(interval)
    raise AssertionError(f"not true within {timeout}s")


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
