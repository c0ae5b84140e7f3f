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
