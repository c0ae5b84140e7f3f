"""Stored responses shared through a real redis-server: written in the background, found on a miss."""

from __future__ import annotations

import asyncio

from antigravity_gw.translate.responses_store import ResponseStore, StoredResponse, output_as_input
from antigravity_gw.translate.signatures import ToolCallRef
from antigravity_gw.upstream.background import BackgroundTasks
from antigravity_gw.upstream.redis_link import RedisLink
from antigravity_gw.upstream.shared_responses import SharedResponses, decode, encode

ITEMS = output_as_input([
    {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "hi"}]},
    {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"},
])


def test_a_stored_response_survives_the_trip_through_redis_unchanged():
    stored = StoredResponse("gemini-2.5-flash", ITEMS)
    assert decode(encode(stored)) == stored
    whole = StoredResponse(  # what GET /v1/responses/{id} shows and each call's signature come along too
        "claude-opus-4-6-thinking", ITEMS, id="resp_2", created_at=1_700_000_000,
        previous_response_id="resp_1",
        response={"id": "resp_2", "object": "response"}, input=({"id": "msg_1", "type": "message"},),
        output=({"id": "fc_1", "type": "function_call"},),
        calls={"call_1": ToolCallRef("g1", "U0lH", family="c", thought="because")})
    assert decode(encode(whole)) == whole
    assert decode(b"not json") is None and decode(b'{"model": "m"}') is None


async def test_a_response_put_on_one_instance_is_found_by_the_other(redis_server):
    links = [RedisLink(redis_server.url) for _ in range(2)]
    tasks = BackgroundTasks("test")
    stores = [ResponseStore(), ResponseStore()]
    for link, store in zip(links, stores, strict=True):
        await link.start()
        SharedResponses(link, tasks).attach(store)
    try:
        stores[0].put("resp_1", StoredResponse("m", ITEMS))
        assert stores[1].get("resp_1") is None
        # the write may still be on its way: the lookup asks again
        assert await SharedResponses(links[1], tasks).fetch_into(stores[1], "resp_1")
        assert stores[1].get("resp_1") == StoredResponse("m", ITEMS)
        await tasks.wait()
        ttl = stores[0].ttl
        assert ttl - 10 < await links[0].client.ttl("ag:resp:resp_1") <= ttl  # the store's own TTL
        assert not await SharedResponses(links[1], tasks).fetch_into(stores[1], "resp_unknown")
    finally:
        await asyncio.gather(*(link.stop() for link in links))
