"""GeminiToResponsesStream: the Responses event state machine and its non-stream fold.

Every recorded transcript (``tests/transcripts/*.gemini.sse``) is fed three ways (whole, one byte at a
time, seeded random splits) through ``SSEDecoder``; the event lists must be identical, keep the stream
rules (checked here independently of the translator's own tables), validate strictly against the
openai SDK's event and ``Response`` models, and be accepted by the SDK's own strict accumulator
(``responses.stream()``'s ``ResponseStreamState``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from antigravity_gw.errors import GatewayError, UpstreamRateLimited
from antigravity_gw.openai_api.responses_models import parse_responses_request
from antigravity_gw.openai_api.responses_wire import response_echo
from antigravity_gw.sse import SSEDecoder
from antigravity_gw.translate.responses_stream import (
    GeminiToResponsesStream,
    ItemState,
    Step,
    StreamStateError,
    _Item,
    gemini_to_response,
)
from antigravity_gw.translate.responses_tools import DeclaredTool, ToolNames
from antigravity_gw.translate.signatures import ToolCallRef, encode_compaction
from support.feeding import feed_sse, feedings
from support.openai_schema import check_event

TRANSCRIPTS = Path(__file__).parents[2] / "transcripts"
RESPONSE_ID = "resp_test"
CREATED = 1700000000
ECHO = response_echo(parse_responses_request(b'{"model": "gemini-2.5-flash", "input": "x"}'),
                     "gemini-2.5-flash")
CODEX_NAMES = ToolNames({
    "apply_patch": DeclaredTool("custom", "apply_patch"),
    "multi_agent_v1__wait_agent": DeclaredTool("function", "wait_agent", "multi_agent_v1"),
})
EVENT = TypeAdapter(ResponseStreamEvent)
SPLIT_SEED = 20261125


def ids() -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"t{next(counter)}"


def translator(**kwargs: Any) -> GeminiToResponsesStream:
    kwargs.setdefault("names", CODEX_NAMES)
    return GeminiToResponsesStream(response_id=RESPONSE_ID, created_at=CREATED, echo=ECHO, id_factory=ids(),
                                   **kwargs)


def run_bytes(raw: bytes, cuts: list[int], **kwargs: Any) -> list[dict[str, Any]]:
    return feed_sse(translator(**kwargs), raw, cuts)


def run(events: list[dict[str, Any]], **kwargs: Any) -> list[dict[str, Any]]:
    tr = translator(**kwargs)
    return [e for event in events for e in tr.feed(event)] + tr.finish()


# --- the rules, checked independently of the translator's tables -----------------------------------------

ITEM_ORDER = {  # per item kind: the event types of its lifecycle after output_item.added, in order
    "message": ["content_part.added", "output_text.delta*", "output_text.done", "content_part.done"],
    "refusal": ["content_part.added", "refusal.delta*", "refusal.done", "content_part.done"],
    "reasoning": ["reasoning_summary_part.added", "reasoning_summary_text.delta*",
                  "reasoning_summary_text.done", "reasoning_summary_part.done"],
    "function_call": ["function_call_arguments.delta*", "function_call_arguments.done"],
    "custom_tool_call": ["custom_tool_call_input.delta*", "custom_tool_call_input.done"],
    "compaction": [],  # added and done, nothing between
}


def check_rules(events: list[dict[str, Any]]) -> None:
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events[:2]] == ["response.created", "response.in_progress"]
    terminal = ("response.completed", "response.incomplete", "response.failed")
    assert [e["type"] in terminal for e in events] == [False] * (len(events) - 1) + [True]
    assert {e["response"]["id"] for e in events if "response" in e} == {RESPONSE_ID}
    per_item: dict[int, list[str]] = {}
    kinds: dict[int, str] = {}
    for e in events[2:-1]:
        index = e["output_index"]
        if e["type"] == "response.output_item.added":
            assert index == len(kinds), "items are added in output_index order"
            assert all(seq[-1] == "response.output_item.done" for seq in per_item.values()), "one open item"
            item = e["item"]
            kinds[index] = "refusal" if item["type"] == "message" and _is_refusal(events,
                                                                                  index) else item["type"]
        per_item.setdefault(index, []).append(e["type"])
    for index, seq in per_item.items():
        assert seq[0] == "response.output_item.added" and seq[-1] == "response.output_item.done", seq
        inner = [t.removeprefix("response.") for t in seq[1:-1]]
        expected = ITEM_ORDER[kinds[index]]
        if kinds[index] in ("reasoning", "compaction") and not inner:
            continue  # a signature's carrier before a call (no summary, as OpenAI's can be), or compaction
        assert [t for t in inner if not t.endswith(".delta")] == [t for t in expected if not t.endswith("*")]
        first_delta = expected.index(next(t for t in expected if t.endswith("*")))
        assert all(not t.endswith(".delta") or i >= first_delta for i, t in enumerate(inner))


def _is_refusal(events: list[dict[str, Any]], index: int) -> bool:
    return any(e["type"].startswith("response.refusal") and e["output_index"] == index for e in events)


def check_failed_rules(events: list[dict[str, Any]]) -> None:
    """A failed stream may leave its open item without done events; the rest of the rules hold."""
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events[:2]] == ["response.created", "response.in_progress"]
    assert events[-1]["type"] == "response.failed"
    assert {e["response"]["id"] for e in events if "response" in e} == {RESPONSE_ID}


def check_with_sdk(events: list[dict[str, Any]]) -> Any:
    """Strict validation of every event, then the SDK's own accumulator; the final ``Response``."""
    state = ResponseStreamState(input_tools=openai.omit, text_format=openai.omit)
    for event in events:
        state.handle_event(EVENT.validate_python(event))
    Response.model_validate(events[-1]["response"])
    return state._completed_response


