"""GeminiToChatStream and its non-stream fold.

Every recorded transcript (``tests/transcripts/*.gemini.sse``, Cloud Code framing) is fed three ways (the
whole byte stream at once, one byte at a time, and seeded random splits) through ``SSEDecoder``, and the
chunk lists must be identical and equal to the whole expected value.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from antigravity_gw.errors import UpstreamError, UpstreamProtocolError
from antigravity_gw.sse import SSEDecoder, encode_data
from antigravity_gw.translate.chat_stream import (
    GeminiToChatStream,
    gemini_events_to_chat_completion,
    gemini_to_chat_completion,
)
from antigravity_gw.translate.signatures import encode_tool_call_id
from support.feeding import feed_sse, feedings

TRANSCRIPTS = Path(__file__).parents[2] / "transcripts"
HEADER = {"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-4o"}
TOOL_SIG = "BwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs8PT4/QEFCQw=="


def ids() -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"t{next(counter)}"


def translator(*, include_usage: bool = True, n: int = 1) -> GeminiToChatStream:
    return GeminiToChatStream(
        completion_id=HEADER["id"],
        created=HEADER["created"],
        model=HEADER["model"],
        include_usage=include_usage,
        id_factory=ids(),
        n=n,
    )


def ck(
    delta: dict[str, Any], finish: str | None = None, *, index: int = 0, usage: bool = True
) -> dict[str, Any]:
    out = {**HEADER, "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}]}
    if usage:
        out["usage"] = None
    return out


def role(index: int = 0, *, usage: bool = True) -> dict[str, Any]:
    return ck({"role": "assistant", "content": ""}, index=index, usage=usage)


def usage_ck(prompt: int, completion: int, *, cached: int = 0, reasoning: int = 0) -> dict[str, Any]:
    return {
        **HEADER,
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": reasoning},
        },
    }


def call(index: int, call_id: str, name: str, arguments: str, signature: str | None = None) -> dict[str, Any]:
    """A tool call delta; a signed call also names its signature where Google's OpenAI API does."""
    tool_call: dict[str, Any] = {
        "index": index,
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }
    if signature:
        tool_call["extra_content"] = {"google": {"thought_signature": signature}}
    return {"tool_calls": [tool_call]}


def upstream_error(message: str, code: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "upstream_error", "param": None, "code": code}}


def run_bytes(raw: bytes, cuts: list[int], **kwargs: Any) -> list[dict[str, Any]]:
    return feed_sse(translator(**kwargs), raw, cuts)


def events_of(name: str) -> list[dict[str, Any]]:
    raw = (TRANSCRIPTS / name).read_bytes()
    decoder = SSEDecoder()
    parsed = [orjson.loads(e.data) for e in decoder.feed(raw) + decoder.finish() if e.data]
    return [p.get("response", p) for p in parsed]


