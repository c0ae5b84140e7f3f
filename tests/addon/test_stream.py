"""The stream callable mitmproxy calls with each upstream chunk (and b"" at the end)."""

from __future__ import annotations

from typing import Any

import orjson

from antigravity_gw.errors import GatewayError
from antigravity_gw.mitm.stream import StreamAdapter
from antigravity_gw.sse import DONE, KEEPALIVE
from antigravity_gw.translate.endpoints import DataStreamFormat
from antigravity_gw.upstream.dialects import unwrap_any


class Echo:
    """A translator that passes each event's text on, and fails on the word "boom"."""

    def __init__(self) -> None:
        self.finished = False

    def feed(self, event: dict[str, Any]) -> list[Any]:
        if event.get("text") == "boom":
            raise KeyError("boom")
        return [{"text": event["text"]}] if "text" in event else []

    def finish(self) -> list[Any]:
        self.finished = True
        return [{"end": True}]

    def abort(self, err: GatewayError) -> list[Any]:
        return [err.to_openai()]


def adapter(translator: Echo | None = None) -> StreamAdapter:
    return StreamAdapter(translator or Echo(), DataStreamFormat(), unwrap_any, "flow-1")


def data(event: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(event) + b"\n\n"


def test_events_split_across_chunks_come_out_whole_and_nothing_yet_is_not_the_end():
    stream = adapter()
    raw = data({"response": {"text": "hi", "usageMetadata": {"totalTokenCount": 3}}})
    assert stream(raw[:7]) == []  # b"" here would end the client's stream (P2)
    assert stream(raw[7:]) == data({"text": "hi"})
    assert stream.usage == {"totalTokenCount": 3} and stream.first_chunk_at > 0
    assert stream(b"") == data({"end": True}) + DONE


def test_the_raw_upstream_stream_is_kept_only_when_asked():
    raw = data({"response": {"text": "hi"}})
    assert adapter().upstream is None  # mitmdump: nothing kept
    kept = StreamAdapter(Echo(), DataStreamFormat(), unwrap_any, "flow-1", keep_upstream=True)
    kept(raw[:5])
    kept(raw[5:])
    kept(b"")
    assert b"".join(kept.upstream) == raw


def test_the_error_a_stream_ended_with_is_the_translators():
    stream = adapter()
    assert stream.error is None
    stream._translator.error = GatewayError("cut")
    assert stream.error.message == "cut"


def test_a_keepalive_comment_alone_is_passed_on():
    assert adapter()(b": ping\n\n") == KEEPALIVE


def test_a_translation_failure_ends_the_stream_with_an_error_event(caplog):
    translator = Echo()
    stream = adapter(translator)
    out = stream(data({"text": "one"}) + data({"text": "boom"}))
    first, error = out.removesuffix(DONE).split(b"\n\n")[:2]
    assert first == b'data: {"text":"one"}'  # what was translated before the failure is still sent
    assert orjson.loads(error.removeprefix(b"data: "))["error"]["message"] == (
        "Internal gateway error while translating the stream: KeyError")
    assert out.endswith(DONE) and "stream translation failed for flow flow-1" in caplog.text
    assert stream(data({"text": "late"})) == [] and stream(b"") == b""  # closed: nothing more
    assert not translator.finished


def test_an_event_that_is_not_json_reaches_the_translator_as_googles_error():
    seen = []

    class Recorder(Echo):
        def feed(self, event: dict[str, Any]) -> list[Any]:
            seen.append(event)
            return []

    adapter(Recorder())(b"data: {not json\n\n")
    assert seen[0]["error"]["status"] == "UPSTREAM_PROTOCOL_ERROR"