# --- whole values --------------------------------------------------------------------------------------


def ev(seq: int, type_: str, **fields: Any) -> dict[str, Any]:
    return {"type": f"response.{type_}", **fields, "sequence_number": seq}


def response(status: str, output: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    """No ``prompt_cache_key``, ``user`` or (without one) ``usage``: OpenAI's schema allows no null there."""
    usage = {"usage": fields["usage"]} if fields.get("usage") is not None else {}
    return {"id": RESPONSE_ID, "object": "response", "created_at": CREATED, "status": status,
            "background": False,
            "error": fields.get("error"), "incomplete_details": fields.get("incomplete_details"),
            "instructions": None, "max_output_tokens": None, "model": "gemini-2.5-flash", "output": output,
            "parallel_tool_calls": True, "previous_response_id": None,
            "reasoning": {"effort": None, "summary": None}, "store": True, "temperature": None,
            "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [], "top_p": None,
            "truncation": "disabled", **usage, "metadata": {}}


def usage(inp: int, out: int, *, cached: int = 0, reasoning: int = 0) -> dict[str, Any]:
    return {"input_tokens": inp, "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
            "output_tokens": out, "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": inp + out}


def text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


def message(item_id: str, status: str, texts: list[str]) -> dict[str, Any]:
    return {"id": item_id, "type": "message", "status": status, "content": [text_part(t) for t in texts],
            "role": "assistant"}


def reasoning(item_id: str, texts: list[str], **extra: Any) -> dict[str, Any]:
    return {"id": item_id, "type": "reasoning", "summary": [{"type": "summary_text",
                                                             "text": t} for t in texts],
            **extra}


THOUGHT = "Vérifions la question…"
TEXT_THOUGHTS_EVENTS = [
    ev(0, "created", response=response("in_progress", [])),
    ev(1, "in_progress", response=response("in_progress", [])),
    ev(2, "output_item.added", output_index=0, item=reasoning("rs_t1", [])),
    ev(3, "reasoning_summary_part.added", item_id="rs_t1", output_index=0, summary_index=0,
       part={"type": "summary_text", "text": ""}),
    ev(4, "reasoning_summary_text.delta", item_id="rs_t1", output_index=0, summary_index=0, delta=THOUGHT),
    ev(5, "reasoning_summary_text.done", item_id="rs_t1", output_index=0, summary_index=0, text=THOUGHT),
    ev(6, "reasoning_summary_part.done", item_id="rs_t1", output_index=0, summary_index=0,
       part={"type": "summary_text", "text": THOUGHT}),
    ev(7, "output_item.done", output_index=0, item=reasoning("rs_t1", [THOUGHT])),
    ev(8, "output_item.added", output_index=1, item=message("msg_t2", "in_progress", [])),
    ev(9, "content_part.added", item_id="msg_t2", output_index=1, content_index=0, part=text_part("")),
    ev(10, "output_text.delta", item_id="msg_t2", output_index=1, content_index=0, delta="Bonjour, ",
       logprobs=[]),
    ev(11, "output_text.delta", item_id="msg_t2", output_index=1, content_index=0, delta="le monde 🌍",
       logprobs=[]),
    ev(12, "output_text.done", item_id="msg_t2", output_index=1, content_index=0, text="Bonjour, le monde 🌍",
       logprobs=[]),
    ev(13, "content_part.done", item_id="msg_t2", output_index=1, content_index=0,
       part=text_part("Bonjour, le monde 🌍")),
    ev(14, "output_item.done", output_index=1, item=message("msg_t2", "completed", ["Bonjour, le monde 🌍"])),
    ev(15, "completed", response=response(
        "completed",
        [reasoning("rs_t1", [THOUGHT]), message("msg_t2", "completed", ["Bonjour, le monde 🌍"])],
        usage=usage(12, 26, cached=4, reasoning=20))),
]


def test_text_and_thoughts_give_exactly_these_events_for_every_feeding() -> None:
    raw = (TRANSCRIPTS / "chat_text_thoughts.gemini.sse").read_bytes()
    for name, cuts in feedings(raw, seed=SPLIT_SEED).items():
        assert run_bytes(raw, cuts) == TEXT_THOUGHTS_EVENTS, name


TRANSCRIPT_NAMES = sorted(p.name for p in TRANSCRIPTS.glob("*.gemini.sse"))


@pytest.mark.parametrize("name", TRANSCRIPT_NAMES)
def test_every_transcript_keeps_the_rules_for_every_feeding(name: str) -> None:
    raw = (TRANSCRIPTS / name).read_bytes()
    results = {feeding: run_bytes(raw, cuts, include_encrypted=True) for feeding,
               cuts in feedings(raw, seed=SPLIT_SEED).items()}
    whole = results.pop("whole")
    for feeding, events in results.items():
        assert events == whole, feeding
    for event in whole:  # OpenAI's published schema for each event (tests/schemas/)
        check_event(event)
    if whole[-1]["type"] == "response.failed":
        check_failed_rules(whole)
        # the SDK accepts every event, and has no final response: get_final_response() raises
        assert check_with_sdk(whole) is None
    else:
        check_rules(whole)
        final = check_with_sdk(whole)
        assert final is None or final.id == RESPONSE_ID


def test_codex_turn_maps_custom_and_namespaced_calls_and_signs_the_reasoning() -> None:
    raw = (TRANSCRIPTS / "responses_codex_turn.gemini.sse").read_bytes()
    events = run_bytes(raw, [], include_encrypted=True)
    patch = "*** Begin Patch\n*** Add File: a.txt\n+é\n*** End Patch\n"
    assert events[-1] == ev(len(events) - 1, "completed", response=response("completed", [
        reasoning("rs_t1", ["**Planning**\n\nI will patch the file — ✓."],
                  encrypted_content="gemini-thought-signature:VGV4dFNpZw=="),
        message("msg_t2", "completed", ["Patching now."]),
        # the call's own signature: a reasoning item carries it (the call_id stays short)
        reasoning("rs_t3", [], encrypted_content="gemini-thought-signature:U2lnRm9yUGF0Y2g="),
        {"id": "ctc_t4", "type": "custom_tool_call", "status": "completed", "call_id": "call_t5",
         "name": "apply_patch", "input": patch},
        {"id": "fc_t6", "type": "function_call", "status": "completed", "arguments": '{"targets":["a1"]}',
         "call_id": "call_t7", "name": "wait_agent", "namespace": "multi_agent_v1"},
    ], usage=usage(900, 65, cached=512, reasoning=25)))
    custom = [e for e in events if e["type"].startswith("response.custom_tool_call_input")]
    assert custom == [
        ev(custom[0]["sequence_number"], "custom_tool_call_input.delta", item_id="ctc_t4", output_index=3,
           delta=patch),
        ev(custom[1]["sequence_number"], "custom_tool_call_input.done", item_id="ctc_t4", output_index=3,
           input=patch),
    ]


def test_encrypted_content_is_shown_only_when_included_but_always_stored() -> None:
    raw = (TRANSCRIPTS / "responses_codex_turn.gemini.sse").read_bytes()
    tr = translator()
    decoder = SSEDecoder()
    events = [e for sse in decoder.feed(raw) + decoder.finish() if sse.data
              for e in tr.feed(orjson.loads(sse.data)["response"])] + tr.finish()
    assert all("encrypted_content" not in orjson.dumps(e).decode() for e in events)
    assert tr.stored_output()[0]["encrypted_content"] == "gemini-thought-signature:VGV4dFNpZw=="


def test_a_signature_on_the_last_thought_signs_the_reasoning_and_the_next_call() -> None:
    events = run([
        {"candidates": [{"content": {"parts": [{"text": "Plan.", "thought": True,
                                                "thoughtSignature": "U0lH"}]}}]},
        {"candidates": [{"content": {"parts": [{"functionCall": {"name": "f", "args": {"a": 1}}}]},
                         "finishReason": "STOP"}]},
    ], include_encrypted=True)
    output = events[-1]["response"]["output"]
    assert output == [  # the reasoning item carries the signature; the call_id stays short
        reasoning("rs_t1", ["Plan."], encrypted_content="gemini-thought-signature:U0lH"),
        {"id": "fc_t2", "type": "function_call", "status": "completed", "arguments": '{"a":1}',
         "call_id": "call_t3", "name": "f"},
    ]


def test_call_ids_fit_openais_64_characters_and_the_refs_keep_the_rest() -> None:
    tr = translator(include_encrypted=False)
    long_id = "toolu_" + "x" * 40
    tr.feed({"candidates": [{"content": {"parts": [
        {"functionCall": {"name": "f", "args": {}, "id": long_id}, "thoughtSignature": "U0lH"},
        {"functionCall": {"name": "f", "args": {}, "id": "ab"}}]}, "finishReason": "STOP"}]})
    events = tr.finish()
    calls = [i for i in events[-1]["response"]["output"] if i["type"] == "function_call"]
    assert [c["call_id"] for c in calls] == ["call_t2", "call_t4_id" + b"ab".hex()]
    assert all(len(c["call_id"]) <= 64 for c in calls)
    assert [i["type"] for i in events[-1]["response"]["output"]] == ["function_call"] * 2  # not asked for
    assert tr.call_refs == {"call_t2": ToolCallRef(gemini_id=long_id, signature="U0lH"),
                            "call_t4_id6162": ToolCallRef(gemini_id="ab", signature=None)}


def test_max_tokens_is_incomplete_and_marks_the_cut_item() -> None:
    events = run([{"candidates": [{"content": {"parts": [{"text": "par"}]}, "finishReason": "MAX_TOKENS"}]}])
    check_rules(events)
    final = check_with_sdk(events)
    assert final is None  # the SDK keeps only completed responses
    assert events[-1] == ev(len(events) - 1, "incomplete", response=response(
        "incomplete", [message("msg_t1", "incomplete", ["par"])], usage=usage(0, 0),
        incomplete_details={"reason": "max_output_tokens"}))


def test_a_blocked_prompt_is_a_refusal_and_incomplete_for_content_filter() -> None:
    raw = (TRANSCRIPTS / "chat_prompt_blocked.gemini.sse").read_bytes()
    events = run_bytes(raw, [])
    refusal = "The prompt was blocked by Google (blockReason: PROHIBITED_CONTENT)."
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.content_part.added", "response.refusal.delta", "response.refusal.done",
        "response.content_part.done",
        "response.output_item.done", "response.incomplete"]
    assert events[-1]["response"]["output"] == [{
        "id": "msg_t1", "type": "message", "status": "incomplete",
        "content": [{"type": "refusal", "refusal": refusal}], "role": "assistant"}]
    assert events[-1]["response"]["incomplete_details"] == {"reason": "content_filter"}