EXPECTED: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {
    "chat_text_thoughts.gemini.sse": (
        {},
        [
            role(),
            ck({"reasoning_content": "Vérifions la question…"}),
            ck({"content": "Bonjour, "}),
            ck({"content": "le monde 🌍"}),
            ck({}, "stop"),
            usage_ck(12, 26, cached=4, reasoning=20),
        ],
    ),
    "chat_tool_calls.gemini.sse": (
        {},
        [
            role(),
            ck({"reasoning_content": "I should look at the file first."}),
            ck(call(0, encode_tool_call_id("t1", signature=TOOL_SIG), "read_file", '{"path":"a.txt"}',
                    TOOL_SIG)),
            ck(call(1, "call_t2", "list_dir", "{}")),
            ck({}, "tool_calls"),
            usage_ck(120, 42, reasoning=12),
        ],
    ),
    "chat_signature_on_text_part.gemini.sse": (
        {},
        [
            role(),
            ck(
                call(
                    0,
                    "call_t1_id" + b"toolu_01A".hex() + "_sigbRW1wdHlQYXJ0U2ln",
                    "get_weather",
                    '{"city":"Zürich"}',
                    "RW1wdHlQYXJ0U2ln",
                )
            ),
            ck({}, "tool_calls"),
            usage_ck(40, 9),
        ],
    ),
    "chat_two_candidates.gemini.sse": (
        {"n": 2},
        [
            role(0),
            ck({"content": "Red"}, index=0),
            role(1),
            ck({"content": "Blue"}, index=1),
            ck({"content": " is warm."}, index=0),
            ck({}, "stop", index=0),
            ck({"content": " is"}, index=1),
            ck({}, "length", index=1),
            usage_ck(5, 7),
        ],
    ),
    "chat_prompt_blocked.gemini.sse": (
        {},
        [
            role(),
            ck({"refusal": "The prompt was blocked by Google (blockReason: PROHIBITED_CONTENT)."}),
            ck({}, "content_filter"),
            usage_ck(7, 0),
        ],
    ),
    "chat_error_midstream.gemini.sse": (
        {},
        [
            role(),
            ck({"content": "Partial"}),
            upstream_error(
                "Google returned an error mid-stream (429 RESOURCE_EXHAUSTED): Resource has been "
                "exhausted (e.g. check quota).",
                "resource_exhausted",
            ),
        ],
    ),
    "chat_truncated.gemini.sse": (
        {},
        [
            role(),
            ck({"content": "Once upon"}),
            ck({"content": " a time"}),
            upstream_error(
                "Gemini's response ended without a finish reason for choice 0: the reply is truncated.",
                "upstream_truncated",
            ),
        ],
    ),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_transcript_translates_identically_however_it_is_split(name: str) -> None:
    kwargs, expected = EXPECTED[name]
    raw = (TRANSCRIPTS / name).read_bytes()
    for feeding, cuts in feedings(raw, seed=20260821).items():
        got = run_bytes(raw, cuts, **kwargs)
        assert got == expected, f"{name}, fed {feeding}"
        assert b"".join(map(encode_data, got)) == b"".join(map(encode_data, expected))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_feeding_parsed_events_gives_the_same_chunks(name: str) -> None:
    kwargs, expected = EXPECTED[name]
    tr = translator(**kwargs)
    got = [c for e in events_of(name) for c in tr.feed(e)] + tr.finish()
    assert got == expected


@pytest.mark.parametrize("name", sorted(n for n in EXPECTED if "error" not in n and "truncated" not in n))
def test_chunks_are_valid_for_the_openai_sdk_and_accumulate_to_our_fold(name: str) -> None:
    kwargs, expected = EXPECTED[name]
    state = ChatCompletionStreamState()
    for item in expected:
        state.handle_chunk(ChatCompletionChunk.model_validate(item))
    sdk = (
        state.current_completion_snapshot
    )  # get_final_completion() raises on length/content_filter by design
    ours = gemini_events_to_chat_completion(
        events_of(name),
        completion_id=HEADER["id"],
        created=HEADER["created"],
        model=HEADER["model"],
        id_factory=ids(),
        **kwargs,
    )
    ChatCompletion.model_validate(ours)
    assert [c.finish_reason for c in sdk.choices] == [c["finish_reason"] for c in ours["choices"]]
    for sdk_choice, our_choice in zip(sdk.choices, ours["choices"], strict=True):
        assert (sdk_choice.message.content or None) == (our_choice["message"]["content"] or None)
        assert sdk_choice.message.refusal == our_choice["message"]["refusal"]
        sdk_calls = [
            (t.id, t.function.name, t.function.arguments) for t in sdk_choice.message.tool_calls or ()
        ]
        our_calls = [
            (t["id"], t["function"]["name"], t["function"]["arguments"])
            for t in our_choice["message"].get("tool_calls", ())
        ]
        assert sdk_calls == our_calls
    assert sdk.usage is not None and sdk.usage.model_dump(exclude_none=True) == ours["usage"]


def test_without_include_usage_chunks_have_no_usage_key_and_no_usage_chunk() -> None:
    raw = (TRANSCRIPTS / "chat_text_thoughts.gemini.sse").read_bytes()
    assert run_bytes(raw, [], include_usage=False) == [
        role(usage=False),
        ck({"reasoning_content": "Vérifions la question…"}, usage=False),
        ck({"content": "Bonjour, "}, usage=False),
        ck({"content": "le monde 🌍"}, usage=False),
        ck({}, "stop", usage=False),
    ]


def test_blocked_prompt_refuses_every_expected_choice() -> None:
    tr = translator(n=2)
    got = (
        tr.feed({"promptFeedback": {"blockReason": "SAFETY", "blockReasonMessage": "Unsafe."}}) + tr.finish()
    )
    refusal = {"refusal": "The prompt was blocked by Google (blockReason: SAFETY). Unsafe."}
    assert got == [
        role(0),
        ck(refusal, index=0),
        ck({}, "content_filter", index=0),
        role(1),
        ck(refusal, index=1),
        ck({}, "content_filter", index=1),
        usage_ck(0, 0),
    ]


@pytest.mark.parametrize(
    ("reason", "has_call", "finish"),
    [
        ("SAFETY", False, "content_filter"),
        ("RECITATION", False, "content_filter"),
        ("MAX_TOKENS", False, "length"),
        ("MALFORMED_FUNCTION_CALL", False, "stop"),
        ("OTHER", False, "stop"),
        ("SOMETHING_NEW", False, "stop"),
        ("STOP", True, "tool_calls"),
        ("MAX_TOKENS", True, "tool_calls"),
        ("SAFETY", True, "content_filter"),
    ],
)
def test_finish_reason_is_always_an_openai_value(reason: str, has_call: bool, finish: str) -> None:
    parts = [{"functionCall": {"name": "f"}}] if has_call else [{"text": "x"}]
    tr = translator(include_usage=False)
    got = tr.feed({"candidates": [{"content": {"parts": parts}, "finishReason": reason}]})
    assert got[-1] == ck({}, finish, usage=False)


def test_parts_without_a_client_shape_are_rendered_or_skipped() -> None:
    tr = translator(include_usage=False)
    got = tr.feed(
        {
            "candidates": [
                {
                    "content": {
                        "parts": [
                            {"inlineData": {"mimeType": "image/png", "data": "AAAA"}},
                            {"executableCode": {"language": "PYTHON", "code": "print(1)"}},
                            {"codeExecutionResult": {"outcome": "OUTCOME_OK", "output": "1"}},
                            {"videoMetadata": {"fps": 1}},
                            {"text": "", "thought": True},
                        ]
                    },
                    "finishReason": "STOP",
                }
            ],
            "modelVersion": "x",
        }
    )
    assert got == [
        role(usage=False),
        ck(
            {
                "content": "![image](data:image/png;base64,AAAA)",
                "images": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}],
            },
            usage=False,
        ),
        ck({"content": "\n```python\nprint(1)\n```\n"}, usage=False),
        ck({"content": "\n```\n1\n```\n"}, usage=False),
        ck({}, "stop", usage=False),
    ]


