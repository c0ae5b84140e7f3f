"""responses_request_to_gemini: the translation rules for Responses input items and options."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from antigravity_gw.errors import InvalidRequest
from antigravity_gw.openai_api.responses_models import parse_responses_request
from antigravity_gw.translate.parts import InlineImage
from antigravity_gw.translate.responses_request import (
    COMPACTION_PROMPT,
    SUMMARY_HEADING,
    ResponsesCall,
    input_items,
    responses_image_url_params,
    responses_request_to_gemini,
)
from antigravity_gw.translate.signatures import (
    ToolCallRef,
    encode_compaction,
    encode_reasoning_signature,
    encode_tool_call_id,
)

PNG_URL = "data:image/png;base64,iVBORw0KGgo="
SIG = "Q2FsbFNpZw=="
THOUGHT_SIG = "VGhvdWdodFNpZw=="


def call(body: dict[str, Any]) -> ResponsesCall:
    req = parse_responses_request(orjson.dumps({"model": "gemini-2.5-flash", **body}))
    return ResponsesCall(req, req.model or "", input_items(req))


def translate(body: dict[str, Any], model: str = "gemini-2.5-flash", **kwargs: Any) -> dict[str, Any]:
    return responses_request_to_gemini(call(body), model=model, **kwargs)


def rejected(body: dict[str, Any]) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        translate(body)
    return info.value


def test_a_string_input_with_instructions() -> None:
    assert translate({"input": "hi", "instructions": "Be brief."}) == {
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
    }


def test_codex_style_developer_messages_and_parts() -> None:
    out = translate({"input": [
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "rules"},
                                                             {"type": "input_text", "text": "more"}]},
        {"role": "system", "content": "sys"},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "look"}, {"type": "input_image", "image_url": PNG_URL,
                                                     "detail": "auto"},
            {"type": "input_text", "text": ""}]},
        {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed", "content": [
            {"type": "output_text", "text": "seen", "annotations": []}, {"type": "refusal",
                                                                         "refusal": "no"}]},
        {"role": "user", "content": "again"},
    ]})
    assert out == {
        "systemInstruction": {"parts": [{"text": "rules\nmore"}, {"text": "sys"}]},
        "contents": [
            {"role": "user", "parts": [{"text": "look"}, {"inlineData": {"mimeType": "image/png",
                                                                         "data": "iVBORw0KGgo="}}]},
            {"role": "model", "parts": [{"text": "seen"}, {"text": "no"}]},
            {"role": "user", "parts": [{"text": "again"}]},
        ],
    }


def test_a_tool_loop_with_signatures_from_call_ids_and_reasoning_items() -> None:
    own_id = encode_tool_call_id("abc", gemini_id="g-1", signature=SIG)
    out = translate({"tools": [{"type": "function", "name": "read"},
                               {"type": "custom", "name": "apply_patch"},
                               {"type": "namespace", "name": "agents", "description": "d",
                                "tools": [{"type": "function", "name": "spawn"}]}],
                     "input": [
        {"role": "user", "content": "go"},
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "plan"}],
         "content": None, "encrypted_content": encode_reasoning_signature(THOUGHT_SIG)},
        {"type": "function_call", "call_id": "call_plain", "name": "read", "arguments": '{"p": "a"}',
         "status": "completed", "id": "fc_1"},
        {"type": "custom_tool_call", "call_id": own_id, "name": "apply_patch", "input": "*** Begin Patch"},
        {"type": "function_call", "call_id": "call_ns", "name": "spawn", "namespace": "agents",
         "arguments": ""},
        {"type": "function_call_output", "call_id": "call_plain", "output": '{"ok": true}', "id": "fco_1"},
        {"type": "custom_tool_call_output", "call_id": own_id, "output": "Done!"},
        {"type": "function_call_output", "call_id": "call_ns", "output": [
            {"type": "input_text", "text": "spawned"}, {"type": "input_image", "image_url": PNG_URL}]},
    ]})
    assert out["contents"][1:] == [
        {"role": "model", "parts": [
            {"functionCall": {"name": "read", "args": {"p": "a"}}, "thoughtSignature": THOUGHT_SIG},
            {"functionCall": {"name": "apply_patch", "args": {"input": "*** Begin Patch"}, "id": "g-1"},
             "thoughtSignature": SIG},
            {"functionCall": {"name": "agents__spawn", "args": {}}},
        ]},
        {"role": "user", "parts": [
            {"functionResponse": {"name": "read", "response": {"output": {"ok": True}}}},
            {"functionResponse": {"name": "apply_patch", "response": {"output": "Done!"}, "id": "g-1"}},
            {"functionResponse": {"name": "agents__spawn", "response": {"output": "spawned"}}},
            {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
        ]},
    ]


def test_a_reasoning_signature_signs_the_next_assistant_text() -> None:
    out = translate({"input": [
        {"role": "user", "content": "q"},
        {"type": "reasoning", "summary": [], "encrypted_content": encode_reasoning_signature(THOUGHT_SIG)},
        {"role": "assistant", "content": [{"type": "output_text", "text": "a"}]},
        {"role": "user", "content": "q2"},
    ]})
    assert out["contents"][1] == {"role": "model", "parts": [{"text": "a", "thoughtSignature": THOUGHT_SIG}]}


def test_foreign_or_orphaned_reasoning_carries_nothing() -> None:
    out = translate({"input": [
        {"type": "reasoning", "summary": [], "encrypted_content": "gAAAAABopenai-encrypted"},
        {"role": "assistant", "content": "a"},
        {"type": "reasoning", "summary": [], "encrypted_content": encode_reasoning_signature(THOUGHT_SIG)},
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "b"},
        {"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {"type": "search"}},
    ]})
    assert out["contents"] == [
        {"role": "model", "parts": [{"text": "a"}]},
        {"role": "user", "parts": [{"text": "q"}]},
        {"role": "model", "parts": [{"text": "b"}]},
    ]


def test_options_map_to_the_generation_config() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"],
              "additionalProperties": False}
    out = translate({"input": "x", "temperature": 0.5, "top_p": 0.9, "max_output_tokens": 100,
                     "text": {"format": {"type": "json_schema", "name": "n", "schema": schema,
                                         "strict": True}},
                     "reasoning": {"effort": "low", "summary": "auto"}})
    assert out["generationConfig"] == {
        "temperature": 0.5, "topP": 0.9, "maxOutputTokens": 100, "responseMimeType": "application/json",
        "responseSchema": {"type": "OBJECT", "properties": {"n": {"type": "INTEGER"}}, "required": ["n"]},
        "thinkingConfig": {"includeThoughts": True, "thinkingBudget": 4096},
    }


@pytest.mark.parametrize(("reasoning", "model", "expected"), [
    (None, "gemini-2.5-flash", None),
    ({"summary": "auto"}, "gemini-2.5-flash", {"includeThoughts": True}),
    ({"effort": "high"}, "gemini-2.5-pro", {"thinkingBudget": 24576}),
    ({"effort": "medium", "summary": "detailed"}, "gemini-3-pro-preview",
     {"includeThoughts": True, "thinkingLevel": "high"}),
    ({"effort": "none", "summary": "auto"}, "gemini-2.5-flash", {"thinkingBudget": 0}),
    ({"summary": "none"}, "gemini-2.5-flash", None),
])
def test_thoughts_are_included_only_when_a_summary_is_asked(
    reasoning: dict[str, Any] | None, model: str, expected: dict[str, Any] | None
) -> None:
    body: dict[str, Any] = {"input": "x"}
    if reasoning is not None:
        body["reasoning"] = reasoning
    out = translate(body, model=model)
    assert out.get("generationConfig", {}).get("thinkingConfig") == expected


def test_a_json_object_format() -> None:
    out = translate({"input": "x", "text": {"format": {"type": "json_object"}, "verbosity": "low"}})
    assert out["generationConfig"] == {"responseMimeType": "application/json"}


def test_http_images_come_from_the_fetched_map_and_are_listed_with_their_param() -> None:
    body = {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "https://x/a.png"}]},
                      {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
                      {"type": "function_call_output", "call_id": "c",
                       "output": [{"type": "input_image", "image_url": "https://x/b.png"}]}]}
    assert responses_image_url_params(call(body)) == {
        "https://x/a.png": "input[0].content[0].image_url",
        "https://x/b.png": "input[2].output[0].image_url",
    }
    images = {u: InlineImage("image/png", "QQ==") for u in ("https://x/a.png", "https://x/b.png")}
    out = translate(body, images=images)
    assert out["contents"][0]["parts"] == [{"inlineData": {"mimeType": "image/png", "data": "QQ=="}}]


@pytest.mark.parametrize(("body", "param", "fragment"), [
    ({"input": [{"type": "function_call_output", "call_id": "nope", "output": "x"}]},
     "input[0].call_id", "no function_call"),
    ({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "[1]"}]},
     "input[0].arguments", "expected a JSON object"),
    ({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{"}]},
     "input[0].arguments", "not valid JSON"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type", "item references"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}]},
     "input[0].content[0].image_url", "file ids"),
    ({"input": [{"role": "system", "content": [{"type": "input_image", "image_url": PNG_URL}]}]},
     "input[0].content[0].type", "only text parts"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
     "input[0].content[0].file_data", "file_data"),
    ({"input": [{"role": "user", "content": ""}]}, "input", "at least one"),
    ({"input": "x", "text": {"format": {"type": "json_schema", "name": "s", "schema": {"type": "wizard"}}}},
     "text.format.schema", "Invalid schema"),
])
def test_what_cannot_be_translated_is_a_400_naming_the_field(body: dict[str, Any], param: str,
                                                             fragment: str) -> None:
    err = rejected(body)
    assert err.param == param
    assert fragment in err.message


def test_history_items_are_named_after_previous_response_id() -> None:
    req = parse_responses_request(orjson.dumps({"model": "m", "previous_response_id": "resp_1", "input": [
        {"type": "function_call_output", "call_id": "x", "output": "y"}]}))
    history = input_items(parse_responses_request(orjson.dumps({"model": "m", "input": [
        {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{bad"}]})))
    chained = ResponsesCall(req, "m", (*history, *input_items(req)), history=1)
    with pytest.raises(InvalidRequest) as info:
        responses_request_to_gemini(chained, model="m")
    assert info.value.param == "previous_response_id.arguments"


@pytest.mark.parametrize("url", ["http://[::1/x.png", "https://x:99999/a.png", "http:///a.png"])
def test_a_malformed_image_url_is_400_naming_the_part_before_any_fetch(url: str) -> None:
    body = {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": url}]}]}
    with pytest.raises(InvalidRequest) as e:
        responses_image_url_params(call(body))
    assert e.value.param == "input[0].content[0].image_url"


def test_instructions_alone_are_answered_as_the_user_turn() -> None:
    out = translate({"instructions": "Say hi.", "input": [{"role": "developer", "content": "Briefly."}]})
    assert "systemInstruction" not in out
    assert out["contents"] == [{"role": "user", "parts": [{"text": "Say hi."}, {"text": "Briefly."}]}]


def test_a_short_call_id_takes_its_signature_from_the_store_or_a_reasoning_item() -> None:
    history = [
        {"role": "user", "content": "go"},
        {"type": "function_call", "call_id": "call_abc", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_abc", "output": "ok"},
    ]
    req = parse_responses_request(orjson.dumps({"model": "m", "input": history}))
    stored = ResponsesCall(req, "m", input_items(req),
                           call_refs={"call_abc": ToolCallRef(gemini_id="g1", signature="U1RPUkU=")})
    out = responses_request_to_gemini(stored, model="gemini-3-pro-preview")
    assert out["contents"][1]["parts"] == [{"functionCall": {"name": "f", "args": {}, "id": "g1"},
                                            "thoughtSignature": "U1RPUkU="}]
    carried = translate({"input": [history[0], {"type": "reasoning", "summary": [],
                                                "encrypted_content": "gemini-thought-signature:UkVBUw=="},
                                   *history[1:]]})
    assert carried["contents"][1]["parts"][0]["thoughtSignature"] == "UkVBUw=="  # no server state


def test_compaction_items_become_the_summary_and_a_trigger_asks_for_one() -> None:
    summary = encode_compaction("We fixed the bug.")
    out = translate({"input": [{"type": "compaction", "encrypted_content": summary},
                               {"type": "compaction", "encrypted_content": "someone-elses-blob"},
                               {"role": "user", "content": "next?"}]})
    assert out["contents"] == [{"role": "user", "parts": [
        {"text": SUMMARY_HEADING + "We fixed the bug."}, {"text": "next?"}]}]
    tool = {"type": "function", "name": "f", "parameters": {"type": "object"}}
    trigger = call({"input": [{"role": "user", "content": "hi"}, {"type": "compaction_trigger"}],
                    "tools": [tool], "tool_choice": "required"})
    assert trigger.compacts
    out = responses_request_to_gemini(trigger, model="gemini-2.5-flash")
    assert out["toolConfig"] == {"functionCallingConfig": {"mode": "NONE"}}
    assert out["contents"][-1]["parts"][-1] == {"text": COMPACTION_PROMPT}
    assert rejected({"input": [{"type": "compaction_trigger"}, {"role": "user", "content": "x"}]}).param == (
        "input[0].type")


def test_input_image_detail_becomes_the_media_resolution():
    from antigravity_gw.openai_api.responses_models import parse_responses_request
    from antigravity_gw.translate.responses_request import (
        ResponsesCall,
        input_items,
        responses_request_to_gemini,
    )

    body = {"model": "gemini-3-flash", "input": [{"role": "user", "content": [
        {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}]}]}
    request = parse_responses_request(orjson.dumps(body))
    out = responses_request_to_gemini(ResponsesCall(request, "gemini-3-flash", input_items(request)),
                                      model="gemini-3-flash")
    assert out["generationConfig"]["mediaResolution"] == "MEDIA_RESOLUTION_HIGH"