def test_an_in_band_quota_error_ends_with_response_failed() -> None:
    raw = (TRANSCRIPTS / "chat_error_midstream.gemini.sse").read_bytes()
    events = run_bytes(raw, [])
    assert events[-1] == ev(len(events) - 1, "failed", response=response(
        "failed", [message("msg_t1", "incomplete", ["Partial"])], error={
            "code": "rate_limit_exceeded",
            "message": "Google returned an error mid-stream (429 RESOURCE_EXHAUSTED): Resource has been "
                       "exhausted (e.g. check quota)."}))
    assert "response.output_item.done" not in [e["type"] for e in events]


def test_a_truncated_stream_ends_with_response_failed() -> None:
    events = run([{"candidates": [{"content": {"parts": [{"text": "Once"}]}}]}])
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"] == {
        "code": "server_error",
        "message": "Gemini's response ended without a finish reason: the reply is truncated."}


def test_an_empty_stream_still_gets_created_and_failed() -> None:
    tr = translator()
    events = tr.finish()
    assert [e["type"] for e in events] == ["response.created", "response.in_progress", "response.failed"]
    assert events[-1]["response"]["error"]["message"] == (
        "Gemini's response ended without any content: the reply is truncated.")
    assert tr.finish() == [] and tr.feed({"candidates": []}) == []


