"""Thought signatures ride in tool call ids: the id round trip, and a two-turn conversation where turn 2's
request carries exactly the signature turn 1's response gave."""

from __future__ import annotations

import base64
import itertools
import re
from pathlib import Path

import orjson
import pytest
from openai.types.chat import ChatCompletionChunk

from antigravity_gw.openai_api.models import parse_chat_request
from antigravity_gw.sse import SSEDecoder
from antigravity_gw.translate.chat_request import chat_request_to_gemini
from antigravity_gw.translate.chat_stream import GeminiToChatStream, gemini_to_chat_completion
from antigravity_gw.translate.signatures import (
    ToolCallRef,
    decode_tool_call_id,
    encode_tool_call_id,
)

TRANSCRIPTS = Path(__file__).parents[2] / "transcripts"
ID_CHARS = re.compile(r"[A-Za-z0-9_-]+")


def counter_ids() -> itertools.count[int]:
    return itertools.count(1)


@pytest.mark.parametrize(
    "signature",
    [
        base64.b64encode(bytes(range(256))).decode(),  # has '+', '/' and '=' padding
        base64.b64encode(b"ab").decode(),  # "YWI=": one pad
        base64.b64encode(b"a").decode(),  # "YQ==": two pads
        base64.b64encode(b"abc").decode(),  # no pad
        "not base64 at all: ünïcode & spaces",
        "YWI",  # unpadded base64 is not canonical: stored byte-exact through the UTF-8 flavour
    ],
)
@pytest.mark.parametrize("gemini_id", [None, "toolu_01AbC", "call-ümlaut"])
def test_id_round_trip_is_exact(signature: str, gemini_id: str | None) -> None:
    call_id = encode_tool_call_id("Tok3n", gemini_id=gemini_id, signature=signature)
    assert ID_CHARS.fullmatch(call_id), call_id
    assert call_id.startswith("call_Tok3n")
    assert decode_tool_call_id(call_id) == ToolCallRef(gemini_id=gemini_id, signature=signature)


def test_canonical_signature_costs_no_extra_length() -> None:
    signature = base64.b64encode(bytes(range(90))).decode()
    assert encode_tool_call_id("t", signature=signature) == "call_t_sigb" + signature.replace(
        "+", "-"
    ).replace("/", "_")


def test_plain_ids_carry_nothing() -> None:
    assert encode_tool_call_id("abc123") == "call_abc123"
    assert decode_tool_call_id("call_abc123") == ToolCallRef()


@pytest.mark.parametrize(
    "foreign",
    [
        "call_abc123XYZ",
        "toolu_01A09q90qw90lq917835lq9",
        "call_1_sigb",
        "call_a_sigbAAAAA",
        "call_a_idzz",
        "call_a_sigxAAAA",
        "",
        "call_",
        "chatcmpl-tool-1",
    ],
)
def test_foreign_or_mangled_ids_decode_to_nothing(foreign: str) -> None:
    assert decode_tool_call_id(foreign) == ToolCallRef()


@pytest.mark.parametrize("token", ["", "has_underscore", "ümlaut", "a-b"])
def test_token_must_be_alphanumeric(token: str) -> None:
    with pytest.raises(ValueError):
        encode_tool_call_id(token)


def stream_tool_calls(raw: bytes) -> list[dict]:
    """Run a recorded Gemini stream through the translator; return the tool calls the client saw."""
    tokens = counter_ids()
    translator = GeminiToChatStream(
        completion_id="chatcmpl-1",
        created=1,
        model="gpt-4o",
        include_usage=False,
        id_factory=lambda: f"t{next(tokens)}",
    )
    decoder = SSEDecoder()
    chunks = []
    for event in decoder.feed(raw) + decoder.finish():
        if event.data:
            data = orjson.loads(event.data)
            chunks += translator.feed(data.get("response", data))
    chunks += translator.finish()
    # What an openai-SDK client holds: the SDK's own parse of each chunk, ids untouched.
    parsed = [ChatCompletionChunk.model_validate(c) for c in chunks]
    return [tc.model_dump() for c in parsed for ch in c.choices for tc in ch.delta.tool_calls or ()]