IMAGE_SIG = "CgwIARIIaW1hZ2Utc2ln"


def test_an_image_keeps_its_thought_signature_in_its_images_entry() -> None:
    event = {"candidates": [{"content": {"parts": [
        {"inlineData": {"mimeType": "image/png", "data": "AAAA"}, "thoughtSignature": IMAGE_SIG},
    ]}, "finishReason": "STOP"}]}
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"},
             "extra_content": {"google": {"thought_signature": IMAGE_SIG}}}
    got = translator(include_usage=False).feed(event)
    assert got[1] == ck({"content": "![image](data:image/png;base64,AAAA)", "images": [image]}, usage=False)
    out = gemini_to_chat_completion(event, completion_id="chatcmpl-1", created=1, model="m", id_factory=ids())
    assert out["choices"][0]["message"]["images"] == [image]
    ChatCompletion.model_validate(out)


def test_events_with_nothing_to_say_emit_nothing() -> None:
    tr = translator()
    assert tr.feed({}) == []
    assert tr.feed({"modelVersion": "gemini-2.5-flash", "responseId": "r"}) == []
    assert tr.feed({"usageMetadata": {"promptTokenCount": 3}}) == []
    assert tr.feed({"candidates": [{"content": {"parts": [{"text": "a"}]}, "finishReason": "STOP"}]})[
        -1
    ] == ck({}, "stop")
    assert tr.finish() == [usage_ck(3, 0)]
    assert tr.feed({"candidates": [{"content": {"parts": [{"text": "late"}]}}]}) == []
    assert tr.finish() == []