@pytest.mark.parametrize("event", [
    {"candidates": {"not": "a list"}},
    {"candidates": [{"content": {"parts": [{"text": 5}]}}]},
    {"candidates": [{"content": {"parts": [{"functionCall": {"args": {}}}]}}]},
    {"usageMetadata": {"promptTokenCount": -1}},
    [],
])
def test_malformed_events_end_with_response_failed(event: Any) -> None:
    tr = translator()
    events = tr.feed(event)
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"]["message"].startswith("Gemini sent a malformed stream event: ")
    assert tr.error is not None and tr.error.status == 502


def test_a_malformed_function_call_finish_fails_so_clients_retry() -> None:
    events = run([{"candidates": [{"content": {"parts": []}, "finishReason": "MALFORMED_FUNCTION_CALL"}]}])
    assert events[-1]["type"] == "response.failed"
    assert "MALFORMED_FUNCTION_CALL" in events[-1]["response"]["error"]["message"]


def test_abort_ends_the_response_whatever_its_state() -> None:
    fresh = translator()
    assert [e["type"] for e in fresh.abort(GatewayError("boom"))] == [
        "response.created", "response.in_progress", "response.failed"]
    midway = translator()
    midway.feed({"candidates": [{"content": {"parts": [{"text": "Hi"}]}}]})
    events = midway.abort(UpstreamRateLimited("slow down"))
    assert [e["type"] for e in events] == ["response.failed"]
    assert events[0]["response"]["error"] == {"code": "rate_limit_exceeded", "message": "slow down"}
    done = translator()
    run_events = [*done.feed({"candidates": [{"content": {"parts": [{"text": "x"}]},
                                              "finishReason": "STOP"}]}),
                  *done.finish()]
    assert run_events[-1]["type"] == "response.completed"
    assert done.abort(GatewayError("late")) == []