def test_turn_two_request_carries_the_signature_turn_one_returned() -> None:
    raw = (TRANSCRIPTS / "chat_tool_calls.gemini.sse").read_bytes()
    upstream_signature = next(
        p["thoughtSignature"]
        for line in raw.splitlines()
        if line.startswith(b"data: ")
        for c in orjson.loads(line[6:])["response"].get("candidates", [])
        for p in c["content"]["parts"]
        if "thoughtSignature" in p
    )
    calls = stream_tool_calls(raw)
    assert [c["function"]["name"] for c in calls] == ["read_file", "list_dir"]

    turn_two = {
        "model": "gpt-4o",
        "messages": [
            {"role": "user", "content": "What is in a.txt?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": c["id"], "type": "function", "function": c["function"]} for c in calls],
            },
            {"role": "tool", "tool_call_id": calls[0]["id"], "content": "hello"},
            {"role": "tool", "tool_call_id": calls[1]["id"], "content": '{"entries": ["a.txt"]}'},
        ],
    }
    gemini = chat_request_to_gemini(parse_chat_request(orjson.dumps(turn_two)), model="gemini-3-pro-preview")
    assert gemini["contents"][1:] == [
        {
            "role": "model",
            "parts": [
                {
                    "functionCall": {"name": "read_file", "args": {"path": "a.txt"}},
                    "thoughtSignature": upstream_signature,
                },
                {"functionCall": {"name": "list_dir", "args": {}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "read_file", "response": {"output": "hello"}}},
                {"functionResponse": {"name": "list_dir", "response": {"output": {"entries": ["a.txt"]}}}},
            ],
        },
    ]


def test_signature_from_a_preceding_text_part_and_gemini_call_id_come_back() -> None:
    calls = stream_tool_calls((TRANSCRIPTS / "chat_signature_on_text_part.gemini.sse").read_bytes())
    assert len(calls) == 1
    assert decode_tool_call_id(calls[0]["id"]) == ToolCallRef(
        gemini_id="toolu_01A", signature="RW1wdHlQYXJ0U2ln"
    )
    turn_two = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "tool_calls": [{"id": calls[0]["id"], "type": "function", "function": calls[0]["function"]}],
            },
            {"role": "tool", "tool_call_id": calls[0]["id"], "content": "sunny"},
        ],
    }
    contents = chat_request_to_gemini(parse_chat_request(orjson.dumps(turn_two)), model="m")["contents"]
    assert contents[1:] == [
        {
            "role": "model",
            "parts": [
                {
                    "functionCall": {"name": "get_weather", "args": {"city": "Zürich"}, "id": "toolu_01A"},
                    "thoughtSignature": "RW1wdHlQYXJ0U2ln",
                }
            ],
        },
        {
            "role": "user",
            "parts": [
                {
                    "functionResponse": {
                        "name": "get_weather",
                        "response": {"output": "sunny"},
                        "id": "toolu_01A",
                    }
                }
            ],
        },
    ]


def test_non_stream_reply_carries_the_signature_too() -> None:
    response = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [{"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "AAAA"}],
                },
                "finishReason": "STOP",
            }
        ]
    }
    completion = gemini_to_chat_completion(
        response, completion_id="c", created=1, model="m", id_factory=lambda: "x"
    )
    call_id = completion["choices"][0]["message"]["tool_calls"][0]["id"]
    assert call_id == "call_x_sigbAAAA"
    assert decode_tool_call_id(call_id).signature == "AAAA"


def test_history_from_another_provider_sends_no_ids_and_only_gemini_3_gets_the_escape_value() -> None:
    """A foreign call carries no signature: Gemini 2.5 needs none; Gemini 3 gets the documented escape
    value on the turn's first call (R-G3), since it rejects an unsigned call of the running turn."""
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "call_Kx81",
                        "type": "function",
                        "function": {"name": "f", "arguments": '{"a": 1}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_Kx81", "content": "done"},
        ],
    }
    request = parse_chat_request(orjson.dumps(body))
    contents = chat_request_to_gemini(request, model="gemini-2.5-flash")["contents"]
    assert contents[1] == {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {"a": 1}}}]}
    contents = chat_request_to_gemini(request, model="gemini-3-pro-preview")["contents"]
    assert contents[1:] == [
        {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {"a": 1}},
                                     "thoughtSignature": "skip_thought_signature_validator"}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"output": "done"}}}]},
    ]


def test_reasoning_encrypted_content_round_trips_only_our_own() -> None:
    from antigravity_gw.translate.signatures import decode_reasoning_signature, encode_reasoning_signature

    signature = "CiQBVKhc7sZ2+/=="
    assert decode_reasoning_signature(encode_reasoning_signature(signature)) == signature
    for foreign in (None, "", "gAAAAABo-openai-encrypted", "gemini-thought-signature:"):
        assert decode_reasoning_signature(foreign) is None


@pytest.mark.parametrize("family", ["c", "g3", "g2", None])
def test_a_thinking_block_signature_round_trips_with_its_family(family):
    from antigravity_gw.translate.signatures import decode_thinking_signature, encode_thinking_signature

    ref = decode_thinking_signature(encode_thinking_signature("c2ln+/=", family=family))
    assert (ref.signature, ref.family) == ("c2ln+/=", family)


@pytest.mark.parametrize("foreign", ["", "EqQBCkgIBhAB", "claude-thinking:xyz"])
def test_a_foreign_thinking_signature_carries_nothing(foreign):
    from antigravity_gw.translate.signatures import decode_thinking_signature

    assert decode_thinking_signature(foreign).signature is None
