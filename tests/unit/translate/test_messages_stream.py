"""GeminiToMessagesStream: Anthropic's stream event sequence and the non-stream message it assembles.

Every recorded transcript (``tests/transcripts/*.gemini.sse``) is fed whole, one byte at a time and split
at seeded random points; the event lists must be identical, follow the Messages stream grammar (checked
here independently of the translator), validate against the anthropic SDK's own event models, and the
SDK's accumulator must build from them exactly the message the non-stream fold answers.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message, RawMessageStreamEvent
from pydantic import TypeAdapter

from antigravity_gw.errors import UpstreamRateLimited
from antigravity_gw.sse import SSEDecoder
from antigravity_gw.translate.messages_stream import GeminiToMessagesStream, gemini_to_message, stop_reason
from antigravity_gw.translate.signatures import decode_thinking_signature, decode_tool_call_id
from support.feeding import feed_sse, feedings

TRANSCRIPTS = Path(__file__).parents[2] / "transcripts"
EVENT = TypeAdapter(RawMessageStreamEvent)
SPLIT_SEED = 20261206


def ids() -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"t{next(counter)}"


def translator(family: str | None = "g2") -> GeminiToMessagesStream:
    return GeminiToMessagesStream(
        message_id="msg_test", model="claude-sonnet-4-5", id_factory=ids(), family=family
    )


def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + orjson.dumps({"response": e}) + b"\r\n\r\n" for e in events)


def part_event(
    *parts: dict[str, Any], finish: str | None = None, usage: dict[str, Any] | None = None
) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": list(parts)}}
    if finish:
        candidate["finishReason"] = finish
    event: dict[str, Any] = {"candidates": [candidate]}
    if usage:
        event["usageMetadata"] = usage
    return event


CLAUDE_SIGNATURE = "emu-claude#abc"
CLAUDE_TOOL_TURN = sse(
    part_event({"text": "Let me ", "thought": True}, usage={"promptTokenCount": 30}),
    part_event({"text": "list files.", "thought": True, "thoughtSignature": CLAUDE_SIGNATURE}),
    part_event({"text": "Running ls."}),
    part_event(
        {"functionCall": {"name": "bash", "args": {"command": "ls"}, "id": "toolu_1"}},
        finish="STOP",
        usage={
            "promptTokenCount": 30,
            "candidatesTokenCount": 9,
            "thoughtsTokenCount": 5,
            "cachedContentTokenCount": 10,
        },
    ),
)
STREAMS = {path.name: (path.read_bytes(), "g2") for path in sorted(TRANSCRIPTS.glob("*.gemini.sse"))}
STREAMS["claude_tool_turn"] = (CLAUDE_TOOL_TURN, "c")


def check_grammar(events: list[dict[str, Any]]) -> None:
    """message_start, ping, then blocks (start, deltas of the block's kind, stop) by rising index, then
    message_delta and message_stop; or an error event ending it early."""
    assert [e["type"] for e in events[:2]] == ["message_start", "ping"]
    open_index: int | None = None
    next_index = 0
    kinds: dict[int, str] = {}
    allowed = {
        "text": {"text_delta"},
        "thinking": {"thinking_delta", "signature_delta"},
        "tool_use": {"input_json_delta"},
    }
    for position, event in enumerate(events[2:], start=2):
        kind = event["type"]
        if kind == "error":
            assert position == len(events) - 1, "the error event ends the stream"
            return
        if kind == "content_block_start":
            assert open_index is None and event["index"] == next_index
            open_index, next_index = event["index"], next_index + 1
            kinds[open_index] = event["content_block"]["type"]
        elif kind == "content_block_delta":
            assert event["index"] == open_index
            assert event["delta"]["type"] in allowed[kinds[open_index]]
        elif kind == "content_block_stop":
            assert event["index"] == open_index
            open_index = None
        else:
            assert open_index is None
            assert [e["type"] for e in events[position:]] == ["message_delta", "message_stop"]
            return
    raise AssertionError("the stream did not end")


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_every_feeding_gives_the_same_valid_events_and_the_sdk_accumulates_the_non_stream_message(
    name: str,
) -> None:
    raw, family = STREAMS[name]
    results = {
        how: feed_sse(translator(family), raw, cuts) for how, cuts in feedings(raw, seed=SPLIT_SEED).items()
    }
    whole = results.pop("whole")
    for how, events in results.items():
        assert events == whole, how
    check_grammar(whole)
    if whole[-1]["type"] == "error":
        assert whole[-1]["error"]["type"] in ("api_error", "overloaded_error", "rate_limit_error")
        return
    snapshot: Message | None = None
    for event in whole:
        if event["type"] == "ping":  # the SDK skips pings, as Anthropic's stream has them
            continue
        snapshot = accumulate_event(event=EVENT.validate_python(event), current_snapshot=snapshot)
    assert snapshot is not None
    folded = translator(family)
    for event in _events(raw):
        folded.feed(event)
    folded.finish()
    assert snapshot.model_dump(mode="json", exclude_none=True) == Message.model_validate(
        folded.message()
    ).model_dump(mode="json", exclude_none=True)


def _events(raw: bytes) -> list[dict[str, Any]]:
    decoder = SSEDecoder()
    decoded = [*decoder.feed(raw), *decoder.finish()]
    return [(data := orjson.loads(e.data)).get("response", data) for e in decoded if e.data]


def test_claude_thinking_block_carries_its_signature_marked_claude_and_the_tool_use_follows() -> None:
    events = feed_sse(translator("c"), CLAUDE_TOOL_TURN, [])
    starts = [e["content_block"]["type"] for e in events if e["type"] == "content_block_start"]
    assert starts == ["thinking", "text", "tool_use"]
    signature = next(
        e["delta"]["signature"]
        for e in events
        if e["delta" if "delta" in e else "type"]
        and e["type"] == "content_block_delta"
        and e["delta"]["type"] == "signature_delta"
    )
    ref = decode_thinking_signature(signature)
    assert (ref.signature, ref.family) == (CLAUDE_SIGNATURE, "c")
    json_delta = next(
        e["delta"]
        for e in events
        if e["type"] == "content_block_delta" and e["delta"]["type"] == "input_json_delta"
    )
    assert orjson.loads(json_delta["partial_json"]) == {"command": "ls"}
    end = events[-2]
    assert end["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert end["usage"] == {
        "input_tokens": 20,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 10,
        "output_tokens": 14,
    }


def test_a_gemini_3_call_signature_travels_in_the_tool_use_id() -> None:
    raw = sse(
        part_event({"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "c2ln"}, finish="STOP")
    )
    message = gemini_to_message(_events(raw)[0], translator("g3"))
    (block,) = message["content"]
    ref = decode_tool_call_id(block["id"])
    assert (block["type"], ref.signature, ref.family) == ("tool_use", "c2ln", "g3")
    assert message["stop_reason"] == "tool_use"


def test_a_signature_on_the_text_after_a_thought_signs_the_thinking_block() -> None:
    raw = sse(
        part_event({"text": "hmm", "thought": True}),
        part_event({"text": "answer", "thoughtSignature": "c2ln"}, finish="STOP"),
    )
    events = feed_sse(translator("c"), raw, [])
    thinking = next(e for e in events if e["type"] == "content_block_start")
    assert thinking["content_block"]["type"] == "thinking"
    deltas = [e["delta"]["type"] for e in events if e["type"] == "content_block_delta"]
    assert deltas == ["thinking_delta", "signature_delta", "text_delta"]


@pytest.mark.parametrize(
    ("finish", "tools", "expected"),
    [
        ("STOP", False, "end_turn"),
        ("MAX_TOKENS", False, "max_tokens"),
        ("SAFETY", True, "refusal"),
        ("STOP", True, "tool_use"),
        ("MAX_TOKENS", True, "max_tokens"),
        ("OTHER", False, "end_turn"),
        ("MALFORMED_FUNCTION_CALL", False, "end_turn"),
    ],
)
def test_stop_reason_mapping(finish: str, tools: bool, expected: str) -> None:
    assert stop_reason(finish, has_tool_use=tools) == expected


def test_a_stream_without_finish_reason_ends_with_an_anthropic_error_event() -> None:
    raw = sse(part_event({"text": "cut"}))
    events = feed_sse(translator(), raw, [])
    assert events[-1]["type"] == "error"
    assert events[-1]["error"]["type"] == "api_error"
    assert "finishReason" in events[-1]["error"]["message"]


def test_abort_is_one_error_event_and_then_nothing() -> None:
    t = translator()
    t.feed(part_event({"text": "hi"}))
    (event,) = t.abort(UpstreamRateLimited("slow down"))
    assert event["type"] == "error" and event["error"]["type"] == "rate_limit_error"
    assert t.finish() == [] and t.feed(part_event({"text": "more"})) == []


def test_a_blocked_prompt_is_a_refusal_text() -> None:
    message = gemini_to_message({"promptFeedback": {"blockReason": "SAFETY"}}, translator())
    assert message["stop_reason"] == "refusal"
    assert "blockReason: SAFETY" in message["content"][0]["text"]


def test_non_stream_malformed_answer_raises_the_upstream_error() -> None:
    with pytest.raises(Exception, match="malformed"):
        gemini_to_message({"candidates": "nope"}, translator())