@pytest.mark.parametrize(("state", "step"), [
    (ItemState.NEW, Step.DELTA),
    (ItemState.ADDED, Step.DELTA),
    (ItemState.STREAMING, Step.DONE),
    (ItemState.DONE, Step.ADD),
])
def test_a_step_the_tables_forbid_is_a_gateway_bug(state: ItemState, step: Step) -> None:
    tr = translator()
    with pytest.raises(StreamStateError, match="is not allowed"):
        tr._step(_Item("text", 0, "msg_x", state=state), step, [])


def test_non_stream_is_the_fold_of_the_stream() -> None:
    raw = (TRANSCRIPTS / "responses_codex_turn.gemini.sse").read_bytes()
    decoder = SSEDecoder()
    parsed = [orjson.loads(e.data)["response"] for e in decoder.feed(raw) + decoder.finish() if e.data]
    merged_parts = [p for e in parsed for c in e.get("candidates", []) for p in c["content"]["parts"]]
    unary = {"candidates": [{"content": {"role": "model", "parts": merged_parts}, "finishReason": "STOP"}],
             "usageMetadata": parsed[-1]["usageMetadata"]}
    stream_final = run_bytes(raw, [])[-1]["response"]
    assert gemini_to_response(unary, translator()) == stream_final


def test_non_stream_raises_what_the_stream_ends_with() -> None:
    with pytest.raises(GatewayError, match="429 RESOURCE_EXHAUSTED"):
        gemini_to_response({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "quota"}},
                           translator())


def test_compaction_gathers_the_text_into_exactly_one_compaction_item() -> None:
    events = run([
        {"candidates": [{"content": {"parts": [{"text": "Thinking.", "thought": True},
                                               {"text": "The user "}]}}]},
        {"candidates": [{"content": {"parts": [{"text": "said hi."}]}, "finishReason": "STOP"}]},
    ], compact=True)
    check_rules(events)
    assert [e["type"] for e in events] == ["response.created", "response.in_progress",
                                           "response.output_item.added", "response.output_item.done",
                                           "response.completed"]
    [item] = events[-1]["response"]["output"]
    assert item == {"id": "cmp_t1", "type": "compaction",
                    "encrypted_content": encode_compaction("The user said hi.")}
    for event in events:
        check_event(event)
