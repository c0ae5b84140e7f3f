"""upstream/relay.py: what the relay takes as the upstream request (the e2e tests run the relay itself)."""

from __future__ import annotations

import orjson
import pytest

from antigravity_gw import errors
from antigravity_gw.upstream.dialects import CallContext
from antigravity_gw.upstream.relay import RelayJob


def job_with_plan(body: dict) -> RelayJob:
    job = RelayJob("flow-1", CallContext("req-1", ""))
    job.planned = (orjson.dumps(body), body)
    return job


def test_an_unchanged_body_is_the_hooks_own_request_not_a_second_parse():
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    job = job_with_plan(body)
    assert job.request_body(orjson.dumps(body)) is body


def test_an_edited_body_is_parsed_from_what_mitmproxy_sent():
    job = job_with_plan({"contents": []})
    edited = {"contents": [], "generationConfig": {"temperature": 0}}
    assert job.request_body(orjson.dumps(edited)) == edited
    assert RelayJob("f", CallContext("r", "")).request_body(b'{"contents":[]}') == {"contents": []}


@pytest.mark.parametrize(("raw", "words"), [(b"{not json", "not valid JSON"), (b"[1]", "JSON object")])
def test_an_edited_body_that_is_not_a_json_object_is_a_clear_400(raw, words):
    with pytest.raises(errors.InvalidRequest, match=words) as caught:
        job_with_plan({"contents": []}).request_body(raw)
    assert caught.value.status == 400


# ---- a job that comes as the client's request (an intercept filter is on) ----------------------------
class StoppingRunner:
    """Records what the relay asks the attempts to send, then fails like an upstream that is down."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def run(self, model, stream, body, ctx, on_failure):
        self.calls.append((model, stream, body))

        async def down():
            raise errors.UpstreamError("upstream down (test)")
        return down()


async def post_to_relay(job: RelayJob, path: str, body: bytes) -> tuple[int, dict, list[tuple]]:
    import aiohttp

    from antigravity_gw.upstream.relay import FLOW_HEADER, Relay

    runner = StoppingRunner()
    relay = Relay(lambda flow_id: job if flow_id == job.flow_id else None, lambda: runner,
                  keepalive_interval=5)
    await relay.start()
    try:
        async with aiohttp.ClientSession() as session, session.post(
                f"http://127.0.0.1:{relay.port}{path}", data=body,
                headers={FLOW_HEADER: job.flow_id, "content-type": "application/json"}) as resp:
            return resp.status, orjson.loads(await resp.read()), runner.calls
    finally:
        await relay.stop()


async def test_a_client_request_is_translated_by_the_job_and_that_translation_is_sent():
    seen = []

    async def translate(method, path, raw):
        seen.append((method, path, raw))
        return "gemini-2.5-pro", False, {"contents": [{"role": "user", "parts": [{"text": "edited"}]}]}

    job = RelayJob("flow-1", CallContext("req-1", ""), translate=translate)
    status, _, calls = await post_to_relay(job, "/v1/chat/completions?x=%20y", b'{"model": "m"}')
    assert seen == [("POST", "/v1/chat/completions?x=%20y", b'{"model": "m"}')]  # as it arrived, raw
    edited = {"contents": [{"role": "user", "parts": [{"text": "edited"}]}]}
    assert calls == [("gemini-2.5-pro", False, edited)]
    assert status == 502  # the stub upstream was down


async def test_a_client_request_the_job_cannot_translate_is_answered_with_its_error():
    async def translate(method, path, raw):
        raise errors.InvalidRequest("The request body is not valid JSON.")

    job = RelayJob("flow-1", CallContext("req-1", ""), translate=translate)
    status, body, calls = await post_to_relay(job, "/v1/chat/completions", b"{")
    assert status == 400 and calls == []
    assert body["error"]["message"] == "The request body is not valid JSON."
    assert body["error"]["type"] == "invalid_request_error"
    assert job.error is not None and job.error.status == 400