def test_empty_stream_is_an_upstream_error() -> None:
    tr = translator()
    assert tr.finish() == [
        upstream_error(
            "Gemini's response ended without any candidate: the reply is truncated.", "upstream_truncated"
        )
    ]
    assert isinstance(tr.error, UpstreamProtocolError)


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ([], "an event is not a JSON object"),
        ({"candidates": {"content": {}}}, "candidates is not an array"),
        ({"candidates": ["x"]}, "candidate is not an object"),
        ({"candidates": [{"index": -1}]}, "candidate index -1 is not a non-negative integer"),
        ({"candidates": [{"content": {"parts": [{"text": 5}]}}]}, "a part's text is not a string"),
        (
            {"candidates": [{"content": {"parts": [{"functionCall": {"args": {}}}]}}]},
            "functionCall has no name",
        ),
        (
            {"candidates": [{"content": {"parts": [{"functionCall": {"name": "f", "args": [1]}}]}}]},
            "functionCall 'f' has args that are not an object",
        ),
        (
            {"candidates": [{"content": {"parts": [{"text": "x", "thoughtSignature": 7}]}}]},
            "thoughtSignature is not a string",
        ),
        (
            {"usageMetadata": {"promptTokenCount": "12"}},
            "usageMetadata.promptTokenCount is not a token count: '12'",
        ),
    ],
)
def test_malformed_upstream_data_ends_the_stream_with_an_error(event: Any, reason: str) -> None:
    tr = translator()
    got = tr.feed(event)
    assert got[-1] == upstream_error(
        f"Gemini sent a malformed stream event: {reason}.", "upstream_protocol_error"
    )
    assert tr.feed({"candidates": [{"content": {"parts": [{"text": "more"}]}, "finishReason": "STOP"}]}) == []
    assert tr.finish() == []


def test_error_without_status_still_reads_well() -> None:
    tr = translator()
    assert tr.feed({"error": {"message": "boom"}}) == [
        upstream_error("Google returned an error mid-stream: boom", "upstream_error")
    ]


# --- non-stream ------------------------------------------------------------------------------------------


def completion(response: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    out = gemini_to_chat_completion(
        response, completion_id="chatcmpl-1", created=42, model="gpt-4o", id_factory=ids(), **kwargs
    )
    ChatCompletion.model_validate(out)
    return dict(out)


def message(content: str | None, **extra: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content, "refusal": None, **extra}


def body(choices: list[dict[str, Any]], usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 42,
        "model": "gpt-4o",
        "choices": choices,
        "usage": usage,
    }


USAGE_0 = {
    "prompt_tokens": 0,
    "completion_tokens": 0,
    "total_tokens": 0,
    "prompt_tokens_details": {"cached_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0},
}


def test_unary_response_with_thoughts_and_text() -> None:
    response = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {"text": "Let me think.", "thought": True},
                        {"text": "Hello"},
                        {"text": " there"},
                    ],
                },
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 9,
            "candidatesTokenCount": 2,
            "thoughtsTokenCount": 5,
            "toolUsePromptTokenCount": 1,
            "cachedContentTokenCount": 3,
            "totalTokenCount": 17,
        },
    }
    assert completion(response) == body(
        [
            {
                "index": 0,
                "message": message("Hello there", reasoning_content="Let me think."),
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        {
            "prompt_tokens": 10,
            "completion_tokens": 7,
            "total_tokens": 17,
            "prompt_tokens_details": {"cached_tokens": 3},
            "completion_tokens_details": {"reasoning_tokens": 5},
        },
    )


def test_unary_tool_calls_have_null_content() -> None:
    response = {
        "candidates": [
            {
                "content": {
                    "parts": [
                        {"functionCall": {"name": "a", "args": {"x": [1, 2]}}, "thoughtSignature": "c2ln"},
                        {"functionCall": {"name": "b"}},
                    ]
                },
                "finishReason": "STOP",
            }
        ]
    }
    assert completion(response) == body(
        [
            {
                "index": 0,
                "message": message(
                    None,
                    tool_calls=[
                        {
                            "id": "call_t1_sigbc2ln",
                            "type": "function",
                            "function": {"name": "a", "arguments": '{"x":[1,2]}'},
                            "extra_content": {"google": {"thought_signature": "c2ln"}},
                        },
                        {"id": "call_t2", "type": "function", "function": {"name": "b", "arguments": "{}"}},
                    ],
                ),
                "logprobs": None,
                "finish_reason": "tool_calls",
            }
        ],
        USAGE_0,
    )


def test_unary_text_with_tool_call_keeps_the_text() -> None:
    response = {
        "candidates": [
            {
                "content": {"parts": [{"text": "Running it."}, {"functionCall": {"name": "a"}}]},
                "finishReason": "STOP",
            }
        ]
    }
    got = completion(response)["choices"][0]["message"]
    assert got == message(
        "Running it.",
        tool_calls=[{"id": "call_t1", "type": "function", "function": {"name": "a", "arguments": "{}"}}],
    )


def test_unary_empty_answer_is_an_empty_string() -> None:
    got = completion({"candidates": [{"content": {"role": "model"}, "finishReason": "STOP"}]})
    assert got["choices"] == [{"index": 0, "message": message(""), "logprobs": None, "finish_reason": "stop"}]


def test_unary_multiple_candidates_become_choices() -> None:
    response = {
        "candidates": [
            {"index": 1, "content": {"parts": [{"text": "B"}]}, "finishReason": "MAX_TOKENS"},
            {"content": {"parts": [{"text": "A"}]}, "finishReason": "STOP"},
        ]
    }
    assert completion(response, n=2)["choices"] == [
        {"index": 0, "message": message("A"), "logprobs": None, "finish_reason": "stop"},
        {"index": 1, "message": message("B"), "logprobs": None, "finish_reason": "length"},
    ]


def test_unary_blocked_prompt_is_a_refusal_not_an_error() -> None:
    response = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 4}}
    refusal = "The prompt was blocked by Google (blockReason: SAFETY)."
    assert completion(response) == body(
        [
            {
                "index": 0,
                "message": {"role": "assistant", "content": None, "refusal": refusal},
                "logprobs": None,
                "finish_reason": "content_filter",
            }
        ],
        {**USAGE_0, "prompt_tokens": 4, "total_tokens": 4},
    )


def test_unary_in_band_error_raises_upstream_error() -> None:
    with pytest.raises(UpstreamError) as info:
        completion({"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}})
    assert info.value.to_openai() == upstream_error(
        "Google returned an error mid-stream (503 UNAVAILABLE): The model is overloaded.", "unavailable"
    )


def test_unary_without_finish_reason_raises_protocol_error() -> None:
    with pytest.raises(UpstreamProtocolError, match="truncated"):
        completion({"candidates": [{"content": {"parts": [{"text": "half"}]}}]})


def test_collected_stream_equals_the_fold_of_its_chunks() -> None:
    got = gemini_events_to_chat_completion(
        events_of("chat_two_candidates.gemini.sse"),
        completion_id="c",
        created=1,
        model="m",
        id_factory=ids(),
        n=2,
    )
    assert got == {
        "id": "c",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {"index": 0, "message": message("Red is warm."), "logprobs": None, "finish_reason": "stop"},
            {"index": 1, "message": message("Blue is"), "logprobs": None, "finish_reason": "length"},
        ],
        "usage": {**USAGE_0, "prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
    }
